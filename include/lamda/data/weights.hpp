// lamda/data/weights.hpp: named weight tensors, their expected shapes, deterministic random weights and
// a strict, bounded safetensors reader and writer. Needs only a C++17 compiler.
//
// Names and layouts (docs/weights.md): `LAYER.weight`, `LAYER.bias`; for batchnorm also
// `LAYER.running_mean`, `LAYER.running_var`. Layouts are PyTorch's, so a torch state_dict saved with
// safetensors loads as is:
//   conv2d  weight [out][in/groups][kh][kw]   (OIHW)     bias [out]
//   dwconv  weight [C*multiplier][1][kh][kw]             bias [C*multiplier]
//   fc      weight [out][in]                            bias [out]
//   batchnorm weight (gamma), bias (beta), running_mean, running_var: each [C]
// Quantized (int8) files, written by `lamda quantize` (docs/weights.md, docs/int8.md): the same
// names with dtype I8 weights and I32 biases, plus LAYER.weight_scale (F32), LAYER.act_scale (F32)
// and LAYER.act_zero_point (I32), and "lamda.precision": "int8" in __metadata__;
// read_quantized() checks one against a graph. The float path refuses int8 tensors by name.
#ifndef LAMDA_DATA_WEIGHTS_HPP
#define LAMDA_DATA_WEIGHTS_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "../exception.hpp"
#include "../core/ir.hpp"
#include "../core/quant.hpp"
#include "../detail/checked.hpp"
#include "../detail/hash.hpp"
#include "tensor.hpp"

namespace lamda {

// A tensor's element type in a safetensors file.
enum class WeightDType { F32, I8, I32 };

inline const char* dtype_name(WeightDType t) noexcept {
    switch (t) {
    case WeightDType::F32: return "F32";
    case WeightDType::I8: return "I8";
    case WeightDType::I32: return "I32";
    }
    return "F32";
}

// One named weight tensor: row-major (last dimension fastest) values; float32 in `data` unless
// dtype says I8 (values in `i8`) or I32 (values in `i32`).
struct WeightTensor {
    std::vector<std::int64_t> shape;
    std::vector<float> data;
    WeightDType dtype = WeightDType::F32;
    std::vector<std::int8_t> i8{};    // initialised: {shape, data} stays warning-free
    std::vector<std::int32_t> i32{};

    // How many values the tensor holds, in the vector its dtype uses.
    std::size_t stored() const noexcept {
        return dtype == WeightDType::I8 ? i8.size() : dtype == WeightDType::I32 ? i32.size() : data.size();
    }

    // The product of the dimensions; -1 when one is negative or the product overflows.
    std::int64_t elements() const noexcept {
        const std::optional<std::int64_t> n = detail::checked_elements(shape);
        return n ? *n : -1;
    }
};

// Tensor name -> tensor, ordered by name.
using Weights = std::map<std::string, WeightTensor>;

// Thrown by the safetensors reader and writer; the message names the file and, where one is
// concerned, the tensor.
class WeightsError : public Exception {
public:
    using Exception::Exception;
};

// "[16,3,3,3]"
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ',';
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

// ---------------------------------------------------------------------------------------------
// Expected tensors
// ---------------------------------------------------------------------------------------------

struct ExpectedTensor {
    std::string name;  // "LAYER.weight"
    std::vector<std::int64_t> shape;
    int layer = 0;     // index into Graph::layers
};

// The tensors a graph with inferred shapes needs, in layer order.
inline std::vector<ExpectedTensor> expected_weights(const Graph& graph) {
    std::vector<ExpectedTensor> out;
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        if (!has_weights(l.op) || l.inputs.empty()) continue;
        const auto in_index = static_cast<std::size_t>(l.inputs.front());
        if (in_index >= graph.layers.size()) continue;
        const Shape in = graph.layers[in_index].shape;
        const int li = static_cast<int>(i);
        switch (l.op) {
        case OpKind::Conv2d: {
            const std::int64_t g = l.groups > 0 ? l.groups : 1;
            out.push_back({l.name + ".weight", {l.out_channels, in.c / g, l.kernel_h, l.kernel_w}, li});
            if (l.bias) out.push_back({l.name + ".bias", {l.out_channels}, li});
            break;
        }
        case OpKind::DepthwiseConv2d: {
            const std::int64_t oc = in.c * l.multiplier;
            out.push_back({l.name + ".weight", {oc, 1, l.kernel_h, l.kernel_w}, li});
            if (l.bias) out.push_back({l.name + ".bias", {oc}, li});
            break;
        }
        case OpKind::FullyConnected:
            out.push_back({l.name + ".weight", {l.out_channels, in.elements()}, li});
            if (l.bias) out.push_back({l.name + ".bias", {l.out_channels}, li});
            break;
        case OpKind::BatchNorm:
            for (const char* suffix : {".weight", ".bias", ".running_mean", ".running_var"})
                out.push_back({l.name + suffix, {in.c}, li});
            break;
        default: break;
        }
    }
    return out;
}

// Every problem with `weights` for `graph` (empty when they fit): a missing tensor, a tensor of the
// wrong shape, a tensor whose data does not match its shape, a batchnorm running_var that is
// negative or not finite, and any tensor the graph does not use (an error, not a warning: it
// usually means the weights belong to another model).
inline std::vector<std::string> validate_weights(const Graph& graph, const Weights& weights) {
    std::vector<std::string> errors;
    const std::vector<ExpectedTensor> expected = expected_weights(graph);
    std::map<std::string_view, const ExpectedTensor*> wanted;
    for (const ExpectedTensor& e : expected) wanted.emplace(e.name, &e);

    for (const ExpectedTensor& e : expected) {
        const auto it = weights.find(e.name);
        const Layer& layer = graph.layers[static_cast<std::size_t>(e.layer)];
        if (it == weights.end()) {
            errors.push_back("missing tensor '" + e.name + "' (shape " + shape_string(e.shape) +
                             ") for " + std::string(op_name(layer.op)) + " layer '" + layer.name +
                             "'");
            continue;
        }
        const WeightTensor& t = it->second;
        if (t.dtype != WeightDType::F32) {
            errors.push_back("'" + e.name + "' is " + dtype_name(t.dtype) +
                             ": these are quantized (int8) weights, and this needs F32 weights "
                             "(int8 files are read where int8 is expected; docs/int8.md)");
            continue;
        }
        if (t.shape != e.shape) {
            errors.push_back("'" + e.name + "' has shape " + shape_string(t.shape) + ", expected " +
                             shape_string(e.shape));
            continue;
        }
        if (static_cast<std::int64_t>(t.data.size()) != t.elements()) {
            errors.push_back("'" + e.name + "' has " + std::to_string(t.data.size()) +
                             " values but its shape " + shape_string(t.shape) + " needs " +
                             std::to_string(t.elements()));
            continue;
        }
        const std::string_view name(e.name);
        if (name.size() > 12 && name.substr(name.size() - 12) == ".running_var") {
            for (float v : t.data)
                if (!(v >= 0.0f) || !std::isfinite(v)) {
                    errors.push_back("'" + e.name + "' has a negative or non-finite value (" +
                                     std::to_string(v) + "); variances must be >= 0");
                    break;
                }
        }
    }
    for (const auto& kv : weights) {
        if (wanted.count(kv.first)) continue;
        const auto dot = kv.first.rfind('.');
        const std::string layer_name = dot == std::string::npos ? kv.first : kv.first.substr(0, dot);
        const int li = graph.find(layer_name);
        std::string why;
        if (li < 0)
            why = "there is no layer '" + layer_name + "'";
        else {
            const Layer& l = graph.layers[static_cast<std::size_t>(li)];
            if (!has_weights(l.op))
                why = std::string(op_name(l.op)) + " layer '" + l.name + "' has no weights";
            else if (!l.bias && kv.first == l.name + ".bias")
                why = "layer '" + l.name + "' has bias=false";
            else
                why = std::string(op_name(l.op)) + " layer '" + l.name + "' takes no such tensor";
        }
        errors.push_back("unexpected tensor '" + kv.first + "': " + why);
    }
    return errors;
}

// ---------------------------------------------------------------------------------------------
// Deterministic random weights
// ---------------------------------------------------------------------------------------------

namespace detail {

// splitmix64: the same sequence on every platform (std's distributions are not portable).
struct SplitMix64 {
    std::uint64_t state;
    std::uint64_t next() noexcept {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [lo, hi).
    float uniform(float lo, float hi) noexcept {
        const double u = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
        return static_cast<float>(lo + (hi - lo) * u);
    }
};

}  // namespace detail

// Fills every tensor `graph` needs (shapes inferred). Each tensor's values depend only on `seed`
// and its name, so editing one layer leaves the others' weights unchanged.
//   conv2d/dwconv/fc weight: He-uniform, U(-b, b) with b = sqrt(6 / fan_in), fan_in = inputs per
//     output (in/groups*kh*kw, kh*kw, in); bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's).
//   batchnorm: gamma U(0.5, 1.5), beta U(-0.2, 0.2), running_mean U(-0.2, 0.2),
//     running_var U(0.5, 2).
inline Weights random_weights(const Graph& graph, std::uint64_t seed) {
    Weights w;
    for (const ExpectedTensor& e : expected_weights(graph)) {
        WeightTensor t;
        t.shape = e.shape;
        t.data.resize(static_cast<std::size_t>(std::max<std::int64_t>(0, t.elements())));
        detail::SplitMix64 rng{seed ^ detail::fnv1a(e.name)};
        const Layer& l = graph.layers[static_cast<std::size_t>(e.layer)];
        float lo = -1.0f, hi = 1.0f;
        const std::string_view suffix = std::string_view(e.name).substr(l.name.size());
        if (l.op == OpKind::BatchNorm) {
            if (suffix == ".weight") lo = 0.5f, hi = 1.5f;
            else if (suffix == ".running_var") lo = 0.5f, hi = 2.0f;
            else lo = -0.2f, hi = 0.2f;
        } else {
            // fan_in: inputs per output, i.e. the weight's dimensions after the first.
            const Shape in = graph.layers[static_cast<std::size_t>(l.inputs.front())].shape;
            std::int64_t fan_in = 1;
            if (l.op == OpKind::Conv2d)
                fan_in = in.c / std::max(1, l.groups) * l.kernel_h * l.kernel_w;
            else if (l.op == OpKind::DepthwiseConv2d)
                fan_in = std::int64_t{l.kernel_h} * l.kernel_w;
            else
                fan_in = in.elements();
            if (fan_in < 1) fan_in = 1;
            const double b = suffix == ".weight" ? std::sqrt(6.0 / static_cast<double>(fan_in))
                                                 : 1.0 / std::sqrt(static_cast<double>(fan_in));
            lo = static_cast<float>(-b);
            hi = static_cast<float>(b);
        }
        for (float& v : t.data) v = rng.uniform(lo, hi);
        w.emplace(e.name, std::move(t));
    }
    return w;
}

// ---------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------
// Format: 8-byte little-endian header length N, N bytes of JSON
//   {"NAME":{"dtype":"F32","shape":[...],"data_offsets":[BEGIN,END]}, ..., "__metadata__":{"k":"v"}}
// then the data section; offsets are relative to its start. The reader accepts F32, I8 and I32
// tensors, and skips torch's integer `*.num_batches_tracked` counters (I64 or I32).

// Every limit is checked before memory is allocated for what it bounds; docs/security.md lists
// them. The JSON header's parsed form costs about 100 bytes per JSON value, so max_json_values
// bounds the header's memory (~200 MB at the default) whatever its byte length.
struct SafetensorsLimits {
    std::uint64_t max_header_bytes = 16ull << 20;  // 16 MiB (~100k tensors with long names)
    std::size_t max_tensors = 100000;
    std::size_t max_dims = 8;
    std::int64_t max_elements = std::int64_t{1} << 31;  // per tensor
    std::size_t max_json_values = 2000000;              // values in the header
    std::uint64_t max_file_bytes = (std::uint64_t{1} << 36) + (16ull << 20);  // 64 GiB of data + header
};

struct SafetensorsData {
    Weights tensors;
    std::map<std::string, std::string> metadata;
};

namespace detail {

// A strict JSON parser for the safetensors header: objects, arrays, strings, numbers, true, false,
// null; bounded depth; duplicate keys are errors.
struct JsonValue {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    std::string text;  // String: the decoded string; Number: its literal text
    bool boolean = false;
    std::vector<JsonValue> items;
    std::vector<std::pair<std::string, JsonValue>> members;
};

class JsonParser {
public:
    explicit JsonParser(std::string_view s, std::size_t max_values = static_cast<std::size_t>(-1))
        : s_(s), max_values_(max_values) {}

    // Parses the whole text as one value; on failure returns false and sets error().
    bool parse(JsonValue& out) {
        skip_ws();
        if (!value(out, 0)) return false;
        skip_ws();
        if (pos_ != s_.size()) return fail("unexpected text after the JSON value");
        return true;
    }
    const std::string& error() const noexcept { return error_; }

private:
    static constexpr int max_depth = 16;
    std::string_view s_;
    std::size_t max_values_;
    std::size_t values_ = 0;
    std::size_t pos_ = 0;
    std::string error_;

    bool fail(const std::string& what) {
        if (error_.empty()) error_ = what + " at byte " + std::to_string(pos_);
        return false;
    }
    void skip_ws() {
        while (pos_ < s_.size() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool literal(std::string_view word) {
        if (s_.substr(pos_, word.size()) != word) return fail("invalid literal");
        pos_ += word.size();
        return true;
    }
    bool value(JsonValue& v, int depth) {
        if (depth > max_depth) return fail("JSON nested too deeply");
        if (++values_ > max_values_) return fail("more than " + std::to_string(max_values_) + " JSON values");
        if (pos_ >= s_.size()) return fail("unexpected end of JSON");
        const char c = s_[pos_];
        if (c == '{') return object(v, depth);
        if (c == '[') return array(v, depth);
        if (c == '"') {
            v.kind = JsonValue::Kind::String;
            return string(v.text);
        }
        if (c == 't') {
            v.kind = JsonValue::Kind::Bool;
            v.boolean = true;
            return literal("true");
        }
        if (c == 'f') {
            v.kind = JsonValue::Kind::Bool;
            return literal("false");
        }
        if (c == 'n') {
            v.kind = JsonValue::Kind::Null;
            return literal("null");
        }
        if (c == '-' || (c >= '0' && c <= '9')) return number(v);
        return fail(std::string("unexpected character '") + c + "'");
    }
    bool object(JsonValue& v, int depth) {
        v.kind = JsonValue::Kind::Object;
        ++pos_;  // '{'
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected a string key");
            std::string key;
            if (!string(key)) return false;
            skip_ws();
            if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected ':'");
            ++pos_;
            skip_ws();
            JsonValue member;
            if (!value(member, depth + 1)) return false;
            v.members.emplace_back(std::move(key), std::move(member));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == '}') {
                ++pos_;
                return unique_keys(v);
            }
            return fail("expected ',' or '}'");
        }
    }
    // Duplicate keys, found in O(n log n) (sorted), not by comparing every pair.
    bool unique_keys(const JsonValue& v) {
        if (v.members.size() < 2) return true;
        std::vector<std::string_view> keys;
        keys.reserve(v.members.size());
        for (const auto& m : v.members) keys.emplace_back(m.first);
        std::sort(keys.begin(), keys.end());
        for (std::size_t i = 1; i < keys.size(); ++i)
            if (keys[i] == keys[i - 1]) return fail("duplicate key '" + std::string(keys[i]) + "'");
        return true;
    }
    bool array(JsonValue& v, int depth) {
        v.kind = JsonValue::Kind::Array;
        ++pos_;  // '['
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            skip_ws();
            JsonValue item;
            if (!value(item, depth + 1)) return false;
            v.items.push_back(std::move(item));
            skip_ws();
            if (pos_ < s_.size() && s_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (pos_ < s_.size() && s_[pos_] == ']') {
                ++pos_;
                return true;
            }
            return fail("expected ',' or ']'");
        }
    }
    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    bool hex4(std::uint32_t& out) {
        if (s_.size() - pos_ < 4) return fail("truncated \\u escape");
        out = 0;
        for (int i = 0; i < 4; ++i) {
            const char h = s_[pos_++];
            out <<= 4;
            if (h >= '0' && h <= '9') out |= static_cast<std::uint32_t>(h - '0');
            else if (h >= 'a' && h <= 'f') out |= static_cast<std::uint32_t>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') out |= static_cast<std::uint32_t>(h - 'A' + 10);
            else return fail("invalid \\u escape");
        }
        return true;
    }
    bool string(std::string& out) {
        ++pos_;  // '"'
        for (;;) {
            if (pos_ >= s_.size()) return fail("unterminated string");
            const char c = s_[pos_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= s_.size()) return fail("unterminated string");
            const char e = s_[pos_++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                std::uint32_t cp = 0;
                if (!hex4(cp)) return false;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    std::uint32_t lo = 0;
                    if (s_.substr(pos_, 2) != "\\u") return fail("unpaired surrogate");
                    pos_ += 2;
                    if (!hex4(lo)) return false;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail("unpaired surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return fail("unpaired surrogate");
                }
                append_utf8(out, cp);
                break;
            }
            default: return fail("invalid escape in string");
            }
        }
    }
    bool number(JsonValue& v) {
        v.kind = JsonValue::Kind::Number;
        const std::size_t start = pos_;
        auto digit = [&] { return pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
        if (s_[pos_] == '-') ++pos_;
        if (!digit()) return fail("invalid number");
        if (s_[pos_] == '0') ++pos_;
        else
            while (digit()) ++pos_;
        if (pos_ < s_.size() && s_[pos_] == '.') {
            ++pos_;
            if (!digit()) return fail("invalid number");
            while (digit()) ++pos_;
        }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            if (!digit()) return fail("invalid number");
            while (digit()) ++pos_;
        }
        v.text = std::string(s_.substr(start, pos_ - start));
        return true;
    }
};

// A non-negative JSON integer no larger than `max`, or false.
inline bool json_uint(const JsonValue& v, std::uint64_t max, std::uint64_t& out) {
    if (v.kind != JsonValue::Kind::Number || v.text.empty() || v.text.size() > 19) return false;
    out = 0;
    for (char c : v.text) {
        if (c < '0' || c > '9') return false;  // no sign, fraction or exponent
        out = out * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return out <= max;
}

inline std::string json_quote(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += ch;
    }
    return out + '"';
}

}  // namespace detail

// Parses a safetensors file held in memory. `filename` is only used in error messages.
inline SafetensorsData parse_safetensors(std::string_view bytes, std::string_view filename,
                                         const SafetensorsLimits& limits = {}) {
    const std::string file = filename.empty() ? std::string("<safetensors>") : std::string(filename);
    auto error = [&](const std::string& what) { return WeightsError(file + ": " + what); };
    if (bytes.size() < 8)
        throw error("file is " + std::to_string(bytes.size()) +
                    " bytes, too short for the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    if (n > limits.max_header_bytes)
        throw error("header length " + std::to_string(n) + " exceeds the limit of " +
                    std::to_string(limits.max_header_bytes) + " bytes");
    if (n > bytes.size() - 8)
        throw error("header length " + std::to_string(n) + " runs past the end of the file (" +
                    std::to_string(bytes.size()) + " bytes)");
    const std::string_view header = bytes.substr(8, static_cast<std::size_t>(n));
    const std::string_view data = bytes.substr(8 + static_cast<std::size_t>(n));

    detail::JsonValue root;
    detail::JsonParser parser(header, limits.max_json_values);
    if (!parser.parse(root)) throw error("invalid JSON header: " + parser.error());
    if (root.kind != detail::JsonValue::Kind::Object)
        throw error("the JSON header is not an object");
    if (root.members.size() > limits.max_tensors + 1)
        throw error("header lists " + std::to_string(root.members.size()) +
                    " entries, more than the limit of " + std::to_string(limits.max_tensors));

    // Pass 1: every entry checked (dtype, shape, offsets) without copying any data.
    SafetensorsData out;
    struct Entry {
        std::uint64_t begin, end;
        const std::string* name;
        std::vector<std::int64_t> shape;
        bool skip;  // torch's integer counter: checked for its place, not loaded
        WeightDType dtype = WeightDType::F32;
    };
    std::vector<Entry> entries;
    entries.reserve(root.members.size());
    for (const auto& member : root.members) {
        const std::string& name = member.first;
        const detail::JsonValue& spec = member.second;
        if (name == "__metadata__") {
            if (spec.kind != detail::JsonValue::Kind::Object)
                throw error("__metadata__ is not an object");
            for (const auto& [k, v] : spec.members) {
                if (v.kind != detail::JsonValue::Kind::String)
                    throw error("__metadata__ value '" + k + "' is not a string");
                out.metadata[k] = v.text;
            }
            continue;
        }
        const std::string& tensor_name = name;  // C++17 lambdas cannot capture structured bindings
        auto terror = [&](const std::string& what) { return error("tensor '" + tensor_name + "': " + what); };
        if (spec.kind != detail::JsonValue::Kind::Object) throw terror("entry is not an object");
        const detail::JsonValue* dtype = nullptr;
        const detail::JsonValue* shape = nullptr;
        const detail::JsonValue* offsets = nullptr;
        for (const auto& [k, v] : spec.members) {
            if (k == "dtype") dtype = &v;
            else if (k == "shape") shape = &v;
            else if (k == "data_offsets") offsets = &v;
            else throw terror("unknown field '" + k + "'");
        }
        if (!dtype || !shape || !offsets)
            throw terror(std::string("missing field '") +
                         (!dtype ? "dtype" : !shape ? "shape" : "data_offsets") + "'");
        if (dtype->kind != detail::JsonValue::Kind::String) throw terror("dtype is not a string");
        if (shape->kind != detail::JsonValue::Kind::Array) throw terror("shape is not an array");
        if (offsets->kind != detail::JsonValue::Kind::Array || offsets->items.size() != 2)
            throw terror("data_offsets is not an array of two integers");
        std::uint64_t begin = 0, end = 0;
        if (!detail::json_uint(offsets->items[0], std::uint64_t{1} << 62, begin) ||
            !detail::json_uint(offsets->items[1], std::uint64_t{1} << 62, end))
            throw terror("data_offsets must be non-negative integers");
        if (begin > end)
            throw terror("data_offsets [" + std::to_string(begin) + "," + std::to_string(end) +
                         "] are reversed");
        if (end > data.size())
            throw terror("data_offsets [" + std::to_string(begin) + "," + std::to_string(end) +
                         "] run past the end of the data section (" + std::to_string(data.size()) +
                         " bytes)");
        if (shape->items.size() > limits.max_dims)
            throw terror("shape has " + std::to_string(shape->items.size()) +
                         " dimensions, more than " + std::to_string(limits.max_dims));
        Entry e{begin, end, &name, {}, false, WeightDType::F32};
        for (const detail::JsonValue& d : shape->items) {
            std::uint64_t dim = 0;
            if (!detail::json_uint(d, std::uint64_t{1} << 62, dim))
                throw terror("shape dimensions must be non-negative integers");
            e.shape.push_back(static_cast<std::int64_t>(dim));
        }
        // Checked: a zero dimension makes an empty tensor (valid), otherwise the product must
        // stay within max_elements.
        const std::optional<std::int64_t> elements = detail::checked_elements(e.shape, limits.max_elements);
        if (!elements)
            throw terror("shape " + shape_string(e.shape) + " has more than " +
                         std::to_string(limits.max_elements) + " elements");
        const std::string& dt = dtype->text;
        const std::string_view sv(name);
        std::uint64_t item = 4;
        constexpr std::string_view counter = ".num_batches_tracked";
        const bool is_counter = sv.size() >= counter.size() &&
                                sv.substr(sv.size() - counter.size()) == counter;
        if (is_counter && (dt == "I64" || dt == "I32")) {
            e.skip = true;  // torch bookkeeping
            item = dt == "I64" ? 8 : 4;
        } else if (dt == "F32") {
            e.dtype = WeightDType::F32;
        } else if (dt == "I8") {
            e.dtype = WeightDType::I8;
            item = 1;
        } else if (dt == "I32") {
            e.dtype = WeightDType::I32;
        } else {
            throw terror("dtype is " + dt + "; only F32, I8 and I32 are supported");
        }
        const std::uint64_t span = static_cast<std::uint64_t>(*elements) * item;  // <= 2^34
        if (end - begin != span)
            throw terror("shape " + shape_string(e.shape) + " needs " + std::to_string(span) +
                         " bytes but data_offsets span " + std::to_string(end - begin));
        entries.push_back(std::move(e));
    }
    // Pass 2, in O(n log n): sorted by offset, the tensors must tile the data section exactly, as
    // the format requires: no overlap (one block of bytes read as many tensors), no hole and no
    // trailing bytes.
    std::vector<const Entry*> order;
    order.reserve(entries.size());
    for (const Entry& e : entries) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::uint64_t at = 0;
    const Entry* previous = nullptr;
    for (const Entry* e : order) {
        if (e->begin < at)
            throw error("tensors '" + *previous->name + "' and '" + *e->name +
                        "' overlap in the data section");
        if (e->begin > at)
            throw error("bytes " + std::to_string(at) + " to " + std::to_string(e->begin) +
                        " of the data section belong to no tensor (before '" + *e->name + "')");
        at = e->end;
        previous = e;
    }
    if (at != data.size())
        throw error("the data section is " + std::to_string(data.size()) + " bytes but its tensors end at byte " +
                    std::to_string(at) + ": " + std::to_string(data.size() - at) + " trailing bytes");
    // Pass 3: the copies, now that the tensors are known to cover the data once: at most
    // data.size() bytes are allocated for them.
    for (const Entry& e : entries) {
        if (e.skip) continue;
        WeightTensor t;
        t.shape = e.shape;
        t.dtype = e.dtype;
        const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + e.begin;
        const auto word = [](const unsigned char* q) {
            return static_cast<std::uint32_t>(q[0]) | (static_cast<std::uint32_t>(q[1]) << 8) |
                   (static_cast<std::uint32_t>(q[2]) << 16) | (static_cast<std::uint32_t>(q[3]) << 24);
        };
        if (e.dtype == WeightDType::I8) {
            t.i8.resize(static_cast<std::size_t>(e.end - e.begin));
            for (std::size_t i = 0; i < t.i8.size(); ++i)
                t.i8[i] = static_cast<std::int8_t>(static_cast<std::int32_t>(p[i] ^ 0x80u) - 128);
        } else if (e.dtype == WeightDType::I32) {
            t.i32.resize(static_cast<std::size_t>((e.end - e.begin) / 4));
            for (std::size_t i = 0; i < t.i32.size(); ++i, p += 4) {
                const std::uint32_t bits = word(p);
                std::memcpy(&t.i32[i], &bits, 4);
            }
        } else {
            t.data.resize(static_cast<std::size_t>((e.end - e.begin) / 4));
            for (std::size_t i = 0; i < t.data.size(); ++i, p += 4) {
                const std::uint32_t bits = word(p);
                std::memcpy(&t.data[i], &bits, 4);
            }
        }
        out.tensors.emplace(*e.name, std::move(t));
    }
    return out;
}

// Reads a safetensors file; throws WeightsError naming the file (and tensor) on any problem.
// The file is mapped (POSIX mmap), not read whole: only the pages of the header and of the
// tensors actually copied are touched, and the whole layout is validated before any copy.
inline SafetensorsData read_safetensors_file(const std::string& path,
                                             const SafetensorsLimits& limits = {}) {
#if defined(__unix__) || defined(__APPLE__)
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw WeightsError(path + ": cannot open for reading");
    struct Closer {
        int fd;
        ~Closer() { (void)::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw WeightsError(path + ": cannot determine the file size");
    if (!S_ISREG(st.st_mode)) throw WeightsError(path + ": not a regular file");
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > limits.max_file_bytes)
        throw WeightsError(path + ": file is " + std::to_string(size) + " bytes, over the limit of " +
                           std::to_string(limits.max_file_bytes));
    if (size == 0) return parse_safetensors(std::string_view(), path, limits);
    void* map = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) throw WeightsError(path + ": cannot map the file");
    struct Unmapper {
        void* p;
        std::size_t n;
        ~Unmapper() { (void)::munmap(p, n); }
    } unmapper{map, static_cast<std::size_t>(size)};
    return parse_safetensors(std::string_view(static_cast<const char*>(map), static_cast<std::size_t>(size)),
                             path, limits);
#else
    std::ifstream in(path, std::ios::binary);
    if (!in) throw WeightsError(path + ": cannot open for reading");
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) throw WeightsError(path + ": cannot determine the file size");
    if (static_cast<std::uint64_t>(size) > limits.max_file_bytes)
        throw WeightsError(path + ": file is " + std::to_string(size) + " bytes, over the limit");
    in.seekg(0, std::ios::beg);
    std::string bytes(static_cast<std::size_t>(size), '\0');
    if (size > 0 && !in.read(&bytes[0], size)) throw WeightsError(path + ": read failed");
    return parse_safetensors(bytes, path, limits);
#endif
}

inline Weights read_safetensors(const std::string& path) { return read_safetensors_file(path).tensors; }

// Serialises tensors (in name order, contiguous, header padded with spaces to a multiple of 8).
inline std::string to_safetensors(const Weights& weights,
                                  const std::map<std::string, std::string>& metadata = {}) {
    std::string header = "{";
    bool first = true;
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        for (const auto& [k, v] : metadata) {
            if (!first) header += ',';
            first = false;
            header += detail::json_quote(k) + ':' + detail::json_quote(v);
        }
        header += '}';
        first = false;
    }
    std::uint64_t offset = 0;
    for (const auto& [name, t] : weights) {
        if (name == "__metadata__") throw WeightsError("a tensor cannot be named '__metadata__'");
        if (static_cast<std::int64_t>(t.stored()) != t.elements())
            throw WeightsError("tensor '" + name + "' has " + std::to_string(t.stored()) +
                               " values but its shape " + shape_string(t.shape) + " needs " +
                               std::to_string(t.elements()));
        if (!first) header += ',';
        first = false;
        const std::uint64_t bytes =
            static_cast<std::uint64_t>(t.stored()) * (t.dtype == WeightDType::I8 ? 1 : 4);
        header += detail::json_quote(name) + ":{\"dtype\":\"" + dtype_name(t.dtype) + "\",\"shape\":" +
                  shape_string(t.shape) + ",\"data_offsets\":[" + std::to_string(offset) + "," +
                  std::to_string(offset + bytes) + "]}";
        offset += bytes;
    }
    header += '}';
    while (header.size() % 8) header += ' ';
    std::string out;
    out.reserve(8 + header.size() + static_cast<std::size_t>(offset));
    std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i, n >>= 8) out += static_cast<char>(n & 0xFF);
    out += header;
    for (const auto& kv : weights) {
        const WeightTensor& t = kv.second;
        if (t.dtype == WeightDType::I8) {
            for (std::int8_t v : t.i8) out += static_cast<char>(v);
        } else if (t.dtype == WeightDType::I32) {
            for (std::int32_t v : t.i32) {
                std::uint32_t bits = 0;
                std::memcpy(&bits, &v, 4);
                for (int i = 0; i < 4; ++i, bits >>= 8) out += static_cast<char>(bits & 0xFF);
            }
        } else {
            for (float v : t.data) {
                std::uint32_t bits = 0;
                std::memcpy(&bits, &v, 4);
                for (int i = 0; i < 4; ++i, bits >>= 8) out += static_cast<char>(bits & 0xFF);
            }
        }
    }
    return out;
}

inline void write_safetensors(const std::string& path, const Weights& weights,
                              const std::map<std::string, std::string>& metadata = {}) {
    const std::string bytes = to_safetensors(weights, metadata);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw WeightsError(path + ": cannot open for writing");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw WeightsError(path + ": write failed");
}

// ---------------------------------------------------------------------------------------------
// Quantized (int8) weights files
// ---------------------------------------------------------------------------------------------
// A quantized file holds, for a graph with its batch norms folded (exec/fold.hpp):
//   LAYER.weight        I8  [same shape as the F32 weight]        (conv2d, dwconv, fc run in int8)
//   LAYER.bias          I32 [out]  scale act_scale(input) * weight_scale[c]   (zeros if bias=false)
//   LAYER.weight_scale  F32 [out] per channel, or [1] per tensor
//   LAYER.act_scale     F32 [1], LAYER.act_zero_point I32 [1]: every layer's output (input too)
//   the usual F32 tensors of layers that run in float (listed in lamda.float_layers)
// and __metadata__ {"lamda.precision": "int8", "lamda.float_layers": "a,b", "lamda.scheme":
// "int8: activations per-tensor asymmetric, weights per-channel symmetric"}.

inline const char* quantized_scheme_text() noexcept {
    return "int8: activations per-tensor asymmetric, weights per-channel symmetric";
}

inline bool is_quantized(const SafetensorsData& d) {
    const auto it = d.metadata.find("lamda.precision");
    return it != d.metadata.end() && it->second == "int8";
}

// The tensors and metadata of a quantized model; `float_weights` supplies the F32 tensors of the
// float layers (only those of layers named in m.float_layers are written).
inline std::pair<Weights, std::map<std::string, std::string>> quantized_to_weights(
    const QuantizedModel& m, const Weights& float_weights) {
    Weights out;
    for (const QuantizedWeights& l : m.layers) {
        WeightTensor w;
        w.dtype = WeightDType::I8;
        w.shape = l.weight_shape;
        w.i8 = l.weights;
        out[l.layer + ".weight"] = std::move(w);
        WeightTensor b;
        b.dtype = WeightDType::I32;
        b.shape.assign(1, static_cast<std::int64_t>(l.bias.size()));
        b.i32 = l.bias;
        out[l.layer + ".bias"] = std::move(b);
        WeightTensor s;
        s.shape.assign(1, static_cast<std::int64_t>(l.weight_scales.size()));
        s.data = l.weight_scales;
        out[l.layer + ".weight_scale"] = std::move(s);
    }
    for (const auto& [name, q] : m.activations) {
        WeightTensor s;
        s.shape.assign(1, 1);  // (assigning {1} trips GCC 12's -O3 -Wnonnull)
        s.data.assign(1, q.scale);
        out[name + ".act_scale"] = std::move(s);
        WeightTensor z;
        z.dtype = WeightDType::I32;
        z.shape.assign(1, 1);
        z.i32.assign(1, q.zero_point);
        out[name + ".act_zero_point"] = std::move(z);
    }
    std::string float_list;
    for (const std::string& f : m.float_layers) {
        float_list += (float_list.empty() ? "" : ",") + f;
        const std::string prefix = f + ".";
        for (auto it = float_weights.lower_bound(prefix);
             it != float_weights.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
            out[it->first] = it->second;
    }
    std::map<std::string, std::string> meta{{"lamda.precision", "int8"},
                                            {"lamda.float_layers", float_list},
                                            {"lamda.scheme", quantized_scheme_text()}};
    return {std::move(out), std::move(meta)};
}

// The quantized model in `d` for `graph` (batch norms already folded, shapes inferred), and the
// F32 tensors of its float layers in `float_weights`. Throws WeightsError naming the file and the
// tensor: an fp32 file where int8 is required, a missing or extra tensor, a wrong dtype or shape,
// a zero, negative, NaN or infinite scale, a zero point outside [-128, 127].
inline QuantizedModel read_quantized(const Graph& graph, const SafetensorsData& d,
                                     const std::string& file, Weights& float_weights) {
    auto fail = [&](const std::string& what) { return WeightsError(file + ": " + what); };
    if (!is_quantized(d))
        throw fail("is an fp32 weights file, but int8 weights are required here (no \"lamda.precision\": "
                   "\"int8\" in its metadata); make one with `lamda quantize MODEL --weights W "
                   "--dataset D --out Q.safetensors`");
    QuantizedModel m;
    {
        const auto it = d.metadata.find("lamda.float_layers");
        const std::string list = it == d.metadata.end() ? std::string() : it->second;
        std::size_t at = 0;
        while (at < list.size()) {
            std::size_t comma = list.find(',', at);
            if (comma == std::string::npos) comma = list.size();
            const std::string name = list.substr(at, comma - at);
            if (graph.find(name) < 0)
                throw fail("metadata lamda.float_layers names '" + name + "', which is no layer of model '" +
                           graph.name + "'");
            m.float_layers.push_back(name);
            at = comma + 1;
        }
    }
    auto is_float = [&](const std::string& n) {
        return std::find(m.float_layers.begin(), m.float_layers.end(), n) != m.float_layers.end();
    };
    std::map<std::string, bool> used;
    auto get = [&](const std::string& name, WeightDType dt,
                   const std::vector<std::int64_t>* shape) -> const WeightTensor& {
        const auto it = d.tensors.find(name);
        if (it == d.tensors.end()) throw fail("missing tensor '" + name + "'");
        const WeightTensor& t = it->second;
        if (t.dtype != dt)
            throw fail("tensor '" + name + "' is " + dtype_name(t.dtype) + ", expected " + dtype_name(dt));
        if (shape && t.shape != *shape)
            throw fail("tensor '" + name + "' has shape " + shape_string(t.shape) + ", expected " +
                       shape_string(*shape));
        if (static_cast<std::int64_t>(t.stored()) != t.elements())
            throw fail("tensor '" + name + "' holds " + std::to_string(t.stored()) + " values, its shape needs " +
                       std::to_string(t.elements()));
        used[name] = true;
        return t;
    };
    const std::vector<std::int64_t> one{1};
    for (const Layer& l : graph.layers) {
        const WeightTensor& s = get(l.name + ".act_scale", WeightDType::F32, &one);
        const WeightTensor& z = get(l.name + ".act_zero_point", WeightDType::I32, &one);
        m.activations.push_back({l.name, ActivationQuant{s.data[0], z.i32[0]}});
    }
    for (const ExpectedTensor& e : expected_weights(graph)) {
        const Layer& l = graph.layers[static_cast<std::size_t>(e.layer)];
        if (is_float(l.name)) {
            float_weights[e.name] = get(e.name, WeightDType::F32, &e.shape);
            continue;
        }
        if (l.op == OpKind::BatchNorm)
            throw fail("batchnorm layer '" + l.name + "' is neither folded nor listed in lamda.float_layers");
        const std::string suffix = e.name.substr(l.name.size());
        if (suffix != ".weight") continue;  // the bias is always present in int8, read below
        QuantizedWeights q;
        q.layer = l.name;
        q.weight_shape = e.shape;
        q.weights = get(e.name, WeightDType::I8, &e.shape).i8;
        const std::vector<std::int64_t> out{e.shape[0]};
        q.bias = get(l.name + ".bias", WeightDType::I32, &out).i32;
        const WeightTensor& ws = get(l.name + ".weight_scale", WeightDType::F32, nullptr);
        if (ws.shape != out && ws.shape != one)
            throw fail("tensor '" + l.name + ".weight_scale' has shape " + shape_string(ws.shape) +
                       ", expected " + shape_string(out) + " (per channel) or [1]");
        q.weight_scales = ws.data;
        m.layers.push_back(std::move(q));
    }
    for (const auto& kv : d.tensors)
        if (!used.count(kv.first))
            throw fail("unexpected tensor '" + kv.first + "' (the file does not belong to model '" + graph.name +
                       "', or its batch norms were not folded)");
    if (const std::optional<Error> e = validate_quantized_model(m))
        throw fail("tensor '" + e->where.field + "': " + e->message);
    return m;
}

}  // namespace lamda

#endif  // LAMDA_DATA_WEIGHTS_HPP
