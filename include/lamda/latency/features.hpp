// lamda/latency/features.hpp: what the latency model knows of an operator. The graph's operator
// plan (exec/plan.hpp, the one lowering the XNNPACK executor runs) becomes PrimOps, one per
// planned operator with its cost family (PrimKind) and sizes; op_features turns one into the
// regressors' feature vector, in the context (cache state) of the model it runs in.
//
//   std::vector<lamda::PrimOp> ops = lamda::lower_for_latency(graph);
//   lamda::OpFeatures f = lamda::op_features(ops[0], lamda::model_context(ops));
//
// Part of the latency model (LAMDA_WITH_LATENCY); needs nothing but the standard library itself.
#ifndef LAMDA_LATENCY_FEATURES_HPP
#define LAMDA_LATENCY_FEATURES_HPP

#include "../exec/plan.hpp"
#include "../exec/pw_avx512.hpp"
#include "../exec/wino_avx512.hpp"

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/features.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/ir.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Operators as the latency model sees them: one unit of prediction per planned operator
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

// The arithmetic a model is timed and predicted in: fp32, or int8 as the XNNPACK executor runs
// it (XnnOptions::int8: qs8 values, layers without an int8 kernel in float between converts).
enum class LatencyPrecision : std::uint8_t { Fp32, Int8 };

inline constexpr std::string_view precision_name(LatencyPrecision p) noexcept {
    return p == LatencyPrecision::Int8 ? "int8" : "fp32";
}

inline bool parse_precision(std::string_view s, LatencyPrecision& out) noexcept {
    if (s == "fp32") out = LatencyPrecision::Fp32;
    else if (s == "int8") out = LatencyPrecision::Int8;
    else return false;
    return true;
}

// Whether the int8 executor runs kind k on int8 values (exec/xnnpack.hpp's build_op_int8). The
// others (avgpool, concat, softmax, hardswish, standalone hardsigmoid: no qs8 operator in this
// XNNPACK) run in float between convert operators, which their layer's time includes: in an int8
// profile their regressors learn the float operator and its converts together.
inline constexpr bool runs_int8(PrimKind k) noexcept {
    switch (k) {
    case PrimKind::AvgPool:
    case PrimKind::Concat:
    case PrimKind::Softmax:
    case PrimKind::HardSwish:
    case PrimKind::HardSigmoid: return false;
    default: return true;
    }
}

// The version of the int8 convolution features (op_features): a profile's int8 model fitted on an
// older one is not used (re-run `lamda profile --precision both`). 2: the int8 tile, input
// channels padded to 8 per tap. 3: pointwise convolutions on lamda's VNNI kernel counted apart.
inline constexpr int int8_conv_features_version = 3;

// Bytes per value (activations and weights) of kind k's operator in precision `prec`: the
// memory features and the footprint count these.
inline constexpr double element_bytes(PrimKind k, LatencyPrecision prec) noexcept {
    return prec == LatencyPrecision::Int8 && runs_int8(k) ? 1.0 : 4.0;
}

// One operator (or, for add/concat, one layer's group of operators) as the executor runs it.
// Field meaning per kind:
//   conv/depthwise/pools: input ih x iw x ic, output oh x ow x oc, kernel, stride, groups
//     (depthwise: groups = ic, n = multiplier); conv/depthwise: dilation dh x dw
//   fc: ic = input elements, oc = outputs
//   add/concat: n = number of inputs; concat: ic = smallest input's channels
//   mul: n = 1 when the second operand is broadcast (1x1xC)
//   elementwise kinds: output shape oh x ow x oc
struct PrimOp {
    PrimKind kind = PrimKind::Clamp;
    int layer = -1;  // the graph layer it is timed under
    std::int32_t ih = 1, iw = 1, ic = 1, oh = 1, ow = 1, oc = 1;
    std::int32_t kh = 1, kw = 1, sh = 1, sw = 1, groups = 1, n = 1;
    // Not in the features (a dilated filter does the same MACs through XNNPACK's indirection),
    // but it decides which kernel runs: lamda's Winograd kernel takes no dilation.
    std::int32_t dh = 1, dw = 1;
};

namespace latency_detail {

inline std::int32_t i32(std::int64_t v) noexcept {
    return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 1, std::int64_t{1} << 30));
}

}  // namespace latency_detail

// Planned operator `op` of `g` (exec/plan.hpp) as a unit of prediction: its cost family and the
// sizes its features read. Not for Alias (no operator).
inline PrimOp prim_op(const Graph& g, const PlannedOp& op) {
    using latency_detail::i32;
    const Layer& l = g.layers[static_cast<std::size_t>(op.layer)];
    const Shape in = op.inputs.empty() ? l.shape : g.layers[static_cast<std::size_t>(op.inputs[0])].shape;
    const Shape os = g.layers[static_cast<std::size_t>(op.output)].shape;
    PrimOp p;
    p.layer = op.layer;
    p.ih = i32(in.h);
    p.iw = i32(in.w);
    p.ic = i32(in.c);
    p.oh = i32(os.h);
    p.ow = i32(os.w);
    p.oc = i32(os.c);
    switch (op.kind) {
    case PlannedKind::Alias: break;
    case PlannedKind::FullyConnected:
        p.kind = PrimKind::FullyConnected;
        p.ic = i32(in.elements());
        p.ih = p.iw = p.oh = p.ow = 1;
        p.oc = i32(l.out_channels);
        break;
    case PlannedKind::ChannelAffine: p.kind = PrimKind::ChannelAffine; break;
    case PlannedKind::Conv:
    case PlannedKind::DepthwiseConv:
        p.kh = l.kernel_h;
        p.kw = l.kernel_w;
        p.sh = l.stride_h;
        p.sw = l.stride_w;
        p.dh = i32(l.dilation_h);
        p.dw = i32(l.dilation_w);
        if (op.kind == PlannedKind::Conv) {
            p.groups = std::max(1, l.groups);
            p.kind = p.groups == 1 && p.ic == 1 ? PrimKind::ConvNarrow : PrimKind::Conv;
        } else {
            p.groups = p.ic;
            p.n = l.multiplier;
            p.kind = l.multiplier != 1                              ? PrimKind::Conv
                     : std::int64_t{l.kernel_h} * l.kernel_w > 25 ? PrimKind::DepthwiseLarge
                                                                  : PrimKind::Depthwise;
        }
        break;
    case PlannedKind::MaxPool:
    case PlannedKind::AvgPool:
    case PlannedKind::StridedCopy:
        p.kh = l.kernel_h;
        p.kw = l.kernel_w;
        p.sh = l.stride_h;
        p.sw = l.stride_w;
        p.kind = op.kind == PlannedKind::StridedCopy ? PrimKind::StridedCopy
                 : op.kind == PlannedKind::MaxPool   ? PrimKind::MaxPool
                                                     : PrimKind::AvgPool;
        break;
    case PlannedKind::GlobalAvgPool: p.kind = PrimKind::GlobalAvgPool; break;
    case PlannedKind::Add:
        p.kind = PrimKind::Add;
        p.n = static_cast<std::int32_t>(op.inputs.size());
        break;
    case PlannedKind::Concat: {
        p.kind = PrimKind::Concat;
        p.n = static_cast<std::int32_t>(op.inputs.size());
        std::int64_t cmin = os.c;
        for (int k : op.inputs) cmin = std::min(cmin, g.layers[static_cast<std::size_t>(k)].shape.c);
        p.ic = i32(cmin);
        break;
    }
    case PlannedKind::Mul: {
        const Shape b = op.inputs.size() > 1 ? g.layers[static_cast<std::size_t>(op.inputs[1])].shape : in;
        p.n = (b.h == 1 && b.w == 1 && (os.h > 1 || os.w > 1)) ? 1 : 0;
        p.kind = p.n == 1 ? PrimKind::MulBroadcast : PrimKind::Mul;
        break;
    }
    case PlannedKind::Softmax: p.kind = PrimKind::Softmax; break;
    case PlannedKind::Clamp:
    case PlannedKind::HardSwish:
    case PlannedKind::Sigmoid:
    case PlannedKind::HardSigmoid:
        // Elementwise on the value it writes.
        p.ih = p.oh;
        p.iw = p.ow;
        p.ic = p.oc;
        p.kind = op.kind == PlannedKind::Clamp       ? PrimKind::Clamp
                 : op.kind == PlannedKind::HardSwish ? PrimKind::HardSwish
                 : op.kind == PlannedKind::Sigmoid   ? PrimKind::Sigmoid
                                                     : PrimKind::HardSigmoid;
        break;
    }
    return p;
}

// The operators the XNNPACK executor runs for `g` (shapes inferred): `plan`'s operators
// (plan_ops, exec/plan.hpp: the executor runs the same plan), each tagged with its layer.
inline void lower_for_latency(const Graph& g, const OpPlan& plan, std::vector<PrimOp>& out) {
    out.clear();
    for (const PlannedOp& op : plan.ops)
        if (op.kind != PlannedKind::Alias) out.push_back(prim_op(g, op));
}

inline std::vector<PrimOp> lower_for_latency(const Graph& g) {
    std::vector<PrimOp> out;
    lower_for_latency(g, plan_ops(g), out);
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

// Bytes of weights an operator streams per run (convolutions, depthwise, fully connected), in
// precision `prec` (int8 weights are a byte each).
inline double op_weight_bytes(const PrimOp& p, LatencyPrecision prec = LatencyPrecision::Fp32) noexcept {
    const double eb = element_bytes(p.kind, prec);
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow: {
        const double g = std::max(1, p.groups);
        return eb * (double(p.oc) / g) * (double(p.kh) * p.kw * p.ic / g) * g;
    }
    case PrimKind::Depthwise:
    case PrimKind::DepthwiseLarge: return eb * double(p.oc) * p.kh * p.kw;
    case PrimKind::FullyConnected: return eb * double(p.ic) * p.oc;
    default: return 0.0;
    }
}

// Whether the executor runs conv p on lamda's own pointwise kernel on a device where it does
// (`own_pointwise`, the profile's for that precision): in int8 the VNNI kernel
// (exec/qc8_vnni.hpp: 1x1, stride 1, one group; not counted for one input channel, as the int8
// features version 3 has it), in fp32 the AVX-512 one (pw_avx512::takes, any input channels).
inline bool runs_on_own_pointwise(const PrimOp& p, LatencyPrecision prec, bool own_pointwise) noexcept {
    if (!own_pointwise || p.n > 1) return false;
    if (prec == LatencyPrecision::Fp32) {
        // At stride 1, a 1x1 filter keeps the map's size unless it is padded.
        const bool padded = p.oh != p.ih || p.ow != p.iw;
        return (p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow) &&
               pw_avx512::takes(p.kh, p.kw, p.sh, p.sw, padded, std::max(1, p.groups), p.oc);
    }
    return p.kind == PrimKind::Conv && p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.groups <= 1;
}

// Whether the executor runs conv p on lamda's Winograd kernel on a device where it does
// (`own_winograd`, the profile's; fp32 only): wino_avx512::takes (no dilation: a dilated 3x3
// conv runs on XNNPACK's).
inline bool runs_on_own_winograd(const PrimOp& p, LatencyPrecision prec, bool own_winograd) noexcept {
    return own_winograd && prec == LatencyPrecision::Fp32 && p.n <= 1 &&
           (p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow) &&
           wino_avx512::takes(p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, std::max(1, p.groups), p.ic, p.oc);
}

// Which of lamda's own kernels a profile's device ran its convolutions on (in the profile's
// precision): its fingerprint says (profile_file.hpp: ran_own_kernels), op_features counts
// their work apart.
struct OwnKernels {
    bool pointwise = false;  // int8: exec/qc8_vnni.hpp; fp32: exec/pw_avx512.hpp
    bool winograd = false;   // fp32: exec/wino_avx512.hpp
    bool operator==(const OwnKernels& o) const noexcept { return pointwise == o.pointwise && winograd == o.winograd; }
};

// Operator p's features in context `ctx`, its bytes counted for precision `prec` (the same
// features, the same count, in either precision: an int8 profile fits its own coefficients).
// `own`: which convolutions in `prec` run on lamda's own kernels on the device.
inline OpFeatures op_features(const PrimOp& p, const OpContext& ctx = {},
                              LatencyPrecision prec = LatencyPrecision::Fp32, OwnKernels own_kernels = {}) {
    using latency_detail::hinge;
    using latency_detail::memory_terms;
    using latency_detail::round_up;
    OpFeatures f;
    const double M = 1e-6;
    const double in_px = double(p.ih) * p.iw, out_px = double(p.oh) * p.ow;
    const double out_el = out_px * p.oc, in_el = in_px * p.ic;
    const double taps = double(p.kh) * p.kw;
    const double eb = element_bytes(p.kind, prec);  // bytes per value: 4, or 1 in int8
    double own_feature = 0;        // conv: lamda's own kernels' GEMM work (0 on XNNPACK's)
    double transform_feature = 0;  // conv: the Winograd kernel's transformed values (0 elsewhere)
    switch (p.kind) {
    case PrimKind::Conv:
    case PrimKind::ConvNarrow: {
        const double g = std::max(1, p.groups);
        const double gn = double(p.oc) / g, gk = taps * p.ic / g;
        const double macs = out_px * gn * gk * g;
        // The GEMM tile XNNPACK's microkernels compute: fp32 7x16 (x86 AVX-512/FMA3), int8 4x16 with
        // each tap's input channels padded to 8 (the "c8" kernels' packing), so an int8 stem of 3
        // channels does 8/3 times its MACs (int8_conv_features_version).
        // On lamda's own pointwise kernels the work is their own tile, with its own coefficient
        // (the last feature) instead of the MAC and tile terms of XNNPACK's kernels: in int8
        // (int8_conv_features_version 3) the VNNI tile, 6 to 16 pixels x 16 channels x 4 inputs
        // per vpdpbusd, about 4x XNNPACK's rate; in fp32 16-channel registers by every input
        // (0.8x XNNPACK's time; a profile from before that kernel has a zero coefficient there).
        // A 3x3 conv on the Winograd kernel counts its 16 GEMMs there too: they run on that tile.
        const bool int8 = prec == LatencyPrecision::Int8;
        const bool own_pw = runs_on_own_pointwise(p, prec, own_kernels.pointwise);
        const bool own_wino = !own_pw && runs_on_own_winograd(p, prec, own_kernels.winograd);
        const bool own = own_pw || own_wino;
        const double own_work = own_wino ? wino_avx512::gemm_work(p.oh, p.ow, p.ic, p.oc)
                                : !own   ? 0.0
                                : int8   ? round_up(out_px, 6) * round_up(gn, 16) * round_up(gk, 4)
                                         : out_px * round_up(gn, 16) * gk;
        const double tiled = int8 ? round_up(out_px, 4) * round_up(gn, 16) * taps * round_up(gk / taps, 8) * g
                                  : round_up(out_px, 7) * round_up(gn, 16) * gk * g;
        // The Winograd kernel streams its 4x4 transformed filters: 16/9 of the 3x3 ones.
        const double wbytes = own_wino ? eb * wino_avx512::kPoints * gn * p.ic : eb * gn * gk * g;
        const bool gemm = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1;
        f.add(M * macs * (own ? 0.0 : 1.0));
        f.add(M * tiled * (own ? 0.0 : 1.0));
        f.add(M * (own ? own_work : tiled) * (wbytes > 1e6 ? 1.0 : 0.0));  // weights streamed from beyond L2
        f.add(M * out_px * g);                           // per pixel and group
        f.add(M * out_px * g * taps * (gemm || own ? 0.0 : 1.0));  // indirection / im2col
        // IGEMM walks the taps per 7x16 tile: with few input channels (a stem) this dominates.
        f.add(M * round_up(out_px, int8 ? 4 : 7) * round_up(gn, 16) * taps * g * (gemm || own ? 0.0 : 1.0) /
              std::max(1.0, gk / taps));
        f.add(M * out_px * g * round_up(gn, 16));        // output tile writes
        f.add(M * macs * (p.n > 1 ? 1.0 : 0.0));         // dwconv with a multiplier
        f.add(M * g);
        memory_terms(f, eb * (in_el + out_el));
        f.add(M * wbytes);
        own_feature = M * own_work;  // added last (below)
        // The Winograd kernel's transforms: 16 values per tile for every input and every output
        // channel (16-lane registers), written then read back through L2. Apart from the GEMMs:
        // with few channels they are a third of its time, with hundreds a few percent.
        if (own_wino)
            transform_feature = M * wino_avx512::kPoints * double(wino_avx512::tiles(p.oh, p.ow)) *
                                (round_up(p.ic, 16) + round_up(p.oc, 16));
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
        memory_terms(f, eb * (in_el + out_el));
        f.add(M * p.oc * taps);
        break;
    }
    case PrimKind::FullyConnected: {
        const double w = double(p.ic) * p.oc;
        f.add(M * w);
        f.add(M * double(p.ic) * round_up(p.oc, 16));
        f.add(hinge(eb * M * w, 1.0));
        f.add(hinge(eb * M * w, 16.0));
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
        memory_terms(f, eb * (in_el + out_el));
        break;
    case PrimKind::GlobalAvgPool:
        f.add(M * in_el);
        f.add(M * p.ic);
        f.add(M * in_px);
        memory_terms(f, eb * in_el);
        break;
    case PrimKind::Add:
        f.add(M * out_el * (p.n - 1));
        f.add(double(p.n - 1));
        memory_terms(f, eb * out_el * (p.n + 1));
        break;
    case PrimKind::Mul:
        f.add(M * out_el);
        memory_terms(f, 3.0 * eb * out_el);
        break;
    case PrimKind::MulBroadcast:
        f.add(M * out_el);
        f.add(M * out_px);                                  // one broadcast row per pixel
        f.add(M * out_px * round_up(p.oc, 16));             // rows in 16-lane vectors
        f.add(M * out_px * (p.oc < 16 ? 1.0 : 0.0));
        f.add(M * out_px * (p.oc % 16 != 0 ? 1.0 : 0.0));   // a remainder loop per row
        memory_terms(f, 2.0 * eb * out_el);
        break;
    case PrimKind::Concat:
        f.add(M * out_el);
        f.add(M * out_px * p.n);        // one row copy per pixel and input
        f.add(double(p.n));
        memory_terms(f, 2.0 * eb * out_el);
        break;
    case PrimKind::Softmax:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, 2.0 * eb * out_el);
        break;
    case PrimKind::StridedCopy:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, eb * (in_el + out_el));
        break;
    case PrimKind::HardSigmoid:
        f.add(M * out_el);
        f.add(1.0);  // two operators
        memory_terms(f, 4.0 * eb * out_el);
        break;
    case PrimKind::ChannelAffine:
        f.add(M * out_el);
        f.add(M * out_px);
        memory_terms(f, 2.0 * eb * out_el);
        break;
    case PrimKind::Clamp:
    case PrimKind::HardSwish:
    case PrimKind::Sigmoid:
        f.add(M * out_el);
        memory_terms(f, 2.0 * eb * out_el);
        break;
    }
    // Context terms (zero for a probe): a fixed and a proportional shift inside a model, and
    // the cost of finding the weights and activations colder as the model's footprint grows.
    const double work = f.x[0] + own_feature;  // a conv's MACs are 0 on lamda's own kernels
    const double wbytes = op_weight_bytes(p, prec), abytes = eb * (in_el + out_el);
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
    // Last, so that a profile from before them reads with a zero coefficient there
    // (feature_count_before_vnni, feature_count_before_winograd).
    if (p.kind == PrimKind::Conv || p.kind == PrimKind::ConvNarrow) {
        f.add(own_feature);
        f.add(transform_feature);
    }
    return f;
}

// The context of every operator of a model (lowered ops): in a model, with the model's
// footprint deciding how cold its data is: its weights and the executor's activation buffers
// (`activation_bytes`, from plan_buffers: buffers are reused once a value is dead), or, where
// that is unknown (< 0: a calibration model of an older profile), every operator's output.
inline OpContext model_context(const std::vector<PrimOp>& ops, double activation_bytes = -1,
                               LatencyPrecision prec = LatencyPrecision::Fp32) {
    double bytes = 0;
    for (const PrimOp& p : ops)
        bytes += op_weight_bytes(p, prec) +
                 (activation_bytes < 0 ? element_bytes(p.kind, prec) * double(p.oh) * p.ow * p.oc : 0.0);
    if (activation_bytes >= 0) bytes += activation_bytes;
    const double mib = bytes / double(1 << 20);
    OpContext c;
    c.in_model = 1;
    c.footprint_bytes = bytes;
    c.large = mib > 2 ? std::clamp(std::log2(mib / 2.0) / 5.0, 0.0, 1.0) : 0.0;
    return c;
}

// Bytes of activation buffers the executor allocates for g (plan_buffers, with reuse): of a
// plan made by plan_ops(g) with its defaults, or from the fusion plan. In int8 the same buffers
// hold a byte per value.
inline double activation_buffer_bytes(const OpPlan& plan, LatencyPrecision prec = LatencyPrecision::Fp32) {
    return (prec == LatencyPrecision::Int8 ? 1.0 : 4.0) * static_cast<double>(plan.buffers.total_floats());
}
inline double activation_buffer_bytes(const Graph& g, const FusionPlan& plan) {
    return 4.0 * static_cast<double>(plan_buffers(g, plan).total_floats());
}

// Number of features of a kind (the same for every operator of that kind).
inline int feature_count(PrimKind k) {
    PrimOp p;
    p.kind = k;
    return op_features(p).n;
}

// Features a kind had in profiles made before the own-kernel features, the convolutions' last
// two (the own kernels' GEMM work, 0 in fp32 until lamda's fp32 pointwise kernel; the Winograd
// kernel's transforms): such a profile's model is read with zero coefficients there, where its
// device ran none of that work.
inline int feature_count_before_vnni(PrimKind k) {
    return feature_count(k) - (k == PrimKind::Conv || k == PrimKind::ConvNarrow ? 2 : 0);
}
inline int feature_count_before_winograd(PrimKind k) {
    return feature_count(k) - (k == PrimKind::Conv || k == PrimKind::ConvNarrow ? 1 : 0);
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_FEATURES_HPP
