// Tests of lamda/dsl/layers.hpp: compile-time layer templates. Shapes, parameters and MACs are
// checked by hand (static_assert), and every template model's numbers against the DSL's analysis
// of the same model written as text, and against the analysis of its own to_graph().
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "lamda/core/analysis.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/dsl/layers.hpp"
#include "lamda/core/validate.hpp"

namespace {

namespace L = lamda::layers;
using lamda::Shape;
using L::Act;

// ---------------------------------------------------------------------------------------------
// Single layers, by hand. Block::on<H, W, C> makes a block a model with that input.
// ---------------------------------------------------------------------------------------------

// TF-style same: 28 / 2 -> 14 (total padding 1: 0 before, 1 after).
using ConvSame = L::Sequential<L::Conv2d<16, 3, 2>>::on<28, 28, 1>;
static_assert(ConvSame::output_shape == Shape{14, 14, 16}, "");
static_assert(ConvSame::params == 16 * 1 * 9 + 16, "");
static_assert(ConvSame::macs == 14 * 14 * 16 * 9, "");
static_assert(ConvSame::weight_bytes == ConvSame::params * 4, "");
static_assert(ConvSame::layer_count == 2, "");

// Valid, dilation 2 (effective kernel 5): 10 -> 6; no bias.
using ConvDilated =
    L::Sequential<L::Conv2d<8, 3, 1, L::Valid, Act::None, 2, 1, false>>::on<10, 10, 4>;
static_assert(ConvDilated::output_shape == Shape{6, 6, 8}, "");
static_assert(ConvDilated::params == 8 * 4 * 9, "");
static_assert(ConvDilated::macs == 6 * 6 * 8 * 4 * 9, "");

// Groups: each of 32 filters sees 16 / 4 channels.
using ConvGrouped = L::Sequential<L::Conv2d<32, 3, 1, L::Same, Act::Relu, 1, 4>>::on<8, 8, 16>;
static_assert(ConvGrouped::output_shape == Shape{8, 8, 32}, "");
static_assert(ConvGrouped::params == 32 * 4 * 9 + 32, "");
static_assert(ConvGrouped::macs == 8 * 8 * 32 * 4 * 9, "");

// Non-square kernel, stride and explicit H x W padding: rows (20 + 2 - 7) / 1 + 1 = 16,
// cols (20 + 0 - 1) / 2 + 1 = 10.
using ConvHW = L::Sequential<L::Conv2dHW<8, 7, 1, 1, 2, L::Pad<1, 0>>>::on<20, 20, 3>;
static_assert(ConvHW::output_shape == Shape{16, 10, 8}, "");
static_assert(ConvHW::params == 8 * 3 * 7 * 1 + 8, "");
// Asymmetric explicit padding (top, left, bottom, right).
static_assert(L::Sequential<L::Conv2d<1, 3, 1, L::Pad<0, 1, 2, 3>>>::on<5, 5, 1>::output_shape ==
                  Shape{5, 7, 1},
              "");

// Depthwise, multiplier 2.
using Dw = L::Sequential<L::DepthwiseConv2d<3, 1, L::Same, Act::Relu6, 2>>::on<8, 8, 16>;
static_assert(Dw::output_shape == Shape{8, 8, 32}, "");
static_assert(Dw::params == 32 * 9 + 32, "");
static_assert(Dw::macs == 8 * 8 * 32 * 9, "");
// Depthwise, stride 2, same: 15 -> 8.
static_assert(
    L::Sequential<L::DepthwiseConv2d<5, 2>>::on<15, 15, 4>::output_shape == Shape{8, 8, 4}, "");

// Fully connected after flatten / gap.
using Fc = L::Sequential<L::Flatten, L::FullyConnected<10>>::on<2, 2, 16>;
static_assert(Fc::output_shape == Shape{1, 1, 10}, "");
static_assert(Fc::params == 64 * 10 + 10, "");
static_assert(Fc::macs == 640, "");
static_assert(L::Sequential<L::GlobalAvgPool, L::FullyConnected<10, Act::None, false>>::on<
                  7, 7, 64>::params == 640,
              "");

// Batchnorm: scale and shift per channel.
static_assert(L::Sequential<L::BatchNorm>::on<4, 4, 24>::params == 48, "");
static_assert(L::Sequential<L::BatchNorm>::on<4, 4, 24>::macs == 0, "");

// Pools: floor by default; with ceil the last window may hang over the end...
static_assert(L::Sequential<L::MaxPool<3, 2>>::on<6, 6, 1>::output_shape == Shape{2, 2, 1}, "");
static_assert(L::Sequential<L::MaxPool<3, 2, L::Valid, true>>::on<6, 6, 1>::output_shape ==
                  Shape{3, 3, 1},
              "");
static_assert(L::Sequential<L::MaxPool<3, 2, L::Valid, true>>::on<55, 55, 64>::output_shape ==
                  Shape{27, 27, 64},
              "");
// ... but never start in the trailing padding (PyTorch): 5 with padding 1, kernel 2, stride 2
// rounds up to 4 windows, the 4th would start at 6 >= 5 + 1, so 3.
static_assert(L::Sequential<L::AvgPool<2, 2, L::Pad<1>, true>>::on<5, 5, 2>::output_shape ==
                  Shape{3, 3, 2},
              "");
// Same padding on a pool.
static_assert(L::Sequential<L::MaxPool<3, 2, L::Same>>::on<7, 7, 3>::output_shape ==
                  Shape{4, 4, 3},
              "");
static_assert(L::Sequential<L::AvgPoolHW<2, 1>>::on<8, 8, 3>::output_shape == Shape{4, 8, 3},
              "");

// Shape-preserving ops.
using Acts = L::Sequential<L::Relu, L::Relu6, L::HardSwish, L::HardSigmoid, L::Sigmoid,
                           L::Softmax, L::Dropout<>, L::Dropout<1, 5>>::on<3, 5, 7>;
static_assert(Acts::output_shape == Shape{3, 5, 7} && Acts::params == 0 && Acts::macs == 0, "");
static_assert(Acts::layer_count == 9, "");
// Every value is freed after its only reader: peak = two buffers.
static_assert(Acts::peak_activation_bytes == 2 * 3 * 5 * 7 * 4, "");

// Only an input: its own buffer.
using OnlyInput = L::Sequential<L::Input<4, 4, 2>>;
static_assert(OnlyInput::output_shape == Shape{4, 4, 2} && OnlyInput::layer_count == 1, "");
static_assert(OnlyInput::peak_activation_bytes == 4 * 4 * 2 * 4, "");

// ---------------------------------------------------------------------------------------------
// Branches, by hand.
// ---------------------------------------------------------------------------------------------

// x + f(x): x stays alive while f runs. 8x8x4 floats = 1024 bytes.
using Res = L::Sequential<L::Input<8, 8, 4>, L::Residual<L::Conv2d<4, 1>>>;
static_assert(Res::output_shape == Shape{8, 8, 4}, "");
static_assert(Res::params == 4 * 4 + 4 && Res::macs == 8 * 8 * 4 * 4, "");
static_assert(Res::layer_count == 3, "");
static_assert(Res::peak_activation_bytes == 3 * 1024, "");  // x, f(x), x + f(x)

// Fire module: squeeze, then two expands concatenated.
using Fire = L::Sequential<L::Input<13, 13, 64>, L::Conv2d<16, 1, 1, L::Valid, Act::Relu>,
                           L::Concat<L::Conv2d<64, 1, 1, L::Valid, Act::Relu>,
                                     L::Conv2d<64, 3, 1, L::Pad<1>, Act::Relu>>>;
static_assert(Fire::output_shape == Shape{13, 13, 128}, "");
static_assert(Fire::params == (64 * 16 + 16) + (16 * 64 + 64) + (16 * 9 * 64 + 64), "");
static_assert(Fire::layer_count == 5, "");

// Downsampling residual: two branches added.
using Down = L::Sequential<
    L::Input<8, 8, 16>,
    L::AddAct<Act::Relu, L::Sequential<L::Conv2d<32, 3, 2, L::Pad<1>, Act::None, 1, 1, false>,
                                       L::BatchNorm>,
              L::Sequential<L::Conv2d<32, 1, 2, L::Valid, Act::None, 1, 1, false>, L::BatchNorm>>>;
static_assert(Down::output_shape == Shape{4, 4, 32}, "");
static_assert(Down::params == 32 * 16 * 9 + 64 + 32 * 16 + 64, "");
static_assert(Down::macs == 4 * 4 * 32 * 16 * 9 + 4 * 4 * 32 * 16, "");

// Squeeze-excitation: x * f(x), f(x) 1x1xC broadcast.
using Se = L::Sequential<
    L::Input<4, 4, 16>,
    L::Multiply<L::Sequential<L::GlobalAvgPool, L::Conv2d<4, 1>, L::Relu, L::Conv2d<16, 1>,
                              L::HardSigmoid>>>;
static_assert(Se::output_shape == Shape{4, 4, 16}, "");
static_assert(Se::params == (16 * 4 + 4) + (4 * 16 + 16), "");
static_assert(Se::macs == 16 * 4 + 4 * 16, "");
// A 1x1xC first operand broadcasts too; the output has the other's shape.
static_assert(L::Sequential<L::Multiply<L::GlobalAvgPool, L::Identity>>::on<3, 3, 5>::
                      output_shape == Shape{3, 3, 5},
              "");

// Identity branches: add x, x and concat x, x.
static_assert(L::Sequential<L::Add<L::Identity, L::Identity>>::on<2, 2, 3>::output_shape ==
                  Shape{2, 2, 3},
              "");
static_assert(L::Sequential<L::Concat<L::Identity, L::Relu, L::Identity>>::on<2, 2, 3>::
                      output_shape == Shape{2, 2, 9},
              "");

// Blocks nest, and are reusable templates.
template <int C>
using ConvBnRelu = L::Sequential<L::Conv2d<C, 3, 1, L::Same, Act::None, 1, 1, false>,
                                 L::BatchNorm, L::Relu>;
using Nested = L::Sequential<L::Input<16, 16, 3>, ConvBnRelu<8>,
                             L::Residual<L::Sequential<ConvBnRelu<8>, ConvBnRelu<8>>>>;
static_assert(Nested::layer_count == 1 + 3 + 6 + 1, "");
static_assert(Nested::params == (3 * 8 * 9 + 16) + 2 * (8 * 8 * 9 + 16), "");

// The types a model exposes.
static_assert(std::is_same<Nested::output, L::Tensor<16, 16, 8>>::value, "");
static_assert(Nested::input_shape == Shape{16, 16, 3}, "");

// ---------------------------------------------------------------------------------------------
// Helpers: compare a template model with the DSL text of the same model.
// ---------------------------------------------------------------------------------------------

template <class Net>
void check_stats(const lamda::ModelStats& stats, const std::string& what) {
    INFO(what);
    CHECK(stats.params == Net::params);
    CHECK(stats.macs == Net::macs);
    CHECK(stats.weight_bytes == Net::weight_bytes);
    CHECK(stats.output_shape == Net::output_shape);
    CHECK(stats.peak_activation_bytes == Net::peak_activation_bytes);
}

// `dsl` lists the same layers in the same order as the template (names may differ).
template <class Net>
void check_model(const std::string& dsl, const std::string& file) {
    INFO(file);
    const lamda::ParseResult parsed = lamda::parse_dsl(dsl, file);
    REQUIRE_MESSAGE(parsed.ok(), lamda::format_diagnostics(parsed.diagnostics));
    check_stats<Net>(lamda::analyze(parsed.graph), "parsed DSL");

    const lamda::Graph graph = Net::to_graph("from_templates");
    REQUIRE(graph.layers.size() == static_cast<std::size_t>(Net::layer_count));
    check_stats<Net>(lamda::analyze(graph), "to_graph");

    // Layer by layer: same ops, inputs, shapes and resolved pads as the parser's graph.
    REQUIRE(parsed.graph.layers.size() == graph.layers.size());
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const lamda::Layer& a = graph.layers[i];
        const lamda::Layer& b = parsed.graph.layers[i];
        INFO("layer " << i << ": " << a.name << " / " << b.name);
        CHECK(a.op == b.op);
        // The same inputs; add is commutative (resnet's text writes `add f, x`, Residual x, f).
        std::vector<int> a_inputs = a.inputs, b_inputs = b.inputs;
        if (a.op == lamda::OpKind::Add) {
            std::sort(a_inputs.begin(), a_inputs.end());
            std::sort(b_inputs.begin(), b_inputs.end());
        }
        CHECK(a_inputs == b_inputs);
        CHECK(a.shape == b.shape);
        CHECK(a.pads == b.pads);
    }

    // to_graph's shapes are the ones core/validate.hpp infers, and it is a valid graph.
    lamda::Graph reinferred = graph;
    std::vector<lamda::Diagnostic> diags;
    CHECK_MESSAGE(lamda::infer_shapes(reinferred, diags, "to_graph"),
                  lamda::format_diagnostics(diags));
    CHECK(reinferred == graph);

    // Its canonical text parses back to the same graph (names, attributes and all).
    const std::string text = lamda::print_dsl(graph);
    const lamda::ParseResult round = lamda::parse_dsl(text, "to_graph.lamda");
    REQUIRE_MESSAGE(round.ok(), (lamda::format_diagnostics(round.diagnostics) + text));
    CHECK(round.graph == graph);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Compares with a model of examples/models when that file is there.
template <class Net>
void check_example(const char* name) {
    const std::string path = std::string(LAMDA_SOURCE_DIR) + "/examples/models/" + name;
    const std::string text = read_file(path);
    if (text.empty()) {
        MESSAGE("skipped: " << path << " is missing");
        return;
    }
    check_model<Net>(text, path);
}

// ---------------------------------------------------------------------------------------------
// Models.
// ---------------------------------------------------------------------------------------------

using LeNet5 = L::Sequential<
    L::Input<28, 28, 1>,
    L::Conv2d<6, 5, 1, L::Pad<2>, Act::Relu>, L::MaxPool<2>,
    L::Conv2d<16, 5, 1, L::Pad<0>, Act::Relu>, L::MaxPool<2>,
    L::Flatten,
    L::FullyConnected<120, Act::Relu>, L::FullyConnected<84, Act::Relu>, L::FullyConnected<10>>;
static_assert(LeNet5::params == 61706, "");
static_assert(LeNet5::macs == 416520, "");
static_assert(LeNet5::output_shape == Shape{1, 1, 10}, "");

const char* const lenet5_dsl = R"(model lenet5
input: input shape=28x28x1
conv1: conv2d out=6 kernel=5 padding=2 act=relu
pool1: maxpool kernel=2
conv2: conv2d out=16 kernel=5 padding=0 act=relu
pool2: maxpool kernel=2
flatten: flatten
fc1: fc out=120 act=relu
fc2: fc out=84 act=relu
fc3: fc out=10
)";

// A tiny MobileNet (examples/models/tiny_mobilenet.lamda): inverted residuals with SE.
template <int C>
using Conv1x1Bn = L::Sequential<L::Conv2d<C, 1, 1, L::Pad<0>, Act::None, 1, 1, false>,
                                L::BatchNorm>;
template <int C, int Squeeze>
using SqueezeExcite = L::Multiply<
    L::Sequential<L::GlobalAvgPool, L::Conv2d<Squeeze, 1, 1, L::Pad<0>, Act::Relu>,
                  L::Conv2d<C, 1, 1, L::Pad<0>, Act::HardSigmoid>>>;
template <int Expanded, int Out, int Stride, class Se>
using InvertedBody = L::Sequential<
    Conv1x1Bn<Expanded>, L::Relu6,
    L::DepthwiseConv2d<3, Stride, L::Pad<1>, Act::None, 1, 1, false>, L::BatchNorm, L::Relu6,
    Se, Conv1x1Bn<Out>>;

using TinyMobileNet = L::Sequential<
    L::Input<28, 28, 1>,
    L::Conv2d<16, 3, 2, L::Pad<1>, Act::None, 1, 1, false>, L::BatchNorm, L::Relu6,
    L::Residual<InvertedBody<48, 16, 1, SqueezeExcite<48, 8>>>,
    InvertedBody<64, 24, 2, L::Identity>,
    L::Residual<InvertedBody<96, 24, 1, SqueezeExcite<96, 24>>>,
    Conv1x1Bn<128>, L::Relu6,
    L::GlobalAvgPool, L::Dropout<1, 5>, L::FullyConnected<10>>;
static_assert(TinyMobileNet::params == 21882, "");
static_assert(TinyMobileNet::macs == 1143456, "");

const char* const tiny_mobilenet_dsl = R"(model tiny_mobilenet
input: input shape=28x28x1
stem_0: conv2d out=16 kernel=3 stride=2 padding=1 bias=false
stem_1: batchnorm
stem_2: relu6
b0_expand_0: conv2d out=48 kernel=1 padding=0 bias=false
b0_expand_1: batchnorm
b0_expand_2: relu6
b0_dw_0: dwconv kernel=3 padding=1 bias=false
b0_dw_1: batchnorm
b0_dw_2: relu6
b0_se_avgpool: gap
b0_se_fc1: conv2d out=8 kernel=1 padding=0 act=relu
b0_se_fc2: conv2d out=48 kernel=1 padding=0 act=hardsigmoid
b0_se: mul b0_dw_2, b0_se_fc2
b0_project_0: conv2d out=16 kernel=1 padding=0 bias=false
b0_project_1: batchnorm
b0: add stem_2, b0_project_1
b1_expand_0: conv2d out=64 kernel=1 padding=0 bias=false
b1_expand_1: batchnorm
b1_expand_2: relu6
b1_dw_0: dwconv kernel=3 stride=2 padding=1 bias=false
b1_dw_1: batchnorm
b1_dw_2: relu6
b1_project_0: conv2d out=24 kernel=1 padding=0 bias=false
b1_project_1: batchnorm
b2_expand_0: conv2d out=96 kernel=1 padding=0 bias=false
b2_expand_1: batchnorm
b2_expand_2: relu6
b2_dw_0: dwconv kernel=3 padding=1 bias=false
b2_dw_1: batchnorm
b2_dw_2: relu6
b2_se_avgpool: gap
b2_se_fc1: conv2d out=24 kernel=1 padding=0 act=relu
b2_se_fc2: conv2d out=96 kernel=1 padding=0 act=hardsigmoid
b2_se: mul b2_dw_2, b2_se_fc2
b2_project_0: conv2d out=24 kernel=1 padding=0 bias=false
b2_project_1: batchnorm
b2: add b1_project_1, b2_project_1
head_0: conv2d out=128 kernel=1 padding=0 bias=false
head_1: batchnorm
head_2: relu6
avgpool: gap
classifier_0: dropout rate=0.2
classifier_1: fc out=10
)";

// Every op and attribute of the catalog at least once.
using Catalog = L::Sequential<
    L::Input<32, 32, 3>,
    L::Conv2d<8, 3, 2, L::Same, Act::Relu>,                                   // 16x16x8
    L::Conv2dHW<16, 3, 1, 1, 2, L::Pad<1, 0>, Act::Relu6, 2, 1, 2, false>,    // 14x8x16
    L::DepthwiseConv2d<3, 1, L::Valid, Act::HardSwish, 2, 2>,                 // 10x4x32
    L::BatchNormEps<1, 1000>, L::HardSwish,
    L::MaxPool<3, 2, L::Valid, true>,                                         // 5x2x32
    L::AvgPool<2, 1, L::Pad<0, 1, 1, 0>, true>,                               // 5x2x32
    L::AvgPool<2, 2, L::Pad<1>, true>,                                        // 3x2x32
    L::Residual<L::Conv2d<32, 1>, Act::Relu>,
    L::Concat<L::Sequential<L::Conv2d<8, 1>, L::Relu6>, L::Conv2d<8, 3, 1, L::Pad<1>>,
              L::Identity>,                                                   // 3x2x48
    L::Multiply<L::Sequential<L::GlobalAvgPool, L::FullyConnected<12, Act::Relu>,
                              L::FullyConnected<48, Act::HardSigmoid>>>,
    L::AddAct<Act::HardSwish, L::Sequential<L::Conv2d<16, 3, 2>, L::HardSigmoid>,
              L::Sequential<L::Conv2d<16, 1, 2, L::Valid>, L::Sigmoid>>,      // 2x1x16
    L::Multiply<L::Relu, L::GlobalAvgPool>,
    L::Multiply<L::GlobalAvgPool, L::Identity>,
    L::AvgPoolHW<2, 1, 1, 1, L::Same>,                                        // 2x1x16
    L::Flatten, L::Dropout<1, 4>, L::FullyConnected<10, Act::None, false>, L::Softmax>;
static_assert(Catalog::output_shape == Shape{1, 1, 10}, "");

const char* const catalog_dsl = R"(model catalog
input: input shape=32x32x3
c1: conv2d out=8 kernel=3 stride=2 act=relu
c2: conv2d out=16 kernel=3x1 stride=1x2 padding=1x0 dilation=2x1 groups=2 bias=false act=relu6
dw: dwconv kernel=3 padding=valid dilation=2 multiplier=2 act=hardswish
bn: batchnorm eps=0.001
hs: hardswish
mp: maxpool kernel=3 stride=2 ceil=true
ap1: avgpool kernel=2 stride=1 padding=0x1x1x0 ceil=true
ap2: avgpool kernel=2 padding=1 ceil=true
res_f: conv2d out=32 kernel=1
res: add ap2, res_f act=relu
cat_a: conv2d res out=8 kernel=1
cat_a2: relu6
cat_b: conv2d res out=8 kernel=3 padding=1
cat: concat cat_a2, cat_b, res
se_pool: gap
se_fc1: fc out=12 act=relu
se_fc2: fc out=48 act=hardsigmoid
se: mul cat, se_fc2
down_a: conv2d out=16 kernel=3 stride=2
down_a2: hardsigmoid
down_b: conv2d se out=16 kernel=1 stride=2 padding=valid
down_b2: sigmoid
down: add down_a2, down_b2 act=hardswish
m2_a: relu
m2_b: gap down
m2: mul m2_a, m2_b
m3_a: gap
m3: mul m3_a, m2
ap3: avgpool kernel=2x1 stride=1 padding=same
flat: flatten
drop: dropout rate=0.25
logits: fc out=10 bias=false
prob: softmax
)";

// The zoo, as reusable block templates (torchvision's architectures, layer for layer).
template <int Cin, int Cout, int Expand, int Stride>
using Mv2Body = std::conditional_t<
    Expand == 1,
    L::Sequential<L::DepthwiseConv2d<3, Stride, L::Pad<1>, Act::None, 1, 1, false>,
                  L::BatchNorm, L::Relu6, Conv1x1Bn<Cout>>,
    L::Sequential<Conv1x1Bn<Cin * Expand>, L::Relu6,
                  L::DepthwiseConv2d<3, Stride, L::Pad<1>, Act::None, 1, 1, false>,
                  L::BatchNorm, L::Relu6, Conv1x1Bn<Cout>>>;
template <int Cin, int Cout, int Expand, int Stride>
using Mv2Block = std::conditional_t<Stride == 1 && Cin == Cout,
                                    L::Residual<Mv2Body<Cin, Cout, Expand, Stride>>,
                                    Mv2Body<Cin, Cout, Expand, Stride>>;
using MobileNetV2 = L::Sequential<
    L::Input<224, 224, 3>,
    L::Conv2d<32, 3, 2, L::Pad<1>, Act::None, 1, 1, false>, L::BatchNorm, L::Relu6,
    Mv2Block<32, 16, 1, 1>,
    Mv2Block<16, 24, 6, 2>, Mv2Block<24, 24, 6, 1>,
    Mv2Block<24, 32, 6, 2>, Mv2Block<32, 32, 6, 1>, Mv2Block<32, 32, 6, 1>,
    Mv2Block<32, 64, 6, 2>, Mv2Block<64, 64, 6, 1>, Mv2Block<64, 64, 6, 1>,
    Mv2Block<64, 64, 6, 1>,
    Mv2Block<64, 96, 6, 1>, Mv2Block<96, 96, 6, 1>, Mv2Block<96, 96, 6, 1>,
    Mv2Block<96, 160, 6, 2>, Mv2Block<160, 160, 6, 1>, Mv2Block<160, 160, 6, 1>,
    Mv2Block<160, 320, 6, 1>,
    Conv1x1Bn<1280>, L::Relu6,
    L::GlobalAvgPool, L::Flatten, L::Dropout<1, 5>, L::FullyConnected<1000>>;
static_assert(MobileNetV2::params == 3504872, "");
static_assert(MobileNetV2::macs == 300774272, "");
static_assert(MobileNetV2::layer_count > 150, "");

template <int Cin, int Cout, int Stride>
using BasicBody = L::Sequential<L::Conv2d<Cout, 3, Stride, L::Pad<1>, Act::None, 1, 1, false>,
                                L::BatchNorm, L::Relu,
                                L::Conv2d<Cout, 3, 1, L::Pad<1>, Act::None, 1, 1, false>,
                                L::BatchNorm>;
template <int Cin, int Cout, int Stride>
using BasicBlock = std::conditional_t<
    Stride == 1 && Cin == Cout, L::Residual<BasicBody<Cin, Cout, Stride>, Act::Relu>,
    L::AddAct<Act::Relu, BasicBody<Cin, Cout, Stride>,
              L::Sequential<L::Conv2d<Cout, 1, Stride, L::Pad<0>, Act::None, 1, 1, false>,
                            L::BatchNorm>>>;
using ResNet18 = L::Sequential<
    L::Input<224, 224, 3>,
    L::Conv2d<64, 7, 2, L::Pad<3>, Act::None, 1, 1, false>, L::BatchNorm, L::Relu,
    L::MaxPool<3, 2, L::Pad<1>>,
    BasicBlock<64, 64, 1>, BasicBlock<64, 64, 1>, BasicBlock<64, 128, 2>,
    BasicBlock<128, 128, 1>, BasicBlock<128, 256, 2>, BasicBlock<256, 256, 1>,
    BasicBlock<256, 512, 2>, BasicBlock<512, 512, 1>,
    L::GlobalAvgPool, L::Flatten, L::FullyConnected<1000>>;
static_assert(ResNet18::params == 11689512, "");
static_assert(ResNet18::macs == 1814073344, "");

template <int Squeeze, int Expand>
using FireBlock = L::Sequential<
    L::Conv2d<Squeeze, 1, 1, L::Pad<0>, Act::Relu>,
    L::Concat<L::Conv2d<Expand, 1, 1, L::Pad<0>, Act::Relu>,
              L::Conv2d<Expand, 3, 1, L::Pad<1>, Act::Relu>>>;
using SqueezeNet11 = L::Sequential<
    L::Input<224, 224, 3>,
    L::Conv2d<64, 3, 2, L::Pad<0>, Act::Relu>, L::MaxPool<3, 2, L::Valid, true>,
    FireBlock<16, 64>, FireBlock<16, 64>, L::MaxPool<3, 2, L::Valid, true>,
    FireBlock<32, 128>, FireBlock<32, 128>, L::MaxPool<3, 2, L::Valid, true>,
    FireBlock<48, 192>, FireBlock<48, 192>, FireBlock<64, 256>, FireBlock<64, 256>,
    L::Dropout<>, L::Conv2d<1000, 1, 1, L::Pad<0>, Act::Relu>, L::GlobalAvgPool, L::Flatten>;
static_assert(SqueezeNet11::params == 1235496, "");
static_assert(SqueezeNet11::macs == 349151936, "");

}  // namespace

TEST_CASE("layers: to_graph builds named, shape-inferred layers without the parser") {
    const lamda::Graph g = L::to_graph<Res>("res");
    CHECK(g.name == "res");
    REQUIRE(g.layers.size() == 3);
    CHECK(g.layers[0].name == "input_0");
    CHECK(g.layers[0].op == lamda::OpKind::Input);
    CHECK(g.layers[0].input_shape == Shape{8, 8, 4});
    CHECK(g.layers[1].name == "conv2d_1");
    CHECK(g.layers[1].inputs == std::vector<int>{0});
    CHECK(g.layers[1].shape == Shape{8, 8, 4});
    CHECK(g.layers[2].name == "add_2");
    CHECK(g.layers[2].inputs == std::vector<int>{0, 1});

    const lamda::Graph c = ConvSame::to_graph();
    CHECK(c.layers[1].padding.mode == lamda::PaddingMode::Same);
    CHECK(c.layers[1].pads == std::array<int, 4>{0, 0, 1, 1});

    const lamda::Graph f = Fire::to_graph();
    REQUIRE(f.layers.size() == 5);
    CHECK(f.layers[3].inputs == std::vector<int>{1});  // the 3x3 expand reads the squeeze
    CHECK(f.layers[4].op == lamda::OpKind::Concat);
    CHECK(f.layers[4].inputs == std::vector<int>{2, 3});
}

TEST_CASE("layers: hand-built nets agree with the DSL analysis") {
    check_model<Res>("input: input shape=8x8x4\nf: conv2d out=4 kernel=1\nadd input, f\n",
                     "res.lamda");
    check_model<Fire>(R"(input: input shape=13x13x64
s: conv2d out=16 kernel=1 padding=valid act=relu
e1: conv2d out=64 kernel=1 padding=valid act=relu
e3: conv2d s out=64 kernel=3 padding=1 act=relu
concat e1, e3
)",
                      "fire.lamda");
    check_model<Se>(R"(input: input shape=4x4x16
gap
conv2d out=4 kernel=1
relu
conv2d out=16 kernel=1
h: hardsigmoid
mul input, h
)",
                    "se.lamda");
    check_model<Acts>(R"(input: input shape=3x5x7
relu
relu6
hardswish
hardsigmoid
sigmoid
softmax
dropout
dropout rate=0.2
)",
                      "acts.lamda");
    check_model<Nested>(R"(input: input shape=16x16x3
conv2d out=8 kernel=3 bias=false
batchnorm
a: relu
conv2d out=8 kernel=3 bias=false
batchnorm
relu
conv2d out=8 kernel=3 bias=false
batchnorm
b: relu
add a, b
)",
                        "nested.lamda");
}

TEST_CASE("layers: LeNet-5 as templates equals its DSL") {
    check_model<LeNet5>(lenet5_dsl, "lenet5.lamda");
}

TEST_CASE("layers: tiny MobileNet (residual + squeeze-excitation) equals its DSL") {
    check_model<TinyMobileNet>(tiny_mobilenet_dsl, "tiny_mobilenet.lamda");
}

TEST_CASE("layers: every op and attribute equals the DSL") {
    check_model<Catalog>(catalog_dsl, "catalog.lamda");
}

TEST_CASE("layers: the zoo as templates equals examples/models") {
    check_example<LeNet5>("lenet5.lamda");
    check_example<TinyMobileNet>("tiny_mobilenet.lamda");
    check_example<MobileNetV2>("mobilenet_v2.lamda");
    check_example<ResNet18>("resnet18.lamda");
    check_example<SqueezeNet11>("squeezenet1_1.lamda");
}
