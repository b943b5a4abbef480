// lamda/exec/fold.hpp: folds batch normalisation into the convolution or fully connected layer before
// it, so that trained weights run on an executor as a graph without batchnorm layers. Core (no
// dependencies).
//
//   auto [g2, w2] = lamda::fold_batchnorm(graph, weights);   // what `lamda train --out` saves
//   lamda::Graph g3 = lamda::fold_batchnorm_graph(graph);    // the same structure, no weights
//
// A batchnorm layer B is folded into its input layer P when P is a conv2d, dwconv or fc with no
// fused activation (act=none: the normalisation must apply to P's linear output) and B is P's only
// reader. Then, per output channel o, with s = gamma[o] / sqrt(running_var[o] + eps):
//   P.weight[o, ...] *= s        P.bias[o] = (P.bias[o] - running_mean[o]) * s + beta[o]
// (a bias=false layer gets a bias). P keeps its name and moves to B's place in the layer order
// (valid: B was P's only reader), B disappears and B's readers read P. Every other layer keeps its
// name, so tensor names in the folded weights are the DSL's layer names. A batchnorm that cannot be
// folded (after an add, or after act=relu) stays, with its four tensors.
#ifndef LAMDA_EXEC_FOLD_HPP
#define LAMDA_EXEC_FOLD_HPP

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../core/ir.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"

namespace lamda {

namespace detail {

// For each layer, the batchnorm that folds into it (its index), or -1.
inline std::vector<int> batchnorm_folds(const Graph& graph) {
    const std::size_t n = graph.layers.size();
    std::vector<int> readers(n, 0);
    for (const Layer& l : graph.layers)
        for (int in : l.inputs)
            if (in >= 0 && static_cast<std::size_t>(in) < n) ++readers[static_cast<std::size_t>(in)];
    std::vector<int> fold(n, -1);
    for (std::size_t i = 0; i < n; ++i) {
        const Layer& b = graph.layers[i];
        if (b.op != OpKind::BatchNorm || b.inputs.size() != 1) continue;
        const int p = b.inputs.front();
        if (p < 0 || static_cast<std::size_t>(p) >= i) continue;
        const Layer& prod = graph.layers[static_cast<std::size_t>(p)];
        const bool linear = prod.op == OpKind::Conv2d || prod.op == OpKind::DepthwiseConv2d ||
                            prod.op == OpKind::FullyConnected;
        if (linear && prod.act == Activation::None && readers[static_cast<std::size_t>(p)] == 1)
            fold[static_cast<std::size_t>(p)] = static_cast<int>(i);
    }
    return fold;
}

// The folded structure: `kept[k]` is the old index of new layer k (the producer, for a slot that
// held a folded batchnorm).
inline Graph fold_structure(const Graph& graph, const std::vector<int>& fold,
                            std::vector<int>& kept) {
    const std::size_t n = graph.layers.size();
    std::vector<int> producer_of(n, -1);  // batchnorm index -> the layer folded into its place
    for (std::size_t p = 0; p < n; ++p)
        if (fold[p] >= 0) producer_of[static_cast<std::size_t>(fold[p])] = static_cast<int>(p);
    std::vector<int> new_index(n, -1);
    Graph out;
    out.name = graph.name;
    kept.clear();
    for (std::size_t i = 0; i < n; ++i) {
        if (fold[i] >= 0) continue;  // a producer: emitted at its batchnorm's slot
        const int source = producer_of[i] >= 0 ? producer_of[i] : static_cast<int>(i);
        Layer l = graph.layers[static_cast<std::size_t>(source)];
        if (producer_of[i] >= 0) {
            l.bias = true;
            l.shape = graph.layers[i].shape;
            new_index[static_cast<std::size_t>(source)] = static_cast<int>(out.layers.size());
        }
        new_index[i] = static_cast<int>(out.layers.size());
        for (int& in : l.inputs) in = new_index[static_cast<std::size_t>(in)];
        out.layers.push_back(std::move(l));
        kept.push_back(source);
    }
    return out;
}

}  // namespace detail

// The graph with every foldable batchnorm folded (see above); weights are not needed.
inline Graph fold_batchnorm_graph(const Graph& graph) {
    std::vector<int> kept;
    return detail::fold_structure(graph, detail::batchnorm_folds(graph), kept);
}

// Folds every foldable batchnorm into its producer's weights. `weights` must fit `graph`
// (validate_weights); throws ExecutorError listing the problems otherwise. The result fits the
// returned graph.
inline std::pair<Graph, Weights> fold_batchnorm(const Graph& graph, const Weights& weights) {
    const std::vector<std::string> problems = validate_weights(graph, weights);
    if (!problems.empty()) {
        std::string msg = "fold_batchnorm: the weights do not fit the graph:";
        for (const std::string& p : problems) msg += "\n  " + p;
        throw ExecutorError(msg);
    }
    const std::vector<int> fold = detail::batchnorm_folds(graph);
    std::vector<int> kept;
    Graph out = detail::fold_structure(graph, fold, kept);
    Weights w;
    for (int old : kept) {
        const Layer& l = graph.layers[static_cast<std::size_t>(old)];
        if (!has_weights(l.op)) continue;
        const auto copy = [&](const std::string& suffix) {
            const auto it = weights.find(l.name + suffix);
            if (it != weights.end()) w.emplace(it->first, it->second);
        };
        const int b = fold[static_cast<std::size_t>(old)];
        if (b < 0) {
            for (const char* suffix : {".weight", ".bias", ".running_mean", ".running_var"})
                copy(suffix);
            continue;
        }
        const Layer& bn = graph.layers[static_cast<std::size_t>(b)];
        const std::vector<float>& gamma = weights.at(bn.name + ".weight").data;
        const std::vector<float>& beta = weights.at(bn.name + ".bias").data;
        const std::vector<float>& mean = weights.at(bn.name + ".running_mean").data;
        const std::vector<float>& var = weights.at(bn.name + ".running_var").data;
        WeightTensor weight = weights.at(l.name + ".weight");
        const std::size_t channels = gamma.size();
        const std::size_t per_channel = weight.data.size() / channels;  // weight dim 0 is channels
        WeightTensor bias;
        bias.shape = {static_cast<std::int64_t>(channels)};
        bias.data.assign(channels, 0.0f);
        if (l.bias) bias.data = weights.at(l.name + ".bias").data;
        for (std::size_t o = 0; o < channels; ++o) {
            // In double: the folded weights should be as close to the batchnorm's float32
            // arithmetic as float32 storage allows.
            const double s = gamma[o] / std::sqrt(static_cast<double>(var[o]) + bn.eps);
            for (std::size_t k = 0; k < per_channel; ++k) {
                float& v = weight.data[o * per_channel + k];
                v = static_cast<float>(v * s);
            }
            bias.data[o] = static_cast<float>((bias.data[o] - static_cast<double>(mean[o])) * s +
                                              beta[o]);
        }
        w.emplace(l.name + ".weight", std::move(weight));
        w.emplace(l.name + ".bias", std::move(bias));
    }
    return {std::move(out), std::move(w)};
}

}  // namespace lamda

#endif  // LAMDA_EXEC_FOLD_HPP
