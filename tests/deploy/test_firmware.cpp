// deploy/firmware.hpp: the generated C99 model compiles with the host's C compiler (warnings are
// errors) and its outputs equal the reference executor's within 1e-5 (relative, or absolute below 1),
// for the small zoo models, a model with every op of the catalog and sampled models; the arena
// plan never exceeds TFLite Micro's greedy plan of the same network.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <lamda/deploy/firmware.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/exec/reference.hpp>
#include <lamda/exec/reference_int8.hpp>
#include <lamda/search/sampler.hpp>

#if defined(_WIN32)
#include <process.h>
#define LAMDA_GETPID _getpid
#else
#include <unistd.h>
#define LAMDA_GETPID getpid
#endif

namespace {

namespace fs = std::filesystem;

lamda::Graph parse(const std::string& text) {
    lamda::ParseResult r = lamda::parse_dsl(text, "t.lamda");
    REQUIRE_MESSAGE(r.ok(), lamda::format_diagnostics(r.diagnostics));
    return r.graph;
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream f(p, std::ios::binary);
    f << text;
    REQUIRE(f.good());
}

// Feeds inputs (raw float32) on stdin, writes outputs on stdout; the arena is filled with NaN
// bytes before every run so that reading a value before it is written shows. Even runs pass a
// buffer of their own (model_run copies it into the arena), odd runs write the input where it lives
// in the arena, MODEL_INPUT(arena), and pass that (no copy).
const char* driver_c = R"C(#include <stdio.h>
#include <string.h>
#include "model.h"
static float arena_buf[(MODEL_ARENA_BYTES + 3) / 4];
static float in[MODEL_INPUT_SIZE];
static float out[MODEL_OUTPUT_SIZE];
int main(void) {
    long k = 0;
    while (fread(in, sizeof(float), MODEL_INPUT_SIZE, stdin) == MODEL_INPUT_SIZE) {
        const float* x = in;
        memset(arena_buf, 0xff, sizeof arena_buf);
        if (k++ % 2) {
#ifdef MODEL_INT8
            int i;
            for (i = 0; i < MODEL_INPUT_SIZE; ++i) MODEL_INPUT(arena_buf)[i] = model_quantize_input(in[i]);
            x = 0;
#else
            memcpy(MODEL_INPUT(arena_buf), in, sizeof in);
            x = MODEL_INPUT(arena_buf);
#endif
        }
        if (model_run(x, out, arena_buf) != 0) return 2;
        if (fwrite(out, sizeof(float), MODEL_OUTPUT_SIZE, stdout) != MODEL_OUTPUT_SIZE) return 3;
    }
    return 0;
}
)C";

struct Built {
    fs::path dir;
    bool ok = false;
};

fs::path temp_dir(const std::string& tag) {
    static int counter = 0;
    fs::path d = fs::temp_directory_path() /
                 ("lamda_fw_" + std::to_string(LAMDA_GETPID()) + "_" + std::to_string(counter++) + "_" + tag);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// Writes the model and the driver, compiles them; `flags` are added to the C compiler's.
Built build(const lamda::FirmwareSource& src, const std::string& tag, const std::string& flags = "",
            const std::string& compiler = "cc -std=c99") {
    Built b;
    b.dir = temp_dir(tag);
    write_file(b.dir / "model.h", src.header);
    write_file(b.dir / "model.c", src.source);
    write_file(b.dir / "main.c", driver_c);
    const std::string cmd = compiler + " -O2 -Wall -Wextra -Werror " + flags + " -I'" +
                            b.dir.string() + "' -o '" + (b.dir / "prog").string() + "' '" +
                            (b.dir / "model.c").string() + "' '" + (b.dir / "main.c").string() +
                            "' -lm 2> '" + (b.dir / "cc.log").string() + "'";
    b.ok = std::system(cmd.c_str()) == 0;
    if (!b.ok) {
        std::ifstream log(b.dir / "cc.log");
        std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
        MESSAGE("compiler failed: " << cmd << "\n" << text.substr(0, 4000));
    }
    return b;
}

std::vector<float> run_program(const Built& b, const std::vector<float>& inputs, std::size_t out_values) {
    {
        std::ofstream f(b.dir / "in.bin", std::ios::binary);
        f.write(reinterpret_cast<const char*>(inputs.data()),
                static_cast<std::streamsize>(inputs.size() * sizeof(float)));
    }
    const std::string cmd = "'" + (b.dir / "prog").string() + "' < '" + (b.dir / "in.bin").string() +
                            "' > '" + (b.dir / "out.bin").string() + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream f(b.dir / "out.bin", std::ios::binary);
    std::vector<float> out(out_values);
    f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
    REQUIRE(static_cast<std::size_t>(f.gcount()) == out_values * sizeof(float));
    return out;
}

bool close(float got, float want, double tol) {
    return std::fabs(static_cast<double>(got) - want) <= tol * std::max(1.0, std::fabs(static_cast<double>(want)));
}

// Exports with random weights, compiles, runs `inputs_n` random inputs, compares with the reference.
void check_model(const lamda::Graph& graph, const std::string& tag, std::uint64_t seed = 7,
                 int inputs_n = 3) {
    CAPTURE(tag);
    const lamda::Weights w = lamda::random_weights(graph, seed);
    const lamda::FirmwareSource src = lamda::firmware_source(graph, w);
    CHECK(src.arena_bytes <= src.tflm_arena_bytes);
    // The search plans the unfolded graph (core/arena_plan.hpp): never less than the export allocates.
    CHECK(lamda::arena_bytes(graph) >= src.arena_bytes);
    CHECK(src.input_offset + src.input_bytes <= src.arena_bytes);
    CHECK(src.source.find("malloc") == std::string::npos);
    // no mutable statics: every static object is const
    CHECK(!std::regex_search(src.source, std::regex(R"(static\s+(float|double|int|char|unsigned)\s+\w+\s*(\[|=|;))")));
    const Built b = build(src, tag);
    REQUIRE(b.ok);
    const lamda::Shape in_s = graph.input().shape;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> inputs;
    std::vector<lamda::Tensor> want;
    for (int k = 0; k < inputs_n; ++k) {
        lamda::Tensor x(in_s);
        for (float& v : x.data) v = u(rng);
        inputs.insert(inputs.end(), x.data.begin(), x.data.end());
        want.push_back(lamda::run_reference(graph, w, x));
    }
    const std::size_t out_n = static_cast<std::size_t>(graph.output().shape.elements());
    const std::vector<float> got = run_program(b, inputs, out_n * static_cast<std::size_t>(inputs_n));
    int bad = 0;
    for (int k = 0; k < inputs_n; ++k)
        for (std::size_t j = 0; j < out_n; ++j) {
            const float g = got[static_cast<std::size_t>(k) * out_n + j];
            const float r = want[static_cast<std::size_t>(k)].data[j];
            if (!close(g, r, 1e-5) && bad++ < 5)
                MESSAGE("input " << k << " output " << j << ": generated " << g << ", reference " << r);
        }
    CHECK(bad == 0);
    fs::remove_all(b.dir);
}

const char* every_op_model = R"(model every_op
input: input shape=11x11x4
c1: conv2d out=8 kernel=3 stride=2 act=hardswish
bn1: batchnorm
c2: conv2d out=8 kernel=3 dilation=2 groups=2 padding=2 act=relu6
dw: dwconv kernel=3 multiplier=2 padding=1x0 act=sigmoid
c3: conv2d out=16 kernel=2 padding=1x0x0x1 bias=false
bn3: batchnorm
r: relu
r6: relu6
hs: hardswish
hsig: hardsigmoid
sg: sigmoid
mp: maxpool kernel=3 stride=2 ceil=true
ap: avgpool kernel=2 stride=1 padding=1 ceil=true
g: gap
m: mul ap, g
a: add m, ap act=hardswish
cat: concat a, m, ap
sm: softmax
dr: dropout rate=0.2
fl: flatten
fc: fc out=10 act=relu
fc2: fc out=7 bias=false
out: dropout
)";

}  // namespace

TEST_CASE("firmware: a model with every op of the catalog equals the reference executor") {
    const lamda::Graph g = parse(every_op_model);
    check_model(g, "every_op");
    // The plan: in-place activations, and the unfolded batch norm is kept while bn3 folds into c3.
    const lamda::FirmwareSource src = lamda::firmware_source(g, lamda::random_weights(g, 3));
    CHECK(src.source.find("lm_f32_batchnorm(") != std::string::npos);
    CHECK(src.source.find("L5_mean") == std::string::npos);  // bn3 (index 6) folded
    CHECK(src.in_place >= 5);
    CHECK(src.arena_bytes <= src.tflm_arena_bytes);
}

TEST_CASE("firmware: the generated code also compiles as C++17 without exceptions or RTTI, and fast") {
    const lamda::Graph g = parse(every_op_model);
    const lamda::FirmwareSource src = lamda::firmware_source(g, lamda::random_weights(g, 5));
    const Built cxx = build(src, "cxx", "-fno-exceptions -fno-rtti -x c++", "c++ -std=c++17");
    CHECK(cxx.ok);
    fs::remove_all(cxx.dir);
    const Built fast = build(src, "fast", "-DMODEL_FAST_FLOAT");
    REQUIRE(fast.ok);
    lamda::Tensor x(g.input().shape);
    for (std::size_t i = 0; i < x.data.size(); ++i) x.data[i] = std::sin(static_cast<float>(i));
    const lamda::Tensor want = lamda::run_reference(g, lamda::random_weights(g, 5), x);
    const std::vector<float> got = run_program(fast, x.data, want.data.size());
    for (std::size_t j = 0; j < got.size(); ++j) CHECK(close(got[j], want.data[j], 1e-3));
    fs::remove_all(fast.dir);
}

TEST_CASE("firmware: aliases at the output, and a model that is only its input") {
    check_model(parse("model a\ninput: input shape=4x4x2\nfl: flatten\n"), "flatten_only");
    check_model(parse("model b\ninput: input shape=4x4x2\nr: relu\nfl: flatten\n"), "relu_flatten");
    check_model(parse("model c\ninput: input shape=3x3x2\nr: relu\nd: dropout\nadd1: add r, d\n"), "dup");
}

TEST_CASE("firmware: the zoo's small models equal the reference executor") {
    for (const char* name : {"lenet5", "tiny_mobilenet"}) {
        const lamda::ParseResult r = lamda::parse_dsl_file(std::string(LAMDA_SOURCE_DIR) +
                                                           "/examples/models/" + name + ".lamda");
        REQUIRE(r.ok());
        check_model(r.graph, name, 11, 2);
    }
}

TEST_CASE("firmware: sampled models of every family equal the reference executor") {
    lamda::SampleSpace space;
    space.input_shapes = {{28, 28, 1}, {32, 32, 3}};
    space.min_stages = 2;
    space.max_stages = 3;
    space.max_blocks = 2;
    space.max_width = 32;
    space.max_wide_width = 64;
    space.classes = {10};
    space.min_macs = 10'000;
    space.max_macs = 4'000'000;
    space.silu_percent = 50;
    space.activations = {lamda::Activation::Relu, lamda::Activation::Relu6,
                         lamda::Activation::HardSwish};
    std::mt19937_64 rng(2026);
    for (lamda::ModelFamily f : lamda::all_model_families) {
        const lamda::Graph g = lamda::sample_model(rng, space, f);
        check_model(g, std::string(lamda::family_name(f)), 13, 2);
    }
}

TEST_CASE("firmware: the arena plan") {
    // A chain: two buffers ping-pong; in-place activations add nothing.
    const lamda::Graph g = parse(R"(model chain
input: input shape=8x8x4
c1: conv2d out=8 kernel=3
r1: relu
c2: conv2d out=8 kernel=3
r2: relu
c3: conv2d out=8 kernel=3
)");
    const lamda::FirmwarePlan p = lamda::firmware_plan(g);
    REQUIRE(p.ok);
    CHECK(p.in_place == 2);
    // c1/r1 and c2/r2 (2,048 bytes each); the input (1,024, dead after c1) shares c2/r2's bytes;
    // c3 writes the caller's output.
    CHECK(p.arena_bytes == 2 * 8 * 8 * 8 * 4);
    REQUIRE(p.buffers.size() == 3);
    CHECK(p.buffers[0].bytes == 8 * 8 * 4 * 4);
    CHECK(p.buffers[0].first == 0);
    CHECK(p.buffers[0].last == 1);
    CHECK(p.input_offset == p.buffers[0].offset);
    CHECK(p.input_offset == 8 * 8 * 8 * 4);
    CHECK(p.offset_of(5) == -1);  // c3: the output
    CHECK(p.offset_of(2) == p.offset_of(1));  // r1 in place
    CHECK(lamda::firmware_arena_bytes(g) == p.arena_bytes);
    CHECK(lamda::arena_bytes(g) == p.arena_bytes);  // the core's plan is the firmware's
    CHECK(lamda::arena_bytes(g, 1) == 2 * 8 * 8 * 8);  // int8: one byte per value
    // TFLM's greedy rule without in-place: c1 and r1, r1 and c2, ... are alive together.
    CHECK(lamda::tflm_greedy_arena_bytes(g, false) == 2 * 8 * 8 * 8 * 4);
    CHECK(lamda::tflm_greedy_arena_bytes(g, true) == 2 * 8 * 8 * 8 * 4);  // the output overlaps dead ones
    CHECK(lamda::firmware_arena_bytes(g) <= lamda::tflm_greedy_arena_bytes(g, false));

    // The input is dead after its last reader: a wide input read once costs its bytes only while
    // it is alive, and the small values after it reuse them.
    const lamda::Graph wide = parse("model w\ninput: input shape=16x16x8\nc: conv2d out=2 kernel=1\n"
                                    "r: relu\np: maxpool kernel=2 stride=2\nfl: flatten\nf: fc out=3\n");
    const lamda::ArenaPlan pw = lamda::arena_plan(wide);
    REQUIRE(pw.ok);
    CHECK(pw.arena_bytes == 16 * 16 * 8 * 4 + 16 * 16 * 2 * 4);  // input + c (alive together)
    CHECK(pw.in_place == 1);
    CHECK(lamda::arena_plan(wide, 0).error.find("bytes per value") != std::string::npos);

    lamda::Graph bad = g;
    bad.layers[2].shape = lamda::Shape{};
    CHECK(lamda::firmware_arena_bytes(bad) == -1);
    const lamda::FirmwarePlan q = lamda::firmware_plan(bad);
    CHECK(!q.ok);
    CHECK(q.error.find("r1") != std::string::npos);
    bad = g;
    bad.layers[3].inputs = {5};
    CHECK(lamda::firmware_arena_bytes(bad) == -1);
    CHECK(lamda::firmware_arena_bytes(lamda::Graph{}) == -1);
}

TEST_CASE("firmware: bad weights are refused naming the tensor, subnormals are flushed") {
    const lamda::Graph g = parse("model s\ninput: input shape=1x1x2\nfc: fc out=2\n");
    lamda::Weights w = lamda::random_weights(g, 1);
    w["fc.weight"].data[0] = 1e-40f;   // subnormal
    w["fc.weight"].data[1] = -0.0f;
    const lamda::FirmwareSource src = lamda::firmware_source(g, w);
    CHECK(src.flushed_weights == 1);
    CHECK(src.source.find("e-40") == std::string::npos);
    CHECK(src.source.find("-0.0f") == std::string::npos);
    CHECK(src.weight_bytes == 6 * 4);
    w["fc.weight"].data[2] = NAN;
    CHECK_THROWS_AS(lamda::firmware_source(g, w), lamda::Exception);
    w.erase("fc.bias");
    CHECK_THROWS_WITH_AS(lamda::firmware_source(g, w), doctest::Contains("fc.bias"), lamda::Exception);
    // Over the weight bound: refused with the numbers before any source is built.
    const lamda::Graph big = parse("model big\ninput: input shape=1x1x4096\nfc: fc out=2100 bias=false\n");
    lamda::Weights bw;
    bw["fc.weight"] = lamda::WeightTensor{{2100, 4096}, std::vector<float>(std::size_t{2100} * 4096, 0.5f)};
    CHECK_THROWS_WITH_AS(lamda::firmware_source(big, bw), doctest::Contains("34406400 bytes of weights"),
                         lamda::ExportError);
    w = lamda::random_weights(g, 1);
    w.erase("fc.bias");
    CHECK_THROWS_WITH_AS(lamda::firmware_source(g, w), doctest::Contains("fc.bias"), lamda::Exception);
}

namespace {

// Quantizes `graph` with random weights (PTQ calibrated on random inputs), exports it in int8,
// compiles it, runs `inputs_n` inputs (both input paths) and checks the float outputs against
// run_reference_int8's bit for bit.
lamda::FirmwareSource check_int8_model(const lamda::Graph& graph, const std::string& tag, std::uint64_t seed = 7,
                                       int inputs_n = 4) {
    CAPTURE(tag);
    const lamda::Weights w = lamda::random_weights(graph, seed);
    const lamda::Shape in_s = graph.input().shape;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<lamda::Tensor> calib;
    for (int k = 0; k < 6; ++k) {
        lamda::Tensor x(in_s);
        for (float& v : x.data) v = u(rng);
        calib.push_back(x);
    }
    const lamda::PtqResult q = lamda::quantize_ptq(graph, w, calib);
    const lamda::FirmwareSource src = lamda::firmware_source_int8(q.graph, q.model, q.float_weights);
    CHECK(src.source.find("malloc") == std::string::npos);
    CHECK(!std::regex_search(src.source, std::regex(R"(static\s+(float|double|int|char|unsigned|int8_t|int32_t)\s+\w+\s*(\[|=|;))")));
    // Without float layers (no float scratch) the int8 arena is at most TFLM's int8 greedy plan.
    if (src.source.find("lm_f32_") == std::string::npos) CHECK(src.arena_bytes <= src.tflm_arena_io_bytes);
    const Built b = build(src, "s8_" + tag);
    REQUIRE(b.ok);
    std::vector<float> inputs;
    std::vector<lamda::Tensor> want;
    for (int k = 0; k < inputs_n; ++k) {
        lamda::Tensor x(in_s);
        for (float& v : x.data) v = u(rng);
        inputs.insert(inputs.end(), x.data.begin(), x.data.end());
        want.push_back(lamda::run_reference_int8(q.graph, q.model, q.float_weights, x).output);
    }
    const std::size_t out_n = static_cast<std::size_t>(graph.output().shape.elements());
    const std::vector<float> got = run_program(b, inputs, out_n * static_cast<std::size_t>(inputs_n));
    int bad = 0;
    for (int k = 0; k < inputs_n; ++k)
        for (std::size_t j = 0; j < out_n; ++j) {
            const float g = got[static_cast<std::size_t>(k) * out_n + j];
            const float r = want[static_cast<std::size_t>(k)].data[j];
            if (std::memcmp(&g, &r, sizeof g) != 0 && bad++ < 5)
                MESSAGE("input " << k << " output " << j << ": generated " << g << ", reference " << r);
        }
    CHECK(bad == 0);
    fs::remove_all(b.dir);
    return src;
}

}  // namespace

TEST_CASE("firmware int8: conv, dwconv, fc, pools, add, relu and sigmoid equal the integer reference bit for bit") {
    const lamda::FirmwareSource src = check_int8_model(parse(R"(model s8
input: input shape=12x12x3
c1: conv2d out=8 kernel=3 stride=2 padding=1
bn1: batchnorm
r1: relu6
dw: dwconv kernel=3 multiplier=2 padding=1 act=relu6
c2: conv2d out=16 kernel=1 groups=2
r: relu
c3: conv2d out=16 kernel=3 padding=1
s: add c3, r act=relu
sg: sigmoid
mp: maxpool kernel=2 stride=2
g: gap
fl: flatten
fc: fc out=10
)"), "int8_ops");
    CHECK(src.source.find("lm_s8_conv(") != std::string::npos);
    CHECK(src.source.find("lm_s8_add(") != std::string::npos);
    CHECK(src.source.find("lm_s8_lut(") != std::string::npos);
    CHECK(src.source.find("(float)") != std::string::npos);
    CHECK(src.source.find("lm_f32_") == std::string::npos);  // no float layer here
    // No conv, fc or gap: the requantization helper is not emitted (no unused static function).
    const lamda::FirmwareSource small = check_int8_model(
        parse("model a8\ninput: input shape=4x4x2\nr: relu\ns: add input, r\nfl: flatten\n"), "add_only");
    CHECK(small.source.find("lm_requant") == std::string::npos);
}

TEST_CASE("firmware int8: a layer without an int8 kernel that is not a float layer is refused by name") {
    const lamda::Graph g = parse("model h\ninput: input shape=4x4x2\nc: conv2d out=4 kernel=1\nh: hardswish\ng: gap\n");
    const lamda::Weights w = lamda::random_weights(g, 3);
    lamda::Tensor x(g.input().shape);
    for (std::size_t i = 0; i < x.data.size(); ++i) x.data[i] = std::sin(static_cast<float>(i));
    lamda::PtqResult q = lamda::quantize_ptq(g, w, {x});
    REQUIRE(q.model.float_layers.size() == 1);  // h
    CHECK_NOTHROW(lamda::firmware_source_int8(q.graph, q.model, q.float_weights));
    q.model.float_layers.clear();
    CHECK_THROWS_WITH(lamda::firmware_source_int8(q.graph, q.model, q.float_weights),
                      doctest::Contains("layer 'h' has no int8 kernel"));
}

TEST_CASE("firmware int8: the float layers (every other op of the catalog) run between dequantize and quantize") {
    const lamda::FirmwareSource src = check_int8_model(parse(every_op_model), "every_op_s8", 5, 3);
    CHECK(src.source.find("lm_s8_dequant(") != std::string::npos);
    CHECK(src.source.find("lm_f32_softmax(") != std::string::npos);
}

TEST_CASE("firmware int8: the zoo's small models, in well under half the flash of float") {
    for (const char* name : {"lenet5", "tiny_mobilenet"}) {
        const lamda::ParseResult r = lamda::parse_dsl_file(std::string(LAMDA_SOURCE_DIR) +
                                                           "/examples/models/" + name + ".lamda");
        REQUIRE(r.ok());
        const lamda::FirmwareSource s8 = check_int8_model(r.graph, name, 11, 2);
        const lamda::FirmwareSource f32 = lamda::firmware_source(r.graph, lamda::random_weights(r.graph, 11));
        CAPTURE(name);
        // int8 weights (a quarter) + int32 bias and a float scale per channel (+ float layers' weights)
        CHECK(s8.weight_bytes * 2 < f32.weight_bytes);
    }
}
