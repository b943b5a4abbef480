// lamda/latency/predictor.hpp: the latency model proper: a ridge regressor per operator kind
// (latency/ridge.hpp) over the operators' features (latency/features.hpp), a context factor per
// kind and a whole-model calibration; fitting them from samples; accuracy figures.
//
//   lamda::LatencyModel m = lamda::fit_latency_model(samples, calibration_models);
//   lamda::LatencyPrediction r = m.predict(graph);   // r.total_ms, r.per_layer_ms
//
// A model is of one precision (LatencyModel::precision): an int8 model is fitted on operators and
// calibration models timed in int8, and predicts the int8 executor's latency.
//
// Compiled only with LAMDA_WITH_LATENCY (Eigen). Profiles (file I/O) are latency/profile_file.hpp.
#ifndef LAMDA_LATENCY_PREDICTOR_HPP
#define LAMDA_LATENCY_PREDICTOR_HPP

#include "../exec/plan.hpp"

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/predictor.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "../detail/stats.hpp"
#include "features.hpp"
#include "ridge.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// The latency model
// ---------------------------------------------------------------------------------------------

// One measured operator.
struct LatencySample {
    PrimOp op;
    double ms = 0;
    OpContext ctx;      // a probe (the default) or an operator timed inside a model
    double weight = 1;  // relative weight in the fit
};

// A whole model measured for calibration: its per-kind predicted sums are recomputed at fit time.
struct CalibrationSample {
    std::string name;
    std::string family;
    std::vector<PrimOp> ops;
    // Parallel to ops: the time in the model of op i's layer on the layer's first operator (its
    // own time where it is the layer's only operator), -1 on a layer's further operators, 0 where
    // not timed. (The ops' `layer` is not stored in the profile: -1 marks the grouping.)
    std::vector<double> op_ms;
    double ms = 0;
    double activation_bytes = -1;  // activation_buffer_bytes of the model; -1: not recorded
};

struct KindModel {
    PrimKind kind = PrimKind::Clamp;
    LatencyPrecision precision = LatencyPrecision::Fp32;  // what its features count bytes for
    OwnKernels own;  // which convs the device ran on lamda's own kernels (op_features)
    bool fitted = false;
    int samples = 0;
    double cv_rel_rmse = 0;   // cross-validated RMS relative error
    double floor_ms = 0;      // predictions never go below this (half the fastest sample)
    // Operators of this kind inside whole models take this factor times what they take alone
    // (cache state, producers, neighbours): the median ratio over the calibration models.
    double context_scale = 1;
    int context_samples = 0;
    RidgeModel ridge;
};

// Convolutions on lamda's own kernels (exec/pw_avx512.hpp, exec/wino_avx512.hpp; in int8
// exec/qc8_vnni.hpp) have regressors of their own, apart from the conv kind's (XNNPACK's): one
// ridge over all three mixed their cost shapes: the Winograd kernel's convolutions of one block
// of tiles (maps up to 15x15) with 1 MiB or more of transformed filters, streamed for few
// products, came out a median 34% under their time inside models (docs/latency.md).
enum class OwnConv : std::uint8_t { None, Pointwise, Winograd };
inline constexpr std::size_t own_conv_count = 2;
// The own kernels with a regressor, in LatencyModel::own_conv's order.
inline constexpr std::array<OwnConv, own_conv_count> all_own_convs{OwnConv::Pointwise, OwnConv::Winograd};

inline constexpr std::string_view own_conv_name(OwnConv o) noexcept {
    return o == OwnConv::Pointwise ? "pointwise" : o == OwnConv::Winograd ? "winograd" : "none";
}

// Which own kernel runs conv op p on a device that runs `own` in precision `prec`; None for every
// other operator (ConvNarrow included: its stems stay with XNNPACK's regressor).
inline OwnConv own_conv_of(const PrimOp& p, LatencyPrecision prec, OwnKernels own) noexcept {
    if (p.kind != PrimKind::Conv) return OwnConv::None;
    if (runs_on_own_pointwise(p, prec, own.pointwise)) return OwnConv::Pointwise;
    if (runs_on_own_winograd(p, prec, own.winograd)) return OwnConv::Winograd;
    return OwnConv::None;
}

// A set of OwnConv values (bit i: OwnConv(i)): which operators a regressor is fitted on.
inline constexpr unsigned own_conv_bit(OwnConv o) noexcept { return 1u << static_cast<unsigned>(o); }
inline constexpr unsigned every_conv = 7u;

// Model latency = b0 + b_ops * operators + sum over groups g of (a_g + a_f * large) * (predicted
// ms of the operators in group g), `large` the model's footprint term (OpContext). Groups: 0 GEMM-like (conv, fc), 1 depthwise, 2 everything else.
struct Calibration {
    std::array<double, 3> scale{1.0, 1.0, 1.0};
    // Added to every scale in proportion to OpContext::large: a large model's operators run
    // slower than its operators' context terms alone say.
    double footprint_scale = 0;
    double per_op_ms = 0;
    double constant_ms = 0;
    int models = 0;
};

inline int calibration_group(PrimKind k) noexcept {
    if (k == PrimKind::Conv || k == PrimKind::ConvNarrow || k == PrimKind::FullyConnected) return 0;
    if (k == PrimKind::Depthwise || k == PrimKind::DepthwiseLarge) return 1;
    return 2;
}

struct LatencyPrediction {
    double total_ms = 0;                 // calibrated whole-model latency
    double ops_ms = 0;                   // sum of the per-operator predictions (uncalibrated)
    std::vector<double> per_layer_ms;    // parallel to graph.layers, calibrated scale applied
    std::vector<PrimOp> ops;             // the operators predicted
    std::vector<double> per_op_ms;       // parallel to ops, uncalibrated
};

class LatencyModel {
public:
    std::array<KindModel, prim_kind_count> kinds{};
    Calibration calibration;
    LatencyPrecision precision = LatencyPrecision::Fp32;
    // Which convolutions the device ran on lamda's own kernels: pointwise in int8 on VNNI
    // (exec/qc8_vnni.hpp), in fp32 on AVX-512 (exec/pw_avx512.hpp); 3x3 in fp32 on Winograd's
    // (exec/wino_avx512.hpp) (op_features).
    OwnKernels own;

    // Not explicit without an argument: `LatencyProfile{}` and other aggregates holding a model
    // are copy-list-initialised, which an explicit default constructor forbids (clang refuses it).
    LatencyModel() : LatencyModel(LatencyPrecision::Fp32) {}
    explicit LatencyModel(LatencyPrecision prec, OwnKernels own_kernels = {}) : precision(prec), own(own_kernels) {
        for (std::size_t i = 0; i < prim_kind_count; ++i) {
            kinds[i].kind = all_prim_kinds[i];
            kinds[i].precision = prec;
            kinds[i].own = own_kernels;
        }
        for (KindModel& m : own_conv) {
            m.kind = PrimKind::Conv;
            m.precision = prec;
            m.own = own_kernels;
        }
    }

    // The regressors of convolutions on lamda's own kernels: [0] pointwise, [1] Winograd (OwnConv
    // less one). Where one is not fitted (a profile from before them), the conv kind's predicts.
    std::array<KindModel, own_conv_count> own_conv{};

    const KindModel& kind_model(PrimKind k) const { return kinds[static_cast<std::size_t>(k)]; }
    KindModel& kind_model(PrimKind k) { return kinds[static_cast<std::size_t>(k)]; }
    KindModel& own_conv_model(OwnConv o) { return own_conv[static_cast<std::size_t>(o) - 1]; }
    const KindModel& own_conv_model(OwnConv o) const { return own_conv[static_cast<std::size_t>(o) - 1]; }

    // The regressor that predicts p: its own kernel's where that is fitted, else its kind's.
    const KindModel& regressor(const PrimOp& p) const {
        const OwnConv o = own_conv_of(p, precision, own);
        if (o != OwnConv::None && own_conv_model(o).fitted) return own_conv_model(o);
        return kind_model(p.kind);
    }
    KindModel& regressor(const PrimOp& p) {
        return const_cast<KindModel&>(static_cast<const LatencyModel&>(*this).regressor(p));
    }

    // Predicted milliseconds of one operator in context `ctx` (a model's: model_context(ops)),
    // before calibration. An operator kind the profile has no samples for predicts a rough
    // bandwidth figure (and `missing` is set).
    double predict_op(const PrimOp& p, const OpContext& ctx = {}, bool* missing = nullptr) const {
        const KindModel& m = regressor(p);
        if (!m.fitted) {
            if (missing) *missing = true;
            const double bytes = 8.0 * double(p.oh) * p.ow * p.oc;
            return 0.002 + bytes / 10e9 * 1e3;
        }
        return (ctx.in_model > 0 ? m.context_scale : 1.0) * raw_ms(m, p, ctx);
    }

    // The kind model's regression in context `ctx` (no context factor).
    static double raw_ms(const KindModel& m, const PrimOp& p, const OpContext& ctx = {}) {
        const OpFeatures f = op_features(p, ctx, m.precision, m.own);
        return std::max(m.floor_ms, m.ridge.predict(f.x.data()));
    }

    // Calibrated total from per-operator predictions in context `ctx`.
    double combine(const std::vector<PrimOp>& ops, const std::vector<double>& op_ms,
                   const OpContext& ctx) const {
        std::array<double, 3> sums{0, 0, 0};
        for (std::size_t i = 0; i < ops.size(); ++i)
            sums[static_cast<std::size_t>(calibration_group(ops[i].kind))] += op_ms[i];
        return combine_sums(sums, ops.size(), ctx);
    }
    double combine_sums(const std::array<double, 3>& sums, std::size_t ops, const OpContext& ctx) const {
        double t = calibration.constant_ms + calibration.per_op_ms * static_cast<double>(ops);
        for (std::size_t g = 0; g < 3; ++g) t += group_scale(g, ctx) * sums[g];
        return std::max(t, 0.5 * (sums[0] + sums[1] + sums[2]));
    }
    double group_scale(std::size_t g, const OpContext& ctx) const {
        return calibration.scale[g] + calibration.footprint_scale * ctx.large;
    }

    LatencyPrediction predict(const Graph& g) const {
        LatencyPrediction r;
        const OpPlan plan = plan_ops(g);
        lower_for_latency(g, plan, r.ops);
        const OpContext ctx = model_context(r.ops, activation_buffer_bytes(plan, precision), precision);
        r.per_op_ms.resize(r.ops.size());
        r.per_layer_ms.assign(g.layers.size(), 0.0);
        for (std::size_t i = 0; i < r.ops.size(); ++i) {
            const double ms = predict_op(r.ops[i], ctx);
            r.per_op_ms[i] = ms;
            r.ops_ms += ms;
            const double s = group_scale(static_cast<std::size_t>(calibration_group(r.ops[i].kind)), ctx);
            r.per_layer_ms[static_cast<std::size_t>(r.ops[i].layer)] += s * ms;
        }
        r.total_ms = combine(r.ops, r.per_op_ms, ctx);
        return r;
    }

    // Only the total; allocates nothing but the lowering scratch passed in.
    double predict_ms(const Graph& g, std::vector<PrimOp>& scratch) const {
        const OpPlan plan = plan_ops(g);
        lower_for_latency(g, plan, scratch);
        const OpContext ctx = model_context(scratch, activation_buffer_bytes(plan, precision), precision);
        std::array<double, 3> sums{0, 0, 0};
        for (const PrimOp& p : scratch)
            sums[static_cast<std::size_t>(calibration_group(p.kind))] += predict_op(p, ctx);
        return combine_sums(sums, scratch.size(), ctx);
    }
    double predict_ms(const Graph& g) const {
        std::vector<PrimOp> scratch;
        return predict_ms(g, scratch);
    }
};

inline std::vector<double> default_lambda_grid() { return {1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2}; }

// Fits one kind's model from its samples (ms > 0): ridge regression weighted by 1/ms^2 (relative
// error), lambda by cross-validation, then twice reweighted to discount outliers (Huber weights on
// the relative residual). Fewer than 8 samples leave it unfitted. `cv_residuals` receives the
// cross-validated relative errors of the samples listed in `used`. `prec`: the precision the
// samples were timed in; `own`: which convs ran on lamda's own kernels; `families`: of the kind's
// samples, those whose own_conv_of is in this set (OwnConv bits; every_conv: all of them).
inline KindModel fit_kind_model(PrimKind kind, const std::vector<LatencySample>& samples,
                                Eigen::VectorXd* cv_residuals = nullptr,
                                std::vector<std::size_t>* used = nullptr,
                                LatencyPrecision prec = LatencyPrecision::Fp32, OwnKernels own = {},
                                unsigned families = every_conv) {
    KindModel m;
    m.kind = kind;
    m.precision = prec;
    m.own = own;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < samples.size(); ++i)
        if (samples[i].op.kind == kind && samples[i].ms > 0 && std::isfinite(samples[i].ms) && samples[i].weight > 0 &&
            (families & own_conv_bit(own_conv_of(samples[i].op, prec, own))) != 0)
            idx.push_back(i);
    if (used) *used = idx;
    m.samples = static_cast<int>(idx.size());
    if (idx.size() < 8) return m;
    const int d = feature_count(kind);
    const auto n = static_cast<Eigen::Index>(idx.size());
    Eigen::MatrixXd X(n, d);
    Eigen::VectorXd y(n), w(n);
    double fastest = std::numeric_limits<double>::infinity();
    for (Eigen::Index i = 0; i < n; ++i) {
        const LatencySample& s = samples[idx[static_cast<std::size_t>(i)]];
        const OpFeatures f = op_features(s.op, s.ctx, prec, own);
        for (int j = 0; j < d; ++j) X(i, j) = f.x[static_cast<std::size_t>(j)];
        y(i) = s.ms;
        // Relative error, with timer resolution (~0.1 us) bounding the weight of the tiniest.
        w(i) = std::max(0.0, s.weight) / std::pow(std::max(s.ms, 1e-4), 2);
        fastest = std::min(fastest, s.ms);
    }
    Eigen::VectorXd res;
    Eigen::VectorXd robust = w;
    for (int round = 0; round < 3; ++round) {
        m.ridge = fit_ridge_cv(X, y, default_lambda_grid(), 5, &m.cv_rel_rmse, &res, &robust);
        if (round == 2) break;
        // Huber weights: residuals beyond 2.5 MADs count linearly, not quadratically.
        std::vector<double> a(static_cast<std::size_t>(n));
        for (Eigen::Index i = 0; i < n; ++i) a[static_cast<std::size_t>(i)] = std::abs(res(i));
        const double mad = std::max(1e-3, median(a));
        for (Eigen::Index i = 0; i < n; ++i) {
            const double r = std::abs(res(i)) / (2.5 * mad);
            robust(i) = w(i) * (r > 1 ? 1.0 / r : 1.0);
        }
    }
    m.floor_ms = 0.5 * fastest;
    m.fitted = true;
    if (cv_residuals) *cv_residuals = res;
    return m;
}

// Fits the calibration from whole-model measurements, minimising relative error with a pull
// towards the identity (scale 1, no overhead) so that few models cannot produce a wild fit.
inline Calibration fit_calibration(const LatencyModel& model,
                                   const std::vector<CalibrationSample>& models,
                                   double prior_strength = 0.05) {
    Calibration c;
    c.models = static_cast<int>(models.size());
    if (models.empty()) return c;
    // Unknowns: scale[0..2], per_op_ms, constant_ms, footprint_scale. Rows divided by measured ms.
    const Eigen::Index n = static_cast<Eigen::Index>(models.size());
    Eigen::MatrixXd A(n + 6, 6);
    Eigen::VectorXd b(n + 6);
    A.setZero();
    b.setZero();
    for (Eigen::Index i = 0; i < n; ++i) {
        const CalibrationSample& s = models[static_cast<std::size_t>(i)];
        const OpContext ctx = model_context(s.ops, s.activation_bytes, model.precision);
        std::array<double, 3> sums{0, 0, 0};
        for (const PrimOp& p : s.ops)
            sums[static_cast<std::size_t>(calibration_group(p.kind))] += model.predict_op(p, ctx);
        const double t = std::max(s.ms, 1e-6);
        for (int g = 0; g < 3; ++g) A(i, g) = sums[static_cast<std::size_t>(g)] / t;
        A(i, 3) = static_cast<double>(s.ops.size()) / t;
        A(i, 4) = 1.0 / t;
        A(i, 5) = ctx.large * (sums[0] + sums[1] + sums[2]) / t;
        b(i) = 1.0;
    }
    // Prior rows: scale_g ~ 1, per_op ~ 0 (in units of 1 us), constant ~ 0 (in units of 10 us).
    const double w = prior_strength * std::sqrt(static_cast<double>(n));
    for (int g = 0; g < 3; ++g) {
        A(n + g, g) = w;
        b(n + g) = w;
    }
    A(n + 3, 3) = w * 1000.0 * 0.2;
    A(n + 4, 4) = w * 100.0 * 0.2;
    A(n + 5, 5) = w;  // footprint_scale ~ 0
    // Least squares through the normal equations: 6 unknowns, and the prior rows keep A^T A
    // positive definite. LDLT, not a QR: ridge.hpp instantiates LDLT already, and
    // ColPivHouseholderQR's templates cost g++ ~4 s in every translation unit that includes this
    // header (nearly all of lamda's).
    const auto solve = [](const Eigen::MatrixXd& m, const Eigen::VectorXd& v) -> Eigen::VectorXd {
        const Eigen::MatrixXd normal = m.transpose() * m;
        const Eigen::VectorXd rhs = m.transpose() * v;
        return normal.ldlt().solve(rhs);
    };
    // Robust: twice reweighted (Huber on the relative residual, beyond 2.5 MADs), so that a
    // model timed while another process thrashed the caches cannot pull the fit.
    Eigen::VectorXd x = solve(A, b);
    for (int round = 0; round < 2 && n >= 8; ++round) {
        const Eigen::VectorXd res = A.topRows(n) * x - b.head(n);
        std::vector<double> a(static_cast<std::size_t>(n));
        for (Eigen::Index i = 0; i < n; ++i) a[static_cast<std::size_t>(i)] = std::abs(res(i));
        const double mad = std::max(0.01, median(a));
        Eigen::MatrixXd Aw = A;
        Eigen::VectorXd bw = b;
        for (Eigen::Index i = 0; i < n; ++i) {
            const double r = std::abs(res(i)) / (2.5 * mad);
            const double sw = r > 1 ? std::sqrt(1.0 / r) : 1.0;
            Aw.row(i) *= sw;
            bw(i) *= sw;
        }
        x = solve(Aw, bw);
    }
    for (int g = 0; g < 3; ++g) c.scale[static_cast<std::size_t>(g)] = std::clamp(x(g), 0.5, 2.0);
    c.per_op_ms = std::clamp(x(3), -0.001, 0.01);
    c.constant_ms = std::clamp(x(4), -0.005, 0.5);
    c.footprint_scale = std::clamp(x(5), -0.5, 1.0);
    return c;
}

// The operators of the calibration models as samples in their model's context. op_ms[i] > 0 is
// operator i's own time, or, for a layer of several operators (a conv and its hardswish), the
// layer's total on the layer's first operator, followed by -1 on the others: the total is shared
// in proportion to `model`'s predictions and the parts weigh half. 0 (or any other value that is
// neither positive nor -1) is an operator not timed.
inline std::vector<LatencySample> in_model_samples(const LatencyModel& model,
                                                   const std::vector<CalibrationSample>& models,
                                                   double weight = 1.0) {
    std::vector<LatencySample> out;
    for (const CalibrationSample& c : models) {
        const OpContext ctx = model_context(c.ops, c.activation_bytes, model.precision);
        const std::size_t n = std::min(c.ops.size(), c.op_ms.size());
        for (std::size_t i = 0; i < n; ++i) {
            if (!(c.op_ms[i] > 0) || !std::isfinite(c.op_ms[i])) continue;
            std::size_t e = i + 1;
            while (e < n && c.op_ms[e] == -1.0) ++e;
            if (e == i + 1) {
                out.push_back({c.ops[i], c.op_ms[i], ctx, weight});
                continue;
            }
            double total = 0;
            std::vector<double> pred;
            for (std::size_t k = i; k < e; ++k) {
                pred.push_back(std::max(1e-6, model.predict_op(c.ops[k], ctx)));
                total += pred.back();
            }
            for (std::size_t k = i; k < e; ++k)
                out.push_back({c.ops[k], c.op_ms[i] * pred[k - i] / total, ctx, 0.5 * weight});
        }
    }
    return out;
}

// The context factor of each kind: the median of (timed in a model / the regression in that
// model's context) over the calibration models' operators timed on their own (at least 5, else
// 1). With the context terms fitted it stays near 1; it catches what they cannot.
inline void fit_context_scales(LatencyModel& m, const std::vector<CalibrationSample>& models) {
    std::vector<KindModel*> regressors;  // every kind's, then the own kernels'
    for (KindModel& k : m.kinds) regressors.push_back(&k);
    for (KindModel& k : m.own_conv) regressors.push_back(&k);
    std::vector<std::vector<double>> ratios(regressors.size());
    for (const CalibrationSample& c : models) {
        const OpContext ctx = model_context(c.ops, c.activation_bytes, m.precision);
        for (std::size_t i = 0; i < c.ops.size() && i < c.op_ms.size(); ++i) {
            KindModel& k = m.regressor(c.ops[i]);
            if (!k.fitted || !(c.op_ms[i] > 0)) continue;
            const bool alone = i + 1 >= c.op_ms.size() || c.op_ms[i + 1] != -1.0;
            if (!alone) continue;
            const double pred = LatencyModel::raw_ms(k, c.ops[i], ctx);
            const auto slot = static_cast<std::size_t>(std::find(regressors.begin(), regressors.end(), &k) - regressors.begin());
            if (pred > 0) ratios[slot].push_back(std::log(c.op_ms[i] / pred));
        }
    }
    for (std::size_t k = 0; k < regressors.size(); ++k) {
        KindModel& km = *regressors[k];
        km.context_samples = static_cast<int>(ratios[k].size());
        km.context_scale = ratios[k].size() >= 5 ? std::clamp(std::exp(median(ratios[k])), 0.25, 4.0) : 1.0;
    }
}

namespace latency_detail {

// Fits every kind's regressor and the own kernels' on `samples`: the own kernels' first, then the
// conv kind's on XNNPACK's convolutions and those of any own kernel left without a regressor.
inline void fit_regressors(LatencyModel& m, const std::vector<LatencySample>& samples) {
    unsigned conv_families = own_conv_bit(OwnConv::None);
    for (OwnConv o : all_own_convs) {
        m.own_conv_model(o) = fit_kind_model(PrimKind::Conv, samples, nullptr, nullptr, m.precision, m.own, own_conv_bit(o));
        if (!m.own_conv_model(o).fitted) conv_families |= own_conv_bit(o);
    }
    for (PrimKind k : all_prim_kinds)
        m.kind_model(k) = fit_kind_model(k, samples, nullptr, nullptr, m.precision, m.own,
                                         k == PrimKind::Conv ? conv_families : every_conv);
}

}  // namespace latency_detail

// Fits every kind from the probes `samples` together with the operators timed inside the
// calibration `models` (in their context; a first fit on the probes alone shares the time of
// multi-operator layers), then the context factors and the calibration. `prec`: the precision
// samples and models were timed in (activation_bytes then counts a byte per int8 value);
// `own` as fit_kind_model's.
inline LatencyModel fit_latency_model(const std::vector<LatencySample>& samples,
                                      const std::vector<CalibrationSample>& models,
                                      double in_model_weight = 10.0,
                                      LatencyPrecision prec = LatencyPrecision::Fp32, OwnKernels own = {}) {
    LatencyModel first(prec, own);
    latency_detail::fit_regressors(first, samples);
    std::vector<LatencySample> all = samples;
    const std::vector<LatencySample> in_model = in_model_samples(first, models, in_model_weight);
    all.insert(all.end(), in_model.begin(), in_model.end());
    LatencyModel m(prec, own);
    latency_detail::fit_regressors(m, all);
    fit_context_scales(m, models);
    m.calibration = fit_calibration(m, models);
    return m;
}

// ---------------------------------------------------------------------------------------------
// Accuracy figures
// ---------------------------------------------------------------------------------------------

struct AccuracyStats {
    int n = 0;
    double within_10pct = 0, within_5pct = 0, within_15pct = 0;  // fractions
    double mape = 0;       // mean |pred - meas| / meas, in percent
    double rmse_ms = 0;
    double max_abs_pct = 0;
};

inline AccuracyStats accuracy_stats(const std::vector<double>& predicted,
                                    const std::vector<double>& measured) {
    AccuracyStats s;
    const std::size_t n = std::min(predicted.size(), measured.size());
    s.n = static_cast<int>(n);
    if (n == 0) return s;
    double se = 0, ape = 0;
    int w5 = 0, w10 = 0, w15 = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double e = predicted[i] - measured[i];
        const double rel = measured[i] > 0 ? std::abs(e) / measured[i] : 0.0;
        se += e * e;
        ape += rel;
        w5 += rel <= 0.05;
        w10 += rel <= 0.10;
        w15 += rel <= 0.15;
        s.max_abs_pct = std::max(s.max_abs_pct, 100 * rel);
    }
    const double dn = static_cast<double>(n);
    s.within_5pct = w5 / dn;
    s.within_10pct = w10 / dn;
    s.within_15pct = w15 / dn;
    s.mape = 100 * ape / dn;
    s.rmse_ms = std::sqrt(se / dn);
    return s;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_PREDICTOR_HPP
