// lamda's AVX-512 fp32 depthwise convolution (exec/dw_avx512.hpp): against a plain loop in double
// over geometries that hit every path (the fixed 3/5/7-wide tiles of 1 to 8 pixels, interior and
// border, the generic tiles, dilation, strides 1 to 3, asymmetric and oversized padding, channel
// counts off the 16-lane register), and inside the XNNPACK executor against XNNPACK's own
// depthwise convolution and the reference executor, at 1 and 2 threads. On a CPU without
// AVX-512F only the executor's fallback is checked.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lamda/exec/dw_avx512.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/exec/xnnpack.hpp"

#include "../executor_test_support.hpp"

namespace {

// y[oy][ox][c] = clamp(bias[c] + sum over in-range taps of x * w, lo, hi), summed in double; `mass`
// gets sum |x * w| + |bias| per output (the scale of fp32's rounding error).
std::vector<double> expected(const lamda::DepthwiseGeometry& g, const std::vector<float>& x,
                             const std::vector<float>& w, const std::vector<float>& bias, float lo, float hi,
                             std::vector<double>& mass) {
    const int oh = g.out_h(), ow = g.out_w(), C = g.channels;
    std::vector<double> y(static_cast<std::size_t>(oh * ow * C));
    mass.assign(y.size(), 0.0);
    for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
            for (int c = 0; c < C; ++c) {
                double acc = bias[static_cast<std::size_t>(c)], m = std::fabs(acc);
                for (int ky = 0; ky < g.kh; ++ky)
                    for (int kx = 0; kx < g.kw; ++kx) {
                        const int iy = oy * g.sh - g.pads[0] + ky * g.dh, ix = ox * g.sw - g.pads[1] + kx * g.dw;
                        if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                        const double t = static_cast<double>(x[static_cast<std::size_t>((iy * g.in_w + ix) * C + c)]) *
                                         w[static_cast<std::size_t>((c * g.kh + ky) * g.kw + kx)];
                        acc += t;
                        m += std::fabs(t);
                    }
                const auto k = static_cast<std::size_t>((oy * ow + ox) * C + c);
                y[k] = std::min<double>(std::max<double>(acc, lo), hi);
                mass[k] = m;
            }
    return y;
}

}  // namespace

TEST_CASE("AVX-512 depthwise convolution: equals the plain loop on every path") {
    if (!lamda::dw_avx512::available()) {
        MESSAGE("this CPU has no AVX-512F: the kernel is not used here");
        return;
    }
    // channels, in_h, in_w, kh, kw, sh, sw, dh, dw, pads (top, left, bottom, right)
    const lamda::DepthwiseGeometry cases[] = {
        {16, 112, 112, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},   // mnasnet's first: interior tiles of 8
        {72, 28, 28, 5, 5, 1, 1, 1, 1, {2, 2, 2, 2}},     // 4 full registers and a masked one
        {1, 5, 5, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},        // one channel, a row narrower than a tile
        {17, 7, 7, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},       // a 7x7 map: one edge tile a row
        {33, 7, 7, 5, 5, 1, 1, 1, 1, {2, 2, 2, 2}},
        {48, 14, 14, 3, 3, 2, 2, 1, 1, {0, 0, 1, 1}},     // stride 2, "same" padding at the end
        {24, 29, 31, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}},     // odd sizes, stride 2
        {40, 14, 14, 7, 7, 1, 1, 1, 1, {3, 3, 3, 3}},
        {20, 23, 41, 7, 7, 2, 2, 1, 1, {3, 3, 3, 3}},
        {96, 9, 19, 5, 5, 2, 2, 1, 1, {2, 2, 2, 2}},      // interior shorter than 8 between the edges
        {8, 30, 30, 5, 5, 2, 2, 1, 1, {1, 2, 2, 1}},      // asymmetric padding
        {21, 12, 25, 3, 5, 1, 1, 1, 1, {1, 2, 1, 2}},     // rectangular: 5-wide tiles
        {19, 16, 16, 5, 3, 1, 2, 1, 1, {2, 1, 2, 1}},
        {16, 20, 20, 3, 3, 1, 1, 2, 2, {2, 2, 2, 2}},     // dilation: the generic tiles
        {35, 17, 40, 3, 3, 3, 3, 1, 1, {1, 1, 1, 1}},     // stride 3: the generic tiles
        {12, 13, 29, 9, 9, 1, 1, 1, 1, {4, 4, 4, 4}},     // a 9-wide filter: the generic tiles
        {5, 11, 33, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}},      // 1x1
        {9, 6, 6, 3, 3, 1, 1, 1, 1, {5, 5, 5, 5}},        // padding wider than the filter
        {7, 8, 30, 3, 3, 1, 1, 3, 4, {0, 9, 0, 9}},       // dilated columns far into the padding
        {144, 10, 10, 3, 3, 1, 1, 1, 1, {0, 0, 0, 0}},    // valid: no border at all
        {3, 1, 1, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},        // a 1x1 map
    };
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (const lamda::DepthwiseGeometry& g : cases) {
        INFO("C " << g.channels << " in " << g.in_h << "x" << g.in_w << " kernel " << g.kh << "x" << g.kw
                  << " stride " << g.sh << "x" << g.sw << " dilation " << g.dh << "x" << g.dw << " pads "
                  << g.pads[0] << "," << g.pads[1] << "," << g.pads[2] << "," << g.pads[3]);
        std::vector<float> x(static_cast<std::size_t>(g.in_h * g.in_w * g.channels)),
            w(static_cast<std::size_t>(g.channels * g.kh * g.kw)), bias(static_cast<std::size_t>(g.channels));
        for (float& v : x) v = u(rng);
        for (float& v : w) v = u(rng);
        for (float& v : bias) v = u(rng);
        for (const auto& [lo, hi] : {std::pair<float, float>{-INFINITY, INFINITY}, {0.0f, 6.0f}, {-0.5f, 0.25f}}) {
            std::vector<double> mass;
            const std::vector<double> want = expected(g, x, w, bias, lo, hi, mass);
            const lamda::DepthwiseF32 dw(g, w.data(), bias.data(), lo, hi);
            // Canaries around the output: the masked stores must not write past it.
            std::vector<float> out(want.size() + 32, 12345.0f);
            float* y = out.data() + 16;
            dw.run_rows(x.data(), y, 0, dw.output_rows());
            int bad = 0;
            for (std::size_t k = 0; k < want.size() && bad < 5; ++k)
                if (!(std::fabs(y[k] - want[k]) <= 1e-6 * (mass[k] + 1.0))) {
                    ++bad;
                    FAIL_CHECK("output " << k << ": " << y[k] << ", expected " << want[k]);
                }
            CHECK(bad == 0);
            for (int k = 0; k < 16; ++k) {
                CHECK(out[static_cast<std::size_t>(k)] == 12345.0f);
                CHECK(out[want.size() + 16 + static_cast<std::size_t>(k)] == 12345.0f);
            }
        }
        // Without a bias, and row ranges run separately (as the thread pool splits them).
        const lamda::DepthwiseF32 dw(g, w.data(), nullptr, -INFINITY, INFINITY);
        std::vector<float> zero(bias.size(), 0.0f), whole(static_cast<std::size_t>(g.out_h() * g.out_w() * g.channels)),
            split(whole.size());
        dw.run_rows(x.data(), whole.data(), 0, dw.output_rows());
        for (int y = dw.output_rows() - 1; y >= 0; --y) dw.run_rows(x.data(), split.data(), y, y + 1);
        CHECK(whole == split);
        std::vector<double> mass;
        const std::vector<double> want = expected(g, x, w, zero, -INFINITY, INFINITY, mass);
        for (std::size_t k = 0; k < want.size(); ++k)
            if (!(std::fabs(whole[k] - want[k]) <= 1e-6 * (mass[k] + 1.0))) {
                FAIL_CHECK("no bias: output " << k << ": " << whole[k] << ", expected " << want[k]);
                break;
            }
    }
}

TEST_CASE("AVX-512 depthwise convolution: refuses a bad geometry") {
    const float w[9] = {};
    lamda::DepthwiseGeometry g;
    g.channels = 4;
    g.in_h = g.in_w = 2;
    g.kh = g.kw = 3;  // larger than the unpadded input: no output
    CHECK_THROWS_AS(lamda::DepthwiseF32(g, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
    g.pads = {1, 1, 1, 1};
    g.channels = 0;
    CHECK_THROWS_AS(lamda::DepthwiseF32(g, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
    g.channels = 1;
    g.kh = lamda::DepthwiseF32::kMaxFilterRows + 1;
    CHECK_THROWS_AS(lamda::DepthwiseF32(g, w, nullptr, 0.0f, 1.0f), std::invalid_argument);
}

TEST_CASE("xnnpack: depthwise convolutions on lamda's AVX-512 kernel agree with XNNPACK's and the reference") {
    using lamda_test::graph_of;
    // Batch norms and activations folded into the dwconvs (relu6, hardsigmoid's affine map), a
    // multiplier-2 dwconv (XNNPACK's), dilation, stride 2, a 5x5 and a 7x7.
    const lamda::Graph g = graph_of(
        "input: input shape=30x30x20\n"
        "d1: dwconv kernel=3 bias=false\nb1: batchnorm\nr1: relu6\n"
        "d2: dwconv kernel=5 stride=2 act=relu\n"
        "d3: dwconv kernel=3 dilation=2\nb3: batchnorm\nh3: hardsigmoid\n"
        "d4: dwconv kernel=3 multiplier=2\n"
        "d5: dwconv kernel=7 padding=valid\n"
        "p: gap\nf: fc out=5\n");
    lamda_test::with_and_without<lamda::XnnExecutor>(
        g, &lamda::XnnOptions::depthwise_avx512, [](const lamda::XnnExecutor& with, const lamda::XnnExecutor& without) {
            CHECK(without.depthwise_avx512_layers() == 0);
            if (lamda::dw_avx512::available()) {
                CHECK(with.depthwise_avx512_layers() == 4);  // all but the multiplier-2 one
                CHECK(with.lowering(1) == lamda::XnnLowering::Kernel);
                CHECK(with.lowering(8) == lamda::XnnLowering::Operators);  // multiplier 2
                CHECK(with.lowering(9) == lamda::XnnLowering::Kernel);
            } else {
                CHECK(with.depthwise_avx512_layers() == 0);
            }
        });
}

TEST_CASE("xnnpack: lamda's depthwise kernel only where it is the faster") {
    using lamda_test::graph_of;
    // 3x3 at stride 2 with 96 channels: XNNPACK's (its channel-inner loop is faster there); at
    // stride 1, or 5x5 at stride 2: lamda's.
    const lamda::Graph g = graph_of(
        "input: input shape=12x12x96\na: dwconv kernel=3 stride=2\nb: dwconv kernel=3\nc: dwconv kernel=5 stride=2\n");
    CHECK_FALSE(lamda::dw_avx512::preferred(96, 3, 3, 2));
    CHECK(lamda::dw_avx512::preferred(64, 3, 3, 2));
    CHECK(lamda::dw_avx512::preferred(96, 3, 3, 1));
    CHECK(lamda::dw_avx512::preferred(96, 5, 5, 2));
    lamda::XnnOptions on;
    on.depthwise_avx512 = true;
    lamda::XnnExecutor e(g, lamda::random_weights(g, 2), on);
    const auto ours = lamda::dw_avx512::available() ? lamda::XnnLowering::Kernel : lamda::XnnLowering::Operators;
    CHECK(e.lowering(1) == lamda::XnnLowering::Operators);
    CHECK(e.lowering(2) == ours);
    CHECK(e.lowering(3) == ours);
    CHECK(e.depthwise_avx512_layers() == (lamda::dw_avx512::available() ? 2 : 0));
}
