// lamda/exec/plan.hpp: which layers the XNNPACK executor fuses into which, decided from the
// graph alone. One source of truth for the executor (exec/xnnpack.hpp) and the latency model
// (latency/model.hpp): the latency model predicts one figure per lowered operator, so it must see the
// same fusions the executor makes. Needs nothing but core/ir.hpp.
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
//
// And which buffer each value lives in (plan_buffers): the executor allocates exactly these, and
// the latency model reads the model's memory footprint off them.
#ifndef LAMDA_EXEC_PLAN_HPP
#define LAMDA_EXEC_PLAN_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../core/ir.hpp"

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

// The executor's activation buffers. A materialising layer (one that runs operators, and the
// input) writes its value at tail[i] into buffer slot_of[i]; flatten and dropout alias their
// input's buffer. With `reuse`, a buffer returns to a free list once the last layer reading its
// value has run, and a later value takes the smallest free buffer that fits (growing the largest
// free one when none fits): a layer's output never shares a buffer with its inputs, which are
// still live while it runs. The graph's input and output are never reused (callers write the
// input once and run many times). Sizes are in floats, each value padded by `pad_floats`.
struct BufferPlan {
    std::vector<int> value_of;              // per layer: the materialising layer whose buffer
                                            // holds its output; -1 when fused into a later one
    std::vector<int> slot_of;               // per materialising layer: its buffer; else -1
    std::vector<std::int64_t> slot_floats;  // capacity of each buffer
    std::int64_t total_floats() const noexcept {
        std::int64_t t = 0;
        for (std::int64_t f : slot_floats) t += f;
        return t;
    }
};

inline BufferPlan plan_buffers(const Graph& g, const FusionPlan& plan, bool reuse = true,
                               std::int64_t pad_floats = 0) {
    const std::size_t n = g.layers.size();
    BufferPlan b;
    b.value_of.assign(n, -1);
    b.slot_of.assign(n, -1);
    if (n == 0) return b;
    auto is_alias = [&](std::size_t i) {
        const OpKind op = g.layers[i].op;
        return op == OpKind::Flatten || op == OpKind::Dropout;
    };
    auto materialises = [&](std::size_t i) { return plan.absorbed_by[i] < 0 && !is_alias(i); };
    for (std::size_t i = 0; i < n; ++i) {
        if (materialises(i))
            b.value_of[static_cast<std::size_t>(plan.tail[i])] = static_cast<int>(i);
        else if (plan.absorbed_by[i] < 0 && !g.layers[i].inputs.empty())
            b.value_of[i] = b.value_of[static_cast<std::size_t>(g.layers[i].inputs[0])];
    }
    const int forever = static_cast<int>(n);
    std::vector<int> last_read(n, -1);
    for (std::size_t i = 0; i < n; ++i) {
        if (!materialises(i)) continue;
        for (int in : g.layers[i].inputs) {
            const int v = b.value_of[static_cast<std::size_t>(in)];
            if (v >= 0) last_read[static_cast<std::size_t>(v)] = static_cast<int>(i);
        }
    }
    last_read.front() = forever;
    if (b.value_of.back() >= 0) last_read[static_cast<std::size_t>(b.value_of.back())] = forever;

    std::vector<int> free_slots;
    std::vector<std::pair<int, int>> releases;  // (last reader, slot): free once it has run
    for (std::size_t i = 0; i < n; ++i) {
        if (!materialises(i)) continue;
        for (auto it = releases.begin(); it != releases.end();) {
            if (it->first < static_cast<int>(i)) {
                free_slots.push_back(it->second);
                it = releases.erase(it);
            } else {
                ++it;
            }
        }
        const std::int64_t need =
            g.layers[static_cast<std::size_t>(plan.tail[i])].shape.elements() + pad_floats;
        int chosen = -1;
        if (reuse) {
            auto cap = [&](int slot) { return b.slot_floats[static_cast<std::size_t>(slot)]; };
            for (int sl : free_slots)  // the smallest that fits
                if (cap(sl) >= need && (chosen < 0 || cap(sl) < cap(chosen))) chosen = sl;
            if (chosen < 0)  // else the largest, grown
                for (int sl : free_slots)
                    if (chosen < 0 || cap(sl) > cap(chosen)) chosen = sl;
        }
        if (chosen >= 0) {
            free_slots.erase(std::find(free_slots.begin(), free_slots.end(), chosen));
            std::int64_t& c = b.slot_floats[static_cast<std::size_t>(chosen)];
            c = std::max(c, need);
        } else {
            chosen = static_cast<int>(b.slot_floats.size());
            b.slot_floats.push_back(need);
        }
        b.slot_of[i] = chosen;
        releases.emplace_back(last_read[i], chosen);
    }
    return b;
}

}  // namespace lamda

#endif  // LAMDA_EXEC_PLAN_HPP
