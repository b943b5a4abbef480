// lamda/latency_fusion.hpp: which layers the XNNPACK executor fuses into which, decided from the
// graph alone. One source of truth for the executor (xnnpack.hpp) and the latency model
// (latency.hpp): the latency model predicts one figure per lowered operator, so it must see the
// same fusions the executor makes. Needs nothing but ir.hpp.
//
//   lamda::FusionPlan p = lamda::plan_fusion(graph);
//   p.absorbed_by[j] == i   layer j's work is done by layer i's operator(s) (j reads 0 ms)
//   p.folded_bn[i]          the batchnorm folded into conv2d/dwconv/fc i, or -1
//   p.act[i]                the activation layer i's operator(s) apply (its own act= or a fused one)
//   p.tail[i]               the layer whose value layer i's operator(s) write
//
// Rules (those of XnnExecutor::build):
//   - a batchnorm is folded into the conv2d/dwconv/fc before it when that layer has no act and
//     the batchnorm is its only reader;
//   - a relu/relu6/hardsigmoid/hardswish/sigmoid layer is fused into the conv2d/dwconv/fc/
//     batchnorm/add before it (after any folded batchnorm) when it is that value's only reader
//     and the layer has no act of its own;
//   - the graph's output counts as one reader of the last layer.
#ifndef LAMDA_LATENCY_FUSION_HPP
#define LAMDA_LATENCY_FUSION_HPP

#include <cstddef>
#include <vector>

#include "ir.hpp"

namespace lamda {

struct FusionPlan {
    std::vector<int> absorbed_by;   // -1: runs its own operators (or none: input/flatten/dropout)
    std::vector<int> folded_bn;     // -1: none
    std::vector<int> tail;          // where layer i's operators write (i itself unless fused)
    std::vector<Activation> act;    // applied by layer i's operators
};

// The activation a standalone activation layer stands for, or None for other ops.
inline constexpr Activation activation_of_layer(OpKind op) noexcept {
    switch (op) {
    case OpKind::Relu: return Activation::Relu;
    case OpKind::Relu6: return Activation::Relu6;
    case OpKind::HardSigmoid: return Activation::HardSigmoid;
    case OpKind::HardSwish: return Activation::HardSwish;
    case OpKind::Sigmoid: return Activation::Sigmoid;
    default: return Activation::None;
    }
}

inline FusionPlan plan_fusion(const Graph& g) {
    const std::size_t n = g.layers.size();
    FusionPlan p;
    p.absorbed_by.assign(n, -1);
    p.folded_bn.assign(n, -1);
    p.tail.resize(n);
    p.act.assign(n, Activation::None);
    if (n == 0) return p;

    std::vector<int> readers(n, 0), sole_reader(n, -1);
    for (std::size_t i = 0; i < n; ++i)
        for (int in : g.layers[i].inputs) {
            if (in < 0 || static_cast<std::size_t>(in) >= n) continue;
            ++readers[static_cast<std::size_t>(in)];
            sole_reader[static_cast<std::size_t>(in)] = static_cast<int>(i);
        }
    ++readers[n - 1];
    auto only_reader = [&](std::size_t i) -> int { return readers[i] == 1 ? sole_reader[i] : -1; };

    for (std::size_t i = 0; i < n; ++i) {
        const Layer& l = g.layers[i];
        p.tail[i] = static_cast<int>(i);
        p.act[i] = takes_activation(l.op) ? l.act : Activation::None;
        if (p.absorbed_by[i] >= 0) continue;
        const bool affine = l.op == OpKind::Conv2d || l.op == OpKind::DepthwiseConv2d ||
                            l.op == OpKind::FullyConnected || l.op == OpKind::BatchNorm;
        if (!affine && l.op != OpKind::Add) continue;
        std::size_t t = i;
        if (affine && l.op != OpKind::BatchNorm && p.act[i] == Activation::None) {
            const int r = only_reader(t);
            if (r >= 0 && g.layers[static_cast<std::size_t>(r)].op == OpKind::BatchNorm) {
                p.folded_bn[i] = r;
                p.absorbed_by[static_cast<std::size_t>(r)] = static_cast<int>(i);
                t = static_cast<std::size_t>(r);
            }
        }
        if (p.act[i] == Activation::None) {
            const int r = only_reader(t);
            if (r >= 0) {
                const Activation a = activation_of_layer(g.layers[static_cast<std::size_t>(r)].op);
                if (a != Activation::None) {
                    p.act[i] = a;
                    p.absorbed_by[static_cast<std::size_t>(r)] = static_cast<int>(i);
                    t = static_cast<std::size_t>(r);
                }
            }
        }
        p.tail[i] = static_cast<int>(t);
    }
    return p;
}

}  // namespace lamda

#endif  // LAMDA_LATENCY_FUSION_HPP
