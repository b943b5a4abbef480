// The XNNPACK executor's int8 path (XnnOptions::int8) against its fp32 path, op by op.
// Built only with LAMDA_WITH_XNNPACK.
//
// Calibrated on the very input it runs, every int8 value must match the fp32 value within
//   max |dequantized int8 - fp32| <= steps * scale
// where scale is that value's quantization step and `steps` grows with the layers before it
// (each adds its rounding and its weights' quantization error).
#include <doctest/doctest.h>

#if defined(LAMDA_WITH_XNNPACK)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lamda/data/weights.hpp"
#include "lamda/exec/bench.hpp"
#include "lamda/exec/reference_int8.hpp"
#include "lamda/exec/xnnpack.hpp"

#include "../executor_test_support.hpp"

#ifndef LAMDA_SOURCE_DIR
#define LAMDA_SOURCE_DIR "."
#endif

using lamda::Graph;
using lamda::Shape;
using lamda::Tensor;
using lamda::XnnExecutor;

namespace {

using lamda_test::graph_of;
using lamda_test::random_input;

struct Int8Run {
    int compared = 0;
    double worst_steps = 0;  // the largest error, in quantization steps of its value
    double output_rel = 0;   // max |int8 - fp32| of the output over max |fp32 output|
};

// Runs `g` in fp32 and in int8 (calibrated on the same input), keeping every layer's value.
Int8Run compare_int8(const Graph& g, std::uint64_t seed = 1) {
    const lamda::Weights w = lamda::random_weights(g, seed);
    const Tensor in = random_input(g.layers.front().shape, seed + 100);
    lamda::XnnOptions fo;
    fo.keep_intermediates = true;
    XnnExecutor fp(g, w, fo);
    const Tensor fout = fp.run(in);
    lamda::XnnOptions qo = fo;
    qo.int8 = true;
    qo.calibration.push_back(in);
    XnnExecutor q(g, w, qo);
    REQUIRE(q.int8());
    const Tensor qout = q.run(in);
    REQUIRE(qout.shape == fout.shape);
    Int8Run r;
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const float* y = fp.layer_output(i);
        const std::int8_t* qy = q.layer_output_int8(i);
        CHECK((y == nullptr) == (qy == nullptr));
        if (!y || !qy) continue;
        const lamda::XnnQuant qp = q.layer_quant(i);
        CHECK(qp.scale > 0.0f);
        double err = 0;
        const std::int64_t n = g.layers[i].shape.elements();
        for (std::int64_t e = 0; e < n; ++e)
            err = std::max(err, std::fabs(static_cast<double>(qp.scale) * (qy[e] - qp.zero_point) - y[e]));
        r.worst_steps = std::max(r.worst_steps, err / qp.scale);
        ++r.compared;
    }
    double top = 1e-6, err = 0;
    for (std::size_t e = 0; e < fout.data.size(); ++e) {
        top = std::max(top, static_cast<double>(std::fabs(fout.data[e])));
        err = std::max(err, static_cast<double>(std::fabs(fout.data[e] - qout.data[e])));
    }
    r.output_rel = err / top;
    return r;
}

Int8Run compare_int8(const std::string& text) { return compare_int8(graph_of(text)); }

}  // namespace

TEST_CASE("xnnpack int8: single layers agree with fp32 within a few quantization steps") {
    const char* cases[] = {
        "conv2d out=8 kernel=3",
        "conv2d out=8 kernel=3 stride=2 act=relu",
        "conv2d out=8 kernel=3 act=relu6",
        "conv2d out=6 kernel=3 groups=3",
        "conv2d out=8 kernel=3 dilation=2 bias=false",
        "conv2d out=8 kernel=3 act=hardswish",
        "conv2d out=8 kernel=3 act=hardsigmoid",
        "conv2d out=8 kernel=3 act=sigmoid",
        "dwconv kernel=3",
        "dwconv kernel=5 stride=2 multiplier=2 act=relu6",
        "batchnorm",
        "maxpool kernel=3 stride=2",
        "maxpool kernel=1 stride=2",
        "avgpool kernel=2",
        "gap",
        "relu",
        "relu6",
        "hardswish",
        "hardsigmoid",
        "sigmoid",
        "softmax",
    };
    for (const char* c : cases) {
        const Int8Run r = compare_int8(std::string("input: input shape=11x10x6\nl: ") + c + "\n");
        INFO(std::string(c) << ": worst " << r.worst_steps << " steps, output " << r.output_rel);
        CHECK(r.compared == 2);
        CHECK(r.worst_steps <= 3.0);
    }
    const Int8Run fc = compare_int8("input: input shape=1x1x40\nl: fc out=10 act=relu\n");
    INFO("fc: worst " << fc.worst_steps << " steps");
    CHECK(fc.compared == 2);
    CHECK(fc.worst_steps <= 3.0);
}

TEST_CASE("xnnpack int8: add, mul, concat, folded batchnorm, flatten") {
    const char* cases[] = {
        "input: input shape=5x5x4\na: relu\nb: sigmoid input\ns: add input, a, b act=relu6\n",
        "input: input shape=5x5x4\na: hardswish\ns: add input, a act=hardsigmoid\n",
        "input: input shape=6x6x8\np: gap\nm: mul input, p\n",
        "input: input shape=5x4x3\na: conv2d out=5 kernel=1\nb: relu input\nc: concat a, input, b\n",
        "input: input shape=8x8x3\nc: conv2d out=8 kernel=3 bias=false\nb: batchnorm\nr: relu\n",
        "input: input shape=3x3x4\nf: flatten\nd: dropout\nx: fc out=5\ns: softmax\n",
    };
    for (const char* c : cases) {
        const Int8Run r = compare_int8(c);
        INFO(std::string(c) << "worst " << r.worst_steps << " steps, output " << r.output_rel);
        CHECK(r.compared >= 2);
        CHECK(r.worst_steps <= 6.0);
    }
}

TEST_CASE("xnnpack int8: zoo models stay close to fp32") {
    struct Model {
        const char* name;
        Shape input;
    };
    const Model models[] = {
        {"lenet5", {}}, {"tiny_mobilenet", {}}, {"mobilenet_v2", {64, 64, 3}},
        {"mobilenet_v3_small", {64, 64, 3}}, {"resnet18", {64, 64, 3}},
    };
    for (const Model& m : models) {
        const Int8Run r = compare_int8(lamda_test::zoo_model(LAMDA_SOURCE_DIR, m.name, m.input), 11);
        INFO(std::string(m.name) << ": output error " << r.output_rel << " of its range, worst layer "
                    << r.worst_steps << " steps");
        CHECK(r.compared > 0);
        CHECK(r.output_rel < 0.25);
    }
}

TEST_CASE("xnnpack int8: which layers run in float, synthetic scales, bad calibration") {
    const Graph g = graph_of(
        "input: input shape=8x8x3\nc: conv2d out=8 kernel=3 act=relu\nh: hardswish\n"
        "p: avgpool kernel=2\ng: gap\nf: flatten\nx: fc out=4\n");
    const auto w = lamda::random_weights(g, 3);
    lamda::XnnOptions o;
    o.int8 = true;
    XnnExecutor q(g, w, o);  // synthetic scales: the timing input
    CHECK(!q.runs_in_float(1));
    CHECK(q.runs_in_float(2));  // hardswish has no int8 kernel in this XNNPACK
    CHECK(q.runs_in_float(3));  // nor avgpool
    CHECK(!q.runs_in_float(4));
    CHECK(!q.runs_in_float(6));
    lamda::fill_timing_input(q);
    q.run();
    for (std::int64_t e = 0; e < q.output_shape().elements(); ++e) CHECK(std::isfinite(q.output()[e]));
    const std::vector<double> ms = q.run_timed_per_op();
    CHECK(ms.size() == g.layers.size());
    // The int8 buffers are a quarter of the fp32 ones (but for padding).
    XnnExecutor fp(g, w);
    CHECK(q.buffer_bytes() < fp.buffer_bytes());

    lamda::XnnOptions bad = o;
    bad.calibration.push_back(Tensor(Shape{8, 8, 2}));
    CHECK_THROWS_WITH_AS(XnnExecutor(g, w, bad), doctest::Contains("calibration input has shape"),
                         lamda::ExecutorError);
    lamda::XnnOptions nan = o;
    Tensor t(Shape{8, 8, 3});
    t.data[5] = std::nanf("");
    nan.calibration.push_back(t);
    CHECK_THROWS_WITH_AS(XnnExecutor(g, w, nan), doctest::Contains("not finite"),
                         lamda::ExecutorError);
}

namespace {

// PTQ of `g` (random weights, calibrated on a few random images) through the integer reference
// (exec/reference_int8.hpp), then XNNPACK with the same quantized model: every value both hold
// in int8 must agree within `steps` quantization steps (0 on x86: the same arithmetic; one on
// aarch64, whose per-tensor qs8 kernels round ties differently). Returns the layers compared.
int match_reference(const Graph& g, const lamda::Weights& w, int steps, std::uint64_t seed = 3) {
    std::vector<Tensor> calib;
    for (std::uint64_t k = 0; k < 3; ++k) calib.push_back(random_input(g.layers.front().shape, seed + 10 + k));
    const lamda::PtqResult ptq = lamda::quantize_ptq(g, w, calib);
    const Tensor in = random_input(g.layers.front().shape, seed + 50);
    const lamda::Int8Run ref = lamda::run_reference_int8(ptq.graph, ptq.model, ptq.float_weights, in);
    lamda::XnnOptions o;
    o.keep_intermediates = true;
    o.quantized = &ptq.model;
    XnnExecutor q(ptq.graph, ptq.float_weights, o);
    REQUIRE(q.int8());
    const Tensor out = q.run(in);
    int compared = 0;
    for (std::size_t i = 0; i < ptq.graph.layers.size(); ++i) {
        const std::int8_t* y = q.layer_output_int8(i);
        const lamda::Int8Value& r = ref.values[i];
        if (!y || r.q.empty() || q.runs_in_float(i)) continue;
        const lamda::XnnQuant p = q.layer_quant(i);
        INFO("layer " << i << " '" << ptq.graph.layers[i].name << "' ("
                      << lamda::op_name(ptq.graph.layers[i].op) << ")");
        CHECK(p.scale == r.params.scale);
        CHECK(p.zero_point == r.params.zero_point);
        int worst = 0;
        for (std::size_t e = 0; e < r.q.size(); ++e) worst = std::max(worst, std::abs(int{y[e]} - int{r.q[e]}));
        CHECK(worst <= steps);
        ++compared;
    }
    REQUIRE(out.data.size() == ref.output.data.size());
    return compared;
}

int match_reference(const Graph& g, int steps, std::uint64_t seed = 3) {
    return match_reference(g, lamda::random_weights(g, seed), steps, seed);
}

#if defined(__x86_64__) || defined(__i386__)
constexpr int reference_steps = 0;
#else
constexpr int reference_steps = 1;
#endif

}  // namespace

TEST_CASE("xnnpack int8 with a quantized model: values equal the integer reference's, op by op") {
    const char* cases[] = {
        "input: input shape=9x8x5\nc: conv2d out=8 kernel=3 act=relu\n",
        "input: input shape=9x8x5\nc: conv2d out=8 kernel=3 stride=2 bias=false\nb: batchnorm\nr: relu6\n",
        "input: input shape=9x8x6\nc: conv2d out=6 kernel=3 groups=3\nd: dwconv kernel=3 act=relu6\n",
        "input: input shape=9x8x6\nd: dwconv kernel=5 stride=2 multiplier=2\n",
        "input: input shape=8x8x4\nc: conv2d out=4 kernel=1\ns: add input, c act=relu\n",
        "input: input shape=8x8x4\nm: maxpool kernel=2\nr: relu\ng: gap\nf: flatten\nx: fc out=5\n",
        "input: input shape=6x6x4\nc: conv2d out=4 kernel=3 act=hardswish\ns: sigmoid\n",
        "input: input shape=6x6x4\na: avgpool kernel=2\nc: conv2d out=6 kernel=1\nk: concat a, c\n",
    };
    for (const char* c : cases) {
        INFO(c);
        CHECK(match_reference(graph_of(c), reference_steps) >= 2);
    }
}

TEST_CASE("xnnpack int8 with a quantized model: the zoo's small models match the reference") {
    CHECK(match_reference(lamda_test::zoo_model(LAMDA_SOURCE_DIR, "lenet5", {}), reference_steps) > 3);
    CHECK(match_reference(lamda_test::zoo_model(LAMDA_SOURCE_DIR, "tiny_mobilenet", {}), reference_steps) > 3);
}

TEST_CASE("xnnpack int8 with a quantized model: a dead relu is the constant the reference computes") {
    // c and d always write -1, so the relu fused into c and the relu after the maxpool have int8
    // bounds that meet (zero point 127: [127, 127]), which XNNPACK's operators refuse.
    const Graph g = graph_of("input: input shape=6x6x3\nc: conv2d out=4 kernel=3 act=relu\n"
                             "d: conv2d out=4 kernel=1\nm: maxpool kernel=2\nr: relu\ng: gap\nf: fc out=3\n");
    lamda::Weights w = lamda::random_weights(g, 5);
    for (const char* layer : {"c", "d"}) {
        for (float& v : w.at(std::string(layer) + ".weight").data) v = 0.0f;
        for (float& v : w.at(std::string(layer) + ".bias").data) v = -1.0f;
    }
    CHECK(match_reference(g, w, reference_steps) >= 4);
}

TEST_CASE("xnnpack int8 with a quantized model: bad parameters are refused") {
    const Graph g = graph_of("input: input shape=6x6x3\nc: conv2d out=4 kernel=3\n");
    const lamda::Weights w = lamda::random_weights(g, 1);
    lamda::PtqResult ptq = lamda::quantize_ptq(g, w, {random_input(g.layers.front().shape, 1)});
    lamda::XnnOptions o;
    o.quantized = &ptq.model;
    ptq.model.layers.front().weight_scales.front() = -1.0f;
    CHECK_THROWS_WITH_AS(XnnExecutor(ptq.graph, ptq.float_weights, o), doctest::Contains("is negative"),
                         lamda::ExecutorError);
    ptq.model.layers.front().weight_scales.front() = std::nanf("");
    CHECK_THROWS_WITH_AS(XnnExecutor(ptq.graph, ptq.float_weights, o), doctest::Contains("NaN"),
                         lamda::ExecutorError);
    ptq.model.layers.front().weight_scales.front() = 0.01f;
    ptq.model.activations.front().second.scale = 0.0f;
    CHECK_THROWS_WITH_AS(XnnExecutor(ptq.graph, ptq.float_weights, o), doctest::Contains("is zero"),
                         lamda::ExecutorError);
}

#endif  // LAMDA_WITH_XNNPACK

TEST_CASE("xnnpack int8: 1x1 convolutions on lamda's VNNI kernel equal XNNPACK's, value for value") {
    // Pointwise convolutions with channel counts off the kernel's multiples, over more pixels
    // than one task (exec/qc8_vnni.hpp's kTilePixels), next to ones the kernel does not take.
    const Graph g = graph_of("input: input shape=14x13x20\na: conv2d out=24 kernel=1 act=relu6\n"
                             "d: dwconv kernel=3\nb: conv2d out=70 kernel=1\nc: conv2d out=16 kernel=1 act=relu\n"
                             "s: conv2d out=16 kernel=1 stride=2\ng: gap\nf: fc out=5\n");
    const lamda::Weights w = lamda::random_weights(g, 11);
    const Tensor in = random_input(g.layers.front().shape, 12);
    for (int threads : {1, 2}) {
        INFO("threads " << threads);
        lamda::XnnOptions o;
        o.threads = threads;
        o.int8 = true;
        o.keep_intermediates = true;
        o.calibration.push_back(in);
        o.int8_vnni = true;  // also in a Debug build, where it is off by default
        XnnExecutor own(g, w, o);
        o.int8_vnni = false;
        XnnExecutor xnn(g, w, o);
        CHECK(own.int8_vnni_layers() == (lamda::qc8_vnni::available() ? 3 : 0));
        CHECK(xnn.int8_vnni_layers() == 0);
        own.run(in);
        xnn.run(in);
        for (std::size_t i = 0; i < g.layers.size(); ++i) {
            const std::int8_t* a = own.layer_output_int8(i);
            const std::int8_t* b = xnn.layer_output_int8(i);
            REQUIRE((a == nullptr) == (b == nullptr));
            if (!a) continue;
            INFO("layer " << g.layers[i].name);
            const auto n = static_cast<std::size_t>(g.layers[i].shape.elements());
            CHECK(std::equal(a, a + n, b));
        }
    }
}
