// Google Benchmark over the XNNPACK executor: the example zoo, and single-kernel sweeps at shapes
// typical of edge models (conv, depthwise, pointwise, fully connected). Runs on a target board:
//   LAMDA_MODELS_DIR=/path/to/examples/models ./lamda_bench_executor --benchmark_filter=zoo
// Each benchmark reports GFLOP (2 x MACs) per second next to its time.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <lamda/dsl/file.hpp>
#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/data/weights.hpp>
#include <lamda/exec/xnnpack.hpp>

#ifndef LAMDA_SOURCE_DIR
#define LAMDA_SOURCE_DIR "."
#endif

namespace {

void run_graph(benchmark::State& state, const lamda::Graph& graph, const lamda::XnnOptions& options) {
    const lamda::Weights weights = lamda::random_weights(graph, 1);
    lamda::XnnExecutor executor(graph, weights, options);
    lamda::fill_timing_input(executor);
    executor.run();  // warm caches and XNNPACK's lazily packed state
    for (auto _ : state) {
        executor.run();
        benchmark::DoNotOptimize(executor.output());
    }
    const double macs = static_cast<double>(lamda::analyze(graph).macs);
    state.counters["GFLOP"] =
        benchmark::Counter(2.0 * macs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["MMACs"] = macs * 1e-6;
}

// One thread and the executor's defaults unless `options` says otherwise.
void register_model(const std::string& label, const std::string& text, const lamda::XnnOptions& options = {}) {
    lamda::ParseResult parsed = lamda::parse_dsl(text, label);
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        std::exit(1);
    }
    benchmark::RegisterBenchmark(label.c_str(),
                                 [graph = std::move(parsed.graph), options](benchmark::State& s) {
                                     run_graph(s, graph, options);
                                 })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

std::string input_line(int h, int w, int c) {
    return "x: input shape=" + std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c) + "\n";
}

struct Spatial {
    int hw, in, out;
};

// One conv2d layer (hw x hw x in -> out, a kernel x kernel filter, activation `act`) with one of
// lamda's own kernels off and on (`flag`), one row after the other: "family/HWxHWxIN->OUT/xnnpack"
// and ".../lamda". On a CPU or a shape the kernel does not take, the two rows time the same code.
void register_conv_off_on(const std::string& family, Spatial s, int kernel, const char* act,
                          bool lamda::XnnOptions::*flag) {
    for (const bool ours : {false, true}) {
        lamda::XnnOptions options;
        options.*flag = ours;
        register_model(family + "/" + std::to_string(s.hw) + "x" + std::to_string(s.hw) + "x" + std::to_string(s.in) +
                           "->" + std::to_string(s.out) + (ours ? "/lamda" : "/xnnpack"),
                       input_line(s.hw, s.hw, s.in) + "k: conv2d out=" + std::to_string(s.out) +
                           " kernel=" + std::to_string(kernel) + " act=" + act + "\n",
                       options);
    }
}

void register_sweeps() {
    // Full 3x3 convolutions (a stem, ResNet-style blocks, SqueezeNet expansions, Fashion-MNIST
    // blocks), each with XnnOptions::winograd_avx512 off and on, as the depthwise rows: on, a
    // stride-1 layer runs lamda's Winograd kernel (exec/wino_avx512.hpp) where the CPU has
    // AVX-512F and it has 16 or more inputs and more than 16 outputs.
    for (const Spatial s : {Spatial{112, 3, 32}, {56, 64, 64}, {28, 128, 128}, {14, 256, 256}, {7, 512, 512},
                            {55, 16, 64}, {27, 32, 128}, {13, 64, 256}, {28, 16, 32}, {14, 32, 64}, {28, 8, 16}})
        register_conv_off_on("conv3x3", s, 3, "relu", &lamda::XnnOptions::winograd_avx512);
    // Depthwise (MobileNet, MnasNet and Fashion-MNIST blocks), each with XnnOptions::depthwise_avx512
    // off and on, one after the other: compare the two rows' times. On, a layer runs lamda's kernel
    // (exec/dw_avx512.hpp) where the CPU has AVX-512F and dw_avx512::preferred says so (larger
    // than 3x3, stride 1, or up to 64 channels), XNNPACK's otherwise (the two rows then time the
    // same code).
    struct Depthwise {
        int hw, channels, kernel, stride;
    };
    for (const Depthwise d : {Depthwise{112, 16, 3, 1}, {112, 32, 3, 1}, {112, 96, 3, 2}, {56, 144, 3, 1}, {28, 72, 5, 1},
                              {28, 192, 3, 1}, {14, 576, 3, 1}, {14, 576, 3, 2}, {7, 960, 3, 1}, {28, 16, 3, 1},
                              {14, 64, 5, 1}, {7, 128, 3, 1}})
        for (const bool ours : {false, true}) {
            lamda::XnnOptions options;
            options.depthwise_avx512 = ours;
            register_model("dwconv" + std::to_string(d.kernel) + "x" + std::to_string(d.kernel) + "/" +
                               std::to_string(d.hw) + "x" + std::to_string(d.hw) + "x" + std::to_string(d.channels) +
                               "/s" + std::to_string(d.stride) + (ours ? "/lamda" : "/xnnpack"),
                           input_line(d.hw, d.hw, d.channels) + "k: dwconv kernel=" + std::to_string(d.kernel) +
                               " stride=" + std::to_string(d.stride) + " act=relu6\n",
                           options);
        }
    // Pointwise 1x1 (MobileNet and MnasNet expansions and projections, Fashion-MNIST blocks), each
    // with XnnOptions::pointwise_avx512 off and on, as the depthwise rows: on, a layer runs lamda's
    // kernel (exec/pw_avx512.hpp) where the CPU has AVX-512F and it has more than 16 outputs.
    for (const Spatial s : {Spatial{112, 16, 96}, {112, 32, 16}, {56, 24, 144}, {56, 144, 24}, {28, 32, 192},
                            {28, 192, 32}, {28, 240, 40}, {14, 96, 576}, {14, 576, 96}, {7, 960, 320},
                            {7, 320, 1280}, {14, 32, 64}, {7, 64, 128}})
        register_conv_off_on("pointwise", s, 1, "relu6", &lamda::XnnOptions::pointwise_avx512);
    // Fully connected classifiers.
    for (const Spatial s : {Spatial{1, 1280, 1000}, {1, 512, 1000}, {1, 1024, 10}, {1, 256, 10}})
        register_model("fc/" + std::to_string(s.in) + "->" + std::to_string(s.out),
                       input_line(1, 1, s.in) + "k: fc out=" + std::to_string(s.out) + "\n");
}

void register_zoo() {
    const char* env = std::getenv("LAMDA_MODELS_DIR");
    const std::filesystem::path dir =
        env ? std::filesystem::path(env) : std::filesystem::path(LAMDA_SOURCE_DIR) / "examples/models";
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
        if (entry.path().extension() == ".lamda") files.push_back(entry.path());
    if (ec || files.empty()) {
        std::cerr << "no models in " << dir << " (set LAMDA_MODELS_DIR); zoo benchmarks skipped\n";
        return;
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
        lamda::ParseResult parsed = lamda::parse_dsl_file(file.string());
        if (!parsed.ok()) {
            std::cerr << lamda::format_diagnostics(parsed.diagnostics);
            std::exit(1);
        }
        for (int threads : {1, 2}) {
            benchmark::RegisterBenchmark(
                ("zoo/" + file.stem().string() + "/threads:" + std::to_string(threads)).c_str(),
                [graph = parsed.graph, threads](benchmark::State& s) {
                    lamda::XnnOptions options;
                    options.threads = threads;
                    run_graph(s, graph, options);
                })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_zoo();
    register_sweeps();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
