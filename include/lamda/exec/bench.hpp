// lamda/exec/bench.hpp: measuring a model on this device through the XNNPACK executor.
// One measurement routine shared by `lamda bench`, the latency model and the search, so that
// every latency lamda reports means the same thing. Empty unless LAMDA_WITH_XNNPACK is defined.
#ifndef LAMDA_EXEC_BENCH_HPP
#define LAMDA_EXEC_BENCH_HPP

#if !defined(LAMDA_WITH_XNNPACK)
#error "lamda/exec/bench.hpp needs LAMDA_WITH_XNNPACK (Debian's libxnnpack-dev; CMake: link lamda::xnnpack)"
#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <cstdlib>  // getloadavg
#include <unistd.h>  // gethostname
#endif

#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../detail/json_write.hpp"
#include "../detail/stats.hpp"
#include "../data/weights.hpp"
#include "../version.hpp"
#include "device.hpp"
#include "xnnpack.hpp"

// XNNPACK has no run-time version query; the build system may pass the package version (the
// same macro as latency/profile_file.hpp's).
#ifndef LAMDA_XNNPACK_VERSION
#define LAMDA_XNNPACK_VERSION "0.0~git20220216.ae108ef"
#endif

namespace lamda {

struct BenchOptions {
    int threads = 1;    // 1..1024
    int runs = 50;      // timed runs, 1..100000
    int warmup = 5;     // untimed runs first, 0..100000
    // > 0: time whole-model runs until this many seconds have passed (at least one run, at most
    // bench_max_runs), as TFLite's benchmark_model --min_secs does; 0: exactly `runs` runs.
    double duration_s = 0;
    std::int64_t max_memory_bytes = std::int64_t{4} << 30;
    // Time the model in int8 (XnnOptions::int8) with synthetic scales from the timing input.
    bool int8 = false;
    // Time it in int8 with this quantized model's weights and scales (XnnOptions::quantized;
    // the graph is its batch-norm-folded one, the weights its float layers' F32 tensors).
    const QuantizedModel* quantized = nullptr;
};

struct OpTiming {
    std::string name;
    OpKind op = OpKind::Input;
    XnnLowering lowering = XnnLowering::Operators;
    double median_ms = 0;  // 0 for layers fused into another or aliased
    std::int64_t macs = 0;
};

inline constexpr int bench_max_runs = 1000000;     // --duration's cap on whole-model runs
inline constexpr double bench_max_duration_s = 3600;

struct BenchResult {
    bool int8 = false;   // timed in int8 (else fp32)
    int threads = 1;
    int runs = 0;        // timed whole-model runs (with --duration: as many as fitted)
    int warmup = 0;
    int per_op_runs = 0; // runs timed op by op
    double init_ms = 0;  // building the executor: XNNPACK operators, packed weights, buffers
    double first_ms = 0; // the first inference, before any warm-up (cold caches)
    double median_ms = 0, p10_ms = 0, p90_ms = 0, min_ms = 0;
    double mean_ms = 0, std_ms = 0, max_ms = 0, p95_ms = 0, p99_ms = 0;
    double timed_s = 0;  // wall time of the timed whole-model runs
    // Growth of the resident set from before the executor was built to its peak after the runs
    // (Linux: VmHWM after resetting it; -1 where it cannot be measured).
    std::int64_t peak_rss_delta_bytes = -1;
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
    if (!(o.duration_s >= 0 && o.duration_s <= bench_max_duration_s))
        throw std::invalid_argument("duration must be in 0..3600 seconds");
}

namespace bench_detail {

// A field of /proc/self/status in bytes ("VmRSS:  1234 kB"), or -1.
inline std::int64_t proc_status_bytes(const char* field) {
#if defined(__linux__)
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string prefix = std::string(field) + ":";
    while (std::getline(in, line)) {
        if (line.compare(0, prefix.size(), prefix) != 0) continue;
        long long kb = -1;
        if (std::sscanf(line.c_str() + prefix.size(), "%lld", &kb) != 1 || kb < 0) return -1;
        return static_cast<std::int64_t>(kb) * 1024;
    }
#else
    (void)field;
#endif
    return -1;
}

// Resets the peak resident set (VmHWM) to the current one (Linux >= 4.0); false if it cannot.
inline bool reset_peak_rss() {
#if defined(__linux__)
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    return static_cast<bool>(out.flush());
#else
    return false;
#endif
}

}  // namespace bench_detail

// The executor's build time and first (cold) inference, then whole-model latency from `runs`
// timed runs (or as many as fit in `duration_s`) after `warmup` untimed ones, then per-op latency
// from up to `runs` more runs with each operator timed on its own (timing every operator adds
// clock reads between them, so the whole-model figures come from runs without them).
inline BenchResult benchmark_model(const Graph& graph, const Weights& weights,
                                   const BenchOptions& options = {}) {
    check_bench_options(options);
    using clock = std::chrono::steady_clock;
    auto ms_since = [](clock::time_point t0) {
        return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    };
    XnnOptions xnn;
    xnn.threads = options.threads;
    xnn.max_memory_bytes = options.max_memory_bytes;
    xnn.int8 = options.int8;
    xnn.quantized = options.quantized;
    const bool rss_reset = bench_detail::reset_peak_rss();
    const std::int64_t rss_before = bench_detail::proc_status_bytes("VmRSS");
    auto t_init = clock::now();
    XnnExecutor executor(graph, weights, xnn);
    BenchResult r;
    r.int8 = executor.int8();
    r.init_ms = ms_since(t_init);

    fill_timing_input(executor);

    auto t_first = clock::now();
    executor.run();
    r.first_ms = ms_since(t_first);
    for (int i = 0; i < options.warmup; ++i) executor.run();
    std::vector<double> totals;
    const auto t_timed = clock::now();
    if (options.duration_s > 0) {
        do {
            const auto t0 = clock::now();
            executor.run();
            totals.push_back(ms_since(t0));
        } while (static_cast<int>(totals.size()) < bench_max_runs &&
                 ms_since(t_timed) < options.duration_s * 1000);
    } else {
        totals.reserve(static_cast<std::size_t>(options.runs));
        for (int i = 0; i < options.runs; ++i) {
            const auto t0 = clock::now();
            executor.run();
            totals.push_back(ms_since(t0));
        }
    }
    r.timed_s = ms_since(t_timed) / 1000;
    const int op_runs = std::min(options.runs, static_cast<int>(totals.size()));
    std::vector<std::vector<double>> per_layer(graph.layers.size());
    for (int i = 0; i < op_runs; ++i) {
        const std::vector<double> ms = executor.run_timed_per_op();
        for (std::size_t k = 0; k < ms.size() && k < per_layer.size(); ++k)
            per_layer[k].push_back(ms[k]);
    }

    const std::int64_t rss_peak = bench_detail::proc_status_bytes("VmHWM");
    if (rss_reset && rss_before >= 0 && rss_peak >= 0)
        r.peak_rss_delta_bytes = std::max<std::int64_t>(0, rss_peak - rss_before);

    const ModelStats stats = analyze(graph);
    r.threads = options.threads;
    r.runs = static_cast<int>(totals.size());
    r.warmup = options.warmup;
    r.per_op_runs = op_runs;
    r.median_ms = median(totals);
    r.p10_ms = quantile(totals, 0.1);
    r.p90_ms = quantile(totals, 0.9);
    r.p95_ms = quantile(totals, 0.95);
    r.p99_ms = quantile(totals, 0.99);
    r.min_ms = quantile(totals, 0.0);
    r.max_ms = quantile(totals, 1.0);
    double sum = 0;
    for (double t : totals) sum += t;
    r.mean_ms = sum / static_cast<double>(totals.size());
    double squares = 0;
    for (double t : totals) squares += (t - r.mean_ms) * (t - r.mean_ms);
    r.std_ms = totals.size() > 1 ? std::sqrt(squares / static_cast<double>(totals.size() - 1)) : 0.0;
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
    case XnnLowering::Kernel: return "lamda";
    }
    return "?";
}

// The JSON object `lamda bench --json` prints (and the device agent serves).
// `peak_gflops` <= 0 leaves peak_fraction out.
inline void write_bench_json(JsonWriter& json, const BenchResult& r, double peak_gflops) {
    json.field("precision", r.int8 ? "int8" : "fp32")
        .field("median_ms", r.median_ms)
        .field("mean_ms", r.mean_ms)
        .field("std_ms", r.std_ms)
        .field("min_ms", r.min_ms)
        .field("max_ms", r.max_ms)
        .field("p10_ms", r.p10_ms)
        .field("p90_ms", r.p90_ms)
        .field("p95_ms", r.p95_ms)
        .field("p99_ms", r.p99_ms)
        .field("init_ms", r.init_ms)
        .field("first_ms", r.first_ms)
        .field("timed_s", r.timed_s)
        .field("threads", r.threads)
        .field("runs", r.runs)
        .field("warmup", r.warmup)
        .field("per_op_runs", r.per_op_runs);
    if (r.peak_rss_delta_bytes >= 0) json.field("peak_rss_delta_bytes", r.peak_rss_delta_bytes);
    json.field("macs", r.macs)
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

// The "context" object of `lamda bench --json`, as Google Benchmark's JSON has one: where and
// when the numbers were taken (host, date, load average, CPU, versions, threads), so that two
// results can be told apart and a loaded machine shows. Fields that cannot be read are left out.
inline void write_bench_context(JsonWriter& json, int threads) {
    json.key("context").begin_object();
#if defined(__unix__) || defined(__APPLE__)
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) json.field("host", std::string(host));
#endif
    const DeviceInfo info = describe_device();
    json.field("cpu_model", info.cpu_model)
        .field("architecture", info.architecture)
        .field("cpus", info.logical_cores)
        .field("xnnpack_isa", info.xnnpack_isa);
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
#if defined(_WIN32)
    gmtime_s(&utc, &now);
#else
    gmtime_r(&now, &utc);
#endif
    char date[32];
    if (std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc) > 0) json.field("date", std::string(date));
#if defined(__unix__) || defined(__APPLE__)
    double load[3] = {0, 0, 0};
    if (::getloadavg(load, 3) == 3) json.key("load_average").begin_array().value(load[0]).value(load[1]).value(load[2]).end_array();
#endif
    json.field("lamda_version", std::string(version_string))
        .field("xnnpack_version", std::string(LAMDA_XNNPACK_VERSION))
        .field("threads", threads)
#if defined(NDEBUG)
        .field("build_type", "release")
#else
        .field("build_type", "debug")
#endif
        .end_object();
}

}  // namespace lamda

#endif  // LAMDA_WITH_XNNPACK
#endif  // LAMDA_EXEC_BENCH_HPP
