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
    std::vector<bool> used(16, false);  // kernel families used
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = graph.layers[i];
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
            wsrc += "/* " + fd::comment_safe(l.name) + " */\n";
            fd::emit_array(wsrc, p + "_w", r, fs);
        } else if (l.op == OpKind::FullyConnected) {
            wsrc += "/* " + fd::comment_safe(l.name) + " */\n";
            fd::emit_array(wsrc, p + "_w", weights.at(l.name + ".weight").data, fs);
        }
        if ((l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d ||
             l.op == OpKind::FullyConnected) && l.bias)
            fd::emit_array(wsrc, p + "_b", weights.at(l.name + ".bias").data, fs);
        if (l.op == OpKind::BatchNorm) {
            const auto& gamma = weights.at(l.name + ".weight").data;
            const auto& beta = weights.at(l.name + ".bias").data;
            const auto& mean = weights.at(l.name + ".running_mean").data;
            const auto& var = weights.at(l.name + ".running_var").data;
            std::vector<float> scale(gamma.size());
            for (std::size_t c = 0; c < gamma.size(); ++c)
                scale[c] = static_cast<float>(gamma[c] / std::sqrt(static_cast<double>(var[c]) + l.eps));
            wsrc += "/* " + fd::comment_safe(l.name) + " (batchnorm) */\n";
            fd::emit_array(wsrc, p + "_mean", mean, fs);
            fd::emit_array(wsrc, p + "_scale", scale, fs);
            fd::emit_array(wsrc, p + "_shift", beta, fs);
        }
    }
    if (fs.weight_bytes >= arena_detail::max_tensor_bytes)
        throw ExportError("firmware: " + std::to_string(fs.weight_bytes) +
                          " bytes of weights do not fit a 32-bit target");

    // The run function.
    auto ptr = [&](std::size_t layer) -> std::string {
        const std::int64_t offset = plan.offset_of(layer);
        return offset < 0 ? std::string("output") : "(a + " + fd::num(offset / 4) + ")";
    };
    std::string body;
    std::int64_t code = 300;  // model_run's frame, the checks, lm_act
    // Kernel families in emission order: conv2d (and dwconv), fc, pool, gap, batchnorm, add, concat,
    // mul, act, softmax; their code estimates (Cortex-M4 -O2, rough).
    const std::int64_t kernel_cost[] = {600, 150, 450, 150, 150, 150, 150, 120, 150, 300};
    auto use = [&](int k) {
        if (!used[static_cast<std::size_t>(k)]) code += kernel_cost[k];
        used[static_cast<std::size_t>(k)] = true;
    };
    for (std::size_t i = 1; i < n; ++i) {
        const Layer& l = graph.layers[i];
        const std::string p = "L" + std::to_string(i);
        const std::string y = ptr(i);
        auto x = [&](std::size_t k) { return ptr(static_cast<std::size_t>(l.inputs[k])); };
        const Shape is = graph.layers[static_cast<std::size_t>(l.inputs.front())].shape;
        const Shape& os = l.shape;
        const std::string bias = l.bias ? p + "_b" : "0";
        std::string line = "    /* " + fd::num(static_cast<std::int64_t>(i)) + " " +
                           fd::comment_safe(l.name) + ": " + std::string(op_name(l.op)) + " " +
                           to_string(os) + " */\n    ";
        code += 40;
        switch (l.op) {
        case OpKind::Input: break;
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d: {
            // One kernel for both: a dwconv is a conv2d with groups = input channels.
            const bool dw = l.op == OpKind::DepthwiseConv2d;
            use(0);
            line += "lm_f32_conv2d(" + x(0) + ", " +
                    fd::num(is.h) + ", " + fd::num(is.w) + ", " + fd::num(is.c) + ", " + y + ", " +
                    fd::num(os.h) + ", " + fd::num(os.w) + ", " + fd::num(os.c) + ", " + p + "_w, " +
                    bias + ", " + fd::num(l.kernel_h) + ", " + fd::num(l.kernel_w) + ", " +
                    fd::num(l.stride_h) + ", " + fd::num(l.stride_w) + ", " + fd::num(l.dilation_h) +
                    ", " + fd::num(l.dilation_w) + ", " + fd::num(l.pads[0]) + ", " +
                    fd::num(l.pads[1]) + ", " + fd::num(dw ? is.c : l.groups) + ", " +
                    fd::num(fd::act_code(l.act)) + ");\n";
            break;
        }
        case OpKind::FullyConnected:
            use(1);
            line += "lm_f32_fc(" + x(0) + ", " + fd::num(is.elements()) + ", " + y + ", " +
                    fd::num(os.elements()) + ", " + p + "_w, " + bias + ", " +
                    fd::num(fd::act_code(l.act)) + ");\n";
            break;
        case OpKind::MaxPool:
        case OpKind::AvgPool:
            use(2);
            line += "lm_f32_pool(" + x(0) + ", " + fd::num(is.h) + ", " + fd::num(is.w) + ", " +
                    fd::num(is.c) + ", " + y + ", " + fd::num(os.h) + ", " + fd::num(os.w) + ", " +
                    fd::num(l.kernel_h) + ", " + fd::num(l.kernel_w) + ", " + fd::num(l.stride_h) +
                    ", " + fd::num(l.stride_w) + ", " + fd::num(l.pads[0]) + ", " +
                    fd::num(l.pads[1]) + ", " + (l.op == OpKind::MaxPool ? "1" : "0") + ");\n";
            break;
        case OpKind::GlobalAvgPool:
            use(3);
            line += "lm_f32_gap(" + x(0) + ", " + fd::num(is.h * is.w) + ", " + fd::num(is.c) +
                    ", " + y + ");\n";
            break;
        case OpKind::BatchNorm:
            use(4);
            line += "lm_f32_batchnorm(" + x(0) + ", " + y + ", " + fd::num(os.elements()) + ", " +
                    fd::num(os.c) + ", " + p + "_mean, " + p + "_scale, " + p + "_shift);\n";
            break;
        case OpKind::Add: {
            use(5);
            std::string xs;
            for (std::size_t k = 0; k < l.inputs.size(); ++k) xs += (k ? ", " : "") + x(k);
            line += "{\n        const float* const xs[" + fd::num(static_cast<std::int64_t>(l.inputs.size())) +
                    "] = {" + xs + "};\n        lm_f32_add(xs, " +
                    fd::num(static_cast<std::int64_t>(l.inputs.size())) + ", " + y + ", " +
                    fd::num(os.elements()) + ", " + fd::num(fd::act_code(l.act)) + ");\n    }\n";
            break;
        }
        case OpKind::Concat: {
            use(6);
            std::int64_t offset = 0;
            std::string parts;
            for (std::size_t k = 0; k < l.inputs.size(); ++k) {
                const Shape s = graph.layers[static_cast<std::size_t>(l.inputs[k])].shape;
                parts += (k ? "    " : "") + std::string("lm_f32_concat_part(") + x(k) + ", " +
                         fd::num(os.h * os.w) + ", " + fd::num(s.c) + ", " + y + ", " +
                         fd::num(os.c) + ", " + fd::num(offset) + ");\n";
                offset += s.c;
            }
            line += parts;
            break;
        }
        case OpKind::Mul: {
            use(7);
            const Shape b = graph.layers[static_cast<std::size_t>(l.inputs[1])].shape;
            line += "lm_f32_mul(" + x(0) + ", " + fd::num(is.elements()) + ", " + x(1) + ", " +
                    fd::num(b.elements()) + ", " + y + ", " + fd::num(os.elements()) + ");\n";
            break;
        }
        case OpKind::Relu:
        case OpKind::Relu6:
        case OpKind::HardSwish:
        case OpKind::HardSigmoid:
        case OpKind::Sigmoid:
            use(8);
            line += "lm_f32_act(" + x(0) + ", " + y + ", " + fd::num(os.elements()) + ", " +
                    fd::num(fd::act_code_of_op(l.op)) + ");\n";
            break;
        case OpKind::Softmax:
            use(9);
            line += "lm_f32_softmax(" + x(0) + ", " + y + ", " + fd::num(os.h * os.w) + ", " +
                    fd::num(os.c) + ");\n";
            break;
        case OpKind::Flatten:
        case OpKind::Dropout:
            // The same bytes as the input; the last layer copies into the output.
            if (i + 1 == n)
                line += "memmove(output, " + x(0) + ", " + fd::num(os.elements()) + " * sizeof(float));\n";
            else
                line += "/* no code: shares its input's bytes */\n";
            break;
        }
        body += line;
    }
    if (n == 1) body += "    memmove(output, " + ptr(0) + ", " + fd::num(in_s.elements()) + " * sizeof(float));\n";
    fs.code_bytes_estimate = code;
    fs.flash_bytes = fs.weight_bytes + code;

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
    c += fd::kernels_f32;
    const char* bodies[] = {fd::k_conv2d, fd::k_fc, fd::k_pool, fd::k_gap,
                            fd::k_batchnorm, fd::k_add, fd::k_concat, fd::k_mul, fd::k_act,
                            fd::k_softmax};
    if (used[0] || used[1] || used[5] || used[8]) c += fd::k_act_fn;
    for (std::size_t k = 0; k < 10; ++k)
        if (used[k]) c += bodies[k];
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

}  // namespace lamda

#endif  // LAMDA_DEPLOY_FIRMWARE_HPP
