// The int8 path: the I8/I32 safetensors dtypes, quantized files and their errors, the reference
// executor's integer ops (hand-worked and against the float reference), and post-training
// quantization.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/exec/reference_int8.hpp"

using lamda::ActivationQuant;
using lamda::Shape;
using lamda::Tensor;
using lamda::Weights;
using lamda::WeightTensor;

namespace {

lamda::Graph graph_of(const std::string& text) { return lamda::parse_dsl_or_throw(text, "test.lamda"); }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const lamda::Exception& e) {
        return e.what();
    }
    return "(no error)";
}

std::size_t argmax(const std::vector<float>& v) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < v.size(); ++k)
        if (v[k] > v[best]) best = k;
    return best;
}

Tensor random_image(Shape s, std::uint64_t seed) {
    lamda::detail::SplitMix64 rng{seed};
    Tensor t(s);
    for (float& v : t.data) v = rng.uniform(0.0f, 1.0f);
    return t;
}

const char* const kModel =
    "model q\n"
    "x: input shape=8x8x3\n"
    "c1: conv2d out=8 kernel=3 bias=false\n"
    "bn: batchnorm\n"
    "r1: relu\n"
    "p1: maxpool kernel=2\n"
    "dw: dwconv kernel=3 act=relu6\n"
    "pw: conv2d out=8 kernel=1\n"
    "res: add p1, pw act=relu\n"
    "hs: hardswish\n"
    "g: gap\n"
    "f: fc out=5\n"
    "s: softmax\n";

}  // namespace

TEST_CASE("weights: I8 and I32 tensors round-trip through safetensors") {
    Weights w;
    WeightTensor a;
    a.dtype = lamda::WeightDType::I8;
    a.shape = {2, 3};
    a.i8 = {-128, -1, 0, 1, 5, 127};
    WeightTensor b;
    b.dtype = lamda::WeightDType::I32;
    b.shape = {2};
    b.i32 = {std::numeric_limits<std::int32_t>::min(), 123456789};
    w["a"] = a;
    w["b"] = b;
    w["f"] = {{1}, {2.5f}};
    const lamda::SafetensorsData d = lamda::parse_safetensors(lamda::to_safetensors(w), "rt");
    CHECK(d.tensors.at("a").dtype == lamda::WeightDType::I8);
    CHECK(d.tensors.at("a").i8 == a.i8);
    CHECK(d.tensors.at("b").i32 == b.i32);
    CHECK(d.tensors.at("f").data == std::vector<float>{2.5f});
    // Still refused: other dtypes, with the list of what is accepted.
    std::string bytes = lamda::to_safetensors(w);
    const auto at = bytes.find("\"I32\"");
    REQUIRE(at != std::string::npos);
    bytes.replace(at, 5, "\"U32\"");
    CHECK(error_of([&] { lamda::parse_safetensors(bytes, "bad.safetensors"); })
              .find("dtype is U32; only F32, I8 and I32 are supported") != std::string::npos);
}

TEST_CASE("int8: a 1x1 conv computed by hand") {
    const auto g = graph_of("model t\nx: input shape=1x1x2\nc: conv2d out=1 kernel=1\n");
    lamda::QuantizedModel m;
    m.activations = {{"x", ActivationQuant{0.5f, 1}}, {"c", ActivationQuant{0.25f, -2}}};
    lamda::QuantizedWeights w;
    w.layer = "c";
    w.weight_shape = {1, 2, 1, 1};
    w.weights = {1, -2};
    w.weight_scales = {0.1f};
    w.bias = {3};
    m.layers = {w};
    Tensor in(Shape{1, 1, 2});
    in.data = {1.0f, 0.5f};  // q = 1/0.5 + 1 = 3 and 0.5/0.5 + 1 = 2
    const lamda::Int8Run r = lamda::run_reference_int8(g, m, {}, in);
    CHECK(r.values[0].q == std::vector<std::int8_t>{3, 2});
    // acc = 3 + 1*(3-1) - 2*(2-1) = 3; scale 0.5*0.1/0.25 = 0.2; 0.6 -> 1; + (-2) = -1
    CHECK(r.values[1].q == std::vector<std::int8_t>{-1});
    CHECK(r.output.data[0] == doctest::Approx(0.25f));
}

TEST_CASE("int8: maxpool, relu, add and gap on int8 values by hand") {
    const auto g = graph_of(
        "model t\nx: input shape=2x2x1\np: maxpool kernel=2\nr: relu\na: add p, r\ng: gap\n");
    lamda::QuantizedModel m;
    const ActivationQuant q{0.5f, -10};
    m.activations = {{"x", q}, {"p", q}, {"r", q}, {"a", ActivationQuant{1.0f, 0}}, {"g", ActivationQuant{1.0f, 0}}};
    Tensor in(Shape{2, 2, 1});
    in.data = {-3.0f, -2.0f, -1.0f, -4.0f};  // q: -16 -14 -12 -18
    const lamda::Int8Run r = lamda::run_reference_int8(g, m, {}, in);
    CHECK(r.values[1].q == std::vector<std::int8_t>{-12});  // max
    CHECK(r.values[2].q == std::vector<std::int8_t>{-10});  // relu: clamped at the zero point
    // add: (-1.0) + 0.0 = -1.0 at scale 1 -> -1
    CHECK(r.values[3].q == std::vector<std::int8_t>{-1});
    CHECK(r.values[4].q == std::vector<std::int8_t>{-1});
    CHECK(r.output.data[0] == doctest::Approx(-1.0f));
}

TEST_CASE("int8: an op without an int8 kernel must be listed as a float layer") {
    const auto g = graph_of("model t\nx: input shape=2x2x1\nh: hardswish\n");
    lamda::QuantizedModel m;
    m.activations = {{"x", ActivationQuant{0.1f, 0}}, {"h", ActivationQuant{0.1f, 0}}};
    CHECK(error_of([&] { lamda::run_reference_int8(g, m, {}, Tensor(Shape{2, 2, 1})); })
              .find("hardswish layer 'h' has no int8 kernel") != std::string::npos);
    m.float_layers = {"h"};
    Tensor in(Shape{2, 2, 1});
    in.data = {-1.0f, 0.0f, 1.0f, 2.0f};
    const lamda::Int8Run r = lamda::run_reference_int8(g, m, {}, in);
    CHECK(r.output.data[2] == doctest::Approx(1.0f * 4.0f / 6.0f));  // float between converts
}

TEST_CASE("ptq: the int8 reference tracks the float reference, op by op") {
    const lamda::Graph g = graph_of(kModel);
    const Weights w = lamda::random_weights(g, 5);
    std::vector<Tensor> calib;
    for (int i = 0; i < 16; ++i) calib.push_back(random_image({8, 8, 3}, 100 + static_cast<std::uint64_t>(i)));
    const lamda::PtqResult q = lamda::quantize_ptq(g, w, calib);
    CHECK(q.folded == std::vector<std::string>{"bn"});
    CHECK(q.graph.find("bn") < 0);
    std::vector<std::string> floats;
    for (const auto& f : q.float_reasons) floats.push_back(f.first);
    CHECK(floats == std::vector<std::string>{"hs", "s"});
    CHECK(q.model.find_layer("c1")->weight_scales.size() == 8);  // per channel
    CHECK(q.model.find_layer("f")->weight_scales.size() == 1);   // fc: per tensor

    const auto [fg, fw] = lamda::fold_batchnorm(g, w);
    for (int i = 0; i < 4; ++i) {
        const Tensor img = random_image({8, 8, 3}, 900 + static_cast<std::uint64_t>(i));
        const std::vector<Tensor> ref = lamda::run_reference_all(fg, fw, img);
        const lamda::Int8Run run = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
        for (std::size_t l = 0; l < ref.size(); ++l) {
            const ActivationQuant p = run.values[l].params;
            double worst = 0.0;
            for (std::size_t k = 0; k < ref[l].data.size(); ++k)
                worst = std::max(worst, std::fabs(double(lamda::dequantize(run.values[l].q[k], p)) - ref[l].data[k]));
            INFO("layer " << q.graph.layers[l].name << " scale " << p.scale);
            // Errors accumulate through the layers; a few steps of the value's own scale.
            CHECK(worst <= 8.0 * p.scale + 1e-6);
        }
        CHECK(argmax(run.output.data) == argmax(ref.back().data));
    }
}

TEST_CASE("ptq: a quantized file round-trips and bad files get clear errors") {
    const lamda::Graph g = graph_of(kModel);
    const Weights w = lamda::random_weights(g, 9);
    std::vector<Tensor> calib{random_image({8, 8, 3}, 1), random_image({8, 8, 3}, 2)};
    const lamda::PtqResult q = lamda::quantize_ptq(g, w, calib);
    // Named references, not a structured binding: C++17 lambdas cannot capture those (clang refuses).
    const auto packed = lamda::quantized_to_weights(q.model, q.float_weights);
    const Weights& tensors = packed.first;
    const auto& meta = packed.second;
    const std::string bytes = lamda::to_safetensors(tensors, meta);
    const lamda::SafetensorsData d = lamda::parse_safetensors(bytes, "q.safetensors");
    CHECK(lamda::is_quantized(d));
    Weights fw;
    const lamda::QuantizedModel back = lamda::read_quantized(q.graph, d, "q.safetensors", fw);
    const Tensor img = random_image({8, 8, 3}, 77);
    const auto a = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
    const auto b = lamda::run_reference_int8(q.graph, back, fw, img);
    for (std::size_t l = 0; l < a.values.size(); ++l) CHECK(a.values[l].q == b.values[l].q);

    auto read_with = [&](const std::function<void(Weights&)>& edit) {
        Weights t = tensors;
        edit(t);
        return error_of([&] {
            Weights f;
            lamda::read_quantized(q.graph, lamda::parse_safetensors(lamda::to_safetensors(t, meta), "bad.safetensors"),
                                  "bad.safetensors", f);
        });
    };
    CHECK(read_with([](Weights& t) { t["c1.weight_scale"].data[3] = 0.0f; })
              .find("c1.weight_scale': scale of channel 3 is zero") != std::string::npos);
    CHECK(read_with([](Weights& t) { t["c1.weight_scale"].data[0] = -0.5f; }).find("is negative") !=
          std::string::npos);
    CHECK(read_with([](Weights& t) { t["x.act_scale"].data[0] = std::nanf(""); })
              .find("x.act_scale': activation scale is NaN") != std::string::npos);
    CHECK(read_with([](Weights& t) { t["f.act_scale"].data[0] = std::numeric_limits<float>::infinity(); })
              .find("infinite") != std::string::npos);
    CHECK(read_with([](Weights& t) {
              t["c1.weight_scale"].shape = {3};
              t["c1.weight_scale"].data.resize(3);
          }).find("c1.weight_scale' has shape [3], expected [8] (per channel) or [1]") != std::string::npos);
    CHECK(read_with([](Weights& t) {
              t["pw.weight"].shape = {8, 4, 1, 1};
              t["pw.weight"].i8.resize(32);
          }).find("'pw.weight' has shape [8,4,1,1], expected [8,8,1,1]") != std::string::npos);
    CHECK(read_with([](Weights& t) {
              t["c1.bias"].dtype = lamda::WeightDType::F32;
              t["c1.bias"].data.assign(8, 0.0f);
              t["c1.bias"].i32.clear();
          }).find("'c1.bias' is F32, expected I32") != std::string::npos);
    CHECK(read_with([](Weights& t) { t["x.act_zero_point"].i32[0] = 300; }).find("outside [-128, 127]") !=
          std::string::npos);

    // An fp32 file where int8 is required, and an int8 file where fp32 is required.
    const lamda::SafetensorsData f32 = lamda::parse_safetensors(lamda::to_safetensors(w), "fp32.safetensors");
    CHECK(error_of([&] {
              Weights f;
              lamda::read_quantized(q.graph, f32, "fp32.safetensors", f);
          }).find("fp32.safetensors: is an fp32 weights file, but int8 weights are required") != std::string::npos);
    const std::vector<std::string> problems = lamda::validate_weights(q.graph, d.tensors);
    REQUIRE_FALSE(problems.empty());
    CHECK(problems.front().find("is I8: these are quantized (int8) weights, and this needs F32") !=
          std::string::npos);
}

TEST_CASE("ptq: percentile calibration clips outliers, minmax keeps them") {
    const auto g = graph_of("model t\nx: input shape=1x1x1\n");
    std::vector<Tensor> calib;
    for (int i = 0; i < 1000; ++i) {
        Tensor t(Shape{1, 1, 1});
        t.data[0] = i == 500 ? 100.0f : static_cast<float>(i % 10) / 10.0f;
        calib.push_back(t);
    }
    lamda::PtqOptions minmax;
    const lamda::PtqResult a = lamda::quantize_ptq(g, {}, calib, minmax);
    CHECK(a.model.find_activation("x")->scale == doctest::Approx(100.0 / 255.0));
    lamda::PtqOptions pct;
    pct.range = lamda::CalibrationRange::Percentile;
    pct.percentile = 99.0;
    const lamda::PtqResult b = lamda::quantize_ptq(g, {}, calib, pct);
    CHECK(b.model.find_activation("x")->scale == doctest::Approx(0.9 / 255.0));
}

TEST_CASE("ptq: a near-dead channel keeps a requantization scale XNNPACK accepts") {
    const auto g = graph_of("model t\nx: input shape=2x2x1\nc: conv2d out=2 kernel=1\n");
    Weights w;
    w["c.weight"] = {{2, 1, 1, 1}, {0.5f, 1e-30f}};  // channel 1: tiny but not zero
    w["c.bias"] = {{2}, {0.0f, 0.0f}};
    std::vector<Tensor> calib{random_image({2, 2, 1}, 3), random_image({2, 2, 1}, 4)};
    const lamda::PtqResult q = lamda::quantize_ptq(g, w, calib);
    CHECK(q.float_reasons.empty());  // without the floor, channel 1's scale is ~1e-32
    const lamda::QuantizedWeights* c = q.model.find_layer("c");
    REQUIRE(c != nullptr);
    CHECK(lamda::requant_scale_ok(lamda::conv_requant_scale(q.model.find_activation("x")->scale,
                                                            c->weight_scales[1],
                                                            q.model.find_activation("c")->scale)));
    CHECK(c->weights[1] == 0);
}
