// lamda/core/rewrite.hpp: graph rewrites that keep a model's meaning and make it cheaper to run.
//
//   lamda::RewriteReport r = lamda::fuse_activation_patterns(graph);   // r.hardswish: how many
//
// Patterns (exporters spell some activations out as several ops):
//   mul(x, hardsigmoid(x))  ->  hardswish(x)      torch.onnx.export below opset 14 writes
//                                                  HardSwish as x * HardSigmoid(x)
// A pattern is rewritten only when its inner activation has no other reader and is not the
// model's output, so no value anyone reads disappears. The rewritten layer keeps the mul's name
// (later layers still find it), the inner layer is removed, inputs are renumbered.
//
// Contract: needs a graph whose shapes are inferred (infer_shapes); leaves it valid with the same
// shapes and outputs (equal up to float rounding: hardswish(x) is x * relu6(x + 3) / 6 either
// way); idempotent; never throws beyond std::bad_alloc; part of the core (lamda/core.hpp).
#ifndef LAMDA_CORE_REWRITE_HPP
#define LAMDA_CORE_REWRITE_HPP

#include <cstddef>
#include <vector>

#include "ir.hpp"

namespace lamda {

struct RewriteReport {
    int hardswish = 0;  // mul(x, hardsigmoid(x)) rewritten to hardswish(x)

    int total() const noexcept { return hardswish; }
};

namespace rewrite_detail {

// How many layers read each layer.
inline std::vector<int> reader_counts(const Graph& g) {
    std::vector<int> readers(g.layers.size(), 0);
    for (const Layer& l : g.layers)
        for (int in : l.inputs)
            if (in >= 0 && static_cast<std::size_t>(in) < readers.size()) ++readers[static_cast<std::size_t>(in)];
    return readers;
}

// Removes the layers marked in `drop`, renumbering every input. Dropped layers must have no
// reader left.
inline void remove_layers(Graph& g, const std::vector<char>& drop) {
    std::vector<int> new_index(g.layers.size(), -1);
    std::vector<Layer> kept;
    kept.reserve(g.layers.size());
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        if (drop[i]) continue;
        new_index[i] = static_cast<int>(kept.size());
        kept.push_back(std::move(g.layers[i]));
    }
    for (Layer& l : kept)
        for (int& in : l.inputs) in = new_index[static_cast<std::size_t>(in)];
    g.layers = std::move(kept);
}

}  // namespace rewrite_detail

inline RewriteReport fuse_activation_patterns(Graph& g) {
    RewriteReport report;
    if (g.layers.empty()) return report;
    const std::vector<int> readers = rewrite_detail::reader_counts(g);
    std::vector<char> drop(g.layers.size(), 0);
    const std::size_t output = g.layers.size() - 1;
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        Layer& m = g.layers[i];
        if (m.op != OpKind::Mul || m.inputs.size() != 2) continue;
        for (int side = 0; side < 2; ++side) {
            const int x = m.inputs[static_cast<std::size_t>(side)];
            const int h = m.inputs[static_cast<std::size_t>(1 - side)];
            if (x < 0 || h < 0 || x == h) continue;
            const Layer& act = g.layers[static_cast<std::size_t>(h)];
            if (act.op != OpKind::HardSigmoid || act.inputs.size() != 1 || act.inputs[0] != x) continue;
            if (readers[static_cast<std::size_t>(h)] != 1 || static_cast<std::size_t>(h) == output) continue;
            if (g.layers[static_cast<std::size_t>(x)].shape != m.shape) continue;  // no broadcast
            drop[static_cast<std::size_t>(h)] = 1;
            m.op = OpKind::HardSwish;
            m.inputs = {x};
            ++report.hardswish;
            break;
        }
    }
    if (report.total() > 0) rewrite_detail::remove_layers(g, drop);
    return report;
}

}  // namespace lamda

#endif  // LAMDA_CORE_REWRITE_HPP
