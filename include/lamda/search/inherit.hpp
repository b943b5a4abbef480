// lamda/search/inherit.hpp: weight inheritance -- a candidate derived from a parent model starts
// from the parent's trained weights instead of from scratch (as Once-for-All and network
// slimming do).
//
//   lamda::Inheritance inh = lamda::inherit_weights(parent, parent_weights, child, /*seed=*/1);
//   // inh.weights fits `child`; inh.tensors says, per tensor, reused / sliced / fresh
//
// Layers are matched by name and op. A tensor whose shape is unchanged and whose channels map
// one to one is reused as it is; when a layer's output channels shrank, the channels kept are
// those whose filters have the largest L1 norms (in their original order), and every reader of
// that value (batch norm, depthwise convolution, the next convolution's input channels, a
// flattened fully connected layer's features) is sliced the same way, so that what is kept still
// computes what it computed in the parent. Values joined by `add` or `mul` must agree on their
// channels: when the branches chose differently, the first input's choice is imposed on the
// layers that produce the others. Layers without a counterpart, channels that grew and kernels
// of another size start from lamda's deterministic initialisation (random_weights(child, seed)).
//
// Contract: `parent` and `child` have inferred shapes; `parent_weights` fit `parent`
// (validate_weights); the result always fits `child`. Never throws for a mismatch between the
// two models (that only means less is inherited); throws WeightsError when parent_weights do not
// fit parent.
#ifndef LAMDA_SEARCH_INHERIT_HPP
#define LAMDA_SEARCH_INHERIT_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "../core/ir.hpp"
#include "../data/weights.hpp"

namespace lamda {

enum class InheritKind { Reused, Sliced, Fresh };

inline const char* inherit_kind_name(InheritKind k) noexcept {
    switch (k) {
    case InheritKind::Reused: return "reused";
    case InheritKind::Sliced: return "sliced";
    case InheritKind::Fresh: return "fresh";
    }
    return "fresh";
}

struct InheritedTensor {
    std::string name;  // "LAYER.weight"
    InheritKind kind = InheritKind::Fresh;
};

struct Inheritance {
    Weights weights;                      // fits the child
    std::vector<InheritedTensor> tensors; // in the child's expected_weights order
    int reused = 0, sliced = 0, fresh = 0;

    // "12 reused, 3 sliced, 1 fresh"
    std::string summary() const {
        return std::to_string(reused) + " reused, " + std::to_string(sliced) + " sliced, " +
               std::to_string(fresh) + " fresh";
    }
};

namespace inherit_detail {

// For each output channel of a child layer: the parent channel it continues, or -1 (none).
using ChannelMap = std::vector<std::int64_t>;

inline ChannelMap identity_map(std::int64_t n) {
    ChannelMap m(static_cast<std::size_t>(n));
    std::iota(m.begin(), m.end(), std::int64_t{0});
    return m;
}

inline bool all_known(const ChannelMap& m) {
    return std::all_of(m.begin(), m.end(), [](std::int64_t v) { return v >= 0; });
}

// The `keep` output channels (of `total`) with the largest L1 norms, in their original order.
inline ChannelMap strongest_channels(const WeightTensor& w, std::int64_t keep) {
    const std::int64_t total = w.shape.empty() ? 0 : w.shape[0];
    const std::int64_t per = total > 0 ? w.elements() / total : 0;
    std::vector<double> norm(static_cast<std::size_t>(total), 0.0);
    for (std::int64_t o = 0; o < total; ++o)
        for (std::int64_t k = 0; k < per; ++k) norm[static_cast<std::size_t>(o)] += std::fabs(w.data[static_cast<std::size_t>(o * per + k)]);
    ChannelMap order = identity_map(total);
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        return norm[static_cast<std::size_t>(a)] > norm[static_cast<std::size_t>(b)];
    });
    order.resize(static_cast<std::size_t>(std::min(keep, total)));
    std::sort(order.begin(), order.end());
    return order;
}

struct Planner {
    const Graph& parent;
    const Weights& parent_weights;
    const Graph& child;
    std::map<std::string, ChannelMap> forced;  // output maps imposed on producers (add, mul)
    std::vector<ChannelMap> maps;              // per child layer: its output channels' origins
    std::vector<int> counterpart;              // per child layer: parent layer index or -1

    const Layer* parent_of(std::size_t i) const {
        const int p = counterpart[i];
        return p < 0 ? nullptr : &parent.layers[static_cast<std::size_t>(p)];
    }
    const WeightTensor* parent_tensor(std::size_t i, const char* suffix) const {
        const Layer* p = parent_of(i);
        if (!p) return nullptr;
        const auto it = parent_weights.find(p->name + suffix);
        return it == parent_weights.end() ? nullptr : &it->second;
    }
    const ChannelMap& input_map(const Layer& l, std::size_t k = 0) const {
        return maps[static_cast<std::size_t>(l.inputs[k])];
    }

    // The output map of a layer that chooses its own output channels (conv2d, fc).
    ChannelMap choose_outputs(std::size_t i, std::int64_t child_out, std::int64_t parent_out) {
        const auto f = forced.find(child.layers[i].name);
        if (f != forced.end() && static_cast<std::int64_t>(f->second.size()) == child_out) return f->second;
        if (child_out >= parent_out) {
            ChannelMap m = identity_map(parent_out);
            m.resize(static_cast<std::size_t>(child_out), -1);  // grown channels start fresh
            return m;
        }
        const WeightTensor* w = parent_tensor(i, ".weight");
        if (!w) return ChannelMap(static_cast<std::size_t>(child_out), -1);
        return strongest_channels(*w, child_out);
    }

    // Walks back from a value through layers that keep channels one to one, to the layer that
    // chose them; imposes `want` there. False if no such layer (then the maps stay as they are).
    bool impose(int value, const ChannelMap& want) {
        while (value >= 0) {
            const Layer& l = child.layers[static_cast<std::size_t>(value)];
            switch (l.op) {
            case OpKind::Conv2d:
            case OpKind::FullyConnected:
                if (!parent_of(static_cast<std::size_t>(value)) || !all_known(want)) return false;
                forced[l.name] = want;
                return true;
            case OpKind::DepthwiseConv2d:
                if (l.multiplier != 1) return false;
                value = l.inputs.front();
                break;
            case OpKind::BatchNorm:
            case OpKind::Relu:
            case OpKind::Relu6:
            case OpKind::HardSwish:
            case OpKind::HardSigmoid:
            case OpKind::Sigmoid:
            case OpKind::Dropout:
            case OpKind::MaxPool:
            case OpKind::AvgPool:
            case OpKind::GlobalAvgPool:
                value = l.inputs.front();
                break;
            case OpKind::Add:
                for (int in : l.inputs)
                    if (!impose(in, want)) return false;
                return true;
            default: return false;
            }
        }
        return false;
    }

    // One pass over the child; false when an add/mul imposed a new choice (run again).
    bool plan_once() {
        maps.assign(child.layers.size(), {});
        for (std::size_t i = 0; i < child.layers.size(); ++i) {
            const Layer& l = child.layers[i];
            const Layer* p = parent_of(i);
            const std::int64_t c = l.shape.c;
            ChannelMap unknown(static_cast<std::size_t>(c), -1);
            switch (l.op) {
            case OpKind::Input:
                maps[i] = p && p->shape == l.shape ? identity_map(c) : unknown;
                break;
            case OpKind::Conv2d:
                maps[i] = p && l.groups == 1 && p->groups == 1 ? choose_outputs(i, c, p->shape.c) : unknown;
                break;
            case OpKind::FullyConnected:
                maps[i] = p ? choose_outputs(i, c, p->shape.c) : unknown;
                break;
            case OpKind::DepthwiseConv2d: {
                maps[i] = unknown;
                if (!p || p->multiplier != l.multiplier) break;
                const ChannelMap& in = input_map(l);
                for (std::size_t ch = 0; ch < in.size(); ++ch)
                    for (int k = 0; k < l.multiplier; ++k)
                        if (in[ch] >= 0) maps[i][ch * static_cast<std::size_t>(l.multiplier) + static_cast<std::size_t>(k)] = in[ch] * l.multiplier + k;
                break;
            }
            case OpKind::Flatten: {
                maps[i] = unknown;
                const Layer& src = child.layers[static_cast<std::size_t>(l.inputs.front())];
                const Layer* psrc = parent_of(static_cast<std::size_t>(l.inputs.front()));
                if (!psrc || psrc->shape.h != src.shape.h || psrc->shape.w != src.shape.w) break;
                const ChannelMap& in = input_map(l);
                for (std::int64_t hw = 0; hw < src.shape.h * src.shape.w; ++hw)
                    for (std::int64_t ch = 0; ch < src.shape.c; ++ch)
                        if (in[static_cast<std::size_t>(ch)] >= 0)
                            maps[i][static_cast<std::size_t>(hw * src.shape.c + ch)] = hw * psrc->shape.c + in[static_cast<std::size_t>(ch)];
                break;
            }
            case OpKind::Concat: {
                maps[i].clear();
                std::int64_t offset = 0;
                bool parent_known = p != nullptr && p->inputs.size() == l.inputs.size();
                for (std::size_t k = 0; k < l.inputs.size(); ++k) {
                    const ChannelMap& in = input_map(l, k);
                    for (std::int64_t v : in) maps[i].push_back(parent_known && v >= 0 ? offset + v : -1);
                    if (parent_known) offset += parent.layers[static_cast<std::size_t>(p->inputs[k])].shape.c;
                }
                break;
            }
            case OpKind::Add:
            case OpKind::Mul: {
                maps[i] = input_map(l);
                for (std::size_t k = 1; k < l.inputs.size(); ++k) {
                    const ChannelMap& other = input_map(l, k);
                    if (other == maps[i] || other.size() != maps[i].size()) continue;
                    if (impose(l.inputs[k], maps[i])) return false;  // re-plan with the choice imposed
                }
                if (maps[i].size() != static_cast<std::size_t>(c)) maps[i] = unknown;
                break;
            }
            default:  // channel-preserving ops
                maps[i] = l.inputs.empty() ? unknown : input_map(l);
                if (maps[i].size() != static_cast<std::size_t>(c)) maps[i] = unknown;
                break;
            }
        }
        return true;
    }

    void plan() {
        counterpart.assign(child.layers.size(), -1);
        for (std::size_t i = 0; i < child.layers.size(); ++i) {
            const int p = parent.find(child.layers[i].name);
            if (p >= 0 && parent.layers[static_cast<std::size_t>(p)].op == child.layers[i].op) counterpart[i] = p;
        }
        // Each round imposes at least one new choice on a distinct producer: bounded by layers.
        for (std::size_t round = 0; round <= child.layers.size(); ++round)
            if (plan_once()) return;
    }
};

// Copies parent values into `out` (already initialised) where both indices are known; returns
// how many of out's values came from the parent.
template <class Index>
std::int64_t copy_mapped(const WeightTensor& from, WeightTensor& out, const Index& index_of) {
    std::int64_t copied = 0;
    for (std::int64_t k = 0; k < out.elements(); ++k) {
        const std::int64_t src = index_of(k);
        if (src < 0 || src >= from.elements()) continue;
        out.data[static_cast<std::size_t>(k)] = from.data[static_cast<std::size_t>(src)];
        ++copied;
    }
    return copied;
}

}  // namespace inherit_detail

inline Inheritance inherit_weights(const Graph& parent, const Weights& parent_weights, const Graph& child,
                                   std::uint64_t seed) {
    const std::vector<std::string> problems = validate_weights(parent, parent_weights);
    if (!problems.empty()) throw WeightsError("the parent's weights do not fit the parent model: " + problems.front());
    inherit_detail::Planner plan{parent, parent_weights, child, {}, {}, {}};
    plan.plan();

    Inheritance out;
    out.weights = random_weights(child, seed);
    for (const ExpectedTensor& e : expected_weights(child)) {
        const auto li = static_cast<std::size_t>(e.layer);
        const Layer& l = child.layers[li];
        const std::string suffix = e.name.substr(l.name.size());
        WeightTensor& t = out.weights[e.name];
        const WeightTensor* from = plan.parent_tensor(li, suffix.c_str());
        const Layer* p = plan.parent_of(li);
        std::int64_t copied = 0;
        if (from && p) {
            const inherit_detail::ChannelMap& omap = plan.maps[li];
            const bool is_weight = suffix == ".weight" && l.op != OpKind::BatchNorm;
            if (!is_weight) {  // per output channel: bias, batch norm's four tensors
                copied = inherit_detail::copy_mapped(*from, t, [&](std::int64_t k) { return omap[static_cast<std::size_t>(k)]; });
            } else if (l.op == OpKind::FullyConnected) {
                const inherit_detail::ChannelMap& imap = plan.input_map(l);
                const std::int64_t in = t.shape[1], pin = from->shape[1];
                copied = inherit_detail::copy_mapped(*from, t, [&](std::int64_t k) -> std::int64_t {
                    const std::int64_t o = omap[static_cast<std::size_t>(k / in)], i = imap.size() == static_cast<std::size_t>(in) ? imap[static_cast<std::size_t>(k % in)] : -1;
                    return o < 0 || i < 0 ? -1 : o * pin + i;
                });
            } else if (from->shape.size() == 4 && t.shape[2] == from->shape[2] && t.shape[3] == from->shape[3]) {
                // conv2d [O][I/g][kh][kw] or dwconv [C*m][1][kh][kw]
                const std::int64_t in = t.shape[1], kk = t.shape[2] * t.shape[3], pin = from->shape[1];
                const bool depthwise = l.op == OpKind::DepthwiseConv2d;
                const inherit_detail::ChannelMap& imap = plan.input_map(l);
                copied = inherit_detail::copy_mapped(*from, t, [&](std::int64_t k) -> std::int64_t {
                    const std::int64_t o = omap[static_cast<std::size_t>(k / (in * kk))];
                    const std::int64_t i = depthwise ? 0 : (static_cast<std::size_t>(in) == imap.size() ? imap[static_cast<std::size_t>((k / kk) % in)] : -1);
                    return o < 0 || i < 0 ? -1 : (o * pin + i) * kk + k % kk;
                });
            }
        }
        InheritKind kind = InheritKind::Fresh;
        if (copied == t.elements() && from && from->shape == t.shape && from->data == t.data) kind = InheritKind::Reused;
        else if (copied > 0) kind = InheritKind::Sliced;
        out.tensors.push_back({e.name, kind});
        (kind == InheritKind::Reused ? out.reused : kind == InheritKind::Sliced ? out.sliced : out.fresh) += 1;
    }
    return out;
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_INHERIT_HPP
