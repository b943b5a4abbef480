// Datasets (data/dataset.hpp): IDX and .npy files written here to a temporary directory, raw and gzip,
// corrupt files, the seeded split; batch norm folding (exec/fold.hpp), which every trained model's
// weights go through; and accuracy through XNNPACK.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "lamda/data/dataset.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/fold.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/data/weights.hpp"

#include "../executor_test_support.hpp"

#include <unistd.h>  // getpid

#if defined(LAMDA_WITH_ZLIB)
#include <zlib.h>
#endif

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

namespace {

// A fresh empty directory, removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("lamda_dataset_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void put_be32(Bytes& b, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

Bytes idx(const std::vector<std::uint32_t>& dims, const Bytes& data, unsigned char type = 0x08) {
    Bytes b{0, 0, type, static_cast<unsigned char>(dims.size())};
    for (std::uint32_t d : dims) put_be32(b, d);
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

// An .npy (format 1.0) file: header padded with spaces to a multiple of 64, as numpy writes it.
Bytes npy(const std::string& descr, const std::string& shape, const Bytes& data,
          const std::string& order = "False") {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    // Built as a string (GCC 12 warns wrongly about inserting into a brace-initialised vector).
    std::string file = "\x93NUMPY";
    file += '\x01';
    file += '\x00';
    file += static_cast<char>(header.size() & 255);
    file += static_cast<char>(header.size() >> 8);
    file += header;
    file.append(data.begin(), data.end());
    return Bytes(file.begin(), file.end());
}

Bytes le(std::int64_t v, int size) {
    Bytes b;
    for (int k = 0; k < size; ++k) b.push_back(static_cast<unsigned char>(static_cast<std::uint64_t>(v) >> (8 * k)));
    return b;
}

Bytes pixels(std::size_t n) {
    Bytes b(n);
    for (std::size_t k = 0; k < n; ++k) b[k] = static_cast<unsigned char>((k * 37 + 11) % 256);
    return b;
}

// The message of the DatasetError `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const lamda::DatasetError& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#if defined(LAMDA_WITH_ZLIB)
void write_gz(const std::string& path, const Bytes& b) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
    gzclose(f);
}
#endif

}  // namespace

TEST_CASE("dataset: IDX files round trip (raw, 3 and 4 dimensions)") {
    TempDir dir;
    const Bytes img = pixels(5 * 4 * 3);
    write_file(dir / "train-images-idx3-ubyte", idx({5, 4, 3}, img));
    write_file(dir / "train-labels-idx1-ubyte", idx({5}, {3, 0, 1, 3, 2}));
    write_file(dir / "t10k-images-idx3-ubyte", idx({2, 4, 3}, pixels(2 * 4 * 3)));
    write_file(dir / "t10k-labels-idx1-ubyte", idx({2}, {1, 2}));
    const lamda::DatasetSplits d = lamda::load_dataset(dir.path.string());
    CHECK(d.train.shape == lamda::Shape{4, 3, 1});
    CHECK(d.train.size() == 5);
    CHECK(d.train.classes == 4);
    CHECK(d.test.size() == 2);
    CHECK(d.test.classes == 4);
    CHECK(d.train.labels == std::vector<std::int32_t>{3, 0, 1, 3, 2});
    REQUIRE(d.train.pixels.size() == img.size());  // kept as uint8, converted per image
    CHECK(d.train.images.empty());
    for (std::size_t k = 0; k < img.size(); ++k) CHECK(d.train.value(k) == doctest::Approx(img[k] / 255.0));

    // N x H x W x C, and no test pair (an empty test set of the same shape).
    TempDir dir4;
    write_file(dir4 / "train-images-idx3-ubyte", idx({3, 2, 2, 3}, pixels(36)));
    write_file(dir4 / "train-labels-idx1-ubyte", idx({3}, {0, 1, 0}));
    const lamda::DatasetSplits d4 = lamda::load_dataset(dir4.path.string());
    CHECK(d4.train.shape == lamda::Shape{2, 2, 3});
    std::vector<float> image2(d4.train.image_elements());
    d4.train.copy_image(2, image2.data());
    CHECK(image2[0] == doctest::Approx(pixels(36)[24] / 255.0));
    CHECK(d4.test.empty());
    CHECK(d4.test.shape == d4.train.shape);
}

TEST_CASE("dataset: gzip-compressed IDX files") {
    TempDir dir;
    const Bytes img = pixels(6 * 5 * 5);
#if defined(LAMDA_WITH_ZLIB)
    write_gz(dir / "train-images-idx3-ubyte.gz", idx({6, 5, 5}, img));
    write_gz(dir / "train-labels-idx1-ubyte.gz", idx({6}, {0, 1, 2, 0, 1, 2}));
    const lamda::DatasetSplits d = lamda::load_dataset(dir.path.string());
    CHECK(d.train.size() == 6);
    CHECK(d.train.shape == lamda::Shape{5, 5, 1});
    CHECK(d.train.value(7) == doctest::Approx(img[7] / 255.0));

    // Two gzip members concatenated (gzip -c a b) read as one file.
    TempDir multi;
    const Bytes whole = idx({6, 5, 5}, img);
    write_gz(multi / "a.gz", Bytes(whole.begin(), whole.begin() + 40));
    write_gz(multi / "b.gz", Bytes(whole.begin() + 40, whole.end()));
    std::ifstream a(multi / "a.gz", std::ios::binary), b(multi / "b.gz", std::ios::binary);
    Bytes cat((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
    cat.insert(cat.end(), std::istreambuf_iterator<char>(b), std::istreambuf_iterator<char>());
    write_file(multi / "train-images-idx3-ubyte.gz", cat);
    write_file(multi / "train-labels-idx1-ubyte", idx({6}, {0, 1, 2, 0, 1, 2}));
    CHECK(lamda::load_dataset(multi.path.string()).train.pixels == d.train.pixels);

    // Truncated and corrupted gzip data.
    TempDir bad;
    std::ifstream f(dir / "train-images-idx3-ubyte.gz", std::ios::binary);
    Bytes gz((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    write_file(bad / "train-images-idx3-ubyte.gz", Bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
    write_file(bad / "train-labels-idx1-ubyte", idx({6}, {0, 1, 2, 0, 1, 2}));
    std::string e = error_of([&] { lamda::load_dataset(bad.path.string()); });
    CHECK(contains(e, "train-images-idx3-ubyte.gz"));
    CHECK(contains(e, "truncated"));
    for (std::size_t k = 12; k < gz.size() - 8; ++k) gz[k] = static_cast<unsigned char>(gz[k] ^ 0x5a);
    write_file(bad / "train-images-idx3-ubyte.gz", gz);
    e = error_of([&] { lamda::load_dataset(bad.path.string()); });
    CHECK(contains(e, "train-images-idx3-ubyte.gz"));
    CHECK(!e.empty());

    // A small file that inflates past the limit is stopped there, not allocated in full.
    write_gz(bad / "big.gz", Bytes(std::size_t{3} << 20, 0));
    lamda::DatasetLimits limits;
    limits.max_file_bytes = std::int64_t{1} << 20;
    e = error_of([&] { lamda::read_dataset_pair(bad / "big.gz", bad / "big.gz", limits); });
    CHECK(contains(e, "big.gz: decompresses to more than 1 MiB"));
#else
    // Without zlib, a gzip file is a clear error, not garbage.
    write_file(dir / "train-images-idx3-ubyte.gz", Bytes{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3});
    write_file(dir / "train-labels-idx1-ubyte", idx({6}, {0, 1, 2, 0, 1, 2}));
    const std::string e = error_of([&] { lamda::load_dataset(dir.path.string()); });
    CHECK(contains(e, "train-images-idx3-ubyte.gz"));
    CHECK(contains(e, "without zlib"));
#endif
}

TEST_CASE("dataset: NumPy .npy pairs") {
    SUBCASE("uint8 (N, H, W) images, little-endian int64 labels, train_* names") {
        TempDir dir;
        write_file(dir / "train_images.npy", npy("|u1", "(4, 3, 2)", pixels(24)));
        Bytes labels;
        for (std::int64_t v : {2, 0, 1, 2}) {
            const Bytes x = le(v, 8);
            labels.insert(labels.end(), x.begin(), x.end());
        }
        write_file(dir / "train_labels.npy", npy("<i8", "(4,)", labels));
        const lamda::DatasetSplits d = lamda::load_dataset(dir.path.string());
        CHECK(d.train.shape == lamda::Shape{3, 2, 1});
        CHECK(d.train.labels == std::vector<std::int32_t>{2, 0, 1, 2});
        CHECK(d.train.classes == 3);
        CHECK(d.train.value(5) == doctest::Approx(pixels(24)[5] / 255.0));
    }
    SUBCASE("float32 (N, H, W, C) images, big-endian int32 (N, 1) labels, x_/y_ names") {
        TempDir dir;
        Bytes data;
        for (int k = 0; k < 2 * 2 * 2 * 3; ++k) {
            const float v = static_cast<float>(k) / 24.0f;
            std::uint32_t bits;
            std::memcpy(&bits, &v, 4);
            const Bytes x = le(bits, 4);
            data.insert(data.end(), x.begin(), x.end());
        }
        write_file(dir / "x_train.npy", npy("<f4", "(2, 2, 2, 3)", data));
        write_file(dir / "y_train.npy", npy(">i4", "(2, 1)", Bytes{0, 0, 0, 1, 0, 0, 0, 4}));
        write_file(dir / "x_test.npy", npy("<f4", "(2, 2, 2, 3)", data));
        write_file(dir / "y_test.npy", npy("|u1", "(2,)", Bytes{4, 0}));
        const lamda::DatasetSplits d = lamda::load_dataset(dir.path.string());
        CHECK(d.train.shape == lamda::Shape{2, 2, 3});
        CHECK(d.train.labels == std::vector<std::int32_t>{1, 4});
        CHECK(d.train.classes == 5);
        CHECK(d.test.labels == std::vector<std::int32_t>{4, 0});
        CHECK(d.train.value(13) == doctest::Approx(13.0 / 24.0));
    }
}

TEST_CASE("dataset: corrupt and mismatched files give errors naming the file") {
    TempDir dir;
    const std::string images = dir / "images", labels = dir / "labels";
    const auto error = [&](const Bytes& im, const Bytes& lb) {
        write_file(images, im);
        write_file(labels, lb);
        return error_of([&] { lamda::read_dataset_pair(images, labels); });
    };
    const Bytes good_images = idx({3, 2, 2}, pixels(12)), good_labels = idx({3}, {0, 1, 2});
    CHECK(error(good_images, good_labels).empty());

    std::string e = error(Bytes{1, 2, 3, 4, 5, 6, 7, 8}, good_labels);
    CHECK(contains(e, images + ": not an IDX file (bad magic number)"));
    e = error(idx({3, 2, 2}, pixels(11)), good_labels);
    CHECK(contains(e, images + ": the IDX header claims 3 x 2 x 2 = 12 bytes"));
    CHECK(contains(e, "truncated"));
    e = error(idx({3, 2, 2}, pixels(13)), good_labels);
    CHECK(contains(e, "trailing bytes"));
    e = error(Bytes{0, 0, 8, 3, 0, 0}, good_labels);
    CHECK(contains(e, images + ": truncated IDX header"));
    // Huge claimed sizes in a tiny file: an error, not an allocation.
    e = error(idx({0xffffffffu, 0xffffffffu, 0xffffffffu}, pixels(12)), good_labels);
    CHECK(contains(e, images));
    CHECK(contains(e, "impossible"));
    e = error(idx({3, 2, 2}, Bytes(48, 0), 0x0d), good_labels);
    CHECK(contains(e, images + ": IDX element type 0x0d is not supported"));
    e = error(good_images, idx({4}, {0, 1, 2, 3}));
    CHECK(contains(e, labels + ": 4 labels for the 3 images of " + images));
    e = error(good_images, idx({3, 1, 1}, {0, 1, 2}));
    CHECK(contains(e, labels + ": labels are 3 x 1 x 1; expected one dimension"));
    e = error(idx({12}, pixels(12)), good_labels);
    CHECK(contains(e, images + ": images are 12; expected N x H x W"));
    e = error(good_images, npy("<i2", "(3,)", Bytes{0, 0, 0xff, 0xff, 1, 0}));
    CHECK(contains(e, labels + ": label -1 of image 1 is out of range"));
    e = error(good_images, npy("<f4", "(3,)", Bytes(12, 0)));
    CHECK(contains(e, labels + ": labels must be integers"));
    e = error(npy("|u1", "(3, 2, 2)", pixels(12), "True"), good_labels);
    CHECK(contains(e, images + ": .npy array is in Fortran order"));
    e = error(npy("<c8", "(3, 2, 2)", Bytes(96, 0)), good_labels);
    CHECK(contains(e, images + ": .npy dtype '<c8' is not supported"));
    e = error(npy("|u1", "(3, 2 2)", pixels(12)), good_labels);
    CHECK(contains(e, images + ": malformed .npy header"));
    e = error(npy("|u1", "(999999999999, 999999999999)", pixels(12)), good_labels);
    CHECK(contains(e, images + ": the .npy header claims"));
    e = error(Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0xff, '{'}, good_labels);
    CHECK(contains(e, images + ": truncated .npy header"));
    write_file(images, good_images);
    CHECK(contains(error_of([&] { lamda::read_dataset_pair(images, dir / "missing"); }),
                   dir / "missing" + ": no such file"));

    // Directories: a pair half there, test images of another shape, test labels beyond the
    // training set's classes, nothing there, an unknown name.
    TempDir d1;
    write_file(d1 / "train-images-idx3-ubyte", good_images);
    e = error_of([&] { lamda::load_dataset(d1.path.string()); });
    CHECK(contains(e, "but not train-labels-idx1-ubyte"));
    write_file(d1 / "train-labels-idx1-ubyte", good_labels);
    write_file(d1 / "t10k-images-idx3-ubyte", idx({1, 3, 2}, pixels(6)));
    write_file(d1 / "t10k-labels-idx1-ubyte", idx({1}, {0}));
    e = error_of([&] { lamda::load_dataset(d1.path.string()); });
    CHECK(contains(e, "t10k-images-idx3-ubyte: images are 3x2x1, the training images 2x2x1"));
    write_file(d1 / "t10k-images-idx3-ubyte", idx({1, 2, 2}, pixels(4)));
    write_file(d1 / "t10k-labels-idx1-ubyte", idx({1}, {7}));
    e = error_of([&] { lamda::load_dataset(d1.path.string()); });
    CHECK(contains(e, "t10k-labels-idx1-ubyte: label 7 is outside the training set's classes 0 to 2"));
    TempDir empty;
    e = error_of([&] { lamda::load_dataset(empty.path.string()); });
    CHECK(contains(e, empty.path.string() + ": no dataset files (looked for train-images-idx3-ubyte"));
    e = error_of([&] { lamda::load_dataset("no-such-dataset"); });
    CHECK(contains(e, "'no-such-dataset': neither a known name (fashion-mnist) nor a directory"));
}

TEST_CASE("dataset: the validation split and subsets are seeded and disjoint") {
    lamda::Dataset d;
    d.shape = {1, 1, 1};
    d.classes = 1000;
    for (int i = 0; i < 1000; ++i) {
        d.labels.push_back(i);  // label = index, to follow the images
        d.images.push_back(static_cast<float>(i));
    }
    const auto a = lamda::split_dataset(d, 0.1, 7), b = lamda::split_dataset(d, 0.1, 7);
    const auto c = lamda::split_dataset(d, 0.1, 8);
    CHECK(a.first.size() == 900);
    CHECK(a.second.size() == 100);
    CHECK(a.first.labels == b.first.labels);
    CHECK(a.second.labels == b.second.labels);
    CHECK(a.second.labels != c.second.labels);
    std::set<std::int32_t> all(a.first.labels.begin(), a.first.labels.end());
    for (std::int32_t v : a.second.labels) {
        CHECK(all.count(v) == 0);
        all.insert(v);
    }
    CHECK(all.size() == 1000);
    for (std::size_t i = 0; i < a.second.size(); ++i)
        CHECK(a.second.value(i * a.second.image_elements()) == static_cast<float>(a.second.labels[i]));
    // The permutation itself is pinned: the same split on every platform.
    CHECK(lamda::seeded_permutation(5, 1) == lamda::seeded_permutation(5, 1));
    const lamda::Dataset s = lamda::subset(a.first, 50, 3);
    CHECK(s.size() == 50);
    CHECK(s.labels == lamda::subset(a.first, 50, 3).labels);
    CHECK(lamda::subset(a.first, 0, 3).size() == 900);
    CHECK_THROWS_AS(lamda::split_dataset(d, 1.0, 1), lamda::DatasetError);
    // Calibration images: the first n of the seeded order, the same slice for the same seed.
    const std::vector<lamda::Tensor> calib = lamda::calibration_slice(a.first, 20, 5);
    const std::vector<std::size_t> order = lamda::seeded_permutation(a.first.size(), 5);
    REQUIRE(calib.size() == 20);
    for (std::size_t i = 0; i < calib.size(); ++i) {
        REQUIRE(calib[i].shape == a.first.shape);
        CHECK(calib[i].data[0] == a.first.value(order[i] * a.first.image_elements()));
    }
    CHECK(lamda::calibration_slice(a.first, 20, 6)[0].data != calib[0].data);
    CHECK(lamda::calibration_slice(a.first, 5000, 5).size() == 900);
}

TEST_CASE("dataset: Debian's fashion-mnist, when installed") {
    std::error_code ec;
    if (!fs::is_directory(std::string(lamda::fashion_mnist_dir), ec)) {
        const std::string e = error_of([] { lamda::load_dataset("fashion-mnist"); });
        CHECK(contains(e, "dataset-fashion-mnist"));
        return;
    }
#if defined(LAMDA_WITH_ZLIB)
    const lamda::DatasetSplits d = lamda::load_dataset("fashion-mnist");
    CHECK(d.name == "fashion-mnist");
    CHECK(d.train.size() == 60000);
    CHECK(d.test.size() == 10000);
    CHECK(d.train.shape == lamda::Shape{28, 28, 1});
    CHECK(d.train.classes == 10);
    CHECK(d.test.classes == 10);
    CHECK(d.train.labels[0] == 9);  // the first training image is an ankle boot
    CHECK(d.test.labels[0] == 9);
#endif
}

TEST_CASE("fold: folding batch norm preserves outputs and keeps layer names") {
    const lamda::Graph g = lamda_test::graph_of(
        "model f\n"
        "input: input shape=9x9x3\n"
        "c1: conv2d out=6 kernel=3 bias=false\n"
        "bn1: batchnorm eps=0.001\n"          // folds (c1 gets a bias)
        "r1: relu\n"
        "d1: dwconv kernel=3 multiplier=2 stride=2\n"
        "bn2: batchnorm\n"                    // folds
        "c2: conv2d out=5 kernel=1 act=relu\n"
        "bn3: batchnorm\n"                    // stays: c2 has a fused activation
        "c3: conv2d out=5 kernel=1\n"
        "side: relu c3\n"
        "bn4: batchnorm c3\n"                 // stays: c3 has another reader
        "s: add side, bn4\n"
        "g: gap\n"
        "f: fc out=4\n"
        "bn5: batchnorm\n");                  // folds, and is the output: f takes its place
    const lamda::Weights w = lamda::random_weights(g, 3);
    // Not a structured binding: C++17 lambdas (doctest's INFO) cannot capture those.
    const auto folded = lamda::fold_batchnorm(g, w);
    const lamda::Graph& fg = folded.first;
    const lamda::Weights& fw = folded.second;
    CHECK(lamda::validate_weights(fg, fw).empty());
    CHECK(fg == lamda::fold_batchnorm_graph(g));
    std::vector<std::string> names;
    for (const lamda::Layer& l : fg.layers) names.push_back(l.name);
    CHECK(names == std::vector<std::string>{"input", "c1", "r1", "d1", "c2", "bn3", "c3", "side",
                                            "bn4", "s", "g", "f"});
    CHECK(fg.layers[1].bias);
    CHECK(fg.output().name == "f");
    CHECK(fw.count("c1.bias") == 1);
    CHECK(fw.count("bn3.running_var") == 1);
    CHECK(fw.count("bn1.weight") == 0);
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
        const lamda::Tensor x = lamda_test::random_input(g.input().shape, 40 + seed);
        const std::vector<lamda::Tensor> before = lamda::run_reference_all(g, w, x);
        const std::vector<lamda::Tensor> after = lamda::run_reference_all(fg, fw, x);
        // Every kept layer's value is unchanged (a producer now holds its batchnorm's value).
        for (std::size_t i = 0; i < fg.layers.size(); ++i) {
            const int old = g.find(fg.layers[i].name);
            const int source = fg.layers[i].name == "c1" ? g.find("bn1")
                             : fg.layers[i].name == "d1" ? g.find("bn2")
                             : fg.layers[i].name == "f"  ? g.find("bn5") : old;
            double scale = 1;
            const double err = lamda_test::max_error(after[i].data, before[static_cast<std::size_t>(source)].data, scale);
            INFO("layer " << fg.layers[i].name << ": error " << err);
            CHECK(err <= 1e-4 * scale);
        }
    }
    // Weights that do not fit are refused with the problems listed.
    lamda::Weights broken = w;
    broken.erase("bn1.running_mean");
    CHECK_THROWS_WITH_AS(lamda::fold_batchnorm(g, broken),
                         doctest::Contains("missing tensor 'bn1.running_mean'"), lamda::ExecutorError);
}

#if defined(LAMDA_WITH_XNNPACK)
TEST_CASE("dataset: accuracy through XNNPACK, with weights saved folded or not") {
    const lamda::Graph g = lamda_test::graph_of(
        "input: input shape=4x4x1\n"
        "c: conv2d out=3 kernel=3 bias=false\n"
        "bn: batchnorm\n"
        "r: relu\n"
        "p: gap\n"
        "f: fc out=3\n");
    const lamda::Weights w = lamda::random_weights(g, 5);
    lamda::Dataset d;
    d.shape = {4, 4, 1};
    d.classes = 3;
    lamda::detail::SplitMix64 rng{9};
    for (int i = 0; i < 60; ++i) {
        for (int k = 0; k < 16; ++k) d.images.push_back(rng.uniform(0.0f, 1.0f));
        d.labels.push_back(static_cast<std::int32_t>(rng.next() % 3));
    }
    // The expected figure: the reference executor's argmax.
    std::int64_t correct = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
        lamda::Tensor x(d.shape);
        d.copy_image(i, x.data.data());
        const lamda::Tensor y = lamda::run_reference(g, w, x);
        if (lamda::argmax(y.data.data(), 3) == d.labels[i]) ++correct;
    }
    const lamda::Accuracy a = lamda::evaluate_accuracy(g, w, d);
    CHECK(a.n == 60);
    CHECK(a.correct == correct);
    const auto folded = lamda::fold_batchnorm(g, w);
    CHECK(lamda::evaluate_accuracy(g, folded.second, d).correct == correct);
    CHECK(lamda::evaluate_accuracy(g, w, d, 1, 10).n == 10);
    // Weights of another model, and a model that does not fit the images, are clear errors.
    CHECK_THROWS_WITH_AS(lamda::evaluate_accuracy(g, lamda::Weights{}, d),
                         doctest::Contains("missing tensor 'c.weight'"), lamda::ExecutorError);
    d.shape = {2, 8, 1};
    CHECK_THROWS_WITH_AS(lamda::evaluate_accuracy(g, w, d),
                         doctest::Contains("the model's input is 4x4x1 but the dataset's images are 2x8x1"),
                         lamda::DatasetError);
}
#endif
