// The latency model: fusion decisions, lowering and features of known graphs, the regressor on
// synthetic data with a known answer, and the profile file (round trip, fingerprint mismatch,
// malformed and truncated input). Deterministic and fast: nothing here is timed.
// Built with LAMDA_WITH_LATENCY (Eigen and simdjson); the fusion tests need nothing else.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/plan.hpp"
#include "lamda/latency/model.hpp"
#if defined(LAMDA_WITH_XNNPACK)
#include "lamda/latency/profiler.hpp"
#endif

namespace {
const lamda::OwnKernels pointwise_only{true, false};  // a device with the fp32/int8 pointwise kernel only

lamda::Graph parse(const char* text) { return lamda::parse_dsl_or_throw(text, "<test>"); }

}  // namespace

TEST_CASE("plan_fusion folds batchnorm and the activation after it into the conv") {
    const lamda::Graph g = parse(
        "x: input shape=8x8x4\n"
        "c: conv2d out=8 kernel=3 bias=false\n"
        "bn: batchnorm\n"
        "r: relu\n"
        "d: dwconv kernel=3 act=relu6\n"
        "r2: relu\n");  // d has act=: r2 is a layer of its own
    const lamda::FusionPlan p = lamda::plan_fusion(g);
    CHECK(p.folded_bn[1] == 2);
    CHECK(p.absorbed_by[2] == 1);
    CHECK(p.absorbed_by[3] == 1);
    CHECK(p.act[1] == lamda::Activation::Relu);
    CHECK(p.tail[1] == 3);
    CHECK(p.absorbed_by[4] == -1);
    CHECK(p.act[4] == lamda::Activation::Relu6);
    CHECK(p.absorbed_by[5] == -1);
}

TEST_CASE("plan_fusion does not fuse into a value with two readers") {
    const lamda::Graph g = parse(
        "x: input shape=8x8x8\n"
        "c: conv2d out=8 kernel=1\n"
        "r: relu c\n"
        "a: add c, r\n"
        "h: hardswish a\n");
    const lamda::FusionPlan p = lamda::plan_fusion(g);
    CHECK(p.absorbed_by[2] == -1);            // c is read by r and a
    CHECK(p.absorbed_by[4] == 3);             // add absorbs hardswish
    CHECK(p.act[3] == lamda::Activation::HardSwish);
}

TEST_CASE("plan_fusion: a batchnorm after an activated conv stays a layer") {
    const lamda::Graph g = parse(
        "x: input shape=4x4x4\n"
        "c: conv2d out=4 kernel=1 act=relu\n"
        "bn: batchnorm\n"
        "s: sigmoid\n");
    const lamda::FusionPlan p = lamda::plan_fusion(g);
    CHECK(p.folded_bn[1] == -1);
    CHECK(p.absorbed_by[2] == -1);
    CHECK(p.absorbed_by[3] == 2);  // the standalone batchnorm absorbs the sigmoid
    CHECK(p.act[2] == lamda::Activation::Sigmoid);
}

#if defined(LAMDA_WITH_LATENCY)

TEST_CASE("lower_for_latency: one operator per planned operator of the executor's plan") {
    const lamda::Graph g = parse(
        "x: input shape=8x8x4\n"
        "c: conv2d out=8 kernel=3 act=hardswish\n"
        "a: add c, c, c act=hardsigmoid\n"
        "r: relu\n"
        "p: maxpool r kernel=1 stride=2\n"
        "f: flatten p\n"
        "k: fc out=3\n");
    const lamda::OpPlan plan = lamda::plan_ops(g);
    using P = lamda::PlannedKind;
    std::vector<P> kinds;
    for (const lamda::PlannedOp& op : plan.ops) kinds.push_back(op.kind);
    CHECK(kinds == std::vector<P>{P::Alias, P::Conv, P::HardSwish, P::Add, P::HardSigmoid, P::Clamp,
                                  P::StridedCopy, P::Alias, P::FullyConnected});
    CHECK(plan.ops[2].in_place());
    CHECK(plan.ops[3].inputs.size() == 3);
    CHECK(plan.ops[3].act == lamda::Activation::None);  // hardsigmoid after an add: its own op
    CHECK(plan.slot(0) >= 0);
    CHECK(plan.slot(5) == plan.slot(4));  // flatten aliases its input's buffer
    std::vector<lamda::PrimOp> ops;
    lamda::lower_for_latency(g, plan, ops);
    std::size_t k = 0;
    for (const lamda::PlannedOp& op : plan.ops) {
        if (op.kind == P::Alias) continue;
        REQUIRE(k < ops.size());
        CHECK(ops[k++].layer == op.layer);
    }
    CHECK(k == ops.size());
    using K = lamda::PrimKind;
    CHECK(ops[1].kind == K::HardSwish);
    CHECK(ops[3].kind == K::HardSigmoid);
    CHECK(ops[4].kind == K::Clamp);
    CHECK(ops[5].kind == K::StridedCopy);
    CHECK(lamda::activation_buffer_bytes(plan) == lamda::activation_buffer_bytes(g, plan.fusion));
}

TEST_CASE("lower_for_latency: the operators a known graph runs") {
    const lamda::Graph g = parse(
        "x: input shape=32x32x3\n"
        "stem: conv2d out=16 kernel=3 stride=2 bias=false\n"
        "bn: batchnorm\n"
        "act: hardswish\n"        // fused, but hardswish is an operator of its own
        "dw: dwconv kernel=3 act=relu\n"
        "dw7: dwconv kernel=7\n"
        "se: gap\n"
        "fc1: conv2d out=4 kernel=1 act=relu\n"
        "fc2: conv2d out=16 kernel=1 act=hardsigmoid\n"
        "m: mul dw7, fc2\n"
        "sum: add m, dw act=relu\n"
        "cat: concat sum, m\n"
        "pool: gap\n"
        "flat: flatten\n"
        "logits: fc out=10\n"
        "prob: softmax\n");
    const std::vector<lamda::PrimOp> ops = lamda::lower_for_latency(g);
    using K = lamda::PrimKind;
    const std::vector<K> kinds{K::Conv, K::HardSwish, K::Depthwise, K::DepthwiseLarge,
                               K::GlobalAvgPool, K::Conv, K::Conv, K::MulBroadcast, K::Add,
                               K::Concat, K::GlobalAvgPool, K::FullyConnected, K::Softmax};
    REQUIRE(ops.size() == kinds.size());
    for (std::size_t i = 0; i < ops.size(); ++i) CHECK(ops[i].kind == kinds[i]);
    // The stem: 32x32x3 -> 16x16x16, kernel 3, stride 2, timed under the stem layer.
    CHECK(ops[0].layer == 1);
    CHECK(ops[0].ih == 32);
    CHECK(ops[0].ic == 3);
    CHECK(ops[0].oh == 16);
    CHECK(ops[0].oc == 16);
    CHECK(ops[0].kh == 3);
    CHECK(ops[0].sh == 2);
    CHECK(ops[1].layer == 1);  // the hardswish runs under the stem too
    CHECK(ops[3].kh == 7);
    CHECK(ops[8].n == 2);      // add of two inputs
    CHECK(ops[9].n == 2);      // concat of two inputs
    CHECK(ops[9].oc == 32);
    CHECK(ops[11].ic == 32);   // fc over 1x1x32
    CHECK(ops[11].oc == 10);
}

TEST_CASE("op_features: a conv's MAC terms") {
    lamda::PrimOp p;
    p.kind = lamda::PrimKind::Conv;
    p.ih = p.iw = p.oh = p.ow = 14;
    p.ic = 32;
    p.oc = 24;
    p.kh = p.kw = 1;
    const lamda::OpFeatures f = lamda::op_features(p);
    CHECK(f.n == lamda::feature_count(lamda::PrimKind::Conv));
    CHECK(f.x[0] == doctest::Approx(196.0 * 24 * 32 * 1e-6));          // MACs
    CHECK(f.x[1] == doctest::Approx(196.0 * 32 * 32 * 1e-6));          // 196 = 28 rows of 7; 24 -> 32
    for (lamda::PrimKind k : lamda::all_prim_kinds) CHECK(lamda::feature_count(k) <= lamda::max_features);
}

TEST_CASE("fit_ridge recovers known coefficients") {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> n01(0.0, 1.0);
    const int n = 400;
    Eigen::MatrixXd X(n, 3);
    Eigen::VectorXd y(n);
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < 3; ++j) X(i, j) = 10.0 * n01(rng) + j;
        y(i) = 2.0 + 0.5 * X(i, 0) - 1.5 * X(i, 1) + 3.0 * X(i, 2) + 0.01 * n01(rng);
    }
    const lamda::RidgeModel m = lamda::fit_ridge_cv(X, y, lamda::default_lambda_grid());
    // Back to raw coefficients: coef_j / scale_j, intercept - sum coef_j mean_j / scale_j.
    const double expected[3] = {0.5, -1.5, 3.0};
    double intercept = m.intercept;
    for (int j = 0; j < 3; ++j) {
        const double raw = m.coef[j] / m.scale[j];
        CHECK(raw == doctest::Approx(expected[j]).epsilon(1e-3));
        intercept -= raw * m.mean[j];
    }
    CHECK(intercept == doctest::Approx(2.0).epsilon(1e-2));
}

TEST_CASE("fit_kind_model: a synthetic device whose clamp costs 1 us + 0.1 ns per element") {
    std::vector<lamda::LatencySample> samples;
    std::mt19937_64 rng(5);
    for (int i = 0; i < 200; ++i) {
        lamda::LatencySample s;
        s.op.kind = lamda::PrimKind::Clamp;
        s.op.oh = s.op.ih = 1 + static_cast<int>(rng() % 64);
        s.op.ow = s.op.iw = 1 + static_cast<int>(rng() % 64);
        s.op.oc = s.op.ic = 1 + static_cast<int>(rng() % 256);
        const double el = double(s.op.oh) * s.op.ow * s.op.oc;
        s.ms = 0.001 + el * 1e-7;
        samples.push_back(s);
    }
    lamda::LatencyModel model;
    model.kind_model(lamda::PrimKind::Clamp) = lamda::fit_kind_model(lamda::PrimKind::Clamp, samples);
    const lamda::KindModel& k = model.kind_model(lamda::PrimKind::Clamp);
    REQUIRE(k.fitted);
    CHECK(k.cv_rel_rmse < 0.01);
    lamda::PrimOp p;
    p.kind = lamda::PrimKind::Clamp;
    p.oh = p.ow = 50;
    p.oc = 100;
    CHECK(model.predict_op(p) == doctest::Approx(0.001 + 250000 * 1e-7).epsilon(0.01));
}

TEST_CASE("fit_calibration recovers a per-model overhead") {
    // A device where every kind is predicted exactly, and models cost 20 us more than their ops.
    std::vector<lamda::LatencySample> samples;
    for (int i = 1; i <= 40; ++i) {
        lamda::LatencySample s;
        s.op.kind = lamda::PrimKind::Clamp;
        s.op.oh = s.op.ow = i;
        s.op.oc = 8;
        s.ms = 0.002 + i * i * 8 * 1e-6;
        samples.push_back(s);
    }
    lamda::LatencyModel model;
    model.kind_model(lamda::PrimKind::Clamp) = lamda::fit_kind_model(lamda::PrimKind::Clamp, samples);
    std::vector<lamda::CalibrationSample> models;
    for (int m = 1; m <= 30; ++m) {
        lamda::CalibrationSample c;
        double sum = 0;
        for (int k = 0; k < m; ++k) {
            lamda::PrimOp p = samples[static_cast<std::size_t>((k * 7 + m) % 40)].op;
            c.ops.push_back(p);
            c.op_ms.push_back(-1);
            sum += samples[static_cast<std::size_t>((k * 7 + m) % 40)].ms;
        }
        c.ms = sum + 0.020;
        models.push_back(c);
    }
    const lamda::Calibration cal = lamda::fit_calibration(model, models, 1e-4);
    CHECK(cal.constant_ms == doctest::Approx(0.020).epsilon(0.1));
    CHECK(cal.scale[2] == doctest::Approx(1.0).epsilon(0.02));
}

TEST_CASE("accuracy_stats") {
    const lamda::AccuracyStats s = lamda::accuracy_stats({1.04, 2.0, 3.3, 5.0}, {1.0, 2.0, 3.0, 4.0});
    CHECK(s.n == 4);
    CHECK(s.within_5pct == doctest::Approx(0.5));
    CHECK(s.within_10pct == doctest::Approx(0.75));
    CHECK(s.mape == doctest::Approx(100 * (0.04 + 0 + 0.1 + 0.25) / 4));
}

namespace {

// A small but complete profile: every kind fitted from synthetic samples, two calibration models.
lamda::LatencyProfile small_profile() {
    lamda::LatencyProfile p;
    p.fingerprint.cpu_model = "Test CPU \"quoted\"";
    p.fingerprint.architecture = "x86_64";
    p.fingerprint.xnnpack_isa = "avx512f";
    p.fingerprint.xnnpack_version = "test";
    p.fingerprint.lamda_version = "0.1.0";
    p.fingerprint.threads = 1;
    p.budget_s = 10;
    p.elapsed_s = 9.5;
    p.load_average = 0.25;
    p.calibration_seed = 77;
    std::mt19937_64 rng(9);
    for (lamda::PrimKind k : lamda::all_prim_kinds)
        for (int i = 0; i < 12; ++i) {
            lamda::LatencySample s;
            s.op.kind = k;
            s.op.ih = s.op.oh = 2 + static_cast<int>(rng() % 30);
            s.op.iw = s.op.ow = s.op.ih;
            s.op.ic = 1 + static_cast<int>(rng() % 64);
            s.op.oc = s.op.ic + 1 + static_cast<int>(rng() % 64);
            s.op.kh = s.op.kw = k == lamda::PrimKind::DepthwiseLarge ? 7 : 3;
            s.op.n = 2;
            s.ms = 0.001 * (1 + static_cast<double>(rng() % 100));
            p.samples.push_back(s);
        }
    for (int m = 0; m < 2; ++m) {
        lamda::CalibrationSample c;
        c.name = "calib-" + std::to_string(m);
        c.family = "chain";
        c.ops = {p.samples[0].op, p.samples[20].op};
        c.op_ms = {0.01, -1};
        c.ms = 0.05;
        if (m == 1) c.activation_bytes = 3.5 * (1 << 20);  // the other as in an older profile
        p.calibration.push_back(c);
    }
    p.model = lamda::fit_latency_model(p.samples, p.calibration);
    return p;
}

}  // namespace

TEST_CASE("profile JSON round trip") {
    const lamda::LatencyProfile p = small_profile();
    const std::string text = lamda::latency_profile_json(p);
    const lamda::LatencyProfile q = lamda::parse_latency_profile(text, "mem.json");
    CHECK(q.fingerprint == p.fingerprint);
    CHECK(q.calibration_seed == 77);
    CHECK(q.load_average == doctest::Approx(0.25));
    REQUIRE(q.samples.size() == p.samples.size());
    for (std::size_t i = 0; i < p.samples.size(); ++i) {
        CHECK(q.samples[i].op.kind == p.samples[i].op.kind);
        CHECK(q.samples[i].op.oc == p.samples[i].op.oc);
        CHECK(q.samples[i].ms == p.samples[i].ms);
    }
    REQUIRE(q.calibration.size() == 2);
    CHECK(q.calibration[1].op_ms == p.calibration[1].op_ms);
    CHECK(q.calibration[0].activation_bytes == -1);
    CHECK(q.calibration[1].activation_bytes == 3.5 * (1 << 20));
    // The same predictions, bit for bit (doubles are written shortest-round-trip).
    const lamda::Graph g = parse(
        "x: input shape=16x16x8\nc: conv2d out=16 kernel=3 act=relu\nd: dwconv kernel=5\n"
        "p: maxpool kernel=2\ng: gap\nf: fc out=10\n");
    CHECK(q.model.predict_ms(g) == p.model.predict_ms(g));
    CHECK(lamda::latency_profile_json(q) == text);
}

TEST_CASE("a model's context counts the executor's reused buffers, not every output") {
    // Ten 64x64x16 convolutions in a chain: ten outputs of 256 KiB, but the executor needs the
    // input and two buffers that alternate (the last output lands in one of them).
    std::string text = "x: input shape=64x64x16\n";
    for (int i = 0; i < 10; ++i) text += "c" + std::to_string(i) + ": conv2d out=16 kernel=3\n";
    const lamda::Graph g = parse(text.c_str());
    const lamda::FusionPlan plan = lamda::plan_fusion(g);
    const double one = 64.0 * 64 * 16 * 4;
    CHECK(lamda::activation_buffer_bytes(g, plan) == doctest::Approx(3 * one));
    const std::vector<lamda::PrimOp> ops = lamda::lower_for_latency(g);
    const double weights = lamda::model_context(ops, 0).footprint_bytes;
    CHECK(lamda::model_context(ops).footprint_bytes == doctest::Approx(weights + 10 * one));
    CHECK(lamda::model_context(ops, lamda::activation_buffer_bytes(g, plan)).footprint_bytes ==
          doctest::Approx(weights + 3 * one));
    // Without reuse, one buffer per value: the input and ten outputs.
    CHECK(lamda::plan_buffers(g, plan, false).total_floats() * 4 == doctest::Approx(11 * one));
}

TEST_CASE("fingerprint mismatch gives a warning naming the difference") {
    lamda::DeviceFingerprint a;
    a.cpu_model = "CPU A";
    a.xnnpack_isa = "avx512f";
    a.threads = 1;
    lamda::DeviceFingerprint b = a;
    CHECK(lamda::fingerprint_warning(a, b).empty());
    b.cpu_model = "CPU B";
    b.threads = 2;
    const std::string w = lamda::fingerprint_warning(a, b);
    CHECK(w.find("warning") != std::string::npos);
    CHECK(w.find("cpu_model: profile 'CPU A', here 'CPU B'") != std::string::npos);
    CHECK(w.find("threads") != std::string::npos);
    CHECK(w.find("xnnpack_isa") == std::string::npos);
}

TEST_CASE("malformed profiles give a clear error naming the field") {
    auto error_of = [](const std::string& text) -> std::string {
        try {
            lamda::parse_latency_profile(text, "p.json");
        } catch (const lamda::ProfileError& e) {
            return e.what();
        }
        return "";
    };
    const std::string good = lamda::latency_profile_json(small_profile());
    CHECK(error_of("").find("not valid JSON") != std::string::npos);
    CHECK(error_of("[1,2]").find("expected an object") != std::string::npos);
    CHECK(error_of("{\"format\":\"other\"}").find("format") != std::string::npos);
    CHECK(error_of("{\"format\":\"lamda-latency-profile\"}").find("version: missing") != std::string::npos);
    CHECK(error_of("{\"format\":\"lamda-latency-profile\",\"version\":99}").find("version 99 is not supported") !=
          std::string::npos);

    auto replaced = [&good](const std::string& from, const std::string& to) {
        std::string s = good;
        const auto at = s.find(from);
        REQUIRE(at != std::string::npos);
        return s.replace(at, from.size(), to);
    };
    CHECK(error_of(replaced("\"threads\":1", "\"threads\":\"one\"")).find("fingerprint.threads") != std::string::npos);
    CHECK(error_of(replaced("\"op\":[\"conv\"", "\"op\":[\"convolution\"")).find("samples[0].op[0]") !=
          std::string::npos);
    CHECK(error_of(replaced("\"coef\":[", "\"coef\":[1,")).find("model.kinds[0]") != std::string::npos);
    CHECK(error_of(replaced("\"ms\":", "\"ms\":-")).find("samples[0].ms") != std::string::npos);
}

TEST_CASE("every truncation of a profile is an error, not a crash") {
    const std::string good = lamda::latency_profile_json(small_profile());
    REQUIRE_NOTHROW(lamda::parse_latency_profile(good));
    // Every prefix (in steps, to stay fast; the first 200 and last 200 bytes one by one).
    int errors = 0, checked = 0;
    for (std::size_t len = 0; len < good.size(); ++len) {
        if (len > 200 && len + 200 < good.size() && len % 97 != 0) continue;
        ++checked;
        try {
            lamda::parse_latency_profile(good.substr(0, len), "cut.json");
        } catch (const lamda::ProfileError&) {
            ++errors;
        }
    }
    CHECK(errors == checked);
}

TEST_CASE("read_latency_profile: a missing file is a ProfileError") {
    CHECK_THROWS_AS(lamda::read_latency_profile("/nonexistent/profile.json"), lamda::ProfileError);
}

namespace {

// small_profile with an int8 part: the same operators timed "in int8" at other times.
lamda::LatencyProfile small_profile_with_int8() {
    lamda::LatencyProfile p = small_profile();
    std::mt19937_64 rng(11);
    for (lamda::LatencySample s : p.samples) {
        s.ms *= 0.3 + 0.01 * static_cast<double>(rng() % 100);
        p.int8_samples.push_back(s);
    }
    p.int8_calibration = p.calibration;
    p.int8_calibration[0].ms = 0.04;
    p.int8_calibration[1].activation_bytes = 0.9 * (1 << 20);
    p.int8_model = lamda::fit_latency_model(p.int8_samples, p.int8_calibration, 10.0, lamda::LatencyPrecision::Int8);
    p.has_int8 = true;
    return p;
}

const char* const mixed_graph =
    "x: input shape=32x32x3\nc: conv2d out=32 kernel=3 stride=2 act=hardswish\nb: batchnorm c\ns: gap b\n"
    "m: mul b, s\nd: dwconv m kernel=7\na: add d, m\nq: concat a, d\np: avgpool q kernel=2\nl: flatten p\n"
    "f: fc out=10\nz: softmax f\n";

}  // namespace

TEST_CASE("profile: fp32 pointwise convolutions on lamda's kernel where the fingerprint lists it") {
    CHECK(lamda::lists_kernel("dw_avx512,pw_avx512,qc8_vnni", "pw_avx512"));
    CHECK(lamda::lists_kernel("pw_avx512", "pw_avx512"));
    CHECK_FALSE(lamda::lists_kernel("dw_avx512,qc8_vnni", "pw_avx512"));
    CHECK_FALSE(lamda::lists_kernel("", "pw_avx512"));
    CHECK_FALSE(lamda::lists_kernel("pw_avx5120,xpw_avx512", "pw_avx512"));
    lamda::LatencyProfile p = small_profile();  // no lamda_kernels: XNNPACK's 1x1 convolutions
    CHECK_FALSE(lamda::parse_latency_profile(lamda::latency_profile_json(p), "before.json").model.own.pointwise);
    p.fingerprint.lamda_kernels = "dw_avx512,pw_avx512";
    p.model = lamda::fit_latency_model(p.samples, p.calibration, 10.0, lamda::LatencyPrecision::Fp32, pointwise_only);
    const lamda::LatencyProfile q = lamda::parse_latency_profile(lamda::latency_profile_json(p), "with.json");
    CHECK(q.model.own.pointwise);
    CHECK(q.model.kind_model(lamda::PrimKind::Conv).own.pointwise);
    CHECK_FALSE(q.model.own.winograd);
    // A profile from before the Winograd feature (a coefficient fewer per conv kind) or before
    // both own-kernel features (two fewer) reads with zeros there; three fewer is an error.
    for (const std::size_t fewer : {1, 2, 3}) {
        lamda::LatencyProfile old = p;
        for (const lamda::PrimKind k : {lamda::PrimKind::Conv, lamda::PrimKind::ConvNarrow}) {
            lamda::KindModel& km = old.model.kind_model(k);
            const std::size_t n = km.ridge.coef.size() - fewer;
            km.ridge.coef.resize(n);
            km.ridge.mean.resize(n);
            km.ridge.scale.resize(n);
        }
        const std::string text = lamda::latency_profile_json(old);
        if (fewer == 3) {
            CHECK_THROWS(lamda::parse_latency_profile(text, "old.json"));
            continue;
        }
        const lamda::LatencyProfile read = lamda::parse_latency_profile(text, "old.json");
        const lamda::KindModel& km = read.model.kind_model(lamda::PrimKind::Conv);
        REQUIRE(km.ridge.coef.size() == static_cast<std::size_t>(lamda::feature_count(lamda::PrimKind::Conv)));
        CHECK(km.ridge.coef.back() == 0);
        CHECK(km.ridge.coef[km.ridge.coef.size() - fewer] == 0);
    }
    const lamda::Graph g = parse("x: input shape=14x14x32\nc: conv2d out=48 kernel=1\n");
    CHECK(q.model.predict_ms(g) == p.model.predict_ms(g));
    // With the Winograd kernel listed too, 3x3 convs count as its work; int8 never does.
    p.fingerprint.lamda_kernels = "dw_avx512,pw_avx512,wino_avx512,qc8_vnni";
    CHECK(lamda::ran_own_kernels(p.fingerprint, lamda::LatencyPrecision::Fp32) == lamda::OwnKernels{true, true});
    CHECK(lamda::ran_own_kernels(p.fingerprint, lamda::LatencyPrecision::Int8) == lamda::OwnKernels{true, false});
    p.model = lamda::fit_latency_model(p.samples, p.calibration, 10.0, lamda::LatencyPrecision::Fp32,
                                       lamda::OwnKernels{true, true});
    const lamda::LatencyProfile w = lamda::parse_latency_profile(lamda::latency_profile_json(p), "wino.json");
    CHECK(w.model.own == lamda::OwnKernels{true, true});
    CHECK(w.model.kind_model(lamda::PrimKind::Conv).own.winograd);
    const lamda::Graph g3 = parse("x: input shape=14x14x32\nc: conv2d out=48 kernel=3\n");
    CHECK(w.model.predict_ms(g3) == p.model.predict_ms(g3));
}

TEST_CASE("latency: convolutions on lamda's own kernels have regressors of their own") {
    // A device whose XNNPACK convolutions cost 2 us + 1 ns per MAC of its 7x16 tile, its own
    // pointwise kernel 10 us + 0.5 ns per MAC of its tile and its Winograd kernel 30 us + 0.3 ns
    // per MAC of its 16 GEMMs plus 0.2 ns per byte of transformed filter: a fixed cost per kind
    // of kernel, which one regressor over all three cannot tell apart.
    const lamda::OwnKernels both{true, true};
    std::mt19937_64 rng(5);
    std::vector<lamda::LatencySample> samples;
    std::array<int, 3> per_family{};
    for (int i = 0; i < 600; ++i) {
        lamda::LatencySample s;
        s.op.kind = lamda::PrimKind::Conv;
        s.op.ih = s.op.iw = s.op.oh = s.op.ow = 4 + static_cast<int>(rng() % 28);
        s.op.ic = 16 + static_cast<int>(rng() % 112);
        s.op.oc = 24 + static_cast<int>(rng() % 104);
        const int shape = i % 3;  // 1x1 (own), 3x3 (Winograd), 3x3 at stride 2 (XNNPACK)
        s.op.kh = s.op.kw = shape == 0 ? 1 : 3;
        if (shape == 2) s.op.sh = s.op.sw = 2, s.op.oh = s.op.ow = (s.op.ih + 1) / 2;
        const double px = double(s.op.oh) * s.op.ow, oc16 = std::ceil(s.op.oc / 16.0) * 16;
        const lamda::OwnConv o = lamda::own_conv_of(s.op, lamda::LatencyPrecision::Fp32, both);
        ++per_family[static_cast<std::size_t>(o)];
        s.ms = o == lamda::OwnConv::Pointwise
                   ? 0.010 + 0.5e-6 * px * oc16 * s.op.ic
                   : o == lamda::OwnConv::Winograd
                         ? 0.030 + 0.3e-6 * lamda::wino_avx512::gemm_work(s.op.oh, s.op.ow, s.op.ic, s.op.oc) +
                               0.2e-6 * 64.0 * s.op.ic * s.op.oc
                         : 0.002 + 1e-6 * std::ceil(px / 7) * 7 * oc16 * 9 * s.op.ic;
        samples.push_back(s);
    }
    REQUIRE(per_family == std::array<int, 3>{200, 200, 200});
    const lamda::LatencyModel m = lamda::fit_latency_model(samples, {}, 10.0, lamda::LatencyPrecision::Fp32, both);
    CHECK(m.kind_model(lamda::PrimKind::Conv).samples == 200);  // XNNPACK's only
    CHECK(m.own_conv_model(lamda::OwnConv::Pointwise).samples == 200);
    CHECK(m.own_conv_model(lamda::OwnConv::Winograd).samples == 200);
    double worst = 0;
    for (const lamda::LatencySample& s : samples) worst = std::max(worst, std::abs(m.predict_op(s.op) / s.ms - 1));
    CHECK(worst < 0.03);
    // One regressor over all of them, as before (a profile without the own kernels' regressors
    // reads so): the fixed costs blur.
    lamda::LatencyModel one = m;
    for (lamda::KindModel& k : one.own_conv) k.fitted = false;
    one.kind_model(lamda::PrimKind::Conv) =
        lamda::fit_kind_model(lamda::PrimKind::Conv, samples, nullptr, nullptr, lamda::LatencyPrecision::Fp32, both);
    double worst_one = 0;
    for (const lamda::LatencySample& s : samples) worst_one = std::max(worst_one, std::abs(one.predict_op(s.op) / s.ms - 1));
    CHECK(worst_one > 2 * worst);

    // Through a profile file: kept bit for bit; a file without them (an older lamda's) predicts
    // with the conv kind's regressor; an unknown kernel is refused with where it is.
    lamda::LatencyProfile p = small_profile();
    p.fingerprint.lamda_kernels = "pw_avx512,wino_avx512";
    p.samples = samples;
    p.model = m;
    const std::string text = lamda::latency_profile_json(p);
    const lamda::LatencyProfile q = lamda::parse_latency_profile(text, "own.json");
    REQUIRE(q.model.own_conv_model(lamda::OwnConv::Winograd).fitted);
    const lamda::Graph g = parse("x: input shape=14x14x32\nc: conv2d out=48 kernel=3\nd: conv2d out=64 kernel=1\n");
    CHECK(q.model.predict_ms(g) == m.predict_ms(g));
    const std::size_t at = text.find("\"own_conv\":");
    REQUIRE(at != std::string::npos);
    std::string older = text;
    older.replace(at, std::string("\"own_conv\":").size(), "\"unused_key\":");
    const lamda::LatencyProfile r = lamda::parse_latency_profile(older, "older.json");
    CHECK_FALSE(r.model.own_conv_model(lamda::OwnConv::Pointwise).fitted);
    CHECK(&r.model.regressor(samples[0].op) == &r.model.kind_model(lamda::PrimKind::Conv));
    CHECK(r.model.predict_ms(g) != m.predict_ms(g));
    std::string bad = text;
    bad.replace(bad.find("\"kernel\":\"winograd\""), std::string("\"kernel\":\"winograd\"").size(), "\"kernel\":\"fft\"");
    try {
        (void)lamda::parse_latency_profile(bad, "bad.json");
        FAIL("an unknown kernel was accepted");
    } catch (const lamda::ProfileError& e) {
        CHECK(std::string(e.what()).find("model.own_conv[1].kernel") != std::string::npos);
        CHECK(std::string(e.what()).find("unknown kernel 'fft'") != std::string::npos);
    }
}

TEST_CASE("latency: a dilated 3x3 convolution is XNNPACK's, not the Winograd kernel's, and its dilation is kept") {
    const lamda::Graph g = parse("x: input shape=16x16x32\n"
                                 "c: conv2d out=48 kernel=3 padding=same\n"
                                 "d: conv2d out=48 kernel=3 dilation=2 padding=same\n");
    const std::vector<lamda::PrimOp> ops = lamda::lower_for_latency(g);
    REQUIRE(ops.size() == 2);
    CHECK(ops[0].dh == 1);
    CHECK(ops[1].dh == 2);
    CHECK(ops[1].dw == 2);
    const lamda::OwnKernels both{true, true};
    CHECK(lamda::own_conv_of(ops[0], lamda::LatencyPrecision::Fp32, both) == lamda::OwnConv::Winograd);
    CHECK(lamda::own_conv_of(ops[1], lamda::LatencyPrecision::Fp32, both) == lamda::OwnConv::None);
    // In a profile: 15 fields where there is a dilation, the 13 of before where there is none.
    lamda::LatencyProfile p = small_profile();
    p.calibration[0].ops = ops;
    p.calibration[0].op_ms = {0.01, 0.02};
    const std::string text = lamda::latency_profile_json(p);
    CHECK(text.find("[\"conv\",16,16,32,16,16,48,3,3,1,1,1,1]") != std::string::npos);
    CHECK(text.find("[\"conv\",16,16,48,16,16,48,3,3,1,1,1,1,2,2]") != std::string::npos);
    const lamda::LatencyProfile q = lamda::parse_latency_profile(text, "dilated.json");
    CHECK(q.calibration[0].ops[1].dh == 2);
    CHECK(q.calibration[0].ops[0].dw == 1);
    std::string bad = text;
    const std::string op15 = "[\"conv\",16,16,48,16,16,48,3,3,1,1,1,1,2,2]";
    bad.replace(bad.find(op15), op15.size(), "[\"conv\",16,16,48,16,16,48,3,3,1,1,1,1,2]");
    try {
        (void)lamda::parse_latency_profile(bad, "bad.json");
        FAIL("a 14-field operator was accepted");
    } catch (const lamda::ProfileError& e) {
        CHECK(std::string(e.what()).find("calibration_models[0].ops[1]") != std::string::npos);
    }
}

TEST_CASE("profile JSON round trip with an int8 part") {
    const lamda::LatencyProfile p = small_profile_with_int8();
    REQUIRE(p.int8_model.precision == lamda::LatencyPrecision::Int8);
    const std::string text = lamda::latency_profile_json(p);
    const lamda::LatencyProfile q = lamda::parse_latency_profile(text, "mem.json");
    REQUIRE(q.has_int8);
    CHECK(q.int8_model.precision == lamda::LatencyPrecision::Int8);
    CHECK(q.int8_model.kind_model(lamda::PrimKind::Conv).precision == lamda::LatencyPrecision::Int8);
    CHECK(q.model.kind_model(lamda::PrimKind::Conv).precision == lamda::LatencyPrecision::Fp32);
    REQUIRE(q.int8_samples.size() == p.int8_samples.size());
    for (std::size_t i = 0; i < p.int8_samples.size(); ++i) CHECK(q.int8_samples[i].ms == p.int8_samples[i].ms);
    REQUIRE(q.int8_calibration.size() == 2);
    CHECK(q.int8_calibration[1].activation_bytes == 0.9 * (1 << 20));
    CHECK(q.int8_calibration[0].ms == 0.04);
    const lamda::Graph g = parse(mixed_graph);
    // Each precision predicts from its own model, bit for bit after the round trip.
    CHECK(q.model_for(lamda::LatencyPrecision::Int8).predict_ms(g) == p.int8_model.predict_ms(g));
    CHECK(q.model_for(lamda::LatencyPrecision::Fp32).predict_ms(g) == p.model.predict_ms(g));
    CHECK(p.int8_model.predict_ms(g) != p.model.predict_ms(g));
    // The int8 part says whether pointwise convs ran on lamda's VNNI kernel; its model keeps it.
    CHECK_FALSE(q.int8_model.own.pointwise);
    lamda::LatencyProfile v = p;
    v.int8_model = lamda::fit_latency_model(v.int8_samples, v.int8_calibration, 10.0, lamda::LatencyPrecision::Int8, pointwise_only);
    const lamda::LatencyProfile w = lamda::parse_latency_profile(lamda::latency_profile_json(v), "mem.json");
    CHECK(w.int8_model.own.pointwise);
    CHECK(w.int8_model.kind_model(lamda::PrimKind::Conv).own.pointwise);
    CHECK(w.model_for(lamda::LatencyPrecision::Int8).predict_ms(g) == v.int8_model.predict_ms(g));
    CHECK(lamda::latency_profile_json(q) == text);
    // An int8 part fitted on the int8 features before version 2 (no "features_version") is read but
    // never predicts: its coefficients belong to other features.
    std::string old_int8 = text;
    const std::string version_field =
        "\"features_version\":" + std::to_string(lamda::int8_conv_features_version) + ",";
    const auto version_at = old_int8.find(version_field);
    REQUIRE(version_at != std::string::npos);
    old_int8.erase(version_at, version_field.size());
    const lamda::LatencyProfile o = lamda::parse_latency_profile(old_int8, "old8.json");
    CHECK_FALSE(o.has_int8);
    CHECK(o.int8_outdated);
    CHECK(o.model_for(lamda::LatencyPrecision::Fp32).predict_ms(g) == p.model.predict_ms(g));
    CHECK_THROWS_WITH_AS((void)o.model_for(lamda::LatencyPrecision::Int8, "old8.json"),
                         doctest::Contains("old8.json: error: this latency profile's int8 model was fitted by an older lamda"),
                         lamda::ProfileError);
    // A malformed int8 part names its field under "int8.".
    std::string bad = text;
    const auto at = bad.find("\"ms\":", bad.find("\"int8\":"));
    REQUIRE(at != std::string::npos);
    bad.replace(at, 5, "\"ms\":-");
    try {
        lamda::parse_latency_profile(bad, "bad.json");
        FAIL("a negative int8 time was accepted");
    } catch (const lamda::ProfileError& e) {
        CHECK(std::string(e.what()).find("int8.samples[0].ms") != std::string::npos);
    }
}

TEST_CASE("an fp32-only profile written before int8 loads and predicts fp32 as it did") {
    // tests/latency/fp32_only_profile.json: small_profile's model (samples left out), written by
    // lamda at commit 0a85e3a, before profiles had an int8 part; that lamda predicted these two
    // numbers (printf %.17g) for the two graphs from it. Its conv kinds have one feature fewer
    // (before the VNNI pointwise one): read with a zero coefficient there, the same predictions.
    const lamda::LatencyProfile p =
        lamda::read_latency_profile(std::string(LAMDA_SOURCE_DIR) + "/tests/latency/fp32_only_profile.json");
    CHECK_FALSE(p.has_int8);
    const lamda::Graph g = parse(
        "x: input shape=16x16x8\nc: conv2d out=16 kernel=3 act=relu\nd: dwconv kernel=5\n"
        "p: maxpool kernel=2\ng: gap\nf: fc out=10\n");
    CHECK(p.model.predict_ms(g) == doctest::Approx(0.21243264551534002).epsilon(1e-12));
    CHECK(p.model_for(lamda::LatencyPrecision::Fp32).predict_ms(parse(mixed_graph)) ==
          doctest::Approx(4.300383440395561).epsilon(1e-12));
    // Asking it for int8 is an error that names the file and says what to run.
    try {
        (void)p.model_for(lamda::LatencyPrecision::Int8, "old.json");
        FAIL("an fp32-only profile gave an int8 model");
    } catch (const lamda::ProfileError& e) {
        const std::string what = e.what();
        CHECK(what.find("old.json") != std::string::npos);
        CHECK(what.find("no int8 model") != std::string::npos);
        CHECK(what.find("lamda profile --precision both") != std::string::npos);
    }
    // Written again it stays fp32-only (no "int8" part).
    CHECK(lamda::latency_profile_json(p).find("\"int8\"") == std::string::npos);
}

TEST_CASE("op_features in int8: a byte per value where the kind runs in int8, four where it runs in float") {
    lamda::PrimOp conv;
    conv.kind = lamda::PrimKind::Conv;
    conv.ih = conv.iw = conv.oh = conv.ow = 28;
    conv.ic = 32;
    conv.oc = 64;
    conv.kh = conv.kw = 3;
    CHECK(lamda::op_weight_bytes(conv, lamda::LatencyPrecision::Int8) * 4 == lamda::op_weight_bytes(conv));
    lamda::PrimOp clamp;
    clamp.kind = lamda::PrimKind::Clamp;
    clamp.ih = clamp.iw = clamp.oh = clamp.ow = 28;
    clamp.ic = clamp.oc = 32;
    lamda::PrimOp softmax = clamp;
    softmax.kind = lamda::PrimKind::Softmax;
    const auto f32 = lamda::op_features(clamp), i8 = lamda::op_features(clamp, {}, lamda::LatencyPrecision::Int8);
    REQUIRE(f32.n == i8.n);
    CHECK(i8.x[0] == f32.x[0]);              // elements: the same work
    CHECK(i8.x[1] * 4 == doctest::Approx(f32.x[1]));  // bytes moved: a quarter
    CHECK_FALSE(lamda::runs_int8(lamda::PrimKind::Softmax));
    const auto s32 = lamda::op_features(softmax), s8 = lamda::op_features(softmax, {}, lamda::LatencyPrecision::Int8);
    for (int i = 0; i < s32.n; ++i) CHECK(s8.x[static_cast<std::size_t>(i)] == s32.x[static_cast<std::size_t>(i)]);
    // A pointwise conv on the VNNI kernel: its work in its own slot, none in XNNPACK's MAC and
    // tile slots; a 3x3 conv or a device without VNNI: unchanged.
    lamda::PrimOp pw = conv;
    pw.kh = pw.kw = 1;
    const auto xnn = lamda::op_features(pw, {}, lamda::LatencyPrecision::Int8, {});
    const auto own = lamda::op_features(pw, {}, lamda::LatencyPrecision::Int8, pointwise_only);
    REQUIRE(own.n == xnn.n);
    CHECK(xnn.x[0] > 0);
    CHECK(own.x[0] == 0);
    CHECK(own.x[1] == 0);
    // The own kernels' GEMM work is the second last feature, the Winograd transforms the last.
    const auto last = static_cast<std::size_t>(own.n - 2), transforms = static_cast<std::size_t>(own.n - 1);
    CHECK(xnn.x[last] == 0);
    CHECK(own.x[last] == doctest::Approx(1e-6 * 786 * 64 * 32));  // 784 pixels padded to 6s
    CHECK(own.x[transforms] == 0);
    CHECK(lamda::feature_count_before_vnni(lamda::PrimKind::Conv) == own.n - 2);
    CHECK(lamda::feature_count_before_winograd(lamda::PrimKind::Conv) == own.n - 1);
    CHECK(lamda::runs_on_own_pointwise(pw, lamda::LatencyPrecision::Int8, true));
    CHECK_FALSE(lamda::runs_on_own_pointwise(conv, lamda::LatencyPrecision::Int8, true));
    // fp32 on lamda's AVX-512 pointwise kernel: the same slots, its work unpadded in pixels; with
    // 16 outputs or fewer the executor keeps XNNPACK's, and so do the features.
    CHECK(lamda::runs_on_own_pointwise(pw, lamda::LatencyPrecision::Fp32, true));
    const auto f32_xnn = lamda::op_features(pw);
    const auto f32_own = lamda::op_features(pw, {}, lamda::LatencyPrecision::Fp32, pointwise_only);
    CHECK(f32_xnn.x[0] > 0);
    CHECK(f32_xnn.x[last] == 0);
    CHECK(f32_own.x[0] == 0);
    CHECK(f32_own.x[1] == 0);
    CHECK(f32_own.x[last] == doctest::Approx(1e-6 * 784 * 64 * 32));
    lamda::PrimOp narrow = pw;
    narrow.oc = 16;
    CHECK_FALSE(lamda::runs_on_own_pointwise(narrow, lamda::LatencyPrecision::Fp32, true));
    CHECK(lamda::runs_on_own_pointwise(narrow, lamda::LatencyPrecision::Int8, true));
    lamda::PrimOp grey = pw;  // one input channel: its own cost family, the same kernel in fp32
    grey.kind = lamda::PrimKind::ConvNarrow;
    grey.ic = 1;
    CHECK(lamda::runs_on_own_pointwise(grey, lamda::LatencyPrecision::Fp32, true));
    CHECK_FALSE(lamda::runs_on_own_pointwise(grey, lamda::LatencyPrecision::Int8, true));
    lamda::PrimOp padded = pw;  // padding=1 grows the map: XNNPACK's in the executor
    padded.oh = padded.ow = 30;
    CHECK_FALSE(lamda::runs_on_own_pointwise(padded, lamda::LatencyPrecision::Fp32, true));
    const auto f32_narrow = lamda::op_features(narrow, {}, lamda::LatencyPrecision::Fp32, pointwise_only);
    const auto f32_narrow_plain = lamda::op_features(narrow);
    for (int i = 0; i < f32_narrow.n; ++i)
        CHECK(f32_narrow.x[static_cast<std::size_t>(i)] == f32_narrow_plain.x[static_cast<std::size_t>(i)]);
    // fp32 3x3 stride-1 convs on lamda's Winograd kernel: its 16 GEMMs (4x4 points per 2x2
    // outputs, outputs in 16-lane registers) in the own slot, no XNNPACK MAC, tile or indirection
    // work, the transformed filters' bytes; int8, stride 2, few channels or no kernel: unchanged.
    const lamda::OwnKernels winograd{true, true};
    CHECK(lamda::runs_on_own_winograd(conv, lamda::LatencyPrecision::Fp32, true));
    CHECK_FALSE(lamda::runs_on_own_winograd(conv, lamda::LatencyPrecision::Fp32, false));
    CHECK_FALSE(lamda::runs_on_own_winograd(conv, lamda::LatencyPrecision::Int8, true));
    CHECK_FALSE(lamda::runs_on_own_winograd(pw, lamda::LatencyPrecision::Fp32, true));
    lamda::PrimOp strided = conv;
    strided.sh = strided.sw = 2;
    strided.oh = strided.ow = 14;
    CHECK_FALSE(lamda::runs_on_own_winograd(strided, lamda::LatencyPrecision::Fp32, true));
    lamda::PrimOp few = conv;  // 8 inputs: the transforms outweigh the products saved
    few.ic = 8;
    CHECK_FALSE(lamda::runs_on_own_winograd(few, lamda::LatencyPrecision::Fp32, true));
    const auto w_xnn = lamda::op_features(conv, {}, lamda::LatencyPrecision::Fp32, pointwise_only);
    const auto w_own = lamda::op_features(conv, {}, lamda::LatencyPrecision::Fp32, winograd);
    REQUIRE(w_own.n == w_xnn.n);
    CHECK(w_xnn.x[0] > 0);
    CHECK(w_xnn.x[last] == 0);
    CHECK(w_own.x[0] == 0);
    CHECK(w_own.x[1] == 0);
    CHECK(w_own.x[4] == 0);  // indirection
    CHECK(w_own.x[5] == 0);  // IGEMM's walk over the taps
    CHECK(w_own.x[last] == doctest::Approx(1e-6 * 16 * 14 * 14 * 32 * 64));
    CHECK(w_xnn.x[transforms] == 0);
    CHECK(w_own.x[transforms] == doctest::Approx(1e-6 * 16 * 14 * 14 * (32 + 64)));
    const std::size_t filter_bytes = 12;
    CHECK(w_xnn.x[filter_bytes] == doctest::Approx(1e-6 * 4 * 64 * 9 * 32));
    CHECK(w_own.x[filter_bytes] == doctest::Approx(1e-6 * 4 * 64 * 16 * 32));
    const auto w_strided = lamda::op_features(strided, {}, lamda::LatencyPrecision::Fp32, winograd);
    const auto w_strided_plain = lamda::op_features(strided);
    for (int i = 0; i < w_strided.n; ++i)
        CHECK(w_strided.x[static_cast<std::size_t>(i)] == w_strided_plain.x[static_cast<std::size_t>(i)]);
    // A model's footprint in int8: its int8 weights and a byte per buffered value.
    const std::vector<lamda::PrimOp> ops{conv, clamp};
    CHECK(lamda::model_context(ops, 1000, lamda::LatencyPrecision::Int8).footprint_bytes ==
          doctest::Approx(lamda::op_weight_bytes(conv) / 4 + 1000));
}

#endif  // LAMDA_WITH_LATENCY

TEST_CASE("op_features: context terms are zero for a probe and follow the model's context") {
    lamda::PrimOp p;
    p.kind = lamda::PrimKind::FullyConnected;
    p.ic = 1000;
    p.oc = 250;  // 1 MB of weights
    const lamda::OpFeatures alone = lamda::op_features(p);
    const int d = lamda::feature_count(p.kind);
    CHECK(alone.n == d);
    for (int j = d - 8; j < d; ++j) CHECK(alone.x[static_cast<std::size_t>(j)] == 0.0);
    // The rest of the model: 16 MiB more than the operator's own bytes (weights, input, output).
    lamda::OpContext ctx;
    ctx.in_model = 1;
    ctx.footprint_bytes = 4.0 * (1000 * 250 + 1000 + 250) + 16.0 * (1 << 20);
    const lamda::OpFeatures in = lamda::op_features(p, ctx);
    CHECK(in.n == d);
    for (int j = 0; j < d - 8; ++j) CHECK(in.x[static_cast<std::size_t>(j)] == alone.x[static_cast<std::size_t>(j)]);
    CHECK(in.x[static_cast<std::size_t>(d - 8)] == 1.0);                          // in a model
    CHECK(in.x[static_cast<std::size_t>(d - 6)] == doctest::Approx(1.0));         // cold_l2: 16 MiB >= 4
    CHECK(in.x[static_cast<std::size_t>(d - 4)] == doctest::Approx(1.0 * 1.0));   // cold_l2 x weight MB
    CHECK(in.x[static_cast<std::size_t>(d - 1)] == doctest::Approx(0.5 * 1.0));   // cold_l3 = log2(16/8)/2
}

TEST_CASE("model_context: the rest of the model decides how cold an operator's data is") {
    lamda::PrimOp fc;
    fc.kind = lamda::PrimKind::FullyConnected;
    fc.ic = 1024;
    fc.oc = 256 * 16;  // 16 MiB of weights
    const lamda::OpContext one = lamda::model_context({fc});
    CHECK(one.in_model == 1.0);
    CHECK(one.footprint_bytes == doctest::Approx(4.0 * (1024.0 * 4096 + 4096)));
    CHECK(one.large == doctest::Approx(0.6).epsilon(1e-3));  // log2(16/2) / 5
    // Alone in its model, the fc's weights are all there is: nothing else evicts them.
    const auto own = lamda::context_cold(one, lamda::op_weight_bytes(fc) + 4.0 * (1024 + 4096));
    CHECK(own.first == 0.0);
    CHECK(own.second == 0.0);
    // A small operator beside it finds its data evicted by 16 MiB of other data.
    const auto small = lamda::context_cold(one, 8.0);
    CHECK(small.first == 1.0);
    CHECK(small.second == doctest::Approx(0.5).epsilon(1e-3));
}

TEST_CASE("in_model_samples: a layer of several operators shares its time by prediction") {
    // Clamp alone costs 1 us per 1e4 elements; a calibration model of one layer of two clamps
    // (10000 and 30000 elements) timed 0.008 ms in all, then a clamp timed alone.
    std::vector<lamda::LatencySample> samples;
    for (int i = 1; i <= 40; ++i) {
        lamda::LatencySample s;
        s.op.kind = lamda::PrimKind::Clamp;
        s.op.oh = s.op.ow = 10;
        s.op.oc = 10 * i;
        s.ms = 1e-7 * 100 * 10 * i;
        samples.push_back(s);
    }
    lamda::LatencyModel model;
    model.kind_model(lamda::PrimKind::Clamp) = lamda::fit_kind_model(lamda::PrimKind::Clamp, samples);
    lamda::CalibrationSample c;
    lamda::PrimOp a = samples[9].op, b = samples[29].op, e = samples[0].op;
    for (const lamda::PrimOp& op : {a, b, e, e}) c.ops.push_back(op);
    c.op_ms = {0.008, -1, 0.5, 0};  // the last was not timed
    c.ms = 0.6;
    const std::vector<lamda::LatencySample> s = lamda::in_model_samples(model, {c}, 2.0);
    REQUIRE(s.size() == 3);
    CHECK(s[0].ms == doctest::Approx(0.002).epsilon(0.02));
    CHECK(s[1].ms == doctest::Approx(0.006).epsilon(0.02));
    CHECK(s[0].weight == 1.0);  // half weight for a shared layer
    CHECK(s[2].ms == 0.5);
    CHECK(s[2].weight == 2.0);
    CHECK(s[2].ctx.in_model == 1.0);
}

TEST_CASE("fit_latency_model learns an operator's extra cost inside models from calibration models") {
    // Synthetic device: a clamp alone costs 1 us + 0.1 ns per element; inside a model it costs
    // 3 us more (an in-model fixed cost). Probes cover the sizes; the calibration models (one
    // clamp each, timed in the model) carry the context.
    std::vector<lamda::LatencySample> samples;
    std::mt19937_64 rng(11);
    auto clamp_op = [&rng] {
        lamda::PrimOp p;
        p.kind = lamda::PrimKind::Clamp;
        p.oh = p.ih = 1 + static_cast<int>(rng() % 32);
        p.ow = p.iw = p.oh;
        p.oc = p.ic = 1 + static_cast<int>(rng() % 128);
        return p;
    };
    auto alone_ms = [](const lamda::PrimOp& p) { return 0.001 + double(p.oh) * p.ow * p.oc * 1e-7; };
    for (int i = 0; i < 200; ++i) {
        lamda::LatencySample s;
        s.op = clamp_op();
        s.ms = alone_ms(s.op);
        samples.push_back(s);
    }
    std::vector<lamda::CalibrationSample> models;
    for (int m = 0; m < 60; ++m) {
        lamda::CalibrationSample c;
        c.ops.push_back(clamp_op());
        c.op_ms.push_back(alone_ms(c.ops[0]) + 0.003);
        c.ms = c.op_ms[0];
        models.push_back(c);
    }
    const lamda::LatencyModel m = lamda::fit_latency_model(samples, models);
    lamda::PrimOp p;
    p.kind = lamda::PrimKind::Clamp;
    p.oh = p.ow = 20;
    p.oc = 64;
    CHECK(m.predict_op(p) == doctest::Approx(alone_ms(p)).epsilon(0.03));
    CHECK(m.predict_op(p, lamda::model_context({p})) == doctest::Approx(alone_ms(p) + 0.003).epsilon(0.03));
    // A whole model of that one operator predicts its in-model time.
    const lamda::Graph g = parse("x: input shape=20x20x64\nr: relu6\n");
    CHECK(m.predict_ms(g) == doctest::Approx(alone_ms(p) + 0.003).epsilon(0.05));
}

TEST_CASE("fit_calibration: one model timed under interference does not pull the fit") {
    std::vector<lamda::LatencySample> samples;
    for (int i = 1; i <= 40; ++i) {
        lamda::LatencySample s;
        s.op.kind = lamda::PrimKind::Clamp;
        s.op.oh = s.op.ow = i;
        s.op.oc = 8;
        s.ms = 0.002 + i * i * 8 * 1e-6;
        samples.push_back(s);
    }
    lamda::LatencyModel model;
    model.kind_model(lamda::PrimKind::Clamp) = lamda::fit_kind_model(lamda::PrimKind::Clamp, samples);
    std::vector<lamda::CalibrationSample> models;
    for (int m = 1; m <= 30; ++m) {
        lamda::CalibrationSample c;
        double sum = 0;
        for (int k = 0; k < 5; ++k) {
            const lamda::LatencySample& s = samples[static_cast<std::size_t>((k * 7 + m) % 40)];
            c.ops.push_back(s.op);
            c.op_ms.push_back(0);
            sum += s.ms;
        }
        c.ms = (m == 7 ? 3.0 : 1.0) * sum;  // model 7 measured while the machine was busy
        models.push_back(c);
    }
    const lamda::Calibration cal = lamda::fit_calibration(model, models, 1e-4);
    CHECK(cal.scale[2] == doctest::Approx(1.0).epsilon(0.02));
}

#if defined(LAMDA_WITH_XNNPACK)
TEST_CASE("profile_device with int8: int8 predictions order models of very different sizes as measured") {
    // A short profile (2 s of fp32, 6 s of int8) on the real executor, then four models whose
    // int8 times differ by several times each (0.02, 1.8, 42 and 174 million MACs): the predictions must order them as measured, and
    // the largest be predicted within a factor of 3 in optimised builds (about 0.7x here). Loose on purpose: timings on a shared
    // machine move by tens of percent, the sizes by 4x and more.
    lamda::ProfileOptions o;
    o.budget_s = 8;
    o.int8 = true;
    o.int8_share = 0.75;
    o.seed = 5;
    std::vector<std::pair<std::string, lamda::Graph>> calibration;
    for (int i = 0; i < 4; ++i) {
        const std::string c = std::to_string(8 * (i + 1));
        calibration.emplace_back("calib" + std::to_string(i),
                                 parse(("x: input shape=24x24x3\na: conv2d out=" + c + " kernel=3 act=relu\n"
                                        "b: dwconv kernel=3 act=relu6\nc: conv2d out=" + c + " kernel=1\nd: add b, c\n"
                                        "g: gap\nf: fc out=10\n").c_str()));
    }
    const lamda::LatencyProfile prof = lamda::profile_device(o, calibration);
    REQUIRE(prof.has_int8);
    REQUIRE(prof.int8_samples.size() >= 4);
    CHECK(prof.int8_model.kind_model(lamda::PrimKind::Conv).fitted);
    // A fit on a handful of timings does not have to order the models: under qemu (6 s of
    // emulated int8) one predicted the 174 MMAC model at 0.12 ms after 5.4 ms for the 42 MMAC one,
    // and under ASan in a parallel ctest 8 timings predicted 22.9 ms after 28.6 (measured 4.4 after
    // 1.6; CI, 2026-12-04). Natively, optimised, the profile has dozens and the order is checked.
#if defined(LAMDA_TESTS_EMULATED)
    // Under qemu even a dozen emulated timings predicted 4.0 ms after 31.4 (measured 232 after 63).
    const bool rich_profile = false;
#else
    const bool rich_profile = prof.int8_samples.size() > 10;
#endif
    if (!rich_profile) MESSAGE("thin int8 profile (" << prof.int8_samples.size() << " timings): predicted order not checked");
    const char* const sizes[] = {
        "x: input shape=8x8x4\nc: conv2d out=8 kernel=3 act=relu\ng: gap\nf: fc out=4\n",
        "x: input shape=28x28x8\nc: conv2d out=32 kernel=3 act=relu\nd: dwconv kernel=3 act=relu6\ng: gap\nf: fc out=10\n",
        "x: input shape=56x56x16\nc: conv2d out=64 kernel=3 act=relu\nd: dwconv kernel=3 act=relu6\n"
        "e: conv2d out=64 kernel=1\ng: gap\nf: fc out=10\n",
        "x: input shape=56x56x32\nc: conv2d out=64 kernel=3 act=relu\ne: conv2d out=64 kernel=3 act=relu\n"
        "g: gap\nf: fc out=10\n"};
    std::vector<double> predicted, measured;
    for (const char* text : sizes) {
        const lamda::Graph g = parse(text);
        predicted.push_back(prof.model_for(lamda::LatencyPrecision::Int8).predict_ms(g));
        measured.push_back(lamda::measure_model_ms(g, 1, 7, 1, 2.0, 0.5, lamda::LatencyPrecision::Int8));
    }
    for (std::size_t i = 1; i < predicted.size(); ++i) {
        INFO("model " << i << ": predicted " << predicted[i] << " ms after " << predicted[i - 1]
                      << ", measured " << measured[i] << " ms after " << measured[i - 1]);
        CHECK(measured[i] > measured[i - 1]);
        if (rich_profile) CHECK(predicted[i] > predicted[i - 1]);
    }
#if defined(__OPTIMIZE__) && !defined(LAMDA_TESTS_EMULATED)
    REQUIRE(rich_profile);  // an optimised native build times dozens of operators in 6 s
    // Unoptimised (CI's Debug + sanitizer build) lamda's own code around XNNPACK's prebuilt
    // kernels (conversions, requantization, copies) runs many times slower than here and its
    // share moves with the load of a parallel ctest: predicted 0.56 against measured 2.08 ms
    // there once. The ordering above holds in every build; the factor is an optimised build's.
    // A burst of load from the rest of a parallel ctest can triple one measurement (predicted
    // 0.61 against measured 1.93 ms in an optimised build, CI 2026-12-05; 0.7x as a rule): the
    // largest model is measured up to twice more where it looks off, and the fastest kept.
    double largest = measured.back();
    for (int again = 0; again < 2 && !(predicted.back() > largest / 3); ++again)
        largest = std::min(largest, lamda::measure_model_ms(parse(sizes[3]), 1, 7, 1, 2.0, 0.5,
                                                            lamda::LatencyPrecision::Int8));
    INFO("largest: predicted " << predicted.back() << " ms, measured " << largest << " ms");
    CHECK(predicted.back() > largest / 3);
    CHECK(predicted.back() < 3 * largest);
#endif
}
#endif
