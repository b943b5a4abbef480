// The example zoo (examples/models/*.lamda): every model parses, reproduces torchvision's
// published parameter and MAC counts exactly, and survives a print/parse round trip.
//
// Parameters and MACs are torchvision's own figures (num_params and the ops metadata of each
// model's weights). Peak activation bytes were cross-checked by an independent re-implementation
// of docs/dsl.md shape inference and core/analysis.hpp's buffer-liveness rule, and by hand: each peak
// is the largest pair (or residual triple) of float32 buffers alive at once, noted per model.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/core/ir.hpp>

namespace {

std::string zoo_path(const std::string& model) {
    return std::string(LAMDA_SOURCE_DIR) + "/examples/models/" + model + ".lamda";
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

lamda::Graph parse_zoo(const std::string& model) {
    const std::string path = zoo_path(model);
    lamda::ParseResult result = lamda::parse_dsl(read_text(path), path);
    for (const lamda::Diagnostic& d : result.diagnostics)
        MESSAGE(d.file << ":" << d.line << ":" << d.column << ": " << d.message);
    REQUIRE(result.ok());
    return std::move(result.graph);
}

struct ZooModel {
    const char* name;
    std::int64_t params;
    std::int64_t macs;
    std::int64_t peak_activation_bytes;
    lamda::Shape output;
    std::vector<const char*> layers;  // a few state_dict-derived names the importers rely on
};

// clang-format off
const std::vector<ZooModel>& zoo() {
    static const std::vector<ZooModel> models = {
        // peak: features_2_conv_0_1 -> _2, two 112x112x96 buffers.
        {"mobilenet_v2", 3504872, 300774272, 2 * 112 * 112 * 96 * 4, {1, 1, 1000},
         {"features_0_0", "features_1_conv_0_0", "features_1_conv_1", "features_2_conv_3",
          "features_3", "features_18_1", "classifier_1"}},
        // peak: features_2_block_0_1 -> _2, two 56x56x72 buffers.
        {"mobilenet_v3_small", 2542856, 56510400, 2 * 56 * 56 * 72 * 4, {1, 1, 1000},
         {"features_0_0", "features_1_block_1_fc1", "features_1_block_1_fc2",
          "features_4_block_2_fc2", "features_5", "features_12_0", "classifier_0", "classifier_3"}},
        // peak: conv1 -> bn1, two 112x112x64 buffers.
        {"resnet18", 11689512, 1814073344, 2 * 112 * 112 * 64 * 4, {1, 1, 1000},
         {"conv1", "bn1", "layer1_0_conv1", "layer1_0_bn2", "layer2_0_downsample_0",
          "layer2_0_downsample_1", "layer4_1", "fc"}},
        // peak: features_0 (111x111x64) -> features_2 maxpool (55x55x64).
        {"squeezenet1_1", 1235496, 349151936, (111 * 111 * 64 + 55 * 55 * 64) * 4, {1, 1, 1000},
         {"features_0", "features_3_squeeze", "features_3_expand1x1", "features_3_expand3x3",
          "features_12_expand3x3", "classifier_1"}},
        // peak: layers_8_0_layers_0 -> _1, two 112x112x24 buffers.
        {"mnasnet0_5", 2218512, 104455968, 2 * 112 * 112 * 24 * 4, {1, 1, 1000},
         {"layers_0", "layers_3", "layers_8_0_layers_0", "layers_8_0_layers_3",
          "layers_8_1", "layers_13_0_layers_7", "layers_14", "classifier_1"}},
        // The Fashion-MNIST starting points (28x28x1 in, 10 classes out).
        // peak: conv1 (28x28x6) -> pool1 (14x14x6).
        {"lenet5", 61706, 416520, (28 * 28 * 6 + 14 * 14 * 6) * 4, {1, 1, 10},
         {"conv1", "conv2", "fc1", "fc2", "fc3"}},
        // peak: blocks_1_expand_0 -> _1, two 14x14x64 buffers.
        {"tiny_mobilenet", 21882, 1143456, 2 * 14 * 14 * 64 * 4, {1, 1, 10},
         {"stem_0", "blocks_0_se", "blocks_0", "blocks_2", "classifier_1"}},
    };
    return models;
}
// clang-format on

}  // namespace

TEST_CASE("zoo models reproduce torchvision's parameter and MAC counts") {
    for (const ZooModel& m : zoo()) {
        CAPTURE(m.name);
        const lamda::Graph g = parse_zoo(m.name);
        CHECK(g.name == m.name);
        const lamda::ModelStats stats = lamda::analyze(g);
        CHECK(stats.params == m.params);
        CHECK(stats.macs == m.macs);
        CHECK(stats.weight_bytes == 4 * m.params);
        CHECK(stats.peak_activation_bytes == m.peak_activation_bytes);
        CHECK(stats.output_shape == m.output);
        CHECK(g.input().op == lamda::OpKind::Input);
        for (const char* layer : m.layers) {
            CAPTURE(layer);
            CHECK(g.find(layer) >= 0);
        }
    }
}

TEST_CASE("zoo models take 224x224x3 images, the small ones 28x28x1") {
    for (const ZooModel& m : zoo()) {
        CAPTURE(m.name);
        const lamda::Graph g = parse_zoo(m.name);
        const lamda::Shape expected =
            m.output.c == 10 ? lamda::Shape{28, 28, 1} : lamda::Shape{224, 224, 3};
        CHECK(g.input().input_shape == expected);
    }
}

TEST_CASE("zoo models keep conv -> batchnorm -> activation as separate layers") {
    // A conv that feeds a batchnorm has no bias and no fused activation (torchvision's
    // Conv2d(bias=False) + BatchNorm2d + activation), so the imported weights line up.
    for (const ZooModel& m : zoo()) {
        CAPTURE(m.name);
        const lamda::Graph g = parse_zoo(m.name);
        for (const lamda::Layer& layer : g.layers) {
            if (layer.op != lamda::OpKind::BatchNorm) continue;
            CAPTURE(layer.name);
            REQUIRE(layer.inputs.size() == 1);
            const lamda::Layer& conv = g.layers[static_cast<std::size_t>(layer.inputs[0])];
            CHECK((conv.op == lamda::OpKind::Conv2d || conv.op == lamda::OpKind::DepthwiseConv2d));
            CHECK_FALSE(conv.bias);
            CHECK(conv.act == lamda::Activation::None);
        }
    }
}

TEST_CASE("zoo models round-trip through print_dsl") {
    for (const ZooModel& m : zoo()) {
        CAPTURE(m.name);
        const lamda::Graph g = parse_zoo(m.name);
        const std::string printed = lamda::print_dsl(g);
        const lamda::ParseResult again = lamda::parse_dsl(printed, std::string(m.name) + ".printed");
        for (const lamda::Diagnostic& d : again.diagnostics)
            MESSAGE(d.file << ":" << d.line << ":" << d.column << ": " << d.message);
        REQUIRE(again.ok());
        CHECK(again.graph == g);
        // Printing is canonical: printing the reparsed graph gives the same text.
        CHECK(lamda::print_dsl(again.graph) == printed);
    }
}
