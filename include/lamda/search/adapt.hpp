// lamda/search/adapt.hpp: adapting an existing model to a device -- `lamda generate TASK --out DIR
// --start-from MODEL [--start-weights W]` (docs/adapt.md). The user's trained model is candidate 0
// (evaluated with its own weights, not retrained); every later candidate is an edit of an earlier
// one and starts from that one's weights (search/inherit.hpp), fine-tuned instead of trained from
// scratch:
//
//   lamda::StartModel start = lamda::load_start_model("best.lamda", "best.safetensors", task);
//   lamda::AdaptDesigner proposer(/*seed=*/1, start);            // candidate 0 is the start model
//   setup.inherit = lamda::weight_inheritance(dir, /*seed=*/1);  // GenerateSetup (search/loop.hpp)
//
// load_start_model refuses (lamda::Exception, ErrorKind::input) a model whose input or classes are
// not the task's and weights that do not fit the model, saying what differs. Weights saved by
// `lamda train --out` / `lamda generate` have batch norm folded: when they fit the model's folded
// form (exec/fold.hpp), that form is the start model.
//
// AdaptDesigner edits any graph, not only search/designer.hpp's designs (an imported ONNX model
// has no design): it scales the width of every layer of a width (the layers an `add` joins share
// one), scales all widths, makes a costly dense k x k conv separable (depthwise k x k, then 1x1),
// drops a conv (with its batch norm and activation) whose input and output channels agree, drops
// a squeeze-excitation or a residual branch (a block: the add then passes its skip on), moves
// a downsampling earlier (stride 2), or makes a 5x5 (or larger) depthwise kernel 3x3 (its centre
// inherited), steered like the offline
// designer: over budget -> shrink where the measured cost is, below accuracy -> grow. Its note
// names the parent ("... of #3"), which weight_inheritance() reads. Deterministic in (seed,
// records), so --resume continues it. StartModelFirst adapts with any other proposer (the LLM's):
// the start model first, then the inner proposer's models, each an edit of the start model.
//
// weight_inheritance(dir, seed) writes each candidate's inherited weights to
// DIR/weights/candidate_N.safetensors (the trainer's fine-tuning then overwrites them with what it
// reached) and records parent, inherited ("12 reused, 3 sliced, 1 fresh") and weights in the
// journal; a parent without weights (never run) passes on its own parent's. The start model's
// weights are DIR/weights/start.safetensors (generate.hpp copies them there).
// Core, plus ONNX files when LAMDA_WITH_ONNX is defined.
#ifndef LAMDA_SEARCH_ADAPT_HPP
#define LAMDA_SEARCH_ADAPT_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../data/weights.hpp"
#include "../dsl/file.hpp"
#include "../dsl/parser.hpp"
#include "../exception.hpp"
#include "../exec/fold.hpp"
#include "inherit.hpp"
#include "proposers.hpp"
#include "sampler.hpp"
#include "types.hpp"
#if defined(LAMDA_WITH_ONNX)
#include "../deploy/onnx_import.hpp"
#endif

namespace lamda {

// The model a search adapts, as loaded and checked against the task.
struct StartModel {
    std::string source;   // the file it came from
    Graph graph;          // the start model (batch norm folded when its weights are)
    std::string dsl;      // print_dsl(graph): candidate 0's text
    Weights weights;      // fit `graph`
    bool folded = false;  // the file's batch norms were folded to fit the weights
};

inline constexpr std::string_view start_model_note = "start model ";
inline constexpr std::string_view start_weights_file = "weights/start.safetensors";

namespace adapt_detail {

inline std::string shape_text(const Shape& s) {
    return std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

[[noreturn]] inline void refuse(const std::string& where, const std::string& what) {
    throw Exception(Error(ErrorKind::input, Where{where, 0, 0, {}}, "cannot adapt this model: " + what));
}

inline bool ends_with(const std::string& s, std::string_view tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace adapt_detail

// Loads MODEL (.lamda, or .onnx with LAMDA_WITH_ONNX) and its weights (`weights_path`; for a
// .lamda file, default MODEL with .safetensors; an ONNX file carries its own) and checks them
// against the task's input and classes. Throws lamda::Exception naming what differs.
inline StartModel load_start_model(const std::string& path, const std::string& weights_path, const Task& task) {
    using adapt_detail::refuse;
    StartModel s;
    s.source = path;
    const bool onnx = adapt_detail::ends_with(path, ".onnx");
    if (onnx) {
#if defined(LAMDA_WITH_ONNX)
        OnnxImport imported = import_onnx_file(path);
        s.graph = std::move(imported.graph);
        s.weights = std::move(imported.weights);
#else
        refuse(path, "this lamda was built without ONNX import (libonnx-dev); convert it with `lamda import` "
                     "on a lamda that has it, and start from the .lamda file and its weights");
#endif
    } else {
        ParseResult parsed = parse_dsl_file(path);
        if (!parsed.ok()) throw ModelError(std::move(parsed.diagnostics));
        s.graph = std::move(parsed.graph);
    }
    std::string wpath = weights_path;
    if (wpath.empty() && !onnx) {
        wpath = std::filesystem::path(path).replace_extension(".safetensors").string();
        std::error_code ec;
        if (!std::filesystem::exists(wpath, ec))
            refuse(path, "no weights: give --start-weights W (looked for " + wpath + "); the start model is "
                         "evaluated with its own trained weights, not retrained");
    }
    if (!wpath.empty()) s.weights = read_safetensors(wpath);
    const std::string wname = wpath.empty() ? path : wpath;

    // The task's input and classes.
    const Shape in = s.graph.input().shape;
    if (!(in.h == task.input.h && in.w == task.input.w && in.c == task.input.c))
        refuse(path, "its input is " + adapt_detail::shape_text(in) + ", the task's is " +
                         adapt_detail::shape_text(task.input));
    const Shape out = s.graph.output().shape;
    if (!(out.h == 1 && out.w == 1 && out.c == task.classes))
        refuse(path, "its output is " + adapt_detail::shape_text(out) + ", the task has " +
                         std::to_string(task.classes) + " classes (1x1x" + std::to_string(task.classes) + ")");

    // Weights that fit the model, or its folded form.
    const std::vector<std::string> problems = validate_weights(s.graph, s.weights);
    if (!problems.empty()) {
        const Graph folded = fold_batchnorm_graph(s.graph);
        if (folded.layers.size() != s.graph.layers.size() && validate_weights(folded, s.weights).empty()) {
            s.graph = folded;
            s.folded = true;
        } else {
            std::string what = "the weights " + wname + " do not fit the model: " + problems.front();
            if (problems.size() > 1)
                what += " (and " + std::to_string(problems.size() - 1) + " more problem" +
                        (problems.size() > 2 ? "s" : "") + ")";
            refuse(path, what);
        }
    }
    s.dsl = print_dsl(s.graph);
    return s;
}

// The candidate a note says a candidate was derived from ("... of #12"), or -1.
inline int parent_in_note(std::string_view note) {
    const std::size_t at = note.rfind(" of #");
    if (at == std::string_view::npos) return -1;
    std::int64_t v = 0;
    std::size_t i = at + 5, digits = 0;
    for (; i < note.size() && note[i] >= '0' && note[i] <= '9' && digits < 9; ++i, ++digits) v = v * 10 + (note[i] - '0');
    return digits ? static_cast<int>(v) : -1;
}

namespace adapt_detail {

inline bool width_editable(const Layer& l) {
    return (l.op == OpKind::Conv2d && l.groups == 1) || l.op == OpKind::FullyConnected;
}

// Layers whose width is the model's output width (the classifier and what joins it): not edited.
inline std::vector<bool> fixed_width(const Graph& g) {
    std::vector<bool> fixed(g.layers.size(), false);
    std::vector<int> todo{static_cast<int>(g.layers.size()) - 1};
    std::set<int> visited;
    while (!todo.empty()) {
        const int i = todo.back();
        todo.pop_back();
        if (i < 0 || !visited.insert(i).second) continue;
        const Layer& l = g.layers[static_cast<std::size_t>(i)];
        if (width_editable(l) || l.op == OpKind::Input || l.op == OpKind::Concat) {
            fixed[static_cast<std::size_t>(i)] = true;
            continue;
        }
        if (l.op == OpKind::Conv2d) fixed[static_cast<std::size_t>(i)] = true;  // grouped: left alone
        for (int in : l.inputs) todo.push_back(in);
    }
    return fixed;
}

// A width step from `from` channels to about `v`, on the coarsest grid that keeps it close: a
// multiple of `tile` (the target's channel tile, channel_step_for: 16 for XNNPACK's f32 kernels on
// x86 with AVX) within 15% of v, else a multiple of 8 (XNNPACK packs channels by 8) within 10%,
// else whole channels, at least 4. A grid point that would undo the step (`from` itself, or past it
// the other way) gives way to the next one in the step's direction. Rounding to 8 alone turned a
// x0.82 cut of 24 channels into 16 (x0.67): a step much harder than the designer asked for, which
// one epoch of fine-tuning did not recover from. Whole channels alone left widths such as 28 and 56
// in a 0.05 ms lineage, which cost a whole tile on the device anyway and train slowly: libtorch's
// channels-last batch norm, forward and backward, took 11 ns an element at 28 channels and 1.8 at
// 56 against 0.75 at 32 and 0.64 at 64 (bench/torch_batchnorm_widths.py; docs/adapt.md).
inline int round_width(int from, double v, int tile = 8) {
    const auto on_grid = [&](int grid, double tolerance) {
        if (grid < 8 || v < 16) return 0;
        int r = static_cast<int>(std::lround(v / grid)) * grid;
        if (v < from && r >= from) r = static_cast<int>(std::floor(v / grid)) * grid;
        if (v > from && r <= from) r = static_cast<int>(std::ceil(v / grid)) * grid;
        return r > 0 && std::abs(r - v) <= tolerance * v ? r : 0;
    };
    if (tile > 8)
        if (const int r = on_grid(tile, 0.15)) return r;
    if (const int r = on_grid(8, 0.10)) return r;
    return std::max(4, static_cast<int>(std::lround(v)));
}

// The layer that chose `i`'s channels (walking back through channel-keeping layers), or -1.
inline int width_source(const Graph& g, int i) {
    while (i >= 0) {
        const Layer& l = g.layers[static_cast<std::size_t>(i)];
        if (width_editable(l)) return i;
        if (l.inputs.empty() || l.op == OpKind::Concat || l.op == OpKind::Flatten) return -1;
        i = l.inputs.front();
    }
    return -1;
}

// Every editable layer of width `from` (not fixed) gets round_width(from * factor); returns that
// width, or 0 where no layer changed.
inline int scale_class(Graph& g, const std::vector<bool>& fixed, int from, double factor, int tile) {
    const int to = round_width(from, from * factor, tile);
    if (to == from) return 0;
    bool changed = false;
    for (std::size_t i = 0; i < g.layers.size(); ++i)
        if (!fixed[i] && width_editable(g.layers[i]) && g.layers[i].out_channels == from) {
            g.layers[i].out_channels = to;
            changed = true;
        }
    return changed ? to : 0;
}

// The width factor for a parent `over` times its budget (> 1): latency taken as about quadratic in
// width, every width times sqrt(0.92 / over) lands near 92% of the budget; bounded so one edit
// neither keeps a width nor cuts it below a third.
inline double far_over_width_factor(double over) { return std::clamp(std::sqrt(0.92 / over), 0.3, 0.95); }

// Every editable width times `factor` (layers of one width stay of one width).
inline int scale_all(Graph& g, const std::vector<bool>& fixed, double factor, int tile) {
    std::map<int, int> to;
    for (std::size_t i = 0; i < g.layers.size(); ++i)
        if (!fixed[i] && width_editable(g.layers[i])) to[g.layers[i].out_channels] = 0;
    for (auto& [from, t] : to) t = round_width(from, from * factor, tile);
    int n = 0;
    for (std::size_t i = 0; i < g.layers.size(); ++i)
        if (!fixed[i] && width_editable(g.layers[i])) {
            const int t = to[g.layers[i].out_channels];
            if (t != g.layers[i].out_channels) ++n;
            g.layers[i].out_channels = t;
        }
    return n;
}

// The graph without the layers in `drop` (each of which has one input: its readers read that).
inline Graph without_layers(const Graph& g, const std::set<int>& drop) {
    Graph out;
    out.name = g.name;
    std::vector<int> index(g.layers.size(), -1);
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        if (drop.count(static_cast<int>(i))) {
            index[i] = index[static_cast<std::size_t>(g.layers[i].inputs.front())];
            continue;
        }
        Layer l = g.layers[i];
        for (int& in : l.inputs) in = index[static_cast<std::size_t>(in)];
        index[i] = static_cast<int>(out.layers.size());
        out.layers.push_back(std::move(l));
    }
    return out;
}

inline std::vector<int> readers_of(const Graph& g, int i) {
    std::vector<int> r;
    for (std::size_t k = 0; k < g.layers.size(); ++k)
        for (int in : g.layers[k].inputs)
            if (in == i) r.push_back(static_cast<int>(k));
    return r;
}

// Drops a stride-1 conv2d whose input and output channels agree, with the batch norm and
// activation that follow it alone; "" when there is none.
inline std::string drop_conv(std::mt19937_64& rng, Graph& g, const std::vector<bool>& fixed) {
    std::vector<int> eligible;
    for (std::size_t i = 1; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        if (fixed[i] || l.op != OpKind::Conv2d || l.groups != 1 || l.stride_h != 1 || l.stride_w != 1) continue;
        const Layer& src = g.layers[static_cast<std::size_t>(l.inputs.front())];
        if (src.shape.c == l.shape.c && src.shape.h == l.shape.h && src.shape.w == l.shape.w)
            eligible.push_back(static_cast<int>(i));
    }
    if (eligible.empty()) return {};
    const int at = eligible[static_cast<std::size_t>(sample_detail::uniform(rng, 0, static_cast<int>(eligible.size()) - 1))];
    std::set<int> drop{at};
    int last = at;
    for (;;) {
        const std::vector<int> r = readers_of(g, last);
        if (r.size() != 1) break;
        const OpKind op = g.layers[static_cast<std::size_t>(r.front())].op;
        if (op != OpKind::BatchNorm && op != OpKind::Relu && op != OpKind::Relu6 && op != OpKind::HardSwish) break;
        drop.insert(r.front());
        last = r.front();
    }
    const std::string name = g.layers[static_cast<std::size_t>(at)].name;
    g = without_layers(g, drop);
    return " drop " + name;
}

// The layers that only compute the gate of `mul` from `x` (squeeze-excitation: gap -> 1x1 conv
// -> 1x1 conv -> mul x, gate), or none when `gate` depends on anything but `x` or is read elsewhere.
inline std::set<int> gate_layers(const Graph& g, int mul, int x, int gate) {
    std::set<int> seen;
    std::vector<int> todo{gate};
    bool reaches_x = false;
    while (!todo.empty()) {
        const int i = todo.back();
        todo.pop_back();
        if (i == x) {
            reaches_x = true;
            continue;
        }
        if (i < x) return {};  // (layers come after their inputs) an input from before x
        if (!seen.insert(i).second) continue;
        for (int in : g.layers[static_cast<std::size_t>(i)].inputs) todo.push_back(in);
    }
    if (!reaches_x) return {};
    for (int i : seen)
        for (int r : readers_of(g, i))
            if (r != mul && !seen.count(r)) return {};
    return seen;
}

// A squeeze-excitation in a graph: `mul` multiplies `x` by a gate that `layers` compute from x.
struct SeGate {
    int mul = -1, x = -1;
    std::set<int> layers;
};

inline std::vector<SeGate> se_gates(const Graph& g) {
    std::vector<SeGate> found;
    for (std::size_t i = 1; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        if (l.op != OpKind::Mul || l.inputs.size() != 2 || l.act != Activation::None) continue;
        for (int k : {0, 1}) {
            const int x = l.inputs[static_cast<std::size_t>(k)], gate = l.inputs[static_cast<std::size_t>(1 - k)];
            if (x == gate) continue;
            std::set<int> layers = gate_layers(g, static_cast<int>(i), x, gate);
            if (layers.empty()) continue;
            found.push_back({static_cast<int>(i), x, std::move(layers)});
            break;
        }
    }
    return found;
}

// The share of a record's measured (or predicted) time its squeeze-excitation `se` takes, as far
// as its most expensive layers (r.top_layers) show it.
inline double se_share(const Graph& g, const SeGate& se, const CandidateRecord& r) {
    double share = 0;
    for (const LayerCost& c : r.top_layers) {
        const int i = g.find(c.name);
        if (i == se.mul || se.layers.count(i)) share += c.share;
    }
    return share;
}

// The squeeze-excitation of `gates` (not empty) that costs `r` most as far as its costliest
// layers show, with that share in `share` (0 when none of them shows).
inline std::size_t costliest_se(const Graph& g, const std::vector<SeGate>& gates, const CandidateRecord& r,
                                double& share) {
    std::size_t pick = 0;
    share = 0;
    for (std::size_t k = 0; k < gates.size(); ++k)
        if (const double s = se_share(g, gates[k], r); s > share) share = s, pick = k;
    return pick;
}

// Drops the squeeze-excitation `se` of `g`: its mul reads x directly again and its gate goes.
inline std::string remove_se(Graph& g, const SeGate& se) {
    Layer& mul = g.layers[static_cast<std::size_t>(se.mul)];
    if (mul.inputs.front() != se.x) std::swap(mul.inputs[0], mul.inputs[1]);  // its readers get x
    const std::string name = mul.name;
    std::set<int> drop = se.layers;
    drop.insert(se.mul);
    g = without_layers(g, drop);
    return " drop SE " + name;
}

// Drops one of `gates` (se_gates(g)). Four operators a block, each with a fixed cost beside its
// small arithmetic: where per-operator overhead sets the time (several threads, small maps),
// narrowing cannot remove it. The one that costs `r` most when its costs show any, else one at
// random. "" when there is none.
inline std::string drop_se(std::mt19937_64& rng, Graph& g, const CandidateRecord& r, const std::vector<SeGate>& gates) {
    if (gates.empty()) return {};
    double share = 0;
    std::size_t pick = costliest_se(g, gates, r, share);
    if (share <= 0) pick = static_cast<std::size_t>(sample_detail::uniform(rng, 0, static_cast<int>(gates.size()) - 1));
    return remove_se(g, gates[pick]);
}

// A squeeze-excitation taking this share of a model's time (its listed layers) is dropped before
// anything is narrowed.
inline constexpr double costly_se_share = 0.05;

// A residual branch: `add` sums `skip` and a branch that `layers` compute from `skip` or from
// what `skip` is computed from (a projection shortcut reads the block's input), read by nothing
// else; `macs` are the branch's.
struct ResidualBranch {
    int add = -1, skip = -1;
    std::set<int> layers;
    double macs = 0;
};

// The branches whose removal leaves a valid graph of the same shapes: the add's readers read the
// skip instead. An add's fused activation moves to the skip when only the add reads it and the
// skip takes one; otherwise the branch stays.
// `stats`: analyze(g), for the branches' MACs.
inline std::vector<ResidualBranch> residual_branches(const Graph& g, const ModelStats& stats) {
    std::vector<ResidualBranch> found;
    for (std::size_t i = 1; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        if (l.op != OpKind::Add || l.inputs.size() != 2 || l.inputs[0] == l.inputs[1]) continue;
        for (int k : {0, 1}) {
            const int skip = l.inputs[static_cast<std::size_t>(k)], branch = l.inputs[static_cast<std::size_t>(1 - k)];
            const Layer& s = g.layers[static_cast<std::size_t>(skip)];
            if (l.act != Activation::None &&
                (s.act != Activation::None || !takes_activation(s.op) || readers_of(g, skip).size() != 1))
                continue;
            std::set<int> layers;
            // x: the skip, or up to three single-input layers back from it.
            for (int x = skip, back = 0; layers.empty() && back < 4; ++back) {
                layers = gate_layers(g, static_cast<int>(i), x, branch);
                const Layer& from = g.layers[static_cast<std::size_t>(x)];
                if (from.inputs.size() != 1) break;
                x = from.inputs.front();
            }
            if (layers.empty()) continue;
            double macs = 0;
            for (int b : layers) macs += static_cast<double>(stats.layers[static_cast<std::size_t>(b)].macs);
            found.push_back({static_cast<int>(i), skip, std::move(layers), macs});
            break;
        }
    }
    return found;
}

// Drops `b` from `g`: its layers and its add go, the add's readers read the skip.
inline std::string remove_branch(Graph& g, const ResidualBranch& b) {
    Layer& add = g.layers[static_cast<std::size_t>(b.add)];
    if (add.inputs.front() != b.skip) std::swap(add.inputs[0], add.inputs[1]);  // its readers get the skip
    if (add.act != Activation::None) g.layers[static_cast<std::size_t>(b.skip)].act = add.act;
    const std::string name = add.name;
    std::set<int> drop = b.layers;
    drop.insert(b.add);
    g = without_layers(g, drop);
    return " drop block " + name;
}

// A block is dropped only when it holds at most this share of the model's MACs.
inline constexpr double droppable_block_macs_share = 0.35;

// Whether b's skip is a projection shortcut: a convolution (then at most two single-input layers,
// its batch norm and activation) that feeds only the add, as at a ResNet stage's downsampling block.
inline bool projection_skip(const Graph& g, const ResidualBranch& b) {
    int x = b.skip;
    for (int back = 0; back < 3; ++back) {
        const Layer& l = g.layers[static_cast<std::size_t>(x)];
        if (readers_of(g, x).size() != 1) return false;
        if (l.op == OpKind::Conv2d) return true;
        if (l.inputs.size() != 1) return false;
        x = l.inputs.front();
    }
    return false;
}

// Drops g's residual branch with the fewest MACs when it holds at most droppable_block_macs_share
// of the model's (its MACs in `macs_saved`); "" when there is none. A branch beside a projection
// shortcut stays: without it, its stage is that 1x1 convolution alone (the fmnist_large model's
// ResNet block, its convolutions made separable and then dropped, left a 0.05 ms lineage at
// 36-70% proxy accuracy against 72-80% in other runs; docs/adapt.md). Each of a block's operators
// costs a fixed time beside its arithmetic, which no width cut removes: a 0.05 ms descendant of
// the fmnist_large model ran in 0.030-0.034 ms without its inverted residual (nine operators, 23%
// of its MACs) against 0.043-0.052 ms with it, and widened back to that time it held 1.6x the MACs
// (docs/adapt.md). The cheapest block in arithmetic goes: a ResNet block's two 3x3 convolutions
// are most of what that model computes, and with them dropped it fine-tuned to 54-55% (90% before).
inline std::string drop_block(Graph& g, double& macs_saved) {
    macs_saved = 0;
    const ModelStats stats = analyze(g);
    std::vector<ResidualBranch> branches = residual_branches(g, stats);
    branches.erase(std::remove_if(branches.begin(), branches.end(),
                                  [&](const ResidualBranch& b) { return projection_skip(g, b); }),
                   branches.end());
    const auto cheapest = std::min_element(branches.begin(), branches.end(),
                                           [](const ResidualBranch& a, const ResidualBranch& b) { return a.macs < b.macs; });
    if (cheapest == branches.end() || cheapest->macs > droppable_block_macs_share * static_cast<double>(stats.macs)) return {};
    macs_saved = cheapest->macs;
    return remove_branch(g, *cheapest);
}

// Downsamples earlier: stride 2 on a stride-1 conv or depthwise conv on a map of at least 8x8.
inline std::string add_stride(std::mt19937_64& rng, Graph& g) {
    std::vector<int> eligible;
    for (std::size_t i = 1; i < g.layers.size(); ++i) {
        const Layer& l = g.layers[i];
        if ((l.op != OpKind::Conv2d && l.op != OpKind::DepthwiseConv2d) || l.stride_h != 1 || l.stride_w != 1) continue;
        if (l.shape.h >= 8 && l.shape.w >= 8) eligible.push_back(static_cast<int>(i));
    }
    if (eligible.empty()) return {};
    // Early layers first: they run on the largest maps.
    const std::size_t pick = static_cast<std::size_t>(sample_detail::uniform(rng, 0, std::min(2, static_cast<int>(eligible.size()) - 1)));
    Layer& l = g.layers[static_cast<std::size_t>(eligible[pick])];
    l.stride_h = l.stride_w = 2;
    return " stride 2 at " + l.name;
}

// A depthwise k x k convolution (k odd, 5 or more, "same" padding) made (k-2) x (k-2), the
// costliest such among `r`'s costliest layers first, else the first: Once-for-All's elastic
// kernel, whose child keeps the centre of each filter (inherit.hpp). A 5x5 filter is 25
// multiply-adds a pixel against 9, and libtorch's training step of a 0.05 ms lineage took 10%
// less with its two 5x5 depthwise convolutions made 3x3 (docs/adapt.md). "" when there is none.
inline std::string shrink_kernel(Graph& g, const CandidateRecord& r) {
    const auto eligible = [&](int at) {
        if (at <= 0) return false;
        const Layer& l = g.layers[static_cast<std::size_t>(at)];
        return l.op == OpKind::DepthwiseConv2d && l.kernel_h == l.kernel_w && l.kernel_h >= 5 && l.kernel_h % 2 == 1 &&
               l.dilation_h == 1 && l.dilation_w == 1 && l.padding.mode == PaddingMode::Same;
    };
    int at = -1;
    for (std::size_t k = 0; at < 0 && k < r.top_layers.size(); ++k)
        if (const int i = g.find(r.top_layers[k].name); eligible(i)) at = i;
    for (std::size_t i = 1; at < 0 && i < g.layers.size(); ++i)
        if (eligible(static_cast<int>(i))) at = static_cast<int>(i);
    if (at < 0) return {};
    Layer& l = g.layers[static_cast<std::size_t>(at)];
    const int from = l.kernel_h;
    l.kernel_h = l.kernel_w = from - 2;
    return " kernel " + l.name + " " + std::to_string(from) + "->" + std::to_string(from - 2);
}

// An over-budget parent's dense k x k convolution (k > 1) taking at least this share of its time
// is made separable before widths are cut far: a ResNet block's 3x3 convolutions took 50% and 17%
// of the fmnist_large model, and a 4.7x width cut fine-tuned to 41-69% proxy accuracy (docs/adapt.md).
inline constexpr double separable_min_share = 0.15;
inline constexpr int separable_min_in_channels = 8;

// Replaces the costliest such convolution among `r`'s costliest layers by a depthwise k x k
// convolution (its stride, dilation and padding; named NAME_dw) and a 1x1 convolution keeping its
// name and width, so that its readers and batch norm stay as they are: about min(k*k, out) times
// fewer MACs (`macs_saved`: how many). Weight inheritance factors the dense kernels into the two
// (inherit.hpp: rank 1 per input channel). "" when there is none.
inline std::string make_separable(Graph& g, const CandidateRecord& r, double& macs_saved) {
    macs_saved = 0;
    for (const LayerCost& c : r.top_layers) {
        if (c.share < separable_min_share) continue;
        const int at = g.find(c.name);
        if (at <= 0) continue;
        const Layer& l = g.layers[static_cast<std::size_t>(at)];
        if (l.op != OpKind::Conv2d || l.groups != 1 || (l.kernel_h == 1 && l.kernel_w == 1) || l.inputs.size() != 1) continue;
        if (g.find(l.name + "_dw") >= 0) continue;
        // On a few channels (a stem on a grayscale image) a depthwise filter per channel would
        // leave the layer almost no spatial filters: not split.
        const int in_c = g.layers[static_cast<std::size_t>(l.inputs.front())].shape.c;
        if (in_c < separable_min_in_channels) continue;
        Layer dw;
        dw.name = l.name + "_dw";
        dw.op = OpKind::DepthwiseConv2d;
        dw.inputs = l.inputs;
        dw.kernel_h = l.kernel_h;
        dw.kernel_w = l.kernel_w;
        dw.stride_h = l.stride_h;
        dw.stride_w = l.stride_w;
        dw.dilation_h = l.dilation_h;
        dw.dilation_w = l.dilation_w;
        dw.padding = l.padding;
        dw.bias = false;
        const double pixels = static_cast<double>(l.shape.h) * l.shape.w, taps = static_cast<double>(l.kernel_h) * l.kernel_w;
        macs_saved = pixels * static_cast<double>(in_c) * (taps * l.out_channels - taps - l.out_channels);  // dense - (dw + pw)
        Layer pw = l;
        pw.kernel_h = pw.kernel_w = 1;
        pw.stride_h = pw.stride_w = 1;
        pw.dilation_h = pw.dilation_w = 1;
        pw.padding = Padding{};
        pw.inputs = {at};
        std::vector<Layer> layers;
        layers.reserve(g.layers.size() + 1);
        for (std::size_t i = 0; i < g.layers.size(); ++i) {
            if (static_cast<int>(i) == at) {
                layers.push_back(dw);
                layers.push_back(pw);
                continue;
            }
            Layer moved = g.layers[i];
            if (static_cast<int>(i) > at)
                for (int& in : moved.inputs)
                    if (in >= at) ++in;  // the layer at `at` is now at + 1
            layers.push_back(std::move(moved));
        }
        g.layers = std::move(layers);
        return " separable " + pw.name;
    }
    return {};
}

// The editable layers a record's most expensive layers come from, most expensive first.
inline std::vector<int> expensive_sources(const Graph& g, const CandidateRecord& r, const std::vector<bool>& fixed) {
    std::vector<int> out;
    for (const LayerCost& c : r.top_layers) {
        const int i = g.find(c.name);
        const int s = i < 0 ? -1 : width_source(g, i);
        if (s >= 0 && !fixed[static_cast<std::size_t>(s)] && std::find(out.begin(), out.end(), s) == out.end())
            out.push_back(s);
    }
    return out;
}

}  // namespace adapt_detail

// The proposer of an adaptation (see the top of this file). Candidate 0 is the start model.
class AdaptDesigner : public Proposer {
public:
    // channel_tile: the target's (channel_step_for), the grid widths land on when near it (round_width).
    AdaptDesigner(std::uint64_t seed, const StartModel& start, int channel_tile = 8)
        : seed_(seed), tile_(channel_tile), start_dsl_(start.dsl), source_(start.source) {}
    std::string name() const override { return "adapt"; }
    void set_final_training_fit(std::function<double(const CandidateRecord&)> fit) override { fit_ = std::move(fit); }

    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        return propose_next(task, records, {});
    }
    std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending) override {
        std::set<std::string> seen = proposer_detail::seen_hashes(records, pending);
        if (records.empty() && pending.empty()) return Proposal{start_dsl_, std::string(start_model_note) + source_};
        std::vector<const CandidateRecord*> known;
        for (const auto& r : records)
            if (r.params >= 0 && r.verdict != Verdict::Invalid && r.verdict != Verdict::Failed && r.verdict != Verdict::WrongTask)
                known.push_back(&r);
        if (known.empty()) return std::nullopt;  // the start model itself was not a model of the task
        const std::size_t drawn = records.size() + pending.size();
        std::set<std::string> tried;
        for (std::uint64_t attempt = 0; attempt < 200; ++attempt) {
            std::mt19937_64 rng(sample_seed(seed_, drawn * 1000 + attempt));
            const CandidateRecord& parent = *pick_parent(rng, known, task, attempt);
            ParseResult parsed = parse_dsl(parent.dsl, "parent");
            if (!parsed.ok()) continue;
            std::string what;
            Graph child = edit(rng, parent, parsed.graph, task, attempt, what);
            if (what.empty()) continue;
            for (Layer& l : child.layers) l.expected_in_channels = 0;  // widths moved
            const std::string text = print_dsl(child);
            std::string canonical, hash;
            if (!canonical_hash(text, canonical, hash)) continue;
            if (seen.count(hash) || !tried.insert(hash).second) continue;
            return Proposal{canonical, "adapt:" + what + " of #" + std::to_string(parent.index)};
        }
        return std::nullopt;
    }

private:
    // The share of r's full training that fits the time the search keeps for it (1: all, or no
    // limit was set).
    double training_fit(const CandidateRecord& r) const { return fit_ ? std::clamp(fit_(r), 0.0, 1.0) : 1.0; }

    // What a parent is ranked by: its objective with the share of its full training that fits.
    double parent_score(const CandidateRecord& r, const Task& task) const {
        return objective_score_in_time(r, task.objective, training_fit(r));
    }

    // Mostly the best feasible candidate, sometimes another of the best four; with none feasible,
    // one of the three closest to the limits. Once `attempt` shows those parents' edits are all
    // taken, any candidate: a lone feasible parent near the limit has only a dozen single-width
    // steps, and the search stopped as exhausted after 15 candidates (docs/adapt.md).
    // When the best feasible candidate's full training would not fit the time left for it
    // (short_training_fit), cheaper_parent_percent of the parents are the most accurate candidate
    // within the limits that trains markedly faster: a lineage's proxy accuracy grows with each
    // inherited fine-tuning, so without this the search follows its first lineage however slowly
    // it trains (docs/adapt.md: 31 s an epoch, 3 of 12 epochs trained).
    const CandidateRecord* pick_parent(std::mt19937_64& rng, const std::vector<const CandidateRecord*>& known,
                                       const Task& task, std::uint64_t attempt) const {
        using namespace sample_detail;
        if (attempt >= usual_parent_attempts)
            return known[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(known.size()) - 1))];
        std::vector<const CandidateRecord*> feasible;
        for (const CandidateRecord* r : known)
            if (r->verdict == Verdict::Feasible) feasible.push_back(r);
        if (!feasible.empty()) {
            std::stable_sort(feasible.begin(), feasible.end(), [&](const CandidateRecord* a, const CandidateRecord* b) {
                return parent_score(*a, task) > parent_score(*b, task);
            });
            const double best_fit = training_fit(*feasible[0]);
            if (best_fit < short_training_fit && chance(rng, cheaper_parent_percent)) {
                const CandidateRecord* cheaper = nullptr;
                for (const CandidateRecord* r : known) {
                    const auto v = proposer_detail::violation(*r, task);
                    if (!v || *v > 1.0 || !r->accuracy || r->train_seconds <= 0) continue;
                    if (training_fit(*r) < cheaper_training_gain * best_fit) continue;
                    if (!cheaper || *r->accuracy > *cheaper->accuracy) cheaper = r;
                }
                if (cheaper) return cheaper;
            }
            const int roll = uniform(rng, 0, 99);
            if (roll < 60 || feasible.size() == 1) return feasible[0];
            if (roll < 90)
                return feasible[static_cast<std::size_t>(uniform(rng, 1, static_cast<int>(std::min<std::size_t>(3, feasible.size() - 1))))];
        }
        std::vector<std::pair<double, const CandidateRecord*>> ranked;
        for (const CandidateRecord* r : known)
            if (auto v = proposer_detail::violation(*r, task)) ranked.emplace_back(std::abs(*v - 0.9), r);
        if (ranked.empty()) return known[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(known.size()) - 1))];
        std::stable_sort(ranked.begin(), ranked.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        const std::size_t top = std::min<std::size_t>(3, ranked.size());
        return ranked[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(top) - 1))].second;
    }

    // One edit of `g` (the parent's graph) given how the parent fared; `what` says which ("" none).
    Graph edit(std::mt19937_64& rng, const CandidateRecord& r, Graph g, const Task& task, std::uint64_t attempt,
               std::string& what) const {
        using namespace sample_detail;
        using namespace adapt_detail;
        const std::vector<bool> fixed = fixed_width(g);
        const double v = proposer_detail::violation(r, task).value_or(1.0);
        const bool below_accuracy = r.verdict == Verdict::BelowAccuracy;
        std::vector<int> widths;  // the editable widths, ascending
        for (std::size_t i = 0; i < g.layers.size(); ++i)
            if (!fixed[i] && width_editable(g.layers[i])) widths.push_back(g.layers[i].out_channels);
        std::sort(widths.begin(), widths.end());
        widths.erase(std::unique(widths.begin(), widths.end()), widths.end());
        const auto scale_one = [&](int from, double f) {
            if (const int to = scale_class(g, fixed, from, f, tile_); to > 0)
                what += " width " + std::to_string(from) + "->" + std::to_string(to);
        };
        // After an edit that saved `saved` MACs of the parent's, every width cut by what is left
        // over the budget (latency taken as proportional to MACs).
        const auto cut_to_what_is_left = [&](double saved) {
            const double macs = static_cast<double>(r.macs);
            const double left = macs > saved ? v * (macs - saved) / macs : v;
            if (left <= 1.1) return;
            const double f = far_over_width_factor(left);
            if (scale_all(g, fixed_width(g), f, tile_) > 0) what += ", widths x" + std::to_string(f).substr(0, 4);
        };
        if (v > 1.0) {
            // A squeeze-excitation among the costliest layers goes first: its operators cost
            // per call, whatever the widths (the 2-thread device in docs/adapt.md), so narrowing
            // would cut accuracy without removing that cost.
            const std::vector<SeGate> gates = se_gates(g);
            if (!gates.empty()) {
                double share = 0;
                const std::size_t costliest = costliest_se(g, gates, r, share);
                if (share >= costly_se_share && chance(rng, 70)) {
                    what = remove_se(g, gates[costliest]);
                    return g;
                }
            }
            // Far over: a costly dense k x k convolution made separable, then every width cut by
            // what the MACs saved leave over: a separable model still far over was never picked
            // as a parent again (docs/adapt.md).
            if (v > 1.3 && chance(rng, 35)) {
                double saved = 0;
                what = make_separable(g, r, saved);
                if (!what.empty()) {
                    cut_to_what_is_left(saved);
                    return g;
                }
            }
            // Far over: a residual branch dropped (its operators' fixed costs go with it), then
            // every width cut by what its MACs leave over, as for the separable edit.
            if (v > 1.3 && chance(rng, 25)) {
                double saved = 0;
                what = drop_block(g, saved);
                if (!what.empty()) {
                    cut_to_what_is_left(saved);
                    return g;
                }
            }
            // Far over: every width at once, sized so the cost (about quadratic in width) fits.
            if ((v > 1.3 && attempt % 3 == 0) || chance(rng, 20)) {
                const double f = far_over_width_factor(v) * (1.0 + 0.03 * (uniform(rng, 0, 4) - 2));
                if (scale_all(g, fixed, f, tile_) > 0) what = " scale widths x" + std::to_string(f).substr(0, 4);
                if (!what.empty()) return g;
            }
            const int roll = uniform(rng, 0, 99);
            if (roll < 50) {
                const std::vector<int> hot = expensive_sources(g, r, fixed);
                if (!hot.empty()) {
                    const int at = hot[static_cast<std::size_t>(uniform(rng, 0, std::min(1, static_cast<int>(hot.size()) - 1)))];
                    scale_one(g.layers[static_cast<std::size_t>(at)].out_channels, 0.75);
                } else if (!widths.empty()) {
                    scale_one(widths.back(), 0.75);
                }
            } else if (roll < 66) {
                what += drop_conv(rng, g, fixed);
            } else if (roll < 80) {
                what += drop_se(rng, g, r, gates);
            } else if (roll < 90) {
                what += add_stride(rng, g);
            } else {
                what += shrink_kernel(g, r);
            }
            return g;
        }
        if (widths.empty()) return g;
        const int w = widths[static_cast<std::size_t>(uniform(rng, 0, static_cast<int>(widths.size()) - 1))];
        if (below_accuracy || v < 0.8) {
            if (v < 0.6 && attempt % 2 == 0) {
                const double f = std::clamp(std::sqrt(0.92 / std::max(v, 0.05)), 1.05, 1.6);
                if (scale_all(g, fixed, f, tile_) > 0) what = " scale widths x" + std::to_string(f).substr(0, 4);
            } else {
                scale_one(w, 1.25);
            }
        } else if (chance(rng, training_fit(r) < short_training_fit ? drop_block_percent_short : drop_block_percent)) {
            // Near the limit: a residual branch traded for width, its MACs spread over the rest
            // (the branch's per-operator costs are then time the widths gain). More often when
            // the parent's full training does not fit the time left for it: a block's activations
            // are what an epoch's time follows (docs/training.md), and a 0.05 ms lineage without
            // its 14x14 inverted residual trained 14 s an epoch against 31 s with it.
            double saved = 0;
            what = drop_block(g, saved);
            const double macs = static_cast<double>(r.macs);
            if (!what.empty() && macs > saved) {
                const double f = std::clamp(std::sqrt(macs / (macs - saved)), 1.0, 1.5);
                if (f > 1.02 && scale_all(g, fixed_width(g), f, tile_) > 0) what += ", widths x" + std::to_string(f).substr(0, 4);
            }
        } else {  // near the limit: a step of one width, either way, of one of two sizes
            static constexpr double steps[] = {0.875, 0.94, 1.06, 1.125};
            scale_one(w, steps[static_cast<std::size_t>(uniform(rng, 0, 3))]);
        }
        return g;
    }

    static constexpr std::uint64_t usual_parent_attempts = 40;  // of propose_next's 200
    // Budget::max_total_seconds (set_final_training_fit). A full training that fits less than this
    // share (9 of 12 epochs) is short: its model loses accuracy for the epochs it cannot run (a
    // 0.05 ms adaptation: 87.81% test after 3 of 12 epochs, 89.65% after 8; docs/adapt.md).
    static constexpr double short_training_fit = 0.75;
    static constexpr int cheaper_parent_percent = 25;
    static constexpr double cheaper_training_gain = 1.3;  // "markedly faster": its fit this much higher
    static constexpr int drop_block_percent = 10, drop_block_percent_short = 35;

    std::uint64_t seed_;
    int tile_;
    std::string start_dsl_;
    std::string source_;
    std::function<double(const CandidateRecord&)> fit_;  // set_final_training_fit; empty: no limit
};

// Adapting with another proposer (the LLM's, `--proposer llm --start-from M`): candidate 0 is
// the start model, as with AdaptDesigner; every later proposal is the inner proposer's, taken as an
// edit of the start model: its note ends "(an edit of #0)", so weight_inheritance() hands it the
// start model's weights wherever a layer keeps its name and shape. The inner proposer should be
// shown the start model (LlmProposerOptions::start_model) so that it edits rather than rewrites.
class StartModelFirst : public Proposer {
public:
    StartModelFirst(const StartModel& start, std::unique_ptr<Proposer> inner)
        : start_dsl_(start.dsl), source_(start.source), inner_(std::move(inner)) {
        if (!inner_) throw Exception(Error(ErrorKind::usage, "StartModelFirst: no proposer to wrap"));
    }
    std::string name() const override { return inner_->name(); }
    void set_final_training_fit(std::function<double(const CandidateRecord&)> fit) override {
        inner_->set_final_training_fit(std::move(fit));
    }

    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        return propose_next(task, records, {});
    }
    std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending) override {
        if (records.empty() && pending.empty()) return Proposal{start_dsl_, std::string(start_model_note) + source_};
        std::optional<Proposal> p = inner_->propose_next(task, records, pending);
        if (p && p->error.empty()) p->note += " (an edit of #0)";
        return p;
    }

private:
    std::string start_dsl_, source_;
    std::unique_ptr<Proposer> inner_;
};

// The loop's inheritance step (GenerateSetup::inherit, search/loop.hpp) for a search in `dir`.
inline std::function<void(CandidateRecord&, const std::vector<CandidateRecord>&)> weight_inheritance(std::string dir,
                                                                                                 std::uint64_t seed) {
    namespace fs = std::filesystem;
    return [dir, seed](CandidateRecord& rec, const std::vector<CandidateRecord>& records) {
        if (rec.index == 0 && rec.note.rfind(std::string(start_model_note), 0) == 0) {
            rec.parent = -1;
            rec.weights = std::string(start_weights_file);
            rec.inherited = "start model: its own weights, not trained";
            return;
        }
        // The parent, or the nearest ancestor that has weights.
        int p = parent_in_note(rec.note);
        std::error_code ec;
        while (p >= 0 && p < static_cast<int>(records.size())) {
            const CandidateRecord& r = records[static_cast<std::size_t>(p)];
            if (!r.weights.empty() && fs::exists(fs::path(dir) / r.weights, ec)) break;
            const int up = r.parent >= 0 ? r.parent : parent_in_note(r.note);
            p = up < p ? up : -1;
        }
        if (p < 0 || p >= static_cast<int>(records.size())) return;  // trained from scratch
        const CandidateRecord& from = records[static_cast<std::size_t>(p)];
        const Graph parent = parse_dsl_or_throw(from.dsl, "parent");
        const Graph child = parse_dsl_or_throw(rec.dsl, "candidate");
        const Weights parent_weights = read_safetensors((fs::path(dir) / from.weights).string());
        const Inheritance inh = inherit_weights(parent, parent_weights, child, seed + static_cast<std::uint64_t>(rec.index));
        fs::create_directories(fs::path(dir) / "weights", ec);
        const std::string rel = "weights/candidate_" + std::to_string(rec.index) + ".safetensors";
        write_safetensors((fs::path(dir) / rel).string(), inh.weights);
        rec.parent = p;
        rec.inherited = inh.summary() + " from #" + std::to_string(p);
        rec.weights = rel;
    };
}

}  // namespace lamda

#endif  // LAMDA_SEARCH_ADAPT_HPP
