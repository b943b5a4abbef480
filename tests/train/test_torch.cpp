// The libtorch module (train/torch_module.hpp) against the reference executor, op by op and on the model zoo.
// Built only with LAMDA_WITH_TORCH; everything that includes libtorch lives in this one file
// (libtorch headers compile slowly).
//
// Tolerance: every layer output must match the reference within
//   max |torch - reference| <= 1e-4 * max(1, max |reference|)
// over that tensor (torch sums in float, in its own order; the reference sums in double).
#include <doctest/doctest.h>

#if defined(LAMDA_WITH_TORCH)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "lamda/dsl/parser.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/train/torch_module.hpp"
#include "lamda/core/validate.hpp"
#include "lamda/data/weights.hpp"

#include "../executor_test_support.hpp"

#ifndef LAMDA_SOURCE_DIR
#define LAMDA_SOURCE_DIR "."
#endif

using lamda::Graph;
using lamda::Shape;
using lamda::Tensor;
using lamda::TorchModel;

namespace {

using lamda_test::graph_of;
using lamda_test::max_error;
using lamda_test::random_input;
using lamda_test::tolerance;

// Runs `g` through the reference and through TorchModel (eval mode, random weights); checks every
// layer's output. Also checks that a batch of 3 gives, per sample, what batch-1 runs give.
void agree(const Graph& g, std::uint64_t seed = 1) {
    const lamda::Weights w = lamda::random_weights(g, seed);
    TorchModel model(g);
    model.load_weights(w);
    model.eval();
    torch::NoGradGuard no_grad;

    std::vector<Tensor> inputs;
    for (std::uint64_t k = 0; k < 3; ++k) inputs.push_back(random_input(g.input().shape, seed + 100 + k));

    const std::vector<torch::Tensor> all = model.forward_all(lamda::to_torch(inputs.front()));
    const std::vector<Tensor> ref = lamda::run_reference_all(g, w, inputs.front());
    REQUIRE(all.size() == g.layers.size());
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const Tensor got = lamda::from_torch(all[i]);
        double scale = 1.0;
        const double err = max_error(got.data, ref[i].data, scale);
        INFO("layer " << i << " '" << g.layers[i].name << "' (" << lamda::op_name(g.layers[i].op)
                      << ") " << lamda::to_string(ref[i].shape) << ": torch shape "
                      << lamda::to_string(got.shape) << ", max error " << err << ", scale " << scale);
        CHECK(got.shape == ref[i].shape);
        CHECK(err <= tolerance * scale);
    }

    // Batch of 3 against three batch-1 runs of the same module.
    const torch::Tensor batch = model.forward(lamda::to_torch(inputs));
    REQUIRE(batch.size(0) == 3);
    for (std::int64_t k = 0; k < 3; ++k) {
        const Tensor one = lamda::from_torch(model.forward(lamda::to_torch(inputs[static_cast<std::size_t>(k)])));
        const Tensor from_batch = lamda::from_torch(batch, k);
        double scale = 1.0;
        const double err = max_error(from_batch.data, one.data, scale);
        INFO("batch sample " << k << ": max error " << err);
        CHECK(err <= 1e-5 * scale);
    }
}

void agree(const std::string& text, std::uint64_t seed = 1) { agree(graph_of(text), seed); }

}  // namespace

TEST_CASE("torch: convolutions agree with the reference") {
    SUBCASE("conv2d same padding, stride 1, bias, fused relu") {
        agree("input: input shape=7x6x3\nc: conv2d out=5 kernel=3 act=relu\n");
    }
    SUBCASE("conv2d same padding, stride 2, asymmetric pads (even input)") {
        agree("input: input shape=8x10x3\nc: conv2d out=4 kernel=3 stride=2 act=relu6\n");
    }
    SUBCASE("conv2d same padding, kernel 1x4 (even kernel: asymmetric pads at stride 1)") {
        agree("input: input shape=6x6x2\nc: conv2d out=3 kernel=1x4 act=hardswish\n");
    }
    SUBCASE("conv2d valid, explicit symmetric and explicit asymmetric padding") {
        agree("input: input shape=9x9x2\n"
              "a: conv2d out=3 kernel=3 padding=valid\n"
              "b: conv2d out=3 kernel=3 padding=2x1 stride=2\n"
              "c: conv2d out=2 kernel=2 padding=0x1x2x0 act=sigmoid\n");
    }
    SUBCASE("conv2d groups, dilation, no bias") {
        agree("input: input shape=11x11x6\n"
              "g: conv2d out=9 kernel=3 groups=3 bias=false\n"
              "d: conv2d out=4 kernel=3 dilation=2 act=hardsigmoid\n"
              "s: conv2d out=4 kernel=3 dilation=2 stride=2 padding=valid\n");
    }
    SUBCASE("dwconv multiplier 1 and 2, stride 2 same padding, dilation") {
        agree("input: input shape=9x8x3\n"
              "d1: dwconv kernel=3 act=relu6\n"
              "d2: dwconv kernel=3 multiplier=2 stride=2\n"
              "d3: dwconv kernel=5 dilation=2 bias=false act=hardswish\n"
              "d4: dwconv kernel=3x1 multiplier=2 padding=valid\n");
    }
}

TEST_CASE("torch: pools agree with the reference") {
    SUBCASE("maxpool and avgpool, valid") {
        agree("input: input shape=8x8x3\nm: maxpool kernel=2\na: avgpool kernel=2x1 stride=1\n");
    }
    SUBCASE("same padding, stride 2 (asymmetric pads, padding excluded from averages)") {
        agree("input: input shape=8x7x3\nm: maxpool kernel=3 stride=2 padding=same\n"
              "x: avgpool kernel=3 stride=2 padding=same\n",
              3);
        agree("input: input shape=8x7x3\na: avgpool kernel=3 stride=2 padding=same\n", 4);
    }
    SUBCASE("ceil=true with and without padding") {
        agree("input: input shape=8x8x2\nm: maxpool kernel=3 stride=2 ceil=true\n");
        agree("input: input shape=8x8x2\na: avgpool kernel=3 stride=2 ceil=true\n");
        agree("input: input shape=9x10x2\nm: maxpool kernel=3 stride=2 padding=1 ceil=true\n");
        agree("input: input shape=9x10x2\na: avgpool kernel=3 stride=2 padding=1 ceil=true\n");
        agree("input: input shape=10x9x2\na: avgpool kernel=4x2 stride=3 padding=1x0x2x1 ceil=true\n");
    }
    SUBCASE("symmetric explicit padding (torch's own pool)") {
        agree("input: input shape=7x7x2\nm: maxpool kernel=3 stride=2 padding=1\n"
              "a: avgpool kernel=3 stride=1 padding=1\n");
    }
    SUBCASE("padding of half the kernel") {
        agree("input: input shape=5x5x2\na: avgpool kernel=2 stride=1 padding=1\n"
              "m: maxpool kernel=4 stride=3 padding=2\n");
    }
    SUBCASE("gap") { agree("input: input shape=5x4x6\ng: gap\n"); }
}

TEST_CASE("torch: elementwise, structural and activation ops agree with the reference") {
    SUBCASE("add with 3 inputs and fused act, concat, mul broadcast both ways") {
        agree("input: input shape=6x6x4\n"
              "a: conv2d out=4 kernel=1\n"
              "b: conv2d input out=4 kernel=3\n"
              "s: add input, a, b act=relu\n"
              "c: concat s, a, input\n"
              "p: gap\n"
              "f: conv2d out=12 kernel=1 act=hardsigmoid\n"
              "m1: mul c, f\n"
              "m2: mul f, m1\n");
    }
    SUBCASE("batchnorm, standalone activations, softmax") {
        agree("input: input shape=5x5x4\n"
              "bn: batchnorm eps=0.001\n"
              "r: relu\nr6: relu6\nhs: hardswish\nhsig: hardsigmoid\nsg: sigmoid\n"
              "sm: softmax\n");
        agree("input: input shape=3x3x5\nsm: softmax\n");
    }
    SUBCASE("flatten (H, W, C order) then fc, dropout") {
        agree("input: input shape=3x4x5\n"
              "c: conv2d out=3 kernel=3\n"
              "f: flatten\n"
              "d: dropout rate=0.3\n"
              "fc1: fc out=7 act=relu\n"
              "fc2: fc out=4 bias=false\n"
              "sm: softmax\n");
    }
}

TEST_CASE("torch: parameters are named after layers and weights round-trip") {
    const Graph g = graph_of("input: input shape=6x6x3\n"
                             "c: conv2d out=4 kernel=3 stride=2\n"
                             "d: dwconv kernel=3 multiplier=2 bias=false\n"
                             "bn: batchnorm\n"
                             "p: gap\nflat: flatten\n"
                             "fc: fc out=5\n");
    TorchModel model(g);
    std::vector<std::string> names;
    for (const auto& p : model.named_parameters()) names.push_back(p.key());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"bn.bias", "bn.weight", "c.bias", "c.weight", "d.weight",
                                            "fc.bias", "fc.weight"});
    CHECK(model.named_buffers().contains("bn.running_mean"));
    CHECK(model.named_buffers().contains("bn.running_var"));

    const lamda::Weights w = lamda::random_weights(g, 5);
    model.load_weights(w);
    const lamda::Weights back = model.export_weights();
    REQUIRE(back.size() == w.size());
    for (const auto& entry : w) {  // (no structured binding: clang's C++17 can't capture it in INFO)
        const std::string& name = entry.first;
        const lamda::WeightTensor& t = entry.second;
        INFO(name);
        REQUIRE(back.count(name) == 1);
        CHECK(back.at(name).shape == t.shape);
        CHECK(back.at(name).data == t.data);  // bit-exact
    }
    CHECK(lamda::validate_weights(g, back).empty());

    // Batch norm's running statistics, kept and put back around a recalibration's forward passes.
    {
        const std::vector<torch::Tensor> kept = model.batchnorm_statistics();
        REQUIRE(kept.size() == 3);  // mean, variance, batches counted
        torch::NoGradGuard no_grad;
        model.collect_batchnorm_statistics(true);
        model.forward(torch::rand({4, 3, 6, 6}));
        model.collect_batchnorm_statistics(false);
        CHECK(model.export_weights().at("bn.running_mean").data != w.at("bn.running_mean").data);
        model.restore_batchnorm_statistics(kept);
        const lamda::Weights restored = model.export_weights();
        CHECK(restored.at("bn.running_mean").data == w.at("bn.running_mean").data);
        CHECK(restored.at("bn.running_var").data == w.at("bn.running_var").data);
        CHECK_THROWS_AS(model.restore_batchnorm_statistics({}), std::invalid_argument);
    }

    // A wrong tensor is refused with the executors' message.
    lamda::Weights bad = w;
    bad.erase("bn.running_var");
    CHECK_THROWS_AS(model.load_weights(bad), lamda::ExecutorError);
    // A wrong input shape is refused.
    torch::NoGradGuard no_grad;
    CHECK_THROWS_AS(model.forward(torch::zeros({1, 6, 6, 3})), lamda::ExecutorError);
}

TEST_CASE("torch: channels-last memory changes neither outputs, gradients nor weights") {
    // A one-channel input and a 1x1 map read as either layout (the first convolution's weight
    // decides); a depthwise convolution, batch norm, pools, flatten and fc see channels-last tensors.
    const Graph g = graph_of("input: input shape=8x8x1\n"
                             "c: conv2d out=8 kernel=3 act=relu\n"
                             "d: dwconv kernel=3 multiplier=2\n"
                             "bn: batchnorm\n"
                             "r: relu6\n"
                             "p: maxpool kernel=2\n"
                             "pw: conv2d out=6 kernel=1\n"
                             "flat: flatten\n"
                             "fc: fc out=5\n");
    const lamda::Weights w = lamda::random_weights(g, 9);
    TorchModel nchw(g), last(g);
    nchw.load_weights(w);
    last.load_weights(w);
    last.use_channels_last(true);
    CHECK(last.channels_last());
    const auto export_same = [&] {
        const lamda::Weights a = nchw.export_weights(), b = last.export_weights();
        for (const auto& entry : a) {
            INFO(entry.first);
            CHECK(b.at(entry.first).data == entry.second.data);  // bit-exact
        }
    };
    export_same();
    torch::manual_seed(3);
    torch::Tensor x = torch::rand({4, 1, 8, 8});
    {  // really channels-last: c's output (8 channels from the one-channel image, laid out by its
       // weight) and d's (16 channels, 4x4) are NHWC; switched back, NCHW again
        torch::NoGradGuard no_grad;
        const std::vector<torch::Tensor> outs = last.forward_all(x), plain = nchw.forward_all(x);
        for (int k : {1, 2}) {
            INFO("layer " << k);
            CHECK(outs[static_cast<std::size_t>(k)].is_contiguous(torch::MemoryFormat::ChannelsLast));
            CHECK(!outs[static_cast<std::size_t>(k)].is_contiguous());
            CHECK(plain[static_cast<std::size_t>(k)].is_contiguous());
        }
        TorchModel back(g);
        back.load_weights(w);
        back.use_channels_last(true);
        back.use_channels_last(false);
        CHECK(back.forward_all(x)[1].is_contiguous());
        CHECK(!back.forward_all(x)[1].is_contiguous(torch::MemoryFormat::ChannelsLast));
    }
    // Another summation order: batch norm's batch statistics spread its rounding.
    const auto near = [](const torch::Tensor& u, const torch::Tensor& v, double of_largest) {
        return (u - v).abs().max().item<double>() <= of_largest * std::max(1.0, u.abs().max().item<double>());
    };
    for (int draw = 0; draw < 32; ++draw) {  // 16 inputs, each in eval and in train mode
        const bool training = draw % 2 == 1;
        x = torch::rand({4, 1, 8, 8});
        INFO("train mode: " << training << ", input draw " << draw);
        nchw.train(training);
        last.train(training);
        nchw.zero_grad();
        last.zero_grad();
        const torch::Tensor a = nchw.forward(x), b = last.forward(x);
        CHECK(near(a, b, 1e-4));
        a.square().sum().backward();
        b.square().sum().backward();
        const auto pa = nchw.named_parameters(), pb = last.named_parameters();
        double largest = 1;  // gradient, over all parameters
        for (const auto& p : pa) largest = std::max(largest, p.value().grad().abs().max().item<double>());
        for (const auto& p : pa) {
            // In train mode the bias before batch norm has a gradient of 0 and rounding only.
            if (training && p.key() == "d.bias") continue;
            INFO(p.key());
            CHECK((p.value().grad() - pb[p.key()].grad()).abs().max().item<double>() <= 1e-3 * largest);
        }
    }
    // Loading weights into a channels-last model keeps them (copy_ into its layout).
    const lamda::Weights w2 = lamda::random_weights(g, 10);
    nchw.load_weights(w2);
    last.load_weights(w2);
    export_same();
}

TEST_CASE("torch: train mode uses batch statistics, dropout, and gradients flow") {
    const Graph g = graph_of("input: input shape=4x4x2\n"
                             "c: conv2d out=3 kernel=3\n"
                             "bn: batchnorm\n"
                             "r: relu\n"
                             "p: gap\nf: flatten\n"
                             "d: dropout rate=0.5\n"
                             "fc: fc out=2\n");
    TorchModel model(g);
    model.load_weights(lamda::random_weights(g, 9));
    model.train();
    torch::manual_seed(0);
    const torch::Tensor x = torch::randn({4, 2, 4, 4});
    const torch::Tensor y = model.forward(x);
    CHECK(y.sizes().vec() == std::vector<std::int64_t>{4, 2, 1, 1});
    y.sum().backward();
    for (const auto& p : model.named_parameters()) {
        INFO(p.key());
        CHECK(p.value().grad().defined());
    }
    // One training-mode batch moved the running statistics (momentum 0.1) away from the loaded ones.
    const lamda::Weights after = model.export_weights();
    const lamda::Weights loaded = lamda::random_weights(g, 9);
    CHECK(after.at("bn.running_mean").data != loaded.at("bn.running_mean").data);
    CHECK(after.at("bn.weight").data == loaded.at("bn.weight").data);
    // Eval mode is deterministic.
    model.eval();
    torch::NoGradGuard no_grad;
    CHECK(torch::equal(model.forward(x), model.forward(x)));
}

TEST_CASE("torch: dropout zeroes about `rate` of the values in train mode and scales the rest") {
    TorchModel model(graph_of("input: input shape=20x20x10\nd: dropout rate=0.25\n"));
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::ones({2, 10, 20, 20});
    model.train();
    const torch::Tensor y = model.forward(x);
    const double zeros = (y == 0).sum().item<double>() / static_cast<double>(y.numel());
    CHECK(zeros > 0.2);
    CHECK(zeros < 0.3);
    CHECK(torch::allclose(y.masked_select(y != 0), torch::full({1}, 1.0 / 0.75)));
    model.eval();
    CHECK(torch::equal(model.forward(x), x));
}

TEST_CASE("torch: the model zoo at reduced input size agrees with the reference") {
    struct Model {
        const char* name;
        Shape input;  // {0,0,0}: keep the declared one
    };
    const Model models[] = {
        {"lenet5", {}},           {"tiny_mobilenet", {}},          {"mobilenet_v2", {32, 32, 3}},
        {"mobilenet_v3_small", {32, 32, 3}}, {"resnet18", {32, 32, 3}}, {"squeezenet1_1", {48, 48, 3}},
        {"mnasnet0_5", {32, 32, 3}},
    };
    for (const Model& m : models) {
        INFO(m.name);
        agree(lamda_test::zoo_model(LAMDA_SOURCE_DIR, m.name, m.input), 11);
    }
}

#endif  // defined(LAMDA_WITH_TORCH)
