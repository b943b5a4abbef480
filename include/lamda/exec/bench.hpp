// lamda/exec/bench.hpp: measuring a model on this device through the XNNPACK executor.
// One measurement routine shared by `lamda bench`, the latency model and the search, so that
// every latency lamda reports means the same thing. Empty unless LAMDA_WITH_XNNPACK is defined.
#ifndef LAMDA_EXEC_BENCH_HPP
#define LAMDA_EXEC_BENCH_HPP

#if !defined(LAMDA_WITH_XNNPACK)
#error "lamda/exec/bench.hpp needs LAMDA_WITH_XNNPACK (Debian's libxnnpack-dev; CMake: link lamda::xnnpack)"
#else

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../detail/json_write.hpp"
#include "../detail/stats.hpp"
#include "../data/weights.hpp"
#include "xnnpack.hpp"

namespace lamda {

struct BenchOptions {
    int threads = 1;    // 1..1024
    int runs = 50;      // timed runs, 1..100000
    int warmup = 5;     // untimed runs first, 0..100000
    std::int64_t max_memory_bytes = std::int64_t{4} << 30;
    // Time the model in int8 (XnnOptions::int8) with synthetic scales from the timing input.
    bool int8 = false;
};

struct OpTiming {
    std::string name;
    OpKind op = OpKind::Input;
    XnnLowering lowering = XnnLowering::Operators;
    double median_ms = 0;  // 0 for layers fused into another or aliased
    std::int64_t macs = 0;
};

struct BenchResult {
    bool int8 = false;   // timed in int8 (else fp32)
    int threads = 1;
    int runs = 0;
    int warmup = 0;
    double median_ms = 0, p10_ms = 0, p90_ms = 0, min_ms = 0;
    std::int64_t macs = 0;
    std::int64_t params = 0;
    double gflops = 0;  // 2 * MACs / median
    std::vector<OpTiming> per_op;  // parallel to graph.layers
};

inline void check_bench_options(const BenchOptions& o) {
    if (o.threads < 1 || o.threads > 1024)
        throw std::invalid_argument("threads must be in 1..1024, got " + std::to_string(o.threads));
    if (o.runs < 1 || o.runs > 100000)
        throw std::invalid_argument("runs must be in 1..100000, got " + std::to_string(o.runs));
    if (o.warmup < 0 || o.warmup > 100000)
        throw std::invalid_argument("warmup must be in 0..100000, got " + std::to_string(o.warmup));
}

// Whole-model latency from `runs` timed runs after `warmup` untimed ones, then per-op latency
// from as many runs again with each operator timed on its own (timing every operator adds clock
// reads between them, so the whole-model figure comes from runs without them).
inline BenchResult benchmark_model(const Graph& graph, const Weights& weights,
                                   const BenchOptions& options = {}) {
    check_bench_options(options);
    XnnOptions xnn;
    xnn.threads = options.threads;
    xnn.max_memory_bytes = options.max_memory_bytes;
    xnn.int8 = options.int8;
    XnnExecutor executor(graph, weights, xnn);

    fill_timing_input(executor);

    using clock = std::chrono::steady_clock;
    for (int i = 0; i < options.warmup; ++i) executor.run();
    std::vector<double> totals;
    totals.reserve(static_cast<std::size_t>(options.runs));
    for (int i = 0; i < options.runs; ++i) {
        const auto t0 = clock::now();
        executor.run();
        totals.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    }
    std::vector<std::vector<double>> per_layer(graph.layers.size());
    for (int i = 0; i < options.runs; ++i) {
        const std::vector<double> ms = executor.run_timed_per_op();
        for (std::size_t k = 0; k < ms.size() && k < per_layer.size(); ++k)
            per_layer[k].push_back(ms[k]);
    }

    const ModelStats stats = analyze(graph);
    BenchResult r;
    r.int8 = executor.int8();
    r.threads = options.threads;
    r.runs = options.runs;
    r.warmup = options.warmup;
    r.median_ms = median(totals);
    r.p10_ms = quantile(totals, 0.1);
    r.p90_ms = quantile(totals, 0.9);
    r.min_ms = quantile(totals, 0.0);
    r.macs = stats.macs;
    r.params = stats.params;
    r.gflops = r.median_ms > 0 ? 2.0 * static_cast<double>(stats.macs) / (r.median_ms * 1e6) : 0;
    for (std::size_t k = 0; k < graph.layers.size(); ++k) {
        OpTiming t;
        t.name = graph.layers[k].name;
        t.op = graph.layers[k].op;
        t.lowering = executor.lowering(k);
        t.median_ms = per_layer[k].empty() ? 0 : median(per_layer[k]);
        t.macs = stats.layers[k].macs;
        r.per_op.push_back(std::move(t));
    }
    return r;
}

inline const char* lowering_name(XnnLowering l) noexcept {
    switch (l) {
    case XnnLowering::Operators: return "xnnpack";
    case XnnLowering::Fused: return "fused";
    case XnnLowering::Alias: return "alias";
    case XnnLowering::Loop: return "loop";
    }
    return "?";
}

// The JSON object `lamda bench --json` prints (and the device agent serves).
// `peak_gflops` <= 0 leaves peak_fraction out.
inline void write_bench_json(JsonWriter& json, const BenchResult& r, double peak_gflops) {
    json.field("precision", r.int8 ? "int8" : "fp32")
        .field("median_ms", r.median_ms)
        .field("p10_ms", r.p10_ms)
        .field("p90_ms", r.p90_ms)
        .field("min_ms", r.min_ms)
        .field("threads", r.threads)
        .field("runs", r.runs)
        .field("warmup", r.warmup)
        .field("macs", r.macs)
        .field("params", r.params)
        .field("gflops", r.gflops);
    if (peak_gflops > 0)
        json.field("peak_gflops", peak_gflops).field("peak_fraction", r.gflops / peak_gflops);
    json.key("per_op").begin_array();
    double total = 0;
    for (const auto& t : r.per_op) total += t.median_ms;
    for (const auto& t : r.per_op) {
        json.begin_object()
            .field("name", t.name)
            .field("op", op_name(t.op))
            .field("lowering", lowering_name(t.lowering))
            .field("median_ms", t.median_ms)
            .field("share", total > 0 ? t.median_ms / total : 0.0)
            .field("macs", t.macs)
            .field("gflops", t.median_ms > 0 ? 2.0 * static_cast<double>(t.macs) / (t.median_ms * 1e6) : 0.0)
            .end_object();
    }
    json.end_array();
}

}  // namespace lamda

#endif  // LAMDA_WITH_XNNPACK
#endif  // LAMDA_EXEC_BENCH_HPP
