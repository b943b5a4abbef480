// lamda_report_demo: writes report.html (and report.json) for a synthetic search, for
// tests/report_render.sh, which renders the page in headless Chromium and checks the plot.
//
//   lamda_report_demo OUT.html [accuracy|capacity]
//
// Prints the number of candidates the scatter must show, the number on the Pareto front, and the
// number drawn as untrained crosses (over a budget, no accuracy).
// Needs only the core library.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "lamda/search/report.hpp"
#include "lamda/search/types.hpp"

namespace {

// A deterministic pseudo-random sequence (no <random>: the same numbers on every platform).
struct Lcg {
    unsigned long long state = 0x9e3779b97f4a7c15ULL;
    double next() {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<double>(state >> 11) / 9007199254740992.0;  // [0, 1)
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: lamda_report_demo OUT.html [accuracy|capacity [LATENCY_LIMIT_MS]]\n");
        return 2;
    }
    const std::string out = argv[1];
    const bool by_accuracy = argc > 2 && std::string(argv[2]) == "accuracy";

    lamda::Task task;
    task.name = "demo <fashion-mnist> & \"friends\"";
    task.dataset = "fashion-mnist";
    task.constraints.latency_ms = argc > 3 ? std::atof(argv[3]) : 0.1;  // a limit at the plot's right edge: 0.19
    task.constraints.max_params = 100000;
    task.budget.max_candidates = 40;

    Lcg rng;
    std::vector<lamda::CandidateRecord> records;
    for (int i = 0; i < 40; ++i) {
        lamda::CandidateRecord r;
        r.index = i;
        r.proposer = "offline";
        r.note = i % 7 == 0 ? "widen <stem> & deepen" : "edit " + std::to_string(i);
        r.hash = "feedc0de0000" + std::to_string(1000 + i);
        r.dsl = "model demo" + std::to_string(i) + "  # <b>not bold</b>\ninput: input shape=28x28x1\n"
                "stem: conv2d out=" + std::to_string(8 + i) + " kernel=3 stride=2 act=relu\npool: gap\nlogits: fc out=10\n";
        if (i % 9 == 4) {  // did not parse: not plotted
            r.verdict = lamda::Verdict::Invalid;
            r.reason = "parse error";
            r.diagnostics = {"<candidate>:2:1: error: unknown layer type 'conv3d'"};
            records.push_back(r);
            continue;
        }
        const double size = 0.2 + 2.0 * rng.next();
        r.macs = static_cast<std::int64_t>(20000 * size * size * (1 + 0.3 * rng.next()) * 100);
        r.params = static_cast<std::int64_t>(30000 * size * (0.5 + rng.next()));
        r.peak_activation_bytes = 50000;
        r.predicted_ms = 0.01 + 0.07 * size * (0.8 + 0.4 * rng.next());
        const double acc = 0.80 + 0.12 * (1 - 1 / (1 + size)) + 0.02 * rng.next();
        r.seconds = 0.5 + rng.next();
        r.elapsed_s = i * 1.3;
        if (*r.predicted_ms > 0.15) {  // rejected on prediction: never run, never trained
            r.verdict = lamda::Verdict::OverPredicted;
            r.reason = "predicted well over budget";
            records.push_back(r);  // capacity: plotted with a hollow marker; accuracy: not plotted
            continue;
        }
        r.measured_ms = *r.predicted_ms * (0.9 + 0.2 * rng.next());
        r.accuracy = acc;
        if (r.params > task.constraints.max_params) {
            r.verdict = lamda::Verdict::OverParams;
        } else if (*r.measured_ms > task.constraints.latency_ms) {
            r.verdict = lamda::Verdict::OverMeasured;
        } else {
            r.verdict = lamda::Verdict::Feasible;
        }
        r.reason = std::string(lamda::verdict_name(r.verdict));
        r.top_layers = {{"stem", *r.measured_ms * 0.6, 0.6}, {"logits", *r.measured_ms * 0.1, 0.1}};
        records.push_back(r);
    }

    lamda::ReportInfo info;
    info.objective = by_accuracy ? lamda::Objective::Accuracy : lamda::Objective::Capacity;
    info.proposer = "offline";
    info.seed = 1;
    info.total_seconds = 52;
    info.stage_seconds = {{"propose", 0.4}, {"predict", 1.1}, {"measure", 20.5}, {"train", 30}};
    info.stop_reason = "budget: 40 candidates";

    int plotted = 0, untrained = 0;
    for (const auto& r : records) {
        plotted += lamda::on_latency_plane(r, info.objective) ? 1 : 0;
        untrained += lamda::untrained_on_plane(r, info.objective) ? 1 : 0;
    }
    const auto front = lamda::pareto_front(records, info.objective);

    std::ofstream html(out, std::ios::binary | std::ios::trunc);
    html << lamda::report_html(task, records, info);
    std::ofstream json(out + ".json", std::ios::binary | std::ios::trunc);
    json << lamda::report_json(task, records, info) << '\n';
    if (!html.flush() || !json.flush()) {
        std::fprintf(stderr, "lamda_report_demo: cannot write %s\n", out.c_str());
        return 1;
    }
    std::printf("%d %zu %d\n", plotted, front.size(), untrained);
    return 0;
}
