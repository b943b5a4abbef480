// lamda/deploy/firmware.hpp: a lamda model as dependency-free C99 for microcontrollers (docs/firmware.md).
//
//   lamda::FirmwareSource fw = lamda::firmware_source(graph, weights);  // model.h + model.c
//   std::int64_t arena = lamda::firmware_arena_bytes(graph);            // the same plan, for search
//
// Contract of the generated code (float32 path; int8 kernels are to be added beside the f32 ones,
// named lm_s8_*, with per-layer quantization constants emitted next to the weights):
//   - model.h declares `int model_run(const float* input, float* output, void* arena)` and the macros
//     MODEL_ARENA_BYTES, MODEL_INPUT_OFFSET, MODEL_INPUT(arena) (where the input lives in the arena:
//     written there, it is not copied), MODEL_INPUT_H/W/C, MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE (values);
//     it is usable from C and C++ (extern "C").
//   - model.c includes only <stdint.h>, <string.h>, <math.h> and model.h; no heap, no static mutable
//     state (reentrant: every byte of scratch is in the caller's arena, at least MODEL_ARENA_BYTES,
//     aligned to 4 bytes, 16 recommended), no static initialisers that run code, no exceptions.
//     Weights are `static const float` arrays (flash), with zeros, negative zeros and subnormals
//     flushed to +0. It compiles cleanly with `cc -std=c99 -Wall -Wextra -Werror` and as C++.
//   - Semantics are the reference executor's (exec/reference.hpp): NHWC, the graph's resolved pads,
//     ceil-mode pools, avgpool dividing by the in-bounds count, the same activation formulas, and
//     double-precision accumulation by default (bit-compatible summation order for conv2d, dwconv
//     and fc). Defining MODEL_FAST_FLOAT accumulates in float and uses expf (faster on an FPU
//     without doubles; results then differ from the reference by float rounding).
//   - Batch norm is folded into its producer first (exec/fold.hpp); one that cannot fold runs as a
//     per-channel scale and shift.
// The arena plan is core/arena_plan.hpp's (the search's memory constraint counts the same bytes):
// buffers alive from producer to last reader, elementwise ops in place, the input inside the arena
// (MODEL_INPUT_OFFSET), the last layer writing straight into the caller's output, TFLite Micro's
// greedy placement.
// firmware_plan and firmware_arena_bytes never throw (but bad_alloc); firmware_source throws
// ExportError (or ExecutorError for a graph or weights the reference executor would refuse).
#ifndef LAMDA_DEPLOY_FIRMWARE_HPP
#define LAMDA_DEPLOY_FIRMWARE_HPP

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/arena_plan.hpp"
#include "../core/ir.hpp"
#include "../data/weights.hpp"
#include "../exception.hpp"
#include "../exec/fold.hpp"
#include "../exec/reference.hpp"
#include "../exec/reference_int8.hpp"
#include "../core/quant.hpp"
#include "export.hpp"

namespace lamda {

// The firmware's arena plan is core/arena_plan.hpp's (the search's memory constraint uses the same).
using FirmwarePlan = ArenaPlan;

// The liveness plan of the generated float code. Never throws but bad_alloc.
inline FirmwarePlan firmware_plan(const Graph& graph, std::int64_t bytes_per_value = 4) {
    return arena_plan(graph, bytes_per_value);
}

// Bytes of the arena the firmware export allocates for `graph` (shapes inferred, batch norm as it
// will run: the export folds it first, which never makes the arena larger); -1 when the graph cannot
// be planned. Never throws but bad_alloc.
inline std::int64_t firmware_arena_bytes(const Graph& graph, std::int64_t bytes_per_value = 4) {
    return arena_bytes(graph, bytes_per_value);
}

// The generated model and what export reports.
struct FirmwareSource {
    std::string header;   // model.h
    std::string source;   // model.c
    std::int64_t weight_bytes = 0;         // const float arrays
    std::int64_t code_bytes_estimate = 0;  // kernels used + one call per layer (Cortex-M4 -O2, rough)
    std::int64_t flash_bytes = 0;          // weight_bytes + code_bytes_estimate
    std::int64_t arena_bytes = 0;          // MODEL_ARENA_BYTES
    std::int64_t input_offset = 0;         // MODEL_INPUT_OFFSET: the input lives in the arena
    std::int64_t input_bytes = 0;          // inside arena_bytes
    std::int64_t output_bytes = 0;         // the caller's output buffer (RAM = arena + output)
    std::int64_t tflm_arena_bytes = 0;     // tflm_greedy_arena_bytes(graph, false): same rules as lamda's
    std::int64_t tflm_arena_io_bytes = 0;  // tflm_greedy_arena_bytes(graph): the output inside too
    std::int64_t macs = 0;
    std::int64_t params = 0;
    std::int64_t flushed_weights = 0;      // subnormal weights written as 0
    int layers = 0, in_place = 0;
};

namespace firmware_detail {

// Portable float32 kernels. Dimensions are int (bounded by the DSL's limits), indices size_t.
inline constexpr const char* kernels_f32 = R"C(
#ifdef MODEL_FAST_FLOAT
typedef float lm_acc;
#define LM_EXP expf
#else
typedef double lm_acc;
#define LM_EXP exp
#endif
)C";

inline constexpr const char* k_act_fn = R"C(
/* Activations as exec/reference.hpp defines them: 0 none, 1 relu, 2 relu6, 3 hardswish,
   4 hardsigmoid, 5 sigmoid. */
static float lm_act(float v, int act) {
    float t;
    switch (act) {
    case 1: return v > 0.0f ? v : 0.0f;
    case 2: t = v < 0.0f ? 0.0f : v; return 6.0f < t ? 6.0f : t;
    case 3: t = v + 3.0f; t = t < 0.0f ? 0.0f : t; t = 6.0f < t ? 6.0f : t; return v * t / 6.0f;
    case 4: t = v + 3.0f; t = t < 0.0f ? 0.0f : t; t = 6.0f < t ? 6.0f : t; return t / 6.0f;
    case 5: return (float)((lm_acc)1 / ((lm_acc)1 + LM_EXP(-(lm_acc)v)));
    default: return v;
    }
}
)C";

inline constexpr const char* k_conv2d = R"C(
/* conv2d, weights [oc][kh][kw][ic/groups]; also dwconv: groups = ic, oc = ic * multiplier, so
   output channel o reads input channel o / multiplier, weights [oc][kh][kw] (the same order) */
static void lm_f32_conv2d(const float* x, int ih, int iw, int ic, float* y, int oh, int ow, int oc,
                          const float* w, const float* b, int kh, int kw, int sh, int sw, int dh,
                          int dw, int pt, int pl, int groups, int act) {
    const int cig = ic / groups, cog = oc / groups;
    int oy, ox, o, ky, kx, c;
    for (oy = 0; oy < oh; ++oy)
        for (ox = 0; ox < ow; ++ox)
            for (o = 0; o < oc; ++o) {
                const int g = o / cog;
                const float* wo = w + (size_t)o * (size_t)(kh * kw) * (size_t)cig;
                lm_acc acc = b ? (lm_acc)b[o] : (lm_acc)0;
                for (ky = 0; ky < kh; ++ky) {
                    const int iy = oy * sh - pt + ky * dh;
                    if (iy < 0 || iy >= ih) continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int ix = ox * sw - pl + kx * dw;
                        const float* xp;
                        const float* wp;
                        if (ix < 0 || ix >= iw) continue;
                        xp = x + ((size_t)iy * (size_t)iw + (size_t)ix) * (size_t)ic + (size_t)(g * cig);
                        wp = wo + ((size_t)ky * (size_t)kw + (size_t)kx) * (size_t)cig;
                        for (c = 0; c < cig; ++c) acc += (lm_acc)wp[c] * (lm_acc)xp[c];
                    }
                }
                y[((size_t)oy * (size_t)ow + (size_t)ox) * (size_t)oc + (size_t)o] = lm_act((float)acc, act);
            }
}
)C";

inline constexpr const char* k_fc = R"C(
/* fc, weights [out][in] */
static void lm_f32_fc(const float* x, int in, float* y, int out, const float* w, const float* b, int act) {
    int o, i;
    for (o = 0; o < out; ++o) {
        const float* wo = w + (size_t)o * (size_t)in;
        lm_acc acc = b ? (lm_acc)b[o] : (lm_acc)0;
        for (i = 0; i < in; ++i) acc += (lm_acc)wo[i] * (lm_acc)x[i];
        y[o] = lm_act((float)acc, act);
    }
}
)C";

inline constexpr const char* k_pool = R"C(
/* maxpool (is_max: padding is -infinity) and avgpool (divides by the in-bounds count) */
static void lm_f32_pool(const float* x, int ih, int iw, int ch, float* y, int oh, int ow, int kh,
                        int kw, int sh, int sw, int pt, int pl, int is_max) {
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < oh; ++oy)
        for (ox = 0; ox < ow; ++ox)
            for (c = 0; c < ch; ++c) {
                float mx = -INFINITY;
                lm_acc sum = 0;
                int count = 0;
                for (ky = 0; ky < kh; ++ky) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= ih) continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int ix = ox * sw - pl + kx;
                        float v;
                        if (ix < 0 || ix >= iw) continue;
                        v = x[((size_t)iy * (size_t)iw + (size_t)ix) * (size_t)ch + (size_t)c];
                        if (mx < v) mx = v;
                        sum += (lm_acc)v;
                        ++count;
                    }
                }
                y[((size_t)oy * (size_t)ow + (size_t)ox) * (size_t)ch + (size_t)c] =
                    is_max ? mx : (count ? (float)(sum / (lm_acc)count) : 0.0f);
            }
}
)C";

inline constexpr const char* k_gap = R"C(
/* global average pool */
static void lm_f32_gap(const float* x, int pixels, int ch, float* y) {
    int c, p;
    for (c = 0; c < ch; ++c) {
        lm_acc sum = 0;
        for (p = 0; p < pixels; ++p) sum += (lm_acc)x[(size_t)p * (size_t)ch + (size_t)c];
        y[c] = (float)(sum / (lm_acc)pixels);
    }
}
)C";

inline constexpr const char* k_batchnorm = R"C(
/* batchnorm that could not fold: y = (x - mean) * scale + shift, scale = gamma / sqrt(var + eps) */
static void lm_f32_batchnorm(const float* x, float* y, size_t n, int ch, const float* mean,
                             const float* scale, const float* shift) {
    size_t i;
    int c = 0;
    for (i = 0; i < n; ++i) {
        y[i] = (float)(((lm_acc)x[i] - (lm_acc)mean[c]) * (lm_acc)scale[c] + (lm_acc)shift[c]);
        if (++c == ch) c = 0;
    }
}
)C";

inline constexpr const char* k_add = R"C(
/* add of k inputs (y may be one of them) */
static void lm_f32_add(const float* const* xs, int k, float* y, size_t n, int act) {
    size_t i;
    int j;
    for (i = 0; i < n; ++i) {
        lm_acc s = 0;
        for (j = 0; j < k; ++j) s += (lm_acc)xs[j][i];
        y[i] = lm_act((float)s, act);
    }
}
)C";

inline constexpr const char* k_concat = R"C(
/* one input of a concat along channels */
static void lm_f32_concat_part(const float* x, int pixels, int c_in, float* y, int c_out, int offset) {
    int p;
    for (p = 0; p < pixels; ++p)
        memcpy(y + (size_t)p * (size_t)c_out + (size_t)offset, x + (size_t)p * (size_t)c_in,
               (size_t)c_in * sizeof(float));
}
)C";

inline constexpr const char* k_mul = R"C(
/* mul; an operand of fewer values (1x1xC) is broadcast (y may be a full-size operand) */
static void lm_f32_mul(const float* a, size_t na, const float* b, size_t nb, float* y, size_t n) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = a[na == n ? i : i % na] * b[nb == n ? i : i % nb];
}
)C";

inline constexpr const char* k_act = R"C(
/* activation layer (in place allowed) */
static void lm_f32_act(const float* x, float* y, size_t n, int act) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = lm_act(x[i], act);
}
)C";

inline constexpr const char* k_softmax = R"C(
/* softmax over channels at each pixel (in place allowed) */
static void lm_f32_softmax(const float* x, float* y, int pixels, int ch) {
    int p, c;
    for (p = 0; p < pixels; ++p) {
        const float* xp = x + (size_t)p * (size_t)ch;
        float* yp = y + (size_t)p * (size_t)ch;
        float mx = -INFINITY;
        lm_acc sum = 0;
        for (c = 0; c < ch; ++c) mx = mx < xp[c] ? xp[c] : mx;
        for (c = 0; c < ch; ++c) sum += LM_EXP((lm_acc)xp[c] - (lm_acc)mx);
        for (c = 0; c < ch; ++c) yp[c] = (float)(LM_EXP((lm_acc)xp[c] - (lm_acc)mx) / sum);
    }
}
)C";

inline std::string num(std::int64_t v) { return std::to_string(v); }

inline int act_code(Activation a) noexcept {
    switch (a) {
    case Activation::None: return 0;
    case Activation::Relu: return 1;
    case Activation::Relu6: return 2;
    case Activation::HardSwish: return 3;
    case Activation::HardSigmoid: return 4;
    case Activation::Sigmoid: return 5;
    }
    return 0;
}

inline int act_code_of_op(OpKind op) noexcept {
    switch (op) {
    case OpKind::Relu: return 1;
    case OpKind::Relu6: return 2;
    case OpKind::HardSwish: return 3;
    case OpKind::HardSigmoid: return 4;
    case OpKind::Sigmoid: return 5;
    default: return 0;
    }
}

// A layer name safe inside a C comment.
inline std::string comment_safe(const std::string& s) {
    std::string out;
    for (char ch : s.substr(0, 64))
        out += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-') ? ch : '?';
    return out;
}

// Emits `static const float NAME[N] = {...};`, flushing zeros and subnormals; counts bytes.
inline void emit_array(std::string& out, const std::string& name, const std::vector<float>& v,
                       FirmwareSource& fs) {
    out += "static const float " + name + "[" + num(static_cast<std::int64_t>(v.size())) + "] = {";
    for (std::size_t i = 0; i < v.size(); ++i) {
        float x = v[i];
        if (!std::isfinite(x))
            throw ExportError("weight array " + name + "[" + std::to_string(i) + "] is not finite");
        if (std::fpclassify(x) == FP_SUBNORMAL) ++fs.flushed_weights;
        if (std::fpclassify(x) != FP_NORMAL) x = 0.0f;
        out += (i % 8 == 0) ? "\n    " : " ";
        if (x == 0.0f) out += "0.0f";
        else out += export_detail::float_literal(x) + "f";
        out += ',';
    }
    out += "\n};\n";
    fs.weight_bytes += static_cast<std::int64_t>(v.size()) * 4;
}


// Counts the kernel families a model uses (emitted once each) and a code-size estimate.
struct KernelUse {
    // Kernel families in emission order: conv2d (and dwconv), fc, pool, gap, batchnorm, add, concat,
    // mul, act, softmax; their code estimates (Cortex-M4 -O2, rough).
    std::vector<bool> used = std::vector<bool>(10, false);
    std::int64_t code = 300;  // model_run's frame, the checks, lm_act
    void use(int k) {
        static constexpr std::int64_t cost[] = {600, 150, 450, 150, 150, 150, 150, 120, 150, 300};
        if (!used[static_cast<std::size_t>(k)]) code += cost[k];
        used[static_cast<std::size_t>(k)] = true;
    }
};

// Emits layer i's float weights (conv2d/dwconv reordered to [oc][kh][kw][ic/groups], fc as is,
// an unfolded batch norm as mean, scale = gamma / sqrt(var + eps) and shift), counting bytes.
inline void emit_float_weights(const Layer& l, std::size_t i, const Weights& weights, std::string& wsrc,
                               FirmwareSource& fs) {
    const std::string p = "L" + std::to_string(i);
    if (l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d) {
        // OIHW -> O,H,W,I/groups so that the innermost loop reads consecutive values (a dwconv's
        // [oc][1][kh][kw] keeps its order).
        const WeightTensor& wt = weights.at(l.name + ".weight");
        const std::int64_t cig = wt.shape[1], kh = l.kernel_h, kw = l.kernel_w;
        std::vector<float> r(wt.data.size());
        for (std::int64_t o = 0; o < wt.shape[0]; ++o)
            for (std::int64_t c = 0; c < cig; ++c)
                for (std::int64_t y = 0; y < kh; ++y)
                    for (std::int64_t x = 0; x < kw; ++x)
                        r[static_cast<std::size_t>(((o * kh + y) * kw + x) * cig + c)] =
                            wt.data[static_cast<std::size_t>(((o * cig + c) * kh + y) * kw + x)];
        wsrc += "/* " + comment_safe(l.name) + " */\n";
        emit_array(wsrc, p + "_w", r, fs);
    } else if (l.op == OpKind::FullyConnected) {
        wsrc += "/* " + comment_safe(l.name) + " */\n";
        emit_array(wsrc, p + "_w", weights.at(l.name + ".weight").data, fs);
    }
    if ((l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d ||
         l.op == OpKind::FullyConnected) && l.bias)
        emit_array(wsrc, p + "_b", weights.at(l.name + ".bias").data, fs);
    if (l.op == OpKind::BatchNorm) {
        const auto& gamma = weights.at(l.name + ".weight").data;
        const auto& beta = weights.at(l.name + ".bias").data;
        const auto& mean = weights.at(l.name + ".running_mean").data;
        const auto& var = weights.at(l.name + ".running_var").data;
        std::vector<float> scale(gamma.size());
        for (std::size_t c = 0; c < gamma.size(); ++c)
            scale[c] = static_cast<float>(gamma[c] / std::sqrt(static_cast<double>(var[c]) + l.eps));
        wsrc += "/* " + comment_safe(l.name) + " (batchnorm) */\n";
        emit_array(wsrc, p + "_mean", mean, fs);
        emit_array(wsrc, p + "_scale", scale, fs);
        emit_array(wsrc, p + "_shift", beta, fs);
    }
}

// The float kernels `u` uses, and lm_act when one of them needs it.
inline std::string float_kernels(const KernelUse& u) {
    std::string c = kernels_f32;
    const char* bodies[] = {k_conv2d, k_fc, k_pool, k_gap, k_batchnorm, k_add, k_concat, k_mul, k_act, k_softmax};
    if (u.used[0] || u.used[1] || u.used[5] || u.used[8]) c += k_act_fn;
    for (std::size_t k = 0; k < 10; ++k)
        if (u.used[k]) c += bodies[k];
    return c;
}

// The float32 kernel call of layer i: x(k) is the C expression of its k-th input (const float*),
// y of its output (float*). The weights are L<i>_w, L<i>_b, L<i>_mean/_scale/_shift.
template <class X>
std::string float_call(const Graph& graph, std::size_t i, X x, const std::string& y, KernelUse& u) {
    const Layer& l = graph.layers[i];
    const std::size_t n = graph.layers.size();
    const std::string p = "L" + std::to_string(i);
    const Shape is = graph.layers[static_cast<std::size_t>(l.inputs.front())].shape;
    const Shape& os = l.shape;
    const std::string bias = l.bias ? p + "_b" : "0";
    std::string line;
    switch (l.op) {
    case OpKind::Input: break;
    case OpKind::Conv2d:
    case OpKind::DepthwiseConv2d: {
        // One kernel for both: a dwconv is a conv2d with groups = input channels.
        const bool dw = l.op == OpKind::DepthwiseConv2d;
        u.use(0);
        line += "lm_f32_conv2d(" + x(0) + ", " +
                num(is.h) + ", " + num(is.w) + ", " + num(is.c) + ", " + y + ", " +
                num(os.h) + ", " + num(os.w) + ", " + num(os.c) + ", " + p + "_w, " +
                bias + ", " + num(l.kernel_h) + ", " + num(l.kernel_w) + ", " +
                num(l.stride_h) + ", " + num(l.stride_w) + ", " + num(l.dilation_h) +
                ", " + num(l.dilation_w) + ", " + num(l.pads[0]) + ", " +
                num(l.pads[1]) + ", " + num(dw ? is.c : l.groups) + ", " +
                num(act_code(l.act)) + ");\n";
        break;
    }
    case OpKind::FullyConnected:
        u.use(1);
        line += "lm_f32_fc(" + x(0) + ", " + num(is.elements()) + ", " + y + ", " +
                num(os.elements()) + ", " + p + "_w, " + bias + ", " +
                num(act_code(l.act)) + ");\n";
        break;
    case OpKind::MaxPool:
    case OpKind::AvgPool:
        u.use(2);
        line += "lm_f32_pool(" + x(0) + ", " + num(is.h) + ", " + num(is.w) + ", " +
                num(is.c) + ", " + y + ", " + num(os.h) + ", " + num(os.w) + ", " +
                num(l.kernel_h) + ", " + num(l.kernel_w) + ", " + num(l.stride_h) +
                ", " + num(l.stride_w) + ", " + num(l.pads[0]) + ", " +
                num(l.pads[1]) + ", " + (l.op == OpKind::MaxPool ? "1" : "0") + ");\n";
        break;
    case OpKind::GlobalAvgPool:
        u.use(3);
        line += "lm_f32_gap(" + x(0) + ", " + num(is.h * is.w) + ", " + num(is.c) +
                ", " + y + ");\n";
        break;
    case OpKind::BatchNorm:
        u.use(4);
        line += "lm_f32_batchnorm(" + x(0) + ", " + y + ", " + num(os.elements()) + ", " +
                num(os.c) + ", " + p + "_mean, " + p + "_scale, " + p + "_shift);\n";
        break;
    case OpKind::Add: {
        u.use(5);
        std::string xs;
        for (std::size_t k = 0; k < l.inputs.size(); ++k) xs += (k ? ", " : "") + x(k);
        line += "{\n        const float* const xs[" + num(static_cast<std::int64_t>(l.inputs.size())) +
                "] = {" + xs + "};\n        lm_f32_add(xs, " +
                num(static_cast<std::int64_t>(l.inputs.size())) + ", " + y + ", " +
                num(os.elements()) + ", " + num(act_code(l.act)) + ");\n    }\n";
        break;
    }
    case OpKind::Concat: {
        u.use(6);
        std::int64_t offset = 0;
        std::string parts;
        for (std::size_t k = 0; k < l.inputs.size(); ++k) {
            const Shape s = graph.layers[static_cast<std::size_t>(l.inputs[k])].shape;
            parts += (k ? "    " : "") + std::string("lm_f32_concat_part(") + x(k) + ", " +
                     num(os.h * os.w) + ", " + num(s.c) + ", " + y + ", " +
                     num(os.c) + ", " + num(offset) + ");\n";
            offset += s.c;
        }
        line += parts;
        break;
    }
    case OpKind::Mul: {
        u.use(7);
        const Shape b = graph.layers[static_cast<std::size_t>(l.inputs[1])].shape;
        line += "lm_f32_mul(" + x(0) + ", " + num(is.elements()) + ", " + x(1) + ", " +
                num(b.elements()) + ", " + y + ", " + num(os.elements()) + ");\n";
        break;
    }
    case OpKind::Relu:
    case OpKind::Relu6:
    case OpKind::HardSwish:
    case OpKind::HardSigmoid:
    case OpKind::Sigmoid:
        u.use(8);
        line += "lm_f32_act(" + x(0) + ", " + y + ", " + num(os.elements()) + ", " +
                num(act_code_of_op(l.op)) + ");\n";
        break;
    case OpKind::Softmax:
        u.use(9);
        line += "lm_f32_softmax(" + x(0) + ", " + y + ", " + num(os.h * os.w) + ", " +
                num(os.c) + ");\n";
        break;
    case OpKind::Flatten:
    case OpKind::Dropout:
        // The same bytes as the input; the last layer copies into the output.
        if (i + 1 == n)
            line += "memmove(output, " + x(0) + ", " + num(os.elements()) + " * sizeof(float));\n";
        else
            line += "/* no code: shares its input's bytes */\n";
        break;
    }
    return line;
}

}  // namespace firmware_detail

// The most weight bytes firmware_source accepts.
inline constexpr std::int64_t max_firmware_weight_bytes = std::int64_t{32} << 20;

// Generates model.h and model.c for `graph` (shapes inferred) with `weights` (validate_weights; batch
// norm folded here). Throws ExportError / ExecutorError naming the layer or tensor at fault.
inline FirmwareSource firmware_source(const Graph& graph_in, const Weights& weights_in) {
    namespace fd = firmware_detail;
    detail::check_runnable(graph_in);
    detail::check_weights(graph_in, weights_in);
    auto [graph, weights] = fold_batchnorm(graph_in, weights_in);
    const FirmwarePlan plan = firmware_plan(graph);
    if (!plan.ok) throw ExportError("firmware: " + plan.error);
    const ModelStats stats = analyze(graph);
    // The source holds ~12 characters per weight: bound it before building it (32 MiB of float
    // weights is more flash than microcontrollers have).
    if (stats.weight_bytes > max_firmware_weight_bytes)
        throw ExportError("firmware: " + std::to_string(stats.weight_bytes) +
                          " bytes of weights, over the firmware export's limit of " +
                          std::to_string(max_firmware_weight_bytes) + " (32 MiB)");

    FirmwareSource fs;
    fs.arena_bytes = plan.arena_bytes;
    fs.input_offset = plan.input_offset;
    fs.input_bytes = plan.input_bytes;
    fs.output_bytes = plan.output_bytes;
    fs.tflm_arena_bytes = tflm_greedy_arena_bytes(graph, false);
    fs.tflm_arena_io_bytes = tflm_greedy_arena_bytes(graph, true);
    fs.macs = stats.macs;
    fs.params = stats.params;
    fs.layers = static_cast<int>(graph.layers.size());
    fs.in_place = plan.in_place;

    const std::size_t n = graph.layers.size();
    const Shape in_s = graph.input().shape, out_s = graph.output().shape;
    const std::string model_name = fd::comment_safe(graph.name.empty() ? "model" : graph.name);

    // Weights.
    std::string wsrc;
    for (std::size_t i = 0; i < n; ++i) fd::emit_float_weights(graph.layers[i], i, weights, wsrc, fs);
    if (fs.weight_bytes >= arena_detail::max_tensor_bytes)
        throw ExportError("firmware: " + std::to_string(fs.weight_bytes) +
                          " bytes of weights do not fit a 32-bit target");

    // The run function.
    auto ptr = [&](std::size_t layer) -> std::string {
        const std::int64_t offset = plan.offset_of(layer);
        return offset < 0 ? std::string("output") : "(a + " + fd::num(offset / 4) + ")";
    };
    std::string body;
    fd::KernelUse ku;
    for (std::size_t i = 1; i < n; ++i) {
        const Layer& l = graph.layers[i];
        const std::string y = ptr(i);
        auto x = [&](std::size_t k) { return ptr(static_cast<std::size_t>(l.inputs[k])); };
        const Shape& os = l.shape;
        std::string line = "    /* " + fd::num(static_cast<std::int64_t>(i)) + " " +
                           fd::comment_safe(l.name) + ": " + std::string(op_name(l.op)) + " " +
                           to_string(os) + " */\n    ";
        ku.code += 40;
        line += fd::float_call(graph, i, x, y, ku);
        body += line;
    }
    if (n == 1) body += "    memmove(output, " + ptr(0) + ", " + fd::num(in_s.elements()) + " * sizeof(float));\n";
    fs.code_bytes_estimate = ku.code;
    fs.flash_bytes = fs.weight_bytes + ku.code;

    const std::string stats_line =
        "/* " + fd::num(fs.params) + " parameters, " + fd::num(fs.macs) + " MACs, " +
        fd::num(fs.weight_bytes) + " bytes of weights, arena " + fd::num(fs.arena_bytes) +
        " bytes (the input inside) + output " + fd::num(fs.output_bytes) + " (" +
        fd::num(fs.in_place) + " ops in place; TFLite Micro's greedy plan: " +
        fd::num(fs.tflm_arena_bytes) + " bytes, " + fd::num(fs.tflm_arena_io_bytes) +
        " with the output inside) */\n";

    std::string& h = fs.header;
    h += "/* model.h: " + model_name + ", generated by lamda export --firmware. Do not edit.\n"
         "   int model_run(const float* input, float* output, void* arena): NHWC float32, batch 1;\n"
         "   arena: MODEL_ARENA_BYTES bytes, 4-byte aligned (16 recommended), owned by the caller.\n"
         "   The input lives in the arena: write it at MODEL_INPUT(arena) and pass that pointer (no\n"
         "   copy; the run overwrites it), or pass any other buffer and it is copied there first.\n"
         "   Returns 0, or -1 when a pointer is null or the arena is misaligned. Reentrant. */\n";
    h += stats_line;
    h += "#ifndef LAMDA_FIRMWARE_MODEL_H\n#define LAMDA_FIRMWARE_MODEL_H\n\n";
    h += "#define MODEL_INPUT_H " + fd::num(in_s.h) + "\n#define MODEL_INPUT_W " + fd::num(in_s.w) +
         "\n#define MODEL_INPUT_C " + fd::num(in_s.c) + "\n#define MODEL_INPUT_SIZE " +
         fd::num(in_s.elements()) + "\n#define MODEL_OUTPUT_H " + fd::num(out_s.h) +
         "\n#define MODEL_OUTPUT_W " + fd::num(out_s.w) + "\n#define MODEL_OUTPUT_C " +
         fd::num(out_s.c) + "\n#define MODEL_OUTPUT_SIZE " + fd::num(out_s.elements()) +
         "\n#define MODEL_ARENA_BYTES " + fd::num(std::max<std::int64_t>(fs.arena_bytes, 16)) +
         "\n#define MODEL_INPUT_OFFSET " + fd::num(fs.input_offset) +
         "\n#define MODEL_INPUT(arena) ((float*)((char*)(arena) + MODEL_INPUT_OFFSET))" +
         "\n#define MODEL_WEIGHT_BYTES " + fd::num(fs.weight_bytes) + "\n#define MODEL_MACS " +
         fd::num(fs.macs) + "\n\n";
    h += "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
         "int model_run(const float* input, float* output, void* arena);\n\n"
         "#ifdef __cplusplus\n}\n#endif\n\n#endif /* LAMDA_FIRMWARE_MODEL_H */\n";

    std::string& c = fs.source;
    c += "/* model.c: " + model_name + ", generated by lamda export --firmware. Do not edit.\n"
         "   Portable C99: no heap, no static mutable state, only <stdint.h>, <string.h>, <math.h>.\n"
         "   Define MODEL_FAST_FLOAT to accumulate in float (default: double, as lamda's reference). */\n";
    c += stats_line;
    c += "#include <stdint.h>\n#include <string.h>\n#include <math.h>\n\n#include \"model.h\"\n";
    c += fd::float_kernels(ku);
    c += "\n/* ---- weights (flash) ---- */\n" + wsrc;
    c += "\n/* ---- the network: arena offsets from lamda's liveness plan ---- */\n";
    c += "int model_run(const float* input, float* output, void* arena) {\n";
    c += "    float* a = (float*)arena;\n";
    c += "    if (!input || !output || !arena || ((uintptr_t)arena & 3u) != 0) return -1;\n";
    c += "    if (input != a + " + fd::num(fs.input_offset / 4) + ")\n        memmove(a + " +
         fd::num(fs.input_offset / 4) + ", input, " + fd::num(in_s.elements()) + " * sizeof(float));\n";
    c += body;
    c += "    return 0;\n}\n";
    return fs;
}


// ---------------------------------------------------------------------------------------------
// int8 (issue 19's quantized models: core/quant.hpp, exec/reference_int8.hpp)
// ---------------------------------------------------------------------------------------------

namespace firmware_detail {

// core/quant.hpp's arithmetic in C99, line for line: round_half_even, requantize_fp32, quantize,
// dequantize, add_requantize. Plain float operations (no FMA: build with -std=c99, or
// -ffp-contract=off), so the results are the reference's bit for bit.
inline constexpr const char* kernels_s8 = R"C(
/* ---- int8: core/quant.hpp's arithmetic ---- */
static int32_t lm_rne(float x) { /* round half to even, saturating */
    float f, d;
    int64_t r;
    if (x != x) return 0;
    if (x >= 2147483648.0f) return INT32_MAX;
    if (x <= -2147483648.0f) return INT32_MIN;
    f = floorf(x);
    d = x - f;
    r = (int64_t)f;
    if (d > 0.5f || (d == 0.5f && (r & 1) != 0)) ++r;
    return (int32_t)r;
}
static int8_t lm_clamp8(int64_t q, int32_t qmin, int32_t qmax) {
    return (int8_t)(q < qmin ? qmin : (q > qmax ? qmax : q));
}
static int8_t lm_quantize(float x, float scale, int32_t zp) {
    const float inv = 1.0f / scale;
    const float hi = (float)(127 - zp), lo = (float)(-128 - zp);
    float v;
    if (x != x) return lm_clamp8(zp, -128, 127);
    v = x * inv;
    v = v > hi ? hi : (v < lo ? lo : v);
    return lm_clamp8((int64_t)lm_rne(v) + zp, -128, 127);
}
static void lm_s8_quant(const float* x, size_t n, float scale, int32_t zp, int8_t* y) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = lm_quantize(x[i], scale, zp);
}
static void lm_s8_dequant(const int8_t* x, size_t n, float scale, int32_t zp, float* y) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = (float)((int32_t)x[i] - zp) * scale;
}
)C";

inline constexpr const char* k_s8_requant = R"C(
static int8_t lm_requant(int32_t acc, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
    float v = (float)acc * scale;
    const float hi = (float)(qmax - zp), lo = (float)(qmin - zp);
    v = v > hi ? hi : (v < lo ? lo : v);
    return lm_clamp8((int64_t)lm_rne(v) + zp, qmin, qmax);
}
)C";

inline constexpr const char* k_s8_conv = R"C(
/* int8 conv2d (dwconv: groups = ic), weights [oc][kh][kw][ic/groups], per-channel requantization */
static void lm_s8_conv(const int8_t* x, int ih, int iw, int ic, int32_t xzp, int8_t* y, int oh, int ow,
                       int oc, const int8_t* w, const int32_t* b, const float* scale, int32_t yzp,
                       int32_t qmin, int32_t qmax, int kh, int kw, int sh, int sw, int dh, int dw,
                       int pt, int pl, int groups) {
    const int cig = ic / groups, cog = oc / groups;
    int oy, ox, o, ky, kx, c;
    for (oy = 0; oy < oh; ++oy)
        for (ox = 0; ox < ow; ++ox)
            for (o = 0; o < oc; ++o) {
                const int g = o / cog;
                const int8_t* wo = w + (size_t)o * (size_t)(kh * kw) * (size_t)cig;
                int32_t acc = b[o];
                for (ky = 0; ky < kh; ++ky) {
                    const int iy = oy * sh - pt + ky * dh;
                    if (iy < 0 || iy >= ih) continue; /* padding is the zero point: adds 0 */
                    for (kx = 0; kx < kw; ++kx) {
                        const int ix = ox * sw - pl + kx * dw;
                        const int8_t* xp;
                        const int8_t* wp;
                        if (ix < 0 || ix >= iw) continue;
                        xp = x + ((size_t)iy * (size_t)iw + (size_t)ix) * (size_t)ic + (size_t)(g * cig);
                        wp = wo + ((size_t)ky * (size_t)kw + (size_t)kx) * (size_t)cig;
                        for (c = 0; c < cig; ++c) acc += (int32_t)wp[c] * ((int32_t)xp[c] - xzp);
                    }
                }
                y[((size_t)oy * (size_t)ow + (size_t)ox) * (size_t)oc + (size_t)o] =
                    lm_requant(acc, scale[o], yzp, qmin, qmax);
            }
}
)C";

inline constexpr const char* k_s8_fc = R"C(
/* int8 fully connected, weights [out][in] */
static void lm_s8_fc(const int8_t* x, int in, int32_t xzp, int8_t* y, int out, const int8_t* w,
                     const int32_t* b, const float* scale, int32_t yzp, int32_t qmin, int32_t qmax) {
    int o, i;
    for (o = 0; o < out; ++o) {
        const int8_t* wo = w + (size_t)o * (size_t)in;
        int32_t acc = b[o];
        for (i = 0; i < in; ++i) acc += (int32_t)wo[i] * ((int32_t)x[i] - xzp);
        y[o] = lm_requant(acc, scale[o], yzp, qmin, qmax);
    }
}
)C";

inline constexpr const char* k_s8_maxpool = R"C(
/* int8 maxpool (input and output share their parameters) */
static void lm_s8_maxpool(const int8_t* x, int ih, int iw, int ch, int8_t* y, int oh, int ow, int kh,
                          int kw, int sh, int sw, int pt, int pl) {
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < oh; ++oy)
        for (ox = 0; ox < ow; ++ox)
            for (c = 0; c < ch; ++c) {
                int8_t m = -128;
                for (ky = 0; ky < kh; ++ky) {
                    const int iy = oy * sh - pt + ky;
                    if (iy < 0 || iy >= ih) continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int ix = ox * sw - pl + kx;
                        int8_t v;
                        if (ix < 0 || ix >= iw) continue;
                        v = x[((size_t)iy * (size_t)iw + (size_t)ix) * (size_t)ch + (size_t)c];
                        if (m < v) m = v;
                    }
                }
                y[((size_t)oy * (size_t)ow + (size_t)ox) * (size_t)ch + (size_t)c] = m;
            }
}
)C";

inline constexpr const char* k_s8_gap = R"C(
/* int8 global average pool: acc = -n * x_zp + sum x, fp32 requantization */
static void lm_s8_gap(const int8_t* x, int pixels, int ch, int8_t* y, int32_t bias, float scale, int32_t yzp) {
    int c, p;
    for (c = 0; c < ch; ++c) {
        int32_t acc = bias;
        for (p = 0; p < pixels; ++p) acc += x[(size_t)p * (size_t)ch + (size_t)c];
        y[c] = lm_requant(acc, scale, yzp, -128, 127);
    }
}
)C";

inline constexpr const char* k_s8_add = R"C(
/* int8 add (XNNPACK's qs8 vadd fixed point): ((bias + a * am + b * bm) >> shift) + zp, floor shift */
static void lm_s8_add(const int8_t* a, const int8_t* b, int8_t* y, size_t n, int32_t am, int32_t bm,
                      int32_t bias, int shift, int32_t zp, int32_t qmin, int32_t qmax) {
    const int64_t d = (int64_t)1 << shift;
    size_t i;
    for (i = 0; i < n; ++i) {
        const int64_t acc = (int64_t)bias + (int64_t)a[i] * am + (int64_t)b[i] * bm;
        int64_t q = acc / d;
        if (acc % d != 0 && acc < 0) --q;
        y[i] = lm_clamp8(q + zp, qmin, qmax);
    }
}
)C";

inline constexpr const char* k_s8_clamp = R"C(
/* int8 relu / relu6 as layers: a clamp (parameters unchanged; in place allowed) */
static void lm_s8_clamp(const int8_t* x, int8_t* y, size_t n, int32_t lo, int32_t hi) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = (int8_t)(x[i] < lo ? lo : (x[i] > hi ? hi : x[i]));
}
)C";

inline constexpr const char* k_s8_mul = R"C(
/* mul that runs in float, value by value (no scratch): dequantize, multiply, quantize; an operand
   of fewer values (1x1xC) is broadcast; y may be a full-size operand */
static void lm_s8_mul_f(const int8_t* a, size_t na, float sa, int32_t za, const int8_t* b, size_t nb,
                        float sb, int32_t zb, int8_t* y, size_t n, float sy, int32_t zy) {
    size_t i;
    for (i = 0; i < n; ++i) {
        const float x = (float)((int32_t)a[na == n ? i : i % na] - za) * sa;
        const float w = (float)((int32_t)b[nb == n ? i : i % nb] - zb) * sb;
        y[i] = lm_quantize(x * w, sy, zy);
    }
}
)C";

inline constexpr const char* k_s8_lut = R"C(
/* int8 sigmoid: a 256-entry table (in place allowed) */
static void lm_s8_lut(const int8_t* x, int8_t* y, size_t n, const int8_t* lut) {
    size_t i;
    for (i = 0; i < n; ++i) y[i] = lut[(int)x[i] + 128];
}
)C";

inline std::string float_text(float v) { return export_detail::float_literal(v) + "f"; }

template <class T>
void emit_int_array(std::string& out, const char* type, const std::string& name, const std::vector<T>& v,
                    FirmwareSource& fs, std::int64_t bytes_each) {
    out += "static const " + std::string(type) + " " + name + "[" + num(static_cast<std::int64_t>(v.size())) + "] = {";
    for (std::size_t i = 0; i < v.size(); ++i) {
        out += (i % 16 == 0) ? "\n    " : " ";
        const auto x = static_cast<std::int64_t>(v[i]);
        // INT32_MIN has no literal of its own in C.
        out += x == std::int64_t{-2147483647} - 1 ? std::string("(-2147483647 - 1)") : num(x);
        out += ',';
    }
    out += "\n};\n";
    fs.weight_bytes += static_cast<std::int64_t>(v.size()) * bytes_each;
}

inline void emit_float_array(std::string& out, const std::string& name, const std::vector<float>& v,
                             FirmwareSource& fs) {
    out += "static const float " + name + "[" + num(static_cast<std::int64_t>(v.size())) + "] = {";
    for (std::size_t i = 0; i < v.size(); ++i) out += ((i % 8 == 0) ? "\n    " : " ") + float_text(v[i]) + ",";
    out += "\n};\n";
    fs.weight_bytes += static_cast<std::int64_t>(v.size()) * 4;
}

}  // namespace firmware_detail

// Generates model.h and model.c running `graph` in int8 with `model`: the graph, the quantized
// model and the float weights of its float layers as exec/reference_int8.hpp's quantize_ptq makes
// them (PtqResult::graph, ::model, ::float_weights). The generated model_run has the reference's
// interface: float input, quantized in the arena; float output (the last value dequantized, or the
// float result of a last layer that runs in float). Layers with an int8 kernel run in int8 with
// core/quant.hpp's arithmetic; the float layers (PtqResult::float_reasons) run in float between
// dequantize and quantize, with scratch in the arena. Outputs equal run_reference_int8's bit for bit
// (tests/deploy/test_firmware.cpp). Throws ExportError / ExecutorError naming the layer.
inline FirmwareSource firmware_source_int8(const Graph& graph, const QuantizedModel& model,
                                           const Weights& float_weights) {
    namespace fd = firmware_detail;
    detail::check_runnable(graph);
    if (const std::optional<Error> e = validate_quantized_model(model))
        throw ExportError("firmware int8: quantized model: " + e->where.field + ": " + e->message);
    detail::check_int8_params(graph, model);
    const std::size_t n = graph.layers.size();
    auto is_float = [&](std::size_t i) { return detail::in_list(model.float_layers, graph.layers[i].name); };
    // A float mul (not the last layer) runs value by value on the int8 values: no float scratch.
    auto mul_by_value = [&](std::size_t i) {
        return is_float(i) && graph.layers[i].op == OpKind::Mul && i + 1 < graph.layers.size();
    };
    const ModelStats stats = analyze(graph);
    if (stats.params > max_firmware_weight_bytes)
        throw ExportError("firmware int8: " + std::to_string(stats.params) +
                          " parameters, over the firmware export's limit of " +
                          std::to_string(max_firmware_weight_bytes));

    // The parameters of each int8 value: passthrough ops keep their input's (as the reference).
    std::vector<ActivationQuant> params(n);
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = graph.layers[i];
        if (!is_float(i) && int8_passthrough(l.op))
            params[i] = params[static_cast<std::size_t>(l.inputs.front())];
        else
            params[i] = *model.find_activation(l.name);  // check_int8_params: present
    }
    // Scratch of a float layer: its inputs and its output as float, one after the other (16-aligned).
    std::vector<bool> runs_in_float(n);
    for (std::size_t i = 0; i < n; ++i) runs_in_float[i] = is_float(i);
    std::vector<std::vector<std::int64_t>> scratch_at;  // per float layer: byte offsets of inputs, then output
    const ArenaOptions ao = int8_arena_options(graph, runs_in_float, &scratch_at);
    const ArenaPlan plan = arena_plan(graph, ao);
    if (!plan.ok) throw ExportError("firmware int8: " + plan.error);

    FirmwareSource fs;
    fs.arena_bytes = plan.arena_bytes;
    fs.input_offset = plan.input_offset;
    fs.input_bytes = plan.input_bytes;
    fs.output_bytes = graph.output().shape.elements() * 4;  // float
    fs.tflm_arena_bytes = tflm_greedy_arena_bytes(graph, false, 1);
    fs.tflm_arena_io_bytes = tflm_greedy_arena_bytes(graph, true, 1);
    fs.macs = stats.macs;
    fs.params = stats.params;
    fs.layers = static_cast<int>(n);
    fs.in_place = plan.in_place;
    const Shape in_s = graph.input().shape, out_s = graph.output().shape;
    const std::string model_name = fd::comment_safe(graph.name.empty() ? "model" : graph.name);

    // Weights and constants.
    std::string wsrc;
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = graph.layers[i];
        const std::string p = "L" + std::to_string(i);
        if (is_float(i)) {
            fd::emit_float_weights(l, i, float_weights, wsrc, fs);
            continue;
        }
        if (l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d || l.op == OpKind::FullyConnected) {
            const QuantizedWeights& w = *model.find_layer(l.name);
            const ActivationQuant& xin = params[static_cast<std::size_t>(l.inputs.front())];
            std::vector<std::int8_t> r(w.weights.size());
            std::int64_t fan_in = 1;
            if (l.op == OpKind::FullyConnected) {
                r = w.weights;
                fan_in = static_cast<std::int64_t>(w.weights.size()) / std::max<std::int64_t>(1, l.shape.c);
            } else {
                const std::int64_t cig = w.weight_shape[1], kh = l.kernel_h, kw = l.kernel_w;
                fan_in = cig * kh * kw;
                for (std::int64_t o = 0; o < w.weight_shape[0]; ++o)
                    for (std::int64_t c = 0; c < cig; ++c)
                        for (std::int64_t y = 0; y < kh; ++y)
                            for (std::int64_t x = 0; x < kw; ++x)
                                r[static_cast<std::size_t>(((o * kh + y) * kw + x) * cig + c)] =
                                    w.weights[static_cast<std::size_t>(((o * cig + c) * kh + y) * kw + x)];
            }
            // The C kernels accumulate in int32: bound the sum before relying on it.
            std::int64_t max_bias = 0;
            for (std::int32_t b : w.bias) max_bias = std::max<std::int64_t>(max_bias, b < 0 ? -std::int64_t{b} : b);
            if (max_bias + fan_in * 127 * 255 >= (std::int64_t{1} << 31))
                throw ExportError("firmware int8: layer '" + l.name + "': " + std::to_string(fan_in) +
                                  " inputs per output can overflow the int32 accumulator");
            std::vector<float> scale(static_cast<std::size_t>(l.shape.c));
            for (std::size_t c = 0; c < scale.size(); ++c)
                scale[c] = conv_requant_scale(xin.scale, w.weight_scale(c), params[i].scale);
            wsrc += "/* " + fd::comment_safe(l.name) + " (int8) */\n";
            fd::emit_int_array(wsrc, "int8_t", p + "_w", r, fs, 1);
            fd::emit_int_array(wsrc, "int32_t", p + "_b", w.bias, fs, 4);
            fd::emit_float_array(wsrc, p + "_s", scale, fs);
        }
        if (l.op == OpKind::Sigmoid) {
            std::vector<std::int8_t> lut(256);
            for (int k = 0; k < 256; ++k)
                lut[static_cast<std::size_t>(k)] = sigmoid_lut_entry(
                    static_cast<std::int8_t>(k - 128), params[static_cast<std::size_t>(l.inputs.front())], params[i]);
            wsrc += "/* " + fd::comment_safe(l.name) + " (sigmoid table) */\n";
            fd::emit_int_array(wsrc, "int8_t", p + "_lut", lut, fs, 1);
        }
    }

    // The run function.
    auto a8 = [&](std::size_t layer) { return "(a8 + " + fd::num(plan.offset_of(layer)) + ")"; };
    auto q_of = [&](std::size_t layer) {
        return fd::float_text(params[layer].scale) + ", " + fd::num(params[layer].zero_point);
    };
    std::string body;
    fd::KernelUse ku;               // float kernels of the float layers
    std::vector<bool> s8(8, false);  // conv, fc, maxpool, gap, add, clamp, lut, mul by value
    std::int64_t code8 = 400;        // quant helpers, model_run
    const std::int64_t cost8[] = {500, 150, 300, 150, 250, 80, 60, 150};
    auto use8 = [&](int k) {
        if (!s8[static_cast<std::size_t>(k)]) code8 += cost8[k];
        s8[static_cast<std::size_t>(k)] = true;
    };
    body += "    if (input)\n        lm_s8_quant(input, " + fd::num(in_s.elements()) + ", " + q_of(0) + ", " +
            a8(0) + ");\n";
    for (std::size_t i = 1; i < n; ++i) {
        const Layer& l = graph.layers[i];
        const std::string p = "L" + std::to_string(i);
        const Shape is = graph.layers[static_cast<std::size_t>(l.inputs.front())].shape;
        const Shape& os = l.shape;
        const auto in0 = static_cast<std::size_t>(l.inputs.front());
        std::string line = "    /* " + fd::num(static_cast<std::int64_t>(i)) + " " + fd::comment_safe(l.name) +
                           ": " + std::string(op_name(l.op)) + " " + to_string(os) +
                           (is_float(i) ? " (float)" : "") + " */\n    ";
        code8 += 40;
        if (mul_by_value(i)) {
            use8(7);
            const auto in1 = static_cast<std::size_t>(l.inputs[1]);
            line += "lm_s8_mul_f(" + a8(in0) + ", " + fd::num(is.elements()) + ", " + q_of(in0) + ", " + a8(in1) +
                    ", " + fd::num(graph.layers[in1].shape.elements()) + ", " + q_of(in1) + ", " + a8(i) + ", " +
                    fd::num(os.elements()) + ", " + q_of(i) + ");\n";
            body += line;
            continue;
        }
        if (is_float(i)) {
            const std::int64_t base = plan.scratch_offset(i);
            auto sf = [&](std::size_t k) { return "(float*)(a8 + " + fd::num(base + scratch_at[i][k]) + ")"; };
            std::string pre;
            for (std::size_t k = 0; k < l.inputs.size(); ++k) {
                const auto in = static_cast<std::size_t>(l.inputs[k]);
                pre += "lm_s8_dequant(" + a8(in) + ", " + fd::num(graph.layers[in].shape.elements()) + ", " +
                       q_of(in) + ", " + sf(k) + ");\n    ";
            }
            const std::string y = sf(l.inputs.size());
            line += "{\n    " + pre + fd::float_call(graph, i, sf, y, ku) + "    ";
            if (i + 1 == n)
                line += "memcpy(output, " + y + ", " + fd::num(os.elements()) + " * sizeof(float));\n";
            else
                line += "lm_s8_quant(" + y + ", " + fd::num(os.elements()) + ", " + q_of(i) + ", " + a8(i) + ");\n";
            line += "    }\n";
            body += line;
            continue;
        }
        const std::string x0 = a8(in0), y = a8(i);
        const auto [qmin, qmax] = int8_act_bounds(l.act, params[i]);
        switch (l.op) {
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d: {
            use8(0);
            const bool dw = l.op == OpKind::DepthwiseConv2d;
            line += "lm_s8_conv(" + x0 + ", " + fd::num(is.h) + ", " + fd::num(is.w) + ", " + fd::num(is.c) +
                    ", " + fd::num(params[in0].zero_point) + ", " + y + ", " + fd::num(os.h) + ", " +
                    fd::num(os.w) + ", " + fd::num(os.c) + ", " + p + "_w, " + p + "_b, " + p + "_s, " +
                    fd::num(params[i].zero_point) + ", " + fd::num(qmin) + ", " + fd::num(qmax) + ", " +
                    fd::num(l.kernel_h) + ", " + fd::num(l.kernel_w) + ", " + fd::num(l.stride_h) + ", " +
                    fd::num(l.stride_w) + ", " + fd::num(l.dilation_h) + ", " + fd::num(l.dilation_w) + ", " +
                    fd::num(l.pads[0]) + ", " + fd::num(l.pads[1]) + ", " + fd::num(dw ? is.c : l.groups) + ");\n";
            break;
        }
        case OpKind::FullyConnected:
            use8(1);
            line += "lm_s8_fc(" + x0 + ", " + fd::num(is.elements()) + ", " + fd::num(params[in0].zero_point) +
                    ", " + y + ", " + fd::num(os.elements()) + ", " + p + "_w, " + p + "_b, " + p + "_s, " +
                    fd::num(params[i].zero_point) + ", " + fd::num(qmin) + ", " + fd::num(qmax) + ");\n";
            break;
        case OpKind::MaxPool:
            use8(2);
            line += "lm_s8_maxpool(" + x0 + ", " + fd::num(is.h) + ", " + fd::num(is.w) + ", " + fd::num(is.c) +
                    ", " + y + ", " + fd::num(os.h) + ", " + fd::num(os.w) + ", " + fd::num(l.kernel_h) + ", " +
                    fd::num(l.kernel_w) + ", " + fd::num(l.stride_h) + ", " + fd::num(l.stride_w) + ", " +
                    fd::num(l.pads[0]) + ", " + fd::num(l.pads[1]) + ");\n";
            break;
        case OpKind::GlobalAvgPool: {
            use8(3);
            const std::int64_t px = is.h * is.w;
            line += "lm_s8_gap(" + x0 + ", " + fd::num(px) + ", " + fd::num(is.c) + ", " + y + ", " +
                    fd::num(gavgpool_bias(px, params[in0])) + ", " +
                    fd::float_text(gavgpool_scale(px, params[in0], params[i])) + ", " +
                    fd::num(params[i].zero_point) + ");\n";
            break;
        }
        case OpKind::Add: {
            use8(4);
            const auto in1 = static_cast<std::size_t>(l.inputs[1]);
            const AddRequant r = make_add_requant(params[in0], params[in1], params[i], qmin, qmax);
            line += "lm_s8_add(" + x0 + ", " + a8(in1) + ", " + y + ", " + fd::num(os.elements()) + ", " +
                    fd::num(r.a_multiplier) + ", " + fd::num(r.b_multiplier) + ", " + fd::num(r.bias) + ", " +
                    fd::num(r.shift) + ", " + fd::num(r.out_zero_point) + ", " + fd::num(r.qmin) + ", " +
                    fd::num(r.qmax) + ");\n";
            break;
        }
        case OpKind::Relu:
        case OpKind::Relu6: {
            use8(5);
            const auto [lo, hi] = int8_act_bounds(activation_of_layer(l.op), params[i]);
            line += "lm_s8_clamp(" + x0 + ", " + y + ", " + fd::num(os.elements()) + ", " + fd::num(lo) + ", " +
                    fd::num(hi) + ");\n";
            break;
        }
        case OpKind::Sigmoid:
            use8(6);
            line += "lm_s8_lut(" + x0 + ", " + y + ", " + fd::num(os.elements()) + ", " + p + "_lut);\n";
            break;
        case OpKind::Flatten:
        case OpKind::Dropout: line += "/* no code: shares its input's bytes */\n"; break;
        default:  // check_int8_params lets no other op through outside the float layers
            throw ExportError("firmware int8: " + std::string(op_name(l.op)) + " layer '" + l.name +
                              "' has no portable int8 kernel");
        }
        body += line;
    }
    if (!is_float(n - 1))
        body += "    lm_s8_dequant(" + a8(n - 1) + ", " + fd::num(out_s.elements()) + ", " + q_of(n - 1) +
                ", output);\n";
    fs.code_bytes_estimate = code8 + (ku.code - 300);
    fs.flash_bytes = fs.weight_bytes + fs.code_bytes_estimate;

    const std::string stats_line =
        "/* int8: " + fd::num(fs.params) + " parameters, " + fd::num(fs.macs) + " MACs, " +
        fd::num(fs.weight_bytes) + " bytes of weights and constants, arena " + fd::num(fs.arena_bytes) +
        " bytes (the int8 input inside) + float output " + fd::num(fs.output_bytes) + " (" +
        fd::num(fs.in_place) + " ops in place; " + fd::num(static_cast<std::int64_t>(model.float_layers.size())) +
        " layers in float; TFLite Micro's greedy plan, int8: " + fd::num(fs.tflm_arena_bytes) + " bytes, " +
        fd::num(fs.tflm_arena_io_bytes) + " with the output inside) */\n";
    std::string& h = fs.header;
    h += "/* model.h: " + model_name + " (int8), generated by lamda export --firmware. Do not edit.\n"
         "   int model_run(const float* input, float* output, void* arena): NHWC, batch 1; the float\n"
         "   input is quantized into the arena (MODEL_INPUT(arena), int8); or write the int8 input there\n"
         "   yourself (model_quantize_input) and pass input = NULL. The output is float (dequantized).\n"
         "   arena: MODEL_ARENA_BYTES bytes, 4-byte aligned, owned by the caller. Returns 0, or -1 when\n"
         "   output or arena is null or the arena is misaligned. Reentrant. */\n";
    h += stats_line;
    h += "#ifndef LAMDA_FIRMWARE_MODEL_H\n#define LAMDA_FIRMWARE_MODEL_H\n\n#include <stdint.h>\n\n";
    h += "#define MODEL_INT8 1\n#define MODEL_INPUT_H " + fd::num(in_s.h) + "\n#define MODEL_INPUT_W " +
         fd::num(in_s.w) + "\n#define MODEL_INPUT_C " + fd::num(in_s.c) + "\n#define MODEL_INPUT_SIZE " +
         fd::num(in_s.elements()) + "\n#define MODEL_OUTPUT_H " + fd::num(out_s.h) + "\n#define MODEL_OUTPUT_W " +
         fd::num(out_s.w) + "\n#define MODEL_OUTPUT_C " + fd::num(out_s.c) + "\n#define MODEL_OUTPUT_SIZE " +
         fd::num(out_s.elements()) + "\n#define MODEL_ARENA_BYTES " +
         fd::num(std::max<std::int64_t>(fs.arena_bytes, 16)) + "\n#define MODEL_INPUT_OFFSET " +
         fd::num(fs.input_offset) + "\n#define MODEL_INPUT(arena) ((int8_t*)((char*)(arena) + MODEL_INPUT_OFFSET))" +
         "\n#define MODEL_INPUT_SCALE " + fd::float_text(params[0].scale) + "\n#define MODEL_INPUT_ZERO_POINT " +
         fd::num(params[0].zero_point) + "\n#define MODEL_WEIGHT_BYTES " + fd::num(fs.weight_bytes) +
         "\n#define MODEL_MACS " + fd::num(fs.macs) + "\n\n";
    h += "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
         "int model_run(const float* input, float* output, void* arena);\n"
         "int8_t model_quantize_input(float x); /* core/quant.hpp's quantize with the input's parameters */\n\n"
         "#ifdef __cplusplus\n}\n#endif\n\n#endif /* LAMDA_FIRMWARE_MODEL_H */\n";

    std::string& c = fs.source;
    c += "/* model.c: " + model_name + " (int8), generated by lamda export --firmware. Do not edit.\n"
         "   Portable C99: no heap, no static mutable state, only <stdint.h>, <string.h>, <math.h>.\n"
         "   Build without FMA contraction (-std=c99 does; or -ffp-contract=off) for bit-exact results. */\n";
    c += stats_line;
    c += "#include <stdint.h>\n#include <string.h>\n#include <math.h>\n\n#include \"model.h\"\n";
    c += fd::kernels_s8;
    if (s8[0] || s8[1] || s8[3]) c += fd::k_s8_requant;  // conv, fc, gap
    const char* bodies8[] = {fd::k_s8_conv, fd::k_s8_fc, fd::k_s8_maxpool, fd::k_s8_gap,
                             fd::k_s8_add, fd::k_s8_clamp, fd::k_s8_lut, fd::k_s8_mul};
    for (std::size_t k = 0; k < 8; ++k)
        if (s8[k]) c += bodies8[k];
    bool any_float = false;
    for (bool u : ku.used) any_float = any_float || u;
    if (any_float) c += fd::float_kernels(ku);
    c += "\n/* ---- weights and constants (flash) ---- */\n" + wsrc;
    c += "\nint8_t model_quantize_input(float x) { return lm_quantize(x, " + q_of(0) + "); }\n";
    c += "\n/* ---- the network: arena offsets from lamda's liveness plan (core/arena_plan.hpp) ---- */\n";
    c += "int model_run(const float* input, float* output, void* arena) {\n";
    c += "    int8_t* a8 = (int8_t*)arena;\n";
    c += "    if (!output || !arena || ((uintptr_t)arena & 3u) != 0) return -1;\n";
    c += body;
    c += "    return 0;\n}\n";
    return fs;
}

}  // namespace lamda

#endif  // LAMDA_DEPLOY_FIRMWARE_HPP
