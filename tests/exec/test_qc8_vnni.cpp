// lamda's AVX-512 VNNI pointwise int8 convolution (exec/qc8_vnni.hpp) against core/quant.hpp's
// requantization, value for value: the kernel must compute XNNPACK's and the integer reference's
// arithmetic exactly. On a CPU without VNNI (or not x86-64) only the refusal is checked.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "lamda/core/quant.hpp"
#include "lamda/exec/qc8_vnni.hpp"

namespace {

struct Case {
    std::size_t ic, oc, pixels;
    std::int32_t x_zp, y_zp, qmin, qmax;
    float scale;  // around which the per-channel scales are drawn
};

// y[p][c] = requantize_fp32(bias[c] + sum_k (x[p][k] - x_zp) * w[c][k], scale[c], y_zp, qmin, qmax)
std::vector<std::int8_t> expected(const Case& t, const std::vector<std::int8_t>& x, const std::vector<std::int8_t>& w,
                                  const std::vector<std::int32_t>& bias, const std::vector<float>& scale) {
    std::vector<std::int8_t> y(t.pixels * t.oc);
    for (std::size_t p = 0; p < t.pixels; ++p)
        for (std::size_t c = 0; c < t.oc; ++c) {
            std::int32_t acc = bias[c];
            for (std::size_t k = 0; k < t.ic; ++k) acc += (x[p * t.ic + k] - t.x_zp) * w[c * t.ic + k];
            y[p * t.oc + c] = lamda::requantize_fp32(acc, scale[c], t.y_zp, t.qmin, t.qmax);
        }
    return y;
}

}  // namespace

TEST_CASE("qc8 VNNI pointwise convolution: equals the fp32 requantization value for value") {
    if (!lamda::qc8_vnni::available()) {
        CHECK_THROWS_AS(lamda::Qc8Pointwise(4, 4, 0, nullptr, nullptr, nullptr, 0, -128, 127), std::invalid_argument);
        MESSAGE("this CPU has no AVX-512 VNNI: the kernel is not used here");
        return;
    }
    // Channel counts off the kernel's multiples (16 lanes, 4 inputs, 64 per sweep, 6 pixels per
    // tile), zero points at the ends of the range, a relu6-like clamp, scales that saturate.
    const Case cases[] = {
        {1, 1, 1, 0, 0, -128, 127, 0.01f},        {3, 5, 7, -128, 127, -128, 127, 0.02f},
        {16, 24, 37, 5, -3, -128, 127, 0.004f},   {24, 144, 96, -17, -128, -128, 127, 0.003f},
        {32, 70, 13, 127, 10, 10, 90, 0.002f},    {96, 16, 200, -1, 0, -128, 127, 0.001f},
        {321, 129, 11, 3, -5, -128, 127, 0.0005f}, {960, 320, 7, -60, 40, -128, 127, 0.0001f},
        {8, 64, 6, 0, 0, -128, 127, 0.5f},        {17, 65, 1, 9, -9, -100, 100, 0.02f},
    };
    std::mt19937 rng(7);
    for (const Case& t : cases) {
        INFO("ic " << t.ic << " oc " << t.oc << " pixels " << t.pixels << " x_zp " << t.x_zp << " y_zp " << t.y_zp);
        std::uniform_int_distribution<int> byte(-128, 127), weight(-127, 127), bias_d(-20000, 20000);
        std::uniform_real_distribution<float> jitter(0.5f, 2.0f);
        std::vector<std::int8_t> x(t.pixels * t.ic), w(t.oc * t.ic);
        std::vector<std::int32_t> bias(t.oc);
        std::vector<float> scale(t.oc);
        for (auto& v : x) v = static_cast<std::int8_t>(byte(rng));
        for (auto& v : w) v = static_cast<std::int8_t>(weight(rng));
        for (auto& v : bias) v = bias_d(rng);
        for (auto& v : scale) v = t.scale * jitter(rng);
        const lamda::Qc8Pointwise conv(t.ic, t.oc, t.x_zp, w.data(), bias.data(), scale.data(), t.y_zp, t.qmin,
                                       t.qmax);
        std::vector<std::int8_t> y(t.pixels * t.oc + 64, 0x55);  // the tail must stay untouched
        std::vector<std::uint8_t> scratch;
        conv.run(x.data(), y.data(), t.pixels, scratch);
        const std::vector<std::int8_t> want = expected(t, x, w, bias, scale);
        int differ = 0, first = -1;
        for (std::size_t i = 0; i < want.size(); ++i)
            if (y[i] != want[i] && differ++ == 0) first = static_cast<int>(i);
        CHECK_MESSAGE(differ == 0, differ << " values differ, the first at " << first << ": "
                                          << (first >= 0 ? int{y[static_cast<std::size_t>(first)]} : 0) << " vs "
                                          << (first >= 0 ? int{want[static_cast<std::size_t>(first)]} : 0));
        for (std::size_t i = want.size(); i < y.size(); ++i) CHECK(y[i] == 0x55);
        // Split into ranges (as threads run it), the same values.
        std::vector<std::int8_t> z(t.pixels * t.oc, 0);
        for (std::size_t p = 0; p < t.pixels; p += 5) conv.run_range(scratch.data(), z.data(), p, std::min(t.pixels, p + 5));
        CHECK(std::equal(z.begin(), z.end(), want.begin()));
    }
}

TEST_CASE("qc8 VNNI pointwise convolution: refuses no channels") {
    if (!lamda::qc8_vnni::available()) return;
    const std::int8_t w[1] = {1};
    const std::int32_t b[1] = {0};
    const float s[1] = {1.0f};
    CHECK_THROWS_AS(lamda::Qc8Pointwise(0, 1, 0, w, b, s, 0, -128, 127), std::invalid_argument);
    CHECK_THROWS_AS(lamda::Qc8Pointwise(1, 0, 0, w, b, s, 0, -128, 127), std::invalid_argument);
}
