// lamda/exec/plan.hpp: the one lowering of a graph to XNNPACK operators, decided from the graph
// alone. The XNNPACK executor (exec/xnnpack.hpp) runs exactly this plan and the latency model
// (latency/features.hpp) predicts one figure per planned operator, so what is predicted is what
// runs. Needs nothing but core/ir.hpp; allocates, never throws anything but std::bad_alloc.
//
//   lamda::OpPlan plan = lamda::plan_ops(graph);        // fusion + buffers + operators
//   for (const lamda::PlannedOp& op : plan.ops) ...      // in execution order
//   plan.fusion.absorbed_by[j] == i   layer j's work is done by layer i's operator(s) (j reads 0 ms)
//   plan.fusion.folded_bn[i]          the batchnorm folded into conv2d/dwconv/fc i, or -1
//   plan.fusion.act[i]                the activation layer i's operator(s) apply (own act= or fused)
//   plan.fusion.tail[i]               the layer whose value layer i's operator(s) write
//   plan.buffers                      which buffer holds each value (plan_buffers, below)
//
// Fusion rules (plan_fusion):
//   - a batchnorm is folded into the conv2d/dwconv/fc before it when that layer has no act and
//     the batchnorm is its only reader;
//   - a relu/relu6/hardsigmoid/hardswish/sigmoid layer is fused into the conv2d/dwconv/fc/
//     batchnorm/add before it (after any folded batchnorm) when it is that value's only reader
//     and the layer has no act of its own;
//   - the graph's output counts as one reader of the last layer.
//
// Operators (plan_ops), one PlannedOp per unit the latency model predicts, in graph order:
//   input, flatten, dropout   Alias: no operator, the value aliases its input's buffer
//   conv2d / dwconv / fc      Conv / DepthwiseConv / FullyConnected (folded batchnorm; relu,
//                             relu6 as the output clamp; hardsigmoid folded into weights and
//                             clamp), then a HardSwish or Sigmoid op in place for those acts
//   batchnorm (not folded)    ChannelAffine (a 1x1 depthwise convolution), activations as conv
//   add (n inputs)            Add: n-1 binary adds accumulating into the output, relu/relu6 the
//                             last one's clamp; other acts an in-place op after it
//   relu, relu6 / hardswish / sigmoid / hardsigmoid layers (not fused)
//                             Clamp / HardSwish / Sigmoid / HardSigmoid (x+3 clamped, times 1/6)
//   concat                    Concat: one strided copy per input into a channel slice
//   mul                       Mul (broadcasts a 1x1xC operand)
//   maxpool, avgpool          MaxPool / AvgPool; a 1x1 kernel is StridedCopy (a plain loop)
//   gap, softmax              GlobalAvgPool, Softmax
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

// ---------------------------------------------------------------------------------------------
// The operator plan
// ---------------------------------------------------------------------------------------------

enum class PlannedKind : std::uint8_t {
    Alias,           // input, flatten, dropout: no operator
    Conv,            // conv2d: convolution2d_nhwc_f32
    DepthwiseConv,   // dwconv: convolution2d_nhwc_f32 with groups = C
    FullyConnected,  // fc: fully_connected_nc_f32
    ChannelAffine,   // a batchnorm not folded: a 1x1 depthwise convolution
    Clamp,           // relu / relu6: clamp_nc_f32
    HardSwish,       // hardswish_nc_f32
    Sigmoid,         // sigmoid_nc_f32
    HardSigmoid,     // add_nd(x, 3) clamped to [0, 6], then multiply_nd by 1/6
    Add,             // n-1 add_nd_f32, accumulating into the output
    Mul,             // multiply_nd_f32
    Concat,          // one copy_nc_x32 per input
    MaxPool,         // max_pooling2d_nhwc_f32
    AvgPool,         // average_pooling2d_nhwc_f32
    StridedCopy,     // a 1x1 maxpool/avgpool: a plain loop
    GlobalAvgPool,   // global_average_pooling_nwc_f32
    Softmax,         // softmax_nc_f32
};

// The elementwise op kind that applies activation `a` on its own (Alias for None).
inline constexpr PlannedKind activation_op_kind(Activation a) noexcept {
    switch (a) {
    case Activation::Relu:
    case Activation::Relu6: return PlannedKind::Clamp;
    case Activation::HardSwish: return PlannedKind::HardSwish;
    case Activation::Sigmoid: return PlannedKind::Sigmoid;
    case Activation::HardSigmoid: return PlannedKind::HardSigmoid;
    case Activation::None: break;
    }
    return PlannedKind::Alias;
}

// Whether activation `a` is applied inside the operator of kind `k` (the output clamp, with
// hardsigmoid's affine part folded into the weights); otherwise it is an op of its own after it.
inline constexpr bool activation_fused_into(PlannedKind k, Activation a) noexcept {
    const bool affine = k == PlannedKind::Conv || k == PlannedKind::DepthwiseConv ||
                        k == PlannedKind::FullyConnected || k == PlannedKind::ChannelAffine;
    if (a == Activation::Relu || a == Activation::Relu6) return affine || k == PlannedKind::Add;
    return a == Activation::HardSigmoid && affine;
}

// An operator's input values, held inline up to four (a longer add or concat uses the heap):
// plan_ops runs in every latency prediction, and a std::vector per operator made one heap
// allocation per operator. Reads like a const std::vector<int>.
class PlanInputs {
public:
    PlanInputs() = default;
    PlanInputs& operator=(const std::vector<int>& v) {
        set(v.data(), v.size());
        return *this;
    }
    void assign(std::size_t count, int value) {
        heap_.clear();
        if (count > inline_capacity) heap_.assign(count, value);
        else
            for (std::size_t k = 0; k < count; ++k) small_[k] = value;
        n_ = count;
    }
    std::size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    const int* begin() const noexcept { return data(); }
    const int* end() const noexcept { return data() + n_; }
    int operator[](std::size_t k) const noexcept { return data()[k]; }

private:
    static constexpr std::size_t inline_capacity = 4;
    int small_[inline_capacity] = {};
    std::vector<int> heap_;
    std::size_t n_ = 0;
    const int* data() const noexcept { return n_ > inline_capacity ? heap_.data() : small_; }
    void set(const int* v, std::size_t count) {
        heap_.clear();
        if (count > inline_capacity) heap_.assign(v, v + count);
        else
            for (std::size_t k = 0; k < count; ++k) small_[k] = v[k];
        n_ = count;
    }
};

// One planned operator (a group of XNNPACK operators for Add, Concat and HardSigmoid). Values are
// named by the layer that produces them; a value's buffer is plan.buffers.slot_of[plan.buffers.
// value_of[id]] (OpPlan::slot).
struct PlannedOp {
    PlannedKind kind = PlannedKind::Alias;
    int layer = -1;         // the layer it is timed under, whose attributes it uses
    Activation act = Activation::None;  // applied inside this op (Clamp..HardSigmoid: the function)
    int folded_bn = -1;     // the batchnorm folded into the weights (conv/dwconv/fc), or -1
    PlanInputs inputs;      // values read (an in-place activation reads its output)
    int output = -1;        // the value written (the layer's tail)
    bool in_place() const noexcept { return inputs.size() == 1 && inputs[0] == output; }
};

struct OpPlan {
    FusionPlan fusion;
    BufferPlan buffers;
    std::vector<PlannedOp> ops;
    // The buffer holding value `id` (-1 where it is fused away).
    int slot(int id) const noexcept {
        const int v = buffers.value_of[static_cast<std::size_t>(id)];
        return v < 0 ? -1 : buffers.slot_of[static_cast<std::size_t>(v)];
    }
};

// The operators of `g` (shapes inferred) in execution order, from `fusion`. Buffers as
// plan_buffers(g, fusion, reuse, pad_floats).
inline OpPlan plan_ops(const Graph& g, FusionPlan fusion, bool reuse = true,
                       std::int64_t pad_floats = 0) {
    OpPlan plan;
    plan.buffers = plan_buffers(g, fusion, reuse, pad_floats);
    plan.fusion = std::move(fusion);
    const FusionPlan& f = plan.fusion;
    const std::size_t n = g.layers.size();
    plan.ops.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (f.absorbed_by[i] >= 0) continue;
        const Layer& l = g.layers[i];
        PlannedOp op;
        op.layer = static_cast<int>(i);
        op.output = f.tail[i];
        op.inputs = l.inputs;
        Activation after = Activation::None;  // applied by an op of its own after this one
        switch (l.op) {
        case OpKind::Input:
        case OpKind::Flatten:
        case OpKind::Dropout: op.kind = PlannedKind::Alias; break;
        case OpKind::Conv2d:
        case OpKind::DepthwiseConv2d:
        case OpKind::FullyConnected:
        case OpKind::BatchNorm:
        case OpKind::Add:
            op.kind = l.op == OpKind::Conv2d            ? PlannedKind::Conv
                      : l.op == OpKind::DepthwiseConv2d ? PlannedKind::DepthwiseConv
                      : l.op == OpKind::FullyConnected  ? PlannedKind::FullyConnected
                      : l.op == OpKind::BatchNorm       ? PlannedKind::ChannelAffine
                                                        : PlannedKind::Add;
            op.folded_bn = f.folded_bn[i];
            if (activation_fused_into(op.kind, f.act[i]))
                op.act = f.act[i];
            else
                after = f.act[i];
            break;
        case OpKind::MaxPool:
        case OpKind::AvgPool:
            op.kind = l.kernel_h == 1 && l.kernel_w == 1 ? PlannedKind::StridedCopy
                      : l.op == OpKind::MaxPool          ? PlannedKind::MaxPool
                                                         : PlannedKind::AvgPool;
            break;
        case OpKind::GlobalAvgPool: op.kind = PlannedKind::GlobalAvgPool; break;
        case OpKind::Concat: op.kind = PlannedKind::Concat; break;
        case OpKind::Mul: op.kind = PlannedKind::Mul; break;
        case OpKind::Softmax: op.kind = PlannedKind::Softmax; break;
        case OpKind::Relu:
        case OpKind::Relu6:
        case OpKind::HardSwish:
        case OpKind::HardSigmoid:
        case OpKind::Sigmoid:
            op.act = activation_of_layer(l.op);
            op.kind = activation_op_kind(op.act);
            break;
        }
        plan.ops.push_back(std::move(op));
        if (after != Activation::None) {
            PlannedOp a;
            a.kind = activation_op_kind(after);
            a.layer = static_cast<int>(i);
            a.act = after;
            a.inputs.assign(1, f.tail[i]);
            a.output = f.tail[i];
            plan.ops.push_back(std::move(a));
        }
    }
    return plan;
}

inline OpPlan plan_ops(const Graph& g, bool reuse = true, std::int64_t pad_floats = 0) {
    return plan_ops(g, plan_fusion(g), reuse, pad_floats);
}

}  // namespace lamda

#endif  // LAMDA_EXEC_PLAN_HPP
