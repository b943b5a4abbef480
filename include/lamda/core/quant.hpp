// lamda/core/quant.hpp: int8 quantization parameters, the quantized-model structure and THE
// requantization arithmetic every int8 path in lamda uses (the reference executor, the XNNPACK
// executor's parameter setup, the firmware kernels). One definition, so that the paths agree.
//
// Scheme (TensorFlow Lite's full-integer scheme, as XNNPACK runs it):
//   activations  per tensor, asymmetric:  real = scale * (q - zero_point),  q in [-128, 127]
//   weights      per output channel, symmetric (zero point 0): real = scale[c] * q, q in [-127, 127]
//                (fully connected is per tensor in XNNPACK's 2022-02 snapshot: one scale)
//   bias         int32, scale = input_scale * weight_scale[c], zero point 0
//
// Arithmetic (matches XNNPACK 0.0~git20220216, the Debian libxnnpack-dev this project builds on;
// checked against its kernel and parameter-init names and sources of that period):
//   * conv2d / dwconv (qc8, per-channel) and fully connected (qs8, per-tensor), "fp32"
//     requantization:  acc = bias[c] + sum (x - x_zp) * w             (exact int32)
//                      s   = input_scale * weight_scale[c] / output_scale   (float, in this order)
//                      y   = clamp(rne((float)acc * s) + y_zp, qmin, qmax)
//     rne is round-to-nearest, ties to even (cvtps2dq / vcvtn / lrintf in the default mode). XNNPACK
//     refuses s >= 256 (and its parameter init asserts s >= 2^-32): requant_scale_ok().
//     On x86 every qs8/qc8 GEMM, IGEMM and DWCONV kernel of that snapshot uses this fp32 variant, so
//     the reference is bit-exact there. On aarch64 the qc8 (per-channel) kernels are fp32 too
//     (bit-exact); the per-tensor qs8 kernels (fully connected) use "rndnu" fixed point, which can
//     differ by one step on ties: compare with a tolerance of one quantization step there.
//   * add (qs8 vadd): fixed point, not fp32. With a_s = a_scale / y_scale, b_s = b_scale / y_scale
//     (floats, each required in [2^-10, 2^8)):
//       shift = 20 - floor(log2(max(|a_s|, |b_s|)))          (in [12, 30])
//       a_m   = rne(a_s * 2^shift),  b_m = rne(b_s * 2^shift)
//       bias  = 2^(shift-1) - a_m * a_zp - b_m * b_zp
//       y     = clamp(((bias + a * a_m + b * b_m) >> shift) + y_zp, qmin, qmax)   (arithmetic shift)
//     i.e. ties round up (towards +inf). Same integers on every architecture: bit-exact.
//   * global average pooling (qs8 gavgpool, fp32 requantization) over n = h*w pixels:
//       acc = -n * x_zp + sum x;  s = x_scale / (y_scale * (float)n);  y = requantize_fp32(acc, s, ...)
//   * max pooling: max of the int8 values (input and output share their parameters).
//   * relu / relu6 fused into an op: qmin/qmax narrowed to quantize(0) / quantize(6) (clamp_bounds).
//   * sigmoid (qs8 LUT): y = clamp(lrintf(sigmoid(x_scale * (q - x_zp)) / y_scale) + y_zp), output
//     fixed at scale 1/256, zero point -128. expf may differ by an ulp between C libraries, so LUT
//     entries can differ by one step.
//   * convert f32 -> qs8:  q = clamp(rne(x * (1 / scale)) + zp)   (XNNPACK multiplies by the inverse)
//     convert qs8 -> f32:  x = (float)(q - zp) * scale
//     NaN converts to the zero point here; XNNPACK's result for NaN is architecture-dependent.
//   Ops without an int8 kernel in that snapshot (hardswish, hardsigmoid, softmax, mul with a
//   per-channel operand, avgpool with padding, concat with differing scales) run in float between
//   convert operators; QuantizedModel::float_layers lists them.
//
// Contract: part of the runtime-free core (lamda/core.hpp): never throws, no <iostream>, <thread>,
// no exceptions or RTTI needed, no third-party library. Every function is pure and total: bad
// parameters (zero, negative, NaN or infinite scales, zero points out of range) are reported by the
// *_ok / validate_* functions, never by a crash; the arithmetic functions assume validated params
// and saturate rather than overflow.
#ifndef LAMDA_CORE_QUANT_HPP
#define LAMDA_CORE_QUANT_HPP

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"

namespace lamda {

inline constexpr std::int32_t kQMin = -128;  // int8 range
inline constexpr std::int32_t kQMax = 127;
inline constexpr std::int32_t kWeightQMax = 127;  // symmetric weights use [-127, 127]

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

// Per-tensor asymmetric activation quantization.
struct ActivationQuant {
    float scale = 1.0f;
    std::int32_t zero_point = 0;  // in [-128, 127]
    friend bool operator==(const ActivationQuant& a, const ActivationQuant& b) noexcept {
        return a.scale == b.scale && a.zero_point == b.zero_point;
    }
    friend bool operator!=(const ActivationQuant& a, const ActivationQuant& b) noexcept {
        return !(a == b);
    }
};

// A usable scale: finite, positive and normal (a subnormal scale loses the precision the
// requantization relies on, and its inverse overflows).
inline bool scale_ok(float s) noexcept {
    return std::isfinite(s) && s >= std::numeric_limits<float>::min();
}

inline bool zero_point_ok(std::int32_t zp) noexcept { return zp >= kQMin && zp <= kQMax; }

inline bool activation_quant_ok(const ActivationQuant& q) noexcept {
    return scale_ok(q.scale) && zero_point_ok(q.zero_point);
}

// Why a scale is unusable, or an empty string: "is zero", "is negative", "is NaN", ...
inline std::string scale_problem(float s) {
    if (std::isnan(s)) return "is NaN";
    if (std::isinf(s)) return s > 0 ? "is infinite" : "is negative (infinite)";
    if (s == 0.0f) return "is zero";
    if (s < 0.0f) return "is negative";
    if (s < std::numeric_limits<float>::min()) return "is subnormal (too small)";
    return {};
}

// ---------------------------------------------------------------------------------------------
// Rounding
// ---------------------------------------------------------------------------------------------

// Round to nearest, ties to even, independent of the floating-point environment. x must be
// finite; the result saturates to the int32 range.
inline std::int32_t round_half_even(float x) noexcept {
    if (std::isnan(x)) return 0;
    if (x >= 2147483648.0f) return std::numeric_limits<std::int32_t>::max();
    if (x <= -2147483648.0f) return std::numeric_limits<std::int32_t>::min();
    const float f = std::floor(x);
    const float d = x - f;  // exact: f and x share the exponent range
    auto r = static_cast<std::int64_t>(f);
    if (d > 0.5f || (d == 0.5f && (r & 1) != 0)) ++r;
    return static_cast<std::int32_t>(r);
}

inline std::int32_t clamp_i32(std::int64_t v, std::int32_t lo, std::int32_t hi) noexcept {
    return static_cast<std::int32_t>(v < lo ? lo : (v > hi ? hi : v));
}

// ---------------------------------------------------------------------------------------------
// Convert f32 <-> int8
// ---------------------------------------------------------------------------------------------

inline std::int8_t quantize(float x, const ActivationQuant& q, std::int32_t qmin = kQMin,
                            std::int32_t qmax = kQMax) noexcept {
    if (std::isnan(x)) return static_cast<std::int8_t>(clamp_i32(q.zero_point, qmin, qmax));
    const float inv = 1.0f / q.scale;
    float v = x * inv;
    const float hi = static_cast<float>(qmax - q.zero_point);
    const float lo = static_cast<float>(qmin - q.zero_point);
    v = v > hi ? hi : (v < lo ? lo : v);
    return static_cast<std::int8_t>(
        clamp_i32(static_cast<std::int64_t>(round_half_even(v)) + q.zero_point, qmin, qmax));
}

inline float dequantize(std::int8_t v, const ActivationQuant& q) noexcept {
    return static_cast<float>(static_cast<std::int32_t>(v) - q.zero_point) * q.scale;
}

// ---------------------------------------------------------------------------------------------
// Choosing parameters
// ---------------------------------------------------------------------------------------------

// Asymmetric parameters covering [lo, hi] (widened to include 0, so zero is exact: q(0) is the
// zero point). A range of zeros gets a tiny positive scale; NaN bounds count as 0 and infinite
// ones as +-1e30 (calibration should never produce either).
inline ActivationQuant choose_activation_quant(float lo, float hi) noexcept {
    if (std::isnan(lo)) lo = 0.0f;
    if (std::isnan(hi)) hi = 0.0f;
    if (std::isinf(lo)) lo = lo < 0 ? -1e30f : 1e30f;
    if (std::isinf(hi)) hi = hi < 0 ? -1e30f : 1e30f;
    if (lo > 0.0f) lo = 0.0f;
    if (hi < 0.0f) hi = 0.0f;
    if (hi - lo < 1e-8f) hi = lo + 1e-8f;  // all zeros: any small positive scale works
    ActivationQuant q;
    const double scale = (static_cast<double>(hi) - static_cast<double>(lo)) / 255.0;
    q.scale = static_cast<float>(scale);
    if (!scale_ok(q.scale)) q.scale = std::numeric_limits<float>::min();
    // zero point from the low end (TFLite's nudging): q(lo) = -128.
    const double zp = static_cast<double>(kQMin) - static_cast<double>(lo) / q.scale;
    const double r = std::round(zp);
    q.zero_point = r < kQMin ? kQMin : (r > kQMax ? kQMax : static_cast<std::int32_t>(r));
    return q;
}

// Symmetric per-channel weight scale for a channel whose largest |w| is absmax: absmax / 127.
// A channel of zeros gets 1/127 (its weights quantize to 0 with any scale; a normal scale keeps
// the bias scale and the requantization scale usable).
inline float choose_weight_scale(float absmax) noexcept {
    if (!std::isfinite(absmax) || absmax <= 0.0f) return 1.0f / 127.0f;
    const float s = absmax / 127.0f;
    return scale_ok(s) ? s : std::numeric_limits<float>::min();
}

inline std::int8_t quantize_weight(float w, float scale) noexcept {
    if (std::isnan(w)) return 0;
    float v = w / scale;
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    return static_cast<std::int8_t>(round_half_even(v));
}

// Bias in int32 with scale input_scale * weight_scale (saturating).
inline float bias_scale(float input_scale, float weight_scale) noexcept {
    return input_scale * weight_scale;
}
inline std::int32_t quantize_bias(float b, float input_scale, float weight_scale) noexcept {
    if (std::isnan(b)) return 0;
    return round_half_even(b / bias_scale(input_scale, weight_scale));
}

// ---------------------------------------------------------------------------------------------
// fp32 requantization (conv, dwconv, fully connected, global average pooling)
// ---------------------------------------------------------------------------------------------

// The requantization scale of a conv / fc output channel, computed as XNNPACK computes it.
inline float conv_requant_scale(float input_scale, float weight_scale, float output_scale) noexcept {
    const float t = input_scale * weight_scale;
    return t / output_scale;
}

// XNNPACK accepts requantization scales in [2^-32, 256).
inline bool requant_scale_ok(float s) noexcept {
    return std::isfinite(s) && s >= 0x1.0p-32f && s < 256.0f;
}

// y = clamp(rne((float)acc * scale) + zero_point, qmin, qmax)
inline std::int8_t requantize_fp32(std::int32_t acc, float scale, std::int32_t zero_point,
                                   std::int32_t qmin = kQMin, std::int32_t qmax = kQMax) noexcept {
    float v = static_cast<float>(acc) * scale;
    const float hi = static_cast<float>(qmax - zero_point);
    const float lo = static_cast<float>(qmin - zero_point);
    v = v > hi ? hi : (v < lo ? lo : v);  // clamping first keeps the conversion in range
    return static_cast<std::int8_t>(
        clamp_i32(static_cast<std::int64_t>(round_half_even(v)) + zero_point, qmin, qmax));
}

// Global average pooling over n pixels: bias and scale as XNNPACK's setup computes them.
inline std::int32_t gavgpool_bias(std::int64_t n, const ActivationQuant& in) noexcept {
    return static_cast<std::int32_t>(-n * in.zero_point);
}
inline float gavgpool_scale(std::int64_t n, const ActivationQuant& in,
                            const ActivationQuant& out) noexcept {
    return in.scale / (out.scale * static_cast<float>(n));
}

// The int8 bounds of an output whose float values are clamped to [lo, hi] (relu: 0, +inf;
// relu6: 0, 6), intersected with the int8 range.
inline std::pair<std::int32_t, std::int32_t> clamp_bounds(const ActivationQuant& out, float lo,
                                                          float hi) noexcept {
    std::int32_t qlo = kQMin, qhi = kQMax;
    if (std::isfinite(lo)) qlo = quantize(lo, out);
    if (std::isfinite(hi)) qhi = quantize(hi, out);
    return {qlo, qhi};
}

// ---------------------------------------------------------------------------------------------
// Add (qs8 vadd: fixed point)
// ---------------------------------------------------------------------------------------------

struct AddRequant {
    std::int32_t a_multiplier = 0, b_multiplier = 0;
    std::int32_t bias = 0;
    std::uint32_t shift = 0;
    std::int32_t out_zero_point = 0;
    std::int32_t qmin = kQMin, qmax = kQMax;
};

// XNNPACK refuses a_scale / out_scale (and b) outside [2^-10, 2^8).
inline bool add_scales_ok(const ActivationQuant& a, const ActivationQuant& b,
                          const ActivationQuant& out) noexcept {
    const float as = a.scale / out.scale, bs = b.scale / out.scale;
    return std::isfinite(as) && std::isfinite(bs) && as >= 0x1.0p-10f && as < 0x1.0p+8f &&
           bs >= 0x1.0p-10f && bs < 0x1.0p+8f;
}

// Requires add_scales_ok(a, b, out).
inline AddRequant make_add_requant(const ActivationQuant& a, const ActivationQuant& b,
                                   const ActivationQuant& out, std::int32_t qmin = kQMin,
                                   std::int32_t qmax = kQMax) noexcept {
    const float as = a.scale / out.scale, bs = b.scale / out.scale;
    const float mx = as > bs ? as : bs;
    std::uint32_t bits = 0;
    std::memcpy(&bits, &mx, sizeof bits);
    const std::int32_t exponent = static_cast<std::int32_t>(bits >> 23) - 127;
    std::int32_t shift = 20 - exponent;
    if (shift < 12) shift = 12;  // only outside add_scales_ok
    if (shift > 30) shift = 30;
    AddRequant p;
    p.shift = static_cast<std::uint32_t>(shift);
    p.a_multiplier = round_half_even(std::ldexp(as, shift));
    p.b_multiplier = round_half_even(std::ldexp(bs, shift));
    const std::int64_t bias = (std::int64_t{1} << (shift - 1)) -
                              std::int64_t{p.a_multiplier} * a.zero_point -
                              std::int64_t{p.b_multiplier} * b.zero_point;
    p.bias = static_cast<std::int32_t>(bias);  // |bias| < 2^31 for valid parameters
    p.out_zero_point = out.zero_point;
    p.qmin = qmin;
    p.qmax = qmax;
    return p;
}

inline std::int8_t add_requantize(std::int8_t a, std::int8_t b, const AddRequant& p) noexcept {
    const std::int64_t acc = std::int64_t{p.bias} + std::int64_t{a} * p.a_multiplier +
                             std::int64_t{b} * p.b_multiplier;
    // Arithmetic shift right: floor division by 2^shift (written out: >> on negatives is
    // implementation-defined before C++20).
    const std::int64_t d = std::int64_t{1} << p.shift;
    std::int64_t q = acc / d;
    if (acc % d != 0 && acc < 0) --q;
    return static_cast<std::int8_t>(clamp_i32(q + p.out_zero_point, p.qmin, p.qmax));
}

// ---------------------------------------------------------------------------------------------
// Sigmoid (qs8 lookup table)
// ---------------------------------------------------------------------------------------------

// XNNPACK's qs8 sigmoid requires the output at scale 1/256, zero point -128.
inline ActivationQuant sigmoid_output_quant() noexcept { return ActivationQuant{1.0f / 256.0f, -128}; }

inline std::int8_t sigmoid_lut_entry(std::int8_t q, const ActivationQuant& in,
                                     const ActivationQuant& out) noexcept {
    const float x = in.scale * static_cast<float>(static_cast<std::int32_t>(q) - in.zero_point);
    const float s = 1.0f / (1.0f + std::exp(-x));
    const float v = s / out.scale;
    const std::int64_t r = static_cast<std::int64_t>(round_half_even(v)) + out.zero_point;
    return static_cast<std::int8_t>(clamp_i32(r, kQMin, kQMax));
}

// ---------------------------------------------------------------------------------------------
// The quantized model
// ---------------------------------------------------------------------------------------------

// One layer with weights (conv2d, dwconv, fc; batch norm folded first). Weights keep the float
// layout of data/weights.hpp (PyTorch's OIHW / [out][in]); weight_scales has one entry per output
// channel, or one for the whole tensor (fully connected in XNNPACK's snapshot).
struct QuantizedWeights {
    std::string layer;                      // DSL layer name
    std::vector<std::int64_t> weight_shape;
    std::vector<std::int8_t> weights;
    std::vector<float> weight_scales;       // > 0; size out_channels or 1
    std::vector<std::int32_t> bias;         // size out_channels (zeros when the layer has none)

    float weight_scale(std::size_t channel) const noexcept {
        return weight_scales.size() == 1 ? weight_scales[0] : weight_scales[channel];
    }
};

// A quantized model: int8 weights per layer and activation parameters per value (the output of
// each layer, by layer name; the input layer's entry is the model input's parameters).
struct QuantizedModel {
    std::vector<QuantizedWeights> layers;
    std::vector<std::pair<std::string, ActivationQuant>> activations;
    std::vector<std::string> float_layers;  // layers run in float between convert operators

    const QuantizedWeights* find_layer(const std::string& name) const noexcept {
        for (const auto& l : layers)
            if (l.layer == name) return &l;
        return nullptr;
    }
    const ActivationQuant* find_activation(const std::string& name) const noexcept {
        for (const auto& a : activations)
            if (a.first == name) return &a.second;
        return nullptr;
    }
};

// Checks scales, zero points and sizes; the first problem found, naming the tensor.
inline std::optional<Error> validate_quantized_model(const QuantizedModel& m) {
    for (const auto& a : m.activations) {
        if (!scale_ok(a.second.scale))
            return Error(ErrorKind::input, Where{{}, 0, 0, a.first + ".act_scale"},
                         "activation scale " + scale_problem(a.second.scale),
                         "scales must be finite and positive");
        if (!zero_point_ok(a.second.zero_point))
            return Error(ErrorKind::input, Where{{}, 0, 0, a.first + ".act_zero_point"},
                         "activation zero point " + std::to_string(a.second.zero_point) +
                             " is outside [-128, 127]");
    }
    for (const auto& l : m.layers) {
        std::int64_t n = 1;
        for (std::int64_t d : l.weight_shape) {
            if (d <= 0 || n > (std::int64_t{1} << 40) / d)
                return Error(ErrorKind::input, Where{{}, 0, 0, l.layer + ".weight"},
                             "weight shape has a non-positive or too large dimension");
            n *= d;
        }
        if (l.weight_shape.empty() || static_cast<std::int64_t>(l.weights.size()) != n)
            return Error(ErrorKind::input, Where{{}, 0, 0, l.layer + ".weight"},
                         "weight count " + std::to_string(l.weights.size()) +
                             " does not match its shape");
        const std::size_t out = static_cast<std::size_t>(l.weight_shape[0]);
        if (l.weight_scales.size() != 1 && l.weight_scales.size() != out)
            return Error(ErrorKind::input, Where{{}, 0, 0, l.layer + ".weight_scale"},
                         "has " + std::to_string(l.weight_scales.size()) +
                             " scales; expected 1 or " + std::to_string(out) +
                             " (one per output channel)");
        for (std::size_t c = 0; c < l.weight_scales.size(); ++c)
            if (!scale_ok(l.weight_scales[c]))
                return Error(ErrorKind::input, Where{{}, 0, 0, l.layer + ".weight_scale"},
                             "scale of channel " + std::to_string(c) + " " +
                                 scale_problem(l.weight_scales[c]),
                             "scales must be finite and positive");
        if (l.bias.size() != out)
            return Error(ErrorKind::input, Where{{}, 0, 0, l.layer + ".bias"},
                         "has " + std::to_string(l.bias.size()) + " values; expected " +
                             std::to_string(out));
    }
    return std::nullopt;
}

}  // namespace lamda

#endif  // LAMDA_CORE_QUANT_HPP
