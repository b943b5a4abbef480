// lamda/search/inherit.hpp: weight inheritance -- a candidate derived from a parent model starts
// from the parent's trained weights instead of from scratch (as Once-for-All and network
// slimming do).
//
//   lamda::Inheritance inh = lamda::inherit_weights(parent, parent_weights, child, /*seed=*/1);
//   // inh.weights fits `child`; inh.tensors says, per tensor, reused / sliced / fresh
//   auto bn = lamda::with_identity_batchnorm(child, inh.weights);  // batch norm back, for training
//
// Layers are matched by name and op. A tensor whose shape is unchanged and whose channels map
// one to one is reused as it is; when a layer's output channels shrank, the channels kept are
// those whose filters have the largest L1 norms (in their original order), and every reader of
// that value (batch norm, depthwise convolution, the next convolution's input channels, a
// flattened fully connected layer's features) is sliced the same way, so that what is kept still
// computes what it computed in the parent. Values joined by `add` or `mul` must agree on their
// channels: when the branches chose differently, the first input's choice is imposed on the
// layers that produce the others. A kernel made smaller (odd sizes, "same" padding) keeps the
// centre of each filter (Once-for-All's elastic kernel). Layers without a counterpart, channels
// that grew and kernels that grew start from lamda's deterministic initialisation
// (random_weights(child, seed)).
// A dense k x k convolution NAME made separable (a depthwise k x k NAME_dw reading its input, then
// a 1x1 convolution NAME; adapt.hpp's edit) is factored: per input channel c, the parent's kernels
// W[:, c] (outputs x taps) are replaced by their best rank-1 approximation u s v', the depthwise
// filter of c taking v sqrt(s) and the 1x1 column of c taking u sqrt(s), which is exact when W[:, c]
// has rank 1 (Guo et al., "Network Decoupling", 2018). Both tensors are then "factored".
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
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/ir.hpp"
#include "../data/tensor.hpp"
#include "../data/weights.hpp"
#include "../exec/reference.hpp"

namespace lamda {

enum class InheritKind { Reused, Sliced, Factored, Fresh };

inline const char* inherit_kind_name(InheritKind k) noexcept {
    switch (k) {
    case InheritKind::Reused: return "reused";
    case InheritKind::Sliced: return "sliced";
    case InheritKind::Factored: return "factored";
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
    int reused = 0, sliced = 0, factored = 0, fresh = 0;

    // "12 reused, 3 sliced, 1 fresh" ("..., 2 factored, ..." when any were)
    std::string summary() const {
        return std::to_string(reused) + " reused, " + std::to_string(sliced) + " sliced, " +
               (factored ? std::to_string(factored) + " factored, " : std::string()) +
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

// The best rank-1 approximation sigma u v' of `m` (rows x cols, row-major, cols small): v is the
// top eigenvector of m'm by power iteration (deterministic start; when the top eigenvalues are
// close, any mix of their vectors approximates about as well), u = m v / sigma. False when m is 0.
inline bool rank1(const std::vector<double>& m, std::size_t rows, std::size_t cols, std::vector<double>& u,
                  std::vector<double>& v, double& sigma) {
    std::vector<double> gram(cols * cols, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t a = 0; a < cols; ++a)
            for (std::size_t b = 0; b < cols; ++b) gram[a * cols + b] += m[r * cols + a] * m[r * cols + b];
    v.assign(cols, 0.0);
    for (std::size_t a = 0; a < cols; ++a) v[a] = 1.0 + 0.01 * static_cast<double>(a);
    std::vector<double> next(cols);
    for (int iteration = 0; iteration < 200; ++iteration) {
        double norm = 0;
        for (std::size_t a = 0; a < cols; ++a) {
            next[a] = 0;
            for (std::size_t b = 0; b < cols; ++b) next[a] += gram[a * cols + b] * v[b];
            norm += next[a] * next[a];
        }
        norm = std::sqrt(norm);
        if (!(norm > 0) || !std::isfinite(norm)) return false;
        for (std::size_t a = 0; a < cols; ++a) v[a] = next[a] / norm;
    }
    u.assign(rows, 0.0);
    double norm = 0;
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t a = 0; a < cols; ++a) u[r] += m[r * cols + a] * v[a];
        norm += u[r] * u[r];
    }
    sigma = std::sqrt(norm);
    if (!(sigma > 0) || !std::isfinite(sigma)) return false;
    for (double& x : u) x /= sigma;
    return true;
}

// Factors the parent's dense convolution `dense` into the child's depthwise layer `dw` (reading
// what `dense` read) and 1x1 layer `pw` (reading `dw`, continuing `dense`'s output channels as
// `omap` says; `imap`: the input channels' origins). Input channels or output channels without a
// parent counterpart keep their initial values. Returns false (nothing written) when the shapes do
// not allow it.
inline bool factor_separable(const WeightTensor& dense, const ChannelMap& imap, const ChannelMap& omap,
                             WeightTensor& dw, WeightTensor& pw) {
    if (dense.shape.size() != 4 || dw.shape.size() != 4 || pw.shape.size() != 4) return false;
    const std::int64_t pout = dense.shape[0], pin = dense.shape[1], taps = dense.shape[2] * dense.shape[3];
    const std::int64_t in = dw.shape[0], out = pw.shape[0];
    if (dw.shape[1] != 1 || dw.shape[2] != dense.shape[2] || dw.shape[3] != dense.shape[3] || pw.shape[1] != in ||
        pw.shape[2] != 1 || pw.shape[3] != 1 || static_cast<std::int64_t>(imap.size()) != in ||
        static_cast<std::int64_t>(omap.size()) != out)
        return false;
    std::vector<std::int64_t> rows;  // child output channels with a parent counterpart
    for (std::int64_t o = 0; o < out; ++o)
        if (omap[static_cast<std::size_t>(o)] >= 0 && omap[static_cast<std::size_t>(o)] < pout) rows.push_back(o);
    if (rows.empty()) return false;
    bool any = false;
    std::vector<double> m(rows.size() * static_cast<std::size_t>(taps)), u, v;
    for (std::int64_t c = 0; c < in; ++c) {
        const std::int64_t pc = imap[static_cast<std::size_t>(c)];
        if (pc < 0 || pc >= pin) continue;
        for (std::size_t r = 0; r < rows.size(); ++r)
            for (std::int64_t t = 0; t < taps; ++t)
                m[r * static_cast<std::size_t>(taps) + static_cast<std::size_t>(t)] =
                    dense.data[static_cast<std::size_t>((omap[static_cast<std::size_t>(rows[r])] * pin + pc) * taps + t)];
        double sigma = 0;
        if (!rank1(m, rows.size(), static_cast<std::size_t>(taps), u, v, sigma)) continue;
        const double root = std::sqrt(sigma);
        for (std::int64_t t = 0; t < taps; ++t)
            dw.data[static_cast<std::size_t>(c * taps + t)] = static_cast<float>(v[static_cast<std::size_t>(t)] * root);
        for (std::size_t r = 0; r < rows.size(); ++r)
            pw.data[static_cast<std::size_t>(rows[r] * in + c)] = static_cast<float>(u[r] * root);
        any = true;
    }
    return any;
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
            } else if (from->shape.size() == 4 && t.shape[2] <= from->shape[2] && t.shape[3] <= from->shape[3] &&
                       (from->shape[2] - t.shape[2]) % 2 == 0 && (from->shape[3] - t.shape[3]) % 2 == 0 &&
                       ((t.shape[2] == from->shape[2] && t.shape[3] == from->shape[3]) ||
                        l.padding.mode == PaddingMode::Same)) {
                // conv2d [O][I/g][kh][kw] or dwconv [C*m][1][kh][kw]. A smaller kernel (padded
                // "same", so it stays centred on the same pixel) keeps the centre of each filter
                // (Once-for-All's elastic kernel, without its transform).
                const std::int64_t in = t.shape[1], kh = t.shape[2], kw = t.shape[3], kk = kh * kw, pin = from->shape[1];
                const std::int64_t pkw = from->shape[3], pkk = from->shape[2] * pkw;
                const std::int64_t dy = (from->shape[2] - kh) / 2, dx = (pkw - kw) / 2;
                const bool depthwise = l.op == OpKind::DepthwiseConv2d;
                const inherit_detail::ChannelMap& imap = plan.input_map(l);
                copied = inherit_detail::copy_mapped(*from, t, [&](std::int64_t k) -> std::int64_t {
                    const std::int64_t o = omap[static_cast<std::size_t>(k / (in * kk))];
                    const std::int64_t i = depthwise ? 0 : (static_cast<std::size_t>(in) == imap.size() ? imap[static_cast<std::size_t>((k / kk) % in)] : -1);
                    const std::int64_t tap = k % kk, y = tap / kw + dy, x = tap % kw + dx;
                    return o < 0 || i < 0 ? -1 : (o * pin + i) * pkk + y * pkw + x;
                });
            }
        }
        InheritKind kind = InheritKind::Fresh;
        if (copied == t.elements() && from && from->shape == t.shape && from->data == t.data) kind = InheritKind::Reused;
        else if (copied > 0) kind = InheritKind::Sliced;
        out.tensors.push_back({e.name, kind});
    }
    // A dense convolution made separable: NAME (1x1, the parent's NAME k x k) reading NAME_dw (new,
    // reading what the parent's NAME read).
    for (std::size_t i = 0; i < child.layers.size(); ++i) {
        const Layer& pw = child.layers[i];
        const Layer* dense = plan.parent_of(i);
        if (pw.op != OpKind::Conv2d || pw.groups != 1 || pw.kernel_h != 1 || pw.kernel_w != 1 || pw.inputs.size() != 1 ||
            !dense || dense->groups != 1 || dense->inputs.size() != 1 || (dense->kernel_h == 1 && dense->kernel_w == 1))
            continue;
        const auto d = static_cast<std::size_t>(pw.inputs.front());
        const Layer& dw = child.layers[d];
        if (dw.op != OpKind::DepthwiseConv2d || dw.multiplier != 1 || dw.name != pw.name + "_dw" || plan.parent_of(d) ||
            dw.inputs.size() != 1)
            continue;
        if (child.layers[static_cast<std::size_t>(dw.inputs.front())].name != parent.layers[static_cast<std::size_t>(dense->inputs.front())].name)
            continue;
        const WeightTensor* from = plan.parent_tensor(i, ".weight");
        if (!from) continue;
        if (inherit_detail::factor_separable(*from, plan.input_map(dw), plan.maps[i], out.weights.at(dw.name + ".weight"),
                                             out.weights.at(pw.name + ".weight")))
            for (InheritedTensor& t : out.tensors)
                if (t.name == dw.name + ".weight" || t.name == pw.name + ".weight") t.kind = InheritKind::Factored;
    }
    for (const InheritedTensor& t : out.tensors) {
        switch (t.kind) {
        case InheritKind::Reused: ++out.reused; break;
        case InheritKind::Sliced: ++out.sliced; break;
        case InheritKind::Factored: ++out.factored; break;
        case InheritKind::Fresh: ++out.fresh; break;
        }
    }
    return out;
}

// Batch norm put back for an inherited candidate's full training. Weights saved by lamda have
// batch norm folded, so every candidate an adaptation derives from them trains without it: a
// 0.05 ms descendant of the fmnist_large model reached 86.96% test after 12 epochs from its
// inherited weights, and 88.32% with an identity batch norm after each convolution (the same
// weights, the same 12 epochs); from scratch without batch norm, 80.31% (docs/adapt.md).
//
// The graph with a batchnorm NAME_bn after every conv2d and dwconv that has a bias, no fused
// activation, an output map larger than 1x1 (not a squeeze-excitation's) and no batchnorm or
// other reader but the new one in between, with `w` plus each one's tensors: the same function
// in inference (to eps), and folding it (exec/fold.hpp) gives back `g`'s layers and tensor shapes.
// std::nullopt when no layer qualifies or a name NAME_bn is taken. `g` has inferred shapes and `w`
// fits it (with `images`, of g's input shape: else WeightsError or ExecutorError).
//
// Without `images`, each starts as gamma 1, beta 0, running mean 0, variance 1. With them, its
// running statistics are those of its convolution's output on the images (through the reference
// executor), and gamma = sqrt(var + eps), beta = mean: the identity in inference still, and now
// also, nearly, in training, where a batch's own statistics normalise. With gamma 1 the first
// training step rescales every convolution's output to unit variance, and the layers after it
// no longer get what they learned on.
inline std::optional<std::pair<Graph, Weights>> with_identity_batchnorm(const Graph& g, const Weights& w,
                                                                        const std::vector<Tensor>& images = {}) {
    std::vector<bool> normalised(g.layers.size(), false);
    for (const Layer& l : g.layers)
        if (l.op == OpKind::BatchNorm && l.inputs.size() == 1) normalised[static_cast<std::size_t>(l.inputs.front())] = true;
    std::vector<bool> gets(g.layers.size(), false);
    bool any = false;
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        if ((l.op != OpKind::Conv2d && l.op != OpKind::DepthwiseConv2d) || !l.bias || l.act != Activation::None ||
            normalised[i] || l.shape.h * l.shape.w <= 1)
            continue;
        if (g.find(l.name + "_bn") >= 0) return std::nullopt;
        gets[i] = any = true;
    }
    if (!any) return std::nullopt;
    // Per channel of each convolution that gets one: sum and sum of squares, then mean, variance.
    std::vector<std::vector<double>> sum(g.layers.size()), squares(g.layers.size());
    std::vector<double> count(g.layers.size(), 0.0);
    for (const Tensor& image : images) {
        const std::vector<Tensor> values = run_reference_all(g, w, image);
        for (std::size_t i = 0; i < g.layers.size(); ++i) {
            if (!gets[i]) continue;
            const Tensor& v = values[i];
            const auto c = static_cast<std::size_t>(v.shape.c);
            sum[i].resize(c, 0.0);
            squares[i].resize(c, 0.0);
            for (std::size_t k = 0; k < v.data.size(); ++k) {  // HWC: channel k % c
                const double x = v.data[k];
                sum[i][k % c] += x;
                squares[i][k % c] += x * x;
            }
            count[i] += static_cast<double>(v.data.size() / c);
        }
    }
    std::pair<Graph, Weights> out{Graph{}, w};
    Graph& bn = out.first;
    bn.name = g.name;
    std::vector<int> index(g.layers.size(), -1);  // what readers of layer i read in `bn`
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        Layer l = g.layers[i];
        for (int& in : l.inputs) in = index[static_cast<std::size_t>(in)];
        bn.layers.push_back(l);
        index[i] = static_cast<int>(bn.layers.size()) - 1;
        if (!gets[i]) continue;
        Layer norm;
        norm.name = l.name + "_bn";
        norm.op = OpKind::BatchNorm;
        norm.inputs = {index[i]};
        norm.shape = l.shape;
        bn.layers.push_back(norm);
        index[i] = static_cast<int>(bn.layers.size()) - 1;
        const std::int64_t c = l.shape.c;
        const auto channels = [&](float v) { return WeightTensor{{c}, std::vector<float>(static_cast<std::size_t>(c), v)}; };
        WeightTensor gamma = channels(1.0f), beta = channels(0.0f), mean = channels(0.0f), var = channels(1.0f);
        if (count[i] > 0)
            for (std::size_t k = 0; k < static_cast<std::size_t>(c); ++k) {
                const double m = sum[i][k] / count[i];
                const double v = std::max(0.0, squares[i][k] / count[i] - m * m);
                mean.data[k] = static_cast<float>(m);
                var.data[k] = static_cast<float>(v);
                gamma.data[k] = static_cast<float>(std::sqrt(v + norm.eps));
                beta.data[k] = static_cast<float>(m);
            }
        out.second[norm.name + ".weight"] = std::move(gamma);
        out.second[norm.name + ".bias"] = std::move(beta);
        out.second[norm.name + ".running_mean"] = std::move(mean);
        out.second[norm.name + ".running_var"] = std::move(var);
    }
    return out;
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_INHERIT_HPP
