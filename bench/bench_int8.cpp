// fp32 against int8 through the XNNPACK executor, side by side: for each model, the executors
// are built once, then timed run for run in alternation (fp32, int8, int8, fp32, ...), so load
// on a shared machine hits them alike; the table gives medians and their ratio. Where the CPU
// has AVX-512 VNNI, a third executor runs int8 with XNNPACK's kernels only
// (XnnOptions::int8_vnni = false) in the same alternation: the gain of lamda's own kernel. Also how far
// the int8 output is from fp32 (max |int8 - fp32| over max |fp32|) (scales from one run on the timing input, random weights: a
// sanity check of the int8 path, not an accuracy figure) and how many layers run in float.
//
//   bench/int8_table.sh                      # builds this and prints the table (docs/int8.md)
//   lamda_bench_int8 [--rounds N] [--threads T] MODEL.lamda[@HxWxC] ...
//
// Prints a Markdown table. Random weights (seed 1); the timing input of exec/xnnpack.hpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <lamda/core/analysis.hpp>
#include <lamda/core/validate.hpp>
#include <lamda/data/weights.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/exec/xnnpack.hpp>

namespace {

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Times one inference; for a model under 1 ms, the mean of enough back-to-back runs to fill 1 ms.
double time_ms(lamda::XnnExecutor& e, int reps) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) e.run();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
           reps;
}

int reps_for(lamda::XnnExecutor& e) {
    const double one = std::max(1e-4, time_ms(e, 3));
    return std::max(1, static_cast<int>(std::ceil(1.0 / one)));
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = 30, threads = 1;
    std::vector<std::string> models;
    for (int a = 1; a < argc; ++a) {
        const std::string arg = argv[a];
        if ((arg == "--rounds" || arg == "--threads") && a + 1 < argc) {
            const int v = std::atoi(argv[++a]);
            if (v < 1 || v > 100000) {
                std::fprintf(stderr, "lamda_bench_int8: %s must be in 1..100000\n", arg.c_str());
                return 2;
            }
            (arg == "--rounds" ? rounds : threads) = v;
        } else if (!arg.empty() && arg[0] == '-') {
            std::fprintf(stderr, "usage: lamda_bench_int8 [--rounds N] [--threads T] MODEL.lamda[@HxWxC] ...\n");
            return 2;
        } else {
            models.push_back(arg);
        }
    }
    if (models.empty()) {
        std::fprintf(stderr, "usage: lamda_bench_int8 [--rounds N] [--threads T] MODEL.lamda[@HxWxC] ...\n");
        return 2;
    }
    const bool vnni = lamda::qc8_vnni::used_by_default();
    if (vnni) {
        std::printf("| model | input | MMACs | fp32 ms | int8 ms | int8/fp32 | int8/fp32 (min) | int8 XNNPACK-only ms | its /fp32 | layers in float | max output error |\n");
        std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        std::printf("| model | input | MMACs | fp32 ms | int8 ms | int8/fp32 | int8/fp32 (min) | layers in float | max output error |\n");
        std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    int status = 0;
    for (const std::string& spec : models) {
        try {
            const std::size_t at = spec.find('@');
            const std::string path = spec.substr(0, at);
            lamda::ParseResult parsed = lamda::parse_dsl_file(path);
            if (!parsed.ok()) throw std::runtime_error(lamda::format_diagnostics(parsed.diagnostics));
            lamda::Graph g = std::move(parsed.graph);
            if (at != std::string::npos) {
                long h = 0, w = 0, c = 0;
                if (std::sscanf(spec.c_str() + at + 1, "%ldx%ldx%ld", &h, &w, &c) != 3)
                    throw std::runtime_error("bad input shape in '" + spec + "' (expected @HxWxC)");
                g.layers.front().input_shape = lamda::Shape{h, w, c};
                std::vector<lamda::Diagnostic> diags;
                if (!lamda::infer_shapes(g, diags, path))
                    throw std::runtime_error(lamda::format_diagnostics(diags));
            }
            const lamda::Weights weights = lamda::random_weights(g, 1);
            lamda::XnnOptions fo;
            fo.threads = threads;
            lamda::XnnOptions qo = fo;
            qo.int8 = true;
            lamda::XnnOptions xo = qo;
            xo.int8_vnni = false;
            lamda::XnnExecutor fp(g, weights, fo), q(g, weights, qo);
            std::optional<lamda::XnnExecutor> qx;
            if (vnni) qx.emplace(g, weights, xo);
            lamda::fill_timing_input(fp);
            lamda::fill_timing_input(q);
            if (qx) lamda::fill_timing_input(*qx);
            const int reps_f = reps_for(fp), reps_q = reps_for(q), reps_x = qx ? reps_for(*qx) : 0;
            for (int i = 0; i < 2; ++i) {
                time_ms(fp, reps_f);
                time_ms(q, reps_q);
                if (qx) time_ms(*qx, reps_x);
            }
            std::vector<double> tf, tq, tx;
            for (int r = 0; r < rounds; ++r) {
                if (r % 2 == 0) {
                    tf.push_back(time_ms(fp, reps_f));
                    tq.push_back(time_ms(q, reps_q));
                    if (qx) tx.push_back(time_ms(*qx, reps_x));
                } else {
                    if (qx) tx.push_back(time_ms(*qx, reps_x));
                    tq.push_back(time_ms(q, reps_q));
                    tf.push_back(time_ms(fp, reps_f));
                }
            }
            double top = 1e-12, err = 0;
            const std::int64_t n = fp.output_shape().elements();
            for (std::int64_t e = 0; e < n; ++e) {
                top = std::max(top, static_cast<double>(std::fabs(fp.output()[e])));
                err = std::max(err, static_cast<double>(std::fabs(fp.output()[e] - q.output()[e])));
            }
            int in_float = 0;
            for (std::size_t i = 0; i < g.layers.size(); ++i) in_float += q.runs_in_float(i) ? 1 : 0;
            const double mf = median_of(tf), mq = median_of(tq);
            const double lf = *std::min_element(tf.begin(), tf.end());
            const double lq = *std::min_element(tq.begin(), tq.end());
            const lamda::Shape s = g.layers.front().shape;
            std::string name = path.substr(path.find_last_of('/') + 1);
            if (name.size() > 6 && name.substr(name.size() - 6) == ".lamda") name.resize(name.size() - 6);
            std::printf("| %s | %ldx%ldx%ld | %.1f | %.3f | %.3f | %.2f | %.2f |", name.c_str(),
                        static_cast<long>(s.h), static_cast<long>(s.w), static_cast<long>(s.c),
                        static_cast<double>(lamda::analyze(g).macs) / 1e6, mf, mq, mq / mf, lq / lf);
            if (qx) std::printf(" %.3f | %.2f |", median_of(tx), median_of(tx) / mf);
            std::printf(" %d | %.1f%% |\n", in_float, 100.0 * err / top);
            std::fflush(stdout);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "lamda_bench_int8: %s: %s\n", spec.c_str(), e.what());
            status = 1;
        }
    }
    return status;
}
