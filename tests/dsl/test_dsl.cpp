// The DSL: parsing, canonical printing, round trips, diagnostics and limits.
#include <doctest/doctest.h>

#include <lamda/dsl/file.hpp>
#include <lamda/dsl/parser.hpp>

#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// All diagnostics joined, for CHECKs on their text.
std::string all_messages(const lamda::ParseResult& r) {
    return lamda::format_diagnostics(r.diagnostics);
}

bool has_diagnostic(const lamda::ParseResult& r, int line, int column, const std::string& text) {
    for (const auto& d : r.diagnostics)
        if (d.line == line && d.column == column &&
            (d.message.find(text) != std::string::npos || d.hint.find(text) != std::string::npos))
            return true;
    return false;
}

void check_round_trip(const lamda::Graph& g) {
    const std::string printed = lamda::print_dsl(g);
    const lamda::ParseResult again = lamda::parse_dsl(printed, "printed.lamda");
    INFO(printed);
    INFO(all_messages(again));
    REQUIRE(again.ok());
    CHECK(again.graph == g);
    CHECK(lamda::print_dsl(again.graph) == printed);  // canonical form is a fixed point
}

}  // namespace

TEST_CASE("the example in docs/dsl.md parses and round-trips") {
    const std::string doc = read_file(std::string(LAMDA_SOURCE_DIR) + "/docs/dsl.md");
    const auto section = doc.find("## Example");
    REQUIRE(section != std::string::npos);
    const auto open = doc.find("```\n", section);
    const auto close = doc.find("```", open + 4);
    REQUIRE(open != std::string::npos);
    REQUIRE(close != std::string::npos);
    const auto r = lamda::parse_dsl(doc.substr(open + 4, close - open - 4), "dsl.md");
    INFO(all_messages(r));
    REQUIRE(r.ok());
    CHECK(r.graph.name == "tiny_residual");
    CHECK(r.graph.output().shape == lamda::Shape{1, 1, 10});
    CHECK(r.graph.layers[r.graph.find("stem")].shape == lamda::Shape{14, 14, 16});
    CHECK(r.graph.layers[r.graph.find("se_pool")].shape == lamda::Shape{1, 1, 16});
    check_round_trip(r.graph);
}

TEST_CASE("a plain chain reads the line above, named inputs make branches") {
    const auto r = lamda::parse_dsl(
        "input: input shape=8x8x4\n"
        "a: conv2d out=4 kernel=3\n"
        "b: relu\n"
        "c: add a, b\n"
        "d: concat a, c, b\n");
    INFO(all_messages(r));
    REQUIRE(r.ok());
    const auto& g = r.graph;
    CHECK(g.layers[1].inputs == std::vector<int>{0});
    CHECK(g.layers[2].inputs == std::vector<int>{1});
    CHECK(g.layers[3].inputs == std::vector<int>{1, 2});
    CHECK(g.layers[4].inputs == std::vector<int>{1, 3, 2});
    CHECK(g.output().shape == lamda::Shape{8, 8, 12});
    check_round_trip(g);
}

TEST_CASE("unnamed layers get op_N names that the canonical form prints") {
    const auto r = lamda::parse_dsl("input shape=4x4x2\nconv2d out=3 kernel=1\nrelu\n");
    INFO(all_messages(r));
    REQUIRE(r.ok());
    CHECK(r.graph.layers[0].name == "input_0");
    CHECK(r.graph.layers[1].name == "conv2d_1");
    CHECK(r.graph.layers[2].name == "relu_2");
    CHECK(lamda::print_dsl(r.graph) ==
          "input_0: input shape=4x4x2\nconv2d_1: conv2d out=3 kernel=1\nrelu_2: relu\n");
    check_round_trip(r.graph);
}

TEST_CASE("every attribute form round-trips") {
    const auto r = lamda::parse_dsl(
        "model every_attribute   # a comment\n"
        "\n"
        "x: input shape=33x17x6\n"
        "c1: conv2d in=6 out=12 kernel=3x5 stride=2x1 padding=1x2 dilation=2 groups=3 bias=false act=relu6\n"
        "c2: conv2d out=12 kernel=3 padding=0x1x2x1 act=hardswish\n"
        "c3: conv2d out=12 kernel=1 padding=valid act=sigmoid\n"
        "d1: dwconv kernel=3 stride=2 multiplier=2 act=hardsigmoid\n"
        "d2: dwconv in=24 kernel=5 padding=2 bias=false\n"
        "bn: batchnorm eps=0.001\n"
        "p1: maxpool kernel=3 stride=2 padding=1 ceil=true\n"
        "p2: avgpool kernel=2 stride=1 padding=same\n"
        "s: sigmoid\n"
        "g: gap\n"
        "f: flatten\n"
        "dr: dropout rate=0.25\n"
        "fc1: fc in=24 out=7 bias=false act=relu\n"
        "sm: softmax\n");
    INFO(all_messages(r));
    REQUIRE(r.ok());
    const auto& g = r.graph;
    const auto& c1 = g.layers[1];
    CHECK(c1.kernel_h == 3);
    CHECK(c1.kernel_w == 5);
    CHECK(c1.stride_h == 2);
    CHECK(c1.stride_w == 1);
    CHECK(c1.padding.mode == lamda::PaddingMode::Explicit);
    CHECK(c1.padding.amounts == std::array<int, 4>{1, 2, 1, 2});
    CHECK(c1.dilation_h == 2);
    CHECK(c1.groups == 3);
    CHECK_FALSE(c1.bias);
    CHECK(c1.act == lamda::Activation::Relu6);
    // (33 + 2 - 2*2 - 1) / 2 + 1 = 16 rows; (17 + 4 - 2*4 - 1) / 1 + 1 = 13 columns.
    CHECK(c1.shape == lamda::Shape{16, 13, 12});
    CHECK(g.layers[2].padding.amounts == std::array<int, 4>{0, 1, 2, 1});
    CHECK(g.layers[4].shape.c == 24);
    CHECK(g.layers[6].eps == doctest::Approx(0.001));
    CHECK(g.layers[7].ceil_mode);
    CHECK(g.layers[12].rate == doctest::Approx(0.25));
    CHECK(g.output().shape == lamda::Shape{1, 1, 7});
    check_round_trip(g);
}

TEST_CASE("pools step by their window unless a stride is given") {
    const auto r = lamda::parse_dsl("i: input shape=9x9x1\np: maxpool kernel=3\nq: avgpool kernel=2 stride=1\n");
    REQUIRE(r.ok());
    CHECK(r.graph.layers[1].stride_h == 3);
    CHECK(r.graph.layers[1].shape == lamda::Shape{3, 3, 1});
    CHECK(r.graph.layers[2].shape == lamda::Shape{2, 2, 1});
    CHECK(lamda::print_dsl(r.graph).find("p: maxpool kernel=3\n") != std::string::npos);
    check_round_trip(r.graph);
}

TEST_CASE("every example model round-trips through the canonical form") {
    for (const char* name : {"mobilenet_v2", "mobilenet_v3_small", "resnet18", "squeezenet1_1",
                             "mnasnet0_5", "lenet5", "tiny_mobilenet"}) {
        INFO(name);
        const auto r = lamda::parse_dsl_file(std::string(LAMDA_SOURCE_DIR) + "/examples/models/" +
                                             name + ".lamda");
        INFO(all_messages(r));
        REQUIRE(r.ok());
        check_round_trip(r.graph);
    }
}

namespace {

// A random model over the whole op catalog, written the way a generator might write it; not all
// of them are valid, which is the point: valid ones must round-trip, invalid ones must be reported.
std::string random_model(std::mt19937& rng) {
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::ostringstream text;
    std::vector<std::string> names{"in"};
    text << "model random_" << pick(0, 999) << "\n";
    text << "in: input shape=" << pick(4, 24) << "x" << pick(4, 24) << "x" << pick(1, 8) << "\n";
    const char* acts[] = {"none", "relu", "relu6", "hardswish", "hardsigmoid", "sigmoid"};
    const int layers = pick(1, 25);
    for (int i = 0; i < layers; ++i) {
        const std::string name = "l" + std::to_string(i);
        text << name << ": ";
        switch (pick(0, 13)) {
        case 0:
            text << "conv2d out=" << pick(1, 16) << " kernel=" << pick(1, 3) << "x" << pick(1, 3)
                 << " stride=" << pick(1, 2) << " act=" << acts[pick(0, 5)];
            if (pick(0, 1)) text << " padding=" << (pick(0, 1) ? "valid" : "1x0");
            if (pick(0, 2) == 0) text << " bias=false dilation=" << pick(1, 2);
            break;
        case 1: text << "dwconv kernel=3 multiplier=" << pick(1, 2) << " stride=" << pick(1, 2); break;
        case 2: text << "batchnorm eps=" << (pick(0, 1) ? "0.001" : "1e-05"); break;
        case 3: text << (pick(0, 1) ? "maxpool" : "avgpool") << " kernel=" << pick(2, 3)
                     << " stride=" << pick(1, 2) << (pick(0, 1) ? " ceil=true" : ""); break;
        case 4: text << "add " << names[static_cast<std::size_t>(pick(0, static_cast<int>(names.size()) - 1))]
                     << ", " << names.back(); break;
        case 5: text << "concat " << names[static_cast<std::size_t>(pick(0, static_cast<int>(names.size()) - 1))]
                     << ", " << names.back(); break;
        case 6: text << "mul " << names.back() << ", " << names[static_cast<std::size_t>(pick(0, static_cast<int>(names.size()) - 1))]; break;
        case 7: text << "gap"; break;
        case 8: text << "flatten"; break;
        case 9: text << "fc out=" << pick(1, 12); break;
        case 10: text << "dropout rate=0.125"; break;
        case 11: text << acts[pick(1, 5)]; break;
        case 12: text << "softmax"; break;
        default: text << "conv2d out=" << 2 * pick(1, 4) << " kernel=1 groups=2"; break;
        }
        text << "\n";
        names.push_back(name);
    }
    return text.str();
}

}  // namespace

TEST_CASE("generated models: valid ones round-trip, invalid ones are reported, nothing crashes") {
    std::mt19937 rng(20261125);
    int valid = 0, invalid = 0;
    for (int i = 0; i < 2000; ++i) {
        const std::string text = random_model(rng);
        const auto r = lamda::parse_dsl(text, "generated.lamda");
        if (r.ok()) {
            ++valid;
            INFO(text);
            check_round_trip(r.graph);
        } else {
            ++invalid;
            for (const auto& d : r.diagnostics) {
                CHECK(d.file == "generated.lamda");
                CHECK(!d.message.empty());
            }
        }
    }
    // Both kinds must really occur, or this test checks less than it claims.
    CHECK(valid > 100);
    CHECK(invalid > 100);
}

TEST_CASE("diagnostics name the place, what is wrong and a fix") {
    SUBCASE("unknown op, with a suggestion") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\nc: conv3d out=4 kernel=3\n", "m.lamda");
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(lamda::format_diagnostic(r.diagnostics[0]) ==
              "m.lamda:2:4: error: unknown op 'conv3d'\n  hint: did you mean 'conv2d'?");
    }
    SUBCASE("names other frameworks use") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\nf: flatten\nd: linear out=4\n");
        CHECK(has_diagnostic(r, 3, 4, "did you mean 'fc'?"));
    }
    SUBCASE("channel count that disagrees with its input") {
        const auto r = lamda::parse_dsl(
            "i: input shape=8x8x3\nb3: conv2d out=16 kernel=3\nc: conv2d in=32 out=8 kernel=1\n", "m.lamda");
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(r.diagnostics[0].line == 3);
        CHECK(r.diagnostics[0].column == 1);
        CHECK(r.diagnostics[0].message == "expected 32 input channels from 'b3', got 16");
        CHECK(r.diagnostics[0].hint.find("in=16") != std::string::npos);
    }
    SUBCASE("unknown attribute, bad values, missing required attributes") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\n"
                                        "a: conv2d out=4 kernl=3\n"
                                        "b: conv2d out=four kernel=3\n"
                                        "c: conv2d out=4 kernel=3 act=relux\n"
                                        "d: conv2d out=4 kernel=3 padding=1x2x3\n"
                                        "e: batchnorm bias=false\n"
                                        "f: conv2d out=4 kernel=3 bias=yes\n");
        CHECK(has_diagnostic(r, 2, 17, "did you mean 'kernel'?"));
        CHECK(has_diagnostic(r, 2, 4, "needs 'kernel'"));
        CHECK(has_diagnostic(r, 3, 15, "invalid value 'four' for 'out'"));
        CHECK(has_diagnostic(r, 4, 30, "did you mean 'relu'?"));
        CHECK(has_diagnostic(r, 5, 34, "same, valid, N, HxW or TxLxBxR"));
        CHECK(has_diagnostic(r, 6, 14, "batchnorm takes: eps"));
        CHECK(has_diagnostic(r, 7, 31, "true or false"));
        CHECK(r.diagnostics.size() == 7);
    }
    SUBCASE("references to values that do not exist or come later") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\n"
                                        "a: conv2d out=4 kernel=3\n"
                                        "b: add a, bb\n"
                                        "c: add a, d\n"
                                        "d: relu a\n");
        CHECK(has_diagnostic(r, 3, 11, "unknown value 'bb'"));
        CHECK(has_diagnostic(r, 4, 11, "defined later, on line 5"));
    }
    SUBCASE("shape errors say which input and how big") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x3\n"
                                        "a: conv2d out=4 kernel=3\n"
                                        "b: conv2d out=8 kernel=3\n"
                                        "s: add a, b\n",
                                        "m.lamda");
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(r.diagnostics[0].message == "add 's': input 'b' is 8x8x8 but 'a' is 8x8x4");
    }
    SUBCASE("several independent errors are all reported, without cascades") {
        const auto r = lamda::parse_dsl("i: input shape=28x28x1\n"
                                        "a: conv2d out=16 kernel=3\n"
                                        "b: conv3d out=8 kernel=3\n"        // 1: unknown op
                                        "c: fc out=10\n"                    // 2: needs 1x1xC
                                        "d: maxpool a kernel=40\n"          // 3: window too big
                                        "e: dwconv a kernel=3 stride=0\n"   // 4: stride range
                                        "f: concat d, e\n");                // skipped: inputs broken
        INFO(all_messages(r));
        CHECK(r.diagnostics.size() == 4);
        CHECK(has_diagnostic(r, 3, 4, "unknown op 'conv3d'"));
        CHECK(has_diagnostic(r, 4, 1, "needs a 1x1xC input, got 28x28x16"));
        CHECK(has_diagnostic(r, 5, 1,
                             "kernel 40 does not fit its 28x28x16 input from 'a': the window "
                             "(40 wide) is larger than the padded input (28)"));
        CHECK(has_diagnostic(r, 6, 1, "dwconv 'e': stride is 0, must be in [1, 64]"));
    }
    SUBCASE("structure: the input, duplicates, unused values, inputs counts") {
        CHECK(has_diagnostic(lamda::parse_dsl("a: conv2d out=4 kernel=3\n"), 1, 1,
                             "the first layer must be an input"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\nj: input shape=4x4x1\n"), 2, 1,
                             "only the first layer may be an input"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\ni: relu\n"), 2, 1,
                             "already used on line 1"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\na: relu\nb: sigmoid i\n"), 2, 1,
                             "the value of 'a' is never used"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\na: add i\n"), 2, 1,
                             "takes 2 to 64 inputs, got 1"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\na: relu\nm: mul a, i, a\n"), 3, 1,
                             "takes 2 inputs, got 3"));
        CHECK(has_diagnostic(lamda::parse_dsl("model a\nmodel b\ni: input shape=4x4x1\n"), 2, 1,
                             "named twice"));
        CHECK(lamda::parse_dsl("").diagnostics.at(0).message == "the model has no layers");
        CHECK(lamda::parse_dsl("# only a comment\n").diagnostics.at(0).message ==
              "the model has no layers");
    }
    SUBCASE("mul broadcasts only a 1x1xC value with the same C") {
        const auto ok = lamda::parse_dsl("i: input shape=4x4x8\ng: gap\nm: mul i, g\n");
        CHECK(ok.ok());
        const auto swapped = lamda::parse_dsl("i: input shape=4x4x8\ng: gap\nm: mul g, i\n");
        REQUIRE(swapped.ok());
        CHECK(swapped.graph.output().shape == lamda::Shape{4, 4, 8});
        const auto bad = lamda::parse_dsl(
            "i: input shape=4x4x8\ng: gap\nc: conv2d out=4 kernel=1\nm: mul i, c\n");
        CHECK(has_diagnostic(bad, 4, 1, "cannot multiply 'i' (4x4x8) by 'c' (1x1x4)"));
    }
    SUBCASE("pool padding is at most half the kernel") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\np: maxpool kernel=2 padding=2\n");
        CHECK(has_diagnostic(r, 2, 1, "maxpool 'p': padding 2 is more than half the kernel 2"));
        CHECK(lamda::parse_dsl("i: input shape=8x8x1\np: maxpool kernel=3 padding=1\n").ok());
    }
    SUBCASE("groups must divide both channel counts") {
        const auto r = lamda::parse_dsl("i: input shape=4x4x6\nc: conv2d out=8 kernel=1 groups=4\n");
        CHECK(has_diagnostic(r, 2, 1, "groups=4 must divide both the input channels (6"));
    }
}

TEST_CASE("limits: every size a file can name is bounded") {
    SUBCASE("sizes beyond the limits are errors, not allocations") {
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=100000x4x1\n"), 1, 1,
                             "height is 100000, must be in [1, 16384]"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\nc: conv2d out=70000 kernel=1\n"),
                             2, 1, "out is 70000"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\nc: conv2d out=8 kernel=65\n"),
                             2, 1, "kernel is 65"));
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\nc: conv2d out=99999999999 kernel=1\n"),
                             2, 15, "invalid value"));
        // 16384 x 16384 x 16 floats is 2^32 elements in one value.
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=16384x16384x16\n"), 1, 1,
                             "more than 2147483648 elements"));
        // A fully connected layer over a large flattened value: too many parameters.
        const auto params = lamda::parse_dsl(
            "i: input shape=1024x1024x4\nf: flatten\nd: fc out=1024\n");
        INFO(all_messages(params));
        REQUIRE(params.diagnostics.size() == 1);
        CHECK(params.diagnostics[0].message.find("parameters, more than the limit") != std::string::npos);
        // Peak activation memory.
        lamda::Limits small;
        small.max_activation_bytes = 1000;
        const auto memory = lamda::parse_dsl("i: input shape=16x16x1\nr: relu\n", "m", small);
        CHECK(memory.diagnostics.at(0).message.find("bytes of activations at its peak") != std::string::npos);
    }
    SUBCASE("too many layers stops early") {
        std::string text = "i: input shape=4x4x1\n";
        for (int k = 0; k < 10050; ++k) text += "relu\n";
        const auto r = lamda::parse_dsl(text);
        REQUIRE(!r.ok());
        CHECK(r.diagnostics.back().message == "more than 10000 layers");
        CHECK(r.diagnostics.back().line == 10001);
    }
    SUBCASE("a model at the layer limit still parses") {
        std::string text = "i: input shape=4x4x1\n";
        for (int k = 1; k < 10000; ++k) text += "relu\n";
        const auto r = lamda::parse_dsl(text);
        INFO(all_messages(r));
        CHECK(r.ok());
        CHECK(r.graph.layers.size() == 10000);
    }
    SUBCASE("long lines and large files") {
        const std::string line(5000, 'a');
        CHECK(has_diagnostic(lamda::parse_dsl("i: input shape=4x4x1\n" + line + "\n"), 2, 1,
                             "more than the limit of 4096"));
        const std::string big((std::size_t{4} << 20) + 1, '#');
        CHECK(lamda::parse_dsl(big).diagnostics.at(0).message.find("more than the limit") !=
              std::string::npos);
    }
    SUBCASE("the number of diagnostics is bounded") {
        std::string text = "i: input shape=4x4x1\n";
        for (int k = 0; k < 500; ++k) text += "conv3d\n";
        const auto r = lamda::parse_dsl(text);
        CHECK(r.diagnostics.size() <= 100);
        CHECK(r.diagnostics.back().message.find("too many errors") != std::string::npos);
    }
}

TEST_CASE("random bytes and truncated files give errors, never crashes") {
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
        std::string bytes(static_cast<std::size_t>(rng() % 400), '\0');
        for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
        const auto r = lamda::parse_dsl(bytes);
        CHECK(!r.ok());
    }
    const std::string text =
        read_file(std::string(LAMDA_SOURCE_DIR) + "/examples/models/tiny_mobilenet.lamda");
    REQUIRE(text.size() > 100);
    for (std::size_t cut = 0; cut < text.size(); cut += 7) {
        const auto r = lamda::parse_dsl(text.substr(0, cut));
        if (r.ok()) check_round_trip(r.graph);
        else CHECK(!r.diagnostics.empty());
    }
}

TEST_CASE("parse_dsl_file reports unreadable files as diagnostics") {
    const auto r = lamda::parse_dsl_file("/nonexistent/model.lamda");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].file == "/nonexistent/model.lamda");
    CHECK(r.diagnostics[0].message == "cannot open the file");
    CHECK_THROWS_AS(lamda::parse_dsl_or_throw("nonsense"), lamda::ModelError);
}

TEST_CASE("every error on a line is reported, in column order, without cascades") {
    SUBCASE("stray characters, an op in other letter case and a bad value on one line") {
        const auto r = lamda::parse_dsl("i: input shape=28x28x1\n"
                                        "c1: Conv2d out=16 kernel=(3,3) act=ReLU\n");
        INFO(all_messages(r));
        REQUIRE(r.diagnostics.size() == 4);
        CHECK(has_diagnostic(r, 2, 5, "unknown op 'Conv2d'"));
        CHECK(has_diagnostic(r, 2, 26, "unexpected character '('"));
        CHECK(has_diagnostic(r, 2, 30, "unexpected character ')'"));
        CHECK(has_diagnostic(r, 2, 36, "did you mean 'relu'?"));
        for (std::size_t k = 1; k < r.diagnostics.size(); ++k)
            CHECK(r.diagnostics[k - 1].column < r.diagnostics[k].column);
        // kernel=(3,3) hides the kernel: no "needs 'kernel'", no "'3' is not a layer name"
        CHECK(all_messages(r).find("needs") == std::string::npos);
        CHECK(all_messages(r).find("is not a layer name") == std::string::npos);
    }
    SUBCASE("non-ASCII characters are named once each, by code point") {
        const auto r = lamda::parse_dsl("i: input shape=28x28x1\n"
                                        "c: conv2d out=8 kernel=3\xc3\x97" "3 act=\xe2\x80\x98relu\xe2\x80\x99 padding=sam\n");
        INFO(all_messages(r));
        REQUIRE(r.diagnostics.size() == 4);
        CHECK(has_diagnostic(r, 2, 25, "unexpected character U+00D7 '\xc3\x97'"));
        CHECK(has_diagnostic(r, 2, 33, "unexpected character U+2018"));
        CHECK(has_diagnostic(r, 2, 40, "unexpected character U+2019"));
        CHECK(has_diagnostic(r, 2, 52, "invalid value 'sam' for 'padding'"));
    }
    SUBCASE("a bullet before the name, a stray ':' and a key without value") {
        const auto r = lamda::parse_dsl("i: input shape=28x28x1\n"
                                        "\xe2\x80\xa2 c: conv2d out=8 kernel=3 : stride=0x bias=\n");
        INFO(all_messages(r));
        REQUIRE(r.diagnostics.size() == 4);
        CHECK(has_diagnostic(r, 2, 1, "U+2022"));
        CHECK(has_diagnostic(r, 2, 30, "unexpected ':'"));
        CHECK(has_diagnostic(r, 2, 39, "invalid value '0x' for 'stride'"));
        CHECK(has_diagnostic(r, 2, 46, "attribute 'bias' has no value"));
    }
    SUBCASE("a stray byte that is not UTF-8, and a line that is only stray characters") {
        const auto r = lamda::parse_dsl("i: input shape=28x28x1\n\xff\xfe\nc: conv2d out=8 kernel=3 \x01\n");
        INFO(all_messages(r));
        REQUIRE(r.diagnostics.size() == 3);
        CHECK(has_diagnostic(r, 2, 1, "byte 0xff"));
        CHECK(has_diagnostic(r, 2, 2, "byte 0xfe"));
        CHECK(has_diagnostic(r, 3, 26, "byte 0x01"));
    }
    SUBCASE("a layer with a guessed op still defines its name: no cascade below it") {
        const auto r = lamda::parse_dsl("i: input shape=8x8x1\n"
                                        "d: Linear out=4\n"
                                        "e: relu d\n");
        INFO(all_messages(r));
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(has_diagnostic(r, 2, 4, "did you mean 'fc'?"));
    }
}
