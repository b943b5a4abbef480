// lamda/search/loop.hpp: the generation loop -- lamda's main job. A proposer writes candidates;
// each is parsed and validated, analysed against the parameter and memory limits, its latency
// predicted (a candidate predicted well over budget is never run), measured when promising,
// trained when a trainer is there, recorded, and told back to the proposer:
//
//   lamda::GenerateSetup setup;                 // what the loop evaluates with
//   setup.latency = &profile.model;             // optional: without it every candidate is run
//   setup.measure = lamda::xnnpack_measure(1);  // optional: without it prediction decides
//   setup.trainer = trainer.get();              // optional: accuracy objective
//   setup.on_record = [&](const CandidateRecord& r) { journal.append(r); };
//   GenerateResult result = lamda::run_generation(task, proposer, setup, resumed_records);
//
// The loop itself keeps no state outside `records`: a search resumed from its journal continues
// exactly where it stopped (the built-in proposers are functions of seed and records).
// Needs LAMDA_WITH_LATENCY (the latency model); measuring needs LAMDA_WITH_XNNPACK.
#ifndef LAMDA_SEARCH_LOOP_HPP
#define LAMDA_SEARCH_LOOP_HPP

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/search/loop.hpp needs LAMDA_WITH_LATENCY (the latency model; CMake: link lamda::latency)"
#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../core/analysis.hpp"
#include "../detail/format.hpp"
#include "../dsl/parser.hpp"
#include "../latency/model.hpp"
#include "memory.hpp"
#include "proposers.hpp"
#include "report.hpp"
#include "types.hpp"
#if defined(LAMDA_WITH_XNNPACK)
#include "../exec/bench.hpp"
#include "../data/weights.hpp"
#endif

namespace lamda {

// A measured latency and where it went.
struct Measurement {
    double median_ms = 0;
    std::vector<LayerCost> per_layer;  // may be empty
};

// GenerateSetup::proxy_accuracy_slack's default (why: there), for every front end.
inline constexpr double default_proxy_accuracy_slack = 0.20;

struct GenerateSetup {
    const LatencyModel* latency = nullptr;                     // null: no prediction
    std::function<Measurement(const Graph&)> measure;          // empty: no measurement
    // A task in int8 or "any" precision (TaskPrecision): the int8 latency model and measurement
    // (the int8 executor, exec/xnnpack.hpp). An int8 candidate without them is not predicted,
    // and fails when it is to be measured and only `measure` is set.
    const LatencyModel* latency_int8 = nullptr;
    std::function<Measurement(const Graph&)> measure_int8;
    Trainer* trainer = nullptr;                                // null: no accuracy
    std::function<void(const CandidateRecord&)> on_record;     // journal; called before the next step
    std::function<void(const CandidateRecord&, const std::vector<CandidateRecord>&)> on_progress;
    // A candidate predicted above budget x this is rejected without being run. The margin covers
    // the latency model's error (docs/latency.md: ~95% of models within +-10%).
    double predicted_reject_factor = 1.2;
    // Proxy training (a subset, one epoch) underestimates what full training reaches by 10 to 20
    // points on Fashion-MNIST (docs/benchmarks.md, the proxy's tau table), so a proxy accuracy is
    // only "below min_accuracy" when it is this far below; min_accuracy itself is checked on
    // candidates trained in full after the search.
    double proxy_accuracy_slack = default_proxy_accuracy_slack;
    int top_layers = 5;             // most expensive layers kept per record
    int max_duplicates_in_row = 50; // the proposer "has nothing new" after this many repeats
    std::function<bool()> should_stop;  // polled between candidates (e.g. SIGINT)
    // Adaptation (search/adapt.hpp): called for a screened candidate that will be run, with the
    // records so far (rec.index already set); it may give the candidate inherited weights
    // (rec.parent, rec.inherited, rec.weights: a file under weights_dir). A candidate with
    // weights is then fine-tuned from them (Trainer::finetune_accuracy) instead of proxy-trained
    // from scratch; one with weights and no parent (the start model) is evaluated, not trained.
    std::function<void(CandidateRecord&, const std::vector<CandidateRecord>&)> inherit;
    std::string weights_dir;  // rec.weights are relative to it (the search's directory)
    // A shared machine runs in slow bursts of minutes (docs/generate.md). For a candidate measured
    // over the budget and more than `doubt_factor` x its prediction (or unpredicted), the loop asks
    // how slow the machine is now: a fixed reference model's time over its fastest in this search
    // (>= 1; empty: not asked). Above `slow_machine` the measurement is judged at the machine's
    // usual pace (divided by that factor) and the reason says so; the best candidates are
    // measured again at the end in any case (generate.hpp: confirm).
    std::function<double()> machine_slowdown;
    double doubt_factor = 1.1;
    double slow_machine = 1.05;
    // Budget::max_total_seconds: the seconds the final training will need, given the records so
    // far (0: nothing to keep yet; generate.hpp estimates it from the best trainable candidate's
    // proxy training). Empty: nothing is kept for it.
    std::function<double(const std::vector<CandidateRecord>&)> final_reserve;
};

// Budget::max_total_seconds: whether the search must stop at `elapsed` seconds to leave its final
// training (setup.final_reserve) the time it needs. The one rule for every loop (parallel.hpp too).
inline bool total_time_spent(const Task& task, const GenerateSetup& setup,
                             const std::vector<CandidateRecord>& records, double elapsed) {
    if (!(task.budget.max_total_seconds > 0)) return false;
    const double left = task.budget.max_total_seconds - elapsed;
    return left <= 0 || (setup.final_reserve && left <= setup.final_reserve(records));
}

// The factor a measurement over the budget is divided by to judge it at the machine's usual pace
// (GenerateSetup::machine_slowdown): the slowdown when above `slow_machine`, else 1. The one rule
// for the search's measurements and for the final confirmations (generate.hpp).
inline double usual_pace_divisor(const GenerateSetup& setup) {
    if (!setup.machine_slowdown) return 1.0;
    const double slow = setup.machine_slowdown();
    return slow > setup.slow_machine ? slow : 1.0;
}

// A measurement over the budget taken while the machine ran `slow` times its usual pace (the
// reference model's reading, usual_pace_divisor), judged at that pace: divided by the slowdown,
// but not below the latency model's prediction when there is one. The reference is a small model
// and reads slowdowns that bigger candidates do not feel: measured, it read 1.32x while the
// candidate it excused ran at its quiet time (0.065 ms in the search and alone), and the division
// alone handed over candidates that were over the budget; their predictions were nearer
// (docs/generate.md step 6).
inline double usual_pace_ms(double measured_ms, double slow, const std::optional<double>& predicted_ms) {
    const double judged = measured_ms / slow;
    if (predicted_ms && std::isfinite(*predicted_ms) && *predicted_ms > judged) return std::min(measured_ms, *predicted_ms);
    return judged;
}

// Seconds spent per step of the loop, summed over candidates.
struct StageSeconds {
    double propose = 0, validate = 0, predict = 0, measure = 0, train = 0;
};

struct GenerateResult {
    std::vector<CandidateRecord> records;  // resumed ones first
    int resumed = 0;                       // records that came from the journal
    int duplicates = 0;                    // proposals skipped as repeats
    std::string stop_reason;  // "max_candidates", "max_seconds", "max_total_seconds", "exhausted", "stopped"
    double elapsed_s = 0;                  // search time, across resumes
    StageSeconds stage_seconds;            // where this run's time went (resumed runs not included)
};

namespace generate_detail {

inline std::string ms_text(double ms) {
    std::ostringstream o;
    o.precision(ms < 0.1 ? 3 : 4);
    o << ms << " ms";
    return o.str();
}

inline std::string percent_text(double share) {
    return std::to_string(static_cast<int>(share * 100.0 + 0.5)) + "%";
}

inline std::string cost_list(const std::vector<LayerCost>& layers, std::size_t n = 3) {
    std::string s;
    for (std::size_t i = 0; i < layers.size() && i < n; ++i)
        s += (i ? ", " : "") + layers[i].name + " " + percent_text(layers[i].share);
    return s;
}

// The `n` most expensive layers of per-layer milliseconds (parallel to g.layers).
inline std::vector<LayerCost> top_costs(const Graph& g, const std::vector<double>& ms, int n) {
    double total = 0;
    for (double x : ms) total += x;
    std::vector<LayerCost> all;
    for (std::size_t i = 0; i < ms.size() && i < g.layers.size(); ++i)
        if (ms[i] > 0) all.push_back({g.layers[i].name, ms[i], total > 0 ? ms[i] / total : 0});
    std::stable_sort(all.begin(), all.end(), [](const LayerCost& a, const LayerCost& b) { return a.ms > b.ms; });
    if (all.size() > static_cast<std::size_t>(n)) all.resize(static_cast<std::size_t>(n));
    return all;
}

inline std::vector<LayerCost> top_costs(std::vector<LayerCost> all, int n) {
    std::stable_sort(all.begin(), all.end(), [](const LayerCost& a, const LayerCost& b) { return a.ms > b.ms; });
    if (all.size() > static_cast<std::size_t>(n)) all.resize(static_cast<std::size_t>(n));
    return all;
}

}  // namespace generate_detail

// What screening decided about a proposal: the cheap steps (parse, validate, analyse, predict,
// the limits a prediction can decide) done where the proposer runs. `decided` false: the record
// still needs run_candidate() (measurement, training), which may happen on another thread or rank.
struct Screened {
    CandidateRecord record;
    bool decided = true;
};

// The cheap steps of one proposal, in order. `seen` holds the hashes decided (or in flight) so
// far; a repeat returns nothing (and is not a candidate).
inline std::optional<Screened> screen_candidate(const Task& task, const Proposal& proposal, const GenerateSetup& setup,
                                                const std::set<std::string>& seen,
                                                StageSeconds* stage_seconds = nullptr) {
    using namespace generate_detail;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto lap = clock::now();
    auto charge = [&](double StageSeconds::*stage) {  // time since the last lap goes to `stage`
        const auto now = clock::now();
        if (stage_seconds) stage_seconds->*stage += std::chrono::duration<double>(now - lap).count();
        lap = now;
    };
    Screened out;
    CandidateRecord& rec = out.record;
    rec.note = proposal.note;
    if (task.precision == TaskPrecision::Int8) rec.precision = "int8";
    if (!proposal.error.empty()) {  // the proposer failed (e.g. an LLM turn): recorded, not evaluated
        rec.dsl = proposal.dsl;
        rec.hash = text_hash("failed proposal: " + proposal.note + "\n" + proposal.error + "\n" + proposal.dsl);
        if (seen.count(rec.hash)) return std::nullopt;
        rec.verdict = Verdict::Failed;
        rec.reason = proposal.error;
        rec.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        return out;
    }
    ParseResult parsed = parse_dsl(proposal.dsl, "candidate");
    if (!parsed.ok()) {
        rec.dsl = proposal.dsl;
        rec.hash = text_hash(proposal.dsl);
        if (seen.count(rec.hash)) return std::nullopt;
        rec.verdict = Verdict::Invalid;
        for (const Diagnostic& d : parsed.diagnostics) rec.diagnostics.push_back(format_diagnostic(d));
        rec.reason = std::to_string(parsed.diagnostics.size()) + " error(s): " +
                     (parsed.diagnostics.empty() ? std::string("?") : parsed.diagnostics.front().message);
        charge(&StageSeconds::validate);
        rec.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        return out;
    }
    const Graph& g = parsed.graph;
    rec.dsl = print_dsl(g);
    rec.hash = text_hash(rec.dsl);
    if (seen.count(rec.hash)) return std::nullopt;
    auto finish = [&](Verdict v, std::string reason) {
        rec.verdict = v;
        rec.reason = std::move(reason);
        rec.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        return out;
    };
    try {
        const ModelStats stats = analyze(g);
        rec.params = stats.params;
        rec.macs = stats.macs;
        rec.peak_activation_bytes = stats.peak_activation_bytes;
        const Shape in = g.layers.front().shape;
        const Shape want_out{1, 1, task.classes};
        if (!(in.h == task.input.h && in.w == task.input.w && in.c == task.input.c))
            return finish(Verdict::WrongTask, "input is " + std::to_string(in.h) + "x" + std::to_string(in.w) + "x" +
                                                  std::to_string(in.c) + ", the task's is " + std::to_string(task.input.h) +
                                                  "x" + std::to_string(task.input.w) + "x" + std::to_string(task.input.c));
        if (!(stats.output_shape.h == 1 && stats.output_shape.w == 1 && stats.output_shape.c == task.classes))
            return finish(Verdict::WrongTask, "output is " + std::to_string(stats.output_shape.h) + "x" +
                                                  std::to_string(stats.output_shape.w) + "x" +
                                                  std::to_string(stats.output_shape.c) + ", the task needs 1x1x" +
                                                  std::to_string(want_out.c) + " (one logit per class)");
        const Constraints& c = task.constraints;
        charge(&StageSeconds::validate);
        // Each precision the task allows: its memory (as the firmware export counts it) and its
        // predicted latency. The record takes the one that fits memory and is predicted fastest
        // (the first that fits when nothing predicts; the last when none fits).
        struct Option {
            bool int8 = false;
            std::string over_memory;
            std::optional<LatencyPrediction> predicted;
        };
        std::vector<Option> options;
        for (bool int8 : task_precisions(task)) {
            Option o;
            o.int8 = int8;
            o.over_memory = over_memory(c, firmware_memory(g, int8), int8);
            charge(&StageSeconds::validate);
            if (const LatencyModel* m = int8 ? setup.latency_int8 : setup.latency) {
                o.predicted = m->predict(g);
                charge(&StageSeconds::predict);
            }
            options.push_back(std::move(o));
        }
        const Option* chosen = nullptr;
        for (const Option& o : options) {
            if (!o.over_memory.empty()) continue;
            if (!chosen || (o.predicted && chosen->predicted && o.predicted->total_ms < chosen->predicted->total_ms))
                chosen = &o;
        }
        const bool fits_memory = chosen != nullptr;
        // A precision that fits but has no latency model ("any" with an fp32-only profile) may be
        // the fast one: nothing is rejected on the other's prediction; the run measures both.
        const bool unpredicted_fits = std::any_of(options.begin(), options.end(), [](const Option& o) {
            return o.over_memory.empty() && !o.predicted;
        });
        if (!chosen) chosen = &options.back();
        rec.precision = precision_text(task, chosen->int8);
        if (chosen->predicted) {
            rec.predicted_ms = chosen->predicted->total_ms;
            rec.top_layers = top_costs(g, chosen->predicted->per_layer_ms, setup.top_layers);
        }
        if (c.max_params > 0 && stats.params > c.max_params)
            return finish(Verdict::OverParams, std::to_string(stats.params) + " parameters, limit " +
                                                   std::to_string(c.max_params) + " (" +
                                                   percent_text(double(stats.params) / double(c.max_params)) + ")");
        if (!fits_memory) return finish(Verdict::OverMemory, chosen->over_memory);
        if (c.latency_ms > 0 && rec.predicted_ms && !unpredicted_fits &&
            *rec.predicted_ms > setup.predicted_reject_factor * c.latency_ms)
            return finish(Verdict::OverPredicted,
                          "predicted " + ms_text(*rec.predicted_ms) + " = " +
                              percent_text(*rec.predicted_ms / c.latency_ms) + " of the " + ms_text(c.latency_ms) +
                              " budget (not run); most expensive: " + cost_list(rec.top_layers));
    } catch (const std::exception& e) {
        return finish(Verdict::Failed, std::string("evaluation failed: ") + e.what());
    }
    out.decided = false;
    rec.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return out;
}

// The expensive steps of a screened candidate (`rec.decided` false): measurement when the setup
// measures, proxy training when it trains, and the verdict. Never throws for a candidate: an
// exception (the executor's, the trainer's, out of memory) makes a Failed record. Safe to call
// from several threads when `setup.measure` and `setup.trainer` are (search/parallel.hpp).
inline CandidateRecord run_candidate(const Task& task, CandidateRecord rec, const GenerateSetup& setup,
                                     StageSeconds* stage_seconds = nullptr) {
    using namespace generate_detail;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto lap = clock::now();
    auto charge = [&](double StageSeconds::*stage) {
        const auto now = clock::now();
        if (stage_seconds) stage_seconds->*stage += std::chrono::duration<double>(now - lap).count();
        lap = now;
    };
    const double screened_s = rec.seconds;
    auto finish = [&](Verdict v, std::string reason) {
        rec.verdict = v;
        rec.reason = std::move(reason);
        rec.seconds = screened_s + std::chrono::duration<double>(clock::now() - t0).count();
        return rec;
    };
    try {
        ParseResult parsed = parse_dsl(rec.dsl, "candidate");
        if (!parsed.ok())
            return finish(Verdict::Failed, "evaluation failed: the screened text no longer parses: " +
                                               (parsed.diagnostics.empty() ? std::string("?") : parsed.diagnostics.front().message));
        const Graph& g = parsed.graph;
        const Constraints& c = task.constraints;
        const bool evaluate = setup.trainer && task.objective == Objective::Accuracy;
        const auto weights_path = [&] {
            return setup.weights_dir.empty() ? rec.weights : setup.weights_dir + "/" + rec.weights;
        };
        // An int8 candidate's accuracy is that of its weights after quantization; the fp32 one
        // is kept beside it. Called after each training or evaluation, and when "any" changes
        // the candidate's precision (the trainer still holds the weights it last used).
        const auto judge_accuracy_in_precision = [&] {
            if (!rec.accuracy) return;
            if (is_int8(rec) && !rec.float_accuracy) {
                rec.float_accuracy = rec.accuracy;
                rec.accuracy = setup.trainer->last_int8_accuracy(g);
            } else if (!is_int8(rec) && rec.float_accuracy) {
                rec.accuracy = rec.float_accuracy;
                rec.float_accuracy.reset();
            }
        };
        if (evaluate && !rec.weights.empty() && rec.parent < 0) {
            // A start model (search/adapt.hpp): its own weights, judged before its latency, so
            // that a start model over the budget still says what accuracy is to be kept.
            rec.accuracy = setup.trainer->weights_accuracy(g, weights_path());
            judge_accuracy_in_precision();
            charge(&StageSeconds::train);
        }
        std::string both;  // "any": "fp32 0.045 ms, int8 0.031 ms"
        std::string pace;  // a measurement taken while the machine ran slow (setup.machine_slowdown)
        if (setup.measure || setup.measure_int8) {
            // Each precision the candidate may run in and that fits memory ("any": both, and the
            // faster measured wins).
            std::vector<bool> precisions;
            if (task.precision == TaskPrecision::Any) {
                for (bool int8 : task_precisions(task))
                    if (over_memory(c, firmware_memory(g, int8), int8).empty()) precisions.push_back(int8);
            }
            if (precisions.empty()) precisions.push_back(is_int8(rec));
            std::optional<Measurement> best;
            bool best_int8 = is_int8(rec);
            for (bool int8 : precisions) {
                const auto& measure = int8 ? setup.measure_int8 : setup.measure;
                if (!measure)
                    return finish(Verdict::Failed, std::string("evaluation failed: no ") + (int8 ? "int8" : "fp32") +
                                                       " measurement in this setup");
                Measurement m = measure(g);
                if (precisions.size() > 1) both += std::string(both.empty() ? "" : ", ") + (int8 ? "int8 " : "fp32 ") + ms_text(m.median_ms);
                if (!best || m.median_ms < best->median_ms) {
                    best = std::move(m);
                    best_int8 = int8;
                }
            }
            charge(&StageSeconds::measure);
            Measurement& m = *best;
            if (precision_text(task, best_int8) != rec.precision) {  // "any": measured, not as predicted
                rec.precision = precision_text(task, best_int8);
                rec.predicted_ms.reset();
                if (const LatencyModel* lm = best_int8 ? setup.latency_int8 : setup.latency)
                    rec.predicted_ms = lm->predict(g).total_ms;
                if (evaluate) judge_accuracy_in_precision();
            }
            if (c.latency_ms > 0 && m.median_ms > c.latency_ms && setup.machine_slowdown &&
                (!rec.predicted_ms || m.median_ms > setup.doubt_factor * *rec.predicted_ms)) {
                const double slow = usual_pace_divisor(setup);
                charge(&StageSeconds::measure);
                if (slow != 1.0) {
                    const double judged = usual_pace_ms(m.median_ms, slow, rec.predicted_ms);
                    pace = "measured " + ms_text(m.median_ms) + " while a reference model ran " + detail::format_fixed(slow, 2) +
                           "x its fastest time in this search, judged at the usual pace" +
                           (judged > m.median_ms / slow ? std::string(" (no faster than predicted)") : std::string()) + "; ";
                    const double divisor = m.median_ms / judged;
                    m.median_ms = judged;
                    for (LayerCost& l : m.per_layer) l.ms /= divisor;
                }
            }
            rec.measured_ms = m.median_ms;
            if (!m.per_layer.empty()) rec.top_layers = top_costs(std::move(m.per_layer), setup.top_layers);
            if (c.latency_ms > 0 && m.median_ms > c.latency_ms)
                return finish(Verdict::OverMeasured, pace + "measured " + ms_text(m.median_ms) + " = " +
                                                         percent_text(m.median_ms / c.latency_ms) + " of the " +
                                                         ms_text(c.latency_ms) + " budget; most expensive: " +
                                                         cost_list(rec.top_layers));
        }
        if (evaluate) {
            const auto train_start = std::chrono::steady_clock::now();
            if (!rec.weights.empty() && rec.parent < 0) {
                // evaluated above
            } else if (!rec.weights.empty()) {
                rec.accuracy = setup.trainer->finetune_accuracy(g, weights_path());
                judge_accuracy_in_precision();
            } else {
                rec.accuracy = setup.trainer->proxy_accuracy(g);
                judge_accuracy_in_precision();
            }
            if (rec.weights.empty() || rec.parent >= 0)
                rec.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
            charge(&StageSeconds::train);
            if (c.min_accuracy && *rec.accuracy < *c.min_accuracy - setup.proxy_accuracy_slack)
                return finish(Verdict::BelowAccuracy,
                              std::string("proxy validation accuracy ") + (is_int8(rec) ? "in int8 " : "") +
                                  percent_text(*rec.accuracy) + " is more than " +
                                  percent_text(setup.proxy_accuracy_slack) + " below the required " +
                                  percent_text(*c.min_accuracy));
        }
        std::string why = pace + "meets every constraint";
        if (const auto ms = judged_latency_ms(rec); ms && c.latency_ms > 0)
            why += ": " + std::string(rec.measured_ms ? "measured " : "predicted ") + ms_text(*ms) + " = " +
                   percent_text(*ms / c.latency_ms) + " of budget";
        if (!rec.precision.empty()) why += " in " + rec.precision + (both.empty() ? "" : " (" + both + ")");
        return finish(Verdict::Feasible, why);
    } catch (const std::exception& e) {
        return finish(Verdict::Failed, std::string("evaluation failed: ") + e.what());
    }
}

// Decides one proposal: every step the loop takes for a candidate, in order (screen, then run).
// `seen` holds the hashes decided so far; a repeat returns nothing (and is not a candidate).
// `records` (those decided so far) go to setup.inherit.
inline std::optional<CandidateRecord> evaluate_candidate(const Task& task, const Proposal& proposal,
                                                         const GenerateSetup& setup,
                                                         const std::set<std::string>& seen,
                                                         const std::vector<CandidateRecord>& records,
                                                         StageSeconds* stage_seconds = nullptr) {
    std::optional<Screened> s = screen_candidate(task, proposal, setup, seen, stage_seconds);
    if (!s) return std::nullopt;
    // An adaptation's start model (candidate 0) is measured and evaluated even when it is predicted
    // over the budget: its latency here and its accuracy are what the adapted model is held to.
    if (setup.inherit && records.empty() && s->record.verdict == Verdict::OverPredicted) s->decided = false;
    if (s->decided) return std::move(s->record);
    if (setup.inherit) {
        s->record.index = static_cast<int>(records.size());
        try {
            setup.inherit(s->record, records);
        } catch (const std::exception& e) {  // trained from scratch instead; said in the record
            s->record.parent = -1;
            s->record.weights.clear();
            s->record.inherited = std::string("nothing (") + e.what() + ")";
        }
    }
    return run_candidate(task, std::move(s->record), setup, stage_seconds);
}

inline std::optional<CandidateRecord> evaluate_candidate(const Task& task, const Proposal& proposal,
                                                         const GenerateSetup& setup,
                                                         const std::set<std::string>& seen,
                                                         StageSeconds* stage_seconds = nullptr) {
    return evaluate_candidate(task, proposal, setup, seen, {}, stage_seconds);
}

// Runs the search until the budget is spent or the proposer has nothing new. `resumed` are the
// records of an earlier run of the same search (its journal), not evaluated again.
inline GenerateResult run_generation(const Task& task, Proposer& proposer, const GenerateSetup& setup,
                                     std::vector<CandidateRecord> resumed = {}) {
    GenerateResult result;
    result.records = std::move(resumed);
    result.resumed = static_cast<int>(result.records.size());
    std::set<std::string> seen;
    for (const auto& r : result.records) seen.insert(r.hash);
    const double before = result.records.empty() ? 0.0 : result.records.back().elapsed_s;
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    int duplicates_in_row = 0;
    for (;;) {
        if (static_cast<int>(result.records.size()) >= task.budget.max_candidates) {
            result.stop_reason = "max_candidates";
            break;
        }
        if (elapsed() >= task.budget.max_seconds) {
            result.stop_reason = "max_seconds";
            break;
        }
        if (total_time_spent(task, setup, result.records, elapsed())) {
            result.stop_reason = "max_total_seconds";
            break;
        }
        if (setup.should_stop && setup.should_stop()) {
            result.stop_reason = "stopped";
            break;
        }
        auto t_propose = std::chrono::steady_clock::now();
        std::optional<Proposal> proposal = proposer.propose(task, result.records);
        result.stage_seconds.propose +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_propose).count();
        if (!proposal) {
            result.stop_reason = "exhausted";
            break;
        }
        std::optional<CandidateRecord> rec =
            evaluate_candidate(task, *proposal, setup, seen, result.records, &result.stage_seconds);
        if (!rec) {
            ++result.duplicates;
            if (++duplicates_in_row >= setup.max_duplicates_in_row) {
                result.stop_reason = "exhausted";
                break;
            }
            continue;
        }
        duplicates_in_row = 0;
        rec->index = static_cast<int>(result.records.size());
        rec->proposer = proposer.name();
        rec->elapsed_s = elapsed();
        seen.insert(rec->hash);
        if (setup.on_record) setup.on_record(*rec);  // journaled before anything else happens
        result.records.push_back(std::move(*rec));
        if (setup.on_progress) setup.on_progress(result.records.back(), result.records);
    }
    result.elapsed_s = elapsed();
    return result;
}

#if defined(LAMDA_WITH_XNNPACK)
// The loop's measurement: XNNPACK on random weights (latency does not depend on their values),
// `runs` timed runs; per-layer costs from the per-operator timing.
// `int8`: the int8 executor with synthetic scales (BenchOptions::int8; the timing does not depend on
// the scales' values either).
inline std::function<Measurement(const Graph&)> xnnpack_measure(int threads, int runs = 30, int warmup = 5,
                                                                bool int8 = false) {
    return [=](const Graph& g) {
        BenchOptions o;
        o.threads = threads;
        o.runs = runs;
        o.warmup = warmup;
        o.int8 = int8;
        const BenchResult r = benchmark_model(g, random_weights(g, 1), o);
        Measurement m;
        m.median_ms = r.median_ms;
        for (const OpTiming& t : r.per_op)
            if (t.median_ms > 0) m.per_layer.push_back({t.name, t.median_ms, 0.0});
        double total = 0;
        for (const auto& l : m.per_layer) total += l.ms;
        for (auto& l : m.per_layer) l.share = total > 0 ? l.ms / total : 0;
        return m;
    };
}
#endif

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_LOOP_HPP
