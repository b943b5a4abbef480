// Weight inheritance (search/inherit.hpp): a child keeps what its parent learned. The sharpest
// check: when the parent's pruned channels carry nothing (zero filters), the child computes
// exactly the parent's outputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "lamda/data/weights.hpp"
#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/fold.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/search/inherit.hpp"

namespace {

lamda::Graph graph_of(const std::string& text) { return lamda::parse_dsl_or_throw(text, "inherit.lamda"); }

lamda::Tensor ramp(const lamda::Shape& s) {
    lamda::Tensor t(s);
    for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = std::sin(0.37f * static_cast<float>(i));
    return t;
}

// Zeroes output channels `channels` of a conv2d or dwconv (weights and bias): with a relu after
// them they then carry nothing.
void silence(lamda::Weights& w, const std::string& layer, std::initializer_list<int> channels) {
    lamda::WeightTensor& k = w.at(layer + ".weight");
    const std::int64_t per = k.elements() / k.shape[0];
    for (int c : channels) {
        for (std::int64_t j = 0; j < per; ++j) k.data[static_cast<std::size_t>(c * per + j)] = 0.0f;
        w.at(layer + ".bias").data[static_cast<std::size_t>(c)] = 0.0f;
    }
}

void check_same_outputs(const lamda::Graph& a, const lamda::Weights& wa, const lamda::Graph& b, const lamda::Weights& wb) {
    const lamda::Tensor x = ramp(a.input().input_shape);
    const lamda::Tensor ya = lamda::run_reference(a, wa, x), yb = lamda::run_reference(b, wb, x);
    REQUIRE(ya.data.size() == yb.data.size());
    for (std::size_t i = 0; i < ya.data.size(); ++i) CHECK(std::fabs(ya.data[i] - yb.data[i]) <= 1e-4f * (1 + std::fabs(ya.data[i])));
}

const char* parent_text = R"(model parent
input: input shape=12x12x3
stem: conv2d out=8 kernel=3 stride=2 act=relu
bn: batchnorm
dw: dwconv kernel=3 act=relu
pw: conv2d out=6 kernel=1 act=relu
pool: gap
logits: fc out=5
)";

}  // namespace

TEST_CASE("inherit: the same model reuses every tensor") {
    const lamda::Graph g = graph_of(parent_text);
    const lamda::Weights w = lamda::random_weights(g, 3);
    const lamda::Inheritance inh = lamda::inherit_weights(g, w, g, 9);
    CHECK(inh.fresh == 0);
    CHECK(inh.sliced == 0);
    CHECK(inh.reused == static_cast<int>(inh.tensors.size()));
    REQUIRE(inh.weights.size() == w.size());
    for (const auto& [name, t] : w) {
        CHECK(inh.weights.at(name).shape == t.shape);
        CHECK(inh.weights.at(name).data == t.data);
    }
}

TEST_CASE("inherit: shrunk channels keep the strongest filters, and readers follow them") {
    const lamda::Graph parent = graph_of(parent_text);
    lamda::Weights w = lamda::random_weights(parent, 3);
    silence(w, "stem", {1, 4, 6});  // the three channels a pruning by L1 norm must drop
    silence(w, "pw", {0, 5});
    const std::string child_text = std::string(parent_text)
                                       .replace(std::string(parent_text).find("out=8"), 5, "out=5")
                                       .replace(std::string(parent_text).find("out=6"), 5, "out=4");
    const lamda::Graph child = graph_of(child_text);
    const lamda::Inheritance inh = lamda::inherit_weights(parent, w, child, 9);
    CHECK(lamda::validate_weights(child, inh.weights).empty());
    CHECK(inh.fresh == 0);
    CHECK(inh.sliced > 0);
    CHECK(inh.summary().find("sliced") != std::string::npos);
    // Batch norm would shift the silenced channels away from zero, so the exact-output check
    // uses the same model without it.
    const std::string no_bn_parent_text = std::string(parent_text).replace(std::string(parent_text).find("bn: batchnorm\n"), 14, "");
    const lamda::Graph p2 = graph_of(no_bn_parent_text);
    lamda::Weights w2 = lamda::random_weights(p2, 4);
    silence(w2, "stem", {1, 4, 6});
    silence(w2, "dw", {1, 4, 6});  // its bias would otherwise revive them
    silence(w2, "pw", {0, 5});
    std::string c2_text = no_bn_parent_text;
    c2_text.replace(c2_text.find("out=8"), 5, "out=5");
    c2_text.replace(c2_text.find("out=6"), 5, "out=4");
    const lamda::Graph c2 = graph_of(c2_text);
    const lamda::Inheritance inh2 = lamda::inherit_weights(p2, w2, c2, 9);
    check_same_outputs(p2, w2, c2, inh2.weights);
}

TEST_CASE("inherit: branches joined by add agree on which channels they keep") {
    const lamda::Graph parent = graph_of(R"(model res
input: input shape=8x8x4
a: conv2d out=8 kernel=3 act=relu
b: conv2d out=8 kernel=1
c: conv2d out=8 kernel=1 in=8
s: add b, c
pool: gap
logits: fc out=3
)");
    // c reads b (plain chain); give the two producers of `s` different weak channels.
    lamda::Weights w = lamda::random_weights(parent, 5);
    silence(w, "b", {2, 3});
    silence(w, "c", {6, 7});
    const lamda::Graph child = graph_of(R"(model res
input: input shape=8x8x4
a: conv2d out=8 kernel=3 act=relu
b: conv2d out=6 kernel=1
c: conv2d out=6 kernel=1
s: add b, c
pool: gap
logits: fc out=3
)");
    const lamda::Inheritance inh = lamda::inherit_weights(parent, w, child, 9);
    CHECK(lamda::validate_weights(child, inh.weights).empty());
    CHECK(inh.fresh == 0);
    // c's output channels were imposed from b's choice (b keeps 0,1,4,5,6,7): c's row 4 in the
    // child is the parent's row 6, which is zero.
    const lamda::WeightTensor& cw = inh.weights.at("c.weight");
    const std::int64_t per = cw.elements() / cw.shape[0];
    for (std::int64_t j = 0; j < per; ++j) CHECK(cw.data[static_cast<std::size_t>(4 * per + j)] == 0.0f);
}

TEST_CASE("inherit: new layers and changed kernels start fresh, and bad parent weights are refused") {
    const lamda::Graph parent = graph_of(parent_text);
    const lamda::Weights w = lamda::random_weights(parent, 3);
    std::string text = parent_text;
    text.replace(text.find("dw: dwconv kernel=3"), 19, "dw: dwconv kernel=5");
    text.replace(text.find("pool: gap"), 9, "extra: conv2d out=6 kernel=1\npool: gap");
    const lamda::Graph child = graph_of(text);
    const lamda::Inheritance inh = lamda::inherit_weights(parent, w, child, 9);
    CHECK(lamda::validate_weights(child, inh.weights).empty());
    for (const auto& t : inh.tensors) {
        if (t.name == "dw.weight" || t.name.rfind("extra.", 0) == 0) CHECK(t.kind == lamda::InheritKind::Fresh);
        if (t.name == "stem.weight") CHECK(t.kind == lamda::InheritKind::Reused);
    }
    lamda::Weights broken = w;
    broken.erase("stem.weight");
    CHECK_THROWS_AS(lamda::inherit_weights(parent, broken, child, 9), lamda::WeightsError);
}

TEST_CASE("inherit: a depthwise kernel made smaller keeps the centre of each filter") {
    // Stride 1 and stride 2 ("same" padding, asymmetric at stride 2): with the parent's filters
    // zero outside their 3x3 centre, the 3x3 child computes exactly what the parent computed.
    for (const char* stride : {"", " stride=2"}) {
        const std::string text = std::string("model k\ninput: input shape=12x12x3\nstem: conv2d out=8 kernel=3 act=relu\n") +
                                 "dw: dwconv kernel=5" + stride + " act=relu\npw: conv2d out=6 kernel=1\npool: gap\nlogits: fc out=5\n";
        const lamda::Graph parent = graph_of(text);
        lamda::Weights w = lamda::random_weights(parent, 3);
        lamda::WeightTensor& k = w.at("dw.weight");
        REQUIRE(k.shape == std::vector<std::int64_t>{8, 1, 5, 5});
        for (std::int64_t c = 0; c < 8; ++c)
            for (std::int64_t y = 0; y < 5; ++y)
                for (std::int64_t x = 0; x < 5; ++x)
                    if (y == 0 || y == 4 || x == 0 || x == 4) k.data[static_cast<std::size_t>(c * 25 + y * 5 + x)] = 0.0f;
        std::string small = text;
        small.replace(small.find("kernel=5"), 8, "kernel=3");
        const lamda::Graph child = graph_of(small);
        const lamda::Inheritance inh = lamda::inherit_weights(parent, w, child, 9);
        CHECK(lamda::validate_weights(child, inh.weights).empty());
        CHECK(inh.fresh == 0);
        for (const auto& t : inh.tensors)
            CHECK(t.kind == (t.name == "dw.weight" ? lamda::InheritKind::Sliced : lamda::InheritKind::Reused));
        // the centre tap of channel 2 is the parent's
        CHECK(inh.weights.at("dw.weight").data[2 * 9 + 4] == k.data[2 * 25 + 12]);
        check_same_outputs(parent, w, child, inh.weights);
    }
    // Without "same" padding a smaller kernel would read another window: fresh, in either
    // dimension (here only the width shrinks).
    const std::string valid = "model v\ninput: input shape=12x12x3\ndw: dwconv kernel=3x5 padding=valid\npool: gap\n"
                              "logits: fc out=5\n";
    std::string narrower = valid;
    narrower.replace(narrower.find("kernel=3x5"), 10, "kernel=3x3");
    const lamda::Graph wide = graph_of(valid);
    const lamda::Inheritance inh = lamda::inherit_weights(wide, lamda::random_weights(wide, 3), graph_of(narrower), 9);
    for (const auto& t : inh.tensors)
        if (t.name == "dw.weight") CHECK(t.kind == lamda::InheritKind::Fresh);
}

TEST_CASE("inherit: a dense convolution made separable is factored, exactly when its kernels have rank 1 per input") {
    const lamda::Graph parent = graph_of(R"(model parent
input: input shape=10x10x3
stem: conv2d out=8 kernel=3 act=relu
mid: conv2d out=6 kernel=3
mid_act: relu
pool: gap
logits: fc out=5
)");
    const lamda::Graph child = graph_of(R"(model child
input: input shape=10x10x3
stem: conv2d out=8 kernel=3 act=relu
mid_dw: dwconv kernel=3 bias=false
mid: conv2d out=6 kernel=1
mid_act: relu
pool: gap
logits: fc out=5
)");
    lamda::Weights w = lamda::random_weights(parent, 3);
    // mid.weight[o][c][t] = a(o, c) * d(c, t): rank 1 per input channel c.
    lamda::WeightTensor& k = w.at("mid.weight");
    for (std::int64_t o = 0; o < 6; ++o)
        for (std::int64_t c = 0; c < 8; ++c)
            for (std::int64_t t = 0; t < 9; ++t)
                k.data[static_cast<std::size_t>((o * 8 + c) * 9 + t)] =
                    std::sin(0.7f * static_cast<float>(o + 3 * c)) * std::cos(0.3f * static_cast<float>(c * 9 + t));
    const lamda::Inheritance inh = lamda::inherit_weights(parent, w, child, 9);
    CHECK(lamda::validate_weights(child, inh.weights).empty());
    CHECK(inh.factored == 2);
    CHECK(inh.fresh == 0);
    CHECK(inh.summary() == "5 reused, 0 sliced, 2 factored, 0 fresh");  // mid.bias is reused
    check_same_outputs(parent, w, child, inh.weights);

    // A general kernel is approximated: the child's outputs move, yet nothing starts fresh.
    const lamda::Weights general = lamda::random_weights(parent, 4);
    const lamda::Inheritance approx = lamda::inherit_weights(parent, general, child, 9);
    CHECK(approx.factored == 2);
    CHECK(approx.fresh == 0);
}

TEST_CASE("inherit: batch norm put back for a full training computes the same, and folds back to the model") {
    // A model as lamda saves it (batch norm folded): biased convs, a separate relu, a residual add,
    // a squeeze-excitation's 1x1 convs on a 1x1 map, a conv with a fused activation.
    const lamda::Graph g = graph_of(R"(model folded
input: input shape=12x12x3
stem: conv2d out=8 kernel=3 stride=2
stem_act: relu
dw: dwconv kernel=3
se_pool: gap
se_fc: conv2d out=8 kernel=1 act=hardsigmoid
se: mul dw, se_fc
pw: conv2d out=8 kernel=1
sum: add stem_act, pw
last: conv2d out=6 kernel=1 act=relu
pool: gap
logits: fc out=5
)");
    const lamda::Weights w = lamda::random_weights(g, 5);
    const auto bn = lamda::with_identity_batchnorm(g, w);
    REQUIRE(bn);
    const lamda::Graph& gb = bn->first;
    CHECK(gb.layers.size() == g.layers.size() + 3);  // after stem, dw and pw; not se_fc (1x1) nor last (relu fused)
    for (const char* name : {"stem_bn", "dw_bn", "pw_bn"}) {
        const int at = gb.find(name);
        REQUIRE(at >= 0);
        CHECK(gb.layers[static_cast<std::size_t>(at)].op == lamda::OpKind::BatchNorm);
    }
    CHECK(gb.find("se_fc_bn") < 0);
    CHECK(gb.find("last_bn") < 0);
    // Valid DSL whose readers read the batch norms: the same shapes throughout.
    const lamda::Graph again = lamda::parse_dsl_or_throw(lamda::print_dsl(gb), "bn.lamda");
    CHECK(again.layers[static_cast<std::size_t>(again.find("se"))].inputs.front() == again.find("dw_bn"));
    CHECK(again.layers[static_cast<std::size_t>(again.find("sum"))].inputs.back() == again.find("pw_bn"));
    REQUIRE(lamda::validate_weights(again, bn->second).empty());
    check_same_outputs(g, w, again, bn->second);  // identity in inference, to eps
    // Folded again (as the trainer saves it), it is g's layers with tensors of g's shapes.
    const auto [folded, fw] = lamda::fold_batchnorm(again, bn->second);
    CHECK(folded.layers.size() == g.layers.size());
    CHECK(lamda::validate_weights(g, fw).empty());
    check_same_outputs(g, w, g, fw);

    // With training images: each batch norm's statistics are its convolution's on them, and
    // gamma, beta undo them, so that a training batch with those statistics passes unchanged.
    std::vector<lamda::Tensor> images;
    for (int k = 0; k < 4; ++k) {
        lamda::Tensor x(g.input().shape);
        for (std::size_t i = 0; i < x.data.size(); ++i) x.data[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(k));
        images.push_back(x);
    }
    const auto calibrated = lamda::with_identity_batchnorm(g, w, images);
    REQUIRE(calibrated);
    REQUIRE(lamda::validate_weights(again, calibrated->second).empty());
    check_same_outputs(g, w, again, calibrated->second);
    for (const char* conv : {"stem", "dw", "pw"}) {
        const std::string bn_name = std::string(conv) + "_bn";
        const lamda::Weights& cw = calibrated->second;
        const std::size_t at = static_cast<std::size_t>(g.find(conv));
        const std::size_t channels = static_cast<std::size_t>(g.layers[at].shape.c);
        std::vector<double> sum(channels, 0.0), squares(channels, 0.0);
        double n = 0;
        for (const lamda::Tensor& x : images) {
            const lamda::Tensor y = lamda::run_reference_all(g, w, x)[at];
            for (std::size_t i = 0; i < y.data.size(); ++i) {
                sum[i % channels] += y.data[i];
                squares[i % channels] += static_cast<double>(y.data[i]) * y.data[i];
            }
            n += static_cast<double>(y.data.size() / channels);
        }
        for (std::size_t c = 0; c < channels; ++c) {
            const double mean = sum[c] / n, var = squares[c] / n - mean * mean;
            CHECK(cw.at(bn_name + ".running_mean").data[c] == doctest::Approx(mean).epsilon(1e-4));
            CHECK(cw.at(bn_name + ".running_var").data[c] == doctest::Approx(var).epsilon(1e-4));
            CHECK(cw.at(bn_name + ".weight").data[c] == doctest::Approx(std::sqrt(var + 1e-5)).epsilon(1e-4));
            CHECK(cw.at(bn_name + ".bias").data[c] == doctest::Approx(mean).epsilon(1e-4));
        }
        CHECK(cw.at(bn_name + ".running_var").data[0] != 1.0f);
    }
    const auto [folded_calibrated, fcw] = lamda::fold_batchnorm(again, calibrated->second);
    CHECK(folded_calibrated.layers.size() == g.layers.size());
    check_same_outputs(g, w, g, fcw);

    // Nothing to put back: every conv already normalised or with its activation fused.
    CHECK_FALSE(lamda::with_identity_batchnorm(graph_of(parent_text), lamda::random_weights(graph_of(parent_text), 1)));
}
