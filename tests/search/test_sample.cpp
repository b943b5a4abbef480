// Random models (search/sampler.hpp): always valid, within bounds, canonical, deterministic, and diverse
// enough to cover the whole op catalog and each family's signature structure.
#include <doctest/doctest.h>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/core/ir.hpp>
#include <lamda/search/sampler.hpp>
#include <lamda/core/validate.hpp>

#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

bool has(const lamda::Graph& g, lamda::OpKind op) {
    for (const lamda::Layer& l : g.layers)
        if (l.op == op) return true;
    return false;
}

}  // namespace

TEST_CASE("sample: 500 models across the families are valid, bounded and round-trip") {
    const lamda::SampleSpace space;
    int index = 0;
    for (lamda::ModelFamily family : lamda::all_model_families) {
        for (int i = 0; i < 84; ++i, ++index) {  // 6 x 84 = 504
            std::mt19937_64 rng(lamda::sample_seed(7, static_cast<std::uint64_t>(index)));
            lamda::SampleInfo info;
            lamda::Graph g = lamda::sample_model(rng, space, family, &info);
            INFO("family " << lamda::family_name(family) << ", model " << i);
            CHECK(info.family == family);
            CHECK(info.rejected_invalid == 0);  // the sampler never builds a broken layer

            // Valid on its own (shape inference from scratch), and its stats are the report's.
            lamda::Graph copy = g;
            std::vector<lamda::Diagnostic> diags;
            REQUIRE_MESSAGE(lamda::infer_shapes(copy, diags), lamda::format_diagnostics(diags));
            CHECK(copy == g);
            const lamda::ModelStats stats = lamda::analyze(g);
            CHECK(stats.macs == info.macs);
            CHECK(stats.params == info.params);
            CHECK(static_cast<int>(g.layers.size()) == info.layers);

            // Within the bounds.
            CHECK(stats.macs >= space.min_macs);
            CHECK(stats.macs <= space.max_macs);
            CHECK(stats.params <= space.max_params);
            CHECK(static_cast<int>(g.layers.size()) <= space.max_layers);

            // Canonical text that parses back to the same graph, and prints the same again.
            const std::string text = lamda::print_dsl(g);
            const lamda::ParseResult parsed = lamda::parse_dsl(text, "sample.lamda");
            REQUIRE_MESSAGE(parsed.ok(), lamda::format_diagnostics(parsed.diagnostics) << text);
            CHECK(parsed.graph == g);
            CHECK(lamda::print_dsl(parsed.graph) == text);

            // The input is one the space offers; widths are multiples of 8 within range.
            bool offered = false;
            for (const lamda::Shape& s : space.input_shapes) offered = offered || s == g.input().shape;
            CHECK(offered);
            for (const lamda::Layer& l : g.layers) {
                if (l.op == lamda::OpKind::Conv2d && l.name != "classifier") {
                    CHECK(l.out_channels % 8 == 0);
                    CHECK(l.out_channels <= space.max_wide_width);
                }
            }
        }
    }
}

TEST_CASE("sample: the same seed gives the same text, different seeds differ") {
    const lamda::SampleSpace space;
    std::set<std::string> texts;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
        std::mt19937_64 a(seed), b(seed);
        const std::string ta = lamda::print_dsl(lamda::sample_model(a, space));
        const std::string tb = lamda::print_dsl(lamda::sample_model(b, space));
        CHECK(ta == tb);
        texts.insert(ta);
    }
    CHECK(texts.size() == 40);  // all distinct

    // A fixed seed pins the exact model on every platform (no implementation-defined
    // distributions; checked on x86-64 and aarch64): these numbers change only when the sampler
    // itself does, and then they must be updated on purpose.
    std::mt19937_64 rng(lamda::sample_seed(2024, 0));
    lamda::SampleInfo info;
    const std::string text = lamda::sample_model_text(rng, space, lamda::ModelFamily::Residual, &info);
    CHECK(info.macs == 25940704);
    CHECK(info.params == 333492);
    CHECK(info.layers == 64);
    std::uint64_t fnv = 1469598103934665603ull;  // FNV-1a of the whole text
    for (unsigned char c : text) fnv = (fnv ^ c) * 1099511628211ull;
    CHECK(fnv == 5558742870899555236ull);
    CHECK(text.rfind("model sample_residual\ninput: input shape=64x64x3\nstem: conv2d out=16 kernel=3 "
                     "stride=2\n", 0) == 0);
    std::mt19937_64 again(lamda::sample_seed(2024, 0));
    CHECK(lamda::sample_model_text(again, space, lamda::ModelFamily::Residual) == text);
    CHECK(lamda::sample_seed(1, 0) != lamda::sample_seed(1, 1));
    CHECK(lamda::sample_seed(1, 0) != lamda::sample_seed(2, 0));
}

TEST_CASE("sample: a batch of 300 covers every op and both fused and standalone activations") {
    const lamda::SampleSpace space;
    std::set<lamda::OpKind> ops;
    std::set<lamda::Activation> fused;
    std::set<int> kernels, strides, inputs_h;
    bool groups = false, dilation = false, multiplier2 = false, no_bias = false, bias = false,
         ceil = false, explicit_pad = false, same_pad = false, valid_pool = false,
         nonsquare = false;
    for (int i = 0; i < 300; ++i) {
        std::mt19937_64 rng(lamda::sample_seed(99, static_cast<std::uint64_t>(i)));
        const lamda::Graph g = lamda::sample_model(rng, space);
        inputs_h.insert(static_cast<int>(g.input().shape.h));
        for (const lamda::Layer& l : g.layers) {
            ops.insert(l.op);
            fused.insert(l.act);
            const bool conv = l.op == lamda::OpKind::Conv2d || l.op == lamda::OpKind::DepthwiseConv2d;
            const bool pool = l.op == lamda::OpKind::MaxPool || l.op == lamda::OpKind::AvgPool;
            if (conv) {
                kernels.insert(l.kernel_h);
                strides.insert(l.stride_h);
                groups = groups || l.groups > 1;
                dilation = dilation || l.dilation_h > 1;
                multiplier2 = multiplier2 || l.multiplier == 2;
                no_bias = no_bias || !l.bias;
                bias = bias || l.bias;
                nonsquare = nonsquare || l.kernel_h != l.kernel_w;
                explicit_pad = explicit_pad || l.padding.mode == lamda::PaddingMode::Explicit;
                same_pad = same_pad || l.padding.mode == lamda::PaddingMode::Same;
            }
            if (pool) {
                ceil = ceil || l.ceil_mode;
                valid_pool = valid_pool || l.padding.mode == lamda::PaddingMode::Valid;
            }
        }
    }
    for (lamda::OpKind op : lamda::all_op_kinds) {
        INFO("op " << lamda::op_name(op));
        CHECK(ops.count(op) == 1);
    }
    for (lamda::Activation a : lamda::all_activations) {
        INFO("fused act=" << lamda::activation_name(a));
        CHECK(fused.count(a) == 1);
    }
    CHECK(kernels == std::set<int>{1, 3, 5, 7});
    CHECK(strides == std::set<int>{1, 2});
    CHECK(inputs_h.size() == space.input_shapes.size());
    CHECK(groups);
    CHECK(dilation);
    CHECK(multiplier2);
    CHECK(no_bias);
    CHECK(bias);
    CHECK(ceil);
    CHECK(explicit_pad);
    CHECK(same_pad);
    CHECK(valid_pool);
    CHECK(nonsquare);
}

TEST_CASE("sample: each family has its signature structure") {
    const lamda::SampleSpace space;
    using lamda::OpKind;
    for (int i = 0; i < 40; ++i) {
        auto draw = [&](lamda::ModelFamily f) {
            std::mt19937_64 rng(lamda::sample_seed(5, static_cast<std::uint64_t>(i)));
            return lamda::sample_model(rng, space, f);
        };
        const lamda::Graph chain = draw(lamda::ModelFamily::Chain);
        // A plain chain: every layer reads the one above it.
        for (std::size_t k = 1; k < chain.layers.size(); ++k) {
            REQUIRE(chain.layers[k].inputs.size() == 1);
            CHECK(chain.layers[k].inputs[0] == static_cast<int>(k) - 1);
        }
        CHECK(has(draw(lamda::ModelFamily::Residual), OpKind::Add));
        const lamda::Graph ir = draw(lamda::ModelFamily::InvertedResidual);
        CHECK(has(ir, OpKind::DepthwiseConv2d));
        CHECK(has(ir, OpKind::Add));
        const lamda::Graph se = draw(lamda::ModelFamily::SqueezeExcite);
        CHECK(has(se, OpKind::Mul));
        CHECK(has(se, OpKind::GlobalAvgPool));
        bool se_block = false;  // gap -> ... -> mul named <block>_se
        for (const lamda::Layer& l : se.layers)
            se_block = se_block || (l.op == OpKind::Mul && l.name.size() > 3 &&
                                    l.name.compare(l.name.size() - 3, 3, "_se") == 0);
        CHECK(se_block);
        CHECK(has(draw(lamda::ModelFamily::ConcatBranches), OpKind::Concat));
    }
}

TEST_CASE("sample: family names, the family draw and the space's checks") {
    for (lamda::ModelFamily f : lamda::all_model_families) {
        lamda::ModelFamily parsed = lamda::ModelFamily::Mixed;
        CHECK(lamda::parse_model_family(lamda::family_name(f), parsed));
        CHECK(parsed == f);
    }
    lamda::ModelFamily unused = lamda::ModelFamily::Chain;
    CHECK_FALSE(lamda::parse_model_family("resnet", unused));

    // Family weights are honoured: a zero weight is never drawn.
    lamda::SampleSpace only_se;
    only_se.family_weights = {0, 0, 0, 1, 0, 0};
    std::mt19937_64 rng(3);
    for (int i = 0; i < 20; ++i)
        CHECK(lamda::sample_family(rng, only_se) == lamda::ModelFamily::SqueezeExcite);

    CHECK(lamda::sample_space_error(lamda::SampleSpace{}).empty());
    lamda::SampleSpace bad;
    bad.max_width = 12;
    CHECK_FALSE(lamda::sample_space_error(bad).empty());
    CHECK_THROWS_AS(lamda::sample_model(rng, bad, lamda::ModelFamily::Chain), std::invalid_argument);
    bad = lamda::SampleSpace{};
    bad.input_shapes.clear();
    CHECK_THROWS_AS(lamda::sample_model(rng, bad, lamda::ModelFamily::Chain), std::invalid_argument);
}

TEST_CASE("sample: a custom space is respected, and unreachable bounds fail cleanly") {
    lamda::SampleSpace space;
    space.input_shapes = {{48, 64, 3}};  // not square
    space.min_macs = 5'000'000;
    space.max_macs = 20'000'000;
    space.max_params = 500'000;
    space.max_layers = 60;
    space.classes = {7};
    for (int i = 0; i < 60; ++i) {
        std::mt19937_64 rng(static_cast<std::uint64_t>(i));
        lamda::SampleInfo info;
        const lamda::Graph g = lamda::sample_model(rng, space, &info);
        CHECK(g.input().shape == lamda::Shape{48, 64, 3});
        CHECK(g.output().shape == lamda::Shape{1, 1, 7});
        CHECK(info.macs >= space.min_macs);
        CHECK(info.macs <= space.max_macs);
        CHECK(info.params <= space.max_params);
        CHECK(info.layers <= space.max_layers);
    }

    // 1 MAC is out of reach of any model: bounded attempts, then a clear error, not a hang.
    lamda::SampleSpace impossible;
    impossible.min_macs = 0;
    impossible.max_macs = 1;
    impossible.max_attempts = 50;
    std::mt19937_64 rng(1);
    CHECK_THROWS_AS(lamda::sample_model(rng, impossible, lamda::ModelFamily::Mixed),
                    std::runtime_error);
}
