// lamda/core/analysis.hpp: exact parameter, MAC, weight and activation-memory counts of a valid graph.
// Conventions (those of torchvision's table): parameters are learnable tensors (weights, biases,
// batch-norm scale and shift); MACs are conv and fully-connected multiply-accumulates.
#ifndef LAMDA_CORE_ANALYSIS_HPP
#define LAMDA_CORE_ANALYSIS_HPP

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ir.hpp"

namespace lamda {

inline constexpr std::int64_t bytes_per_element = 4;  // float32 everywhere at run time

struct LayerStats {
    std::int64_t params = 0;
    std::int64_t macs = 0;
    std::int64_t weight_bytes = 0;
    std::int64_t output_bytes = 0;  // the value this layer produces
    std::int64_t live_bytes = 0;    // all values alive while this layer runs (its inputs included)
};

struct ModelStats {
    Shape output_shape;
    std::int64_t params = 0;
    std::int64_t macs = 0;
    std::int64_t weight_bytes = 0;
    // Peak of live_bytes over the layers when they run one at a time in file order: each value
    // is a buffer of its own, allocated when produced and freed after its last consumer.
    std::int64_t peak_activation_bytes = 0;
    std::vector<LayerStats> layers;  // parallel to Graph::layers
};

// Learnable parameters of one layer, given the shape of its (first) input.
inline std::int64_t layer_params(const Layer& layer, const Shape& in) noexcept {
    switch (layer.op) {
    case OpKind::Conv2d: {
        const std::int64_t weights = std::int64_t{layer.out_channels} * (in.c / layer.groups) *
                                     layer.kernel_h * layer.kernel_w;
        return weights + (layer.bias ? layer.out_channels : 0);
    }
    case OpKind::DepthwiseConv2d: {
        const std::int64_t out_c = in.c * layer.multiplier;
        return out_c * layer.kernel_h * layer.kernel_w + (layer.bias ? out_c : 0);
    }
    case OpKind::FullyConnected:
        return in.elements() * layer.out_channels + (layer.bias ? layer.out_channels : 0);
    case OpKind::BatchNorm: return 2 * in.c;
    default: return 0;
    }
}

// Multiply-accumulates of one layer, given its input shape; its output shape must be inferred.
inline std::int64_t layer_macs(const Layer& layer, const Shape& in) noexcept {
    const Shape& out = layer.shape;
    switch (layer.op) {
    case OpKind::Conv2d:
        return out.h * out.w * out.c * (in.c / layer.groups) * layer.kernel_h * layer.kernel_w;
    case OpKind::DepthwiseConv2d: return out.h * out.w * out.c * layer.kernel_h * layer.kernel_w;
    case OpKind::FullyConnected: return in.elements() * layer.out_channels;
    default: return 0;
    }
}

// Counts for a graph whose shapes have been inferred (every graph from parse_dsl is).
inline ModelStats analyze(const Graph& graph) {
    ModelStats stats;
    const std::size_t n = graph.layers.size();
    stats.layers.resize(n);
    if (n == 0) return stats;

    // last_use[i]: the last layer that reads value i (the output stays alive to the end).
    std::vector<std::size_t> last_use(n);
    for (std::size_t i = 0; i < n; ++i) {
        last_use[i] = i;
        for (int input : graph.layers[i].inputs)
            last_use[static_cast<std::size_t>(input)] = i;
    }
    last_use[n - 1] = n - 1;

    std::int64_t live = 0;  // bytes of values produced so far and not yet freed
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& layer = graph.layers[i];
        LayerStats& ls = stats.layers[i];
        const Shape in = layer.inputs.empty()
                             ? layer.shape
                             : graph.layers[static_cast<std::size_t>(layer.inputs.front())].shape;
        ls.params = layer_params(layer, in);
        ls.macs = layer_macs(layer, in);
        ls.weight_bytes = ls.params * bytes_per_element;
        ls.output_bytes = layer.shape.elements() * bytes_per_element;

        live += ls.output_bytes;
        ls.live_bytes = live;
        if (live > stats.peak_activation_bytes) stats.peak_activation_bytes = live;

        // Free the inputs whose last reader was this layer (each value once, even if read twice).
        for (std::size_t k = 0; k < layer.inputs.size(); ++k) {
            const auto v = static_cast<std::size_t>(layer.inputs[k]);
            bool seen_before = false;
            for (std::size_t j = 0; j < k; ++j)
                seen_before = seen_before || layer.inputs[j] == layer.inputs[k];
            if (!seen_before && last_use[v] == i) live -= stats.layers[v].output_bytes;
        }
        // A value nobody reads (only possible for the output) stays; others were freed above.

        stats.params += ls.params;
        stats.macs += ls.macs;
        stats.weight_bytes += ls.weight_bytes;
    }
    stats.output_shape = graph.output().shape;
    return stats;
}

}  // namespace lamda

#endif  // LAMDA_CORE_ANALYSIS_HPP
