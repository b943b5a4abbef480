// The XNNPACK executor against the reference executor, op by op and on the model zoo.
// Built only with LAMDA_WITH_XNNPACK.
//
// Tolerance: every layer output XNNPACK materialises must match the reference within
//   max |xnnpack - reference| <= 1e-4 * max(1, max |reference|)
// over that tensor (XNNPACK sums in float in its own order and approximates exp/sigmoid).
#include <doctest/doctest.h>

#if defined(LAMDA_WITH_XNNPACK)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/core/analysis.hpp"
#include "lamda/exec/bench.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/detail/json_write.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/core/validate.hpp"
#include "lamda/data/weights.hpp"
#include "lamda/exec/xnnpack.hpp"

#include "../executor_test_support.hpp"

#ifndef LAMDA_SOURCE_DIR
#define LAMDA_SOURCE_DIR "."
#endif

using lamda::Graph;
using lamda::Shape;
using lamda::Tensor;
using lamda::XnnExecutor;
using lamda::XnnLowering;

namespace {

using lamda_test::graph_of;
using lamda_test::random_input;
using lamda_test::tolerance;

// Runs `g` through both executors; checks every materialised layer. Returns the number compared.
int agree(const Graph& g, std::uint64_t seed = 1, int threads = 1) {
    const lamda::Weights w = lamda::random_weights(g, seed);
    const Tensor in = random_input(g.layers.front().shape, seed + 100);
    const std::vector<Tensor> ref = lamda::run_reference_all(g, w, in);
    lamda::XnnOptions options;
    options.threads = threads;
    options.keep_intermediates = true;
    XnnExecutor exec(g, w, options);
    const Tensor out = exec.run(in);
    CHECK(out.shape == ref.back().shape);
    // Reusing buffers must not change the result.
    XnnExecutor reusing(g, w, {threads});
    const Tensor out_reused = reusing.run(in);
    CHECK(reusing.buffer_bytes() <= exec.buffer_bytes());
    double reuse_scale = 1.0;
    std::size_t reuse_worst = 0;
    CHECK(lamda_test::max_error(out_reused.data.data(), out.data.data(), out.data.size(),
                                reuse_scale, reuse_worst) == 0.0);
    int compared = 0;
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const float* y = exec.layer_output(i);
        if (!y) continue;
        const Tensor& r = ref[i];
        double scale = 1.0;
        std::size_t worst = 0;
        const double err = lamda_test::max_error(y, r.data.data(), r.data.size(), scale, worst);
        INFO("layer " << i << " '" << g.layers[i].name << "' (" << lamda::op_name(g.layers[i].op)
                      << ") " << lamda::to_string(r.shape) << ": max error " << err
                      << " at " << worst << " (xnnpack " << y[worst] << ", reference "
                      << r.data[worst] << "), scale " << scale);
        CHECK(err <= tolerance * scale);
        ++compared;
    }
    return compared;
}

int agree(const std::string& text, std::uint64_t seed = 1) { return agree(graph_of(text), seed); }

}  // namespace

TEST_CASE("xnnpack: conv2d variants agree with the reference") {
    const char* cases[] = {
        "conv2d out=8 kernel=3",
        "conv2d out=8 kernel=3 stride=2",
        "conv2d out=8 kernel=3 stride=2 padding=valid",
        "conv2d out=6 kernel=3 groups=3",
        "conv2d out=12 kernel=1 groups=2 bias=false",
        "conv2d out=8 kernel=3 dilation=2",
        "conv2d out=8 kernel=3x5 dilation=2x1 stride=1x2",
        "conv2d out=8 kernel=4 padding=0x1x2x3",
        "conv2d out=8 kernel=2 padding=1 stride=3",
        "conv2d out=8 kernel=3 act=relu",
        "conv2d out=8 kernel=3 act=relu6",
        "conv2d out=8 kernel=3 act=hardswish",
        "conv2d out=8 kernel=3 act=hardsigmoid",
        "conv2d out=8 kernel=3 act=sigmoid",
        "conv2d out=8 kernel=7 stride=2 padding=3 bias=false",
    };
    for (const char* c : cases) {
        INFO(c);
        CHECK(agree(std::string("input: input shape=11x10x6\nc: ") + c + "\n") == 2);
    }
}

TEST_CASE("xnnpack: dwconv, fc, batchnorm") {
    const char* cases[] = {
        "dwconv kernel=3",
        "dwconv kernel=3 multiplier=2",
        "dwconv kernel=5 stride=2 multiplier=2 act=relu6",
        "dwconv kernel=3 dilation=2 padding=valid bias=false",
        "dwconv kernel=3 stride=2 padding=1 act=hardswish",
        "batchnorm",
        "batchnorm eps=0.001",
    };
    for (const char* c : cases) {
        INFO(c);
        CHECK(agree(std::string("input: input shape=9x9x4\nc: ") + c + "\n") == 2);
    }
    CHECK(agree("input: input shape=1x1x20\nf: fc out=7\n") == 2);
    CHECK(agree("input: input shape=1x1x20\nf: fc out=7 bias=false act=relu\n") == 2);
    CHECK(agree("input: input shape=4x3x5\nf: flatten\nfc: fc out=9 act=sigmoid\n") >= 2);
}

TEST_CASE("xnnpack: batchnorm is folded into the conv/dwconv/fc before it") {
    const Graph g = graph_of(
        "input: input shape=8x8x3\nc: conv2d out=8 kernel=3 bias=false\nb: batchnorm\nr: relu\n"
        "d: dwconv kernel=3\nbd: batchnorm\nh: hardswish\np: gap\nf: fc out=4\nbf: batchnorm\n");
    XnnExecutor exec(g, lamda::random_weights(g, 3));
    CHECK(exec.lowering(1) == XnnLowering::Operators);
    CHECK(exec.lowering(2) == XnnLowering::Fused);
    CHECK(exec.lowering(3) == XnnLowering::Fused);
    CHECK(exec.lowering(5) == XnnLowering::Fused);
    CHECK(exec.lowering(6) == XnnLowering::Fused);
    CHECK(exec.lowering(9) == XnnLowering::Fused);
    CHECK(exec.layer_output(1) == nullptr);
    CHECK(exec.step_count() == 5);  // conv, dwconv, hardswish, gap, fc
    agree(g, 3);

    // Not folded: the conv has another reader, or its own activation.
    const Graph g2 = graph_of(
        "input: input shape=6x6x4\nc: conv2d out=4 kernel=1\nb: batchnorm\ns: add c, b\n"
        "c2: conv2d out=4 kernel=3 act=relu\nb2: batchnorm\n");
    XnnExecutor exec2(g2, lamda::random_weights(g2, 4));
    CHECK(exec2.lowering(2) == XnnLowering::Operators);
    CHECK(exec2.lowering(5) == XnnLowering::Operators);
    CHECK(agree(g2, 4) == 6);
}

TEST_CASE("xnnpack: pools, including padding and ceil mode") {
    const char* cases[] = {
        "maxpool kernel=2",
        "maxpool kernel=3 stride=2",
        "maxpool kernel=3 stride=2 ceil=true",
        "maxpool kernel=3 stride=2 padding=1",
        "maxpool kernel=3 stride=2 padding=1 ceil=true",
        "maxpool kernel=2 stride=3",
        "maxpool kernel=3 stride=1 padding=same",
        "maxpool kernel=1 stride=2",
        "avgpool kernel=2",
        "avgpool kernel=3 stride=2 ceil=true",
        "avgpool kernel=3 stride=1 padding=1",
        "avgpool kernel=3 stride=2 padding=1 ceil=true",
        "avgpool kernel=2x3 stride=1x2 padding=0x1x1x0",
        "avgpool kernel=1 stride=2",
    };
    for (const char* c : cases) {
        INFO(c);
        CHECK(agree(std::string("input: input shape=10x9x5\np: ") + c + "\n") == 2);
    }
}

TEST_CASE("xnnpack: gap, add, concat, mul, activations, softmax, flatten, dropout") {
    CHECK(agree("input: input shape=7x5x6\np: gap\n") == 2);
    CHECK(agree("input: input shape=5x5x4\na: relu\nb: sigmoid input\ns: add input, a, b act=relu6\n") == 4);
    CHECK(agree("input: input shape=5x5x4\na: hardswish\ns: add input, a act=hardsigmoid\n") == 3);
    CHECK(agree("input: input shape=5x5x4\na: relu6\ns: add input, a\nr: relu\n") == 3);
    CHECK(agree("input: input shape=5x4x3\na: conv2d out=5 kernel=1\nb: relu input\n"
                "c: concat a, input, b, a\n") == 4);
    CHECK(agree("input: input shape=6x6x8\np: gap\nm: mul input, p\nn: mul p, m\n") == 4);
    CHECK(agree("input: input shape=6x6x8\na: sigmoid\nm: mul input, a\n") == 3);
    for (const char* op : {"relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "softmax"}) {
        INFO(op);
        CHECK(agree(std::string("input: input shape=4x5x10\na: ") + op + "\n") == 2);
    }
    // Activations read by two layers are not fused.
    CHECK(agree("input: input shape=4x4x4\nc: conv2d out=4 kernel=1\nh: hardsigmoid\ns: add c, h\n") == 4);
    CHECK(agree("input: input shape=3x3x4\nf: flatten\nd: dropout\nx: fc out=5\ns: softmax\n") == 5);
}

TEST_CASE("xnnpack: per-op timing has one entry per layer") {
    const Graph g = graph_of(
        "input: input shape=16x16x3\nc: conv2d out=16 kernel=3 bias=false\nb: batchnorm\nr: relu\n"
        "p: maxpool kernel=2\nx: conv2d out=8 kernel=1\ny: conv2d out=8 kernel=1 p\n"
        "k: concat x, y\ng: gap\nf: flatten\nl: fc out=10\n");
    XnnExecutor exec(g, lamda::random_weights(g, 5));
    const std::vector<double> ms = exec.run_timed_per_op();
    REQUIRE(ms.size() == g.layers.size());
    CHECK(ms[0] == 0.0);  // input
    CHECK(ms[1] > 0.0);   // conv (with the batchnorm and relu)
    CHECK(ms[2] == 0.0);  // folded batchnorm
    CHECK(ms[3] == 0.0);  // fused relu
    CHECK(ms[7] > 0.0);   // concat
    CHECK(ms[9] == 0.0);  // flatten
    for (double v : ms) CHECK(v >= 0.0);
}

TEST_CASE("xnnpack: thread counts") {
    const Graph g = graph_of("input: input shape=8x8x3\nc: conv2d out=4 kernel=3\n");
    const auto w = lamda::random_weights(g, 1);
    CHECK_THROWS_WITH_AS(XnnExecutor(g, w, {0}), doctest::Contains("threads must be in 1..1024, got 0"),
                         std::invalid_argument);
    CHECK_THROWS_AS(XnnExecutor(g, w, {10000}), std::invalid_argument);
    CHECK_THROWS_AS(XnnExecutor(g, w, {-3}), std::invalid_argument);
    XnnExecutor four(g, w, {4});
    CHECK(four.threads() == 4);
    CHECK(agree(g, 1, 4) == 2);
}

TEST_CASE("xnnpack: errors are ExecutorError with the reason") {
    const Graph g = graph_of("input: input shape=8x8x3\nc: conv2d out=4 kernel=3\n");
    CHECK_THROWS_WITH_AS(XnnExecutor(g, {}), doctest::Contains("missing tensor 'c.weight'"),
                         lamda::ExecutorError);
    XnnExecutor exec(g, lamda::random_weights(g, 1));
    CHECK_THROWS_AS(exec.run(Tensor(Shape{8, 8, 2})), lamda::ExecutorError);
    Graph raw;
    CHECK_THROWS_AS(XnnExecutor(raw, {}), lamda::ExecutorError);
}

TEST_CASE("xnnpack: the model zoo at reduced input size agrees with the reference") {
    struct Model {
        const char* name;
        Shape input;  // {0,0,0}: keep the declared one
    };
    const Model models[] = {
        {"lenet5", {}},           {"tiny_mobilenet", {}},          {"mobilenet_v2", {64, 64, 3}},
        {"mobilenet_v3_small", {64, 64, 3}}, {"resnet18", {64, 64, 3}}, {"squeezenet1_1", {64, 64, 3}},
        {"mnasnet0_5", {64, 64, 3}},
    };
    for (const Model& m : models) {
        INFO(m.name);
        CHECK(agree(lamda_test::zoo_model(LAMDA_SOURCE_DIR, m.name, m.input), 11) > 0);
    }
}


TEST_CASE("xnnpack: the executor runs the operator plan (plan_ops), operator for operator") {
    // The latency model predicts one figure per planned operator: the executor must run exactly
    // these, with the plan's buffers.
    const char* names[] = {"lenet5", "tiny_mobilenet", "mobilenet_v3_small", "squeezenet1_1", "mnasnet0_5"};
    for (const char* name : names) {
        INFO(name);
        const bool small = std::string(name) == "lenet5" || std::string(name) == "tiny_mobilenet";
        const Graph g = lamda_test::zoo_model(LAMDA_SOURCE_DIR, name, small ? Shape{} : Shape{64, 64, 3});
        const lamda::OpPlan plan = lamda::plan_ops(g);
        std::size_t operators = 0;
        std::vector<bool> loop(g.layers.size(), false);
        for (const lamda::PlannedOp& op : plan.ops) {
            switch (op.kind) {
            case lamda::PlannedKind::Alias: break;
            case lamda::PlannedKind::Add: operators += op.inputs.size() - 1; break;
            case lamda::PlannedKind::Concat: operators += op.inputs.size(); break;
            case lamda::PlannedKind::HardSigmoid: operators += 2; break;
            case lamda::PlannedKind::StridedCopy:
                loop[static_cast<std::size_t>(op.layer)] = true;
                ++operators;
                break;
            default: ++operators; break;
            }
        }
        XnnExecutor exec(g, lamda::random_weights(g, 1));
        CHECK(exec.step_count() == operators);
        CHECK(exec.buffer_bytes() <
              lamda::plan_ops(g, false).buffers.total_floats() * std::int64_t{4} + 1);
        for (std::size_t i = 0; i < g.layers.size(); ++i) {
            CHECK((exec.lowering(i) == XnnLowering::Fused) == (plan.fusion.absorbed_by[i] >= 0));
            CHECK((exec.lowering(i) == XnnLowering::Loop) == loop[i]);
        }
    }
}

TEST_CASE("benchmark_model: latency statistics, per-op timing and bad options") {
    const auto parsed = lamda::parse_dsl_file(std::string(LAMDA_SOURCE_DIR) + "/examples/models/lenet5.lamda");
    REQUIRE(parsed.ok());
    const lamda::Weights weights = lamda::random_weights(parsed.graph, 3);
    lamda::BenchOptions options;
    options.runs = 5;
    options.warmup = 1;
    const lamda::BenchResult r = lamda::benchmark_model(parsed.graph, weights, options);
    CHECK(r.median_ms > 0);
    CHECK(r.p10_ms <= r.median_ms);
    CHECK(r.median_ms <= r.p90_ms);
    CHECK(r.macs == lamda::analyze(parsed.graph).macs);
    CHECK(r.gflops == doctest::Approx(2.0 * static_cast<double>(r.macs) / (r.median_ms * 1e6)));
    REQUIRE(r.per_op.size() == parsed.graph.layers.size());
    double convs = 0;
    for (const auto& t : r.per_op)
        if (t.op == lamda::OpKind::Conv2d) convs += t.median_ms;
    CHECK(convs > 0);

    lamda::JsonWriter json;
    json.begin_object();
    lamda::write_bench_json(json, r, 100.0);
    json.end_object();
    for (const char* key : {"\"median_ms\"", "\"p10_ms\"", "\"p90_ms\"", "\"gflops\"",
                            "\"peak_fraction\"", "\"threads\"", "\"per_op\""})
        CHECK(json.str().find(key) != std::string::npos);

    options.runs = 0;
    CHECK_THROWS_WITH_AS(lamda::benchmark_model(parsed.graph, weights, options),
                         "runs must be in 1..100000, got 0", std::invalid_argument);
    options.runs = 1;
    options.threads = 10000;
    CHECK_THROWS_AS(lamda::benchmark_model(parsed.graph, weights, options), std::invalid_argument);
}

TEST_CASE("a model too large for the memory limit is refused before anything is allocated") {
    const auto parsed = lamda::parse_dsl("i: input shape=4096x4096x64\nc: conv2d out=64 kernel=3\n");
    REQUIRE(parsed.ok());
    lamda::Weights weights = lamda::random_weights(parsed.graph, 1);
    CHECK(lamda::executor_memory_bytes(parsed.graph) > (std::int64_t{4} << 30));
    CHECK_THROWS_WITH_AS(lamda::XnnExecutor(parsed.graph, weights),
                         doctest::Contains("MiB of buffers and weights, more than the limit"),
                         lamda::ExecutorError);
}

#endif  // defined(LAMDA_WITH_XNNPACK)

TEST_CASE("xnnpack: buffers are reused once their last reader has run, never while live") {
    // A long skip connection: `a` must survive four convolutions whose buffers rotate.
    const Graph g = graph_of(
        "input: input shape=16x16x8\na: conv2d out=8 kernel=3 act=relu\n"
        "b: conv2d out=8 kernel=3 act=relu\nc: conv2d out=8 kernel=3 act=relu\n"
        "d: conv2d out=8 kernel=3 act=relu\ne: conv2d out=8 kernel=3\ns: add e, a\n"
        "f: conv2d out=8 kernel=1 act=relu\ng: conv2d out=8 kernel=1\n");
    CHECK(agree(g) == 9);
    XnnExecutor own(g, lamda::random_weights(g, 1), [] {
        lamda::XnnOptions o;
        o.keep_intermediates = true;
        return o;
    }());
    XnnExecutor reusing(g, lamda::random_weights(g, 1));
    // 9 buffers of one size each without reuse; with it the input, `a` and two rotating ones.
    CHECK(reusing.buffer_bytes() * 9 <= own.buffer_bytes() * 4);
    // The input buffer is never reused: later runs on the same input give the same output.
    const Tensor in = random_input(g.layers.front().shape, 5);
    const Tensor once = reusing.run(in);
    const std::vector<float> first(once.data);
    reusing.run();
    reusing.run();
    CHECK(std::equal(first.begin(), first.end(), reusing.output()));
}
