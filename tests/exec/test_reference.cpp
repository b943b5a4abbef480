// The reference executor on hand-computed cases, the safetensors reader/writer and weight checks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/data/weights.hpp"

using lamda::Shape;
using lamda::Tensor;
using lamda::WeightTensor;
using lamda::Weights;

namespace {

lamda::Graph graph_of(const std::string& text) { return lamda::parse_dsl_or_throw(text, "test.lamda"); }

Tensor tensor(Shape s, std::vector<float> values) {
    Tensor t(s);
    REQUIRE(values.size() == t.data.size());
    t.data = std::move(values);
    return t;
}

Tensor iota(Shape s, float start = 1.0f) {
    Tensor t(s);
    for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = start + static_cast<float>(i);
    return t;
}

void check_values(const Tensor& t, const std::vector<float>& expected, float tol = 1e-5f) {
    REQUIRE(t.data.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("index " << i);
        CHECK(t.data[i] == doctest::Approx(expected[i]).epsilon(tol));
    }
}

}  // namespace

TEST_CASE("reference: conv2d 3x3 same padding sums the in-bounds neighbourhood") {
    const auto g = graph_of("input: input shape=3x3x1\nc: conv2d out=1 kernel=3 bias=false\n");
    Weights w;
    w["c.weight"] = {{1, 1, 3, 3}, std::vector<float>(9, 1.0f)};
    const Tensor y = lamda::run_reference(g, w, iota({3, 3, 1}));
    CHECK(y.shape == Shape{3, 3, 1});
    // 1 2 3 / 4 5 6 / 7 8 9
    check_values(y, {12, 21, 16, 27, 45, 33, 24, 39, 28});
}

TEST_CASE("reference: conv2d weight layout is OIHW, bias and fused relu") {
    // 2x2 input with 2 channels, 1x2 kernel, valid padding: one output column.
    const auto g = graph_of(
        "input: input shape=2x2x2\nc: conv2d out=2 kernel=1x2 padding=valid act=relu\n");
    Weights w;
    // weight[o][i][0][kx]
    w["c.weight"] = {{2, 2, 1, 2}, {1, 2, 3, 4,   /* o=0: i=0 (kx 0,1), i=1 (kx 0,1) */
                                    -1, 0, 0, 0}};
    w["c.bias"] = {{2}, {0.5f, 1.0f}};
    // pixels (y,x): (0,0)=[1,2] (0,1)=[3,4] (1,0)=[5,6] (1,1)=[7,8]
    const Tensor y = lamda::run_reference(g, w, iota({2, 2, 2}));
    CHECK(y.shape == Shape{2, 1, 2});
    // row 0: o0 = 1*1 + 2*3 + 3*2 + 4*4 + 0.5 = 29.5; o1 = relu(-1 + 1) = 0
    // row 1: o0 = 1*5 + 2*7 + 3*6 + 4*8 + 0.5 = 69.5; o1 = relu(-5 + 1) = 0
    check_values(y, {29.5f, 0, 69.5f, 0});
}

TEST_CASE("reference: grouped conv2d, stride 2 and dilation") {
    SUBCASE("groups=2: each half of the outputs reads its half of the inputs") {
        const auto g = graph_of("input: input shape=1x1x4\nc: conv2d out=2 kernel=1 groups=2 bias=false\n");
        Weights w;
        w["c.weight"] = {{2, 2, 1, 1}, {1, 10, 100, 1000}};
        check_values(lamda::run_reference(g, w, iota({1, 1, 4})), {1 + 20, 300 + 4000});
    }
    SUBCASE("stride 2, valid: picks every other window") {
        const auto g = graph_of("input: input shape=4x4x1\nc: conv2d out=1 kernel=1 stride=2 padding=valid bias=false\n");
        Weights w;
        w["c.weight"] = {{1, 1, 1, 1}, {2}};
        check_values(lamda::run_reference(g, w, iota({4, 4, 1})), {2, 6, 18, 22});
    }
    SUBCASE("dilation 2: a 2x2 kernel spans 3x3") {
        const auto g = graph_of("input: input shape=3x3x1\nc: conv2d out=1 kernel=2 dilation=2 padding=valid bias=false\n");
        Weights w;
        w["c.weight"] = {{1, 1, 2, 2}, {1, 1, 1, 1}};
        check_values(lamda::run_reference(g, w, iota({3, 3, 1})), {1 + 3 + 7 + 9});
    }
}

TEST_CASE("reference: dwconv multiplier 2 maps output c*2+m to input c") {
    const auto g = graph_of("input: input shape=1x1x2\nd: dwconv kernel=1 multiplier=2\n");
    Weights w;
    w["d.weight"] = {{4, 1, 1, 1}, {1, 2, 3, 4}};
    w["d.bias"] = {{4}, {0, 0, 0, 100}};
    check_values(lamda::run_reference(g, w, tensor({1, 1, 2}, {10, 20})), {10, 20, 60, 180});
}

TEST_CASE("reference: fc, batchnorm, gap") {
    SUBCASE("fc weight is [out][in]") {
        const auto g = graph_of("input: input shape=1x1x3\nf: fc out=2\n");
        Weights w;
        w["f.weight"] = {{2, 3}, {1, 0, 0, 1, 1, 1}};
        w["f.bias"] = {{2}, {0.5f, -1}};
        check_values(lamda::run_reference(g, w, iota({1, 1, 3})), {1.5f, 5});
    }
    SUBCASE("batchnorm: gamma (x - mean) / sqrt(var + eps) + beta") {
        const auto g = graph_of("input: input shape=1x2x2\nb: batchnorm eps=1e-9\n");
        Weights w;
        w["b.weight"] = {{2}, {2, 1}};
        w["b.bias"] = {{2}, {1, 0}};
        w["b.running_mean"] = {{2}, {1, 2}};
        w["b.running_var"] = {{2}, {4, 1}};
        // pixels [1,2] [3,4]: c0 = 2*(x-1)/2 + 1, c1 = x - 2
        check_values(lamda::run_reference(g, w, iota({1, 2, 2})), {1, 0, 3, 2});
    }
    SUBCASE("gap averages each channel") {
        const auto g = graph_of("input: input shape=2x2x2\np: gap\n");
        check_values(lamda::run_reference(g, {}, iota({2, 2, 2})), {4, 5});
    }
}

TEST_CASE("reference: pools with padding and ceil mode") {
    SUBCASE("maxpool 2 ceil=true on 3x3 keeps the partial windows") {
        const auto g = graph_of("input: input shape=3x3x1\np: maxpool kernel=2 ceil=true\n");
        const Tensor y = lamda::run_reference(g, {}, iota({3, 3, 1}));
        CHECK(y.shape == Shape{2, 2, 1});
        check_values(y, {5, 6, 8, 9});
    }
    SUBCASE("avgpool 2 ceil=true divides by the in-bounds count") {
        const auto g = graph_of("input: input shape=3x3x1\np: avgpool kernel=2 ceil=true\n");
        check_values(lamda::run_reference(g, {}, iota({3, 3, 1})), {3, 4.5f, 7.5f, 9});
    }
    SUBCASE("avgpool 3 stride 1 padding 1 excludes the padding") {
        const auto g = graph_of("input: input shape=3x3x1\np: avgpool kernel=3 stride=1 padding=1\n");
        check_values(lamda::run_reference(g, {}, iota({3, 3, 1})),
                     {3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7});
    }
    SUBCASE("maxpool 3 stride 2 padding 1: padding never wins, even over negatives") {
        const auto g = graph_of("input: input shape=3x3x1\np: maxpool kernel=3 stride=2 padding=1\n");
        const Tensor y = lamda::run_reference(g, {}, iota({3, 3, 1}, -20.0f));
        // -20..-12; windows: rows/cols {0,1} and {1,2}
        check_values(y, {-16, -15, -13, -12});
    }
    SUBCASE("floor mode drops the partial window") {
        const auto g = graph_of("input: input shape=3x3x1\np: maxpool kernel=2\n");
        check_values(lamda::run_reference(g, {}, iota({3, 3, 1})), {5});
    }
}

TEST_CASE("reference: add, concat, mul") {
    SUBCASE("add of three inputs with fused relu6") {
        const auto g = graph_of(
            "input: input shape=1x1x3\na: relu input\ns: add input, a, input act=relu6\n");
        const Tensor y = lamda::run_reference(g, {}, tensor({1, 1, 3}, {-2, 1, 5}));
        // -2+0-2 -> 0; 1+1+1 = 3; 5+5+5 -> 6
        check_values(y, {0, 3, 6});
    }
    SUBCASE("concat joins channels in input order") {
        const auto g = graph_of(
            "input: input shape=1x2x1\na: relu input\nb: relu6 input\nc: concat b, input, a\n");
        const Tensor y = lamda::run_reference(g, {}, tensor({1, 2, 1}, {-1, 7}));
        CHECK(y.shape == Shape{1, 2, 3});
        check_values(y, {0, -1, 0, 6, 7, 7});
    }
    SUBCASE("mul broadcasts a 1x1xC operand, first or second") {
        const auto g = graph_of(
            "input: input shape=2x1x2\np: gap input\nm1: mul input, p\nm2: mul p, input\nd: add m1, m2\n");
        const Tensor y = lamda::run_reference(g, {}, iota({2, 1, 2}));
        // p = [2, 3]; m1 = m2 = [2, 6, 6, 12]
        check_values(y, {4, 12, 12, 24});
    }
}

TEST_CASE("reference: activations") {
    const auto act = [](const char* op, std::vector<float> x) {
        const auto g = graph_of(std::string("input: input shape=1x1x") + std::to_string(x.size()) +
                                "\na: " + op + "\n");
        return lamda::run_reference(g, {}, tensor({1, 1, static_cast<std::int64_t>(x.size())}, x));
    };
    check_values(act("relu", {-1, 0, 2}), {0, 0, 2});
    check_values(act("relu6", {-1, 3, 7}), {0, 3, 6});
    check_values(act("hardswish", {-4, -1, 0, 1, 4}), {0, -1.0f / 3, 0, 2.0f / 3, 4});
    check_values(act("hardsigmoid", {-4, -1, 0, 1, 4}), {0, 1.0f / 3, 0.5f, 2.0f / 3, 1});
    check_values(act("sigmoid", {0, 2}), {0.5f, static_cast<float>(1 / (1 + std::exp(-2.0)))});
    check_values(act("dropout rate=0.3", {-1, 2}), {-1, 2});
}

TEST_CASE("reference: softmax over channels is stable and sums to one") {
    const auto g = graph_of("input: input shape=1x2x3\ns: softmax\n");
    const Tensor y = lamda::run_reference(g, {}, tensor({1, 2, 3}, {1000, 1001, 1002, 0, 0, 0}));
    for (int p = 0; p < 2; ++p) {
        float sum = 0;
        for (int c = 0; c < 3; ++c) {
            CHECK(std::isfinite(y.data[p * 3 + c]));
            sum += y.data[p * 3 + c];
        }
        CHECK(sum == doctest::Approx(1.0f));
    }
    CHECK(y.data[3] == doctest::Approx(1.0f / 3));
    CHECK(y.data[2] / y.data[1] == doctest::Approx(std::exp(1.0f)));
}

TEST_CASE("reference: flatten keeps NHWC order and every layer output is returned") {
    const auto g = graph_of("input: input shape=2x2x2\nf: flatten\nr: relu\n");
    const auto all = lamda::run_reference_all(g, {}, iota({2, 2, 2}, -3.0f));
    REQUIRE(all.size() == 3);
    CHECK(all[1].shape == Shape{1, 1, 8});
    check_values(all[1], {-3, -2, -1, 0, 1, 2, 3, 4});
    check_values(all[2], {0, 0, 0, 0, 1, 2, 3, 4});
}

TEST_CASE("reference: errors name the problem") {
    const auto g = graph_of("input: input shape=2x2x1\nc: conv2d out=2 kernel=1\n");
    const Weights w = lamda::random_weights(g, 1);
    CHECK_THROWS_WITH_AS(lamda::run_reference(g, w, iota({2, 3, 1})),
                         doctest::Contains("input has shape 2x3x1"), lamda::ExecutorError);
    CHECK_THROWS_WITH_AS(lamda::run_reference(g, {}, iota({2, 2, 1})),
                         doctest::Contains("missing tensor 'c.weight'"), lamda::ExecutorError);
}

TEST_CASE("random_weights: deterministic, per-name, bounded, positive variances") {
    const auto g = graph_of(
        "input: input shape=8x8x3\nc: conv2d out=16 kernel=3\nb: batchnorm\nd: dwconv kernel=3 multiplier=2 bias=false\n"
        "p: gap\nf: fc out=10\n");
    const Weights a = lamda::random_weights(g, 42), b = lamda::random_weights(g, 42),
                  c = lamda::random_weights(g, 43);
    CHECK(lamda::validate_weights(g, a).empty());
    CHECK(a.size() == 9);  // c.weight c.bias b.{weight,bias,running_mean,running_var} d.weight f.weight f.bias
    for (const auto& kv : a) {
        CHECK(kv.second.data == b.at(kv.first).data);
        CHECK(kv.second.data != c.at(kv.first).data);
    }
    const float bound = std::sqrt(6.0f / 27.0f);
    for (float v : a.at("c.weight").data) CHECK(std::fabs(v) <= bound);
    for (float v : a.at("b.running_var").data) CHECK(v > 0.0f);
    CHECK(a.at("d.weight").shape == std::vector<std::int64_t>{32, 1, 3, 3});
    // Editing one layer leaves the others' weights unchanged.
    const auto g2 = graph_of(
        "input: input shape=8x8x3\nc: conv2d out=16 kernel=3\nb: batchnorm\nd: dwconv kernel=5 multiplier=2 bias=false\n"
        "p: gap\nf: fc out=10\n");
    CHECK(lamda::random_weights(g2, 42).at("c.weight").data == a.at("c.weight").data);
}

TEST_CASE("validate_weights: missing, misshaped and unexpected tensors") {
    const auto g = graph_of("input: input shape=4x4x1\nconv1: conv2d out=16 kernel=3 bias=false\nb: batchnorm\n");
    Weights w = lamda::random_weights(g, 7);
    CHECK(lamda::validate_weights(g, w).empty());

    Weights bad = w;
    bad["conv1.weight"] = {{16, 3, 3, 3}, std::vector<float>(16 * 27)};
    auto errors = lamda::validate_weights(g, bad);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "'conv1.weight' has shape [16,3,3,3], expected [16,1,3,3]");

    bad = w;
    bad.erase("b.running_var");
    bad["conv1.bias"] = {{16}, std::vector<float>(16)};
    bad["nope.weight"] = {{1}, {0}};
    errors = lamda::validate_weights(g, bad);
    REQUIRE(errors.size() == 3);
    CHECK(errors[0].find("missing tensor 'b.running_var'") != std::string::npos);
    CHECK(errors[1].find("unexpected tensor 'conv1.bias'") != std::string::npos);
    CHECK(errors[1].find("bias=false") != std::string::npos);
    CHECK(errors[2].find("unexpected tensor 'nope.weight'") != std::string::npos);

    bad = w;
    bad["b.running_var"].data[3] = -1.0f;
    errors = lamda::validate_weights(g, bad);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("'b.running_var' has a negative") != std::string::npos);

    bad = w;
    bad["conv1.weight"].data.pop_back();
    errors = lamda::validate_weights(g, bad);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("values but its shape") != std::string::npos);
}

TEST_CASE("safetensors: write then read gives the same tensors and metadata") {
    Weights w;
    w["a.weight"] = {{2, 3}, {1.5f, -2, 0, 3.25f, 1e-30f, -0.0f}};
    w["b.bias"] = {{3}, {7, 8, 9}};
    w["scalar"] = {{}, {42}};
    w["empty"] = {{0, 4}, {}};
    w["we\"ird\\name\n"] = {{1}, {1}};
    const std::map<std::string, std::string> meta{{"format", "pt"}, {"lamda", "tab\there"}};
    const std::string bytes = lamda::to_safetensors(w, meta);
    const auto back = lamda::parse_safetensors(bytes, "mem.safetensors");
    CHECK(back.metadata == meta);
    REQUIRE(back.tensors.size() == w.size());
    for (const auto& kv : w) {
        REQUIRE(back.tensors.count(kv.first));
        CHECK(back.tensors.at(kv.first).shape == kv.second.shape);
        CHECK(back.tensors.at(kv.first).data == kv.second.data);
    }
    // The header is padded to 8 bytes; data follows.
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
    CHECK(n % 8 == 0);

    // Through a file.
    const std::string path =
        (std::filesystem::temp_directory_path() / "lamda_test_roundtrip.safetensors").string();
    lamda::write_safetensors(path, w, meta);
    const Weights from_file = lamda::read_safetensors(path);
    std::remove(path.c_str());
    CHECK(from_file.size() == w.size());
    CHECK(from_file.at("a.weight").data == w.at("a.weight").data);
    CHECK_THROWS_WITH_AS(lamda::read_safetensors("/nonexistent/dir/x.safetensors"),
                         doctest::Contains("/nonexistent/dir/x.safetensors: cannot open"),
                         lamda::WeightsError);
}

namespace {

std::string with_header(const std::string& json, const std::string& data = std::string(16, '\0')) {
    std::string out;
    std::uint64_t n = json.size();
    for (int i = 0; i < 8; ++i, n >>= 8) out += static_cast<char>(n & 0xFF);
    return out + json + data;
}

std::string parse_error(const std::string& bytes) {
    try {
        (void)lamda::parse_safetensors(bytes, "bad.safetensors");
    } catch (const lamda::WeightsError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("safetensors: malformed files are errors naming the file and tensor, never crashes") {
    Weights w;
    w["t"] = {{2, 2}, {1, 2, 3, 4}};
    const std::string good = lamda::to_safetensors(w);
    CHECK(parse_error(good) == "(no error)");

    CHECK(parse_error("") .find("bad.safetensors: file is 0 bytes") == 0);
    CHECK(parse_error(good.substr(0, 5)).find("too short") != std::string::npos);
    // Truncated anywhere: an error, not a crash.
    for (std::size_t len = 0; len < good.size(); ++len)
        CHECK(parse_error(good.substr(0, len)) != "(no error)");

    std::string huge = good;
    huge[7] = 0x7F;  // header length ~ 2^63
    CHECK(parse_error(huge).find("exceeds the limit") != std::string::npos);
    std::string past = good;
    past[0] = static_cast<char>(0xF0);
    past[1] = 0x01;  // ~ 500 bytes, more than the file
    CHECK(parse_error(past).find("runs past the end") != std::string::npos);

    CHECK(parse_error(with_header(R"({"t":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})"))
              .find("bad.safetensors: tensor 't': dtype is F16") == 0);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,40]}})"))
              .find("tensor 't': data_offsets [0,40] run past the end") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})"))
              .find("needs 12 bytes") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})"))
              .find("reversed") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})"))
              .find("shape dimensions") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"))
              .find("overlap") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[2]}})"))
              .find("missing field 'data_offsets'") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{}})"))
              .find("duplicate key") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":)")).find("invalid JSON header") != std::string::npos);
    CHECK(parse_error(with_header(R"([1,2])")).find("not an object") != std::string::npos);
    CHECK(parse_error(with_header(std::string(100, '[') + std::string(100, ']')))
              .find("nested too deeply") != std::string::npos);
    CHECK(parse_error(with_header(R"({"t":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,8]}})"))
              .find("elements") != std::string::npos);
    CHECK(parse_error(with_header(R"({"__metadata__":{"k":1}})")).find("not a string") !=
          std::string::npos);

    // torch's integer batch counters are skipped, not errors.
    const auto ok = lamda::parse_safetensors(
        with_header(R"({"bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                    std::string(8, '\0')),  // the data section holds exactly its tensors
        "torch.safetensors");
    CHECK(ok.tensors.empty());
}

TEST_CASE("executors refuse a graph edited after shape inference") {
    lamda::ParseResult r = lamda::parse_dsl("input: input shape=6x6x2\nc: conv2d out=4 kernel=3\n");
    REQUIRE(r.ok());
    lamda::Graph edited = r.graph;
    edited.layers[1].out_channels = 8;  // shapes still say 4 channels
    const lamda::Weights w = lamda::random_weights(r.graph, 1);
    CHECK_THROWS_WITH_AS(lamda::run_reference(edited, w, lamda::Tensor(lamda::Shape{6, 6, 2})),
                         doctest::Contains("is not the inferred 6x6x8 (run infer_shapes"),
                         lamda::ExecutorError);
    edited.layers[1].inputs = {1};  // not an earlier layer
    CHECK_THROWS_WITH_AS(lamda::run_reference(edited, w, lamda::Tensor(lamda::Shape{6, 6, 2})),
                         doctest::Contains("does not name an earlier layer"), lamda::ExecutorError);
}
