// core/quant.hpp: the int8 parameters and THE requantization arithmetic (XNNPACK 2022-02's fp32
// requantization for conv/fc/gavgpool, its fixed-point vadd for add), on hand-worked cases and
// against double-precision math on random inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "lamda/core/quant.hpp"

using lamda::ActivationQuant;

TEST_CASE("quant: round half to even, saturating") {
    CHECK(lamda::round_half_even(0.5f) == 0);
    CHECK(lamda::round_half_even(1.5f) == 2);
    CHECK(lamda::round_half_even(2.5f) == 2);
    CHECK(lamda::round_half_even(-0.5f) == 0);
    CHECK(lamda::round_half_even(-1.5f) == -2);
    CHECK(lamda::round_half_even(-2.5f) == -2);
    CHECK(lamda::round_half_even(2.4999f) == 2);
    CHECK(lamda::round_half_even(-2.6f) == -3);
    CHECK(lamda::round_half_even(1e12f) == std::numeric_limits<std::int32_t>::max());
    CHECK(lamda::round_half_even(-1e12f) == std::numeric_limits<std::int32_t>::min());
    CHECK(lamda::round_half_even(std::nanf("")) == 0);
    // Agrees with the default floating-point environment's rounding (what lrintf does).
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> d(-1000.0f, 1000.0f);
    for (int i = 0; i < 10000; ++i) {
        const float x = d(rng);
        CHECK(lamda::round_half_even(x) == static_cast<std::int32_t>(std::lrintf(x)));
    }
}

TEST_CASE("quant: scale checks name the problem") {
    CHECK(lamda::scale_ok(0.1f));
    CHECK_FALSE(lamda::scale_ok(0.0f));
    CHECK_FALSE(lamda::scale_ok(-0.1f));
    CHECK_FALSE(lamda::scale_ok(std::nanf("")));
    CHECK_FALSE(lamda::scale_ok(std::numeric_limits<float>::infinity()));
    CHECK_FALSE(lamda::scale_ok(std::numeric_limits<float>::denorm_min()));
    CHECK(lamda::scale_problem(0.0f) == "is zero");
    CHECK(lamda::scale_problem(-2.0f) == "is negative");
    CHECK(lamda::scale_problem(std::nanf("")) == "is NaN");
    CHECK(lamda::scale_problem(1.0f).empty());
    CHECK_FALSE(lamda::zero_point_ok(128));
    CHECK_FALSE(lamda::zero_point_ok(-129));
}

TEST_CASE("quant: choose activation params, convert f32 to int8 and back") {
    // [-1, 3]: scale 4/255, zero point -128 + 1 / (4/255) = -64.25 -> -64.
    const ActivationQuant q = lamda::choose_activation_quant(-1.0f, 3.0f);
    CHECK(q.scale == doctest::Approx(4.0 / 255.0));
    CHECK(q.zero_point == -64);
    CHECK(lamda::quantize(0.0f, q) == -64);      // zero is exact
    CHECK(lamda::dequantize(-64, q) == 0.0f);
    CHECK(lamda::quantize(100.0f, q) == 127);    // saturates
    CHECK(lamda::quantize(-100.0f, q) == -128);
    CHECK(lamda::quantize(std::nanf(""), q) == -64);
    for (float x = -1.0f; x <= 3.0f; x += 0.01f) {
        const float back = lamda::dequantize(lamda::quantize(x, q), q);
        CHECK(std::fabs(back - x) <= q.scale * 0.5f + 1e-6f);
    }
    // A positive-only range is widened to include 0: zero point at the bottom.
    const ActivationQuant r = lamda::choose_activation_quant(0.5f, 6.0f);
    CHECK(r.zero_point == -128);
    CHECK(r.scale == doctest::Approx(6.0 / 255.0));
    // All zeros: still a usable scale.
    CHECK(lamda::activation_quant_ok(lamda::choose_activation_quant(0.0f, 0.0f)));
    CHECK(lamda::activation_quant_ok(lamda::choose_activation_quant(std::nanf(""), 1.0f)));
}

TEST_CASE("quant: symmetric per-channel weights and int32 bias") {
    CHECK(lamda::choose_weight_scale(2.54f) == doctest::Approx(0.02));
    CHECK(lamda::choose_weight_scale(0.0f) == doctest::Approx(1.0 / 127.0));
    const float s = lamda::choose_weight_scale(2.54f);
    CHECK(lamda::quantize_weight(2.54f, s) == 127);
    CHECK(lamda::quantize_weight(-2.54f, s) == -127);  // symmetric: never -128
    CHECK(lamda::quantize_weight(-9.0f, s) == -127);
    CHECK(lamda::quantize_weight(0.03f, s) == 2);      // 1.5 -> 2 (ties to even)
    CHECK(lamda::quantize_weight(0.05f, s) == 2);      // 2.5 -> 2
    CHECK(lamda::quantize_bias(1.0f, 0.1f, 0.02f) == 500);
    CHECK(lamda::quantize_bias(-1.0f, 0.1f, 0.02f) == -500);
}

TEST_CASE("quant: fp32 requantization rounds ties to even and clamps") {
    CHECK(lamda::requantize_fp32(5, 0.5f, 0) == 2);    // 2.5 -> 2
    CHECK(lamda::requantize_fp32(7, 0.5f, 0) == 4);    // 3.5 -> 4
    CHECK(lamda::requantize_fp32(-5, 0.5f, 0) == -2);  // -2.5 -> -2
    CHECK(lamda::requantize_fp32(-7, 0.5f, 10) == 6);  // -3.5 -> -4, + 10
    CHECK(lamda::requantize_fp32(1000, 1.0f, 0) == 127);
    CHECK(lamda::requantize_fp32(-1000, 1.0f, 0) == -128);
    CHECK(lamda::requantize_fp32(std::numeric_limits<std::int32_t>::max(), 255.0f, 5) == 127);
    CHECK(lamda::requantize_fp32(std::numeric_limits<std::int32_t>::min(), 255.0f, 5) == -128);
    // Fused relu: the lower bound is the output zero point.
    const ActivationQuant out{0.1f, -20};
    const auto b = lamda::clamp_bounds(out, 0.0f, std::numeric_limits<float>::infinity());
    CHECK(b.first == -20);
    CHECK(b.second == 127);
    CHECK(lamda::requantize_fp32(-300, 0.25f, out.zero_point, b.first, b.second) == -20);
    const auto b6 = lamda::clamp_bounds(out, 0.0f, 6.0f);
    CHECK(b6.second == 40);  // 6 / 0.1 - 20
    CHECK(lamda::requant_scale_ok(0.5f));
    CHECK_FALSE(lamda::requant_scale_ok(256.0f));
    CHECK_FALSE(lamda::requant_scale_ok(0.0f));
}

TEST_CASE("quant: an int8 dot product requantized stays within one step of float math") {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> xd(-1.0f, 2.0f), wd(-0.5f, 0.5f);
    const ActivationQuant in = lamda::choose_activation_quant(-1.0f, 2.0f);
    for (int trial = 0; trial < 200; ++trial) {
        const int k = 1 + trial % 37;
        std::vector<float> x(static_cast<std::size_t>(k)), w(static_cast<std::size_t>(k));
        float absmax = 0.0f;
        for (int i = 0; i < k; ++i) {
            x[static_cast<std::size_t>(i)] = xd(rng);
            w[static_cast<std::size_t>(i)] = wd(rng);
            absmax = std::max(absmax, std::fabs(w[static_cast<std::size_t>(i)]));
        }
        const float bias = wd(rng);
        const float ws = lamda::choose_weight_scale(absmax);
        // The reference in double on the quantized inputs (what the int8 kernel should compute).
        std::int32_t acc = lamda::quantize_bias(bias, in.scale, ws);
        double real = static_cast<double>(acc) * in.scale * ws;
        for (int i = 0; i < k; ++i) {
            const std::int32_t xq = lamda::quantize(x[static_cast<std::size_t>(i)], in) - in.zero_point;
            const std::int32_t wq = lamda::quantize_weight(w[static_cast<std::size_t>(i)], ws);
            acc += xq * wq;
            real += static_cast<double>(xq) * in.scale * static_cast<double>(wq) * ws;
        }
        const ActivationQuant out = lamda::choose_activation_quant(-4.0f, 4.0f);
        const float s = lamda::conv_requant_scale(in.scale, ws, out.scale);
        REQUIRE(lamda::requant_scale_ok(s));
        const int y = lamda::requantize_fp32(acc, s, out.zero_point);
        const double expect = std::min(127.0, std::max(-128.0, real / out.scale + out.zero_point));
        CHECK(std::fabs(y - expect) <= 0.5 + 1e-3);
    }
}

TEST_CASE("quant: add uses XNNPACK's fixed point and rounds ties up") {
    // a 0.5, b 0.25, out 0.5: a_s = 1, b_s = 0.5, shift 20, multipliers 2^20 and 2^19.
    const ActivationQuant a{0.5f, 0}, b{0.25f, 0}, out{0.5f, 0};
    REQUIRE(lamda::add_scales_ok(a, b, out));
    const lamda::AddRequant p = lamda::make_add_requant(a, b, out);
    CHECK(p.shift == 20);
    CHECK(p.a_multiplier == (1 << 20));
    CHECK(p.b_multiplier == (1 << 19));
    CHECK(lamda::add_requantize(3, 3, p) == 5);     // 1.5 + 0.75 = 2.25 -> 4.5 -> 5 (up)
    CHECK(lamda::add_requantize(-3, -3, p) == -4);  // -4.5 -> -4 (up, not away from zero)
    CHECK(lamda::add_requantize(127, 127, p) == 127);
    CHECK(lamda::add_requantize(-128, -128, p) == -128);
    CHECK_FALSE(lamda::add_scales_ok(ActivationQuant{1e-4f, 0}, b, out));  // a_s < 2^-10
    CHECK_FALSE(lamda::add_scales_ok(ActivationQuant{500.0f, 0}, b, out)); // a_s >= 2^8

    // Random parameters: within one step of the real sum.
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> sd(0.01f, 0.2f);
    std::uniform_int_distribution<int> zd(-128, 127);
    for (int trial = 0; trial < 300; ++trial) {
        const ActivationQuant qa{sd(rng), zd(rng)}, qb{sd(rng), zd(rng)}, qo{sd(rng), zd(rng)};
        if (!lamda::add_scales_ok(qa, qb, qo)) continue;
        const lamda::AddRequant r = lamda::make_add_requant(qa, qb, qo);
        CHECK(r.shift >= 12);
        CHECK(r.shift <= 30);
        for (int i = 0; i < 20; ++i) {
            const auto va = static_cast<std::int8_t>(zd(rng)), vb = static_cast<std::int8_t>(zd(rng));
            const double real = (static_cast<double>(va) - qa.zero_point) * qa.scale +
                                (static_cast<double>(vb) - qb.zero_point) * qb.scale;
            const double expect =
                std::min(127.0, std::max(-128.0, real / qo.scale + qo.zero_point));
            CHECK(std::fabs(lamda::add_requantize(va, vb, r) - expect) <= 0.5 + 1e-3);
        }
    }
}

TEST_CASE("quant: global average pooling bias and scale") {
    const ActivationQuant in{1.0f, 0}, out{1.0f, 0};
    // Pixels 1, 2, 3, 4: sum 10, scale 1/4 -> 2.5 -> 2 (ties to even).
    const std::int32_t acc = lamda::gavgpool_bias(4, in) + 1 + 2 + 3 + 4;
    CHECK(lamda::requantize_fp32(acc, lamda::gavgpool_scale(4, in, out), out.zero_point) == 2);
    // With a zero point: the bias removes n * zp.
    const ActivationQuant in2{0.5f, 10}, out2{0.25f, -3};
    const std::int32_t acc2 = lamda::gavgpool_bias(2, in2) + 14 + 18;  // reals 2.0 and 4.0
    CHECK(lamda::requantize_fp32(acc2, lamda::gavgpool_scale(2, in2, out2), out2.zero_point) ==
          9);  // mean 3.0 / 0.25 - 3
}

TEST_CASE("quant: sigmoid lookup table entry") {
    const ActivationQuant in{0.1f, 5};
    const ActivationQuant out = lamda::sigmoid_output_quant();
    CHECK(lamda::sigmoid_lut_entry(5, in, out) == 0);       // sigmoid(0) = 0.5 -> 128 - 128
    CHECK(lamda::sigmoid_lut_entry(127, in, out) == 127);   // sigmoid(12.2) ~ 1 -> saturates
    CHECK(lamda::sigmoid_lut_entry(-128, in, out) == -128); // sigmoid(-13.3) ~ 0
}

TEST_CASE("quant: validate_quantized_model names bad scales and shapes") {
    lamda::QuantizedModel m;
    lamda::QuantizedWeights l;
    l.layer = "c1";
    l.weight_shape = {2, 1, 1, 1};
    l.weights = {1, -1};
    l.weight_scales = {0.1f, 0.2f};
    l.bias = {0, 0};
    m.layers.push_back(l);
    m.activations.push_back({"x", ActivationQuant{0.1f, 0}});
    CHECK_FALSE(lamda::validate_quantized_model(m).has_value());
    CHECK(m.find_layer("c1") != nullptr);
    CHECK(m.find_activation("x") != nullptr);

    auto bad = m;
    bad.layers[0].weight_scales[1] = 0.0f;
    auto e = lamda::validate_quantized_model(bad);
    REQUIRE(e.has_value());
    CHECK(lamda::format_error(*e).find("c1.weight_scale: scale of channel 1 is zero") !=
          std::string::npos);
    bad = m;
    bad.layers[0].weight_scales[0] = -1.0f;
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
    CHECK(lamda::validate_quantized_model(bad)->message.find("negative") != std::string::npos);
    bad = m;
    bad.activations[0].second.scale = std::nanf("");
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
    CHECK(lamda::validate_quantized_model(bad)->message.find("NaN") != std::string::npos);
    bad = m;
    bad.layers[0].weight_scales = {0.1f, 0.1f, 0.1f};
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
    CHECK(lamda::validate_quantized_model(bad)->message.find("expected 1 or 2") != std::string::npos);
    bad = m;
    bad.layers[0].weights.push_back(3);
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
    bad = m;
    bad.layers[0].bias.pop_back();
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
    bad = m;
    bad.activations[0].second.zero_point = 200;
    REQUIRE(lamda::validate_quantized_model(bad).has_value());
}
