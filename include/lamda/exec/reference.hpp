// lamda/exec/reference.hpp: the reference executor. Plain loops, one function per op, double-precision
// accumulation; slow and obviously correct. Other executors (exec/xnnpack.hpp) are tested against it.
//
//   lamda::Tensor out = lamda::run_reference(graph, weights, input);            // graph output
//   std::vector<lamda::Tensor> all = lamda::run_reference_all(graph, weights, input);  // every layer
//
// Tensors are NHWC float32, batch 1. Weight names and layouts: data/weights.hpp and docs/weights.md.
// Semantics worth stating:
//   - avgpool divides by the number of in-bounds elements of each window (padding is excluded,
//     with or without ceil=true); maxpool treats padding as -infinity.
//   - flatten is a copy (NHWC memory order is already H, W, C); dropout is the identity.
//   - softmax is over channels, at each pixel, computed as exp(x - max) / sum.
#ifndef LAMDA_EXEC_REFERENCE_HPP
#define LAMDA_EXEC_REFERENCE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/diagnostics.hpp"
#include "../core/ir.hpp"
#include "../data/tensor.hpp"
#include "../core/validate.hpp"
#include "../data/weights.hpp"
#include "plan.hpp"  // activation_of_layer

namespace lamda {

// The activation functions, in float, as the DSL defines them.
inline float apply_activation(Activation act, float x) noexcept {
    switch (act) {
    case Activation::None: return x;
    case Activation::Relu: return x > 0.0f ? x : 0.0f;
    case Activation::Relu6: return std::min(std::max(x, 0.0f), 6.0f);
    case Activation::HardSwish: return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case Activation::HardSigmoid: return std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case Activation::Sigmoid:
        return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x))));
    }
    return x;
}

namespace detail {

// Every executor runs only graphs that shape inference accepts, with the shapes and padding it
// infers: the graph is checked against a fresh inference of a copy (one source of truth for what
// is valid), so a graph built or edited in code cannot make an executor read out of bounds.
// Throws ExecutorError naming the layer.
inline void check_runnable(const Graph& graph) {
    if (graph.layers.empty()) throw ExecutorError("graph has no layers");
    Graph fresh = graph;
    std::vector<Diagnostic> diagnostics;
    if (!infer_shapes(fresh, diagnostics))
        throw ExecutorError("the graph is not valid:\n" + format_diagnostics(diagnostics));
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        if (l.shape != fresh.layers[i].shape || l.pads != fresh.layers[i].pads)
            throw ExecutorError(std::string(op_name(l.op)) + " layer '" + l.name + "': shape " +
                                to_string(l.shape) + " is not the inferred " +
                                to_string(fresh.layers[i].shape) +
                                " (run infer_shapes after editing a graph)");
    }
}

inline void check_weights(const Graph& graph, const Weights& weights) {
    const std::vector<std::string> errors = validate_weights(graph, weights);
    if (errors.empty()) return;
    std::string msg = "weights do not fit the graph:";
    for (const std::string& e : errors) msg += "\n  " + e;
    throw ExecutorError(msg);
}

inline const WeightTensor* find_weight(const Weights& w, const std::string& name) {
    const auto it = w.find(name);
    return it == w.end() ? nullptr : &it->second;
}

inline Tensor ref_conv2d(const Layer& l, const Tensor& x, const Weights& w) {
    Tensor y(l.shape);
    const WeightTensor& wt = w.at(l.name + ".weight");
    const WeightTensor* bt = l.bias ? &w.at(l.name + ".bias") : nullptr;
    const std::int64_t cig = x.shape.c / l.groups, cog = l.out_channels / l.groups;
    for (std::int64_t oy = 0; oy < y.shape.h; ++oy)
        for (std::int64_t ox = 0; ox < y.shape.w; ++ox)
            for (std::int64_t oc = 0; oc < y.shape.c; ++oc) {
                const std::int64_t g = oc / cog;
                double acc = bt ? bt->data[static_cast<std::size_t>(oc)] : 0.0;
                for (std::int64_t ky = 0; ky < l.kernel_h; ++ky) {
                    const std::int64_t iy = oy * l.stride_h - l.pads[0] + ky * l.dilation_h;
                    if (iy < 0 || iy >= x.shape.h) continue;
                    for (std::int64_t kx = 0; kx < l.kernel_w; ++kx) {
                        const std::int64_t ix = ox * l.stride_w - l.pads[1] + kx * l.dilation_w;
                        if (ix < 0 || ix >= x.shape.w) continue;
                        for (std::int64_t ic = 0; ic < cig; ++ic) {
                            const auto wi = static_cast<std::size_t>(
                                ((oc * cig + ic) * l.kernel_h + ky) * l.kernel_w + kx);
                            acc += static_cast<double>(wt.data[wi]) * x.at(iy, ix, g * cig + ic);
                        }
                    }
                }
                y.at(oy, ox, oc) = apply_activation(l.act, static_cast<float>(acc));
            }
    return y;
}

// Output channel c*multiplier+m reads input channel c.
inline Tensor ref_dwconv(const Layer& l, const Tensor& x, const Weights& w) {
    Tensor y(l.shape);
    const WeightTensor& wt = w.at(l.name + ".weight");
    const WeightTensor* bt = l.bias ? &w.at(l.name + ".bias") : nullptr;
    for (std::int64_t oy = 0; oy < y.shape.h; ++oy)
        for (std::int64_t ox = 0; ox < y.shape.w; ++ox)
            for (std::int64_t oc = 0; oc < y.shape.c; ++oc) {
                const std::int64_t c = oc / l.multiplier;
                double acc = bt ? bt->data[static_cast<std::size_t>(oc)] : 0.0;
                for (std::int64_t ky = 0; ky < l.kernel_h; ++ky) {
                    const std::int64_t iy = oy * l.stride_h - l.pads[0] + ky * l.dilation_h;
                    if (iy < 0 || iy >= x.shape.h) continue;
                    for (std::int64_t kx = 0; kx < l.kernel_w; ++kx) {
                        const std::int64_t ix = ox * l.stride_w - l.pads[1] + kx * l.dilation_w;
                        if (ix < 0 || ix >= x.shape.w) continue;
                        const auto wi = static_cast<std::size_t>((oc * l.kernel_h + ky) * l.kernel_w + kx);
                        acc += static_cast<double>(wt.data[wi]) * x.at(iy, ix, c);
                    }
                }
                y.at(oy, ox, oc) = apply_activation(l.act, static_cast<float>(acc));
            }
    return y;
}

// Input: all H*W*C values in NHWC order; weight [out][in].
inline Tensor ref_fc(const Layer& l, const Tensor& x, const Weights& w) {
    Tensor y(l.shape);
    const WeightTensor& wt = w.at(l.name + ".weight");
    const WeightTensor* bt = l.bias ? &w.at(l.name + ".bias") : nullptr;
    const std::size_t in = x.data.size();
    for (std::size_t o = 0; o < y.data.size(); ++o) {
        double acc = bt ? bt->data[o] : 0.0;
        for (std::size_t i = 0; i < in; ++i) acc += static_cast<double>(wt.data[o * in + i]) * x.data[i];
        y.data[o] = apply_activation(l.act, static_cast<float>(acc));
    }
    return y;
}

// y = gamma * (x - mean) / sqrt(var + eps) + beta
inline Tensor ref_batchnorm(const Layer& l, const Tensor& x, const Weights& w) {
    Tensor y(l.shape);
    const auto& gamma = w.at(l.name + ".weight").data;
    const auto& beta = w.at(l.name + ".bias").data;
    const auto& mean = w.at(l.name + ".running_mean").data;
    const auto& var = w.at(l.name + ".running_var").data;
    const auto C = static_cast<std::size_t>(x.shape.c);
    for (std::size_t i = 0; i < x.data.size(); ++i) {
        const std::size_t c = i % C;
        const double v = (static_cast<double>(x.data[i]) - mean[c]) /
                             std::sqrt(static_cast<double>(var[c]) + l.eps) * gamma[c] +
                         beta[c];
        y.data[i] = static_cast<float>(v);
    }
    return y;
}

inline Tensor ref_pool(const Layer& l, const Tensor& x) {
    Tensor y(l.shape);
    const bool is_max = l.op == OpKind::MaxPool;
    for (std::int64_t oy = 0; oy < y.shape.h; ++oy)
        for (std::int64_t ox = 0; ox < y.shape.w; ++ox)
            for (std::int64_t c = 0; c < y.shape.c; ++c) {
                double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
                std::int64_t count = 0;
                for (std::int64_t ky = 0; ky < l.kernel_h; ++ky) {
                    const std::int64_t iy = oy * l.stride_h - l.pads[0] + ky;
                    if (iy < 0 || iy >= x.shape.h) continue;
                    for (std::int64_t kx = 0; kx < l.kernel_w; ++kx) {
                        const std::int64_t ix = ox * l.stride_w - l.pads[1] + kx;
                        if (ix < 0 || ix >= x.shape.w) continue;
                        const double v = x.at(iy, ix, c);
                        acc = is_max ? std::max(acc, v) : acc + v;
                        ++count;
                    }
                }
                if (!is_max) acc = count ? acc / static_cast<double>(count) : 0.0;
                y.at(oy, ox, c) = static_cast<float>(acc);
            }
    return y;
}

inline Tensor ref_gap(const Layer& l, const Tensor& x) {
    Tensor y(l.shape);
    const auto C = static_cast<std::size_t>(x.shape.c);
    std::vector<double> sum(C, 0.0);
    for (std::size_t i = 0; i < x.data.size(); ++i) sum[i % C] += x.data[i];
    const auto n = static_cast<double>(x.shape.h * x.shape.w);
    for (std::size_t c = 0; c < C; ++c) y.data[c] = static_cast<float>(sum[c] / n);
    return y;
}

inline Tensor ref_softmax(const Layer& l, const Tensor& x) {
    Tensor y(l.shape);
    const auto C = static_cast<std::size_t>(x.shape.c);
    for (std::size_t p = 0; p < x.data.size(); p += C) {
        float mx = -std::numeric_limits<float>::infinity();
        for (std::size_t c = 0; c < C; ++c) mx = std::max(mx, x.data[p + c]);
        double sum = 0.0;
        for (std::size_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(x.data[p + c]) - mx);
        for (std::size_t c = 0; c < C; ++c)
            y.data[p + c] = static_cast<float>(std::exp(static_cast<double>(x.data[p + c]) - mx) / sum);
    }
    return y;
}

// One layer in float: `arg(k)` is the layer's k-th input, `input` the graph's input (for the
// input layer). The float executor runs every layer through it, and the int8 reference runs
// its float layers (those without an int8 kernel) through it too.
template <class Arg>
Tensor ref_layer(const Layer& l, const Arg& arg, const Weights& weights, const Tensor& input) {
    Tensor y;
    switch (l.op) {
    case OpKind::Input: y = input; break;
    case OpKind::Conv2d: y = detail::ref_conv2d(l, arg(0), weights); break;
    case OpKind::DepthwiseConv2d: y = detail::ref_dwconv(l, arg(0), weights); break;
    case OpKind::FullyConnected: y = detail::ref_fc(l, arg(0), weights); break;
    case OpKind::BatchNorm: y = detail::ref_batchnorm(l, arg(0), weights); break;
    case OpKind::MaxPool:
    case OpKind::AvgPool: y = detail::ref_pool(l, arg(0)); break;
    case OpKind::GlobalAvgPool: y = detail::ref_gap(l, arg(0)); break;
    case OpKind::Add: {
        y = Tensor(l.shape);
        for (std::size_t j = 0; j < y.data.size(); ++j) {
            double s = 0.0;
            for (std::size_t k = 0; k < l.inputs.size(); ++k) s += arg(k).data[j];
            y.data[j] = apply_activation(l.act, static_cast<float>(s));
        }
        break;
    }
    case OpKind::Concat: {
        y = Tensor(l.shape);
        const std::int64_t pixels = l.shape.h * l.shape.w;
        std::int64_t offset = 0;
        for (std::size_t k = 0; k < l.inputs.size(); ++k) {
            const Tensor& a = arg(k);
            for (std::int64_t p = 0; p < pixels; ++p)
                for (std::int64_t c = 0; c < a.shape.c; ++c)
                    y.data[static_cast<std::size_t>(p * l.shape.c + offset + c)] =
                        a.data[static_cast<std::size_t>(p * a.shape.c + c)];
            offset += a.shape.c;
        }
        break;
    }
    case OpKind::Mul: {
        y = Tensor(l.shape);
        const Tensor& a = arg(0);
        const Tensor& b = arg(1);
        const std::size_t na = a.data.size(), nb = b.data.size();
        for (std::size_t j = 0; j < y.data.size(); ++j)
            y.data[j] = a.data[na == y.data.size() ? j : j % na] *
                        b.data[nb == y.data.size() ? j : j % nb];
        break;
    }
    case OpKind::Relu:
    case OpKind::Relu6:
    case OpKind::HardSwish:
    case OpKind::HardSigmoid:
    case OpKind::Sigmoid: {
        const Activation act = activation_of_layer(l.op);
        y = arg(0);
        for (float& v : y.data) v = apply_activation(act, v);
        break;
    }
    case OpKind::Softmax: y = detail::ref_softmax(l, arg(0)); break;
    case OpKind::Flatten:
        y = arg(0);
        y.shape = l.shape;
        break;
    case OpKind::Dropout: y = arg(0); break;
    }
    return y;
}

}  // namespace detail

// Runs the graph (shapes inferred, weights validated) and returns every layer's output, parallel
// to graph.layers. Throws ExecutorError on an unrunnable graph, unfit weights or a wrong input.
inline std::vector<Tensor> run_reference_all(const Graph& graph, const Weights& weights,
                                             const Tensor& input) {
    detail::check_runnable(graph);
    detail::check_weights(graph, weights);
    const Shape in_shape = graph.layers.front().shape;
    if (input.shape != in_shape)
        throw ExecutorError("input has shape " + to_string(input.shape) + ", the graph expects " +
                            to_string(in_shape));
    if (static_cast<std::int64_t>(input.data.size()) != in_shape.elements())
        throw ExecutorError("input holds " + std::to_string(input.data.size()) + " values, shape " +
                            to_string(in_shape) + " needs " + std::to_string(in_shape.elements()));

    std::vector<Tensor> values(graph.layers.size());
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        auto arg = [&](std::size_t k) -> const Tensor& {
            return values[static_cast<std::size_t>(l.inputs[k])];
        };
        values[i] = detail::ref_layer(l, arg, weights, input);
    }
    return values;
}

// Runs the graph and returns its output (the last layer's value).
inline Tensor run_reference(const Graph& graph, const Weights& weights, const Tensor& input) {
    std::vector<Tensor> all = run_reference_all(graph, weights, input);
    return std::move(all.back());
}

}  // namespace lamda

#endif  // LAMDA_EXEC_REFERENCE_HPP
