// How well a profile's latency model predicts whole models it was not fitted on, measured in the
// same session (so a shared machine's drift between profiling and evaluating does not enter):
// the profile's operator samples and half its calibration models refit the model, the other half
// is predicted, then the halves swap.
//   ./build/bench/lamda_latency_holdout P.json [P2.json ...] [--flip-own-kernels]
// --flip-own-kernels: also fit with each fp32 own-kernel flag flipped in turn (the profile's
// fingerprint sets them: lamda_kernels lists pw_avx512, wino_avx512), to see what counting that
// kernel's work apart gains.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <lamda/latency/model.hpp>

namespace {

struct HeldOut {
    int n = 0, within_10 = 0, within_5 = 0;
    double abs_rel_sum = 0;
};

// Fits on the calibration models of the other parity than `fold` and predicts those of `fold`.
HeldOut held_out(const lamda::LatencyProfile& p, std::size_t fold, lamda::OwnKernels own) {
    std::vector<lamda::CalibrationSample> train, test;
    for (std::size_t i = 0; i < p.calibration.size(); ++i)
        (i % 2 == fold ? test : train).push_back(p.calibration[i]);
    const lamda::LatencyModel m =
        lamda::fit_latency_model(p.samples, train, 10.0, lamda::LatencyPrecision::Fp32, own);
    HeldOut h;
    for (const lamda::CalibrationSample& c : test) {
        if (!(c.ms > 0)) continue;
        const lamda::OpContext ctx = lamda::model_context(c.ops, c.activation_bytes);
        std::vector<double> op_ms;
        for (const lamda::PrimOp& op : c.ops) op_ms.push_back(m.predict_op(op, ctx));
        const double e = std::fabs(m.combine(c.ops, op_ms, ctx) - c.ms) / c.ms;
        ++h.n;
        h.within_10 += e <= 0.10;
        h.within_5 += e <= 0.05;
        h.abs_rel_sum += e;
    }
    return h;
}

}  // namespace

int main(int argc, char** argv) {
    bool both = false;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--flip-own-kernels") == 0)
            both = true;
        else
            files.emplace_back(argv[i]);
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: lamda_latency_holdout PROFILE.json... [--flip-own-kernels]\n");
        return 2;
    }
    try {
        std::printf("| profile | fp32 1x1 counted apart | fp32 3x3 on Winograd | held-out models | within 10%% | within 5%% "
                    "| MAPE |\n");
        std::printf("|---|---|---|---:|---:|---:|---:|\n");
        for (const std::string& f : files) {
            const lamda::LatencyProfile p = lamda::read_latency_profile(f);
            const lamda::OwnKernels listed = lamda::ran_own_kernels(p.fingerprint, lamda::LatencyPrecision::Fp32);
            std::vector<lamda::OwnKernels> variants{listed};
            if (both) {
                variants.push_back({!listed.pointwise, listed.winograd});
                variants.push_back({listed.pointwise, !listed.winograd});
            }
            for (const lamda::OwnKernels& own : variants) {
                HeldOut all;
                for (std::size_t fold = 0; fold < 2; ++fold) {
                    const HeldOut h = held_out(p, fold, own);
                    all.n += h.n;
                    all.within_10 += h.within_10;
                    all.within_5 += h.within_5;
                    all.abs_rel_sum += h.abs_rel_sum;
                }
                const double n = all.n > 0 ? all.n : 1;
                const auto says = [](bool on, bool flipped) {
                    return std::string(on ? "yes" : "no") + (flipped ? " (flipped)" : "");
                };
                std::printf("| %s | %s | %s | %d | %.1f%% | %.1f%% | %.2f%% |\n", f.c_str(),
                            says(own.pointwise, own.pointwise != listed.pointwise).c_str(),
                            says(own.winograd, own.winograd != listed.winograd).c_str(), all.n, 100.0 * all.within_10 / n,
                            100.0 * all.within_5 / n, 100.0 * all.abs_rel_sum / n);
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lamda_latency_holdout: %s\n", e.what());
        return 1;
    }
    return 0;
}
