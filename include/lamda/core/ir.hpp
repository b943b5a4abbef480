// lamda/core/ir.hpp: the intermediate representation every stage shares.
// A Graph is a topologically ordered list of layers; each layer produces one named value whose
// shape (height x width x channels, batch implied) is filled in by shape inference.
#ifndef LAMDA_CORE_IR_HPP
#define LAMDA_CORE_IR_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lamda {

enum class OpKind {
    Input,
    Conv2d,
    DepthwiseConv2d,
    FullyConnected,
    BatchNorm,
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    Add,
    Concat,
    Mul,
    Relu,
    Relu6,
    HardSwish,
    HardSigmoid,
    Sigmoid,
    Softmax,
    Flatten,
    Dropout,
};

inline constexpr std::array<OpKind, 19> all_op_kinds{
    OpKind::Input,     OpKind::Conv2d,      OpKind::DepthwiseConv2d, OpKind::FullyConnected,
    OpKind::BatchNorm, OpKind::MaxPool,     OpKind::AvgPool,         OpKind::GlobalAvgPool,
    OpKind::Add,       OpKind::Concat,      OpKind::Mul,             OpKind::Relu,
    OpKind::Relu6,     OpKind::HardSwish,   OpKind::HardSigmoid,     OpKind::Sigmoid,
    OpKind::Softmax,   OpKind::Flatten,     OpKind::Dropout};

// The op's keyword in the DSL.
inline constexpr std::string_view op_name(OpKind op) noexcept {
    switch (op) {
    case OpKind::Input: return "input";
    case OpKind::Conv2d: return "conv2d";
    case OpKind::DepthwiseConv2d: return "dwconv";
    case OpKind::FullyConnected: return "fc";
    case OpKind::BatchNorm: return "batchnorm";
    case OpKind::MaxPool: return "maxpool";
    case OpKind::AvgPool: return "avgpool";
    case OpKind::GlobalAvgPool: return "gap";
    case OpKind::Add: return "add";
    case OpKind::Concat: return "concat";
    case OpKind::Mul: return "mul";
    case OpKind::Relu: return "relu";
    case OpKind::Relu6: return "relu6";
    case OpKind::HardSwish: return "hardswish";
    case OpKind::HardSigmoid: return "hardsigmoid";
    case OpKind::Sigmoid: return "sigmoid";
    case OpKind::Softmax: return "softmax";
    case OpKind::Flatten: return "flatten";
    case OpKind::Dropout: return "dropout";
    }
    return "?";
}

// Activations that can be fused into conv2d, dwconv, fc and add.
enum class Activation { None, Relu, Relu6, HardSwish, HardSigmoid, Sigmoid };

inline constexpr std::array<Activation, 6> all_activations{
    Activation::None,      Activation::Relu,        Activation::Relu6,
    Activation::HardSwish, Activation::HardSigmoid, Activation::Sigmoid};

inline constexpr std::string_view activation_name(Activation a) noexcept {
    switch (a) {
    case Activation::None: return "none";
    case Activation::Relu: return "relu";
    case Activation::Relu6: return "relu6";
    case Activation::HardSwish: return "hardswish";
    case Activation::HardSigmoid: return "hardsigmoid";
    case Activation::Sigmoid: return "sigmoid";
    }
    return "?";
}

// How a convolution or pool pads its input. `Same` is resolved into explicit amounts by shape
// inference (stored in Layer::pads); the mode itself is kept so that printing round-trips.
enum class PaddingMode { Same, Valid, Explicit };

struct Padding {
    PaddingMode mode = PaddingMode::Same;
    // Explicit amounts in the order top, left, bottom, right (only meaningful for Explicit).
    std::array<int, 4> amounts{0, 0, 0, 0};
    friend bool operator==(const Padding& a, const Padding& b) noexcept {
        return a.mode == b.mode && (a.mode != PaddingMode::Explicit || a.amounts == b.amounts);
    }
    friend bool operator!=(const Padding& a, const Padding& b) noexcept { return !(a == b); }
};

// Height x width x channels; batch is implied. Zero extents mean "not inferred" (an invalid input).
struct Shape {
    std::int64_t h = 0, w = 0, c = 0;
    constexpr std::int64_t elements() const noexcept { return h * w * c; }
    constexpr bool known() const noexcept { return h > 0 && w > 0 && c > 0; }
    friend constexpr bool operator==(const Shape& a, const Shape& b) noexcept {
        return a.h == b.h && a.w == b.w && a.c == b.c;
    }
    friend constexpr bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }
};

inline std::string to_string(const Shape& s) {
    return std::to_string(s.h) + "x" + std::to_string(s.w) + "x" + std::to_string(s.c);
}

// Where a layer came from in its source text; not part of the graph's identity.
struct SourceLoc {
    int line = 0;
    int column = 0;
};

// One layer. Attributes not used by an op keep their defaults; which ones an op accepts is
// defined by the DSL (dsl/parser.hpp) and documented in docs/dsl.md.
struct Layer {
    std::string name;
    OpKind op = OpKind::Input;
    std::vector<int> inputs;          // indices of earlier layers

    Shape input_shape;                // `input` only: the declared shape
    int out_channels = 0;             // conv2d, fc
    int expected_in_channels = 0;     // optional `in=` check on conv2d, dwconv, fc; 0 = unset
    int kernel_h = 0, kernel_w = 0;   // conv2d, dwconv, pools
    int stride_h = 1, stride_w = 1;
    int dilation_h = 1, dilation_w = 1;
    int groups = 1;                   // conv2d
    int multiplier = 1;               // dwconv
    Padding padding;                  // default depends on the op (same for convs, valid for pools)
    bool bias = true;                 // conv2d, dwconv, fc
    bool ceil_mode = false;           // pools
    Activation act = Activation::None;
    double eps = 1e-5;                // batchnorm
    double rate = 0.5;                // dropout

    // Filled in by shape inference.
    Shape shape;                          // output
    std::array<int, 4> pads{0, 0, 0, 0};  // resolved padding: top, left, bottom, right

    SourceLoc loc;

    // Semantic identity: everything but the source location.
    friend bool operator==(const Layer& a, const Layer& b) noexcept {
        return a.name == b.name && a.op == b.op && a.inputs == b.inputs &&
               a.input_shape == b.input_shape && a.out_channels == b.out_channels &&
               a.expected_in_channels == b.expected_in_channels && a.kernel_h == b.kernel_h &&
               a.kernel_w == b.kernel_w && a.stride_h == b.stride_h && a.stride_w == b.stride_w &&
               a.dilation_h == b.dilation_h && a.dilation_w == b.dilation_w &&
               a.groups == b.groups && a.multiplier == b.multiplier && a.padding == b.padding &&
               a.bias == b.bias && a.ceil_mode == b.ceil_mode && a.act == b.act &&
               a.eps == b.eps && a.rate == b.rate && a.shape == b.shape && a.pads == b.pads;
    }
    friend bool operator!=(const Layer& a, const Layer& b) noexcept { return !(a == b); }
};

struct Graph {
    std::string name;            // from `model NAME`; may be empty
    std::vector<Layer> layers;   // topological order; layers[0] is the input

    const Layer& input() const { return layers.front(); }
    const Layer& output() const { return layers.back(); }

    // Index of the layer with this name, or -1.
    int find(std::string_view layer_name) const noexcept {
        for (std::size_t i = 0; i < layers.size(); ++i)
            if (layers[i].name == layer_name) return static_cast<int>(i);
        return -1;
    }

    friend bool operator==(const Graph& a, const Graph& b) noexcept {
        return a.name == b.name && a.layers == b.layers;
    }
    friend bool operator!=(const Graph& a, const Graph& b) noexcept { return !(a == b); }
};

// Ops that carry learnable weights.
inline constexpr bool has_weights(OpKind op) noexcept {
    return op == OpKind::Conv2d || op == OpKind::DepthwiseConv2d ||
           op == OpKind::FullyConnected || op == OpKind::BatchNorm;
}

// Ops that take a fused `act=` attribute.
inline constexpr bool takes_activation(OpKind op) noexcept {
    return op == OpKind::Conv2d || op == OpKind::DepthwiseConv2d ||
           op == OpKind::FullyConnected || op == OpKind::Add;
}

}  // namespace lamda

#endif  // LAMDA_CORE_IR_HPP
