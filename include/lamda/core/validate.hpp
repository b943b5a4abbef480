// lamda/core/validate.hpp: size limits and shape inference. Every graph, parsed or built in code,
// passes through infer_shapes before anything else trusts its shapes.
#ifndef LAMDA_CORE_VALIDATE_HPP
#define LAMDA_CORE_VALIDATE_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "analysis.hpp"
#include "diagnostics.hpp"
#include "ir.hpp"

namespace lamda {

// Bounds on everything a model file can name, so that a hostile or hallucinated model can never
// exhaust memory, overflow arithmetic or hang a stage downstream. Documented in docs/dsl.md.
struct Limits {
    std::size_t max_file_bytes = std::size_t{4} << 20;
    std::size_t max_line_length = 4096;
    int max_layers = 10000;
    int max_name_length = 64;
    int max_channels = 65536;
    int max_spatial = 16384;
    int max_kernel = 64;
    int max_stride = 64;
    int max_dilation = 64;
    int max_padding = 64;
    int max_inputs = 64;                                      // of one add or concat
    std::int64_t max_value_elements = std::int64_t{1} << 31;  // of one value
    std::int64_t max_params = std::int64_t{1} << 31;          // of the whole model
    std::int64_t max_activation_bytes = std::int64_t{1} << 34;  // peak live bytes (16 GiB)
    int max_errors = 100;  // diagnostics reported before giving up
};

// One axis of a sliding window: the output extent and the padding it resolves to. TF-style same
// padding (an odd total pads the end one more) and PyTorch's ceil-mode rule (the last window must
// start inside the input or the leading padding). `fits` is false (out 0) when the window is
// larger than the padded input. The one rule shared by shape inference (below) and the
// compile-time layer templates (dsl/layers.hpp).
struct WindowExtent {
    bool fits = false;
    std::int64_t out = 0;
    std::int64_t before = 0, after = 0;  // padding
    std::int64_t span = 0;               // the padded input
    std::int64_t effective = 0;          // the window's extent with dilation
};

constexpr WindowExtent window_extent(std::int64_t in, std::int64_t kernel, std::int64_t stride,
                                     std::int64_t dilation, PaddingMode mode,
                                     std::int64_t explicit_before, std::int64_t explicit_after,
                                     bool ceil_mode) noexcept {
    WindowExtent e;
    e.effective = dilation * (kernel - 1) + 1;
    if (mode == PaddingMode::Same) {
        const std::int64_t out = (in + stride - 1) / stride;
        const std::int64_t needed = (out - 1) * stride + e.effective - in;
        const std::int64_t total = needed > 0 ? needed : 0;
        e.before = total / 2;
        e.after = total - e.before;
    } else if (mode == PaddingMode::Explicit) {
        e.before = explicit_before;
        e.after = explicit_after;
    }
    e.span = in + e.before + e.after;
    if (e.span < e.effective) return e;
    e.fits = true;
    e.out = ceil_mode ? (e.span - e.effective + stride - 1) / stride + 1
                      : (e.span - e.effective) / stride + 1;
    if (ceil_mode && (e.out - 1) * stride >= in + e.before) --e.out;
    return e;
}

namespace detail {

inline void add_error(std::vector<Diagnostic>& diags, std::string_view file, const Layer& layer,
                      std::string message, std::string hint = {}) {
    diags.push_back(Diagnostic{std::string(file), layer.loc.line, layer.loc.column,
                               std::move(message), std::move(hint)});
}

inline std::string quote_name(std::string_view s) { return "'" + std::string(s) + "'"; }

template <class T>
constexpr T max_of(T a, T b) noexcept { return a < b ? b : a; }

inline std::string dims_text(int h, int w) {
    return h == w ? std::to_string(h) : std::to_string(h) + "x" + std::to_string(w);
}

inline int min_inputs(OpKind op) noexcept {
    switch (op) {
    case OpKind::Input: return 0;
    case OpKind::Add:
    case OpKind::Concat:
    case OpKind::Mul: return 2;
    default: return 1;
    }
}

inline int max_inputs(OpKind op, const Limits& limits) noexcept {
    switch (op) {
    case OpKind::Input: return 0;
    case OpKind::Add:
    case OpKind::Concat: return limits.max_inputs;
    case OpKind::Mul: return 2;
    default: return 1;
    }
}

// Output extent of a sliding window on one axis, and the padding it resolves to.
struct WindowAxis {
    std::int64_t out = 0;
    int pad_before = 0;
    int pad_after = 0;
};

// Returns false (and explains why in `why`) when the window does not fit.
inline bool window_axis(std::int64_t in, int kernel, int stride, int dilation, PaddingMode mode,
                        int explicit_before, int explicit_after, bool ceil_mode, WindowAxis& axis,
                        std::string& why) {
    const WindowExtent e = window_extent(in, kernel, stride, dilation, mode, explicit_before,
                                         explicit_after, ceil_mode);
    if (!e.fits) {
        why = "the window (" + std::to_string(e.effective) + " wide" +
              (dilation > 1 ? " with dilation" : "") + ") is larger than the padded input (" +
              std::to_string(e.span) + ")";
        return false;
    }
    axis.out = e.out;
    axis.pad_before = static_cast<int>(e.before);
    axis.pad_after = static_cast<int>(e.after);
    return true;
}

inline bool is_conv_like(OpKind op) noexcept {
    return op == OpKind::Conv2d || op == OpKind::DepthwiseConv2d || op == OpKind::MaxPool ||
           op == OpKind::AvgPool;
}

// Checks attribute ranges that do not depend on the input (a parsed graph already passed them;
// a graph built in code may not have).
inline bool check_attributes(const Layer& layer, std::vector<Diagnostic>& diags,
                             std::string_view file, const Limits& limits) {
    // One error per layer is enough: the first attribute out of range is reported.
    auto in_range = [&](const char* what, std::int64_t v, std::int64_t lo, std::int64_t hi) {
        if (v >= lo && v <= hi) return true;
        add_error(diags, file, layer,
                  std::string(op_name(layer.op)) + " " + quote_name(layer.name) + ": " + what +
                      " is " + std::to_string(v) + ", must be in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
        return false;
    };
    // A height/width pair is reported as one number when both are the same.
    auto pair_in_range = [&](const char* what, int h, int w, int hi) {
        if (h == w) return in_range(what, h, 1, hi);
        return in_range((std::string(what) + " height").c_str(), h, 1, hi) &&
               in_range((std::string(what) + " width").c_str(), w, 1, hi);
    };
    bool ok = true;
    switch (layer.op) {
    case OpKind::Input:
        ok = in_range("height", layer.input_shape.h, 1, limits.max_spatial) &&
             in_range("width", layer.input_shape.w, 1, limits.max_spatial) &&
             in_range("channels", layer.input_shape.c, 1, limits.max_channels);
        break;
    case OpKind::Conv2d:
        ok = in_range("out", layer.out_channels, 1, limits.max_channels) &&
             in_range("groups", layer.groups, 1, limits.max_channels);
        break;
    case OpKind::FullyConnected: ok = in_range("out", layer.out_channels, 1, limits.max_channels); break;
    case OpKind::DepthwiseConv2d:
        ok = in_range("multiplier", layer.multiplier, 1, limits.max_channels);
        break;
    default: break;
    }
    if (ok && layer.expected_in_channels != 0)
        ok = in_range("in", layer.expected_in_channels, 1, std::int64_t{1} << 31);
    if (ok && is_conv_like(layer.op)) {
        ok = pair_in_range("kernel", layer.kernel_h, layer.kernel_w, limits.max_kernel) &&
             pair_in_range("stride", layer.stride_h, layer.stride_w, limits.max_stride) &&
             pair_in_range("dilation", layer.dilation_h, layer.dilation_w, limits.max_dilation);
        if (ok && layer.padding.mode == PaddingMode::Explicit)
            for (int amount : layer.padding.amounts)
                ok = ok && in_range("padding", amount, 0, limits.max_padding);
    }
    if (!ok) return false;
    const std::size_t before = diags.size();
    if (layer.op == OpKind::BatchNorm && !(layer.eps > 0 && layer.eps < 1))
        add_error(diags, file, layer,
                  "batchnorm " + quote_name(layer.name) + ": eps must be in (0, 1)");
    if (layer.op == OpKind::Dropout && !(layer.rate >= 0 && layer.rate < 1))
        add_error(diags, file, layer,
                  "dropout " + quote_name(layer.name) + ": rate must be in [0, 1)");
    if (layer.act != Activation::None && !takes_activation(layer.op))
        add_error(diags, file, layer,
                  std::string(op_name(layer.op)) + " " + quote_name(layer.name) +
                      " cannot take a fused activation",
                  "add the activation as a layer of its own on the next line");
    return diags.size() == before;
}

}  // namespace detail

namespace detail {

// Position, input count and input order of layer `index`: what must hold before its shape rule
// can run. Returns false after adding diagnostics.
inline bool check_layer_inputs(const Graph& graph, std::size_t index, std::vector<Diagnostic>& diags,
                               std::string_view file, const Limits& limits, const std::string& what) {
    const Layer& layer = graph.layers[index];
    if (layer.op == OpKind::Input && index != 0) {
        add_error(diags, file, layer, what + ": only the first layer may be an input",
                  "a model has exactly one input, on its first line");
        return false;
    }
    if (index == 0 && layer.op != OpKind::Input) {
        add_error(diags, file, layer, "the first layer must be an input, got " + what,
                  "start the model with e.g. `input: input shape=28x28x1`");
        return false;
    }
    const int count = static_cast<int>(layer.inputs.size());
    if (count < min_inputs(layer.op) || count > max_inputs(layer.op, limits)) {
        const int lo = min_inputs(layer.op), hi = max_inputs(layer.op, limits);
        add_error(diags, file, layer,
                  what + " takes " +
                      (lo == hi ? std::to_string(lo)
                                : std::to_string(lo) + " to " + std::to_string(hi)) +
                      " input" + (hi == 1 ? "" : "s") + ", got " + std::to_string(count),
                  lo >= 2 ? "name its inputs, e.g. `" + std::string(op_name(layer.op)) + " a, b`"
                          : std::string());
        return false;
    }
    for (int input : layer.inputs) {
        if (input < 0 || static_cast<std::size_t>(input) >= index) {
            add_error(diags, file, layer, what + ": input index " + std::to_string(input) +
                                              " does not name an earlier layer");
            return false;
        }
    }
    return true;
}

// The shape rules of the op catalog, one per op family, for one layer whose inputs are known.
// Each rule sets `out` (and the layer's resolved padding) or adds a diagnostic and returns false.
struct ShapeRules {
    Graph& graph;
    Layer& layer;
    std::vector<Diagnostic>& diags;
    std::string_view file;
    const Limits& limits;
    const std::string& what;
    Shape in;
    Shape out;

    const Layer& input_layer(std::size_t k) const {
        return graph.layers[static_cast<std::size_t>(layer.inputs[k])];
    }
    int count() const { return static_cast<int>(layer.inputs.size()); }

    bool check_expected_in(std::int64_t actual) {
        if (layer.expected_in_channels != 0 && layer.expected_in_channels != actual) {
            add_error(diags, file, layer,
                      "expected " + std::to_string(layer.expected_in_channels) +
                          " input channels from " + quote_name(input_layer(0).name) + ", got " +
                          std::to_string(actual),
                      "set in=" + std::to_string(actual) + " on " + quote_name(layer.name) +
                          " or change the layer that produces " + quote_name(input_layer(0).name));
            return false;
        }
        return true;
    }

    // A sliding window (conv, dwconv, pools) over the input, with `channels` outputs.
    bool windowed(std::int64_t channels) {
        WindowAxis rows, cols;
        std::string why;
        const auto& a = layer.padding.amounts;  // top, left, bottom, right
        if (!window_axis(in.h, layer.kernel_h, layer.stride_h, layer.dilation_h, layer.padding.mode, a[0], a[2],
                         layer.ceil_mode, rows, why) ||
            !window_axis(in.w, layer.kernel_w, layer.stride_w, layer.dilation_w, layer.padding.mode, a[1], a[3],
                         layer.ceil_mode, cols, why)) {
            add_error(diags, file, layer,
                      what + ": kernel " + dims_text(layer.kernel_h, layer.kernel_w) + " does not fit its " +
                          to_string(in) + " input from " + quote_name(input_layer(0).name) + ": " + why,
                      "use a smaller kernel or stride, padding=same, or remove a downsampling "
                      "layer earlier in the model");
            return false;
        }
        out = Shape{rows.out, cols.out, channels};
        layer.pads = {rows.pad_before, cols.pad_before, rows.pad_after, cols.pad_after};
        return true;
    }

    bool conv2d() {
        if (!check_expected_in(in.c)) return false;
        if (in.c % layer.groups != 0 || layer.out_channels % layer.groups != 0) {
            add_error(diags, file, layer,
                      what + ": groups=" + std::to_string(layer.groups) +
                          " must divide both the input channels (" + std::to_string(in.c) + " from " +
                          quote_name(input_layer(0).name) + ") and out (" + std::to_string(layer.out_channels) + ")",
                      "use a groups value that divides both, or dwconv for depthwise");
            return false;
        }
        return windowed(layer.out_channels);
    }

    bool depthwise_conv2d() {
        if (!check_expected_in(in.c)) return false;
        if (in.c * layer.multiplier > limits.max_channels) {
            add_error(diags, file, layer,
                      what + ": " + std::to_string(in.c) + " channels x multiplier " +
                          std::to_string(layer.multiplier) + " exceeds " + std::to_string(limits.max_channels) +
                          " channels");
            return false;
        }
        return windowed(in.c * layer.multiplier);
    }

    bool pool() {
        // PyTorch's rule, which also keeps every window partly inside the input (XNNPACK rejects
        // windows made only of padding): padding at most half the kernel.
        const auto& a = layer.padding.amounts;
        if (layer.padding.mode == PaddingMode::Explicit &&
            (max_of(a[0], a[2]) > layer.kernel_h / 2 || max_of(a[1], a[3]) > layer.kernel_w / 2)) {
            add_error(diags, file, layer,
                      what + ": padding " + std::to_string(max_of(max_of(a[0], a[1]), max_of(a[2], a[3]))) +
                          " is more than half the kernel " + dims_text(layer.kernel_h, layer.kernel_w),
                      "use padding=same or at most kernel/2");
            return false;
        }
        return windowed(in.c);
    }

    bool fully_connected() {
        if (in.h != 1 || in.w != 1) {
            add_error(diags, file, layer,
                      what + " needs a 1x1xC input, got " + to_string(in) + " from " + quote_name(input_layer(0).name),
                      "put `gap` or `flatten` before it");
            return false;
        }
        if (!check_expected_in(in.c)) return false;
        out = Shape{1, 1, layer.out_channels};
        return true;
    }

    bool add() {
        for (int k = 1; k < count(); ++k) {
            const Layer& other = input_layer(static_cast<std::size_t>(k));
            if (other.shape != in) {
                add_error(diags, file, layer,
                          what + ": input " + quote_name(other.name) + " is " + to_string(other.shape) + " but " +
                              quote_name(input_layer(0).name) + " is " + to_string(in),
                          "all inputs of add must have the same shape; match channels with a "
                          "1x1 conv2d and spatial size with the same strides");
                return false;
            }
        }
        return true;
    }

    bool concat() {
        std::int64_t channels = 0;
        for (int k = 0; k < count(); ++k) {
            const Layer& other = input_layer(static_cast<std::size_t>(k));
            if (other.shape.h != in.h || other.shape.w != in.w) {
                add_error(diags, file, layer,
                          what + ": input " + quote_name(other.name) + " is " + to_string(other.shape) + " but " +
                              quote_name(input_layer(0).name) + " is " + to_string(in),
                          "concat joins channels; its inputs need the same height and width");
                return false;
            }
            channels += other.shape.c;
        }
        out = Shape{in.h, in.w, channels};
        return true;
    }

    bool mul() {
        const Shape a = in, b = input_layer(1).shape;
        const bool same = a == b;
        const bool broadcast_b = b.h == 1 && b.w == 1 && b.c == a.c;
        const bool broadcast_a = a.h == 1 && a.w == 1 && a.c == b.c;
        if (!same && !broadcast_b && !broadcast_a) {
            add_error(diags, file, layer,
                      what + ": cannot multiply " + quote_name(input_layer(0).name) + " (" + to_string(a) + ") by " +
                          quote_name(input_layer(1).name) + " (" + to_string(b) + ")",
                      "mul needs equal shapes, or a 1x1xC value with the same C to broadcast");
            return false;
        }
        out = broadcast_a && !same ? b : a;
        return true;
    }

    // Dispatches on the op; ops that keep their input's shape need no rule.
    bool apply() {
        switch (layer.op) {
        case OpKind::Input: out = layer.input_shape; return true;
        case OpKind::Conv2d: return conv2d();
        case OpKind::DepthwiseConv2d: return depthwise_conv2d();
        case OpKind::MaxPool:
        case OpKind::AvgPool: return pool();
        case OpKind::FullyConnected: return fully_connected();
        case OpKind::GlobalAvgPool: out = Shape{1, 1, in.c}; return true;
        case OpKind::Flatten: out = Shape{1, 1, in.elements()}; return true;
        case OpKind::Add: return add();
        case OpKind::Concat: return concat();
        case OpKind::Mul: return mul();
        case OpKind::BatchNorm:
        case OpKind::Relu:
        case OpKind::Relu6:
        case OpKind::HardSwish:
        case OpKind::HardSigmoid:
        case OpKind::Sigmoid:
        case OpKind::Softmax:
        case OpKind::Dropout: return true;
        }
        return true;
    }
};

}  // namespace detail

// Infers the output shape (and resolved padding) of layer `index`, whose inputs precede it.
// Returns false after adding diagnostics. A layer whose input has no known shape (because of an
// earlier error) is skipped silently, so one mistake is reported once, not at every layer below.
inline bool infer_layer(Graph& graph, std::size_t index, std::vector<Diagnostic>& diags,
                        std::string_view file = {}, const Limits& limits = {}) {
    Layer& layer = graph.layers[index];
    layer.shape = Shape{};
    layer.pads = {0, 0, 0, 0};
    const std::string what = std::string(op_name(layer.op)) + " " + detail::quote_name(layer.name);

    if (!detail::check_layer_inputs(graph, index, diags, file, limits, what)) return false;
    if (!detail::check_attributes(layer, diags, file, limits)) return false;
    for (int input : layer.inputs)
        if (!graph.layers[static_cast<std::size_t>(input)].shape.known()) return false;

    const Shape in = layer.inputs.empty() ? layer.input_shape
                                          : graph.layers[static_cast<std::size_t>(layer.inputs[0])].shape;
    detail::ShapeRules rules{graph, layer, diags, file, limits, what, in, in};
    if (!rules.apply()) return false;
    const Shape out = rules.out;
    if (out.c > limits.max_value_elements || out.elements() > limits.max_value_elements) {
        detail::add_error(diags, file, layer,
                          what + ": its output " + to_string(out) + " has more than " +
                              std::to_string(limits.max_value_elements) + " elements",
                          "reduce the input size or the channel count");
        return false;
    }
    layer.shape = out;
    return true;
}

// Whole-graph checks that need every layer: unused values, the parameter and memory budgets.
inline bool check_graph(const Graph& graph, std::vector<Diagnostic>& diags,
                        std::string_view file = {}, const Limits& limits = {}) {
    const std::size_t before = diags.size();
    if (graph.layers.empty()) {
        diags.push_back(Diagnostic{std::string(file), 0, 0, "the model has no layers",
                                   "start with e.g. `input: input shape=28x28x1`"});
        return false;
    }
    std::vector<char> used(graph.layers.size(), 0);
    for (const Layer& layer : graph.layers)
        for (int input : layer.inputs)
            if (input >= 0 && static_cast<std::size_t>(input) < used.size())
                used[static_cast<std::size_t>(input)] = 1;
    for (std::size_t i = 0; i + 1 < graph.layers.size(); ++i) {
        if (!used[i]) {
            const Layer& layer = graph.layers[i];
            detail::add_error(diags, file, layer,
                              "the value of " + detail::quote_name(layer.name) + " is never used",
                              "the model's output is its last line; use " +
                                  detail::quote_name(layer.name) +
                                  " as an input of a later layer or remove it");
        }
    }
    for (const Layer& layer : graph.layers)
        if (!layer.shape.known()) return false;  // already reported
    if (diags.size() != before) return false;

    const ModelStats stats = analyze(graph);
    if (stats.params > limits.max_params) {
        diags.push_back(Diagnostic{std::string(file), 0, 0,
                                   "the model has " + std::to_string(stats.params) +
                                       " parameters, more than the limit of " +
                                       std::to_string(limits.max_params),
                                   "reduce widths or the fully connected layers"});
    }
    if (stats.peak_activation_bytes > limits.max_activation_bytes) {
        diags.push_back(Diagnostic{std::string(file), 0, 0,
                                   "the model needs " +
                                       std::to_string(stats.peak_activation_bytes) +
                                       " bytes of activations at its peak, more than the limit of " +
                                       std::to_string(limits.max_activation_bytes),
                                   "reduce the input size or the early layers' widths"});
    }
    return diags.size() == before;
}

// Infers every layer's shape and checks the whole graph. Returns true when it is valid.
inline bool infer_shapes(Graph& graph, std::vector<Diagnostic>& diags, std::string_view file = {},
                         const Limits& limits = {}) {
    const std::size_t before = diags.size();
    if (graph.layers.size() > static_cast<std::size_t>(limits.max_layers)) {
        diags.push_back(Diagnostic{std::string(file), 0, 0,
                                   "the model has " + std::to_string(graph.layers.size()) +
                                       " layers, more than the limit of " +
                                       std::to_string(limits.max_layers),
                                   "split the model or use fewer, wider layers"});
        return false;
    }
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        infer_layer(graph, i, diags, file, limits);
        if (diags.size() - before >= static_cast<std::size_t>(limits.max_errors)) return false;
    }
    // Whole-graph checks only on a graph whose layers are all fine, to avoid cascades.
    if (diags.size() == before) check_graph(graph, diags, file, limits);
    return diags.size() == before;
}

}  // namespace lamda

#endif  // LAMDA_CORE_VALIDATE_HPP
