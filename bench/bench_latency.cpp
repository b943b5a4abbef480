// Google Benchmark of the latency predictor: the cost of predicting one model from a profile.
//   predict/30_layers       LatencyModel::predict_ms on a 30-layer MobileNet-style model
//                           (lowering with fusion, features, one dot product per operator)
//   predict_breakdown/30_layers  LatencyModel::predict: the same plus the per-layer breakdown
//   predict/FILE            with LAMDA_PROFILE=PROFILE.json, the same on a measured profile
// Target: at most 10 us per prediction of a 30-layer model.
// Needs LAMDA_WITH_LATENCY (Eigen, simdjson); no XNNPACK.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <lamda/dsl/file.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/latency/model.hpp>

namespace {

// 30 layers: stem, 6 inverted-residual blocks (expand, dw, project, some adds), head.
const char* const model_30 =
    "model bench30\n"
    "input: input shape=224x224x3\n"
    "stem: conv2d out=32 kernel=3 stride=2 act=relu6\n"
    "b1_dw: dwconv kernel=3 act=relu6\n"
    "b1_pw: conv2d out=16 kernel=1\n"
    "b2_ex: conv2d out=96 kernel=1 act=relu6\n"
    "b2_dw: dwconv kernel=3 stride=2 act=relu6\n"
    "b2_pw: conv2d out=24 kernel=1\n"
    "b3_ex: conv2d out=144 kernel=1 act=relu6\n"
    "b3_dw: dwconv kernel=3 act=relu6\n"
    "b3_pw: conv2d out=24 kernel=1\n"
    "b3: add b2_pw, b3_pw\n"
    "b4_ex: conv2d out=144 kernel=1 act=relu6\n"
    "b4_dw: dwconv kernel=5 stride=2 act=relu6\n"
    "b4_pw: conv2d out=40 kernel=1\n"
    "b5_ex: conv2d out=240 kernel=1 act=hardswish\n"
    "b5_dw: dwconv kernel=5 act=hardswish\n"
    "b5_se: gap\n"
    "b5_se1: conv2d out=64 kernel=1 act=relu\n"
    "b5_se2: conv2d out=240 kernel=1 act=hardsigmoid\n"
    "b5_m: mul b5_dw, b5_se2\n"
    "b5_pw: conv2d out=40 kernel=1\n"
    "b5: add b4_pw, b5_pw\n"
    "b6_ex: conv2d out=240 kernel=1 act=relu6\n"
    "b6_dw: dwconv kernel=3 stride=2 act=relu6\n"
    "b6_pw: conv2d out=80 kernel=1\n"
    "head: conv2d out=1280 kernel=1 act=relu6\n"
    "pool: gap\n"
    "flat: flatten\n"
    "drop: dropout rate=0.2\n"
    "logits: fc out=1000\n";

// A model fitted on synthetic samples: prediction costs the same whatever the coefficients.
lamda::LatencyModel synthetic_model() {
    std::vector<lamda::LatencySample> samples;
    std::mt19937_64 rng(1);
    for (lamda::PrimKind k : lamda::all_prim_kinds)
        for (int i = 0; i < 40; ++i) {
            lamda::LatencySample s;
            s.op.kind = k;
            s.op.ih = s.op.oh = 2 + static_cast<int>(rng() % 60);
            s.op.iw = s.op.ow = s.op.ih;
            s.op.ic = 1 + static_cast<int>(rng() % 256);
            s.op.oc = s.op.ic + 1 + static_cast<int>(rng() % 256);
            s.op.kh = s.op.kw = k == lamda::PrimKind::DepthwiseLarge ? 7 : 3;
            s.op.n = 2;
            s.ms = 1e-3 + 1e-8 * double(s.op.oh) * s.op.ow * s.op.oc * (1 + rng() % 8);
            samples.push_back(s);
        }
    return lamda::fit_latency_model(samples, {});
}

void BM_predict(benchmark::State& state, lamda::LatencyModel model) {
    const lamda::Graph g = lamda::parse_dsl_or_throw(model_30, "bench30");
    std::vector<lamda::PrimOp> scratch;
    for (auto _ : state) benchmark::DoNotOptimize(model.predict_ms(g, scratch));
    state.counters["layers"] = static_cast<double>(g.layers.size());
}

void BM_predict_breakdown(benchmark::State& state) {
    const lamda::LatencyModel model = synthetic_model();
    const lamda::Graph g = lamda::parse_dsl_or_throw(model_30, "bench30");
    for (auto _ : state) benchmark::DoNotOptimize(model.predict(g).total_ms);
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::RegisterBenchmark("predict/30_layers", BM_predict, synthetic_model());
    benchmark::RegisterBenchmark("predict_breakdown/30_layers", BM_predict_breakdown);
    if (const char* path = std::getenv("LAMDA_PROFILE"))
        benchmark::RegisterBenchmark((std::string("predict/") + path).c_str(), BM_predict,
                                     lamda::read_latency_profile(path).model);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
