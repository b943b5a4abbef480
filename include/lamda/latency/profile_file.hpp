// lamda/latency/profile_file.hpp: a device's latency profile: the fingerprint of the device and
// setup it was measured on, its samples, calibration models and fitted model, written as JSON
// (JsonWriter) and read back with simdjson, every field checked.
//
//   lamda::LatencyProfile p = lamda::read_latency_profile("PROFILE.json");  // throws ProfileError
//   if (auto w = lamda::fingerprint_warning(p.fingerprint, lamda::current_fingerprint(1)); !w.empty())
//       std::cerr << w << '\n';
//   lamda::write_latency_profile("PROFILE.json", p);
//
// Compiled only with LAMDA_WITH_LATENCY (Eigen and simdjson, link -lsimdjson).
#ifndef LAMDA_LATENCY_PROFILE_FILE_HPP
#define LAMDA_LATENCY_PROFILE_FILE_HPP

#include "../exception.hpp"

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/latency/profile_file.hpp needs LAMDA_WITH_LATENCY (Eigen and simdjson; CMake: link lamda::latency)"
#else

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../detail/json_read.hpp"
#include "../detail/json_write.hpp"
#include "../detail/read_file.hpp"
#include "../exec/device.hpp"
#include "../exec/dw_avx512.hpp"
#include "../exec/pw_avx512.hpp"
#include "../exec/qc8_vnni.hpp"
#include "../exec/wino_avx512.hpp"
#include "../version.hpp"
#include "predictor.hpp"

// The XNNPACK build the profile was measured with; XNNPACK has no run-time version query, so the
// build system may pass the package version (Debian 12 ships this snapshot).
#ifndef LAMDA_XNNPACK_VERSION
#define LAMDA_XNNPACK_VERSION "0.0~git20220216.ae108ef"
#endif

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Fingerprint and profile file
// ---------------------------------------------------------------------------------------------

struct DeviceFingerprint {
    std::string cpu_model;
    std::string architecture;
    std::string xnnpack_isa;
    std::string xnnpack_version;
    std::string lamda_version;
    // lamda's own kernels the executor ran instead of XNNPACK's ("dw_avx512", "pw_avx512", "wino_avx512", "qc8_vnni",
    // comma-separated; "" none, or a profile older than the field): a profile timed without a
    // kernel the executor now uses mispredicts those layers.
    std::string lamda_kernels;
    int threads = 1;
    friend bool operator==(const DeviceFingerprint& a, const DeviceFingerprint& b) {
        return a.cpu_model == b.cpu_model && a.architecture == b.architecture &&
               a.xnnpack_isa == b.xnnpack_isa && a.xnnpack_version == b.xnnpack_version &&
               a.lamda_version == b.lamda_version && a.lamda_kernels == b.lamda_kernels && a.threads == b.threads;
    }
};

// Whether a fingerprint's comma-separated `lamda_kernels` names `kernel`.
inline bool lists_kernel(const std::string& kernels, const std::string& kernel) {
    std::size_t from = 0;
    while (from <= kernels.size()) {
        const std::size_t comma = std::min(kernels.find(',', from), kernels.size());
        if (kernels.compare(from, comma - from, kernel) == 0) return true;
        from = comma + 1;
    }
    return false;
}

// Which convolutions in `prec` the device a fingerprint describes ran on lamda's own kernels
// (its lamda_kernels; pointwise: int8 qc8_vnni, fp32 pw_avx512; 3x3: fp32 wino_avx512): the
// latency model then counts their work apart (op_features). One answer for the profiler's fit
// and a profile's reader.
inline OwnKernels ran_own_kernels(const DeviceFingerprint& f, LatencyPrecision prec) {
    const bool int8 = prec == LatencyPrecision::Int8;
    OwnKernels own;
    own.pointwise = lists_kernel(f.lamda_kernels, int8 ? "qc8_vnni" : "pw_avx512");
    own.winograd = !int8 && lists_kernel(f.lamda_kernels, "wino_avx512");
    return own;
}

// The kernels of lamda's own that the executor runs by default in this build on this CPU.
inline std::string current_lamda_kernels() {
    std::string k;
    const auto add = [&k](bool used, const char* name) {
        if (used) k += (k.empty() ? "" : ",") + std::string(name);
    };
    add(dw_avx512::used_by_default(), "dw_avx512");
    add(pw_avx512::used_by_default(), "pw_avx512");
    add(wino_avx512::used_by_default(), "wino_avx512");
    add(qc8_vnni::used_by_default(), "qc8_vnni");
    return k;
}

inline DeviceFingerprint current_fingerprint(int threads) {
    const DeviceInfo info = describe_device();
    DeviceFingerprint f;
    f.cpu_model = info.cpu_model;
    f.architecture = info.architecture;
    f.xnnpack_isa = info.xnnpack_isa;
    f.xnnpack_version = LAMDA_XNNPACK_VERSION;
    f.lamda_version = version_string;
    f.lamda_kernels = current_lamda_kernels();
    f.threads = threads;
    return f;
}

// What a fingerprint says of its device (the core count is not kept: 0).
inline DeviceInfo device_info_of(const DeviceFingerprint& f) {
    DeviceInfo d;
    d.cpu_model = f.cpu_model;
    d.architecture = f.architecture;
    d.xnnpack_isa = f.xnnpack_isa;
    return d;
}

// Empty when the fingerprints agree; otherwise one warning naming every difference.
inline std::string fingerprint_warning(const DeviceFingerprint& profile, const DeviceFingerprint& here) {
    std::string diffs;
    auto cmp = [&diffs](const char* what, const std::string& a, const std::string& b) {
        if (a != b) diffs += std::string("\n  ") + what + ": profile '" + a + "', here '" + b + "'";
    };
    cmp("cpu_model", profile.cpu_model, here.cpu_model);
    cmp("architecture", profile.architecture, here.architecture);
    cmp("xnnpack_isa", profile.xnnpack_isa, here.xnnpack_isa);
    cmp("xnnpack_version", profile.xnnpack_version, here.xnnpack_version);
    cmp("lamda_version", profile.lamda_version, here.lamda_version);
    cmp("lamda_kernels", profile.lamda_kernels, here.lamda_kernels);
    cmp("threads", std::to_string(profile.threads), std::to_string(here.threads));
    if (diffs.empty()) return {};
    return "warning: the latency profile was measured on a different device or setup; its "
           "predictions may not hold here:" + diffs;
}

inline constexpr std::string_view profile_format_name = "lamda-latency-profile";
inline constexpr int profile_format_version = 2;

struct LatencyProfile {
    DeviceFingerprint fingerprint;
    double budget_s = 0;      // the profiling budget it was made with
    double elapsed_s = 0;     // how long profiling took
    double load_average = -1; // 1-minute load average when profiling started (-1: unknown)
    std::int64_t calibration_seed = -1;  // seed the calibration models were drawn with (-1: none)
    std::vector<LatencySample> samples;
    std::vector<CalibrationSample> calibration;
    LatencyModel model;
    // The same three, timed in int8 (`lamda profile --precision both`); has_int8 is false in a
    // profile measured in fp32 only (every profile written before int8 was profiled).
    bool has_int8 = false;
    bool int8_outdated = false;  // an int8 part fitted on older features: read, never used
    std::vector<LatencySample> int8_samples;
    std::vector<CalibrationSample> int8_calibration;
    LatencyModel int8_model{LatencyPrecision::Int8};

    // The model predicting precision `prec`; throws ProfileError (naming `where`, the profile's
    // file) when the profile was not measured in it.
    const LatencyModel& model_for(LatencyPrecision prec, const std::string& where = "<profile>") const;
};

class ProfileError : public Exception {
public:
    using Exception::Exception;
};

inline const LatencyModel& LatencyProfile::model_for(LatencyPrecision prec, const std::string& where) const {
    if (prec == LatencyPrecision::Fp32) return model;
    if (int8_outdated)
        throw ProfileError(where + ": error: this latency profile's int8 model was fitted by an older lamda on "
                                   "other features; re-run `lamda profile --precision both` to predict int8 latency");
    if (!has_int8)
        throw ProfileError(where + ": error: this latency profile was measured in fp32 only and has no int8 "
                                   "model; re-run `lamda profile --precision both` to predict int8 latency");
    return int8_model;
}

namespace latency_detail {

inline void write_op(JsonWriter& j, const PrimOp& p) {
    j.begin_array()
        .value(std::string_view(prim_kind_name(p.kind)))
        .value(p.ih).value(p.iw).value(p.ic)
        .value(p.oh).value(p.ow).value(p.oc)
        .value(p.kh).value(p.kw).value(p.sh).value(p.sw)
        .value(p.groups).value(p.n);
    // Dilation only where there is one, so that a profile without dilated operators reads in a
    // lamda from before the field.
    if (p.dh != 1 || p.dw != 1) j.value(p.dh).value(p.dw);
    j.end_array();
}

inline void write_doubles(JsonWriter& j, const std::vector<double>& v) {
    j.begin_array();
    for (double d : v) j.value(d);
    j.end_array();
}

// One precision's samples, calibration models and fitted model (the fields "samples",
// "calibration_models" and "model" of the profile object, or of its "int8" object).
inline void write_part(JsonWriter& j, const std::vector<LatencySample>& samples,
                       const std::vector<CalibrationSample>& calibration, const LatencyModel& model) {
    j.key("samples").begin_array();
    for (const LatencySample& s : samples) {
        j.begin_object().key("op");
        write_op(j, s.op);
        j.field("ms", s.ms).end_object();
    }
    j.end_array();
    j.key("calibration_models").begin_array();
    for (const CalibrationSample& c : calibration) {
        j.begin_object().field("name", c.name).field("family", c.family).field("ms", c.ms).key("ops").begin_array();
        for (const PrimOp& op : c.ops) write_op(j, op);
        j.end_array().key("op_ms");
        write_doubles(j, c.op_ms);
        if (c.activation_bytes >= 0) j.field("activation_bytes", c.activation_bytes);
        j.end_object();
    }
    j.end_array();
    const auto write_regressor = [&j](const KindModel& k) {
        j.field("samples", k.samples)
            .field("cv_rel_rmse", k.cv_rel_rmse)
            .field("floor_ms", k.floor_ms)
            .field("context_scale", k.context_scale)
            .field("context_samples", k.context_samples)
            .field("lambda", k.ridge.lambda)
            .field("intercept", k.ridge.intercept);
        j.key("mean");
        write_doubles(j, k.ridge.mean);
        j.key("scale");
        write_doubles(j, k.ridge.scale);
        j.key("coef");
        write_doubles(j, k.ridge.coef);
    };
    j.key("model").begin_object().key("kinds").begin_array();
    for (const KindModel& k : model.kinds) {
        if (!k.fitted) continue;
        j.begin_object().field("kind", std::string_view(prim_kind_name(k.kind)));
        write_regressor(k);
        j.end_object();
    }
    j.end_array();
    // Convolutions on lamda's own kernels (LatencyModel::own_conv); a reader from before them
    // ignores the key and predicts them with the conv kind's regressor.
    j.key("own_conv").begin_array();
    for (OwnConv o : all_own_convs) {
        const KindModel& k = model.own_conv_model(o);
        if (!k.fitted) continue;
        j.begin_object().field("kernel", std::string_view(own_conv_name(o)));
        write_regressor(k);
        j.end_object();
    }
    j.end_array();
    const Calibration& c = model.calibration;
    j.key("calibration")
        .begin_object()
        .key("scale")
        .begin_array()
        .value(c.scale[0]).value(c.scale[1]).value(c.scale[2])
        .end_array()
        .field("footprint_scale", c.footprint_scale)
        .field("per_op_ms", c.per_op_ms)
        .field("constant_ms", c.constant_ms)
        .field("models", c.models)
        .end_object();
    j.end_object();
}

}  // namespace latency_detail

// The profile as JSON text (one line).
inline std::string latency_profile_json(const LatencyProfile& p) {
    JsonWriter j;
    j.begin_object()
        .field("format", profile_format_name)
        .field("version", profile_format_version)
        .key("fingerprint")
        .begin_object()
        .field("cpu_model", p.fingerprint.cpu_model)
        .field("architecture", p.fingerprint.architecture)
        .field("xnnpack_isa", p.fingerprint.xnnpack_isa)
        .field("xnnpack_version", p.fingerprint.xnnpack_version)
        .field("lamda_version", p.fingerprint.lamda_version)
        .field("lamda_kernels", p.fingerprint.lamda_kernels)
        .field("threads", p.fingerprint.threads)
        .end_object()
        .field("budget_s", p.budget_s)
        .field("elapsed_s", p.elapsed_s)
        .field("load_average", p.load_average)
        .field("calibration_seed", p.calibration_seed);
    j.key("op_fields").begin_array();
    for (const char* f : {"kind", "ih", "iw", "ic", "oh", "ow", "oc", "kh", "kw", "sh", "sw", "groups", "n"})
        j.value(f);
    j.end_array();
    latency_detail::write_part(j, p.samples, p.calibration, p.model);
    if (p.has_int8) {
        j.key("int8").begin_object();
        j.field("features_version", int8_conv_features_version);
        j.field("pointwise_vnni", p.int8_model.own.pointwise);
        latency_detail::write_part(j, p.int8_samples, p.int8_calibration, p.int8_model);
        j.end_object();
    }
    j.end_object();
    return j.str();
}

inline void write_latency_profile(const std::string& path, const LatencyProfile& p) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << latency_profile_json(p) << '\n';
    if (!out.flush()) throw ProfileError(path + ": error: cannot write the profile");
}

namespace latency_detail {

using simdjson::dom::element;

// detail/json_read.hpp's reader, plus the profile's operator records.
struct Reader : JsonReader<ProfileError> {
    explicit Reader(const std::string& where_) : JsonReader<ProfileError>(where_, "malformed latency profile") {}

    PrimOp op(const element& e, const std::string& path) const {
        const simdjson::dom::array a = arr(e, path);
        if (a.size() != 13 && a.size() != 15)
            fail(path, "expected 13 fields (kind, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, groups, n), or 15 (and dh, dw)");
        PrimOp p;
        std::size_t i = 0;
        std::array<std::int32_t, 14> v{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
        for (element x : a) {
            const std::string sub = path + "[" + std::to_string(i) + "]";
            if (i == 0) {
                if (!parse_prim_kind(str(x, sub), p.kind)) fail(sub, "unknown operator kind");
            } else {
                v[i - 1] = static_cast<std::int32_t>(integer(x, sub, i == 12 ? 0 : 1, std::int64_t{1} << 30));
            }
            ++i;
        }
        p.ih = v[0]; p.iw = v[1]; p.ic = v[2]; p.oh = v[3]; p.ow = v[4]; p.oc = v[5];
        p.kh = v[6]; p.kw = v[7]; p.sh = v[8]; p.sw = v[9]; p.groups = v[10]; p.n = v[11];
        p.dh = v[12]; p.dw = v[13];
        return p;
    }
};

}  // namespace latency_detail

namespace latency_detail {

// Reads one precision's "samples", "calibration_models" and "model" from `obj` (the profile
// object, or its "int8" object: `pre` "int8." then prefixes every path an error names).
inline void read_part(const Reader& r, const simdjson::dom::element& obj, const std::string& pre,
                      std::vector<LatencySample>& samples, std::vector<CalibrationSample>& calibration,
                      LatencyModel& model) {
    const std::string where = pre.empty() ? std::string() : pre.substr(0, pre.size() - 1);
    {
        std::size_t i = 0;
        for (auto e : r.arr(r.at(obj, "samples", where), pre + "samples")) {
            const std::string path = pre + "samples[" + std::to_string(i++) + "]";
            LatencySample s;
            s.op = r.op(r.at(e, "op", path), path + ".op");
            s.ms = r.num(r.at(e, "ms", path), path + ".ms");
            if (s.ms < 0) r.fail(path + ".ms", "negative");
            samples.push_back(s);
        }
    }
    {
        std::size_t i = 0;
        for (auto e : r.arr(r.at(obj, "calibration_models", where), pre + "calibration_models")) {
            const std::string path = pre + "calibration_models[" + std::to_string(i++) + "]";
            CalibrationSample c;
            c.name = r.str(r.at(e, "name", path), path + ".name");
            c.family = r.str(r.at(e, "family", path), path + ".family");
            c.ms = r.num(r.at(e, "ms", path), path + ".ms");
            std::size_t k = 0;
            for (auto o : r.arr(r.at(e, "ops", path), path + ".ops"))
                c.ops.push_back(r.op(o, path + ".ops[" + std::to_string(k++) + "]"));
            c.op_ms = r.doubles(r.at(e, "op_ms", path), path + ".op_ms");
            if (c.op_ms.size() != c.ops.size()) r.fail(path + ".op_ms", "expected one value per operator");
            if (auto a = r.maybe(e, "activation_bytes", path)) {
                c.activation_bytes = r.num(*a, path + ".activation_bytes");
                if (!(c.activation_bytes >= 0)) r.fail(path + ".activation_bytes", "negative");
            }
            calibration.push_back(std::move(c));
        }
    }
    const auto m = r.at(obj, "model", where);
    {
        // One regressor of kind `kind` (`name` in messages) from object e at `path`.
        const auto read_regressor = [&r, &model](auto e, const std::string& path, PrimKind kind,
                                                 const std::string& name, KindModel& k) {
            k.kind = kind;
            k.precision = model.precision;
            k.own = model.own;
            k.samples = r.int_in(r.at(e, "samples", path), path + ".samples", 0, 1 << 30);
            k.cv_rel_rmse = r.num(r.at(e, "cv_rel_rmse", path), path + ".cv_rel_rmse");
            k.floor_ms = r.num(r.at(e, "floor_ms", path), path + ".floor_ms");
            k.context_scale = r.num(r.at(e, "context_scale", path), path + ".context_scale");
            if (!(k.context_scale > 0)) r.fail(path + ".context_scale", "must be positive");
            k.context_samples = r.int_in(r.at(e, "context_samples", path), path + ".context_samples", 0, 1 << 30);
            k.ridge.lambda = r.num(r.at(e, "lambda", path), path + ".lambda");
            k.ridge.intercept = r.num(r.at(e, "intercept", path), path + ".intercept");
            k.ridge.mean = r.doubles(r.at(e, "mean", path), path + ".mean");
            k.ridge.scale = r.doubles(r.at(e, "scale", path), path + ".scale");
            k.ridge.coef = r.doubles(r.at(e, "coef", path), path + ".coef");
            const auto d = static_cast<std::size_t>(feature_count(kind));
            const std::size_t n = k.ridge.coef.size();
            if (n < d && k.ridge.mean.size() == n && k.ridge.scale.size() == n &&
                (n == static_cast<std::size_t>(feature_count_before_vnni(kind)) ||
                 n == static_cast<std::size_t>(feature_count_before_winograd(kind)))) {
                // A profile from before the own-kernel features: they are 0 there.
                k.ridge.coef.resize(d, 0.0);
                k.ridge.mean.resize(d, 0.0);
                k.ridge.scale.resize(d, 1.0);
            }
            if (k.ridge.coef.size() != d || k.ridge.mean.size() != d || k.ridge.scale.size() != d)
                r.fail(path, "expected " + std::to_string(d) + " coefficients, means and scales for '" + name + "'");
            for (double s : k.ridge.scale)
                if (!(s > 0)) r.fail(path + ".scale", "scales must be positive");
            k.fitted = true;
        };
        std::size_t i = 0;
        for (auto e : r.arr(r.at(m, "kinds", pre + "model"), pre + "model.kinds")) {
            const std::string path = pre + "model.kinds[" + std::to_string(i++) + "]";
            PrimKind kind;
            const std::string name = r.str(r.at(e, "kind", path), path + ".kind");
            if (!parse_prim_kind(name, kind)) r.fail(path + ".kind", "unknown operator kind '" + name + "'");
            read_regressor(e, path, kind, name, model.kind_model(kind));
        }
        // Absent from a profile made before the own kernels' regressors: their convs use conv's.
        if (auto own = r.maybe(m, "own_conv", pre + "model")) {
            std::size_t j = 0;
            for (auto e : r.arr(*own, pre + "model.own_conv")) {
                const std::string path = pre + "model.own_conv[" + std::to_string(j++) + "]";
                const std::string name = r.str(r.at(e, "kernel", path), path + ".kernel");
                OwnConv o = OwnConv::None;
                for (OwnConv c : all_own_convs)
                    if (name == own_conv_name(c)) o = c;
                if (o == OwnConv::None) r.fail(path + ".kernel", "unknown kernel '" + name + "' (pointwise or winograd)");
                read_regressor(e, path, PrimKind::Conv, "conv on " + name, model.own_conv_model(o));
            }
        }
    }
    {
        const auto c = r.at(m, "calibration", pre + "model");
        const std::string cal = pre + "model.calibration";
        const auto sc = r.doubles(r.at(c, "scale", cal), cal + ".scale");
        if (sc.size() != 3) r.fail(cal + ".scale", "expected 3 values");
        for (std::size_t g = 0; g < 3; ++g) model.calibration.scale[g] = sc[g];
        model.calibration.footprint_scale = r.num(r.at(c, "footprint_scale", cal), cal + ".footprint_scale");
        model.calibration.per_op_ms = r.num(r.at(c, "per_op_ms", cal), cal + ".per_op_ms");
        model.calibration.constant_ms = r.num(r.at(c, "constant_ms", cal), cal + ".constant_ms");
        model.calibration.models = r.int_in(r.at(c, "models", cal), cal + ".models", 0, 1 << 30);
    }
}

}  // namespace latency_detail

// Parses profile text. Throws ProfileError naming the field for malformed, truncated or
// wrong-version input.
inline LatencyProfile parse_latency_profile(std::string_view text, const std::string& where = "<profile>") {
    latency_detail::Reader r(where);
    simdjson::dom::parser parser;
    simdjson::padded_string padded(text);
    simdjson::dom::element doc;
    if (const auto err = parser.parse(padded).get(doc))
        throw ProfileError(where + ": error: the latency profile is not valid JSON (" +
                           simdjson::error_message(err) + "); is the file truncated?");
    LatencyProfile p;
    if (!doc.is_object()) r.fail("(top level)", "expected an object");
    const std::string format = r.str(r.at(doc, "format", ""), "format");
    if (format != profile_format_name)
        r.fail("format", "'" + format + "' is not '" + std::string(profile_format_name) + "'");
    const std::int64_t version = r.integer(r.at(doc, "version", ""), "version", 0, 1 << 30);
    if (version != profile_format_version)
        throw ProfileError(where + ": error: latency profile version " + std::to_string(version) +
                           " is not supported (this lamda reads version " +
                           std::to_string(profile_format_version) + "); re-run `lamda profile`");
    const auto fp = r.at(doc, "fingerprint", "");
    p.fingerprint.cpu_model = r.str(r.at(fp, "cpu_model", "fingerprint"), "fingerprint.cpu_model");
    p.fingerprint.architecture = r.str(r.at(fp, "architecture", "fingerprint"), "fingerprint.architecture");
    p.fingerprint.xnnpack_isa = r.str(r.at(fp, "xnnpack_isa", "fingerprint"), "fingerprint.xnnpack_isa");
    p.fingerprint.xnnpack_version = r.str(r.at(fp, "xnnpack_version", "fingerprint"), "fingerprint.xnnpack_version");
    p.fingerprint.lamda_version = r.str(r.at(fp, "lamda_version", "fingerprint"), "fingerprint.lamda_version");
    if (r.has(fp, "lamda_kernels"))  // absent in profiles made before it
        p.fingerprint.lamda_kernels = r.str(r.at(fp, "lamda_kernels", "fingerprint"), "fingerprint.lamda_kernels");
    p.fingerprint.threads = r.int_in(r.at(fp, "threads", "fingerprint"), "fingerprint.threads", 1, 1024);
    p.budget_s = r.num(r.at(doc, "budget_s", ""), "budget_s");
    p.elapsed_s = r.num(r.at(doc, "elapsed_s", ""), "elapsed_s");
    if (r.has(doc, "load_average")) {
        const auto la = r.at(doc, "load_average", "");
        p.load_average = la.is_null() ? -1 : r.num(la, "load_average");
    }
    if (r.has(doc, "calibration_seed"))
        p.calibration_seed = r.integer(r.at(doc, "calibration_seed", ""), "calibration_seed", -1,
                                       std::numeric_limits<std::int64_t>::max());
    // (The int8 part says it in its own field, older than lamda_kernels.)
    p.model = LatencyModel(LatencyPrecision::Fp32, ran_own_kernels(p.fingerprint, LatencyPrecision::Fp32));
    latency_detail::read_part(r, doc, "", p.samples, p.calibration, p.model);
    if (r.has(doc, "int8")) {
        const auto int8 = r.at(doc, "int8", "");
        if (!int8.is_object()) r.fail("int8", "expected an object");
        // Absent before features version 3 (whose profiles are outdated anyway): false.
        const bool vnni = r.has(int8, "pointwise_vnni") && r.boolean(r.at(int8, "pointwise_vnni", "int8"), "int8.pointwise_vnni");
        OwnKernels own;
        own.pointwise = vnni;
        p.int8_model = LatencyModel(LatencyPrecision::Int8, own);
        latency_detail::read_part(r, int8, "int8.", p.int8_samples, p.int8_calibration, p.int8_model);
        const std::int64_t features = r.has(int8, "features_version")
                                          ? r.integer(r.at(int8, "features_version", "int8"), "int8.features_version", 1, 1 << 30)
                                          : 1;
        p.int8_outdated = features != int8_conv_features_version;
        p.has_int8 = !p.int8_outdated;
    }
    return p;
}

inline LatencyProfile read_latency_profile(const std::string& path) {
    std::string text;  // at most 256 MiB + 1 bytes are read, whatever the file (/dev/zero)
    switch (detail::read_file_bounded(path, std::size_t{256} << 20, text)) {
    case detail::ReadStatus::ok: break;
    case detail::ReadStatus::cannot_open: throw ProfileError(path + ": error: cannot open the latency profile");
    case detail::ReadStatus::read_error: throw ProfileError(path + ": error: cannot read the latency profile");
    case detail::ReadStatus::too_large: throw ProfileError(path + ": error: the latency profile is larger than 256 MiB");
    }
    return parse_latency_profile(text, path);
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_LATENCY_PROFILE_FILE_HPP
