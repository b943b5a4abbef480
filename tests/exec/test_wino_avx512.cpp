// lamda's AVX-512 fp32 Winograd F(2x2, 3x3) convolution (exec/wino_avx512.hpp): against a plain
// loop in double over shapes that hit every path (odd and even maps cut the last tiles, padding
// of 0 to 2 on either side, channel counts off the 16-lane register, more than one block of
// tiles, blocks of any size run in any order), and inside the XNNPACK executor against XNNPACK's
// own convolution and the reference executor, at 1 and 2 threads. On a CPU without AVX-512F
// only the executor's fallback is checked.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lamda/exec/reference.hpp"
#include "lamda/exec/wino_avx512.hpp"
#include "lamda/exec/xnnpack.hpp"

#include "../executor_test_support.hpp"

namespace {

constexpr float kCanary = -12345.0f;

struct WinogradCase {
    int in_h, in_w, in_channels, out_channels;
    int pad_top, pad_left, pad_bottom, pad_right;
};

}  // namespace

TEST_CASE("AVX-512 Winograd convolution: equals the plain loop on every path") {
    if (!lamda::wino_avx512::available()) {
        MESSAGE("this CPU has no AVX-512F: the kernel is not used here");
        return;
    }
    const WinogradCase cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1},       {2, 2, 16, 17, 1, 1, 1, 1},     {5, 7, 17, 33, 1, 1, 1, 1},
        {8, 8, 32, 24, 0, 0, 0, 0},     {9, 6, 20, 40, 0, 1, 2, 1},     {20, 20, 16, 48, 1, 1, 1, 1},  // 100 tiles
        {7, 7, 64, 96, 2, 2, 2, 2},     {3, 30, 5, 70, 1, 0, 1, 0},     {13, 11, 48, 16, 1, 1, 0, 0},
    };
    std::mt19937 rng(13);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float clamps[][2] = {{-INFINITY, INFINITY}, {0.0f, 6.0f}};
    for (const WinogradCase& c : cases) {
        lamda::WinogradGeometry geo;
        geo.in_channels = c.in_channels;
        geo.out_channels = c.out_channels;
        geo.in_h = c.in_h;
        geo.in_w = c.in_w;
        geo.pad_top = c.pad_top;
        geo.pad_left = c.pad_left;
        geo.out_h = c.in_h + c.pad_top + c.pad_bottom - 2;
        geo.out_w = c.in_w + c.pad_left + c.pad_right - 2;
        const auto IC = static_cast<std::size_t>(c.in_channels), OC = static_cast<std::size_t>(c.out_channels);
        const auto outputs = static_cast<std::size_t>(geo.out_h) * static_cast<std::size_t>(geo.out_w) * OC;
        std::vector<float> x(static_cast<std::size_t>(c.in_h * c.in_w) * IC), w(OC * 9 * IC), bias(OC);
        for (float& v : x) v = u(rng);
        for (float& v : w) v = u(rng);
        for (float& v : bias) v = u(rng);
        for (const auto& clamp : clamps)
            for (bool with_bias : {true, false}) {
                INFO(c.in_h << "x" << c.in_w << "x" << c.in_channels << " -> " << c.out_channels << ", pads "
                            << c.pad_top << c.pad_left << c.pad_bottom << c.pad_right << ", clamp [" << clamp[0]
                            << ", " << clamp[1] << "], bias " << with_bias);
                const lamda::Winograd3x3F32 conv(geo, w.data(), with_bias ? bias.data() : nullptr, clamp[0], clamp[1]);
                std::vector<float> buffer(outputs + 32, kCanary);
                float* y = buffer.data() + 16;
                // Blocks of 7 tiles in reverse order: each writes only its own outputs.
                for (std::size_t b = conv.blocks(7); b-- > 0;) conv.run_unit(x.data(), y, b, 7);
                double worst = 0.0;
                for (int oy = 0; oy < geo.out_h; ++oy)
                    for (int ox = 0; ox < geo.out_w; ++ox)
                        for (std::size_t o = 0; o < OC; ++o) {
                            double acc = with_bias ? bias[o] : 0.0, mass = std::fabs(acc);
                            for (int i = 0; i < 3; ++i)
                                for (int j = 0; j < 3; ++j) {
                                    const int iy = oy - c.pad_top + i, ix = ox - c.pad_left + j;
                                    if (iy < 0 || iy >= c.in_h || ix < 0 || ix >= c.in_w) continue;
                                    for (std::size_t k = 0; k < IC; ++k) {
                                        const double t =
                                            static_cast<double>(x[(static_cast<std::size_t>(iy * c.in_w + ix)) * IC + k]) *
                                            w[(o * 9 + static_cast<std::size_t>(i * 3 + j)) * IC + k];
                                        acc += t;
                                        mass += std::fabs(t);
                                    }
                                }
                            const double want = std::min<double>(std::max<double>(acc, clamp[0]), clamp[1]);
                            const std::size_t at = (static_cast<std::size_t>(oy * geo.out_w + ox)) * OC + o;
                            worst = std::max(worst, std::fabs(y[at] - want) / std::max(1.0, mass));
                        }
                // The transforms add a few roundings to the direct sum's (the products of
                // transformed values are up to 4x the inputs and 2.25x the filter taps).
                CHECK(worst <= 1e-5);
                for (std::size_t k = 0; k < 16; ++k) {
                    CHECK(buffer[k] == kCanary);
                    CHECK(buffer[16 + outputs + k] == kCanary);
                }
                // run() is every unit, in blocks of its own size.
                std::vector<float> again(outputs, kCanary);
                conv.run(x.data(), again.data());
                CHECK(std::equal(again.begin(), again.end(), y));
                // Groups of output-channel panels (the executor's split of a small map over
                // threads), in any order: the same values.
                for (int groups : {2, 3}) {
                    std::vector<float> split(outputs, kCanary);
                    for (std::size_t b = conv.blocks(7); b-- > 0;)
                        for (int g = groups - 1; g >= 0; --g) conv.run_unit(x.data(), split.data(), b, 7, g, groups);
                    CHECK(std::equal(split.begin(), split.end(), y));
                }
            }
    }
}

TEST_CASE("AVX-512 Winograd convolution: refuses a bad shape") {
    const float w[9 * 4] = {};
    lamda::WinogradGeometry geo{2, 2, 4, 4, 1, 1, 4, 4};
    CHECK_NOTHROW(lamda::Winograd3x3F32(geo, w, nullptr, 0.0f, 1.0f));
    CHECK_THROWS_AS(lamda::Winograd3x3F32(geo, nullptr, nullptr, 0.0f, 1.0f), std::invalid_argument);
    for (int field = 0; field < 8; ++field) {
        lamda::WinogradGeometry bad = geo;
        int* fields[] = {&bad.in_channels, &bad.out_channels, &bad.in_h, &bad.in_w,
                         &bad.pad_top,     &bad.pad_left,     &bad.out_h, &bad.out_w};
        *fields[field] = field == 4 || field == 5 ? -1 : 0;
        CHECK_THROWS_AS(lamda::Winograd3x3F32(bad, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
    }
}

TEST_CASE("xnnpack: 3x3 convolutions on lamda's Winograd kernel agree with XNNPACK's and the reference") {
    using lamda_test::graph_of;
    // A batch norm and relu6 folded in, odd maps, valid padding, outputs off the 16-lane register,
    // a layer of two panels on a map of one block (split by channels at 2 threads); XNNPACK's: 8
    // inputs, 16 outputs, stride 2, dilation 2, 2 groups, a 5x5 filter.
    const lamda::Graph g = graph_of(
        "input: input shape=13x11x8\n"
        "a: conv2d out=24 kernel=3\n"
        "b: conv2d out=40 kernel=3 bias=false\nbb: batchnorm\nbr: relu6\n"
        "c: conv2d out=33 kernel=3 padding=valid act=relu\n"
        "d: conv2d out=16 kernel=3\n"
        "e: conv2d out=32 kernel=3 stride=2\n"
        "f: conv2d out=32 kernel=3 dilation=2\n"
        "h: conv2d out=32 kernel=3 groups=2\n"
        "i: conv2d out=32 kernel=5\n"
        "j: conv2d out=80 kernel=3\n"
        "p: gap\nq: fc out=5\n");
    lamda_test::with_and_without<lamda::XnnExecutor>(
        g, &lamda::XnnOptions::winograd_avx512, [](const lamda::XnnExecutor& with, const lamda::XnnExecutor& without) {
            CHECK(without.winograd_avx512_layers() == 0);
            const bool here = lamda::wino_avx512::available();
            const auto ours = here ? lamda::XnnLowering::Kernel : lamda::XnnLowering::Operators;
            CHECK(with.winograd_avx512_layers() == (here ? 3 : 0));  // b, c, j
            CHECK(with.lowering(1) == lamda::XnnLowering::Operators);  // 8 inputs
            CHECK(with.lowering(2) == ours);
            CHECK(with.lowering(5) == ours);
            for (int layer = 6; layer <= 10; ++layer) CHECK(with.lowering(layer) == lamda::XnnLowering::Operators);
            CHECK(with.lowering(11) == ours);
        });
    CHECK(lamda::wino_avx512::takes(3, 3, 1, 1, 1, 1, 1, 16, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(3, 3, 1, 1, 1, 1, 1, 8, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(3, 3, 1, 1, 1, 1, 1, 16, 16));
    CHECK_FALSE(lamda::wino_avx512::takes(3, 3, 2, 2, 1, 1, 1, 16, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(3, 3, 1, 1, 2, 2, 1, 16, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(3, 3, 1, 1, 1, 1, 2, 16, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(5, 5, 1, 1, 1, 1, 1, 16, 24));
    CHECK_FALSE(lamda::wino_avx512::takes(1, 1, 1, 1, 1, 1, 1, 16, 24));
}
