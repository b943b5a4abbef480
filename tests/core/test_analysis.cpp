// Analysis: shapes, parameters, MACs and activation memory, checked against hand computation.
#include <doctest/doctest.h>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/core/validate.hpp>

#include <string>

namespace {

lamda::Graph parse(const std::string& text) {
    lamda::ParseResult r = lamda::parse_dsl(text, "test.lamda");
    INFO(lamda::format_diagnostics(r.diagnostics));
    REQUIRE(r.ok());
    return r.graph;
}

}  // namespace

TEST_CASE("conv2d: params and MACs with groups, bias, dilation, stride") {
    const auto g = parse("i: input shape=32x32x8\n"
                         "a: conv2d out=16 kernel=3\n"                        // same padding
                         "b: conv2d out=32 kernel=3 stride=2 groups=4 bias=false\n"
                         "c: conv2d out=8 kernel=1x5 dilation=2 padding=valid\n");
    const auto s = lamda::analyze(g);
    // a: 16 * 8 * 3 * 3 + 16; output 32x32x16.
    CHECK(g.layers[1].shape == lamda::Shape{32, 32, 16});
    CHECK(s.layers[1].params == 16 * 8 * 9 + 16);
    CHECK(s.layers[1].macs == 32 * 32 * 16 * 8 * 9);
    // b: groups 4: each output sees 16 / 4 = 4 channels; same padding at stride 2 -> 16x16.
    CHECK(g.layers[2].shape == lamda::Shape{16, 16, 32});
    CHECK(s.layers[2].params == 32 * 4 * 9);
    CHECK(s.layers[2].macs == 16 * 16 * 32 * 4 * 9);
    // c: kernel 1x5 with dilation 2 spans 1x9 -> 16x8 output.
    CHECK(g.layers[3].shape == lamda::Shape{16, 8, 8});
    CHECK(s.layers[3].params == 8 * 32 * 5 + 8);
    CHECK(s.layers[3].macs == 16 * 8 * 8 * 32 * 5);
    CHECK(s.params == s.layers[1].params + s.layers[2].params + s.layers[3].params);
    CHECK(s.macs == s.layers[1].macs + s.layers[2].macs + s.layers[3].macs);
    CHECK(s.weight_bytes == 4 * s.params);
}

TEST_CASE("dwconv, fc, batchnorm and the ops without weights") {
    const auto g = parse("i: input shape=10x10x6\n"
                         "d: dwconv kernel=3 multiplier=2 stride=2\n"
                         "n: batchnorm\n"
                         "r: hardswish\n"
                         "p: gap\n"
                         "f: fc out=5\n"
                         "s: softmax\n");
    const auto s = lamda::analyze(g);
    CHECK(g.layers[1].shape == lamda::Shape{5, 5, 12});
    CHECK(s.layers[1].params == 12 * 9 + 12);
    CHECK(s.layers[1].macs == 5 * 5 * 12 * 9);
    CHECK(s.layers[2].params == 2 * 12);
    CHECK(s.layers[2].macs == 0);
    CHECK(s.layers[3].params == 0);
    CHECK(s.layers[5].params == 12 * 5 + 5);
    CHECK(s.layers[5].macs == 12 * 5);
    CHECK(s.output_shape == lamda::Shape{1, 1, 5});
}

TEST_CASE("same padding resolves like TensorFlow, explicit padding like PyTorch") {
    // 224 at stride 2 with a 3x3 kernel: output 112, total padding 1, all of it bottom/right.
    const auto g = parse("i: input shape=224x224x3\n"
                         "a: conv2d out=4 kernel=3 stride=2\n"
                         "b: conv2d out=4 kernel=3 stride=2 padding=1\n"
                         "c: conv2d out=4 kernel=4 stride=1\n");
    CHECK(g.layers[1].shape == lamda::Shape{112, 112, 4});
    CHECK(g.layers[1].pads == std::array<int, 4>{0, 0, 1, 1});
    CHECK(g.layers[2].shape == lamda::Shape{56, 56, 4});
    CHECK(g.layers[2].pads == std::array<int, 4>{1, 1, 1, 1});
    // An even kernel at stride 1: 3 padding, 1 before and 2 after.
    CHECK(g.layers[3].pads == std::array<int, 4>{1, 1, 2, 2});
    CHECK(g.layers[3].shape == lamda::Shape{56, 56, 4});
}

TEST_CASE("ceil mode follows PyTorch, including its last-window rule") {
    // squeezenet: 111 -> 55 with a 3x3 window at stride 2 either way; 56 differs: 27 vs 28.
    const auto ceil = parse("i: input shape=111x56x1\na: maxpool kernel=3 stride=2 ceil=true\n");
    const auto floor = parse("i: input shape=111x56x1\nb: maxpool kernel=3 stride=2\n");
    CHECK(ceil.layers[1].shape == lamda::Shape{55, 28, 1});
    CHECK(floor.layers[1].shape == lamda::Shape{55, 27, 1});
    // 5 with kernel 2, stride 2, padding 1: ceil gives (5+2-2)/2 rounded up + 1 = 4, but the
    // fourth window would start at 6 >= 5 + 1, inside the trailing padding, so it is dropped.
    const auto h = parse("i: input shape=5x5x1\np: avgpool kernel=2 stride=2 padding=1 ceil=true\n");
    CHECK(h.layers[1].shape == lamda::Shape{3, 3, 1});
}

TEST_CASE("peak activation memory: values live until their last reader") {
    // A chain: at most an input and an output are alive at once.
    const auto chain = parse("i: input shape=8x8x4\n"    // 256 floats
                             "a: conv2d out=8 kernel=1\n" // 512
                             "b: relu\n"                  // 512
                             "c: conv2d out=2 kernel=1\n");  // 128
    const auto s = lamda::analyze(chain);
    CHECK(s.layers[1].live_bytes == 4 * (256 + 512));
    CHECK(s.layers[2].live_bytes == 4 * (512 + 512));
    CHECK(s.layers[3].live_bytes == 4 * (512 + 128));
    CHECK(s.peak_activation_bytes == 4 * 1024);

    // A residual: the skip value stays alive across the branch.
    const auto residual = parse("i: input shape=8x8x4\n"        // 256
                                "a: conv2d out=4 kernel=3\n"     // 256
                                "b: conv2d out=4 kernel=3\n"     // 256
                                "s: add i, b\n");                // 256
    const auto r = lamda::analyze(residual);
    CHECK(r.layers[1].live_bytes == 4 * (256 + 256));        // i, a
    CHECK(r.layers[2].live_bytes == 4 * (256 + 256 + 256));  // i, a, b (a freed after b runs)
    CHECK(r.layers[3].live_bytes == 4 * (256 + 256 + 256));  // i, b, s
    CHECK(r.peak_activation_bytes == 4 * 768);

    // A value read twice by one layer is freed once.
    const auto twice = parse("i: input shape=2x2x1\nm: mul i, i\nr: relu\n");
    const auto t = lamda::analyze(twice);
    CHECK(t.layers[1].live_bytes == 4 * 8);
    CHECK(t.layers[2].live_bytes == 4 * 8);
}

TEST_CASE("graphs built in code are validated the same way") {
    lamda::Graph g;
    lamda::Layer input;
    input.name = "x";
    input.op = lamda::OpKind::Input;
    input.input_shape = lamda::Shape{6, 6, 3};
    g.layers.push_back(input);
    lamda::Layer conv;
    conv.name = "c";
    conv.op = lamda::OpKind::Conv2d;
    conv.inputs = {0};
    conv.out_channels = 4;
    conv.kernel_h = conv.kernel_w = 3;
    g.layers.push_back(conv);

    std::vector<lamda::Diagnostic> diags;
    REQUIRE(lamda::infer_shapes(g, diags));
    CHECK(g.output().shape == lamda::Shape{6, 6, 4});
    CHECK(lamda::analyze(g).params == 4 * 3 * 9 + 4);

    SUBCASE("a zero kernel is an error, not a division by zero") {
        g.layers[1].kernel_h = 0;
        CHECK(!lamda::infer_shapes(g, diags));
        CHECK(diags.back().message.find("kernel height is 0") != std::string::npos);
    }
    SUBCASE("an input index that is not an earlier layer") {
        g.layers[1].inputs = {5};
        CHECK(!lamda::infer_shapes(g, diags));
        CHECK(diags.back().message.find("does not name an earlier layer") != std::string::npos);
    }
    SUBCASE("a fused activation on an op that cannot take one") {
        lamda::Layer pool;
        pool.name = "p";
        pool.op = lamda::OpKind::GlobalAvgPool;
        pool.inputs = {1};
        pool.act = lamda::Activation::Relu;
        g.layers.push_back(pool);
        CHECK(!lamda::infer_shapes(g, diags));
        CHECK(diags.back().message == "gap 'p' cannot take a fused activation");
    }
}
