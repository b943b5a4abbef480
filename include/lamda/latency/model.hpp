// lamda/latency/model.hpp: the empirical latency model of a device: lowering a graph into the operators
// the XNNPACK executor runs, features per operator, a ridge regressor per operator kind fitted
// with Eigen, a per-model overhead term calibrated on whole models, and the profile file
// (written with JsonWriter, read with simdjson) that carries samples, fit and a device fingerprint.
//
//   lamda::LatencyProfile p = lamda::read_latency_profile("PROFILE.json");  // throws ProfileError
//   if (auto w = lamda::fingerprint_warning(p.fingerprint, lamda::current_fingerprint(1)); !w.empty())
//       std::cerr << w << '\n';
//   lamda::LatencyPrediction r = p.model.predict(graph);   // r.total_ms, r.per_layer_ms
//
// Compiled only with LAMDA_WITH_LATENCY defined (needs Eigen, include path /usr/include/eigen3,
// and simdjson, link -lsimdjson). Prediction needs nothing else; measuring (latency/profiler.hpp)
// also needs LAMDA_WITH_XNNPACK.
#ifndef LAMDA_LATENCY_MODEL_HPP
#define LAMDA_LATENCY_MODEL_HPP

#include "../exception.hpp"
#include "../exec/plan.hpp"

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/model.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include <Eigen/Dense>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../exec/device.hpp"
#include "../core/ir.hpp"
#include "../detail/json_write.hpp"
#include "../detail/json_read.hpp"
#include "../detail/read_file.hpp"
#include "../detail/stats.hpp"
#include "../version.hpp"

// The XNNPACK build the profile was measured with; XNNPACK has no run-time version query, so the
// build system may pass the package version (Debian 12 ships this snapshot).
#ifndef LAMDA_XNNPACK_VERSION
#define LAMDA_XNNPACK_VERSION "0.0~git20220216.ae108ef"
#endif

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Lowering: the operators the executor runs, one unit of prediction each
// ---------------------------------------------------------------------------------------------

// One kind per family of XNNPACK operators with its own cost behaviour.
enum class PrimKind : std::uint8_t {
    Conv,           // convolution2d (GEMM / IGEMM), groups >= 1; dwconv with multiplier > 1
    Depthwise,      // dwconv with multiplier 1 and at most 25 taps (XNNPACK's depthwise kernels)
    DepthwiseLarge, // dwconv with multiplier 1 and more than 25 taps (e.g. 7x7): a generic path
    FullyConnected,
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    Add,            // an add layer with n inputs (n-1 add_nd operators)
    Mul,            // multiply_nd of two same-shaped values
    MulBroadcast,   // multiply_nd of HxWxC by 1x1xC (squeeze-excitation)
    Concat,         // one strided copy per input
    Clamp,          // standalone relu / relu6
    HardSwish,
    Sigmoid,
    HardSigmoid,    // add_nd + multiply_nd when not folded into weights
    Softmax,
    ChannelAffine,  // a standalone batchnorm (1x1 depthwise convolution)
    StridedCopy,    // 1x1 pooling, a plain loop
    ConvNarrow,     // convolution of a single input channel (a stem on a grey image): ~2x per MAC
};

inline constexpr std::size_t prim_kind_count = 19;

inline constexpr std::array<PrimKind, prim_kind_count> all_prim_kinds{
    PrimKind::Conv,      PrimKind::Depthwise, PrimKind::DepthwiseLarge, PrimKind::FullyConnected, PrimKind::MaxPool,
    PrimKind::AvgPool,   PrimKind::GlobalAvgPool, PrimKind::Add,        PrimKind::Mul, PrimKind::MulBroadcast,
    PrimKind::Concat,    PrimKind::Clamp,     PrimKind::HardSwish,      PrimKind::Sigmoid,
    PrimKind::HardSigmoid, PrimKind::Softmax, PrimKind::ChannelAffine,  PrimKind::StridedCopy,
    PrimKind::ConvNarrow};

inline constexpr std::string_view prim_kind_name(PrimKind k) noexcept {
    switch (k) {
    case PrimKind::Conv: return "conv";
    case PrimKind::Depthwise: return "depthwise";
    case PrimKind::DepthwiseLarge: return "depthwise_large";
    case PrimKind::FullyConnected: return "fc";
    case PrimKind::MaxPool: return "maxpool";
    case PrimKind::AvgPool: return "avgpool";
    case PrimKind::GlobalAvgPool: return "gap";
    case PrimKind::Add: return "add";
    case PrimKind::Mul: return "mul";
    case PrimKind::MulBroadcast: return "mul_broadcast";
    case PrimKind::Concat: return "concat";
    case PrimKind::Clamp: return "clamp";
    case PrimKind::HardSwish: return "hardswish";
    case PrimKind::Sigmoid: return "sigmoid";
    case PrimKind::HardSigmoid: return "hardsigmoid";
    case PrimKind::Softmax: return "softmax";
    case PrimKind::ChannelAffine: return "channel_affine";
    case PrimKind::StridedCopy: return "strided_copy";
    case PrimKind::ConvNarrow: return "conv_narrow";
    }
    return "?";
}

inline bool parse_prim_kind(std::string_view s, PrimKind& out) noexcept {
    for (PrimKind k : all_prim_kinds)
        if (prim_kind_name(k) == s) {
            out = k;
            return true;
        }
    return false;
}

// One operator (or, for add/concat, one layer's group of operators) as the executor runs it.
// Field meaning per kind:
//   conv/depthwise/pools: input ih x iw x ic, output oh x ow x oc, kernel, stride, groups
//     (depthwise: groups = ic, n = multiplier)
//   fc: ic = input elements, oc = outputs
//   add/concat: n = number of inputs; concat: ic = smallest input's channels
//   mul: n = 1 when the second operand is broadcast (1x1xC)
//   elementwise kinds: output shape oh x ow x oc
struct PrimOp {
    PrimKind kind = PrimKind::Clamp;
    int layer = -1;  // the graph layer it is timed under
    std::int32_t ih = 1, iw = 1, ic = 1, oh = 1, ow = 1, oc = 1;
    std::int32_t kh = 1, kw = 1, sh = 1, sw = 1, groups = 1, n = 1;
};

namespace latency_detail {

inline std::int32_t i32(std::int64_t v) noexcept {
    return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 1, std::int64_t{1} << 30));
}

inline void push_activation(std::vector<PrimOp>& out, int layer, Activation a, const Shape& s) {
    PrimOp p;
    p.layer = layer;
    p.oh = p.ih = i32(s.h);
    p.ow = p.iw = i32(s.w);
    p.oc = p.ic = i32(s.c);
    switch (a) {
    case Activation::Relu:
    case Activation::Relu6: p.kind = PrimKind::Clamp; break;
    case Activation::HardSwish: p.kind = PrimKind::HardSwish; break;
    case Activation::Sigmoid: p.kind = PrimKind::Sigmoid; break;
    case Activation::HardSigmoid: p.kind = PrimKind::HardSigmoid; break;
    case Activation::None: return;
    }
    out.push_back(p);
}

}  // namespace latency_detail

// The operators the XNNPACK executor runs for `g` (shapes inferred), in order, each tagged with
// the layer it is timed under. Mirrors XnnExecutor::build through plan_fusion.
inline void lower_for_latency(const Graph& g, const FusionPlan& plan, std::vector<PrimOp>& out) {
    using latency_detail::i32;
    out.clear();
    const std::size_t n = g.layers.size();
    for (std::size_t i = 0; i < n; ++i) {
        if (plan.absorbed_by[i] >= 0) continue;
        const Layer& l = g.layers[i];
        const int idx = static_cast<int>(i);
        const Shape in = l.inputs.empty() ? l.shape : g.layers[static_cast<std::size_t>(l.inputs[0])].shape;
        const Shape os = g.layers[static_cast<std::size_t>(plan.tail[i])].shape;
        PrimOp p;
        p.layer = idx;
        p.ih = i32(in.h);
        p.iw = i32(in.w);
        p.ic = i32(in.c);
        p.oh = i32(os.h);
        p.ow = i32(os.w);
        p.oc = i32(os.c);
        const Activation a = plan.act[i];
        switch (l.op) {
        case OpKind::Input:
        case OpKind::Flatten:
        case OpKind::Dropout: break;
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d:
        case OpKind::FullyConnected:
        case OpKind::BatchNorm: {
            if (l.op == OpKind::FullyConnected) {
                p.kind = PrimKind::FullyConnected;
                p.ic = i32(in.elements());
                p.ih = p.iw = p.oh = p.ow = 1;
                p.oc = i32(l.out_channels);
            } else if (l.op == OpKind::BatchNorm) {
                p.kind = PrimKind::ChannelAffine;
            } else {
                p.kh = l.kernel_h;
                p.kw = l.kernel_w;
                p.sh = l.stride_h;
                p.sw = l.stride_w;
                if (l.op == OpKind::Conv2d) {
                    p.groups = std::max(1, l.groups);
                    p.kind = p.groups == 1 && p.ic == 1 ? PrimKind::ConvNarrow : PrimKind::Conv;
                } else {
                    p.groups = p.ic;
                    p.n = l.multiplier;
                    p.kind = l.multiplier != 1                       ? PrimKind::Conv
                             : std::int64_t{l.kernel_h} * l.kernel_w > 25 ? PrimKind::DepthwiseLarge
                                                                          : PrimKind::Depthwise;
                }
            }
            out.push_back(p);
            const bool clamp_fused =
                a == Activation::Relu || a == Activation::Relu6 || a == Activation::HardSigmoid;
            if (!clamp_fused) latency_detail::push_activation(out, idx, a, os);
            break;
        }
        case OpKind::MaxPool:
        case OpKind::AvgPool:
            p.kh = l.kernel_h;
            p.kw = l.kernel_w;
            p.sh = l.stride_h;
            p.sw = l.stride_w;
            p.kind = (l.kernel_h == 1 && l.kernel_w == 1)
                         ? PrimKind::StridedCopy
                         : (l.op == OpKind::MaxPool ? PrimKind::MaxPool : PrimKind::AvgPool);
            out.push_back(p);
            break;
        case OpKind::GlobalAvgPool:
            p.kind = PrimKind::GlobalAvgPool;
            out.push_back(p);
            break;
        case OpKind::Add: {
            p.kind = PrimKind::Add;
            p.n = static_cast<std::int32_t>(l.inputs.size());
            out.push_back(p);
            if (a != Activation::Relu && a != Activation::Relu6)
                latency_detail::push_activation(out, idx, a, os);
            break;
        }
        case OpKind::Concat: {
            p.kind = PrimKind::Concat;
            p.n = static_cast<std::int32_t>(l.inputs.size());
            std::int64_t cmin = os.c;
            for (int k : l.inputs) cmin = std::min(cmin, g.layers[static_cast<std::size_t>(k)].shape.c);
            p.ic = i32(cmin);
            out.push_back(p);
            break;
        }
        case OpKind::Mul: {
            p.kind = PrimKind::Mul;
            const Shape b = l.inputs.size() > 1 ? g.layers[static_cast<std::size_t>(l.inputs[1])].shape : in;
            p.n = (b.h == 1 && b.w == 1 && (os.h > 1 || os.w > 1)) ? 1 : 0;
            if (p.n == 1) p.kind = PrimKind::MulBroadcast;
            out.push_back(p);
            break;
        }
        case OpKind::Relu:
        case OpKind::Relu6:
        case OpKind::HardSwish:
        case OpKind::HardSigmoid:
        case OpKind::Sigmoid:
            latency_detail::push_activation(out, idx, activation_of_layer(l.op), os);
            break;
        case OpKind::Softmax:
            p.kind = PrimKind::Softmax;
            out.push_back(p);
            break;
        }
    }
}

inline std::vector<PrimOp> lower_for_latency(const Graph& g) {
    std::vector<PrimOp> out;
    lower_for_latency(g, plan_fusion(g), out);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Features
// ---------------------------------------------------------------------------------------------
// Latency is modelled as a sum of costs, linear in the coefficients (roofline-style terms):
// a fixed cost per operator (the intercept), compute terms (MACs as the microkernels tile them:
// output channels rounded up to the 16-wide register tile, output pixels to the 7-row tile),
// per-pixel and per-group overheads (indirection, small channel counts), and memory terms with
// hinges where the working set leaves the L2 and L3 caches. Fitted on relative error, so small
// and large operators count alike. Features are in units of 1e6 (MACs, bytes, elements) so
// that coefficients read as ms per million.

inline constexpr int max_features = 24;

// Where an operator runs. A probe runs alone (in_model = 0): its input was just written, its
// weights were evicted from L2 by a 4 MiB sweep. Inside a whole model (in_model = 1) an
// operator pays a per-operator cost of its own and finds its data as cold as the rest of the
// model makes it: between two runs of the operator, everything else the model touches (its
// footprint, weights and every operator's output, less the operator's own weights, input and
// output) passes through the caches. `cold_l2` rises from 0 to 1 as that grows from 1 to 4 MiB
// (leaving this core's L2), `cold_l3` from 8 to 32 MiB (leaving the shared L3). The context
// terms of op_features let each kind's regressor learn these shifts from operators timed
// inside the calibration models.
struct OpContext {
    double in_model = 0;
    double footprint_bytes = 0;  // the model's weights and outputs
    double large = 0;  // log2(footprint / 2 MiB) / 5 in [0, 1]: the calibration's footprint term
};

// How cold operator p's data is in context `ctx`: {cold_l2, cold_l3}, each in [0, 1].
inline std::pair<double, double> context_cold(const OpContext& ctx, double own_bytes) noexcept {
    const double other = std::max(0.0, ctx.footprint_bytes - own_bytes) / double(1 << 20);
    return {other > 1 ? std::min(1.0, std::log2(other) / 2.0) : 0.0,
            other > 8 ? std::min(1.0, std::log2(other / 8.0) / 2.0) : 0.0};
}

struct OpFeatures {
    int n = 0;
    std::array<double, max_features> x{};
    void add(double v) noexcept {
        if (n < max_features) x[static_cast<std::size_t>(n++)] = v;
    }
};

namespace latency_detail {
inline double round_up(double v, double tile) noexcept { return std::ceil(std::max(v, 1.0) / tile) * tile; }
inline double hinge(double v, double knot) noexcept { return std::max(0.0, v - knot); }
// Bytes as memory terms: the amount, and what lies beyond 1 MiB (L2) and 16 MiB (L3 share).
inline void memory_terms(OpFeatures& f, double bytes) {
    const double mb = bytes / 1e6;
    f.add(mb);
    f.add(hinge(mb, 1.0));
    f.add(hinge(mb, 16.0));
}
}  // namespace latency_detail

// Bytes of weights an operator streams per run (convolutions, depthwise, fully connected).
inline double op_weight_bytes(const PrimOp& p) noexcept {
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow: {
        const double g = std::max(1, p.groups);
        return 4.0 * (double(p.oc) / g) * (double(p.kh) * p.kw * p.ic / g) * g;
    }
    case PrimKind::Depthwise:
    case PrimKind::DepthwiseLarge: return 4.0 * double(p.oc) * p.kh * p.kw;
    case PrimKind::FullyConnected: return 4.0 * double(p.ic) * p.oc;
    default: return 0.0;
    }
}

inline OpFeatures op_features(const PrimOp& p, const OpContext& ctx = {}) {
    using latency_detail::hinge;
    using latency_detail::memory_terms;
    using latency_detail::round_up;
    OpFeatures f;
    const double M = 1e-6;
    const double in_px = double(p.ih) * p.iw, out_px = double(p.oh) * p.ow;
    const double out_el = out_px * p.oc, in_el = in_px * p.ic;
    const double taps = double(p.kh) * p.kw;
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow: {
        const double g = std::max(1, p.groups);
        const double gn = double(p.oc) / g, gk = taps * p.ic / g;
        const double macs = out_px * gn * gk * g;
        const double tiled = round_up(out_px, 7) * round_up(gn, 16) * gk * g;
        const double wbytes = 4.0 * gn * gk * g;
        const bool gemm = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1;
        f.add(M * macs);
        f.add(M * tiled);
        f.add(M * tiled * (wbytes > 1e6 ? 1.0 : 0.0));  // weights streamed from beyond L2
        f.add(M * out_px * g);                           // per pixel and group
        f.add(M * out_px * g * taps * (gemm ? 0.0 : 1.0));  // indirection / im2col
        // IGEMM walks the taps per 7x16 tile: with few input channels (a stem) this dominates.
        f.add(M * round_up(out_px, 7) * round_up(gn, 16) * taps * g * (gemm ? 0.0 : 1.0) / std::max(1.0, gk / taps));
        f.add(M * out_px * g * round_up(gn, 16));        // output tile writes
        f.add(M * macs * (p.n > 1 ? 1.0 : 0.0));         // dwconv with a multiplier
        f.add(M * g);
        memory_terms(f, 4.0 * (in_el + out_el));
        f.add(M * wbytes);
        break;
    }
    case PrimKind::Depthwise:
    case PrimKind::DepthwiseLarge: {
        const double c16 = round_up(p.oc, 16);
        f.add(M * out_el * taps);
        f.add(M * out_px * c16 * taps);
        f.add(M * out_px * taps);
        f.add(M * out_px);
        f.add(M * out_px * c16 * taps * (p.sh > 1 || p.sw > 1 ? 1.0 : 0.0));
        f.add(M * out_px * c16 * taps * (taps > 25 ? 1.0 : 0.0));
        f.add(M * out_px * c16 * taps * (taps != 9 && taps != 25 && taps <= 25 ? 1.0 : 0.0));
        memory_terms(f, 4.0 * (in_el + out_el));
        f.add(M * p.oc * taps);
        break;
    }
    case PrimKind::FullyConnected: {
        const double w = double(p.ic) * p.oc;
        f.add(M * w);
        f.add(M * double(p.ic) * round_up(p.oc, 16));
        f.add(hinge(4 * M * w, 1.0));
        f.add(hinge(4 * M * w, 16.0));
        f.add(M * p.oc);
        f.add(M * p.ic);
        break;
    }
    case PrimKind::MaxPool:
    case PrimKind::AvgPool:
        f.add(M * out_el * taps);
        f.add(M * out_px * round_up(p.oc, 16) * taps);
        f.add(M * out_px * taps);
        f.add(M * out_px);
        memory_terms(f, 4.0 * (in_el + out_el));
        break;
    case PrimKind::GlobalAvgPool:
        f.add(M * in_el);
        f.add(M * p.ic);
        f.add(M * in_px);
        memory_terms(f, 4.0 * in_el);
        break;
    case PrimKind::Add:
        f.add(M * out_el * (p.n - 1));
        f.add(double(p.n - 1));
        memory_terms(f, 4.0 * out_el * (p.n + 1));
        break;
    case PrimKind::Mul:
        f.add(M * out_el);
        memory_terms(f, 12.0 * out_el);
        break;
    case PrimKind::MulBroadcast:
        f.add(M * out_el);
        f.add(M * out_px);                                  // one broadcast row per pixel
        f.add(M * out_px * round_up(p.oc, 16));             // rows in 16-lane vectors
        f.add(M * out_px * (p.oc < 16 ? 1.0 : 0.0));
        f.add(M * out_px * (p.oc % 16 != 0 ? 1.0 : 0.0));   // a remainder loop per row
        memory_terms(f, 8.0 * out_el);
        break;
    case PrimKind::Concat:
        f.add(M * out_el);
        f.add(M * out_px * p.n);        // one row copy per pixel and input
        f.add(double(p.n));
        memory_terms(f, 8.0 * out_el);
        break;
    case PrimKind::Softmax:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, 8.0 * out_el);
        break;
    case PrimKind::StridedCopy:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, 4.0 * (in_el + out_el));
        break;
    case PrimKind::HardSigmoid:
        f.add(M * out_el);
        f.add(1.0);  // two operators
        memory_terms(f, 16.0 * out_el);
        break;
    case PrimKind::ChannelAffine:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, 8.0 * out_el);
        break;
    case PrimKind::Clamp:
    case PrimKind::HardSwish:
    case PrimKind::Sigmoid:
        f.add(M * out_el);
        memory_terms(f, 8.0 * out_el);
        break;
    }
    // Context terms (zero for a probe): a fixed and a proportional shift inside a model, and
    // the cost of finding the weights and activations colder as the model's footprint grows.
    const double work = f.x[0];
    const double wbytes = op_weight_bytes(p), abytes = 4.0 * (in_el + out_el);
    const double wb = M * wbytes, ab = M * abytes;
    const auto [cold_l2, cold_l3] =
        ctx.in_model > 0 ? context_cold(ctx, wbytes + abytes) : std::pair<double, double>{0.0, 0.0};
    f.add(ctx.in_model);
    f.add(ctx.in_model * work);
    f.add(cold_l2);
    f.add(cold_l2 * work);
    f.add(cold_l2 * wb);
    f.add(cold_l2 * ab);
    f.add(cold_l3 * work);
    f.add(cold_l3 * wb);
    return f;
}

// The context of every operator of a model (lowered ops): in a model, with the model's
// footprint deciding how cold its data is: its weights and the executor's activation buffers
// (`activation_bytes`, from plan_buffers: buffers are reused once a value is dead), or, where
// that is unknown (< 0: a calibration model of an older profile), every operator's output.
inline OpContext model_context(const std::vector<PrimOp>& ops, double activation_bytes = -1) {
    double bytes = 0;
    for (const PrimOp& p : ops)
        bytes += op_weight_bytes(p) + (activation_bytes < 0 ? 4.0 * double(p.oh) * p.ow * p.oc : 0.0);
    if (activation_bytes >= 0) bytes += activation_bytes;
    const double mib = bytes / double(1 << 20);
    OpContext c;
    c.in_model = 1;
    c.footprint_bytes = bytes;
    c.large = mib > 2 ? std::clamp(std::log2(mib / 2.0) / 5.0, 0.0, 1.0) : 0.0;
    return c;
}

// Bytes of activation buffers the executor allocates for g (plan_buffers, with reuse).
inline double activation_buffer_bytes(const Graph& g, const FusionPlan& plan) {
    return 4.0 * static_cast<double>(plan_buffers(g, plan).total_floats());
}

// Number of features of a kind (the same for every operator of that kind).
inline int feature_count(PrimKind k) {
    PrimOp p;
    p.kind = k;
    return op_features(p).n;
}

// ---------------------------------------------------------------------------------------------
// Ridge regression
// ---------------------------------------------------------------------------------------------

// y ~ intercept + sum coef_j * (x_j - mean_j) / scale_j, with an L2 penalty `lambda` on coef
// (the intercept is not penalised).
struct RidgeModel {
    double intercept = 0;
    double lambda = 0;
    std::vector<double> mean, scale, coef;

    double predict(const double* x) const noexcept {
        double y = intercept;
        for (std::size_t j = 0; j < coef.size(); ++j) y += coef[j] * (x[j] - mean[j]) / scale[j];
        return y;
    }
};

// Fits ridge regression of y on the rows of X (optionally weighted).
inline RidgeModel fit_ridge(const Eigen::MatrixXd& X, const Eigen::VectorXd& y, double lambda,
                            const Eigen::VectorXd* weights = nullptr) {
    const Eigen::Index n = X.rows(), d = X.cols();
    if (n == 0) throw std::invalid_argument("fit_ridge: no samples");
    if (y.size() != n) throw std::invalid_argument("fit_ridge: X and y disagree in length");
    Eigen::VectorXd w = weights ? *weights : Eigen::VectorXd::Ones(n);
    const double wsum = w.sum();
    RidgeModel m;
    m.lambda = lambda;
    m.mean.assign(static_cast<std::size_t>(d), 0.0);
    m.scale.assign(static_cast<std::size_t>(d), 1.0);
    Eigen::MatrixXd Z(n, d);
    for (Eigen::Index j = 0; j < d; ++j) {
        const double mu = (X.col(j).array() * w.array()).sum() / wsum;
        const double var = ((X.col(j).array() - mu).square() * w.array()).sum() / wsum;
        const double sd = var > 1e-18 ? std::sqrt(var) : 1.0;
        m.mean[static_cast<std::size_t>(j)] = mu;
        m.scale[static_cast<std::size_t>(j)] = sd;
        Z.col(j) = (X.col(j).array() - mu) / sd;
    }
    const double ymu = (y.array() * w.array()).sum() / wsum;
    const Eigen::VectorXd yc = y.array() - ymu;
    const Eigen::MatrixXd Zw = Z.array().colwise() * w.array();
    Eigen::MatrixXd A = Z.transpose() * Zw;
    A.diagonal().array() += lambda * wsum;
    const Eigen::VectorXd b = Zw.transpose() * yc;
    const Eigen::VectorXd beta = A.ldlt().solve(b);
    m.coef.assign(beta.data(), beta.data() + d);
    // Weighted centring makes the intercept the weighted mean of y.
    m.intercept = ymu;
    for (double c : m.coef)
        if (!std::isfinite(c)) throw std::runtime_error("fit_ridge: the fit is not finite");
    return m;
}

// Picks lambda from `grid` by k-fold cross-validation (deterministic folds: sample i goes to fold
// i % k) and refits on everything. `cv_rmse` receives the chosen lambda's CV RMSE.
// With `weights`, residuals and the RMSE are weighted: sqrt(w_i) * (y_i - prediction_i).
inline RidgeModel fit_ridge_cv(const Eigen::MatrixXd& X, const Eigen::VectorXd& y,
                               const std::vector<double>& grid, int folds = 5,
                               double* cv_rmse = nullptr, Eigen::VectorXd* cv_residuals = nullptr,
                               const Eigen::VectorXd* weights = nullptr) {
    const Eigen::VectorXd w = weights ? *weights : Eigen::VectorXd::Ones(X.rows());
    const Eigen::Index n = X.rows();
    double best = std::numeric_limits<double>::infinity(), best_lambda = grid.empty() ? 1e-3 : grid[0];
    Eigen::VectorXd best_res = Eigen::VectorXd::Zero(n);
    if (n >= 2 * folds && grid.size() > 1) {
        for (double lambda : grid) {
            Eigen::VectorXd res(n);
            for (int f = 0; f < folds; ++f) {
                std::vector<Eigen::Index> tr, te;
                for (Eigen::Index i = 0; i < n; ++i) (i % folds == f ? te : tr).push_back(i);
                Eigen::MatrixXd Xt(static_cast<Eigen::Index>(tr.size()), X.cols());
                Eigen::VectorXd yt(static_cast<Eigen::Index>(tr.size()));
                Eigen::VectorXd wt(static_cast<Eigen::Index>(tr.size()));
                for (std::size_t k = 0; k < tr.size(); ++k) {
                    Xt.row(static_cast<Eigen::Index>(k)) = X.row(tr[k]);
                    yt(static_cast<Eigen::Index>(k)) = y(tr[k]);
                    wt(static_cast<Eigen::Index>(k)) = w(tr[k]);
                }
                const RidgeModel m = fit_ridge(Xt, yt, lambda, &wt);
                for (Eigen::Index i : te) {
                    const Eigen::VectorXd row = X.row(i).transpose();
                    res(i) = std::sqrt(w(i)) * (y(i) - m.predict(row.data()));
                }
            }
            const double rmse = std::sqrt(res.squaredNorm() / static_cast<double>(n));
            if (rmse < best) {
                best = rmse;
                best_lambda = lambda;
                best_res = res;
            }
        }
    }
    RidgeModel m = fit_ridge(X, y, best_lambda, &w);
    if (!std::isfinite(best)) {
        for (Eigen::Index i = 0; i < n; ++i) {
            const Eigen::VectorXd row = X.row(i).transpose();
            best_res(i) = std::sqrt(w(i)) * (y(i) - m.predict(row.data()));
        }
        best = std::sqrt(best_res.squaredNorm() / static_cast<double>(std::max<Eigen::Index>(n, 1)));
    }
    if (cv_rmse) *cv_rmse = best;
    if (cv_residuals) *cv_residuals = best_res;
    return m;
}

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

    LatencyModel() {
        for (std::size_t i = 0; i < prim_kind_count; ++i) kinds[i].kind = all_prim_kinds[i];
    }

    const KindModel& kind_model(PrimKind k) const { return kinds[static_cast<std::size_t>(k)]; }
    KindModel& kind_model(PrimKind k) { return kinds[static_cast<std::size_t>(k)]; }

    // Predicted milliseconds of one operator in context `ctx` (a model's: model_context(ops)),
    // before calibration. An operator kind the profile has no samples for predicts a rough
    // bandwidth figure (and `missing` is set).
    double predict_op(const PrimOp& p, const OpContext& ctx = {}, bool* missing = nullptr) const {
        const KindModel& m = kind_model(p.kind);
        if (!m.fitted) {
            if (missing) *missing = true;
            const double bytes = 8.0 * double(p.oh) * p.ow * p.oc;
            return 0.002 + bytes / 10e9 * 1e3;
        }
        return (ctx.in_model > 0 ? m.context_scale : 1.0) * raw_ms(m, p, ctx);
    }

    // The kind model's regression in context `ctx` (no context factor).
    static double raw_ms(const KindModel& m, const PrimOp& p, const OpContext& ctx = {}) {
        const OpFeatures f = op_features(p, ctx);
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
        const FusionPlan plan = plan_fusion(g);
        lower_for_latency(g, plan, r.ops);
        const OpContext ctx = model_context(r.ops, activation_buffer_bytes(g, plan));
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
        const FusionPlan plan = plan_fusion(g);
        lower_for_latency(g, plan, scratch);
        const OpContext ctx = model_context(scratch, activation_buffer_bytes(g, plan));
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
// cross-validated relative errors of the samples listed in `used`.
inline KindModel fit_kind_model(PrimKind kind, const std::vector<LatencySample>& samples,
                                Eigen::VectorXd* cv_residuals = nullptr,
                                std::vector<std::size_t>* used = nullptr) {
    KindModel m;
    m.kind = kind;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < samples.size(); ++i)
        if (samples[i].op.kind == kind && samples[i].ms > 0 && std::isfinite(samples[i].ms) && samples[i].weight > 0)
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
        const OpFeatures f = op_features(s.op, s.ctx);
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
        const OpContext ctx = model_context(s.ops, s.activation_bytes);
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
    // Robust: twice reweighted (Huber on the relative residual, beyond 2.5 MADs), so that a
    // model timed while another process thrashed the caches cannot pull the fit.
    Eigen::VectorXd x = A.colPivHouseholderQr().solve(b);
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
        x = Aw.colPivHouseholderQr().solve(bw);
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
        const OpContext ctx = model_context(c.ops, c.activation_bytes);
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
    std::array<std::vector<double>, prim_kind_count> ratios;
    for (const CalibrationSample& c : models) {
        const OpContext ctx = model_context(c.ops, c.activation_bytes);
        for (std::size_t i = 0; i < c.ops.size() && i < c.op_ms.size(); ++i) {
            const KindModel& k = m.kind_model(c.ops[i].kind);
            if (!k.fitted || !(c.op_ms[i] > 0)) continue;
            const bool alone = i + 1 >= c.op_ms.size() || c.op_ms[i + 1] != -1.0;
            if (!alone) continue;
            const double pred = LatencyModel::raw_ms(k, c.ops[i], ctx);
            if (pred > 0) ratios[static_cast<std::size_t>(c.ops[i].kind)].push_back(std::log(c.op_ms[i] / pred));
        }
    }
    for (std::size_t k = 0; k < prim_kind_count; ++k) {
        KindModel& km = m.kinds[k];
        km.context_samples = static_cast<int>(ratios[k].size());
        km.context_scale = ratios[k].size() >= 5 ? std::clamp(std::exp(median(ratios[k])), 0.25, 4.0) : 1.0;
    }
}

// Fits every kind from the probes `samples` together with the operators timed inside the
// calibration `models` (in their context; a first fit on the probes alone shares the time of
// multi-operator layers), then the context factors and the calibration.
inline LatencyModel fit_latency_model(const std::vector<LatencySample>& samples,
                                      const std::vector<CalibrationSample>& models,
                                      double in_model_weight = 10.0) {
    LatencyModel first;
    for (PrimKind k : all_prim_kinds) first.kind_model(k) = fit_kind_model(k, samples);
    std::vector<LatencySample> all = samples;
    const std::vector<LatencySample> in_model = in_model_samples(first, models, in_model_weight);
    all.insert(all.end(), in_model.begin(), in_model.end());
    LatencyModel m;
    for (PrimKind k : all_prim_kinds) m.kind_model(k) = fit_kind_model(k, all);
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

// ---------------------------------------------------------------------------------------------
// Fingerprint and profile file
// ---------------------------------------------------------------------------------------------

struct DeviceFingerprint {
    std::string cpu_model;
    std::string architecture;
    std::string xnnpack_isa;
    std::string xnnpack_version;
    std::string lamda_version;
    int threads = 1;
    friend bool operator==(const DeviceFingerprint& a, const DeviceFingerprint& b) {
        return a.cpu_model == b.cpu_model && a.architecture == b.architecture &&
               a.xnnpack_isa == b.xnnpack_isa && a.xnnpack_version == b.xnnpack_version &&
               a.lamda_version == b.lamda_version && a.threads == b.threads;
    }
};

inline DeviceFingerprint current_fingerprint(int threads) {
    const DeviceInfo info = describe_device();
    DeviceFingerprint f;
    f.cpu_model = info.cpu_model;
    f.architecture = info.architecture;
    f.xnnpack_isa = info.xnnpack_isa;
    f.xnnpack_version = LAMDA_XNNPACK_VERSION;
    f.lamda_version = version_string;
    f.threads = threads;
    return f;
}

// Empty when the fingerprints agree; otherwise one warning naming every difference.
inline std::string fingerprint_warning(const DeviceFingerprint& profile, const DeviceFingerprint& here) {
    std::string diffs;
    auto cmp = [&diffs](const char* what, const std::string& a, const std::string& b) {
        if (a != b) diffs += std::string("\n  ") + what + ": profile '" + a + "', here '" + b + "'";
    };
    cmp("cpu_model", profile.cpu_model, here.cpu_model);
    cmp("architecture", profile.architecture, here.architecture);
    cmp("xnnpack_isa", profile.xnnpack_isa, here.xnnpack_isa);
    cmp("xnnpack_version", profile.xnnpack_version, here.xnnpack_version);
    cmp("lamda_version", profile.lamda_version, here.lamda_version);
    cmp("threads", std::to_string(profile.threads), std::to_string(here.threads));
    if (diffs.empty()) return {};
    return "warning: the latency profile was measured on a different device or setup; its "
           "predictions may not hold here:" + diffs;
}

inline constexpr std::string_view profile_format_name = "lamda-latency-profile";
inline constexpr int profile_format_version = 2;

struct LatencyProfile {
    DeviceFingerprint fingerprint;
    double budget_s = 0;      // the profiling budget it was made with
    double elapsed_s = 0;     // how long profiling took
    double load_average = -1; // 1-minute load average when profiling started (-1: unknown)
    std::int64_t calibration_seed = -1;  // seed the calibration models were drawn with (-1: none)
    std::vector<LatencySample> samples;
    std::vector<CalibrationSample> calibration;
    LatencyModel model;
};

class ProfileError : public Exception {
public:
    using Exception::Exception;
};

namespace latency_detail {

inline void write_op(JsonWriter& j, const PrimOp& p) {
    j.begin_array()
        .value(std::string_view(prim_kind_name(p.kind)))
        .value(p.ih).value(p.iw).value(p.ic)
        .value(p.oh).value(p.ow).value(p.oc)
        .value(p.kh).value(p.kw).value(p.sh).value(p.sw)
        .value(p.groups).value(p.n)
        .end_array();
}

inline void write_doubles(JsonWriter& j, const std::vector<double>& v) {
    j.begin_array();
    for (double d : v) j.value(d);
    j.end_array();
}

}  // namespace latency_detail

// The profile as JSON text (one line).
inline std::string latency_profile_json(const LatencyProfile& p) {
    using latency_detail::write_doubles;
    using latency_detail::write_op;
    JsonWriter j;
    j.begin_object()
        .field("format", profile_format_name)
        .field("version", profile_format_version)
        .key("fingerprint")
        .begin_object()
        .field("cpu_model", p.fingerprint.cpu_model)
        .field("architecture", p.fingerprint.architecture)
        .field("xnnpack_isa", p.fingerprint.xnnpack_isa)
        .field("xnnpack_version", p.fingerprint.xnnpack_version)
        .field("lamda_version", p.fingerprint.lamda_version)
        .field("threads", p.fingerprint.threads)
        .end_object()
        .field("budget_s", p.budget_s)
        .field("elapsed_s", p.elapsed_s)
        .field("load_average", p.load_average)
        .field("calibration_seed", p.calibration_seed);
    j.key("op_fields").begin_array();
    for (const char* f : {"kind", "ih", "iw", "ic", "oh", "ow", "oc", "kh", "kw", "sh", "sw", "groups", "n"})
        j.value(f);
    j.end_array();
    j.key("samples").begin_array();
    for (const LatencySample& s : p.samples) {
        j.begin_object().key("op");
        write_op(j, s.op);
        j.field("ms", s.ms).end_object();
    }
    j.end_array();
    j.key("calibration_models").begin_array();
    for (const CalibrationSample& c : p.calibration) {
        j.begin_object().field("name", c.name).field("family", c.family).field("ms", c.ms).key("ops").begin_array();
        for (const PrimOp& op : c.ops) write_op(j, op);
        j.end_array().key("op_ms");
        write_doubles(j, c.op_ms);
        if (c.activation_bytes >= 0) j.field("activation_bytes", c.activation_bytes);
        j.end_object();
    }
    j.end_array();
    j.key("model").begin_object().key("kinds").begin_array();
    for (const KindModel& k : p.model.kinds) {
        if (!k.fitted) continue;
        j.begin_object()
            .field("kind", std::string_view(prim_kind_name(k.kind)))
            .field("samples", k.samples)
            .field("cv_rel_rmse", k.cv_rel_rmse)
            .field("floor_ms", k.floor_ms)
            .field("context_scale", k.context_scale)
            .field("context_samples", k.context_samples)
            .field("lambda", k.ridge.lambda)
            .field("intercept", k.ridge.intercept);
        j.key("mean");
        write_doubles(j, k.ridge.mean);
        j.key("scale");
        write_doubles(j, k.ridge.scale);
        j.key("coef");
        write_doubles(j, k.ridge.coef);
        j.end_object();
    }
    j.end_array();
    const Calibration& c = p.model.calibration;
    j.key("calibration")
        .begin_object()
        .key("scale")
        .begin_array()
        .value(c.scale[0]).value(c.scale[1]).value(c.scale[2])
        .end_array()
        .field("footprint_scale", c.footprint_scale)
        .field("per_op_ms", c.per_op_ms)
        .field("constant_ms", c.constant_ms)
        .field("models", c.models)
        .end_object();
    j.end_object().end_object();
    return j.str();
}

inline void write_latency_profile(const std::string& path, const LatencyProfile& p) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << latency_profile_json(p) << '\n';
    if (!out.flush()) throw ProfileError(path + ": error: cannot write the profile");
}

namespace latency_detail {

using simdjson::dom::element;

// detail/json_read.hpp's reader, plus the profile's operator records.
struct Reader : JsonReader<ProfileError> {
    explicit Reader(const std::string& where_) : JsonReader<ProfileError>(where_, "malformed latency profile") {}

    PrimOp op(const element& e, const std::string& path) const {
        const simdjson::dom::array a = arr(e, path);
        if (a.size() != 13) fail(path, "expected 13 fields (kind, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, groups, n)");
        PrimOp p;
        std::size_t i = 0;
        std::array<std::int32_t, 12> v{};
        for (element x : a) {
            const std::string sub = path + "[" + std::to_string(i) + "]";
            if (i == 0) {
                if (!parse_prim_kind(str(x, sub), p.kind)) fail(sub, "unknown operator kind");
            } else {
                v[i - 1] = static_cast<std::int32_t>(integer(x, sub, i == 12 ? 0 : 1, std::int64_t{1} << 30));
            }
            ++i;
        }
        p.ih = v[0]; p.iw = v[1]; p.ic = v[2]; p.oh = v[3]; p.ow = v[4]; p.oc = v[5];
        p.kh = v[6]; p.kw = v[7]; p.sh = v[8]; p.sw = v[9]; p.groups = v[10]; p.n = v[11];
        return p;
    }
};

}  // namespace latency_detail

// Parses profile text. Throws ProfileError naming the field for malformed, truncated or
// wrong-version input.
inline LatencyProfile parse_latency_profile(std::string_view text, const std::string& where = "<profile>") {
    latency_detail::Reader r(where);
    simdjson::dom::parser parser;
    simdjson::padded_string padded(text);
    simdjson::dom::element doc;
    if (const auto err = parser.parse(padded).get(doc))
        throw ProfileError(where + ": error: the latency profile is not valid JSON (" +
                           simdjson::error_message(err) + "); is the file truncated?");
    LatencyProfile p;
    if (!doc.is_object()) r.fail("(top level)", "expected an object");
    const std::string format = r.str(r.at(doc, "format", ""), "format");
    if (format != profile_format_name)
        r.fail("format", "'" + format + "' is not '" + std::string(profile_format_name) + "'");
    const std::int64_t version = r.integer(r.at(doc, "version", ""), "version", 0, 1 << 30);
    if (version != profile_format_version)
        throw ProfileError(where + ": error: latency profile version " + std::to_string(version) +
                           " is not supported (this lamda reads version " +
                           std::to_string(profile_format_version) + "); re-run `lamda profile`");
    const auto fp = r.at(doc, "fingerprint", "");
    p.fingerprint.cpu_model = r.str(r.at(fp, "cpu_model", "fingerprint"), "fingerprint.cpu_model");
    p.fingerprint.architecture = r.str(r.at(fp, "architecture", "fingerprint"), "fingerprint.architecture");
    p.fingerprint.xnnpack_isa = r.str(r.at(fp, "xnnpack_isa", "fingerprint"), "fingerprint.xnnpack_isa");
    p.fingerprint.xnnpack_version = r.str(r.at(fp, "xnnpack_version", "fingerprint"), "fingerprint.xnnpack_version");
    p.fingerprint.lamda_version = r.str(r.at(fp, "lamda_version", "fingerprint"), "fingerprint.lamda_version");
    p.fingerprint.threads = static_cast<int>(r.integer(r.at(fp, "threads", "fingerprint"), "fingerprint.threads", 1, 1024));
    p.budget_s = r.num(r.at(doc, "budget_s", ""), "budget_s");
    p.elapsed_s = r.num(r.at(doc, "elapsed_s", ""), "elapsed_s");
    if (r.has(doc, "load_average")) {
        const auto la = r.at(doc, "load_average", "");
        p.load_average = la.is_null() ? -1 : r.num(la, "load_average");
    }
    if (r.has(doc, "calibration_seed"))
        p.calibration_seed = r.integer(r.at(doc, "calibration_seed", ""), "calibration_seed", -1,
                                       std::numeric_limits<std::int64_t>::max());
    {
        std::size_t i = 0;
        for (auto e : r.arr(r.at(doc, "samples", ""), "samples")) {
            const std::string path = "samples[" + std::to_string(i++) + "]";
            LatencySample s;
            s.op = r.op(r.at(e, "op", path), path + ".op");
            s.ms = r.num(r.at(e, "ms", path), path + ".ms");
            if (s.ms < 0) r.fail(path + ".ms", "negative");
            p.samples.push_back(s);
        }
    }
    {
        std::size_t i = 0;
        for (auto e : r.arr(r.at(doc, "calibration_models", ""), "calibration_models")) {
            const std::string path = "calibration_models[" + std::to_string(i++) + "]";
            CalibrationSample c;
            c.name = r.str(r.at(e, "name", path), path + ".name");
            c.family = r.str(r.at(e, "family", path), path + ".family");
            c.ms = r.num(r.at(e, "ms", path), path + ".ms");
            std::size_t k = 0;
            for (auto o : r.arr(r.at(e, "ops", path), path + ".ops"))
                c.ops.push_back(r.op(o, path + ".ops[" + std::to_string(k++) + "]"));
            c.op_ms = r.doubles(r.at(e, "op_ms", path), path + ".op_ms");
            if (c.op_ms.size() != c.ops.size()) r.fail(path + ".op_ms", "expected one value per operator");
            if (auto a = r.maybe(e, "activation_bytes", path)) {
                c.activation_bytes = r.num(*a, path + ".activation_bytes");
                if (!(c.activation_bytes >= 0)) r.fail(path + ".activation_bytes", "negative");
            }
            p.calibration.push_back(std::move(c));
        }
    }
    const auto model = r.at(doc, "model", "");
    {
        std::size_t i = 0;
        for (auto e : r.arr(r.at(model, "kinds", "model"), "model.kinds")) {
            const std::string path = "model.kinds[" + std::to_string(i++) + "]";
            PrimKind kind;
            const std::string name = r.str(r.at(e, "kind", path), path + ".kind");
            if (!parse_prim_kind(name, kind)) r.fail(path + ".kind", "unknown operator kind '" + name + "'");
            KindModel& k = p.model.kind_model(kind);
            k.kind = kind;
            k.samples = static_cast<int>(r.integer(r.at(e, "samples", path), path + ".samples", 0, 1 << 30));
            k.cv_rel_rmse = r.num(r.at(e, "cv_rel_rmse", path), path + ".cv_rel_rmse");
            k.floor_ms = r.num(r.at(e, "floor_ms", path), path + ".floor_ms");
            k.context_scale = r.num(r.at(e, "context_scale", path), path + ".context_scale");
            if (!(k.context_scale > 0)) r.fail(path + ".context_scale", "must be positive");
            k.context_samples = static_cast<int>(r.integer(r.at(e, "context_samples", path), path + ".context_samples", 0, 1 << 30));
            k.ridge.lambda = r.num(r.at(e, "lambda", path), path + ".lambda");
            k.ridge.intercept = r.num(r.at(e, "intercept", path), path + ".intercept");
            k.ridge.mean = r.doubles(r.at(e, "mean", path), path + ".mean");
            k.ridge.scale = r.doubles(r.at(e, "scale", path), path + ".scale");
            k.ridge.coef = r.doubles(r.at(e, "coef", path), path + ".coef");
            const auto d = static_cast<std::size_t>(feature_count(kind));
            if (k.ridge.coef.size() != d || k.ridge.mean.size() != d || k.ridge.scale.size() != d)
                r.fail(path, "expected " + std::to_string(d) + " coefficients, means and scales for '" + name + "'");
            for (double s : k.ridge.scale)
                if (!(s > 0)) r.fail(path + ".scale", "scales must be positive");
            k.fitted = true;
        }
    }
    {
        const auto c = r.at(model, "calibration", "model");
        const auto sc = r.doubles(r.at(c, "scale", "model.calibration"), "model.calibration.scale");
        if (sc.size() != 3) r.fail("model.calibration.scale", "expected 3 values");
        for (std::size_t g = 0; g < 3; ++g) p.model.calibration.scale[g] = sc[g];
        p.model.calibration.footprint_scale = r.num(r.at(c, "footprint_scale", "model.calibration"), "model.calibration.footprint_scale");
        p.model.calibration.per_op_ms = r.num(r.at(c, "per_op_ms", "model.calibration"), "model.calibration.per_op_ms");
        p.model.calibration.constant_ms = r.num(r.at(c, "constant_ms", "model.calibration"), "model.calibration.constant_ms");
        p.model.calibration.models = static_cast<int>(r.integer(r.at(c, "models", "model.calibration"), "model.calibration.models", 0, 1 << 30));
    }
    return p;
}

inline LatencyProfile read_latency_profile(const std::string& path) {
    std::string text;  // at most 256 MiB + 1 bytes are read, whatever the file (/dev/zero)
    switch (detail::read_file_bounded(path, std::size_t{256} << 20, text)) {
    case detail::ReadStatus::ok: break;
    case detail::ReadStatus::cannot_open: throw ProfileError(path + ": error: cannot open the latency profile");
    case detail::ReadStatus::read_error: throw ProfileError(path + ": error: cannot read the latency profile");
    case detail::ReadStatus::too_large: throw ProfileError(path + ": error: the latency profile is larger than 256 MiB");
    }
    return parse_latency_profile(text, path);
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_MODEL_HPP
