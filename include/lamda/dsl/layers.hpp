// lamda/dsl/layers.hpp: the DSL's op catalog as C++17 templates, checked at compile time.
//
// A model is a type; its shapes, parameter count, MACs, weight bytes and peak activation memory
// are constexpr, computed exactly as the DSL (docs/dsl.md) and core/analysis.hpp compute them, and an
// inconsistent model does not compile: a static_assert says which layer is wrong and why, and
// every such message starts with "lamda: ". Header-only; needs only core/ir.hpp and core/analysis.hpp.
//
//   namespace L = lamda::layers;
//   using Net = L::Sequential<
//       L::Input<28, 28, 1>,
//       L::Conv2d<16, 3, 2, L::Same, L::Act::Relu>,          // out, kernel, stride, padding, act
//       L::Residual<L::Sequential<L::DepthwiseConv2d<3>, L::BatchNorm, L::Conv2d<16, 1>>>,
//       L::Multiply<L::Sequential<L::GlobalAvgPool, L::Conv2d<4, 1, 1, L::Same, L::Act::Relu>,
//                                 L::Conv2d<16, 1, 1, L::Same, L::Act::HardSigmoid>>>,
//       L::GlobalAvgPool, L::Flatten, L::Dropout<1, 5>, L::FullyConnected<10>, L::Softmax>;
//   static_assert(Net::output_shape == lamda::Shape{1, 1, 10});
//   constexpr auto p = Net::params, m = Net::macs, peak = Net::peak_activation_bytes;
//   lamda::Graph g = Net::to_graph("tiny");   // layers named conv2d_1, dwconv_2, ... add_5 ...
//
// Blocks: a `Sequential<...>` that does not start with `Input` is a block (a chain of layers)
// usable as a layer or a branch; `Block::on<H, W, C>` is the model `Sequential<Input<H,W,C>,...>`.
// Branching layers take blocks (or single layers) as branches, all fed the same input x, run in
// order, then joined:
//   Residual<F, Act = None>       add(x, F(x))             (DSL: add x, f)
//   Add<B1, B2, ...>              add(B1(x), B2(x), ...)   AddAct<Act, B1, B2, ...> fuses an act
//   Concat<B1, B2, ...>           concat on channels (B1 first)
//   Multiply<F>                   mul(x, F(x)), F(x) either x's shape or 1x1xC (squeeze-excitation)
//   Multiply<B1, B2>              mul(B1(x), B2(x))
//   Identity                      the empty block: a branch that is x itself
//
// Attributes the DSL writes as decimals are fractions here: Dropout<1, 5> is rate=0.2,
// BatchNormEps<1, 1000> is eps=0.001 (BatchNorm is eps=1e-5).
//
// Error position: the failing layer's index in the graph (the N of to_graph's name `conv2d_N`,
// the input being 0) is the first template argument of the `bind<N, Tensor<H, W, C>>` (or, for
// Add/Concat/Multiply/Residual, the third of `join_impl<Kind, Act, N, Tensor<...>>`) named in the
// compiler's "in instantiation of" note, next to the layer's input shape.
//
// to_graph() fills Layer::shape and Layer::pads itself (from the compile-time shapes; they equal
// what core/validate.hpp's infer_shapes computes), so it needs neither the parser nor core/validate.hpp.
//
// Limits: one Sequential is bound recursively, so about 450 layers at one level fit the default
// -ftemplate-depth (900) and constexpr depth (512); nest blocks (each Residual, Concat or
// Sequential block starts a new level) or raise those limits for longer flat chains.
#ifndef LAMDA_DSL_LAYERS_HPP
#define LAMDA_DSL_LAYERS_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "../core/analysis.hpp"
#include "../core/ir.hpp"
#include "../core/validate.hpp"  // Limits defaults, window_extent

namespace lamda {
namespace layers {

using Act = Activation;

// The DSL's limits: core/validate.hpp's Limits defaults (docs/dsl.md "Limits").
namespace limits {
inline constexpr std::int64_t channels = Limits{}.max_channels;
inline constexpr std::int64_t spatial = Limits{}.max_spatial;
inline constexpr std::int64_t kernel = Limits{}.max_kernel;
inline constexpr std::int64_t stride = Limits{}.max_stride;
inline constexpr std::int64_t dilation = Limits{}.max_dilation;
inline constexpr std::int64_t padding = Limits{}.max_padding;
inline constexpr std::int64_t inputs = Limits{}.max_inputs;  // of one add or concat
inline constexpr std::int64_t value_elements = Limits{}.max_value_elements;
inline constexpr std::int64_t params = Limits{}.max_params;
inline constexpr std::int64_t activation_bytes = Limits{}.max_activation_bytes;
}  // namespace limits

// A value's shape as a type. `Ok` is false for the placeholder produced after an error, so
// that one mistake is reported once and not again at every layer below it.
template <std::int64_t H, std::int64_t W, std::int64_t C, bool Ok = true>
struct Tensor {
    static constexpr std::int64_t h = H, w = W, c = C;
    static constexpr bool ok = Ok;
    static constexpr Shape shape{H, W, C};
    static constexpr std::int64_t elements = H * W * C;
    static constexpr std::int64_t bytes = elements * bytes_per_element;
};

// Padding of convolutions and pools: TF-style `Same` (the default of the convs), `Valid` (the
// default of the pools), or explicit amounts: Pad<N> (all sides), Pad<H, W> (H top and bottom,
// W left and right), Pad<Top, Left, Bottom, Right>.
struct Same {};
struct Valid {};
template <int Top, int Left = Top, int Bottom = Top, int Right = Left>
struct Pad {};

// ---------------------------------------------------------------------------------------------
// Layer types. Each is an empty tag; its `bind<Index, InputTensor>` member computes the rest.
// ---------------------------------------------------------------------------------------------

template <int H, int W, int C>
struct Input;

template <int Out, int KH, int KW, int SH = 1, int SW = 1, class Padding = Same,
          Activation A = Activation::None, int DH = 1, int DW = 1, int Groups = 1,
          bool Bias = true>
struct Conv2dHW;
// Square kernel, stride and dilation.
template <int Out, int Kernel, int Stride = 1, class Padding = Same,
          Activation A = Activation::None, int Dilation = 1, int Groups = 1, bool Bias = true>
using Conv2d = Conv2dHW<Out, Kernel, Kernel, Stride, Stride, Padding, A, Dilation, Dilation,
                        Groups, Bias>;

template <int KH, int KW, int SH = 1, int SW = 1, class Padding = Same,
          Activation A = Activation::None, int Multiplier = 1, int DH = 1, int DW = 1,
          bool Bias = true>
struct DepthwiseConv2dHW;
template <int Kernel, int Stride = 1, class Padding = Same, Activation A = Activation::None,
          int Multiplier = 1, int Dilation = 1, bool Bias = true>
using DepthwiseConv2d = DepthwiseConv2dHW<Kernel, Kernel, Stride, Stride, Padding, A, Multiplier,
                                          Dilation, Dilation, Bias>;

template <int Out, Activation A = Activation::None, bool Bias = true>
struct FullyConnected;

// eps = EpsNum / EpsDen (exactly the double the DSL's decimal parses to when it is the nearest).
template <long long EpsNum, long long EpsDen>
struct BatchNormEps;
using BatchNorm = BatchNormEps<1, 100000>;  // eps = 1e-5

template <OpKind Op, int KH, int KW, int SH, int SW, class Padding, bool Ceil>
struct Pool2d;
template <int KH, int KW, int SH = KH, int SW = KW, class Padding = Valid, bool Ceil = false>
using MaxPoolHW = Pool2d<OpKind::MaxPool, KH, KW, SH, SW, Padding, Ceil>;
template <int Kernel, int Stride = Kernel, class Padding = Valid, bool Ceil = false>
using MaxPool = Pool2d<OpKind::MaxPool, Kernel, Kernel, Stride, Stride, Padding, Ceil>;
template <int KH, int KW, int SH = KH, int SW = KW, class Padding = Valid, bool Ceil = false>
using AvgPoolHW = Pool2d<OpKind::AvgPool, KH, KW, SH, SW, Padding, Ceil>;
template <int Kernel, int Stride = Kernel, class Padding = Valid, bool Ceil = false>
using AvgPool = Pool2d<OpKind::AvgPool, Kernel, Kernel, Stride, Stride, Padding, Ceil>;

struct GlobalAvgPool;
struct Flatten;

// Shape-preserving ops without weights.
template <OpKind Op>
struct Elementwise;
using Relu = Elementwise<OpKind::Relu>;
using Relu6 = Elementwise<OpKind::Relu6>;
using HardSwish = Elementwise<OpKind::HardSwish>;
using HardSigmoid = Elementwise<OpKind::HardSigmoid>;
using Sigmoid = Elementwise<OpKind::Sigmoid>;
using Softmax = Elementwise<OpKind::Softmax>;  // over channels

// rate = RateNum / RateDen, in [0, 1); a no-op at inference.
template <long long RateNum = 1, long long RateDen = 2>
struct Dropout;

template <class... Layers>
struct Sequential;
using Identity = Sequential<>;

template <class F, Activation A = Activation::None>
struct Residual;
template <Activation A, class... Branches>
struct AddAct;
template <class... Branches>
using Add = AddAct<Activation::None, Branches...>;
template <class... Branches>
struct Concat;
template <class... Branches>
struct Multiply;

// ---------------------------------------------------------------------------------------------
// Implementation.
// ---------------------------------------------------------------------------------------------
namespace detail {

template <class... Ts>
struct type_list {};

template <class T>
struct always_false : std::false_type {};

using Bad = Tensor<1, 1, 1, false>;

template <bool Ok, std::int64_t H, std::int64_t W, std::int64_t C>
using tensor_if = Tensor<Ok ? H : 1, Ok ? W : 1, Ok ? C : 1, Ok>;

constexpr std::int64_t at_least_1(std::int64_t v) noexcept { return v < 1 ? 1 : v; }
constexpr bool in_range(std::int64_t v, std::int64_t lo, std::int64_t hi) noexcept {
    return v >= lo && v <= hi;
}
constexpr bool fits_value(std::int64_t h, std::int64_t w, std::int64_t c) noexcept {
    // No overflow: h, w <= 16384 and c <= 2^31 before the product is formed.
    return c <= limits::value_elements && h * w * c <= limits::value_elements;
}

template <class P>
struct padding_traits {
    static constexpr bool valid = false;
    static constexpr PaddingMode mode = PaddingMode::Same;
    static constexpr int top = 0, left = 0, bottom = 0, right = 0;
};
template <>
struct padding_traits<Same> {
    static constexpr bool valid = true;
    static constexpr PaddingMode mode = PaddingMode::Same;
    static constexpr int top = 0, left = 0, bottom = 0, right = 0;
};
template <>
struct padding_traits<Valid> {
    static constexpr bool valid = true;
    static constexpr PaddingMode mode = PaddingMode::Valid;
    static constexpr int top = 0, left = 0, bottom = 0, right = 0;
};
template <int T, int L, int B, int R>
struct padding_traits<Pad<T, L, B, R>> {
    static constexpr bool valid = in_range(T, 0, limits::padding) &&
                                  in_range(L, 0, limits::padding) &&
                                  in_range(B, 0, limits::padding) &&
                                  in_range(R, 0, limits::padding);
    static constexpr PaddingMode mode = PaddingMode::Explicit;
    static constexpr int top = T, left = L, bottom = B, right = R;
};

// One axis of a sliding window: core/validate.hpp's window_extent (the rule shape inference
// uses), with kernel, stride and dilation of at least 1 so that a bad one is reported once.
using Axis = WindowExtent;
constexpr Axis window_axis(std::int64_t in, std::int64_t kernel, std::int64_t stride,
                           std::int64_t dilation, PaddingMode mode, std::int64_t explicit_before,
                           std::int64_t explicit_after, bool ceil_mode) noexcept {
    return window_extent(in, at_least_1(kernel), at_least_1(stride), at_least_1(dilation), mode,
                         explicit_before, explicit_after, ceil_mode);
}

template <class In, class P, int KH, int KW, int SH, int SW, int DH, int DW, bool Ceil>
struct window {
    using pt = padding_traits<P>;
    static constexpr Axis rows =
        window_axis(In::h, KH, SH, DH, pt::mode, pt::top, pt::bottom, Ceil);
    static constexpr Axis cols =
        window_axis(In::w, KW, SW, DW, pt::mode, pt::left, pt::right, Ceil);
    static constexpr bool fits = rows.out >= 1 && cols.out >= 1;
    static constexpr bool padding_ok = pt::valid;
    static constexpr bool kernel_ok =
        in_range(KH, 1, limits::kernel) && in_range(KW, 1, limits::kernel);
    static constexpr bool stride_ok =
        in_range(SH, 1, limits::stride) && in_range(SW, 1, limits::stride);
    static constexpr bool dilation_ok =
        in_range(DH, 1, limits::dilation) && in_range(DW, 1, limits::dilation);
    static constexpr bool attrs_ok = padding_ok && kernel_ok && stride_ok && dilation_ok;
    static void fill(Layer& layer) {
        layer.kernel_h = KH;
        layer.kernel_w = KW;
        layer.stride_h = SH;
        layer.stride_w = SW;
        layer.dilation_h = DH;
        layer.dilation_w = DW;
        layer.padding.mode = pt::mode;
        if (pt::mode == PaddingMode::Explicit)
            layer.padding.amounts = {pt::top, pt::left, pt::bottom, pt::right};
        layer.pads = {static_cast<int>(rows.before), static_cast<int>(cols.before),
                      static_cast<int>(rows.after), static_cast<int>(cols.after)};
        layer.ceil_mode = Ceil;
    }
};

// The checks every windowed layer makes (macros only to put NAME into the string literals).
#define LAMDA_LAYERS_WINDOW_CHECKS(NAME, WIN)                                                    \
    static_assert(WIN::padding_ok, "lamda: layer " NAME                                         \
                                   ": padding must be Same, Valid or Pad<...> with amounts in " \
                                   "[0, 64]");                                                  \
    static_assert(WIN::kernel_ok, "lamda: layer " NAME ": kernel must be in [1, 64]");          \
    static_assert(WIN::stride_ok, "lamda: layer " NAME ": stride must be in [1, 64]");          \
    static_assert(WIN::dilation_ok, "lamda: layer " NAME ": dilation must be in [1, 64]");      \
    static_assert(!(In::ok && WIN::attrs_ok) || WIN::fits,                                      \
                  "lamda: layer " NAME ": the kernel (with dilation) is larger than the padded " \
                  "input, the output would be empty (use a smaller kernel or stride, Same "     \
                  "padding, or remove an earlier downsampling layer)")

#define LAMDA_LAYERS_VALUE_CHECK(NAME, H, W, C)                                                 \
    static_assert(!In::ok || ::lamda::layers::detail::fits_value(H, W, C),                      \
                  "lamda: layer " NAME ": its output has more than 2^31 elements")

// What every single-input, single-op layer shares. Self defines op, out, params, macs, fill.
template <class Self, int I, class In>
struct unary_base {
    static constexpr int index = I;  // this layer's index in to_graph's graph
    static constexpr int count = 1;  // layers it adds to the graph
    static constexpr bool identity = false;
    // Peak live bytes while this block runs, given `base` bytes held by others (x excluded)
    // and whether x stays alive after it. One layer: its input and output are both live.
    static constexpr std::int64_t peak(std::int64_t base, bool /*keep_input*/) noexcept {
        return base + In::bytes + Self::out::bytes;
    }
    static void fill(Layer&) {}
    static int emit(Graph& graph, int x) {
        const int idx = static_cast<int>(graph.layers.size());
        Layer layer;
        layer.name = std::string(op_name(Self::op)) + "_" + std::to_string(idx);
        layer.op = Self::op;
        layer.inputs.push_back(x);
        Self::fill(layer);
        layer.shape = Self::out::shape;
        graph.layers.push_back(std::move(layer));
        return idx;
    }
};

// bind_t<I, L, In>: layer or block L applied to In, its first graph layer at index I.
template <int I, class L, class In>
struct seq_bind;  // declared below, for Sequential

template <class L, class = void>
struct is_layer : std::false_type {};
template <class L>
struct is_layer<L, std::void_t<typename L::template bind<0, Tensor<1, 1, 1>>>>
    : std::true_type {};

template <int I, class In>
struct not_a_layer {
    static constexpr int index = I, count = 0;
    static constexpr bool identity = true;
    using out = Bad;
    static constexpr std::int64_t params = 0, macs = 0;
    static constexpr std::int64_t peak(std::int64_t, bool) noexcept { return 0; }
    static int emit(Graph&, int x) { return x; }
};

template <int I, class L, class In, bool = is_layer<L>::value>
struct bind_layer {
    static_assert(always_false<L>::value,
                  "lamda: layer: this type is not a lamda::layers layer (Conv2d, BatchNorm, "
                  "Sequential, ...)");
    using type = not_a_layer<I, In>;
};
template <int I, class L, class In>
struct bind_layer<I, L, In, true> {
    using type = typename L::template bind<I, In>;
};
template <int I, class L, class In>
struct bind_select : bind_layer<I, L, In> {};
// A block is bound without completing the Sequential type (so its model members stay unbuilt).
template <int I, class... Ls, class In>
struct bind_select<I, Sequential<Ls...>, In> {
    using type = seq_bind<I, In, type_list<Ls...>>;
};

template <int I, class L, class In>
using bind_t = typename bind_select<I, L, In>::type;

// A chain: each layer reads the previous one's output.
template <int I, class In>
struct seq_bind<I, In, type_list<>> {
    static constexpr int index = I, count = 0;
    static constexpr bool identity = true;  // the empty block is x itself
    using out = In;
    static constexpr std::int64_t params = 0, macs = 0;
    static constexpr std::int64_t peak(std::int64_t, bool) noexcept { return 0; }
    static int emit(Graph&, int x) { return x; }
};
template <int I, class In, class L, class... Rest>
struct seq_bind<I, In, type_list<L, Rest...>> {
    using head = bind_t<I, L, In>;
    using tail = seq_bind<I + head::count, typename head::out, type_list<Rest...>>;
    static constexpr int index = I, count = head::count + tail::count;
    static constexpr bool identity = head::identity && tail::identity;
    using out = typename tail::out;
    static constexpr std::int64_t params = head::params + tail::params;
    static constexpr std::int64_t macs = head::macs + tail::macs;
    static constexpr std::int64_t peak(std::int64_t base, bool keep_input) noexcept {
        const std::int64_t a = head::peak(base, keep_input);
        // After head: x is still held if kept (unless head was x itself, then nothing changed).
        const std::int64_t next_base =
            head::identity ? base : base + (keep_input ? In::bytes : 0);
        const std::int64_t b = tail::peak(next_base, head::identity ? keep_input : false);
        return a > b ? a : b;
    }
    static int emit(Graph& graph, int x) { return tail::emit(graph, head::emit(graph, x)); }
};

// Binds branches that all read In, their graph indices following each other.
template <int I, class In, class... Bs>
struct bind_branches {
    using type = type_list<>;
    static constexpr int count = 0;
};
template <int I, class In, class B, class... Rest>
struct bind_branches<I, In, B, Rest...> {
    using head = bind_t<I, B, In>;
    using rest = bind_branches<I + head::count, In, Rest...>;
    template <class List>
    struct prepend;
    template <class... Ts>
    struct prepend<type_list<Ts...>> {
        using type = type_list<head, Ts...>;
    };
    using type = typename prepend<typename rest::type>::type;
    static constexpr int count = head::count + rest::count;
};

enum class JoinKind { Add, Residual, Concat, Multiply };

template <class First, class... Others>
struct first_of {
    using type = First;
};
template <class First, class Second, class... Others>
struct second_of {
    using type = Second;
};

// Branches run in order on the same input x, then one add/concat/mul layer joins their outputs
// (an empty branch contributes x itself). J is the joining layer's own index (after the
// branches' layers), so that it is the one an error's instantiation note shows.
template <JoinKind K, Activation A, int J, class In, class BoundList>
struct join_impl;
template <JoinKind K, Activation A, int J, class In, class... Bb>
struct join_impl<K, A, J, In, type_list<Bb...>> {
    static constexpr std::size_t n = sizeof...(Bb);
    static_assert(K == JoinKind::Residual || K == JoinKind::Multiply || n >= 2,
                  "lamda: layer Add/Concat: needs at least two branches (Residual<F> is x + F(x), "
                  "Identity is a branch that is x itself)");
    static_assert(n <= limits::inputs, "lamda: layer Add/Concat: at most 64 branches");
    static constexpr int branch_count = (0 + ... + Bb::count);
    static constexpr int index = J;  // the joining layer's own index
    static constexpr int count = branch_count + 1;
    static constexpr bool identity = false;
    static constexpr bool inputs_ok = (In::ok && ... && Bb::out::ok) && n >= 1;

    using o1 = typename first_of<typename Bb::out..., Bad>::type;
    using o2 = typename second_of<typename Bb::out..., Bad, Bad>::type;
    static constexpr bool same_shape = ((Bb::out::shape == o1::shape) && ...);
    static constexpr bool same_hw = ((Bb::out::h == o1::h && Bb::out::w == o1::w) && ...);
    static constexpr std::int64_t channel_sum = (std::int64_t{0} + ... + Bb::out::c);
    static constexpr bool mul_b_broadcast = o2::h == 1 && o2::w == 1 && o2::c == o1::c;
    static constexpr bool mul_a_broadcast = o1::h == 1 && o1::w == 1 && o1::c == o2::c;
    static constexpr bool mul_ok = n == 2 && (same_shape || mul_b_broadcast || mul_a_broadcast);

    static_assert(K != JoinKind::Add || !inputs_ok || same_shape,
                  "lamda: layer Add: branches produce different shapes (match channels with a "
                  "1x1 Conv2d and height/width with the same strides)");
    static_assert(K != JoinKind::Residual || !inputs_ok || same_shape,
                  "lamda: layer Residual: the branch F must keep its input's shape for x + F(x) "
                  "(use Add<Projection, F> to change channels or stride)");
    static_assert(K != JoinKind::Concat || !inputs_ok || same_hw,
                  "lamda: layer Concat: branches produce different heights or widths");
    static_assert(K != JoinKind::Multiply || !inputs_ok || mul_ok,
                  "lamda: layer Multiply: the operands need the same shape, or one of them "
                  "1x1xC with the same C to broadcast over height and width");

    static constexpr bool shape_ok = K == JoinKind::Concat     ? same_hw
                                     : K == JoinKind::Multiply ? mul_ok
                                                               : same_shape;
    static constexpr std::int64_t oh =
        K == JoinKind::Multiply && mul_a_broadcast && !same_shape ? o2::h : o1::h;
    static constexpr std::int64_t ow =
        K == JoinKind::Multiply && mul_a_broadcast && !same_shape ? o2::w : o1::w;
    static constexpr std::int64_t oc = K == JoinKind::Concat ? channel_sum : o1::c;
    static constexpr bool fits = fits_value(oh, ow, oc);
    static_assert(!inputs_ok || !shape_ok || fits,
                  "lamda: layer Concat: its output has more than 2^31 elements");
    using out = tensor_if<inputs_ok && shape_ok && fits, oh, ow, oc>;

    static constexpr std::int64_t params = (std::int64_t{0} + ... + Bb::params);
    static constexpr std::int64_t macs = (std::int64_t{0} + ... + Bb::macs);
    static constexpr OpKind op = K == JoinKind::Concat     ? OpKind::Concat
                                 : K == JoinKind::Multiply ? OpKind::Mul
                                                           : OpKind::Add;

    template <class B>
    static constexpr void step(std::int64_t& held, std::int64_t& pk, std::size_t& k,
                               bool keep_x) noexcept {
        // x outlives this branch if someone reads it later: a later branch or the join.
        const std::int64_t p = B::peak(held, keep_x || k + 1 < n);
        if (p > pk) pk = p;
        if (!B::identity) held += B::out::bytes;
        ++k;
    }
    static constexpr std::int64_t peak(std::int64_t base, bool keep_input) noexcept {
        const bool keep_x = keep_input || (false || ... || Bb::identity);
        std::int64_t held = base, pk = 0;
        std::size_t k = 0;
        (step<Bb>(held, pk, k, keep_x), ...);
        const std::int64_t at_join = held + (keep_x ? In::bytes : 0) + out::bytes;
        return at_join > pk ? at_join : pk;
    }
    static int emit(Graph& graph, int x) {
        const int outs[] = {Bb::emit(graph, x)...};  // braced lists run left to right
        const int idx = static_cast<int>(graph.layers.size());
        Layer layer;
        layer.name = std::string(op_name(op)) + "_" + std::to_string(idx);
        layer.op = op;
        layer.inputs.assign(std::begin(outs), std::end(outs));
        layer.act = A;
        layer.shape = out::shape;
        graph.layers.push_back(std::move(layer));
        return idx;
    }
};

template <JoinKind K, Activation A, int I, class In, class... Bs>
struct join : join_impl<K, A, I + bind_branches<I, In, Bs...>::count, In,
                        typename bind_branches<I, In, Bs...>::type> {};

// The model: Input first, then a chain.
template <class... Ls>
struct model {
    // Not a model (no Input first): a block. Block::on<H, W, C> is it as a model.
    template <int H, int W, int C>
    using on = Sequential<Input<H, W, C>, Ls...>;
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Definitions of the layer types.
// ---------------------------------------------------------------------------------------------

template <int H, int W, int C>
struct Input {
    static_assert(detail::in_range(H, 1, limits::spatial) &&
                      detail::in_range(W, 1, limits::spatial),
                  "lamda: layer Input: height and width must be in [1, 16384]");
    static_assert(detail::in_range(C, 1, limits::channels),
                  "lamda: layer Input: channels must be in [1, 65536]");
    using out = Tensor<H, W, C>;

    // Reached only for an Input that is not the model's first layer.
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static_assert(I < 0,
                      "lamda: layer Input must come first (a model is Sequential<Input<H, W, C>, "
                      "...>; blocks and branches have no Input)");
        static constexpr OpKind op = OpKind::Input;
        using out = detail::Bad;
        static constexpr std::int64_t params = 0, macs = 0;
    };
};

template <int Out, int KH, int KW, int SH, int SW, class P, Activation A, int DH, int DW,
          int Groups, bool Bias>
struct Conv2dHW {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::Conv2d;
        static_assert(detail::in_range(Out, 1, limits::channels),
                      "lamda: layer Conv2d: out channels must be in [1, 65536]");
        static_assert(detail::in_range(Groups, 1, limits::channels),
                      "lamda: layer Conv2d: groups must be in [1, 65536]");
        static_assert(Groups < 1 || Out % Groups == 0,
                      "lamda: layer Conv2d: out channels must be divisible by groups");
        static_assert(!In::ok || Groups < 1 || In::c % Groups == 0,
                      "lamda: layer Conv2d: input channels must be divisible by groups");
        using win = detail::window<In, P, KH, KW, SH, SW, DH, DW, false>;
        LAMDA_LAYERS_WINDOW_CHECKS("Conv2d", win);
        LAMDA_LAYERS_VALUE_CHECK("Conv2d", win::rows.out, win::cols.out, Out);
        static constexpr bool ok = In::ok && win::attrs_ok && win::fits &&
                                   detail::in_range(Out, 1, limits::channels) &&
                                   detail::in_range(Groups, 1, limits::channels) &&
                                   Out % detail::at_least_1(Groups) == 0 &&
                                   In::c % detail::at_least_1(Groups) == 0 &&
                                   detail::fits_value(win::rows.out, win::cols.out, Out);
        using out = detail::tensor_if<ok, win::rows.out, win::cols.out, Out>;
        static constexpr std::int64_t in_per_group = In::c / detail::at_least_1(Groups);
        static constexpr std::int64_t params =
            std::int64_t{Out} * in_per_group * KH * KW + (Bias ? Out : 0);
        static constexpr std::int64_t macs = out::h * out::w * out::c * in_per_group * KH * KW;
        static void fill(Layer& layer) {
            win::fill(layer);
            layer.out_channels = Out;
            layer.groups = Groups;
            layer.bias = Bias;
            layer.act = A;
        }
    };
};

template <int KH, int KW, int SH, int SW, class P, Activation A, int M, int DH, int DW, bool Bias>
struct DepthwiseConv2dHW {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::DepthwiseConv2d;
        static_assert(detail::in_range(M, 1, limits::channels),
                      "lamda: layer DepthwiseConv2d: multiplier must be in [1, 65536]");
        static constexpr std::int64_t channels = In::c * M;
        static_assert(!In::ok || M < 1 || channels <= limits::channels,
                      "lamda: layer DepthwiseConv2d: input channels x multiplier exceeds 65536");
        using win = detail::window<In, P, KH, KW, SH, SW, DH, DW, false>;
        LAMDA_LAYERS_WINDOW_CHECKS("DepthwiseConv2d", win);
        LAMDA_LAYERS_VALUE_CHECK("DepthwiseConv2d", win::rows.out, win::cols.out, channels);
        static constexpr bool ok = In::ok && win::attrs_ok && win::fits &&
                                   detail::in_range(M, 1, limits::channels) &&
                                   channels <= limits::channels &&
                                   detail::fits_value(win::rows.out, win::cols.out, channels);
        using out = detail::tensor_if<ok, win::rows.out, win::cols.out, channels>;
        static constexpr std::int64_t params = out::c * KH * KW + (Bias ? out::c : 0);
        static constexpr std::int64_t macs = out::h * out::w * out::c * KH * KW;
        static void fill(Layer& layer) {
            win::fill(layer);
            layer.multiplier = M;
            layer.bias = Bias;
            layer.act = A;
        }
    };
};

template <int Out, Activation A, bool Bias>
struct FullyConnected {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::FullyConnected;
        static_assert(detail::in_range(Out, 1, limits::channels),
                      "lamda: layer FullyConnected: out must be in [1, 65536]");
        static_assert(!In::ok || (In::h == 1 && In::w == 1),
                      "lamda: layer FullyConnected: input must be 1x1xC (put GlobalAvgPool or "
                      "Flatten before it)");
        static constexpr bool ok =
            In::ok && In::h == 1 && In::w == 1 && detail::in_range(Out, 1, limits::channels);
        using out = detail::tensor_if<ok, 1, 1, Out>;
        static constexpr std::int64_t params = In::elements * Out + (Bias ? Out : 0);
        static constexpr std::int64_t macs = In::elements * Out;
        static void fill(Layer& layer) {
            layer.out_channels = Out;
            layer.bias = Bias;
            layer.act = A;
        }
    };
};

template <long long EpsNum, long long EpsDen>
struct BatchNormEps {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::BatchNorm;
        static_assert(EpsNum > 0 && EpsDen > EpsNum,
                      "lamda: layer BatchNorm: eps = EpsNum / EpsDen must be in (0, 1)");
        using out = In;
        static constexpr std::int64_t params = 2 * In::c;  // scale and shift
        static constexpr std::int64_t macs = 0;
        static void fill(Layer& layer) {
            layer.eps = static_cast<double>(EpsNum) / static_cast<double>(EpsDen);
        }
    };
};

template <OpKind Op, int KH, int KW, int SH, int SW, class P, bool Ceil>
struct Pool2d {
    static_assert(Op == OpKind::MaxPool || Op == OpKind::AvgPool,
                  "lamda: layer Pool2d: the op must be MaxPool or AvgPool");
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = Op;
        using win = detail::window<In, P, KH, KW, SH, SW, 1, 1, Ceil>;
        LAMDA_LAYERS_WINDOW_CHECKS("MaxPool/AvgPool", win);
        static constexpr bool ok = In::ok && win::attrs_ok && win::fits;
        using out = detail::tensor_if<ok, win::rows.out, win::cols.out, In::c>;
        static constexpr std::int64_t params = 0, macs = 0;
        static void fill(Layer& layer) {
            win::fill(layer);
            layer.dilation_h = layer.dilation_w = 1;
        }
    };
};

struct GlobalAvgPool {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::GlobalAvgPool;
        using out = detail::tensor_if<In::ok, 1, 1, In::c>;
        static constexpr std::int64_t params = 0, macs = 0;
    };
};

struct Flatten {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::Flatten;
        using out = detail::tensor_if<In::ok, 1, 1, In::elements>;
        static constexpr std::int64_t params = 0, macs = 0;
    };
};

template <OpKind Op>
struct Elementwise {
    static_assert(Op == OpKind::Relu || Op == OpKind::Relu6 || Op == OpKind::HardSwish ||
                      Op == OpKind::HardSigmoid || Op == OpKind::Sigmoid ||
                      Op == OpKind::Softmax,
                  "lamda: layer Elementwise: the op must be an activation or Softmax");
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = Op;
        using out = In;
        static constexpr std::int64_t params = 0, macs = 0;
    };
};

template <long long RateNum, long long RateDen>
struct Dropout {
    template <int I, class In>
    struct bind : detail::unary_base<bind<I, In>, I, In> {
        static constexpr OpKind op = OpKind::Dropout;
        static_assert(RateNum >= 0 && RateDen > RateNum,
                      "lamda: layer Dropout: rate = RateNum / RateDen must be in [0, 1)");
        using out = In;
        static constexpr std::int64_t params = 0, macs = 0;
        static void fill(Layer& layer) {
            layer.rate = static_cast<double>(RateNum) / static_cast<double>(RateDen);
        }
    };
};

template <class F, Activation A>
struct Residual {
    template <int I, class In>
    struct bind : detail::join<detail::JoinKind::Residual, A, I, In, Identity, F> {};
};

template <Activation A, class... Bs>
struct AddAct {
    template <int I, class In>
    struct bind : detail::join<detail::JoinKind::Add, A, I, In, Bs...> {};
};

template <class... Bs>
struct Concat {
    template <int I, class In>
    struct bind : detail::join<detail::JoinKind::Concat, Activation::None, I, In, Bs...> {};
};

template <class... Bs>
struct Multiply {
    static_assert(sizeof...(Bs) == 1 || sizeof...(Bs) == 2,
                  "lamda: layer Multiply: takes one branch (x * F(x)) or two (F(x) * G(x))");
    template <int I, class In>
    struct bind : detail::join<detail::JoinKind::Multiply, Activation::None, I, In, Bs...> {};
};
// Multiply<F>: x * F(x).
template <class F>
struct Multiply<F> {
    template <int I, class In>
    struct bind
        : detail::join<detail::JoinKind::Multiply, Activation::None, I, In, Identity, F> {};
};

namespace detail {

template <int H, int W, int C, class... Ls>
struct model<Input<H, W, C>, Ls...> {
    using input = typename Input<H, W, C>::out;
    using body = seq_bind<1, input, type_list<Ls...>>;
    using output = typename body::out;

    static constexpr Shape input_shape = input::shape;
    static constexpr Shape output_shape = output::shape;
    static constexpr int layer_count = 1 + body::count;  // graph layers, the input included
    static constexpr std::int64_t params = body::params;
    static constexpr std::int64_t macs = body::macs;
    static constexpr std::int64_t weight_bytes = params * bytes_per_element;
    // As core/analysis.hpp: layers run one at a time in to_graph's order (branches in order), each
    // value a buffer of its own from its producer to its last consumer.
    static constexpr std::int64_t peak_activation_bytes =
        body::peak(0, false) > input::bytes ? body::peak(0, false) : input::bytes;

    static_assert(!output::ok || params <= limits::params,
                  "lamda: model: more than 2^31 parameters");
    static_assert(!output::ok || peak_activation_bytes <= limits::activation_bytes,
                  "lamda: model: more than 2^34 bytes (16 GiB) of activations at its peak");

    // The same model as an IR graph, shapes and resolved pads filled in (no parser, no
    // core/validate.hpp: the shapes are the ones computed at compile time). Layers are named as the
    // DSL names unnamed layers: OP_N, N the index (input_0, conv2d_1, ...).
    static Graph to_graph(std::string name = {}) {
        Graph graph;
        graph.name = std::move(name);
        graph.layers.reserve(static_cast<std::size_t>(layer_count));
        Layer in;
        in.name = std::string(op_name(OpKind::Input)) + "_0";
        in.op = OpKind::Input;
        in.input_shape = input::shape;
        in.shape = input::shape;
        graph.layers.push_back(std::move(in));
        body::emit(graph, 0);
        return graph;
    }
};

}  // namespace detail

// A chain of layers. Starting with Input<H, W, C> it is a model, with the constexpr members
// input_shape, output_shape (lamda::Shape), output (a Tensor type), params, macs, weight_bytes,
// peak_activation_bytes, layer_count and the function to_graph(name). Otherwise it is a block.
template <class... Ls>
struct Sequential : detail::model<Ls...> {
    template <int I, class In>
    using bind = detail::seq_bind<I, In, detail::type_list<Ls...>>;
};

// lamda::layers::to_graph<Net>(name): the same as Net::to_graph(name).
template <class Net>
Graph to_graph(std::string name = {}) {
    return Net::to_graph(std::move(name));
}

#undef LAMDA_LAYERS_WINDOW_CHECKS
#undef LAMDA_LAYERS_VALUE_CHECK

}  // namespace layers
}  // namespace lamda

#endif  // LAMDA_DSL_LAYERS_HPP
