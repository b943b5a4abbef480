// lamda/exec/reference_int8.hpp: post-training quantization (PTQ) and the reference executor's
// integer path. Slow, plain loops, and exactly core/quant.hpp's arithmetic (which matches XNNPACK's
// 2022-02 qs8/qc8 kernels), so the XNNPACK int8 executor and the firmware kernels are checked
// against it op by op.
//
//   lamda::PtqResult q = lamda::quantize_ptq(graph, weights, calibration_images, {});
//   lamda::Int8Run r = lamda::run_reference_int8(q.graph, q.model, q.float_weights, input);
//   r.output  // the graph output as float (dequantized, or computed in float if that layer is)
//
// Which ops run in int8 (as in XNNPACK's snapshot): conv2d, dwconv and fc with act none, relu or
// relu6 (qc8 per-channel conv, qs8 per-tensor fc); add of two inputs (qs8 vadd) with act none,
// relu or relu6; global average pooling; max pooling, relu, relu6, flatten and dropout (on int8
// values, parameters unchanged); sigmoid (qs8 lookup table, output 1/256, -128). Batch norm is folded
// into its producer first (exec/fold.hpp); one that cannot be folded runs in float. Everything else
// (avgpool, concat, mul, softmax, hardswish, hardsigmoid, convs with act hardswish/hardsigmoid/
// sigmoid, add of more than two inputs) runs in float between convert operators: the inputs are
// dequantized, the float reference op runs, its output is quantized again with its calibrated
// parameters (and the graph output stays float). PtqResult::float_layers lists them with why.
//
// Calibration: each layer's output range over the calibration images, through the float
// reference executor; `range` picks it from the observed values: MinMax (the default: the full
// observed range, nothing clipped) or Percentile (the p-th percentile of each tail of a bounded
// sample of values, clipping outliers for a finer step). docs/int8.md says which measured better.
//
// Contract: throws ExecutorError naming the layer on an unrunnable graph, weights that do not fit,
// parameters XNNPACK would refuse, or an input of the wrong shape. Memory is bounded: the int8
// executor holds one value per layer; calibration keeps at most `sample_per_layer` values per
// layer.
#ifndef LAMDA_EXEC_REFERENCE_INT8_HPP
#define LAMDA_EXEC_REFERENCE_INT8_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../core/ir.hpp"
#include "../core/quant.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"
#include "fold.hpp"
#include "reference.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Which layers run in int8
// ---------------------------------------------------------------------------------------------

// Empty when `l` has an int8 kernel (XNNPACK 2022-02 and this reference); otherwise why not.
inline std::string int8_unsupported_reason(const Layer& l) {
    const bool simple_act =
        l.act == Activation::None || l.act == Activation::Relu || l.act == Activation::Relu6;
    switch (l.op) {
    case OpKind::Input:
    case OpKind::MaxPool:
    case OpKind::GlobalAvgPool:
    case OpKind::Relu:
    case OpKind::Relu6:
    case OpKind::Sigmoid:
    case OpKind::Flatten:
    case OpKind::Dropout: return {};
    case OpKind::Conv2d:
    case OpKind::DepthwiseConv2d:
    case OpKind::FullyConnected:
        return simple_act ? std::string() : "fused act=" + std::string(activation_name(l.act)) +
                                                " has no int8 kernel";
    case OpKind::Add:
        if (l.inputs.size() != 2) return "add of " + std::to_string(l.inputs.size()) + " inputs";
        return simple_act ? std::string() : "fused act=" + std::string(activation_name(l.act)) +
                                                " has no int8 kernel";
    case OpKind::BatchNorm: return "batch norm that cannot be folded";
    case OpKind::AvgPool: return "avgpool has no qs8 operator in XNNPACK 2022-02";
    case OpKind::Concat: return "concat has no qs8 operator in XNNPACK 2022-02";
    case OpKind::Mul: return "mul runs in float (broadcast multiply)";
    case OpKind::Softmax: return "softmax has no qs8 operator";
    case OpKind::HardSwish: return "hardswish has no qs8 operator in XNNPACK 2022-02";
    case OpKind::HardSigmoid: return "hardsigmoid has no qs8 operator";
    }
    return "unknown op";
}

// Ops whose int8 output keeps the input's parameters (no requantization).
inline bool int8_passthrough(OpKind op) noexcept {
    return op == OpKind::MaxPool || op == OpKind::Relu || op == OpKind::Relu6 ||
           op == OpKind::Flatten || op == OpKind::Dropout;
}

inline std::pair<std::int32_t, std::int32_t> int8_act_bounds(Activation act, const ActivationQuant& out) {
    if (act == Activation::Relu) return clamp_bounds(out, 0.0f, std::numeric_limits<float>::infinity());
    if (act == Activation::Relu6) return clamp_bounds(out, 0.0f, 6.0f);
    return {kQMin, kQMax};
}

// ---------------------------------------------------------------------------------------------
// The int8 executor
// ---------------------------------------------------------------------------------------------

struct Int8Value {
    Shape shape;
    std::vector<std::int8_t> q;  // NHWC
    ActivationQuant params;
};

struct Int8Run {
    std::vector<Int8Value> values;  // per layer (float layers: their output quantized)
    Tensor output;                  // the graph output in float
};

namespace detail {

inline bool in_list(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

inline Tensor dequantize_value(const Int8Value& v) {
    Tensor t(v.shape);
    for (std::size_t i = 0; i < v.q.size(); ++i) t.data[i] = dequantize(v.q[i], v.params);
    return t;
}

inline Int8Value quantize_tensor(const Tensor& t, const ActivationQuant& p) {
    Int8Value v{t.shape, std::vector<std::int8_t>(t.data.size()), p};
    for (std::size_t i = 0; i < t.data.size(); ++i) v.q[i] = quantize(t.data[i], p);
    return v;
}

// conv2d and dwconv (dw: output channel oc reads input channel oc / multiplier).
inline Int8Value int8_conv(const Layer& l, const Int8Value& x, const QuantizedWeights& w,
                           const ActivationQuant& out) {
    Int8Value y{l.shape, std::vector<std::int8_t>(static_cast<std::size_t>(l.shape.elements())), out};
    const bool dw = l.op == OpKind::DepthwiseConv2d;
    const std::int64_t groups = dw ? 1 : l.groups;
    const std::int64_t cig = dw ? 1 : x.shape.c / groups, cog = dw ? 1 : l.out_channels / groups;
    const auto [qmin, qmax] = int8_act_bounds(l.act, out);
    std::vector<float> scale(static_cast<std::size_t>(l.shape.c));
    for (std::size_t c = 0; c < scale.size(); ++c)
        scale[c] = conv_requant_scale(x.params.scale, w.weight_scale(c), out.scale);
    const std::int32_t xzp = x.params.zero_point;
    for (std::int64_t oy = 0; oy < l.shape.h; ++oy)
        for (std::int64_t ox = 0; ox < l.shape.w; ++ox)
            for (std::int64_t oc = 0; oc < l.shape.c; ++oc) {
                const std::int64_t cbase = dw ? oc / l.multiplier : (oc / cog) * cig;
                std::int64_t acc = w.bias[static_cast<std::size_t>(oc)];
                for (std::int64_t ky = 0; ky < l.kernel_h; ++ky) {
                    const std::int64_t iy = oy * l.stride_h - l.pads[0] + ky * l.dilation_h;
                    if (iy < 0 || iy >= x.shape.h) continue;  // padding is the zero point: adds 0
                    for (std::int64_t kx = 0; kx < l.kernel_w; ++kx) {
                        const std::int64_t ix = ox * l.stride_w - l.pads[1] + kx * l.dilation_w;
                        if (ix < 0 || ix >= x.shape.w) continue;
                        for (std::int64_t ic = 0; ic < cig; ++ic) {
                            const auto wi = static_cast<std::size_t>(((oc * cig + ic) * l.kernel_h + ky) * l.kernel_w + kx);
                            const auto xi = static_cast<std::size_t>((iy * x.shape.w + ix) * x.shape.c + cbase + ic);
                            acc += std::int64_t{w.weights[wi]} * (std::int64_t{x.q[xi]} - xzp);
                        }
                    }
                }
                const auto yi = static_cast<std::size_t>((oy * l.shape.w + ox) * l.shape.c + oc);
                y.q[yi] = requantize_fp32(static_cast<std::int32_t>(acc), scale[static_cast<std::size_t>(oc)],
                                          out.zero_point, qmin, qmax);
            }
    return y;
}

inline Int8Value int8_fc(const Layer& l, const Int8Value& x, const QuantizedWeights& w,
                         const ActivationQuant& out) {
    Int8Value y{l.shape, std::vector<std::int8_t>(static_cast<std::size_t>(l.shape.elements())), out};
    const auto [qmin, qmax] = int8_act_bounds(l.act, out);
    const std::size_t in = x.q.size();
    for (std::size_t o = 0; o < y.q.size(); ++o) {
        std::int64_t acc = w.bias[o];
        for (std::size_t i = 0; i < in; ++i)
            acc += std::int64_t{w.weights[o * in + i]} * (std::int64_t{x.q[i]} - x.params.zero_point);
        y.q[o] = requantize_fp32(static_cast<std::int32_t>(acc),
                                 conv_requant_scale(x.params.scale, w.weight_scale(o), out.scale),
                                 out.zero_point, qmin, qmax);
    }
    return y;
}

inline Int8Value int8_maxpool(const Layer& l, const Int8Value& x) {
    Int8Value y{l.shape, std::vector<std::int8_t>(static_cast<std::size_t>(l.shape.elements())), x.params};
    for (std::int64_t oy = 0; oy < l.shape.h; ++oy)
        for (std::int64_t ox = 0; ox < l.shape.w; ++ox)
            for (std::int64_t c = 0; c < l.shape.c; ++c) {
                std::int32_t m = kQMin;
                for (std::int64_t ky = 0; ky < l.kernel_h; ++ky) {
                    const std::int64_t iy = oy * l.stride_h - l.pads[0] + ky;
                    if (iy < 0 || iy >= x.shape.h) continue;
                    for (std::int64_t kx = 0; kx < l.kernel_w; ++kx) {
                        const std::int64_t ix = ox * l.stride_w - l.pads[1] + kx;
                        if (ix < 0 || ix >= x.shape.w) continue;
                        m = std::max<std::int32_t>(m, x.q[static_cast<std::size_t>((iy * x.shape.w + ix) * x.shape.c + c)]);
                    }
                }
                y.q[static_cast<std::size_t>((oy * l.shape.w + ox) * l.shape.c + c)] = static_cast<std::int8_t>(m);
            }
    return y;
}

inline Int8Value int8_gap(const Layer& l, const Int8Value& x, const ActivationQuant& out) {
    Int8Value y{l.shape, std::vector<std::int8_t>(static_cast<std::size_t>(l.shape.c)), out};
    const std::int64_t n = x.shape.h * x.shape.w;
    const auto C = static_cast<std::size_t>(x.shape.c);
    const float s = gavgpool_scale(n, x.params, out);
    for (std::size_t c = 0; c < C; ++c) {
        std::int64_t acc = gavgpool_bias(n, x.params);
        for (std::size_t p = 0; p < static_cast<std::size_t>(n); ++p) acc += x.q[p * C + c];
        y.q[c] = requantize_fp32(static_cast<std::int32_t>(acc), s, out.zero_point);
    }
    return y;
}

inline void check_int8_params(const Graph& g, const QuantizedModel& m) {
    for (const Layer& l : g.layers) {
        if (in_list(m.float_layers, l.name)) continue;
        const std::string why = int8_unsupported_reason(l);
        if (!why.empty())
            throw ExecutorError(std::string(op_name(l.op)) + " layer '" + l.name + "' has no int8 kernel (" + why +
                                ") and is not listed as a float layer");
        const ActivationQuant* out = m.find_activation(l.name);
        if (!out) throw ExecutorError("layer '" + l.name + "' has no activation parameters");
        auto in_params = [&](std::size_t k) {
            const ActivationQuant* p = m.find_activation(g.layers[static_cast<std::size_t>(l.inputs[k])].name);
            return p ? *p : ActivationQuant{};
        };
        if (l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d || l.op == OpKind::FullyConnected) {
            const QuantizedWeights* w = m.find_layer(l.name);
            if (!w) throw ExecutorError("layer '" + l.name + "' has no int8 weights");
            for (std::size_t c = 0; c < static_cast<std::size_t>(l.shape.c); ++c) {
                const float s = conv_requant_scale(in_params(0).scale, w->weight_scale(c), out->scale);
                if (!requant_scale_ok(s))
                    throw ExecutorError("layer '" + l.name + "': requantization scale " + std::to_string(s) +
                                        " of channel " + std::to_string(c) + " is outside [2^-32, 256)");
            }
        }
        if (l.op == OpKind::Add && !add_scales_ok(in_params(0), in_params(1), *out))
            throw ExecutorError("add layer '" + l.name +
                                "': input/output scale ratios are outside XNNPACK's [2^-10, 2^8)");
        if (l.op == OpKind::Sigmoid && *out != sigmoid_output_quant())
            throw ExecutorError("sigmoid layer '" + l.name + "': int8 output must be scale 1/256, zero point -128");
    }
}

}  // namespace detail

// Runs `graph` (batch norms folded, shapes inferred) in int8 with `m`; layers in m.float_layers
// run in float with `float_weights`. Throws ExecutorError naming the layer.
inline Int8Run run_reference_int8(const Graph& graph, const QuantizedModel& m, const Weights& float_weights,
                                  const Tensor& input) {
    detail::check_runnable(graph);
    if (const std::optional<Error> e = validate_quantized_model(m))
        throw ExecutorError("quantized model: " + e->where.field + ": " + e->message);
    detail::check_int8_params(graph, m);
    const Shape in_shape = graph.layers.front().shape;
    if (input.shape != in_shape || static_cast<std::int64_t>(input.data.size()) != in_shape.elements())
        throw ExecutorError("input has shape " + to_string(input.shape) + ", the graph expects " +
                            to_string(in_shape));
    Int8Run run;
    run.values.resize(graph.layers.size());
    Tensor last_float;
    bool last_is_float = false;
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        const ActivationQuant* outp = m.find_activation(l.name);
        auto arg = [&](std::size_t k) -> const Int8Value& {
            return run.values[static_cast<std::size_t>(l.inputs[k])];
        };
        if (detail::in_list(m.float_layers, l.name)) {
            if (!outp) throw ExecutorError("layer '" + l.name + "' has no activation parameters");
            std::vector<Tensor> ins;
            for (std::size_t k = 0; k < l.inputs.size(); ++k) ins.push_back(detail::dequantize_value(arg(k)));
            Tensor y = detail::ref_layer(l, [&ins](std::size_t k) -> const Tensor& { return ins[k]; },
                                         float_weights, input);
            run.values[i] = detail::quantize_tensor(y, *outp);
            last_float = std::move(y);
            last_is_float = true;
            continue;
        }
        last_is_float = false;
        switch (l.op) {
        case OpKind::Input: run.values[i] = detail::quantize_tensor(input, *outp); break;
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d:
            run.values[i] = detail::int8_conv(l, arg(0), *m.find_layer(l.name), *outp);
            break;
        case OpKind::FullyConnected:
            run.values[i] = detail::int8_fc(l, arg(0), *m.find_layer(l.name), *outp);
            break;
        case OpKind::MaxPool: run.values[i] = detail::int8_maxpool(l, arg(0)); break;
        case OpKind::GlobalAvgPool: run.values[i] = detail::int8_gap(l, arg(0), *outp); break;
        case OpKind::Relu:
        case OpKind::Relu6: {
            Int8Value y = arg(0);
            const auto [lo, hi] = int8_act_bounds(activation_of_layer(l.op), y.params);
            for (std::int8_t& v : y.q) v = static_cast<std::int8_t>(std::min<std::int32_t>(std::max<std::int32_t>(v, lo), hi));
            run.values[i] = std::move(y);
            break;
        }
        case OpKind::Flatten:
        case OpKind::Dropout: {
            Int8Value y = arg(0);
            y.shape = l.shape;
            run.values[i] = std::move(y);
            break;
        }
        case OpKind::Add: {
            const Int8Value& a = arg(0);
            const Int8Value& b = arg(1);
            const auto [lo, hi] = int8_act_bounds(l.act, *outp);
            const AddRequant p = make_add_requant(a.params, b.params, *outp, lo, hi);
            Int8Value y{l.shape, std::vector<std::int8_t>(a.q.size()), *outp};
            for (std::size_t j = 0; j < y.q.size(); ++j) y.q[j] = add_requantize(a.q[j], b.q[j], p);
            run.values[i] = std::move(y);
            break;
        }
        case OpKind::Sigmoid: {
            const Int8Value& x = arg(0);
            std::int8_t lut[256];
            for (int k = 0; k < 256; ++k)
                lut[k] = sigmoid_lut_entry(static_cast<std::int8_t>(k - 128), x.params, *outp);
            Int8Value y{l.shape, std::vector<std::int8_t>(x.q.size()), *outp};
            for (std::size_t j = 0; j < y.q.size(); ++j) y.q[j] = lut[x.q[j] + 128];
            run.values[i] = std::move(y);
            break;
        }
        default:  // check_int8_params refused every other op
            throw ExecutorError("layer '" + l.name + "' has no int8 kernel");
        }
    }
    run.output = last_is_float ? std::move(last_float) : detail::dequantize_value(run.values.back());
    return run;
}

// ---------------------------------------------------------------------------------------------
// Post-training quantization
// ---------------------------------------------------------------------------------------------

enum class CalibrationRange { MinMax, Percentile };

inline const char* calibration_range_name(CalibrationRange r) noexcept {
    return r == CalibrationRange::MinMax ? "minmax" : "percentile";
}

struct PtqOptions {
    CalibrationRange range = CalibrationRange::MinMax;
    double percentile = 99.99;             // Percentile: kept fraction of each tail, in percent
    std::size_t sample_per_layer = 200000;  // values kept per layer for Percentile
};

struct PtqResult {
    Graph graph;            // batch norms folded: the graph the quantized weights fit
    QuantizedModel model;
    Weights float_weights;  // the F32 tensors of the float layers
    std::vector<std::pair<std::string, std::string>> float_reasons;  // layer, why it runs in float
    std::vector<std::string> folded;  // batch norms folded away
};

// Quantizes `weights` (which fit `graph`, or `graph` with batch norms folded) using
// `calibration` images (each the graph's input shape). Throws ExecutorError.
inline PtqResult quantize_ptq(const Graph& graph, const Weights& weights,
                              const std::vector<Tensor>& calibration, const PtqOptions& opt = {}) {
    if (calibration.empty()) throw ExecutorError("quantization needs at least one calibration image");
    PtqResult r;
    Weights w;
    if (validate_weights(graph, weights).empty()) {
        auto folded = fold_batchnorm(graph, weights);
        r.graph = std::move(folded.first);
        w = std::move(folded.second);
        for (const Layer& l : graph.layers)
            if (l.op == OpKind::BatchNorm && r.graph.find(l.name) < 0) r.folded.push_back(l.name);
    } else {
        r.graph = fold_batchnorm_graph(graph);
        detail::check_weights(r.graph, weights);
        w = weights;
    }
    const Graph& g = r.graph;
    const std::size_t n = g.layers.size();

    // Calibration: each layer's observed range (and a bounded sample for percentiles).
    std::vector<float> lo(n, std::numeric_limits<float>::infinity()), hi(n, -std::numeric_limits<float>::infinity());
    std::vector<std::vector<float>> sample(n);
    std::uint64_t rng = 0x9E3779B97F4A7C15ull;
    std::vector<std::uint64_t> seen(n, 0);
    for (const Tensor& img : calibration) {
        const std::vector<Tensor> vals = run_reference_all(g, w, img);
        for (std::size_t i = 0; i < n; ++i)
            for (float v : vals[i].data) {
                if (!std::isfinite(v)) continue;
                lo[i] = std::min(lo[i], v);
                hi[i] = std::max(hi[i], v);
                if (opt.range != CalibrationRange::Percentile) continue;
                // Reservoir sampling: a uniform sample of at most sample_per_layer values.
                ++seen[i];
                if (sample[i].size() < opt.sample_per_layer) {
                    sample[i].push_back(v);
                } else {
                    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                    const std::uint64_t k = rng % seen[i];
                    if (k < sample[i].size()) sample[i][static_cast<std::size_t>(k)] = v;
                }
            }
    }
    auto range_of = [&](std::size_t i) -> std::pair<float, float> {
        if (!(lo[i] <= hi[i])) return {0.0f, 0.0f};
        if (opt.range == CalibrationRange::MinMax || sample[i].size() < 100) return {lo[i], hi[i]};
        std::vector<float>& s = sample[i];
        const double tail = (100.0 - opt.percentile) / 100.0;
        const auto k_lo = static_cast<std::size_t>(tail * static_cast<double>(s.size() - 1));
        const std::size_t k_hi = s.size() - 1 - k_lo;
        std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k_lo), s.end());
        const float plo = s[k_lo];
        std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k_hi), s.end());
        const float phi = s[k_hi];
        return {plo, phi};
    };

    // Which layers run in float.
    std::vector<bool> is_float(n, false);
    for (std::size_t i = 0; i < n; ++i) {
        const std::string why = int8_unsupported_reason(g.layers[i]);
        if (!why.empty()) {
            is_float[i] = true;
            r.float_reasons.push_back({g.layers[i].name, why});
        }
    }

    // Activation parameters, in layer order (pass-through ops inherit their input's).
    std::vector<ActivationQuant> act(n);
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = g.layers[i];
        if (!is_float[i] && int8_passthrough(l.op)) {
            act[i] = act[static_cast<std::size_t>(l.inputs.front())];
        } else if (!is_float[i] && l.op == OpKind::Sigmoid) {
            act[i] = sigmoid_output_quant();
        } else {
            const auto [a, b] = range_of(i);
            act[i] = choose_activation_quant(a, b);
        }
    }

    // Weights: per-channel for convs (qc8), per-tensor for fc (qs8 in XNNPACK 2022-02).
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = g.layers[i];
        const bool linear = l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d ||
                            l.op == OpKind::FullyConnected;
        if (!linear || is_float[i]) continue;
        const WeightTensor& wt = w.at(l.name + ".weight");
        const auto it_b = w.find(l.name + ".bias");
        const std::size_t out = static_cast<std::size_t>(wt.shape[0]);
        const std::size_t per = wt.data.size() / out;
        const ActivationQuant in = act[static_cast<std::size_t>(l.inputs.front())];
        QuantizedWeights q;
        q.layer = l.name;
        q.weight_shape = wt.shape;
        const bool per_tensor = l.op == OpKind::FullyConnected;
        if (per_tensor) {
            float m = 0.0f;
            for (float v : wt.data) m = std::max(m, std::fabs(v));
            q.weight_scales = {choose_weight_scale(m)};
        } else {
            q.weight_scales.resize(out);
            for (std::size_t o = 0; o < out; ++o) {
                float m = 0.0f;
                for (std::size_t k = 0; k < per; ++k) m = std::max(m, std::fabs(wt.data[o * per + k]));
                q.weight_scales[o] = choose_weight_scale(m);
            }
        }
        // A near-dead channel (|w| tiny but not zero, e.g. after weight decay) would give a
        // requantization scale below XNNPACK's 2^-32: floor its scale so that the requantization
        // scale is at least 2^-30 (its weights then quantize to 0 or +-1, as they should).
        const float floor_scale = 0x1.0p-30f * act[i].scale / in.scale;
        if (scale_ok(floor_scale))
            for (float& s : q.weight_scales) s = std::max(s, floor_scale);
        q.weights.resize(wt.data.size());
        for (std::size_t o = 0; o < out; ++o)
            for (std::size_t k = 0; k < per; ++k)
                q.weights[o * per + k] = quantize_weight(wt.data[o * per + k], q.weight_scale(o));
        q.bias.assign(out, 0);
        if (it_b != w.end())
            for (std::size_t o = 0; o < out; ++o)
                q.bias[o] = quantize_bias(it_b->second.data[o], in.scale, q.weight_scale(o));
        bool ok = true;
        for (std::size_t o = 0; o < out; ++o)
            ok = ok && requant_scale_ok(conv_requant_scale(in.scale, q.weight_scale(o), act[i].scale));
        if (!ok) {
            is_float[i] = true;
            r.float_reasons.push_back({l.name, "requantization scale outside XNNPACK's [2^-32, 256)"});
            continue;
        }
        r.model.layers.push_back(std::move(q));
    }
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = g.layers[i];
        if (l.op == OpKind::Add && !is_float[i] &&
            !add_scales_ok(act[static_cast<std::size_t>(l.inputs[0])], act[static_cast<std::size_t>(l.inputs[1])], act[i])) {
            is_float[i] = true;
            r.float_reasons.push_back({l.name, "input/output scale ratio outside XNNPACK's qs8 add range"});
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = g.layers[i];
        r.model.activations.push_back({l.name, act[i]});
        if (!is_float[i]) continue;
        r.model.float_layers.push_back(l.name);
        const std::string prefix = l.name + ".";
        for (auto it = w.lower_bound(prefix); it != w.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
            r.float_weights[it->first] = it->second;
    }
    return r;
}

}  // namespace lamda

#endif  // LAMDA_EXEC_REFERENCE_INT8_HPP
