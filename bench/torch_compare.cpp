// torch_compare: lamda's XNNPACK executor against libtorch on the same model and weights.
//
//   torch_compare MODEL.lamda [--runs N] [--threads N] [--block N] [--warmup N] [--seed S]
//                             [--input HxWxC] [--channels-last] [--json]
//
// Builds XnnExecutor and TorchModel from one graph with the same random weights, checks that their
// outputs agree (1e-3 x max(1, max |torch|); exit 1 if not), then times both INTERLEAVED: blocks
// of --block runs, xnnpack then torch, repeated until each has --runs timed runs, so that drift in
// the machine's load hits both alike. torch gets its best plain-eager effort: eval(), NoGradGuard,
// a contiguous input, the same warm-up, torch::set_num_threads(N) and one inter-op thread
// (--channels-last: input and conv weights in channels_last memory format instead of NCHW).
// Prints the median latency of each, the spread (p10..p90) and lamda/torch (below 1: lamda faster).
// Compiled only with LAMDA_WITH_XNNPACK and LAMDA_WITH_TORCH.
#if defined(LAMDA_WITH_XNNPACK) && defined(LAMDA_WITH_TORCH)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/detail/json_write.hpp"
#include "lamda/exec/reference.hpp"
#include "lamda/detail/stats.hpp"
#include "lamda/train/torch_module.hpp"
#include "lamda/core/validate.hpp"
#include "lamda/data/weights.hpp"
#include "lamda/exec/xnnpack.hpp"

namespace {

struct Args {
    std::string model;
    int runs = 200;
    int threads = 1;
    int block = 10;
    int warmup = 20;
    std::uint64_t seed = 1;
    lamda::Shape input;  // unknown: keep the model's
    bool channels_last = false;
    bool json = false;
};

int usage(const char* why) {
    std::fprintf(stderr,
                 "torch_compare: %s\n"
                 "usage: torch_compare MODEL.lamda [--runs N] [--threads N] [--block N] "
                 "[--warmup N] [--seed S] [--input HxWxC] [--channels-last] [--json]\n",
                 why);
    return 2;
}

bool parse_int(const char* s, int lo, int hi, int& out) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    out = static_cast<int>(v);
    return true;
}

bool parse_shape(const std::string& s, lamda::Shape& out) {
    int h = 0, w = 0, c = 0;
    char x1 = 0, x2 = 0;
    char rest = 0;
    if (std::sscanf(s.c_str(), "%d%c%d%c%d%c", &h, &x1, &w, &x2, &c, &rest) != 5 || x1 != 'x' ||
        x2 != 'x' || h < 1 || w < 1 || c < 1 || h > 16384 || w > 16384 || c > 65536)
        return false;
    out = lamda::Shape{h, w, c};
    return true;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int run(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (arg == "--json") a.json = true;
        else if (arg == "--channels-last") a.channels_last = true;
        else if (arg == "--runs") { if (!(v = next()) || !parse_int(v, 1, 1000000, a.runs)) return usage("bad --runs"); }
        else if (arg == "--threads") { if (!(v = next()) || !parse_int(v, 1, 1024, a.threads)) return usage("bad --threads"); }
        else if (arg == "--block") { if (!(v = next()) || !parse_int(v, 1, 1000000, a.block)) return usage("bad --block"); }
        else if (arg == "--warmup") { if (!(v = next()) || !parse_int(v, 0, 1000000, a.warmup)) return usage("bad --warmup"); }
        else if (arg == "--seed") {
            int s = 0;
            if (!(v = next()) || !parse_int(v, 0, 2147483647, s)) return usage("bad --seed");
            a.seed = static_cast<std::uint64_t>(s);
        }
        else if (arg == "--input") { if (!(v = next()) || !parse_shape(v, a.input)) return usage("bad --input (HxWxC)"); }
        else if (arg == "-h" || arg == "--help") { usage("compare lamda (XNNPACK) with libtorch"); return 0; }
        else if (!arg.empty() && arg[0] == '-') return usage(("unknown option " + arg).c_str());
        else if (a.model.empty()) a.model = arg;
        else return usage("more than one model");
    }
    if (a.model.empty()) return usage("no model");

    lamda::ParseResult parsed = lamda::parse_dsl_file(a.model);
    if (!parsed.ok()) {
        std::fprintf(stderr, "%s", lamda::format_diagnostics(parsed.diagnostics).c_str());
        return 1;
    }
    lamda::Graph g = std::move(parsed.graph);
    if (a.input.known()) {
        g.layers.front().input_shape = a.input;
        std::vector<lamda::Diagnostic> diags;
        if (!lamda::infer_shapes(g, diags, a.model)) {
            std::fprintf(stderr, "%s", lamda::format_diagnostics(diags).c_str());
            return 1;
        }
    }

    torch::set_num_threads(a.threads);
    at::set_num_interop_threads(1);
    torch::NoGradGuard no_grad;

    const lamda::Weights w = lamda::random_weights(g, a.seed);
    lamda::Tensor input(g.input().shape);
    lamda::detail::SplitMix64 rng{a.seed + 1000};
    for (float& x : input.data) x = rng.uniform(-1.0f, 1.0f);

    lamda::XnnExecutor xnn(g, w, {a.threads});
    std::copy(input.data.begin(), input.data.end(), xnn.input());

    lamda::TorchModel model(g);
    model.load_weights(w);
    model.eval();
    torch::Tensor x = lamda::to_torch(input);  // contiguous NCHW
    if (a.channels_last) {
        x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        for (auto& p : model.parameters())
            if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
    }

    // Agreement.
    xnn.run();
    const lamda::Tensor t_out = lamda::from_torch(model.forward(x));
    const std::size_t n_out = t_out.data.size();
    if (static_cast<std::int64_t>(n_out) != xnn.output_shape().elements()) {
        std::fprintf(stderr, "torch_compare: output sizes differ (torch %s, xnnpack %s)\n",
                     lamda::to_string(t_out.shape).c_str(), lamda::to_string(xnn.output_shape()).c_str());
        return 1;
    }
    double scale = 1.0, diff = 0.0;
    for (std::size_t i = 0; i < n_out; ++i) {
        scale = std::max(scale, static_cast<double>(std::fabs(t_out.data[i])));
        const double e = std::fabs(static_cast<double>(xnn.output()[i]) - t_out.data[i]);
        if (!(e <= diff)) diff = std::isnan(e) ? INFINITY : e;
    }
    const bool agree = diff <= 1e-3 * scale;

    // Warm-up, then interleaved blocks.
    for (int i = 0; i < a.warmup; ++i) {
        xnn.run();
        (void)model.forward(x);
    }
    std::vector<double> xnn_ms, torch_ms;
    xnn_ms.reserve(static_cast<std::size_t>(a.runs));
    torch_ms.reserve(static_cast<std::size_t>(a.runs));
    while (static_cast<int>(xnn_ms.size()) < a.runs) {
        const int n = std::min(a.block, a.runs - static_cast<int>(xnn_ms.size()));
        for (int i = 0; i < n; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            xnn.run();
            xnn_ms.push_back(ms_since(t0));
        }
        for (int i = 0; i < n; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            const torch::Tensor y = model.forward(x);
            torch_ms.push_back(ms_since(t0));
        }
    }
    const double lm = lamda::median(xnn_ms), tm = lamda::median(torch_ms);
    const double ratio = lm / tm;
    const std::string in_shape = lamda::to_string(g.input().shape);

    if (a.json) {
        lamda::JsonWriter j;
        j.begin_object()
            .field("model", a.model)
            .field("input", in_shape)
            .field("threads", a.threads)
            .field("runs", a.runs)
            .field("block", a.block)
            .field("warmup", a.warmup)
            .field("torch_version", TORCH_VERSION)
            .field("torch_channels_last", a.channels_last)
            .field("lamda_ms", lm)
            .field("torch_ms", tm)
            .field("ratio", ratio)
            .field("lamda_p10_ms", lamda::quantile(xnn_ms, 0.1))
            .field("lamda_p90_ms", lamda::quantile(xnn_ms, 0.9))
            .field("torch_p10_ms", lamda::quantile(torch_ms, 0.1))
            .field("torch_p90_ms", lamda::quantile(torch_ms, 0.9))
            .field("outputs_agree", agree)
            .field("max_abs_diff", diff)
            .end_object();
        std::printf("%s\n", j.str().c_str());
    } else {
        std::printf("model %s, input %s, %d thread(s), %d runs each in blocks of %d after %d warm-up\n",
                    a.model.c_str(), in_shape.c_str(), a.threads, a.runs, a.block, a.warmup);
        std::printf("outputs %s: max |xnnpack - torch| = %.3g (scale %.3g)\n",
                    agree ? "agree" : "DIFFER", diff, scale);
        std::printf("lamda (XNNPACK)   median %8.3f ms  (p10 %.3f, p90 %.3f)\n", lm,
                    lamda::quantile(xnn_ms, 0.1), lamda::quantile(xnn_ms, 0.9));
        std::printf("torch %-11s median %8.3f ms  (p10 %.3f, p90 %.3f)%s\n", TORCH_VERSION, tm,
                    lamda::quantile(torch_ms, 0.1), lamda::quantile(torch_ms, 0.9),
                    a.channels_last ? "  [channels_last]" : "");
        std::printf("ratio lamda/torch %.3f (%s)\n", ratio,
                    ratio < 1 ? "lamda faster" : "torch faster");
    }
    return agree ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "torch_compare: %s\n", e.what());
        return 1;
    }
}

#else
#include <cstdio>
int main() {
    std::fprintf(stderr, "torch_compare: built without LAMDA_WITH_XNNPACK and LAMDA_WITH_TORCH\n");
    return 1;
}
#endif
