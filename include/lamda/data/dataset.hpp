// lamda/data/dataset.hpp: image classification datasets for training and evaluation. Core (C++17
// only); gzip-compressed files need zlib (define LAMDA_WITH_ZLIB and link -lz: lamda's own build
// does when zlib is found). evaluate_accuracy() / evaluate_accuracy_int8() run through the XNNPACK
// executor when it is built in (LAMDA_WITH_XNNPACK), else through the reference executors, which
// give the same predictions (the int8 ones bit for bit), only slower.
//
//   lamda::DatasetSplits data = lamda::load_dataset("fashion-mnist");   // or a directory
//   auto [train, val] = lamda::split_dataset(data.train, 0.1, /*seed=*/1);
//   lamda::Accuracy a = lamda::evaluate_accuracy(graph, weights, data.test);  // via XNNPACK
//   lamda::ModelWeights m = lamda::read_model_weights(graph, "w.safetensors");  // fp32 or int8
//
// Formats (docs/training.md), recognised by their content, not their names:
//   IDX (the MNIST family): magic 0 0 8 D, then D big-endian uint32 dimensions, then unsigned
//     bytes. Images are N x H x W (one channel) or N x H x W x C, labels N. Raw or gzip.
//   NumPy .npy (format versions 1 to 3, C order): images uint8 (scaled by 1/255) or float32
//     (used as they are; [0, 1] expected), shaped (N, H, W) or (N, H, W, C); labels of any
//     integer type, shaped (N,) or (N, 1).
// A directory holds a training pair and, optionally, a test pair, under the names
// dataset_file_names() lists (train-images-idx3-ubyte[.gz], x_train.npy, ...).
//
// Every problem with a file is a DatasetError naming the file and what is wrong. Sizes claimed by
// a header are checked against the bytes actually there before anything is allocated for them,
// and no file may exceed DatasetLimits::max_file_bytes (decompressed), so a corrupt or hostile
// file is an error, never a crash or a huge allocation.
#ifndef LAMDA_DATA_DATASET_HPP
#define LAMDA_DATA_DATASET_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#if defined(LAMDA_WITH_ZLIB)
#include <zlib.h>
#endif

#include "../exception.hpp"
#include "../core/ir.hpp"
#include "../detail/checked.hpp"
#include "weights.hpp"

#include "../exec/fold.hpp"
#include "../exec/reference.hpp"
#include "../exec/reference_int8.hpp"
#if defined(LAMDA_WITH_XNNPACK)
#include "../exec/xnnpack.hpp"
#endif

namespace lamda {

// Thrown by the dataset readers; the message names the file (or dataset) and the problem.
class DatasetError : public Exception {
public:
    using Exception::Exception;
};

// Labelled images, all of one shape, stored together: as the bytes of a uint8 file (`pixels`,
// value / 255), or as floats (`images`: float32 files, or images made in code). Exactly one of
// the two holds the images; uint8 files stay uint8 in memory (a 1 GiB file costs 1 GiB, not 4)
// and are converted to floats an image at a time, by copy_image().
struct Dataset {
    Shape shape;      // of one image: height x width x channels
    int classes = 0;  // labels lie in 0 .. classes-1
    std::vector<float> images;          // size() * shape.elements() values, NHWC, in [0, 1]; or empty
    std::vector<std::uint8_t> pixels;   // size() * shape.elements() bytes, NHWC; or empty
    std::vector<std::int32_t> labels;   // one per image

    std::size_t size() const noexcept { return labels.size(); }
    bool empty() const noexcept { return labels.empty(); }
    std::size_t image_elements() const noexcept { return static_cast<std::size_t>(shape.elements()); }
    // Value k of the images (NHWC, image after image) as a float in [0, 1].
    float value(std::size_t k) const noexcept {
        return pixels.empty() ? images[k] : static_cast<float>(pixels[k]) * (1.0f / 255.0f);
    }
    // Image i's shape.elements() values (NHWC), as floats, into `out`.
    void copy_image(std::size_t i, float* out) const noexcept {
        const std::size_t per = image_elements();
        if (pixels.empty()) {
            std::copy(images.data() + i * per, images.data() + (i + 1) * per, out);
        } else {
            const std::uint8_t* p = pixels.data() + i * per;
            for (std::size_t k = 0; k < per; ++k) out[k] = static_cast<float>(p[k]) * (1.0f / 255.0f);
        }
    }
};

// A training set and a test set (empty when a directory has none) of the same image shape.
struct DatasetSplits {
    std::string name;  // "fashion-mnist", or the directory as given
    Dataset train;
    Dataset test;
};

struct DatasetLimits {
    std::int64_t max_file_bytes = std::int64_t{1} << 30;  // per file, after decompression
    int max_classes = 65536;
};

// Where `--dataset fashion-mnist` looks (Debian's dataset-fashion-mnist package).
inline constexpr std::string_view fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

// ---------------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------------

namespace dataset_detail {

inline std::string mib(std::int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

inline bool is_gzip(const std::vector<unsigned char>& b) {
    return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

#if defined(LAMDA_WITH_ZLIB)
// Inflates a gzip file (several members allowed, as gzip -c a b > c makes), growing the output as
// data arrives rather than trusting any size in the file.
inline std::vector<unsigned char> gunzip(const std::vector<unsigned char>& in,
                                         const std::string& path, std::int64_t max_bytes) {
    std::vector<unsigned char> out;
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        throw DatasetError(path + ": cannot initialise zlib");
    struct End {
        z_stream* z;
        ~End() { inflateEnd(z); }
    } end{&z};
    std::size_t pos = 0;
    bool reserved = false;
    unsigned char chunk[1 << 16];
    while (true) {
        const std::size_t avail = std::min<std::size_t>(in.size() - pos, 1u << 30);
        z.next_in = const_cast<unsigned char*>(in.data() + pos);
        z.avail_in = static_cast<uInt>(avail);
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        const int rc = inflate(&z, Z_NO_FLUSH);
        pos += avail - z.avail_in;
        const std::size_t produced = sizeof chunk - z.avail_out;
        if (static_cast<std::int64_t>(out.size() + produced) > max_bytes)
            throw DatasetError(path + ": decompresses to more than " + mib(max_bytes) +
                               " (the limit for one dataset file)");
        out.insert(out.end(), chunk, chunk + produced);
        if (!reserved && out.size() >= 20) {
            // An IDX file states its size in its header: reserve it once (it is within the limit,
            // so a header that lies costs no more than the limit allows), instead of doubling
            // past it; a 1 GiB file then takes 1 GiB while inflated, not up to 1.5.
            reserved = true;
            if (out[0] == 0 && out[1] == 0 && out[2] == 0x08 && out[3] >= 1 && out[3] <= 4) {
                std::vector<std::int64_t> dims;
                for (std::size_t k = 0; k < out[3]; ++k) {
                    const unsigned char* p = out.data() + 4 + 4 * k;
                    dims.push_back((std::int64_t{p[0]} << 24) | (std::int64_t{p[1]} << 16) |
                                   (std::int64_t{p[2]} << 8) | std::int64_t{p[3]});
                }
                const std::optional<std::int64_t> payload = detail::checked_bytes(dims, 1, max_bytes);
                std::int64_t total = 0;
                if (payload && detail::checked_add(*payload, std::int64_t{4 + 4 * out[3]}, total) && total <= max_bytes)
                    out.reserve(static_cast<std::size_t>(total));
            }
        }
        if (rc == Z_STREAM_END) {
            // Another gzip member may follow; trailing zero padding is tolerated as gzip does.
            while (pos < in.size() && in[pos] == 0) ++pos;
            if (pos >= in.size()) break;
            if (inflateReset(&z) != Z_OK) throw DatasetError(path + ": zlib reset failed");
            continue;
        }
        if (rc == Z_BUF_ERROR && avail == 0 && produced == 0)
            throw DatasetError(path + ": the gzip stream is truncated (the file ends early)");
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            throw DatasetError(path + ": corrupt gzip data (zlib: " +
                               (z.msg ? std::string(z.msg) : "error " + std::to_string(rc)) + ")");
    }
    return out;
}
#endif

// The file's bytes, decompressed when it is gzip (recognised by its magic, whatever its name).
inline std::vector<unsigned char> read_bytes(const std::string& path, const DatasetLimits& limits) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw DatasetError(path + ": no such file");
    if (!std::filesystem::is_regular_file(status)) throw DatasetError(path + ": not a regular file");
    const std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw DatasetError(path + ": cannot read its size: " + ec.message());
    if (size > static_cast<std::uintmax_t>(limits.max_file_bytes))
        throw DatasetError(path + ": " + mib(static_cast<std::int64_t>(size)) +
                           ", more than the limit of " + mib(limits.max_file_bytes) +
                           " for one dataset file");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw DatasetError(path + ": cannot open for reading");
    std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
    if (size > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
        throw DatasetError(path + ": read error");
    if (!is_gzip(bytes)) return bytes;
#if defined(LAMDA_WITH_ZLIB)
    return gunzip(bytes, path, limits.max_file_bytes);
#else
    throw DatasetError(path + ": the file is gzip-compressed, but this lamda was built without zlib "
                              "(install zlib1g-dev and rebuild, or gunzip the file)");
#endif
}

// An array read from an IDX or .npy file: its dimensions and its values as 64-bit integers
// (uint8 images, integer labels) or floats (float32 images).
struct Array {
    std::vector<std::int64_t> dims;
    std::vector<std::uint8_t> u8;    // IDX and uint8 .npy
    std::vector<float> f32;          // float32 .npy
    std::vector<std::int64_t> ints;  // integer .npy of any other type
    std::int64_t count() const noexcept {
        std::int64_t n = 1;
        for (std::int64_t d : dims) n *= d;
        return n;
    }
};

inline std::string dims_string(const std::vector<std::int64_t>& dims) {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
    return dims.empty() ? "a scalar" : s;
}

// Product of `dims` times `item`, or -1 when it exceeds `limit` (checked before multiplying
// further, so a header claiming 2^32 x 2^32 x ... cannot overflow).
inline std::int64_t checked_bytes(const std::vector<std::int64_t>& dims, std::int64_t item,
                                  std::int64_t limit) {
    const std::optional<std::int64_t> n = detail::checked_bytes(dims, item, limit);  // detail/checked.hpp
    return n ? *n : -1;
}

inline Array parse_idx(std::vector<unsigned char>&& b, const std::string& path) {
    if (b.size() < 4 || b[0] != 0 || b[1] != 0)
        throw DatasetError(path + ": not an IDX file (bad magic number)");
    if (b[2] != 0x08)
        throw DatasetError(path + ": IDX element type 0x" +
                           std::string(1, "0123456789abcdef"[b[2] >> 4]) +
                           std::string(1, "0123456789abcdef"[b[2] & 15]) +
                           " is not supported; lamda reads unsigned-byte IDX files (type 0x08, "
                           "the MNIST family)");
    const std::size_t ndims = b[3];
    if (ndims == 0 || ndims > 4)
        throw DatasetError(path + ": IDX file with " + std::to_string(ndims) +
                           " dimensions; expected 1 (labels), 3 or 4 (images)");
    if (b.size() < 4 + 4 * ndims)
        throw DatasetError(path + ": truncated IDX header (the file ends inside the dimensions)");
    Array a;
    for (std::size_t k = 0; k < ndims; ++k) {
        const unsigned char* p = b.data() + 4 + 4 * k;
        a.dims.push_back((std::int64_t{p[0]} << 24) | (std::int64_t{p[1]} << 16) |
                         (std::int64_t{p[2]} << 8) | std::int64_t{p[3]});
    }
    const std::int64_t payload = static_cast<std::int64_t>(b.size() - 4 - 4 * ndims);
    const std::int64_t need = checked_bytes(a.dims, 1, std::numeric_limits<std::int64_t>::max() / 2);
    if (need != payload)
        throw DatasetError(path + ": the IDX header claims " + dims_string(a.dims) + " = " +
                           (need < 0 ? std::string("an impossible number of") : std::to_string(need)) +
                           " bytes of data, but the file holds " + std::to_string(payload) +
                           (need > payload || need < 0 ? " (truncated or corrupt)" : " (trailing bytes)"));
    // The payload moves in place (no second copy of a file that may be 1 GiB).
    b.erase(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(4 + 4 * ndims));
    a.u8 = std::move(b);
    return a;
}

// --- .npy -------------------------------------------------------------------------------------

// The few Python literals an .npy header holds: {'descr': '<f4', 'fortran_order': False,
// 'shape': (60000, 28, 28), }
struct NpyHeader {
    std::string descr;
    bool fortran_order = false;
    std::vector<std::int64_t> shape;
    bool has_descr = false, has_order = false, has_shape = false;
};

inline NpyHeader parse_npy_header(std::string_view h, const std::string& path) {
    NpyHeader out;
    std::size_t i = 0;
    const auto fail = [&](const std::string& what) -> DatasetError {
        return DatasetError(path + ": malformed .npy header (" + what + "): " + std::string(h));
    };
    const auto skip = [&] {
        while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) ++i;
    };
    const auto expect = [&](char c) {
        skip();
        if (i >= h.size() || h[i] != c) throw fail(std::string("expected '") + c + "'");
        ++i;
    };
    const auto string_lit = [&]() -> std::string {
        skip();
        if (i >= h.size() || (h[i] != '\'' && h[i] != '"')) throw fail("expected a string");
        const char q = h[i++];
        const std::size_t start = i;
        while (i < h.size() && h[i] != q) ++i;
        if (i >= h.size()) throw fail("unterminated string");
        return std::string(h.substr(start, i++ - start));
    };
    expect('{');
    while (true) {
        skip();
        if (i < h.size() && h[i] == '}') break;
        const std::string key = string_lit();
        expect(':');
        skip();
        if (key == "descr") {
            out.descr = string_lit();
            out.has_descr = true;
        } else if (key == "fortran_order") {
            if (h.substr(i, 4) == "True") {
                out.fortran_order = true;
                i += 4;
            } else if (h.substr(i, 5) == "False") {
                i += 5;
            } else {
                throw fail("fortran_order is neither True nor False");
            }
            out.has_order = true;
        } else if (key == "shape") {
            expect('(');
            while (true) {
                skip();
                if (i < h.size() && h[i] == ')') break;
                std::int64_t v = 0;
                std::size_t digits = 0;
                while (i < h.size() && h[i] >= '0' && h[i] <= '9') {
                    if (++digits > 12) throw fail("a dimension is too large");
                    v = v * 10 + (h[i++] - '0');
                }
                if (digits == 0) throw fail("expected a dimension");
                out.shape.push_back(v);
                if (out.shape.size() > 8) throw fail("more than 8 dimensions");
                skip();
                if (i < h.size() && h[i] == ',') ++i;
                else if (i >= h.size() || h[i] != ')') throw fail("expected ',' or ')' in shape");
            }
            ++i;
            out.has_shape = true;
        } else {
            throw fail("unknown key '" + key + "'");
        }
        skip();
        if (i < h.size() && h[i] == ',') ++i;
    }
    if (!out.has_descr || !out.has_order || !out.has_shape)
        throw fail("it needs descr, fortran_order and shape");
    return out;
}

inline Array parse_npy(const std::vector<unsigned char>& b, const std::string& path) {
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (b.size() < 10 || std::memcmp(b.data(), magic, 6) != 0)
        throw DatasetError(path + ": not a NumPy .npy file (bad magic)");
    const int major = b[6];
    if (major < 1 || major > 3)
        throw DatasetError(path + ": .npy format version " + std::to_string(major) +
                           " is not supported (1 to 3 are)");
    std::size_t header_len = 0, start = 0;
    if (major == 1) {
        header_len = b[8] | (std::size_t{b[9]} << 8);
        start = 10;
    } else {
        if (b.size() < 12) throw DatasetError(path + ": truncated .npy header");
        header_len = b[8] | (std::size_t{b[9]} << 8) | (std::size_t{b[10]} << 16) |
                     (std::size_t{b[11]} << 24);
        start = 12;
    }
    if (header_len > (1u << 20) || start + header_len > b.size())
        throw DatasetError(path + ": truncated .npy header (it claims " +
                           std::to_string(header_len) + " bytes)");
    const NpyHeader h = parse_npy_header(
        std::string_view(reinterpret_cast<const char*>(b.data() + start), header_len), path);
    // descr: byte order ('<' little, '>' big, '|' or '=' not applicable / native) + kind + size.
    if (h.descr.size() < 3) throw DatasetError(path + ": unsupported .npy dtype '" + h.descr + "'");
    const char order = h.descr[0], kind = h.descr[1];
    const std::string size_text = h.descr.substr(2);
    const int item = size_text == "1" ? 1 : size_text == "2" ? 2 : size_text == "4" ? 4 : size_text == "8" ? 8 : 0;
    const bool order_ok = order == '<' || order == '>' || order == '|' || order == '=';
    const bool is_int = kind == 'i' || kind == 'u';
    const bool is_f32 = kind == 'f' && item == 4;
    if (!order_ok || item == 0 || !(is_int || is_f32))
        throw DatasetError(path + ": .npy dtype '" + h.descr +
                           "' is not supported (images: uint8 or float32; labels: integers)");
    Array a;
    a.dims = h.shape;
    if (h.fortran_order && a.dims.size() > 1)
        throw DatasetError(path + ": .npy array is in Fortran order; save it in C order "
                                  "(numpy.ascontiguousarray)");
    const std::int64_t payload = static_cast<std::int64_t>(b.size() - start - header_len);
    const std::int64_t need = checked_bytes(a.dims, item, std::numeric_limits<std::int64_t>::max() / 2);
    if (need != payload)
        throw DatasetError(path + ": the .npy header claims " + dims_string(a.dims) + " values of " +
                           std::to_string(item) + " byte(s) = " +
                           (need < 0 ? std::string("an impossible number of") : std::to_string(need)) +
                           " bytes, but the file holds " + std::to_string(payload) +
                           (need > payload || need < 0 ? " (truncated or corrupt)" : " (trailing bytes)"));
    const unsigned char* p = b.data() + start + header_len;
    const std::size_t n = static_cast<std::size_t>(payload / item);
    // Integers widen to 8 bytes each: bounded, so a 1 GiB file of int8 cannot take 8 GiB.
    if (is_int && item < 8 && !(kind == 'u' && item == 1) && n > (std::size_t{1} << 25))
        throw DatasetError(path + ": " + std::to_string(n) + " integer values, more than the limit of " +
                           std::to_string(std::size_t{1} << 25) + " (labels)");
    // Little-endian unless '>' (and '=' means this machine's order, which lamda's targets share
    // with numpy's default '<').
    const bool big = order == '>';
    const auto load = [&](std::size_t k) -> std::uint64_t {
        std::uint64_t v = 0;
        for (int j = 0; j < item; ++j) {
            const unsigned char byte = p[k * static_cast<std::size_t>(item) + static_cast<std::size_t>(j)];
            v |= std::uint64_t{byte} << (8 * (big ? item - 1 - j : j));
        }
        return v;
    };
    if (is_f32) {
        a.f32.resize(n);
        for (std::size_t k = 0; k < n; ++k) {
            const auto bits = static_cast<std::uint32_t>(load(k));
            std::memcpy(&a.f32[k], &bits, 4);
        }
    } else if (kind == 'u' && item == 1) {
        a.u8.assign(p, p + n);
    } else {
        a.ints.resize(n);
        for (std::size_t k = 0; k < n; ++k) {
            std::uint64_t v = load(k);
            if (kind == 'i' && item < 8 && (v >> (8 * item - 1)) & 1) v |= ~std::uint64_t{0} << (8 * item);  // sign-extend
            if (kind == 'u' && item == 8 && v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                v = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
            a.ints[k] = static_cast<std::int64_t>(v);
        }
    }
    return a;
}

inline Array read_array(const std::string& path, const DatasetLimits& limits) {
    std::vector<unsigned char> bytes = read_bytes(path, limits);
    if (bytes.size() >= 6 && bytes[0] == 0x93 && bytes[1] == 'N') return parse_npy(bytes, path);
    return parse_idx(std::move(bytes), path);
}

}  // namespace dataset_detail

// Images and labels from two files (IDX or .npy, raw or gzip, in any combination). `classes` is
// max label + 1. Throws DatasetError.
inline Dataset read_dataset_pair(const std::string& images_path, const std::string& labels_path,
                                 const DatasetLimits& limits = {}) {
    using dataset_detail::Array;
    Array im = dataset_detail::read_array(images_path, limits);
    const Array lb = dataset_detail::read_array(labels_path, limits);
    if (im.dims.size() != 3 && im.dims.size() != 4)
        throw DatasetError(images_path + ": images are " + dataset_detail::dims_string(im.dims) +
                           "; expected N x H x W or N x H x W x C");
    if (!im.ints.empty())
        throw DatasetError(images_path + ": images must be uint8 or float32, not another integer type");
    const bool labels_column = lb.dims.size() == 2 && lb.dims[1] == 1;
    if (lb.dims.size() != 1 && !labels_column)
        throw DatasetError(labels_path + ": labels are " + dataset_detail::dims_string(lb.dims) +
                           "; expected one dimension (N)");
    if (!lb.f32.empty())
        throw DatasetError(labels_path + ": labels must be integers, not float32");
    Dataset d;
    d.shape = Shape{im.dims[1], im.dims[2], im.dims.size() == 4 ? im.dims[3] : 1};
    if (!d.shape.known() || im.dims[0] == 0)
        throw DatasetError(images_path + ": no images (" + dataset_detail::dims_string(im.dims) + ")");
    if (lb.dims[0] != im.dims[0])
        throw DatasetError(labels_path + ": " + std::to_string(lb.dims[0]) + " labels for the " +
                           std::to_string(im.dims[0]) + " images of " + images_path);
    const auto n = static_cast<std::size_t>(im.dims[0]);
    d.labels.resize(n);
    std::int64_t max_label = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::int64_t v = lb.u8.empty() ? lb.ints[i] : std::int64_t{lb.u8[i]};
        if (v < 0 || v >= limits.max_classes)
            throw DatasetError(labels_path + ": label " + std::to_string(v) + " of image " +
                               std::to_string(i) + " is out of range (0 to " +
                               std::to_string(limits.max_classes - 1) + ")");
        d.labels[i] = static_cast<std::int32_t>(v);
        max_label = std::max(max_label, v);
    }
    d.classes = static_cast<int>(max_label + 1);
    if (!im.u8.empty()) {
        d.pixels = std::move(im.u8);  // kept as bytes; converted an image at a time
    } else {
        d.images = std::move(im.f32);
        for (std::size_t k = 0; k < d.images.size(); ++k)
            if (!std::isfinite(d.images[k]))
                throw DatasetError(images_path + ": value " + std::to_string(k) + " is not finite");
    }
    return d;
}

// The file names load_dataset() tries in a directory, in order: {train images, train labels,
// test images, test labels} for each naming scheme (IDX names also with .gz).
inline std::vector<std::vector<std::string>> dataset_file_names() {
    return {
        {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte"},
        {"train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte",
         "t10k-labels.idx1-ubyte"},
        {"train-images-idx4-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx4-ubyte",
         "t10k-labels-idx1-ubyte"},
        {"train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"},
        {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"},
    };
}

// A training set and (when the directory has one) a test set from `dir`. Throws DatasetError
// naming what was looked for when no training pair is there.
inline DatasetSplits load_dataset_dir(const std::string& dir, const DatasetLimits& limits = {}) {
    namespace fs = std::filesystem;
    const auto find = [&](const std::string& name) -> std::string {
        std::error_code ec;
        for (const std::string& candidate : {name, name + ".gz"})
            if (fs::is_regular_file(fs::path(dir) / candidate, ec)) return (fs::path(dir) / candidate).string();
        return "";
    };
    std::string looked;
    for (const auto& names : dataset_file_names()) {
        const std::string train_images = find(names[0]), train_labels = find(names[1]);
        looked += (looked.empty() ? "" : ", ") + names[0] + " + " + names[1];
        if (train_images.empty() && train_labels.empty()) continue;
        if (train_images.empty() || train_labels.empty())
            throw DatasetError(dir + ": has " + (train_images.empty() ? train_labels : train_images) +
                               " but not " + (train_images.empty() ? names[0] : names[1]));
        DatasetSplits out;
        out.name = dir;
        out.train = read_dataset_pair(train_images, train_labels, limits);
        const std::string test_images = find(names[2]), test_labels = find(names[3]);
        if (test_images.empty() != test_labels.empty())
            throw DatasetError(dir + ": has " + (test_images.empty() ? test_labels : test_images) +
                               " but not " + (test_images.empty() ? names[2] : names[3]));
        if (!test_images.empty()) {
            out.test = read_dataset_pair(test_images, test_labels, limits);
            if (out.test.shape != out.train.shape)
                throw DatasetError(test_images + ": images are " + to_string(out.test.shape) +
                                   ", the training images " + to_string(out.train.shape));
            if (out.test.classes > out.train.classes)
                throw DatasetError(test_labels + ": label " + std::to_string(out.test.classes - 1) +
                                   " is outside the training set's classes 0 to " +
                                   std::to_string(out.train.classes - 1));
            out.test.classes = out.train.classes;
        } else {
            out.test.shape = out.train.shape;
            out.test.classes = out.train.classes;
        }
        return out;
    }
    throw DatasetError(dir + ": no dataset files (looked for " + looked + ", IDX also with .gz)");
}

// `spec` is "fashion-mnist" (Debian's dataset-fashion-mnist package, installed in
// /usr/share/datasets/fashion-mnist) or a directory (load_dataset_dir). Throws DatasetError.
inline DatasetSplits load_dataset(const std::string& spec, const DatasetLimits& limits = {}) {
    std::error_code ec;
    if (spec == "fashion-mnist" || spec == "fashion_mnist") {
        const std::string dir(fashion_mnist_dir);
        if (!std::filesystem::is_directory(dir, ec))
            throw DatasetError("dataset 'fashion-mnist': " + dir +
                               " is missing; install Debian's dataset-fashion-mnist package "
                               "(apt-get install dataset-fashion-mnist) or pass a directory of "
                               "IDX or .npy files");
        DatasetSplits d = load_dataset_dir(dir, limits);
        d.name = "fashion-mnist";
        return d;
    }
    if (!std::filesystem::is_directory(spec, ec))
        throw DatasetError("dataset '" + spec +
                           "': neither a known name (fashion-mnist) nor a directory of IDX or "
                           ".npy files");
    return load_dataset_dir(spec, limits);
}

// ---------------------------------------------------------------------------------------------
// Splits and subsets
// ---------------------------------------------------------------------------------------------

// A permutation of 0..n-1 from `seed`, the same on every platform (SplitMix64 and Fisher-Yates,
// not std::shuffle, whose results differ between standard libraries).
inline std::vector<std::size_t> seeded_permutation(std::size_t n, std::uint64_t seed) {
    std::vector<std::size_t> p(n);
    for (std::size_t i = 0; i < n; ++i) p[i] = i;
    detail::SplitMix64 rng{seed ^ 0x6c616d6461ULL};
    for (std::size_t i = n; i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng.next() % i);
        std::swap(p[i - 1], p[j]);
    }
    return p;
}

// The images at `indices`, in that order.
inline Dataset select(const Dataset& d, const std::vector<std::size_t>& indices) {
    Dataset out;
    out.shape = d.shape;
    out.classes = d.classes;
    const auto per = static_cast<std::size_t>(d.shape.elements());
    out.labels.resize(indices.size());
    (d.pixels.empty() ? out.images.resize(indices.size() * per) : out.pixels.resize(indices.size() * per));
    for (std::size_t k = 0; k < indices.size(); ++k) {
        const std::size_t i = indices.at(k);
        if (i >= d.size()) throw DatasetError("select: index " + std::to_string(i) + " out of range");
        if (d.pixels.empty())
            std::copy(d.images.begin() + static_cast<std::ptrdiff_t>(i * per),
                      d.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * per),
                      out.images.begin() + static_cast<std::ptrdiff_t>(k * per));
        else
            std::copy(d.pixels.begin() + static_cast<std::ptrdiff_t>(i * per),
                      d.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * per),
                      out.pixels.begin() + static_cast<std::ptrdiff_t>(k * per));
        out.labels[k] = d.labels[i];
    }
    return out;
}

// The seed of every validation split lamda makes (`lamda train`, `lamda generate`, QAT), whatever
// the run's own seed: a model lamda trained never sees the images another run validates on, so a
// start model adapted with `--seed 2` is not judged on images it learned (docs/adapt.md: its
// validation accuracy read 91.67% there, against 90.17% on the images it had not seen).
inline constexpr std::uint64_t validation_split_seed = 1;

// The share of the training set held out for validation when a run does not say (TrainOptions,
// QAT in `lamda quantize`).
inline constexpr double default_validation_fraction = 0.1;

// Splits `d` into {train, validation}: a seeded random `validation_fraction` of it (at least one
// image when the fraction is positive) is the validation set. The same seed gives the same split.
inline std::pair<Dataset, Dataset> split_dataset(const Dataset& d, double validation_fraction,
                                                 std::uint64_t seed) {
    if (!(validation_fraction >= 0.0 && validation_fraction < 1.0))
        throw DatasetError("split_dataset: validation fraction " + std::to_string(validation_fraction) +
                           " is not in [0, 1)");
    const std::vector<std::size_t> p = seeded_permutation(d.size(), seed);
    std::size_t n_val = static_cast<std::size_t>(validation_fraction * static_cast<double>(d.size()) + 0.5);
    if (validation_fraction > 0 && n_val == 0 && d.size() > 1) n_val = 1;
    n_val = std::min(n_val, d.size());
    std::vector<std::size_t> val(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(n_val));
    std::vector<std::size_t> train(p.begin() + static_cast<std::ptrdiff_t>(n_val), p.end());
    // Keep file order inside each part: a subset of the training part is then a seeded sample
    // too, and the split reads the same however it is later subsampled.
    std::sort(val.begin(), val.end());
    std::sort(train.begin(), train.end());
    return {select(d, train), select(d, val)};
}

// lamda's validation split of a training set: {train, validation}, by validation_split_seed.
inline std::pair<Dataset, Dataset> validation_split(const Dataset& train,
                                                    double fraction = default_validation_fraction) {
    return split_dataset(train, fraction, validation_split_seed);
}

// A seeded random sample of `n` images (all of them, in order, when n is 0 or >= size()).
inline Dataset subset(const Dataset& d, std::size_t n, std::uint64_t seed) {
    if (n == 0 || n >= d.size()) return d;
    std::vector<std::size_t> p = seeded_permutation(d.size(), seed);
    p.resize(n);
    std::sort(p.begin(), p.end());
    return select(d, p);
}

// The calibration images of an int8 quantization: the first `n` images (all when n >= size()) of
// `train` in seeded_permutation(size, seed) order. The int8 search (TorchTrainer) and
// `lamda quantize` both draw them here, so the same seed gives the same slice.
inline std::vector<Tensor> calibration_slice(const Dataset& train, std::size_t n, std::uint64_t seed) {
    n = std::min(n, train.size());
    const std::vector<std::size_t> order = seeded_permutation(train.size(), seed);
    std::vector<Tensor> images;
    images.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        Tensor t(train.shape);
        train.copy_image(order[i], t.data.data());
        images.push_back(std::move(t));
    }
    return images;
}

// Throws DatasetError unless `graph` classifies `d`'s images: its input is d.shape and its output
// is 1x1xK with K >= d.classes (one score per class; the prediction is the largest).
inline void check_classifier(const Graph& graph, const Dataset& d, std::string_view dataset_name = "") {
    const std::string where = dataset_name.empty() ? std::string("the dataset") : "dataset '" + std::string(dataset_name) + "'";
    if (graph.layers.empty()) throw DatasetError("the model has no layers");
    const Shape in = graph.input().shape, out = graph.output().shape;
    if (in != d.shape)
        throw DatasetError("the model's input is " + to_string(in) + " but " + where + "'s images are " +
                           to_string(d.shape));
    if (out.h != 1 || out.w != 1 || out.c < d.classes)
        throw DatasetError("the model's output '" + graph.output().name + "' is " + to_string(out) +
                           "; classifying " + where + " needs 1x1x" + std::to_string(d.classes) +
                           " (one score per class)");
}

// ---------------------------------------------------------------------------------------------
// Accuracy through the XNNPACK executor
// ---------------------------------------------------------------------------------------------

struct Accuracy {
    double accuracy = 0;     // correct / n, in [0, 1]
    std::int64_t correct = 0;
    std::int64_t n = 0;
};

// Index of the largest of `n` scores; the first one on ties (as torch's argmax).
inline std::int64_t argmax(const float* scores, std::int64_t n) noexcept {
    std::int64_t best = 0;
    for (std::int64_t k = 1; k < n; ++k)
        if (scores[k] > scores[best]) best = k;
    return best;
}

// The graph `weights` fit: `graph` itself, or `graph` with its batchnorms folded (exec/fold.hpp) when
// the weights were saved folded, as `lamda train --out` saves them. Throws ExecutorError listing
// the problems against the folded graph when neither fits.
inline Graph graph_for_weights(const Graph& graph, const Weights& weights) {
    if (validate_weights(graph, weights).empty()) return graph;
    Graph folded = fold_batchnorm_graph(graph);
    const std::vector<std::string> problems = validate_weights(folded, weights);
    if (problems.empty()) return folded;
    std::string msg = "the weights fit neither the model nor the model with batch norm folded:";
    for (const std::string& p : problems) msg += "\n  " + p;
    throw ExecutorError(msg);
}

// A weights file and the graph it runs: what `lamda bench` and `lamda eval` read.
struct ModelWeights {
    Graph graph;              // the graph the weights fit (batch norm folded when they were saved so)
    Weights weights;          // fp32: every tensor; int8: the F32 tensors of the float layers
    QuantizedModel quantized; // int8 only
    bool int8 = false;        // an int8 file from `lamda quantize` ("lamda.precision": "int8")
};

// The weights in `file` (named `where` in errors) for `graph`: an int8 file gives the
// batch-norm-folded graph and its quantized model (read_quantized: a WeightsError names a bad
// tensor); an fp32 file the graph it fits (graph_for_weights: an ExecutorError lists the
// mismatches). `file` is taken by value so that the fp32 tensors move out of it: the agent's
// memory budget counts one copy of the weights, not two.
inline ModelWeights model_weights_of(const Graph& graph, SafetensorsData file, const std::string& where) {
    ModelWeights m;
    m.int8 = is_quantized(file);
    if (m.int8) {
        m.graph = fold_batchnorm_graph(graph);
        m.quantized = read_quantized(m.graph, file, where, m.weights);
    } else {
        m.weights = std::move(file.tensors);
        m.graph = graph_for_weights(graph, m.weights);
    }
    return m;
}

// model_weights_of() the file at `path`.
inline ModelWeights read_model_weights(const Graph& graph, const std::string& path) {
    return model_weights_of(graph, read_safetensors_file(path), path);
}

namespace dataset_detail {
// The first `limit` images of `d` (all when 0): `predict(image)` returns a pointer to the image's
// `scores` class scores (the model's outputs; the prediction is the largest of all of them).
template <class Predict>
inline Accuracy accuracy_over(const Dataset& d, std::size_t limit, std::int64_t scores, Predict&& predict) {
    const std::size_t n = limit == 0 ? d.size() : std::min(limit, d.size());
    Accuracy a;
    Tensor img(d.shape);
    for (std::size_t i = 0; i < n; ++i) {
        d.copy_image(i, img.data.data());
        if (argmax(predict(img), scores) == d.labels[i]) ++a.correct;
    }
    a.n = static_cast<std::int64_t>(n);
    a.accuracy = n ? static_cast<double>(a.correct) / static_cast<double>(n) : 0.0;
    return a;
}

#if defined(LAMDA_WITH_XNNPACK)
inline Accuracy accuracy_through(XnnExecutor& exec, const Dataset& d, std::size_t limit) {
    return accuracy_over(d, limit, exec.output_shape().c, [&](const Tensor& img) {
        std::copy(img.data.begin(), img.data.end(), exec.input());
        exec.run();
        return exec.output();
    });
}
#endif
}  // namespace dataset_detail

// Accuracy of `graph` with `weights` over the first `limit` images of `d` (all when 0), one image
// at a time through XnnExecutor (`threads` threads), or run_reference without XNNPACK. Weights
// saved with batch norm folded are accepted (graph_for_weights).
inline Accuracy evaluate_accuracy(const Graph& graph, const Weights& weights, const Dataset& d,
                                  int threads = 1, std::size_t limit = 0) {
    const Graph g = graph_for_weights(graph, weights);
    check_classifier(g, d);
#if defined(LAMDA_WITH_XNNPACK)
    XnnExecutor exec(g, weights, XnnOptions{threads});
    return dataset_detail::accuracy_through(exec, d, limit);
#else
    (void)threads;
    Tensor out;
    return dataset_detail::accuracy_over(d, limit, g.output().shape.c, [&](const Tensor& img) {
        out = run_reference(g, weights, img);
        return out.data.data();
    });
#endif
}

// The same for a quantized model (`lamda quantize`; data/weights.hpp's read_quantized): `graph`
// is the model's (batch norms folded), `float_weights` the F32 tensors of its float layers. It
// runs through XNNPACK's int8 operators, whose values equal the integer reference executor's
// (run_reference_int8, used without XNNPACK) and hence the int8 firmware's (deploy/firmware.hpp).
inline Accuracy evaluate_accuracy_int8(const Graph& graph, const QuantizedModel& model,
                                       const Weights& float_weights, const Dataset& d, int threads = 1,
                                       std::size_t limit = 0) {
    check_classifier(graph, d);
#if defined(LAMDA_WITH_XNNPACK)
    XnnOptions options{threads};
    options.int8 = true;
    options.quantized = &model;
    XnnExecutor exec(graph, float_weights, options);
    return dataset_detail::accuracy_through(exec, d, limit);
#else
    (void)threads;
    Int8Run run;
    return dataset_detail::accuracy_over(d, limit, graph.output().shape.c, [&](const Tensor& img) {
        run = run_reference_int8(graph, model, float_weights, img);
        return run.output.data.data();
    });
#endif
}

}  // namespace lamda

#endif  // LAMDA_DATA_DATASET_HPP
