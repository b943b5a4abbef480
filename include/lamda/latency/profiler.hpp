// lamda/latency/profiler.hpp: measuring a device for the latency model (latency/model.hpp) through the
// XNNPACK executor: single operators over a sample of configurations, spent adaptively where the
// fitted model is least accurate (nn-Meter's idea), and whole models for the overhead term.
// Compiled only with LAMDA_WITH_LATENCY and LAMDA_WITH_XNNPACK.
//
//   lamda::ProfileOptions o;  o.budget_s = 150;
//   lamda::LatencyProfile p = lamda::profile_device(o, calibration_graphs);
//   lamda::write_latency_profile("PROFILE.json", p);
#ifndef LAMDA_LATENCY_PROFILER_HPP
#define LAMDA_LATENCY_PROFILER_HPP

#include "../dsl/file.hpp"
#include "model.hpp"

#if !(defined(LAMDA_WITH_LATENCY) && defined(LAMDA_WITH_XNNPACK))
#error "lamda/latency/profiler.hpp needs LAMDA_WITH_LATENCY and LAMDA_WITH_XNNPACK (CMake: link lamda::latency and lamda::xnnpack)"
#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../dsl/parser.hpp"
#include "../detail/stats.hpp"
#include "../data/weights.hpp"
#include "../exec/qc8_vnni.hpp"
#include "../exec/xnnpack.hpp"

namespace lamda {

// The 1-minute load average (-1 where unknown): profiles record it, evaluations print it.
inline double current_load_average() {
    std::ifstream in("/proc/loadavg");
    double v = -1;
    if (!(in >> v)) return -1;
    return v;
}

// A whole model timed end to end (`ms`) and, when asked, per layer (`layer_ms`, parallel to
// graph.layers, in a second series of runs): `warmup` untimed runs, then runs until `runs` runs or
// `max_seconds`, whichever comes first (at least 3 runs; the per-layer series alike); quantile q of the timings (the median, or a low quantile such
// as 0.1, which resists interference from other processes on a busy machine).
struct ModelTiming {
    double ms = 0;
    std::vector<double> layer_ms;
};

inline ModelTiming time_model(const Graph& g, int threads = 1, int runs = 15, int warmup = 2,
                              double max_seconds = 1.0, double q = 0.5, bool per_layer = true,
                              LatencyPrecision prec = LatencyPrecision::Fp32) {
    XnnOptions xo;
    xo.threads = threads;
    xo.int8 = prec == LatencyPrecision::Int8;  // synthetic scales, as `lamda bench --precision int8`
    XnnExecutor ex(g, random_weights(g, 1), xo);
    fill_timing_input(ex);
    for (int i = 0; i < warmup; ++i) ex.run();
    using clock = std::chrono::steady_clock;
    std::vector<double> t;
    std::vector<std::vector<double>> per(per_layer ? g.layers.size() : 0);
    // The whole runs back to back, as a deployed model runs and as eval-predictor and bench time
    // it; then the per-layer runs, whose per-operator timing would otherwise leave its caches to
    // the next whole run.
    const auto start = clock::now();
    for (int i = 0; i < runs; ++i) {
        const auto t0 = clock::now();
        ex.run();
        const auto t1 = clock::now();
        t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        if (i >= 2 && std::chrono::duration<double>(clock::now() - start).count() > max_seconds) break;
    }
    const auto per_start = clock::now();
    for (int i = 0; per_layer && i < runs; ++i) {
        const std::vector<double> ms = ex.run_timed_per_op();
        for (std::size_t k = 0; k < ms.size() && k < per.size(); ++k) per[k].push_back(ms[k]);
        if (i >= 2 && std::chrono::duration<double>(clock::now() - per_start).count() > max_seconds) break;
    }
    ModelTiming r;
    r.ms = quantile(t, q);
    for (auto& v : per) r.layer_ms.push_back(v.empty() ? 0.0 : quantile(v, q));
    return r;
}

// Latency of a whole model in ms (no per-layer pass); see time_model.
inline double measure_model_ms(const Graph& g, int threads = 1, int runs = 15, int warmup = 2,
                               double max_seconds = 2.0, double q = 0.5,
                               LatencyPrecision prec = LatencyPrecision::Fp32) {
    return time_model(g, threads, runs, warmup, max_seconds, q, /*per_layer=*/false, prec).ms;
}

namespace latency_detail {

// A DSL graph whose last layer `t` lowers to one operator shaped like `p` (its output shape
// is whatever shape inference makes of the input, kernel and stride).
inline std::string probe_dsl(const PrimOp& p) {
    // The target's input `y` is written by a relu just before it on every run, as a producer
    // would in a model; x itself is never rewritten.
    auto dims = [](int h, int w) { return std::to_string(h) + "x" + std::to_string(w); };
    const std::string input = "x: input shape=" + dims(p.ih, p.iw) + "x" + std::to_string(p.ic) + "\ny: relu x\n";
    const std::string k = " kernel=" + dims(p.kh, p.kw) + " stride=" + dims(p.sh, p.sw);
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow:
        if (p.n > 1) return input + "t: dwconv y" + k + " multiplier=" + std::to_string(p.n) + "\n";
        return input + "t: conv2d y out=" + std::to_string(p.oc) + k + " groups=" + std::to_string(p.groups) + "\n";
    case PrimKind::Depthwise:
    case PrimKind::DepthwiseLarge: return input + "t: dwconv y" + k + "\n";
    case PrimKind::FullyConnected:
        return "x: input shape=1x1x" + std::to_string(p.ic) + "\ny: relu x\nt: fc y out=" + std::to_string(p.oc) + "\n";
    case PrimKind::MaxPool: return input + "t: maxpool y" + k + " padding=same\n";
    case PrimKind::AvgPool: return input + "t: avgpool y" + k + " padding=same\n";
    case PrimKind::StridedCopy: return input + "t: maxpool y kernel=1 stride=" + dims(p.sh, p.sw) + "\n";
    case PrimKind::GlobalAvgPool: return input + "t: gap y\n";
    case PrimKind::Add: {
        std::string s = input, args = "y";
        for (int i = 1; i < p.n; ++i) {
            s += "a" + std::to_string(i) + ": relu6 x\n";
            args += ", a" + std::to_string(i);
        }
        return s + "t: add " + args + "\n";
    }
    case PrimKind::Mul: return input + "s: relu6 x\nt: mul y, s\n";
    case PrimKind::MulBroadcast: return input + "s: gap y\nt: mul y, s\n";
    case PrimKind::Concat: {
        // n inputs: y (ic channels) and n-1 1x1 convolutions of x to `rest` channels.
        std::string s = input, args = "y";
        const int rest = std::max(1, (p.oc - p.ic) / std::max(1, p.n - 1));
        for (int i = 1; i < p.n; ++i) {
            s += "b" + std::to_string(i) + ": conv2d x out=" + std::to_string(rest) + " kernel=1\n";
            args += ", b" + std::to_string(i);
        }
        return s + "t: concat " + args + "\n";
    }
    case PrimKind::Clamp: return input + "t: relu6 y\n";
    case PrimKind::HardSwish: return input + "t: hardswish y\n";
    case PrimKind::Sigmoid: return input + "t: sigmoid y\n";
    case PrimKind::HardSigmoid: return input + "t: hardsigmoid y\n";
    case PrimKind::Softmax: return input + "t: softmax y\n";
    case PrimKind::ChannelAffine: return input + "t: batchnorm y\n";
    }
    return input;
}

// Touches a few MiB so that the next run finds weights and old outputs beyond L2, as a layer
// of a model does (a whole inference has passed since it last ran).
// Never freed: a profile job of the agent may still be measuring while the process exits.
inline void evict_caches() {
    static constexpr std::size_t size = std::size_t{4} << 20;
    static unsigned char* const buffer = new unsigned char[size]();
    for (std::size_t i = 0; i < size; i += 64) buffer[i] = static_cast<unsigned char>(buffer[i] + 1);
}

inline int pick(std::mt19937_64& rng, std::initializer_list<std::pair<int, double>> choices) {
    double total = 0;
    for (const auto& c : choices) total += c.second;
    double u = std::uniform_real_distribution<double>(0, total)(rng);
    for (const auto& c : choices) {
        if (u < c.second) return c.first;
        u -= c.second;
    }
    return choices.begin()->first;
}

inline int log_uniform(std::mt19937_64& rng, double lo, double hi) {
    const double v = std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi + 0.999))(rng));
    return static_cast<int>(std::clamp(std::floor(v), lo, hi));
}

// Channels as networks use them: mostly multiples of 8, sometimes anything.
inline int channels(std::mt19937_64& rng, int lo, int hi) {
    int c = log_uniform(rng, lo, hi);
    if (c >= 12 && std::uniform_real_distribution<double>(0, 1)(rng) < 0.7) c = (c + 4) / 8 * 8;
    return std::clamp(c, lo, hi);
}

inline int spatial(std::mt19937_64& rng, int hi = 224) {
    static const int sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56,
                                64, 80, 96, 112, 128, 160, 192, 224};
    for (;;) {
        const int s = sizes[std::uniform_int_distribution<int>(0, 26)(rng)];
        if (s <= hi) return s;
    }
}

inline double op_macs(const PrimOp& p) {
    const double oh = std::ceil(double(p.ih) / p.sh), ow = std::ceil(double(p.iw) / p.sw);
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow: return oh * ow * p.oc * double(p.kh) * p.kw * p.ic / std::max(1, p.groups);
    case PrimKind::Depthwise:
    case PrimKind::DepthwiseLarge: return oh * ow * p.ic * double(p.kh) * p.kw * (p.kind == PrimKind::DepthwiseLarge ? 8 : 1);
    case PrimKind::FullyConnected: return double(p.ic) * p.oc;
    default: return double(p.ih) * p.iw * p.ic * std::max(1, p.n);
    }
}

inline bool config_ok(const PrimOp& p) {
    const double in_el = double(p.ih) * p.iw * p.ic;
    if (p.ih < 1 || p.iw < 1 || p.ic < 1 || p.oc < 1) return false;
    if (in_el > 6.5e6) return false;
    if (op_macs(p) > 2.5e8) return false;
    if ((p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow || p.kind == PrimKind::Depthwise || p.kind == PrimKind::DepthwiseLarge || p.kind == PrimKind::MaxPool ||
         p.kind == PrimKind::AvgPool) &&
        (p.kh > p.ih + 2 || p.kw > p.iw + 2))
        return false;
    if (p.kind == PrimKind::ConvNarrow && (p.ic != 1 || p.groups != 1 || p.n > 1)) return false;
    if (p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow) {
        if (p.n > 1) return p.groups == p.ic && double(p.ih) * p.iw * p.ic * p.n < 6.5e6;
        if (p.groups < 1 || p.ic % p.groups || p.oc % p.groups) return false;
        if (double(p.oc) * p.ic / p.groups * p.kh * p.kw > 2.5e7) return false;
    }
    if (p.kind == PrimKind::FullyConnected && double(p.ic) * p.oc > 2.5e7) return false;
    if (p.kind == PrimKind::Concat && (p.oc <= p.ic || p.n < 2)) return false;
    return true;
}

// A random configuration of an operator of kind `k` (before shape inference).
inline PrimOp random_config(PrimKind k, std::mt19937_64& rng) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
        PrimOp p;
        p.kind = k;
        p.ih = p.iw = spatial(rng);
        if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.1) p.iw = spatial(rng);
        switch (k) {
        case PrimKind::Conv: {
            const int kk = pick(rng, {{1, 45}, {3, 35}, {5, 10}, {7, 7}, {2, 3}});
            p.kh = p.kw = kk;
            p.sh = p.sw = pick(rng, {{1, 72}, {2, 28}});
            p.ic = pick(rng, {{0, 85}, {1, 15}}) ? pick(rng, {{1, 2}, {3, 5}, {4, 1}}) : channels(rng, 4, 1024);
            p.oc = channels(rng, 4, 1280);
            if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.12) {
                p.groups = pick(rng, {{2, 3}, {4, 2}, {8, 1}, {16, 1}});
                p.ic = std::max(1, p.ic / p.groups) * p.groups;
                p.oc = std::max(1, p.oc / p.groups) * p.groups;
            } else if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.04) {
                p.n = 2;  // dwconv with a multiplier
                p.groups = p.ic;
                p.oc = p.ic * 2;
            }
            break;
        }
        case PrimKind::ConvNarrow: {
            const int kk = pick(rng, {{3, 45}, {5, 20}, {7, 15}, {1, 10}, {2, 10}});
            p.kh = p.kw = kk;
            p.sh = p.sw = pick(rng, {{1, 55}, {2, 45}});
            p.ic = 1;
            p.oc = channels(rng, 1, 256);
            break;
        }
        case PrimKind::DepthwiseLarge: {
            const int kk = pick(rng, {{7, 90}, {9, 10}});
            p.kh = p.kw = kk;
            p.sh = p.sw = pick(rng, {{1, 65}, {2, 35}});
            p.ic = p.oc = channels(rng, 4, 1024);
            p.groups = p.ic;
            break;
        }
        case PrimKind::Depthwise: {
            const int kk = pick(rng, {{3, 62}, {5, 35}, {2, 3}});
            p.kh = p.kw = kk;
            p.sh = p.sw = pick(rng, {{1, 65}, {2, 35}});
            p.ic = p.oc = channels(rng, 4, 2048);
            p.groups = p.ic;
            break;
        }
        case PrimKind::FullyConnected:
            p.ih = p.iw = 1;
            if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.2) {
                // After a flatten of a feature map: tens of thousands of inputs, tens of MB of
                // weights streamed from DRAM (the sampler makes these).
                p.ic = log_uniform(rng, 4096, 200000);
                p.oc = channels(rng, 2, std::max(2, static_cast<int>(2.5e7 / p.ic)));
            } else {
                p.ic = channels(rng, 8, 4096);
                p.oc = channels(rng, 2, 2000);
            }
            break;
        case PrimKind::MaxPool:
        case PrimKind::AvgPool: {
            const int kk = pick(rng, {{2, 40}, {3, 45}, {5, 8}, {7, 7}});
            p.kh = p.kw = kk;
            p.sh = p.sw = pick(rng, {{1, 20}, {2, 70}, {kk, 10}});
            p.ic = p.oc = channels(rng, 1, 1024);
            break;
        }
        case PrimKind::StridedCopy:
            p.sh = p.sw = pick(rng, {{2, 80}, {3, 10}, {4, 10}});
            p.ic = p.oc = channels(rng, 1, 1024);
            break;
        case PrimKind::Add:
            p.n = pick(rng, {{2, 85}, {3, 10}, {4, 5}});
            p.ic = p.oc = channels(rng, 1, 1280);
            break;
        case PrimKind::Concat: {
            p.n = pick(rng, {{2, 70}, {3, 18}, {4, 12}});
            p.ic = channels(rng, 1, 512);
            p.oc = p.ic + (p.n - 1) * channels(rng, 1, 512);
            break;
        }
        case PrimKind::Mul:
            p.n = 0;
            p.ic = p.oc = channels(rng, 1, 1280);
            break;
        case PrimKind::MulBroadcast:
            p.n = 1;
            p.ic = p.oc = channels(rng, 1, 1280);
            break;
        default:
            p.ic = p.oc = channels(rng, 1, 1280);
            break;
        }
        if (config_ok(p)) return p;
    }
    PrimOp p;
    p.kind = k;
    p.ih = p.iw = 8;
    p.ic = p.oc = 16;
    if (k == PrimKind::Concat) p.oc = 32, p.n = 2;
    if (k == PrimKind::Conv || k == PrimKind::Depthwise || k == PrimKind::MaxPool || k == PrimKind::AvgPool)
        p.kh = p.kw = 3;
    if (k == PrimKind::ConvNarrow) p.kh = p.kw = 3, p.ic = 1;
    if (k == PrimKind::DepthwiseLarge) p.kh = p.kw = 7;
    if (k == PrimKind::Depthwise || k == PrimKind::DepthwiseLarge) p.groups = 16;
    return p;
}

// A neighbour of `p`: one or two of its dimensions moved by up to a factor of two.
inline PrimOp mutate_config(const PrimOp& base, std::mt19937_64& rng) {
    for (int attempt = 0; attempt < 200; ++attempt) {
        PrimOp p = base;
        const int changes = pick(rng, {{1, 60}, {2, 40}});
        for (int c = 0; c < changes; ++c) {
            const double f = std::exp2(std::uniform_real_distribution<double>(-1, 1)(rng));
            auto scale = [f](std::int32_t v, int lo, int hi) {
                return static_cast<std::int32_t>(std::clamp<long>(std::lround(v * f), lo, hi));
            };
            switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
            case 0:
                p.ih = scale(p.ih, 1, 224);
                p.iw = base.ih == base.iw ? p.ih : scale(p.iw, 1, 224);
                break;
            case 1:
                if (p.kind == PrimKind::Depthwise || p.kind == PrimKind::DepthwiseLarge || p.kind == PrimKind::MaxPool || p.kind == PrimKind::AvgPool ||
                    p.kind == PrimKind::StridedCopy || p.kind == PrimKind::Add || p.kind == PrimKind::Mul || p.kind == PrimKind::MulBroadcast ||
                    p.kind == PrimKind::GlobalAvgPool || (p.kind >= PrimKind::Clamp && p.kind != PrimKind::ConvNarrow)) {
                    p.ic = p.oc = scale(p.ic, 1, 4096);
                    if (p.kind == PrimKind::Depthwise || p.kind == PrimKind::DepthwiseLarge) p.groups = p.ic;
                } else if (p.kind == PrimKind::ConvNarrow) {
                    // one input channel: nothing to move
                } else if (p.kind == PrimKind::Concat) {
                    const int extra = p.oc - p.ic;
                    p.ic = scale(p.ic, 1, 1024);
                    p.oc = p.ic + extra;
                } else {
                    p.ic = scale(p.ic, 1, p.kind == PrimKind::FullyConnected ? 262144 : 4096);
                    if (p.kind == PrimKind::Conv && p.groups > 1) p.ic = std::max(1, p.ic / p.groups) * p.groups;
                    if (p.kind == PrimKind::Conv && p.n > 1) p.groups = p.ic, p.oc = p.ic * p.n;
                }
                break;
            case 2:
                if ((p.kind == PrimKind::Conv && p.n <= 1) || p.kind == PrimKind::ConvNarrow) {
                    p.oc = scale(p.oc, 1, 2048);
                    if (p.groups > 1) p.oc = std::max(1, p.oc / p.groups) * p.groups;
                } else if (p.kind == PrimKind::FullyConnected) {
                    p.oc = scale(p.oc, 1, 4096);
                } else if (p.kind == PrimKind::Concat) {
                    p.oc = p.ic + scale(p.oc - p.ic, 1, 2048);
                }
                break;
            default:
                if (p.kind == PrimKind::DepthwiseLarge) {
                    p.kh = p.kw = pick(rng, {{7, 90}, {9, 10}});
                } else if (p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow || p.kind == PrimKind::Depthwise) {
                    p.kh = p.kw = p.kind != PrimKind::Depthwise ? pick(rng, {{1, 30}, {3, 40}, {5, 20}, {7, 10}})
                                                           : pick(rng, {{3, 65}, {5, 35}});
                } else if (p.kind == PrimKind::Add || p.kind == PrimKind::Concat) {
                    p.n = pick(rng, {{2, 60}, {3, 25}, {4, 15}});
                    if (p.kind == PrimKind::Concat && p.oc <= p.ic) p.oc = p.ic + 8;
                }
                break;
            }
        }
        if (config_ok(p)) return p;
    }
    return base;
}

// Relative share of the operator budget per kind (in the order of all_prim_kinds).
inline constexpr std::array<double, prim_kind_count> kind_budget_share{
    0.33, 0.13, 0.07, 0.04, 0.035, 0.025, 0.03, 0.06, 0.02, 0.04, 0.05, 0.03, 0.035, 0.03, 0.03, 0.02, 0.02, 0.015,
    0.02};

}  // namespace latency_detail

// Measures one operator configuration: builds the probe graph, runs it, and returns the target
// layer's operator (as lowered after shape inference) with the median of its timed runs. In
// int8 a kind without an int8 kernel (runs_int8) is timed with its converts, as its layer runs.
inline LatencySample measure_prim(const PrimOp& config, int threads = 1, int max_runs = 15,
                                  double max_seconds = 0.05, double q = 0.5,
                                  LatencyPrecision prec = LatencyPrecision::Fp32) {
    const Graph g = parse_dsl_or_throw(latency_detail::probe_dsl(config), "<probe>");
    const int target = static_cast<int>(g.layers.size()) - 1;
    LatencySample s;
    for (const PrimOp& p : lower_for_latency(g))
        if (p.layer == target) s.op = p;
    XnnOptions xo;
    xo.threads = threads;
    xo.int8 = prec == LatencyPrecision::Int8;
    XnnExecutor ex(g, random_weights(g, 7), xo);
    fill_timing_input(ex);
    ex.run();
    std::vector<double> t;
    double spent = 0;
    for (int i = 0; i < max_runs; ++i) {
        latency_detail::evict_caches();
        const std::vector<double> ms = ex.run_timed_per_op();
        t.push_back(ms[static_cast<std::size_t>(target)]);
        for (double v : ms) spent += v;
        if (i >= 4 && spent > max_seconds * 1e3) break;
    }
    s.ms = quantile(t, q);
    return s;
}

struct ProfileOptions {
    int threads = 1;
    double budget_s = 150;        // total, operators and calibration models
    double calibration_share = 0.35;  // of the budget spent on whole models (at most)
    double initial_share = 0.45;  // of the operator budget spent on the initial random sample
    std::uint64_t seed = 1;
    double quantile = 0.5;        // of repeated timings: the median, or lower on a busy machine
    // Also profile int8 (the XNNPACK executor's int8 path, synthetic scales): the budget is then
    // shared, fp32 first (1 - int8_share of it), then int8, each with the three phases below.
    bool int8 = false;
    double int8_share = 0.5;
    // Called about every 100 ms with a one-line status.
    std::function<void(const std::string&)> progress;
};

// Profiles the device: operators (random, then adaptive), then the calibration models (whole
// models measured end to end; their seeds must differ from any evaluation's), then the fit; in
// fp32, then, with ProfileOptions::int8, the same in int8 on the rest of the budget.
inline LatencyProfile profile_device(const ProfileOptions& o, const std::vector<std::pair<std::string, Graph>>& calibration_models,
                                     const std::vector<std::string>& calibration_families = {}) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    auto elapsed = [&start] { return std::chrono::duration<double>(clock::now() - start).count(); };
    LatencyProfile prof;
    prof.fingerprint = current_fingerprint(o.threads);
    prof.budget_s = o.budget_s;
    prof.load_average = current_load_average();
    std::mt19937_64 rng(o.seed);
    auto last_report = clock::now() - std::chrono::seconds(1);
    // One precision's three phases, from `begin` s to `end` s of the whole profile's time.
    auto profile_part = [&](LatencyPrecision prec, double begin, double end,
                            std::vector<LatencySample>& samples, std::vector<CalibrationSample>& calibration) {
        const double budget = end - begin;
        const double op_end = begin + budget * (1.0 - o.calibration_share);
        const double initial_end = begin + budget * (1.0 - o.calibration_share) * o.initial_share;
        const std::string tag = prec == LatencyPrecision::Int8 ? "int8 " : "";
        auto report = [&](const std::string& phase, bool force = false) {
            if (!o.progress) return;
            const auto now = clock::now();
            if (!force && now - last_report < std::chrono::milliseconds(100)) return;
            last_report = now;
            char line[200];
            std::snprintf(line, sizeof line, "[%5.1fs / %.0fs] %s%s: %zu operator samples, %zu models",
                          elapsed(), o.budget_s, tag.c_str(), phase.c_str(), samples.size(), calibration.size());
            o.progress(line);
        };
        std::array<double, prim_kind_count> spent{};
        auto measure = [&](const PrimOp& cfg) {
            const double t0 = elapsed();
            try {
                samples.push_back(measure_prim(cfg, o.threads, 15, 0.05, o.quantile, prec));
            } catch (const std::exception&) {
                // A configuration the executor rejects is skipped.
            }
            spent[static_cast<std::size_t>(cfg.kind)] += elapsed() - t0;
        };
        // Phase 1: random configurations, each kind up to its share of the initial budget.
        const double initial_budget = initial_end - begin;
        while (elapsed() < initial_end) {
            std::size_t best = 0;
            double lag = -1e300;
            for (std::size_t k = 0; k < prim_kind_count; ++k) {
                const double l = latency_detail::kind_budget_share[k] * initial_budget - spent[k];
                if (l > lag) lag = l, best = k;
            }
            measure(latency_detail::random_config(all_prim_kinds[best], rng));
            report("random sample");
        }
        // Phase 2: adaptive. Per kind, the cross-validated error decides where the next samples go:
        // kinds in proportion to share x CV error, configurations near the worst-predicted samples.
        std::array<std::vector<std::size_t>, prim_kind_count> used;
        std::array<Eigen::VectorXd, prim_kind_count> residuals;
        std::array<double, prim_kind_count> cv{};
        auto refit = [&](std::size_t k) {
            const KindModel m = fit_kind_model(all_prim_kinds[k], samples, &residuals[k], &used[k], prec,
                                               ran_own_kernels(prof.fingerprint, prec));
            cv[k] = m.fitted ? m.cv_rel_rmse : 1.0;
        };
        for (std::size_t k = 0; k < prim_kind_count; ++k) refit(k);
        std::array<int, prim_kind_count> since{};
        while (elapsed() < op_end) {
            std::vector<double> w(prim_kind_count);
            for (std::size_t k = 0; k < prim_kind_count; ++k)
                w[k] = latency_detail::kind_budget_share[k] * (0.02 + cv[k]);
            const std::size_t k = std::discrete_distribution<std::size_t>(w.begin(), w.end())(rng);
            PrimOp cfg;
            if (used[k].size() < 8 || std::uniform_real_distribution<double>(0, 1)(rng) < 0.25) {
                cfg = latency_detail::random_config(all_prim_kinds[k], rng);
            } else {
                std::vector<double> sq(used[k].size());
                for (std::size_t i = 0; i < sq.size(); ++i)
                    sq[i] = residuals[k](static_cast<Eigen::Index>(i)) * residuals[k](static_cast<Eigen::Index>(i)) + 1e-6;
                const std::size_t i = std::discrete_distribution<std::size_t>(sq.begin(), sq.end())(rng);
                cfg = latency_detail::mutate_config(samples[used[k][i]].op, rng);
                // Re-derive the pre-inference configuration: probes take input dims, kernel, stride.
                cfg.kind = all_prim_kinds[k];
            }
            measure(cfg);
            if (++since[k] >= 20) {
                refit(k);
                since[k] = 0;
            }
            report("adaptive sample");
        }
        // Phase 3: whole models.
        for (std::size_t i = 0; i < calibration_models.size(); ++i) {
            if (elapsed() > end && calibration.size() >= 8) break;
            CalibrationSample c;
            c.name = calibration_models[i].first;
            c.family = i < calibration_families.size() ? calibration_families[i] : "";
            ModelTiming timing;
            try {
                timing = time_model(calibration_models[i].second, o.threads, 15, 2, 0.5, o.quantile, true, prec);
            } catch (const std::exception&) {
                continue;
            }
            c.ms = timing.ms;
            const Graph& graph = calibration_models[i].second;
            const OpPlan plan = plan_ops(graph);
            lower_for_latency(graph, plan, c.ops);
            c.activation_bytes = activation_buffer_bytes(plan, prec);
            // The layer's time on its first operator (the operator's own where it is alone).
            for (std::size_t k = 0; k < c.ops.size(); ++k) {
                const int layer = c.ops[k].layer;
                const bool first = k == 0 || c.ops[k - 1].layer != layer;
                c.op_ms.push_back(first ? timing.layer_ms[static_cast<std::size_t>(layer)] : -1.0);
            }
            calibration.push_back(std::move(c));
            report("calibration models");
        }
        report("fitting", true);
    };
    const double fp32_end = o.int8 ? o.budget_s * (1.0 - std::clamp(o.int8_share, 0.05, 0.95)) : o.budget_s;
    profile_part(LatencyPrecision::Fp32, 0.0, fp32_end, prof.samples, prof.calibration);
    prof.model = fit_latency_model(prof.samples, prof.calibration, 10.0, LatencyPrecision::Fp32,
                                   ran_own_kernels(prof.fingerprint, LatencyPrecision::Fp32));
    if (o.int8) {
        // int8 keeps its planned length even when fp32's calibration models ran past their window (a
        // slow or emulated machine: each calibration model is timed to the end): from the budget's end
        // alone it would get no operator samples and a model fitted on nothing.
        const double int8_begin = elapsed();
        const double int8_end = std::max(o.budget_s, int8_begin + (o.budget_s - fp32_end));
        profile_part(LatencyPrecision::Int8, int8_begin, int8_end, prof.int8_samples, prof.int8_calibration);
        prof.int8_model = fit_latency_model(prof.int8_samples, prof.int8_calibration, 10.0, LatencyPrecision::Int8,
                                            ran_own_kernels(prof.fingerprint, LatencyPrecision::Int8));
        prof.has_int8 = true;
    }
    prof.elapsed_s = elapsed();
    if (o.progress) {
        char line[200];
        std::snprintf(line, sizeof line, "[%5.1fs / %.0fs] done: %zu operator samples, %zu models", prof.elapsed_s,
                      o.budget_s, prof.samples.size() + prof.int8_samples.size(),
                      prof.calibration.size() + prof.int8_calibration.size());
        o.progress(line);
    }
    return prof;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY && LAMDA_WITH_XNNPACK
#endif  // LAMDA_LATENCY_PROFILER_HPP
