// lamda's AVX-512 fp32 pointwise convolution (exec/pw_avx512.hpp): against a plain loop in double
// over shapes that hit every path (panels of 1 to 4 registers, the last register masked, tiles
// and chunks of pixels cut short, one input channel, a single pixel), units run in any order, and
// inside the XNNPACK executor against XNNPACK's own convolution and the reference executor, at 1
// and 2 threads. On a CPU without AVX-512F only the executor's fallback is checked.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lamda/exec/pw_avx512.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/exec/xnnpack.hpp"

#include "../executor_test_support.hpp"

namespace {

constexpr float kCanary = -12345.0f;

struct PointwiseCase {
    int pixels, in_channels, out_channels;
};

}  // namespace

TEST_CASE("AVX-512 pointwise convolution: equals the plain loop on every path") {
    if (!lamda::pw_avx512::available()) {
        MESSAGE("this CPU has no AVX-512F: the kernel is not used here");
        return;
    }
    const PointwiseCase cases[] = {
        {1, 1, 1},      {7, 3, 5},       {13, 16, 16},   {61, 17, 24},  {121, 144, 24},  // 1 and 2 registers
        {25, 8, 33},    {60, 32, 48},    {11, 5, 56},                                    // 3 registers
        {49, 96, 64},   {50, 40, 65},    {6, 12, 100},   {12, 7, 130},   {67, 24, 200},  // 4, then more panels
        {2, 300, 40},   {3, 64, 320},
    };
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float clamps[][2] = {{-INFINITY, INFINITY}, {0.0f, 6.0f}, {-0.25f, 0.5f}};
    for (const PointwiseCase& c : cases) {
        const auto P = static_cast<std::size_t>(c.pixels), K = static_cast<std::size_t>(c.in_channels),
                   N = static_cast<std::size_t>(c.out_channels);
        std::vector<float> x(P * K), w(N * K), bias(N);
        for (float& v : x) v = u(rng);
        for (float& v : w) v = u(rng);
        for (float& v : bias) v = u(rng);
        for (const auto& clamp : clamps)
            for (bool with_bias : {true, false}) {
                INFO("pixels " << c.pixels << ", " << c.in_channels << " -> " << c.out_channels << ", clamp ["
                               << clamp[0] << ", " << clamp[1] << "], bias " << with_bias);
                const lamda::PointwiseF32 pw(c.in_channels, c.out_channels, w.data(), with_bias ? bias.data() : nullptr,
                                             clamp[0], clamp[1]);
                // 16 canaries on each side of the output.
                std::vector<float> buffer(P * N + 32, kCanary);
                float* y = buffer.data() + 16;
                // Units in reverse order: each writes only its own outputs.
                for (int p = pw.panels() - 1; p >= 0; --p)
                    for (std::size_t k = lamda::PointwiseF32::chunks(P); k-- > 0;) pw.run_unit(x.data(), y, P, p, k);
                double worst = 0.0;
                for (std::size_t i = 0; i < P; ++i)
                    for (std::size_t n = 0; n < N; ++n) {
                        double acc = with_bias ? bias[n] : 0.0, mass = std::fabs(acc);
                        for (std::size_t k = 0; k < K; ++k) {
                            const double t = static_cast<double>(x[i * K + k]) * w[n * K + k];
                            acc += t;
                            mass += std::fabs(t);
                        }
                        const double want = std::min<double>(std::max<double>(acc, clamp[0]), clamp[1]);
                        worst = std::max(worst, std::fabs(y[i * N + n] - want) / std::max(1.0, mass));
                    }
                CHECK(worst <= 1e-6);
                for (std::size_t k = 0; k < 16; ++k) {
                    CHECK(buffer[k] == kCanary);
                    CHECK(buffer[16 + P * N + k] == kCanary);
                }
                // run() is every unit.
                std::vector<float> again(P * N, kCanary);
                pw.run(x.data(), again.data(), P);
                CHECK(std::equal(again.begin(), again.end(), y));
            }
    }
}

TEST_CASE("AVX-512 pointwise convolution: refuses a bad shape") {
    const float w[4] = {};
    CHECK_THROWS_AS(lamda::PointwiseF32(0, 4, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
    CHECK_THROWS_AS(lamda::PointwiseF32(4, 0, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
    CHECK_THROWS_AS(lamda::PointwiseF32(2, 2, nullptr, nullptr, 0.0f, 1.0f), std::invalid_argument);
}

TEST_CASE("xnnpack: pointwise convolutions on lamda's AVX-512 kernel agree with XNNPACK's and the reference") {
    using lamda_test::graph_of;
    // Batch norms and activations folded in (relu6, hardsigmoid's affine map), output counts off
    // the 16-lane register and past one panel, 16 outputs (XNNPACK's), a strided and a grouped
    // 1x1 (XNNPACK's), a residual add reading a kernel's output, a padded 1x1 (XNNPACK's).
    const lamda::Graph g = graph_of(
        "input: input shape=9x11x20\n"
        "a: conv2d out=24 kernel=1 bias=false\nab: batchnorm\nar: relu6\n"
        "b: conv2d out=100 kernel=1\nbb: batchnorm\nbh: hardsigmoid\n"
        "c: conv2d out=16 kernel=1\n"
        "d: conv2d out=40 kernel=1 stride=2\n"
        "e: conv2d out=40 kernel=1 groups=2 act=relu\n"
        "f: conv2d out=40 kernel=1\n"
        "s: add e, f\n"
        "g: conv2d out=40 kernel=1 padding=1\n"
        "p: gap\nq: fc out=5\n");
    lamda_test::with_and_without<lamda::XnnExecutor>(
        g, &lamda::XnnOptions::pointwise_avx512, [](const lamda::XnnExecutor& with, const lamda::XnnExecutor& without) {
            CHECK(without.pointwise_avx512_layers() == 0);
            const auto ours =
                lamda::pw_avx512::available() ? lamda::XnnLowering::Kernel : lamda::XnnLowering::Operators;
            CHECK(with.pointwise_avx512_layers() == (lamda::pw_avx512::available() ? 3 : 0));  // a, b, f
            CHECK(with.lowering(1) == ours);
            CHECK(with.lowering(4) == ours);
            CHECK(with.lowering(7) == lamda::XnnLowering::Operators);  // 16 outputs
            CHECK(with.lowering(8) == lamda::XnnLowering::Operators);  // stride 2
            CHECK(with.lowering(9) == lamda::XnnLowering::Operators);  // 2 groups
            CHECK(with.lowering(10) == ours);
            CHECK(with.lowering(12) == lamda::XnnLowering::Operators);  // padded
        });
    CHECK_FALSE(lamda::pw_avx512::preferred(16));
    CHECK(lamda::pw_avx512::preferred(24));
    CHECK(lamda::pw_avx512::takes(1, 1, 1, 1, false, 1, 24));
    CHECK_FALSE(lamda::pw_avx512::takes(1, 1, 1, 1, true, 1, 24));
    CHECK_FALSE(lamda::pw_avx512::takes(1, 1, 2, 2, false, 1, 24));
    CHECK_FALSE(lamda::pw_avx512::takes(1, 1, 1, 1, false, 2, 24));
    CHECK_FALSE(lamda::pw_avx512::takes(3, 3, 1, 1, false, 1, 24));
    CHECK_FALSE(lamda::pw_avx512::takes(1, 1, 1, 1, false, 1, 16));
}
