// lamda/search/report.hpp: the outcome of a search, for machines (report.json) and for people
// (report.html: one self-contained page, an inline SVG scatter of the candidates, no script and
// no external asset). Core: no dependencies.
//
//   lamda::ReportInfo info;  info.objective = ...; info.proposer = "offline"; ...
//   std::optional<std::size_t> best = lamda::best_candidate(records, info.objective);
//   write(out / "report.json", lamda::report_json(task, records, info));
//   write(out / "report.html", lamda::report_html(task, records, info));
//
// The scatter (`<svg id="scatter">`) has one `<circle class="candidate ...">` per plotted candidate
// (classes feasible|infeasible, measured|predicted, on-front), the Pareto front as
// `<polyline id="pareto" class="pareto">`, the latency limit as `<line id="constraint">`, the best
// candidate ringed by `<circle id="best-ring">`, and a legend `<g id="legend">`. Candidates with a
// latency but no accuracy (over a budget, so never trained) are `<path class="untrained ...">`
// crosses in a strip along the bottom of the accuracy plot. The best model's section names it
// (`id="best-name"`, the name best.lamda gets: best_model_name) and draws its costliest layers as
// bars (`<svg id="layer-chart">`, one `<rect class="layer-bar">` per layer).
#ifndef LAMDA_SEARCH_REPORT_HPP
#define LAMDA_SEARCH_REPORT_HPP

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <system_error>

#include "journal.hpp"
#include "../detail/format.hpp"
#include "../detail/json_write.hpp"
#include "types.hpp"
#include "task.hpp"
#include "../version.hpp"

namespace lamda {

// A finished candidate measured again, longer, before it is handed over.
struct Confirmation {
    std::size_t position = 0;  // in `records`
    double median_ms = 0;      // at the machine's usual pace (the measured median / slowdown)
    int runs = 0;
    double slowdown = 1.0;     // > 1: what a measurement taken in a slow burst was divided by (search/loop.hpp: usual_pace_ms)
};

// Whether a final training's last epoch stopped part-way (a trainer that does not say: no).
inline bool last_epoch_partial(const FinalTraining& f) noexcept {
    return f.epochs_trained > 0 && f.epochs_trained < f.epochs;
}

// Whether a final training stopped short of the epochs asked (Budget::max_total_seconds).
inline bool cut_short(const FinalTraining& f) noexcept {
    return f.epochs_asked > f.epochs || (f.epochs_trained > 0 && f.epochs_trained < f.epochs_asked);
}

// The epochs a final training ran, as people read them: "12", or "3.81" when its last epoch
// stopped part-way (a trainer that does not say: the epochs begun).
inline std::string epochs_trained_text(const FinalTraining& f) {
    if (last_epoch_partial(f)) return detail::format_fixed(f.epochs_trained, 2);
    return std::to_string(f.epochs);
}

// A finished candidate trained in full.
struct TrainedCandidate {
    std::size_t position = 0;  // in `records`
    FinalTraining result;
    std::string weights;  // safetensors path ("" none)
};

// What the report says besides the task and the records.
struct ReportInfo {
    Objective objective = Objective::Capacity;  // the objective the search used
    std::string proposer;
    std::uint64_t seed = 0;
    std::string device;       // where latency was measured (CPU model, threads), free text
    std::string stop_reason;  // why the search ended: "budget: 100 candidates", ...
    double total_seconds = 0;  // wall time of the search, resumed runs included
    std::vector<std::pair<std::string, double>> stage_seconds;  // {"predict", 1.5}, ... summed
    std::optional<std::size_t> best;  // position in `records` of the model handed over
    bool no_best = false;  // true: none is handed over; false with no `best`: best_candidate()
    std::vector<Confirmation> confirmations;       // in the order they were made
    std::vector<TrainedCandidate> final_trainings; // in the order they were made
    // Not empty: the report was written while this was still being computed ("the final training
    // of #12"); `best` is then the candidate being trained, and a later report replaces this one.
    std::string pending;
    // An adaptation's start model (--start-from, docs/adapt.md): its file, its latency on this
    // search's device and its test accuracy with its own weights (nullopt: not measured).
    struct StartModelInfo {
        std::string source;
        std::optional<double> measured_ms, test_accuracy;
        // The final trainings distilled it: {weight, temperature} (GenerateOptions::distill_weight).
        std::optional<std::pair<double, double>> distillation = std::nullopt;
    };
    std::optional<StartModelInfo> start_model;  // nullopt: the search did not adapt a model
};

// Whether a candidate has a place in the latency/score plane: it was analysed, has a (measured
// or predicted) latency, and a score under `objective` (accuracy needs a trained candidate).
inline bool on_latency_plane(const CandidateRecord& r, Objective objective) noexcept {
    if (r.verdict == Verdict::Invalid || r.verdict == Verdict::WrongTask) return false;
    const std::optional<double> ms = judged_latency_ms(r);
    if (!ms || !std::isfinite(*ms) || *ms < 0) return false;
    if (objective == Objective::Accuracy) return r.accuracy && std::isfinite(*r.accuracy);
    return r.macs >= 0;
}

// Candidates the accuracy plot has a latency for but no accuracy: rejected on a budget before
// training (over the latency, parameter or memory limit). They are drawn as crosses at the bottom.
inline bool untrained_on_plane(const CandidateRecord& r, Objective objective) noexcept {
    if (objective != Objective::Accuracy || r.verdict == Verdict::Invalid || r.verdict == Verdict::WrongTask) return false;
    const std::optional<double> ms = judged_latency_ms(r);
    return ms && std::isfinite(*ms) && *ms >= 0 && !(r.accuracy && std::isfinite(*r.accuracy));
}

// The name the model handed over gets (`model NAME` in best.lamda, the report's heading): the
// task's name as an identifier ("fmnist fast" -> "fmnist_fast"), "best" without one.
inline std::string best_model_name(const Task& task) {
    std::string name;
    for (char c : task.name) {
        const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        if (word) name += c;
        else if (!name.empty() && name.back() != '_') name += '_';
        if (name.size() >= 64) break;
    }
    while (!name.empty() && name.back() == '_') name.pop_back();
    if (name.empty() || (name[0] >= '0' && name[0] <= '9')) name = "best" + (name.empty() ? std::string() : "_" + name);
    return name;
}

// `dsl` with its `model NAME` line (the first non-comment, non-blank line, when it is one)
// naming `name`; a line is added before the first layer when there is none.
inline std::string with_model_name(const std::string& dsl, const std::string& name) {
    std::size_t at = 0;
    while (at < dsl.size()) {
        std::size_t end = dsl.find('\n', at);
        if (end == std::string::npos) end = dsl.size();
        std::string_view line(dsl.data() + at, end - at);
        const std::size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string_view::npos || line[first] == '#') {
            at = end + 1;
            continue;
        }
        if (line.substr(first, 6) == "model " || line.substr(first, 6) == "model\t") {
            const std::size_t comment = line.find('#');
            const std::string tail = comment == std::string_view::npos ? std::string() : "  " + std::string(line.substr(comment));
            return dsl.substr(0, at) + "model " + name + tail + dsl.substr(end);
        }
        return dsl.substr(0, at) + "model " + name + "\n" + dsl.substr(at);
    }
    return dsl;
}

// The Pareto front: candidates (positions in `records`) no other candidate beats on both judged
// latency (lower) and objective_score (higher), in order of increasing latency. Among equal
// candidates the first one recorded stands for them. `feasible_only`: among feasible candidates.
inline std::vector<std::size_t> pareto_front(const std::vector<CandidateRecord>& records, Objective objective,
                                             bool feasible_only = false) {
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < records.size(); ++i) {
        if (!on_latency_plane(records[i], objective)) continue;
        if (feasible_only && records[i].verdict != Verdict::Feasible) continue;
        order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const double la = *judged_latency_ms(records[a]), lb = *judged_latency_ms(records[b]);
        if (la != lb) return la < lb;
        return objective_score(records[a], objective) > objective_score(records[b], objective);
    });
    std::vector<std::size_t> front;
    double best_score = -std::numeric_limits<double>::infinity();
    for (std::size_t i : order) {
        const double s = objective_score(records[i], objective);
        if (s > best_score) {
            front.push_back(i);
            best_score = s;
        }
    }
    return front;
}

// Feasible candidates, best first: higher objective_score, then lower judged latency, then the
// earlier one. Positions in `records`.
inline std::vector<std::size_t> rank_feasible(const std::vector<CandidateRecord>& records, Objective objective) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < records.size(); ++i)
        if (records[i].verdict == Verdict::Feasible) out.push_back(i);
    const auto latency = [&](std::size_t i) {
        const auto ms = judged_latency_ms(records[i]);
        return ms && std::isfinite(*ms) ? *ms : std::numeric_limits<double>::infinity();
    };
    std::stable_sort(out.begin(), out.end(), [&](std::size_t a, std::size_t b) {
        const double sa = objective_score(records[a], objective), sb = objective_score(records[b], objective);
        if (sa != sb) return sa > sb;
        return latency(a) < latency(b);
    });
    return out;
}

// rank_feasible by objective_score_in_time: the feasible candidates, best first, given the share
// of each one's full training that fits (`fit`: generate.hpp's final_training_fit, under
// Budget::max_total_seconds; null: rank_feasible); ties as rank_feasible.
inline std::vector<std::size_t> rank_feasible_in_time(const std::vector<CandidateRecord>& records, Objective objective,
                                                      const std::function<double(const CandidateRecord&)>& fit) {
    std::vector<std::size_t> ranked = rank_feasible(records, objective);
    if (!fit) return ranked;
    std::vector<double> score(records.size(), 0.0);
    for (std::size_t i : ranked) score[i] = objective_score_in_time(records[i], objective, fit(records[i]));
    std::stable_sort(ranked.begin(), ranked.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
    return ranked;
}

// The best feasible candidate (its position in `records`), or nothing when none is feasible.
inline std::optional<std::size_t> best_candidate(const std::vector<CandidateRecord>& records, Objective objective) {
    const std::vector<std::size_t> ranked = rank_feasible(records, objective);
    if (ranked.empty()) return std::nullopt;
    return ranked.front();
}

// Why a search handed over no model, in one line: the verdicts when no candidate was feasible,
// else what happened to the feasible ones (confirmed slower than the budget, full training below
// min_accuracy, or neither reached). `feasible` is how many records were feasible; `limits` the
// constraints the search held them to (GenerateOutcome::constraints).
inline std::string why_no_best(const Constraints& limits, const std::vector<CandidateRecord>& records,
                               std::size_t feasible, const ReportInfo& info) {
    if (records.empty()) return "no candidate was evaluated";
    if (feasible == 0) {
        std::map<std::string_view, std::size_t> counts;
        for (const CandidateRecord& r : records) ++counts[verdict_name(r.verdict)];
        std::vector<std::pair<std::string_view, std::size_t>> sorted(counts.begin(), counts.end());
        std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
        std::string out = "none of the " + std::to_string(records.size()) + " candidates met every constraint (";
        for (std::size_t i = 0; i < sorted.size(); ++i)
            out += (i ? ", " : "") + std::to_string(sorted[i].second) + " " + std::string(sorted[i].first);
        return out + ")";
    }
    std::string out = std::to_string(feasible) + " feasible";
    std::size_t slower = 0, below = 0;
    for (const Confirmation& c : info.confirmations)
        if (limits.latency_ms > 0 && c.median_ms > limits.latency_ms) ++slower;
    for (const TrainedCandidate& t : info.final_trainings)
        if (limits.min_accuracy && t.result.val_accuracy < *limits.min_accuracy) ++below;
    if (slower)
        out += "; " + std::to_string(slower) + " measured again over the " +
               detail::format_fixed(limits.latency_ms, 4) + " ms budget";
    if (below) {
        double top = 0;
        for (const TrainedCandidate& t : info.final_trainings) top = std::max(top, t.result.val_accuracy);
        out += "; " + std::to_string(below) + " trained in full below min_accuracy " +
               detail::format_fixed(*limits.min_accuracy * 100, 2) + "% (best " + detail::format_fixed(top * 100, 2) +
               "% on validation)";
    }
    if (!slower && !below) out += ", none confirmed or trained";
    return out;
}

namespace report_detail {

inline std::optional<std::size_t> best_of(const std::vector<CandidateRecord>& records, const ReportInfo& info) {
    if (info.no_best) return std::nullopt;
    if (info.best && *info.best < records.size()) return info.best;
    return best_candidate(records, info.objective);
}

inline const TrainedCandidate* training_of(const ReportInfo& info, std::optional<std::size_t> position) {
    if (!position) return nullptr;
    for (const TrainedCandidate& t : info.final_trainings)
        if (t.position == *position) return &t;
    return nullptr;
}

inline void write_training(JsonWriter& j, const std::vector<CandidateRecord>& records, const TrainedCandidate& t) {
    j.begin_object();
    if (t.position < records.size()) j.field("index", records[t.position].index);
    j.field("val_accuracy", t.result.val_accuracy);
    j.field("test_accuracy", t.result.test_accuracy);
    j.field("train_seconds", t.result.train_seconds);
    j.field("epochs", t.result.epochs);
    if (last_epoch_partial(t.result)) j.field("epochs_trained", t.result.epochs_trained);
    if (cut_short(t.result)) j.field("epochs_asked", t.result.epochs_asked);
    if (t.result.float_test_accuracy) {  // an int8 candidate: the accuracies above are after quantization
        j.field("precision", "int8");
        j.field("float_val_accuracy", t.result.float_val_accuracy);
        j.field("float_test_accuracy", t.result.float_test_accuracy);
    }
    if (const std::optional<TrainingRecipe>& r = t.result.recipe) {
        j.key("recipe").begin_object();
        j.field("optimizer", std::string_view(valid_utf8(r->optimizer)));
        j.field("lr", r->lr);
        j.field("cosine", r->cosine);
        j.field("batch_size", r->batch_size);
        j.field("weight_decay", r->weight_decay);
        j.field("label_smoothing", r->label_smoothing);
        j.field("shift", r->shift);
        j.field("flip", r->flip);
        j.field("erase", r->erase);
        j.field("seed", r->seed);
        j.field("threads", r->threads);
        j.field("from_inherited_weights", r->from_inherited_weights);
        j.field("batchnorm_images", r->batchnorm_images);
        j.end_object();
    }
    if (!t.weights.empty()) j.field("weights", std::string_view(valid_utf8(t.weights)));
    j.end_object();
}

inline void index_array(JsonWriter& j, std::string_view key, const std::vector<CandidateRecord>& records,
                        const std::vector<std::size_t>& positions) {
    j.key(key).begin_array();
    for (std::size_t p : positions) j.value(records[p].index);
    j.end_array();
}

}  // namespace report_detail

// report.json: {"format":"lamda-report","version":1, "task", "objective", "proposer", "seed",
// "device", "stop_reason", "pending": what was still being computed when this report was written
// (null in the last report of a run), "timings":{"total_s","stages":{...}}, "candidates", "verdicts":{...},
// "start_model": an adaptation's start model {"source","measured_ms","test_accuracy",
// "distillation": {"weight","temperature"} or null} (or null),
// "best": the record handed over, in full (or null), "best_confirmed_ms": its confirming
// measurement (or null), "final_training": its full training, with the "recipe" it trained with
// when the trainer said (or null), "final_trainings" and "confirmations": every one made, "pareto_front" and
// "pareto_front_feasible" (candidate indices), "summary": one short object per candidate}.
inline std::string report_json(const Task& task, const std::vector<CandidateRecord>& records, const ReportInfo& info) {
    JsonWriter j;
    j.begin_object();
    j.field("format", "lamda-report");
    j.field("version", 1);
    j.field("lamda_version", version_string);
    j.key("task");
    write_task_json(j, task);
    j.field("objective", objective_name(info.objective));
    j.field("proposer", std::string_view(valid_utf8(info.proposer)));
    j.field("seed", info.seed);
    j.field("device", std::string_view(valid_utf8(info.device)));
    j.field("stop_reason", std::string_view(valid_utf8(info.stop_reason)));
    j.key("pending");
    if (info.pending.empty()) j.null();
    else j.value(std::string_view(valid_utf8(info.pending)));
    j.key("timings").begin_object();
    j.field("total_s", info.total_seconds);
    j.key("stages").begin_object();
    for (const auto& [stage, s] : info.stage_seconds) j.field(valid_utf8(stage), s);
    j.end_object();
    j.end_object();
    j.field("candidates", static_cast<std::int64_t>(records.size()));
    j.key("verdicts").begin_object();
    for (Verdict v : {Verdict::Feasible, Verdict::Invalid, Verdict::WrongTask, Verdict::OverParams,
                      Verdict::OverMemory, Verdict::OverPredicted, Verdict::OverMeasured, Verdict::BelowAccuracy,
                      Verdict::Failed}) {
        const auto n = std::count_if(records.begin(), records.end(), [v](const CandidateRecord& r) { return r.verdict == v; });
        j.field(verdict_name(v), static_cast<std::int64_t>(n));
    }
    j.end_object();
    j.key("start_model");
    if (info.start_model) {
        j.begin_object();
        j.field("source", std::string_view(valid_utf8(info.start_model->source)));
        j.key("measured_ms").value(info.start_model->measured_ms);
        j.key("test_accuracy").value(info.start_model->test_accuracy);
        j.key("distillation");
        if (const auto& d = info.start_model->distillation) {
            j.begin_object();
            j.field("weight", d->first);
            j.field("temperature", d->second);
            j.end_object();
        } else {
            j.null();
        }
        j.end_object();
    } else {
        j.null();
    }
    const std::optional<std::size_t> best = report_detail::best_of(records, info);
    j.key("best");
    if (best) {
        write_candidate_json(j, records[*best], false);
    } else {
        j.null();
    }
    j.key("best_confirmed_ms");  // the best model's confirming measurement, if one was made
    {
        std::optional<double> confirmed;
        for (const Confirmation& c : info.confirmations)
            if (best && c.position == *best) confirmed = c.median_ms;
        j.value(confirmed);
    }
    j.key("final_training");  // the best model's, if it was trained in full
    if (const TrainedCandidate* t = report_detail::training_of(info, best)) {
        report_detail::write_training(j, records, *t);
    } else {
        j.null();
    }
    j.key("final_trainings").begin_array();
    for (const TrainedCandidate& t : info.final_trainings) report_detail::write_training(j, records, t);
    j.end_array();
    j.key("confirmations").begin_array();
    for (const Confirmation& c : info.confirmations) {
        j.begin_object();
        if (c.position < records.size()) j.field("index", records[c.position].index);
        j.field("median_ms", c.median_ms);
        j.field("runs", c.runs);
        j.field("slowdown", c.slowdown);
        j.end_object();
    }
    j.end_array();
    report_detail::index_array(j, "pareto_front", records, pareto_front(records, info.objective));
    report_detail::index_array(j, "pareto_front_feasible", records, pareto_front(records, info.objective, true));
    j.key("summary").begin_array();
    for (const CandidateRecord& r : records) {
        j.begin_object();
        j.field("index", r.index);
        j.field("verdict", verdict_name(r.verdict));
        j.field("hash", std::string_view(valid_utf8(r.hash)));
        j.field("params", r.params);
        j.field("macs", r.macs);
        j.field("peak_activation_bytes", r.peak_activation_bytes);
        j.field("predicted_ms", r.predicted_ms);
        j.field("measured_ms", r.measured_ms);
        j.field("accuracy", r.accuracy);
        j.field("seconds", r.seconds);
        if (!r.evaluated_by.empty()) j.field("evaluated_by", std::string_view(valid_utf8(r.evaluated_by)));
        j.field("note", std::string_view(valid_utf8(r.note)));
        j.end_object();
    }
    j.end_array();
    j.end_object();
    return j.str();
}

// ---- HTML ----------------------------------------------------------------------------------

// `s` escaped for HTML text and attribute values (and made valid UTF-8).
inline std::string html_escape(std::string_view s) {
    const std::string text = valid_utf8(s);
    std::string out;
    out.reserve(text.size());
    for (char ch : text) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default:
            // Control characters other than tab and newline are not allowed in HTML text.
            if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f) {
                out += "&#xFFFD;";
            } else {
                out += ch;
            }
        }
    }
    return out;
}

namespace report_detail {

// Locale-independent number formatting.
// Neither can emit garbage: a value that is not finite is "-", and one whose digits would not fit
// the buffer (|v| >= ~1e300 in fixed notation) falls back to the shortest exponent form; a
// to_chars failure is never read past.
inline std::string general(double v, int digits) {
    if (!std::isfinite(v)) return "-";
    char buffer[64];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::general,
                                 std::clamp(digits, 1, 17));
    if (r.ec != std::errc()) return "-";
    return std::string(buffer, r.ptr);
}
inline std::string fixed(double v, int decimals) {
    if (!std::isfinite(v)) return "-";
    decimals = std::clamp(decimals, 0, 17);
    // An SVG coordinate or a table cell never needs more than 1e15 in fixed notation.
    if (std::fabs(v) >= 1e15) return general(v, 6);
    char buffer[64];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::fixed, decimals);
    if (r.ec != std::errc()) return general(v, 6);
    return std::string(buffer, r.ptr);
}

// A full training's recipe in a table cell: "adam, lr 0.003 cosine, batch 128, ..." ("" unknown).
inline std::string recipe_text(const std::optional<TrainingRecipe>& r) {
    if (!r) return "";
    std::string t = html_escape(r->optimizer) + ", lr " + general(r->lr, 4) + (r->cosine ? " cosine" : " constant") +
                    ", batch " + std::to_string(r->batch_size) + ", weight decay " + general(r->weight_decay, 3) +
                    ", label smoothing " + general(r->label_smoothing, 3) + ", shift " + std::to_string(r->shift) +
                    (r->flip ? ", flip" : "") + (r->erase > 0 ? ", erase " + general(r->erase, 3) : "") + ", seed " +
                    std::to_string(r->seed) + ", " + std::to_string(r->threads) +
                    (r->threads == 1 ? " thread" : " threads");
    if (r->from_inherited_weights) t += ", from inherited weights";
    if (r->batchnorm_images > 0) t += ", batch norm set from " + std::to_string(r->batchnorm_images) + " images";
    return t;
}

// 1234567 -> "1,234,567"; negative (not analysed) -> "-".
inline std::string grouped(std::int64_t v) {
    if (v < 0) return "-";
    std::string digits = std::to_string(v), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return out;
}
// 1.2M, 350k, 12G: for axis ticks.
inline std::string compact(double v) {
    const char* suffix[] = {"", "k", "M", "G", "T", "P"};
    int s = 0;
    while (std::fabs(v) >= 1000 && s < 5) {
        v /= 1000;
        ++s;
    }
    return general(v, 3) + suffix[s];
}
inline std::string ms_text(const std::optional<double>& ms) { return ms ? general(*ms, 4) : std::string("-"); }
inline std::string accuracy_text(const std::optional<double>& a) {
    return a ? fixed(*a * 100, 2) + "%" : std::string("-");
}

// A linear or logarithmic map from data to pixels, with its ticks.
struct Axis {
    bool log = false;
    double lo = 0, hi = 1;      // data range (positive when log)
    double p0 = 0, p1 = 1;      // pixel range (p0 is where lo goes)

    double t(double v) const { return log ? std::log10(v) : v; }
    double px(double v) const {
        const double a = t(lo), b = t(hi);
        const double f = b > a ? (t(v) - a) / (b - a) : 0.5;
        return p0 + f * (p1 - p0);
    }
    std::vector<double> ticks() const {
        std::vector<double> out;
        if (log) {
            const int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
            const int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
            const bool fine = e1 - e0 <= 2;
            for (int e = e0; e <= e1; ++e) {
                for (double m : {1.0, 2.0, 5.0}) {
                    if (m != 1.0 && !fine) continue;
                    const double v = m * std::pow(10.0, e);
                    if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push_back(v);
                }
            }
            if (out.size() < 2) out = {lo, hi};
            return out;
        }
        const double span = hi - lo;
        if (!(span > 0) || !std::isfinite(span)) return {lo};
        const double raw = span / 6;
        const double mag = std::pow(10.0, std::floor(std::log10(raw)));
        double step = mag;
        for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
            if (m * mag >= raw) {
                step = m * mag;
                break;
            }
        // Bounded: at most a dozen ticks, each computed from its index (v += step stalls when step
        // is below the spacing of doubles near lo, e.g. 1e17 and 1e17+16).
        const double first = std::ceil(lo / step - 1e-9);
        for (int k = 0; k <= 12; ++k) {
            const double v = (first + k) * step;
            if (!(v <= hi + step * 1e-9)) break;
            if (!out.empty() && !(v > out.back())) break;
            out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
        }
        if (out.empty()) out = {lo, hi};
        return out;
    }
};

// Fits an axis to values (and extra values that must be visible, like the latency limit).
inline Axis fit_axis(std::vector<double> values, bool allow_log, bool force_log, double p0, double p1) {
    Axis a;
    a.p0 = p0;
    a.p1 = p1;
    if (values.empty()) values = {0, 1};
    double lo = *std::min_element(values.begin(), values.end());
    double hi = *std::max_element(values.begin(), values.end());
    a.log = (force_log || (allow_log && lo > 0 && hi / lo > 20)) && lo > 0;
    if (a.log) {
        a.lo = std::pow(10.0, std::floor(std::log10(lo) * 4) / 4);  // a little room, on quarter decades
        a.hi = std::pow(10.0, std::ceil(std::log10(hi) * 4) / 4);
        if (!(a.hi > a.lo)) {
            a.lo /= 2;
            a.hi *= 2;
        }
        return a;
    }
    if (!(hi > lo)) {
        const double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
        lo -= d;
        hi += d;
    }
    const double pad = (hi - lo) * 0.06;
    a.lo = lo - pad;
    a.hi = hi + pad;
    if (lo >= 0 && a.lo < 0) a.lo = 0;
    return a;
}

}  // namespace report_detail

// report.html: one page, readable offline, with no script: the task and its constraints, the
// scatter of candidates (x: latency, measured or else predicted; y: accuracy, or MACs on a log
// scale for the capacity objective), the Pareto front, the best candidates and the best model's DSL.
namespace report_detail {

// The search's progress, as NNI shows it: every candidate by index (feasible filled, others hollow
// grey) and the best feasible one so far as a step line; the objective's value on the y axis
// (accuracy, or the judged latency for the latency objective, lower is better).
inline std::string progress_chart(const std::vector<CandidateRecord>& records, Objective objective) {
    const bool by_accuracy = objective == Objective::Accuracy;
    const auto value = [&](const CandidateRecord& r) -> std::optional<double> {
        if (by_accuracy) return r.accuracy && std::isfinite(*r.accuracy) ? r.accuracy : std::nullopt;
        const std::optional<double> ms = judged_latency_ms(r);
        return ms && std::isfinite(*ms) && *ms >= 0 ? ms : std::nullopt;
    };
    std::vector<double> ys;
    for (const CandidateRecord& r : records)
        if (const auto v = value(r)) ys.push_back(*v);
    if (ys.empty()) return {};
    const double width = 960, height = 260, left = 84, right = 200, top = 16, bottom = 46;
    const double n = static_cast<double>(records.size() > 1 ? records.size() - 1 : 1);
    const auto X = [&](std::size_t i) { return fixed(left + (width - left - right) * static_cast<double>(i) / n, 2); };
    const Axis ay = fit_axis(ys, false, false, height - bottom, top);
    const auto Y = [&](double v) { return fixed(ay.px(v), 2); };
    std::string h = "<h2>Progress</h2>\n<svg id=\"progress\" class=\"progress\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                    fixed(width, 0) + "\" height=\"" + fixed(height, 0) + "\" viewBox=\"0 0 " + fixed(width, 0) + " " +
                    fixed(height, 0) + "\" role=\"img\" aria-label=\"best so far by candidate index\">\n";
    h += "<g class=\"axis\">\n";
    for (double v : ay.ticks())
        h += "<line class=\"grid\" x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(width - right, 0) + "\" y1=\"" + Y(v) +
             "\" y2=\"" + Y(v) + "\"/><text class=\"tick\" x=\"" + fixed(left - 8, 0) + "\" y=\"" + fixed(ay.px(v) + 4, 2) +
             "\" text-anchor=\"end\">" + (by_accuracy ? fixed(v * 100, 1) + "%" : general(v, 3)) + "</text>\n";
    h += "<line x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(width - right, 0) + "\" y1=\"" + fixed(height - bottom, 0) +
         "\" y2=\"" + fixed(height - bottom, 0) + "\"/>\n";
    h += "<text class=\"label\" x=\"" + fixed((left + width - right) / 2, 0) + "\" y=\"" + fixed(height - 12, 0) +
         "\" text-anchor=\"middle\">candidate index (0 to " + std::to_string(records.size() ? records.size() - 1 : 0) +
         ")</text>\n<text class=\"label\" transform=\"translate(16 " + fixed((top + height - bottom) / 2, 0) +
         ") rotate(-90)\" text-anchor=\"middle\">" + (by_accuracy ? "accuracy" : "latency ms") + "</text>\n</g>\n";
    std::string steps;
    std::optional<double> best;
    for (std::size_t i = 0; i < records.size(); ++i) {
        const CandidateRecord& r = records[i];
        const auto v = value(r);
        if (!v) continue;
        const bool feasible = r.verdict == Verdict::Feasible;
        h += "<circle class=\"progress-point " + std::string(feasible ? "feasible" : "infeasible") + "\" cx=\"" + X(i) +
             "\" cy=\"" + Y(*v) + "\" r=\"3\" fill=\"" + (feasible ? "#1b9e77" : "#fff") + "\" stroke=\"" +
             (feasible ? "#1b9e77" : "#999") + "\"><title>#" + std::to_string(r.index) + " " +
             std::string(verdict_name(r.verdict)) + "</title></circle>\n";
        if (feasible && (!best || (by_accuracy ? *v > *best : *v < *best))) {
            if (best) steps += " " + X(i) + "," + Y(*best);
            best = *v;
            steps += (steps.empty() ? "" : " ") + X(i) + "," + Y(*best);
        }
    }
    if (best) {
        steps += " " + X(records.size() - 1) + "," + Y(*best);
        h += "<polyline id=\"best-so-far\" fill=\"none\" stroke=\"#3b3bb3\" stroke-width=\"2\" points=\"" + steps +
             "\"><title>best feasible so far</title></polyline>\n";
    }
    h += "</svg>\n";
    return h;
}

}  // namespace report_detail

namespace report_detail {

// report.html, built section by section; each method appends one part of the page to `h`.
struct HtmlReport {
    const Task& task;
    const std::vector<CandidateRecord>& records;
    const ReportInfo& info;
    const Objective objective;
    const bool by_accuracy;
    const std::optional<std::size_t> best;
    const std::vector<std::size_t> front;      // the Pareto front, by latency
    std::vector<bool> is_front;
    std::vector<std::size_t> plotted;          // candidates on the latency plane
    std::vector<std::size_t> untrained;        // with a latency, no accuracy: crosses at the bottom
    const std::vector<std::size_t> ranked;     // feasible, best first
    // The scatter's geometry; the legend sits on the right.
    static constexpr double width = 960, height = 480, left = 84, right = 200, top = 20, bottom = 58;
    const double limit;
    Axis ax, ay;
    std::string h;

    HtmlReport(const Task& t, const std::vector<CandidateRecord>& rs, const ReportInfo& i)
        : task(t), records(rs), info(i), objective(i.objective), by_accuracy(i.objective == Objective::Accuracy),
          best(best_of(rs, i)), front(pareto_front(rs, i.objective)), is_front(rs.size(), false),
          ranked(rank_feasible(rs, i.objective)), limit(t.constraints.latency_ms) {
        for (std::size_t p : front) is_front[p] = true;
        for (std::size_t k = 0; k < records.size(); ++k)
            if (on_latency_plane(records[k], objective)) plotted.push_back(k);
            else if (untrained_on_plane(records[k], objective)) untrained.push_back(k);
        fit_axes();
        h.reserve(16384 + records.size() * 600);
    }

    // The strip along the bottom that holds the untrained crosses (none: 0 px).
    double strip() const { return untrained.empty() ? 0.0 : 22.0; }

    double y_value(const CandidateRecord& r) const {
        return by_accuracy ? *r.accuracy : std::max(1.0, static_cast<double>(r.macs));
    }
    std::string X(double v) const { return fixed(ax.px(v), 2); }
    std::string Y(double v) const { return fixed(ay.px(v), 2); }

    void fit_axes() {
        std::vector<double> xs, ys;
        for (std::size_t p : plotted) {
            xs.push_back(*judged_latency_ms(records[p]));
            ys.push_back(y_value(records[p]));
        }
        for (std::size_t p : untrained) xs.push_back(*judged_latency_ms(records[p]));
        if (limit > 0) xs.push_back(limit);
        bool x_positive = true;
        for (double x : xs) x_positive = x_positive && x > 0;
        ax = fit_axis(xs, x_positive, false, left, width - right);
        ay = fit_axis(ys, false, !by_accuracy, height - bottom - strip(), top);
        if (by_accuracy) {
            ay.lo = std::max(0.0, ay.lo);
            ay.hi = std::min(1.0, ay.hi);
            if (!(ay.hi > ay.lo)) {
                ay.lo = 0;
                ay.hi = 1;
            }
        }
    }

    // The page's head, style sheet and summary line.
    void page_head() {
        h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
        h += "<title>lamda report: " + html_escape(task.name) + "</title>\n";
        h += R"(<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1000px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: 10px; overflow-x: auto; font-size: 12.5px; }
.muted { color: #666; } .feasible-text { color: #1b7a4f; } .infeasible-text { color: #b5480b; }
svg#scatter { max-width: 100%; height: auto; } svg text { font: 12px system-ui, sans-serif; fill: #333; }
svg .axis line { stroke: #444; } svg .axis line.grid { stroke: #e8e8e8; }
svg .candidate { stroke-width: 1.4; } svg .candidate.feasible { stroke: #1b9e77; } svg .candidate.infeasible { stroke: #d95f02; }
svg .candidate.measured.feasible { fill: #1b9e77; } svg .candidate.measured.infeasible { fill: #d95f02; }
svg .candidate.predicted { fill: #fff; } svg .candidate.on-front { stroke: #111; stroke-width: 1.8; }
svg .pareto { fill: none; stroke: #3b3bb3; stroke-width: 2; stroke-dasharray: 6 3; }
svg .constraint { stroke: #c0182b; stroke-width: 1.5; stroke-dasharray: 4 4; }
svg .best-ring { fill: none; stroke: #111; stroke-width: 2; }
svg .untrained { fill: none; stroke: #d95f02; stroke-width: 1.8; }
svg#layer-chart { max-width: 100%; height: auto; } svg .layer-bar { fill: #5b7fb0; } svg .layer-bar.other { fill: #bbb; }
</style>
</head>
<body>
)";
        h += "<h1>lamda report: " + html_escape(task.name) + "</h1>\n";
        h += "<p class=\"muted\">" + std::to_string(records.size()) + " candidates, proposer " +
             html_escape(info.proposer.empty() ? "-" : info.proposer) + ", seed " + std::to_string(info.seed) +
             ", objective " + std::string(objective_name(objective)) + ", " + general(info.total_seconds, 4) +
             " s" + (info.stop_reason.empty() ? std::string() : ", stopped: " + html_escape(info.stop_reason)) +
             ". lamda " + version_string + ".</p>\n";
        if (!info.pending.empty())
            h += "<p id=\"pending\"><strong>Not finished:</strong> written during " + html_escape(info.pending) +
                 "; this page is replaced when it ends (a stopped run goes on with <code>--resume</code>).</p>\n";

    }

    // Task and constraints.
    void task_table() {
        h += "<h2>Task</h2>\n<table id=\"task\">\n";
        const auto row = [this](const std::string& k, const std::string& v_html) {
            h += "<tr><th>" + k + "</th><td>" + v_html + "</td></tr>\n";
        };
        const Constraints& c = task.constraints;
        row("input", html_escape(to_string(task.input)));
        row("classes", std::to_string(task.classes));
        row("dataset", task.dataset.empty() ? std::string("none") : html_escape(task.dataset));
        row("latency", c.latency_ms > 0 ? "&le; " + general(c.latency_ms, 6) + " ms at " + std::to_string(c.threads) +
                                              (c.threads == 1 ? " thread" : " threads")
                                        : std::string("no limit"));
        row("parameters", c.max_params > 0 ? "&le; " + grouped(c.max_params) : std::string("no limit"));
        row("RAM (firmware)",
            c.max_activation_bytes > 0 ? "&le; " + grouped(c.max_activation_bytes) + " bytes" : std::string("no limit"));
        if (c.max_weight_bytes > 0) row("weights (flash)", "&le; " + grouped(c.max_weight_bytes) + " bytes");
        if (task.precision != TaskPrecision::Fp32) row("precision", std::string(task_precision_name(task.precision)));
        row("accuracy", c.min_accuracy ? "&ge; " + accuracy_text(c.min_accuracy) : std::string("no limit"));
        row("budget", std::to_string(task.budget.max_candidates) + " candidates, " + general(task.budget.max_seconds, 6) + " s" +
                          (task.budget.max_total_seconds > 0
                               ? ", " + general(task.budget.max_total_seconds, 6) + " s with the final training"
                               : std::string()));
        row("profile", task.profile.empty() ? std::string("-") : html_escape(task.profile));
        if (!info.device.empty()) row("device", html_escape(info.device));
        h += "</table>\n";

    }

    // Verdicts and timings.
    void outcome() {
        h += "<h2>Outcome</h2>\n<table id=\"verdicts\">\n<tr><th>verdict</th><th class=\"num\">candidates</th></tr>\n";
        for (Verdict v : {Verdict::Feasible, Verdict::Invalid, Verdict::WrongTask, Verdict::OverParams,
                          Verdict::OverMemory, Verdict::OverPredicted, Verdict::OverMeasured, Verdict::BelowAccuracy,
                          Verdict::Failed}) {
            const auto n = std::count_if(records.begin(), records.end(), [v](const CandidateRecord& r) { return r.verdict == v; });
            if (n == 0) continue;
            h += "<tr><td>" + std::string(verdict_name(v)) + "</td><td class=\"num\">" + std::to_string(n) + "</td></tr>\n";
        }
        h += "</table>\n";
        if (!info.stage_seconds.empty()) {
            h += "<table id=\"timings\">\n<tr><th>stage</th><th class=\"num\">seconds</th></tr>\n";
            for (const auto& [stage, s] : info.stage_seconds)
                h += "<tr><td>" + html_escape(stage) + "</td><td class=\"num\">" + fixed(s, 2) + "</td></tr>\n";
            h += "<tr><td>total</td><td class=\"num\">" + fixed(info.total_seconds, 2) + "</td></tr>\n</table>\n";
        }

    }

    // The scatter of every plotted candidate by latency and accuracy (or MACs).
    void scatter() {
        const Constraints& c = task.constraints;
    const std::string y_label = by_accuracy ? "validation accuracy" : "MACs (log scale)";
    h += "<h2>Candidates</h2>\n";
    h += "<p class=\"muted\">" + std::to_string(plotted.size() + untrained.size()) + " of " +
         std::to_string(records.size()) + " candidates plotted" +
         (untrained.empty() ? std::string()
                            : ", " + std::to_string(untrained.size()) +
                                  " of them over a budget and never trained: crosses along the bottom") +
         " (the others have no latency or no " + (by_accuracy ? "accuracy" : "analysis") +
         "). Filled: measured latency; hollow: predicted only. Pareto front: lower latency and higher " +
         (by_accuracy ? "accuracy" : "capacity") + " than any other.</p>\n";
    h += "<svg id=\"scatter\" class=\"scatter\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" + fixed(width, 0) +
         "\" height=\"" + fixed(height, 0) + "\" viewBox=\"0 0 " + fixed(width, 0) + " " + fixed(height, 0) +
         "\" role=\"img\" aria-label=\"candidates by latency and " + (by_accuracy ? "accuracy" : "MACs") + "\">\n";
    h += "<title>Candidates by latency (ms) and " + y_label + "</title>\n";
        scatter_axes(y_label, c);
        scatter_marks();
        scatter_legend();
        h += "</svg>\n";
    }

    // Grid and ticks.
    void scatter_axes(const std::string& y_label, const Constraints& c) {
        h += "<g class=\"axis\" id=\"x-axis\">\n";
        for (double v : ax.ticks()) {
            h += "<line class=\"grid\" x1=\"" + X(v) + "\" x2=\"" + X(v) + "\" y1=\"" + fixed(top, 0) + "\" y2=\"" +
                 fixed(height - bottom, 0) + "\"/>";
            h += "<line x1=\"" + X(v) + "\" x2=\"" + X(v) + "\" y1=\"" + fixed(height - bottom, 0) + "\" y2=\"" +
                 fixed(height - bottom + 5, 0) + "\"/>";
            h += "<text class=\"tick\" x=\"" + X(v) + "\" y=\"" + fixed(height - bottom + 19, 0) +
                 "\" text-anchor=\"middle\">" + general(v, 3) + "</text>\n";
        }
        h += "<line x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(width - right, 0) + "\" y1=\"" + fixed(height - bottom, 0) +
             "\" y2=\"" + fixed(height - bottom, 0) + "\"/>\n";
        h += "<text class=\"label\" x=\"" + fixed((left + width - right) / 2, 0) + "\" y=\"" + fixed(height - 14, 0) +
             "\" text-anchor=\"middle\">latency (ms" + std::string(ax.log ? ", log scale" : "") + ", at " +
             std::to_string(c.threads) + (c.threads == 1 ? " thread" : " threads") + ")</text>\n</g>\n";
        h += "<g class=\"axis\" id=\"y-axis\">\n";
        const std::vector<double> y_ticks = ay.ticks();
        int y_decimals = 0;  // of percentages: enough to tell neighbouring ticks apart
        if (y_ticks.size() >= 2 && y_ticks[1] > y_ticks[0])
            y_decimals = std::clamp(static_cast<int>(std::ceil(-std::log10((y_ticks[1] - y_ticks[0]) * 100) - 1e-9)), 0, 4);
        for (double v : y_ticks) {
            h += "<line class=\"grid\" x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(width - right, 0) + "\" y1=\"" + Y(v) +
                 "\" y2=\"" + Y(v) + "\"/>";
            h += "<line x1=\"" + fixed(left - 5, 0) + "\" x2=\"" + fixed(left, 0) + "\" y1=\"" + Y(v) + "\" y2=\"" + Y(v) + "\"/>";
            h += "<text class=\"tick\" x=\"" + fixed(left - 8, 0) + "\" y=\"" + fixed(ay.px(v) + 4, 2) +
                 "\" text-anchor=\"end\">" + (by_accuracy ? fixed(v * 100, y_decimals) + "%" : compact(v)) +
                 "</text>\n";
        }
        h += "<line x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(left, 0) + "\" y1=\"" + fixed(top, 0) + "\" y2=\"" +
             fixed(height - bottom, 0) + "\"/>\n";
        h += "<text class=\"label\" transform=\"translate(16 " + fixed((top + height - bottom) / 2, 0) +
             ") rotate(-90)\" text-anchor=\"middle\">" + y_label + "</text>\n</g>\n";
    }

    // The latency limit, the Pareto front, the candidates and the best one's ring.
    void scatter_marks() {
        // The latency limit.
        if (limit > 0) {
            h += "<line id=\"constraint\" class=\"constraint\" x1=\"" + X(limit) + "\" x2=\"" + X(limit) + "\" y1=\"" +
                 fixed(top, 0) + "\" y2=\"" + fixed(height - bottom, 0) + "\"><title>latency limit " + general(limit, 6) +
                 " ms</title></line>\n";
            // Right of the line, or left of it where it would run past the plot into the legend.
            const std::string label = "limit " + general(limit, 4) + " ms";
            const double label_width = 7.0 * static_cast<double>(label.size());  // 12px font: < 7px a glyph
            const bool left_of_line = ax.px(limit) + 4 + label_width > width - right;
            h += "<text id=\"constraint-label\" class=\"constraint-label\" x=\"" +
                 fixed(ax.px(limit) + (left_of_line ? -4 : 4), 2) + "\" y=\"" + fixed(top + 12, 0) + "\" text-anchor=\"" +
                 (left_of_line ? "end" : "start") + "\" data-width=\"" + fixed(label_width, 0) + "\" fill=\"#c0182b\">" +
                 label + "</text>\n";
        }
        // The Pareto front.
        if (!front.empty()) {
            h += "<polyline id=\"pareto\" class=\"pareto\" points=\"";
            for (std::size_t k = 0; k < front.size(); ++k) {
                const CandidateRecord& r = records[front[k]];
                h += (k ? " " : "") + X(*judged_latency_ms(r)) + "," + Y(y_value(r));
            }
            h += "\"><title>Pareto front (" + std::to_string(front.size()) + " candidates)</title></polyline>\n";
        }
        // The candidates.
        h += "<g id=\"candidates\">\n";
        for (std::size_t p : plotted) {
            const CandidateRecord& r = records[p];
            const bool feasible = r.verdict == Verdict::Feasible;
            const bool measured = r.measured_ms.has_value();
            h += "<circle class=\"candidate " + std::string(feasible ? "feasible" : "infeasible") +
                 (measured ? " measured" : " predicted") + (is_front[p] ? " on-front" : "") + "\" data-index=\"" +
                 std::to_string(r.index) + "\" cx=\"" + X(*judged_latency_ms(r)) + "\" cy=\"" + Y(y_value(r)) + "\" r=\"" +
                 (is_front[p] ? "5" : "4") + "\"><title>#" + std::to_string(r.index) + " " +
                 std::string(verdict_name(r.verdict)) + ": " + general(*judged_latency_ms(r), 4) + " ms " +
                 (measured ? "measured" : "predicted") + ", " + grouped(r.params) + " params, " + grouped(r.macs) +
                 " MACs" + (r.accuracy ? ", accuracy " + accuracy_text(r.accuracy) : std::string()) +
                 (r.note.empty() ? std::string() : "\n" + html_escape(r.note)) + "</title></circle>\n";
        }
        h += "</g>\n";
        // Over a budget, never trained: a cross each, along the bottom of the plot.
        if (!untrained.empty()) {
            const double y = height - bottom - strip() / 2;
            h += "<g id=\"untrained\">\n<line class=\"grid\" x1=\"" + fixed(left, 0) + "\" x2=\"" + fixed(width - right, 0) +
                 "\" y1=\"" + fixed(height - bottom - strip(), 0) + "\" y2=\"" + fixed(height - bottom - strip(), 0) +
                 "\" stroke=\"#bbb\" stroke-dasharray=\"2 3\"/>\n<text class=\"untrained-label\" x=\"" + fixed(left - 8, 0) +
                 "\" y=\"" + fixed(y + 4, 0) + "\" text-anchor=\"end\" fill=\"#b5480b\">not trained</text>\n";
            for (std::size_t p : untrained) {
                const CandidateRecord& r = records[p];
                const double x = ax.px(*judged_latency_ms(r));
                h += "<path class=\"untrained infeasible\" data-index=\"" + std::to_string(r.index) + "\" d=\"M" +
                     fixed(x - 4, 2) + " " + fixed(y - 4, 2) + "L" + fixed(x + 4, 2) + " " + fixed(y + 4, 2) + "M" +
                     fixed(x - 4, 2) + " " + fixed(y + 4, 2) + "L" + fixed(x + 4, 2) + " " + fixed(y - 4, 2) +
                     "\"><title>#" + std::to_string(r.index) + " " + std::string(verdict_name(r.verdict)) + ": " +
                     general(*judged_latency_ms(r), 4) + " ms " + (r.measured_ms ? "measured" : "predicted") + ", " +
                     grouped(r.params) + " params, " + grouped(r.macs) + " MACs, not trained" +
                     (r.reason.empty() ? std::string() : " (" + html_escape(r.reason) + ")") + "</title></path>\n";
            }
            h += "</g>\n";
        }
        if (best && on_latency_plane(records[*best], objective)) {
            const CandidateRecord& r = records[*best];
            h += "<circle id=\"best-ring\" class=\"best-ring\" cx=\"" + X(*judged_latency_ms(r)) + "\" cy=\"" +
                 Y(y_value(r)) + "\" r=\"9\"><title>best: #" + std::to_string(r.index) + "</title></circle>\n";
        }
    }

    // Legend (its markers are not candidates).
    void scatter_legend() {
        {
            const double lx = width - right + 26, ly = top + 10;
            h += "<g id=\"legend\" class=\"legend\">\n";
            h += "<rect x=\"" + fixed(lx - 8, 0) + "\" y=\"" + fixed(ly - 8, 0) +
                 "\" width=\"170\" height=\"" + std::string(untrained.empty() ? "122" : "138") +
                 "\" fill=\"#fff\" fill-opacity=\"0.88\" stroke=\"#ccc\"/>\n";
            const auto item = [&](int k, const std::string& marker, const std::string& label) {
                const double y = ly + 6 + k * 16;
                std::string m = marker;
                for (std::string::size_type at; (at = m.find("@X")) != std::string::npos;) m.replace(at, 2, fixed(lx + 6, 1));
                for (std::string::size_type at; (at = m.find("@Y")) != std::string::npos;) m.replace(at, 2, fixed(y, 1));
                h += m + "<text x=\"" + fixed(lx + 20, 1) + "\" y=\"" + fixed(y + 4, 1) + "\">" + label + "</text>\n";
            };
            item(0, "<circle class=\"legend-marker\" cx=\"@X\" cy=\"@Y\" r=\"4\" fill=\"#1b9e77\" stroke=\"#1b9e77\"/>", "feasible");
            item(1, "<circle class=\"legend-marker\" cx=\"@X\" cy=\"@Y\" r=\"4\" fill=\"#d95f02\" stroke=\"#d95f02\"/>", "infeasible");
            item(2, "<circle class=\"legend-marker\" cx=\"@X\" cy=\"@Y\" r=\"4\" fill=\"#fff\" stroke=\"#555\" stroke-width=\"1.4\"/>",
                 "predicted latency only");
            item(3, "<circle class=\"legend-marker\" cx=\"@X\" cy=\"@Y\" r=\"4\" fill=\"#555\" stroke=\"#555\"/>", "measured latency");
            item(4, "<line class=\"legend-marker\" x1=\"" + fixed(lx - 2, 1) + "\" x2=\"" + fixed(lx + 14, 1) +
                        "\" y1=\"@Y\" y2=\"@Y\" stroke=\"#3b3bb3\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>",
                 "Pareto front");
            item(5, "<line class=\"legend-marker\" x1=\"@X\" x2=\"@X\" y1=\"" + fixed(ly + 6 + 5 * 16 - 6, 1) + "\" y2=\"" +
                        fixed(ly + 6 + 5 * 16 + 6, 1) + "\" stroke=\"#c0182b\" stroke-width=\"1.5\" stroke-dasharray=\"4 4\"/>",
                 "latency limit");
            item(6, "<circle class=\"legend-marker\" cx=\"@X\" cy=\"@Y\" r=\"7\" fill=\"none\" stroke=\"#111\" stroke-width=\"2\"/>",
                 "best");
            if (!untrained.empty())
                item(7, "<path class=\"legend-marker\" d=\"M" + fixed(lx + 2, 1) + " " + fixed(ly + 6 + 7 * 16 - 4, 1) + "l8 8m-8 0l8 -8\" "
                        "fill=\"none\" stroke=\"#d95f02\" stroke-width=\"1.8\"/>",
                     "not trained (budget)");
            h += "</g>\n";
        }
    }

    // The best candidates (or, with none feasible, the Pareto front).
    void best_candidates() {
        h += "<h2>Best candidates</h2>\n";
        const auto candidate_table = [&](const std::vector<std::size_t>& rows, const char* id, bool with_rank) {
            h += std::string("<table id=\"") + id + "\">\n<tr>" + (with_rank ? "<th class=\"num\">rank</th>" : "") +
                 "<th class=\"num\">#</th><th class=\"num\">latency ms</th><th>measured</th><th class=\"num\">params</th>"
                 "<th class=\"num\">MACs</th><th class=\"num\">flash (weight bytes)</th>"
                 "<th class=\"num\">RAM (peak activations)</th><th class=\"num\">accuracy</th><th>verdict</th><th>note</th></tr>\n";
            std::size_t rank = 0;
            for (std::size_t p : rows) {
                const CandidateRecord& r = records[p];
                const bool feasible = r.verdict == Verdict::Feasible;
                h += "<tr class=\"candidate-row\">" +
                     (with_rank ? "<td class=\"num\">" + std::to_string(++rank) + "</td>" : std::string()) +
                     "<td class=\"num\">" + std::to_string(r.index) + "</td><td class=\"num\">" +
                     ms_text(judged_latency_ms(r)) + "</td><td>" + (r.measured_ms ? "yes" : "predicted") +
                     "</td><td class=\"num\">" + grouped(r.params) + "</td><td class=\"num\">" + grouped(r.macs) +
                     "</td><td class=\"num weight-bytes\">" + (r.params >= 0 ? grouped(r.params * 4) : std::string("-")) +
                     "</td><td class=\"num activation-bytes\">" +
                     (r.peak_activation_bytes >= 0 ? grouped(r.peak_activation_bytes) : std::string("-")) +
                     "</td><td class=\"num\">" + accuracy_text(r.accuracy) + "</td><td class=\"" +
                     (feasible ? "feasible-text" : "infeasible-text") + "\">" + std::string(verdict_name(r.verdict)) +
                     "</td><td>" + html_escape(r.note) + "</td></tr>\n";
            }
            h += "</table>\n";
        };
        if (!ranked.empty()) {
            const std::vector<std::size_t> first(
                ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(10, ranked.size())));
            candidate_table(first, "best-table", true);
        } else {
            h += "<p id=\"no-feasible\"><strong>No candidate met every constraint.</strong> The Pareto front:</p>\n";
            candidate_table(front, "best-table", false);
        }
    }

    // The model handed over: its numbers, confirmation, training, costliest layers, DSL.
    void best_model() {
        if (best) {
            const CandidateRecord& r = records[*best];
            const std::string name = best_model_name(task);
            h += "<h2 id=\"best-name\">Best model: " + html_escape(name) + " (candidate " + std::to_string(r.index) +
                 ")</h2>\n";
            h += "<p id=\"next-step\">Next step: <code>lamda export best.lamda --weights best.safetensors --cpp model.hpp</code>"
                 " (or <code>--pytorch model.py</code>; docs/export.md), and <code>lamda bench best.lamda</code> on the "
                 "device.</p>\n";
            h += "<p>" + ms_text(judged_latency_ms(r)) + " ms " + (r.measured_ms ? "measured" : "predicted") + ", " +
                 grouped(r.params) + " parameters, " + grouped(r.macs) + " MACs" +
                 (r.peak_activation_bytes >= 0 ? ", " + grouped(r.peak_activation_bytes) + " bytes of peak activations"
                                               : std::string()) +
                 (r.accuracy ? ", accuracy " + accuracy_text(r.accuracy) : std::string()) +
                 (r.precision.empty() ? std::string() : ", in " + r.precision) + ".</p>\n";
            for (const Confirmation& k : info.confirmations)
                if (k.position == *best)
                    h += "<p id=\"confirmation\">Confirmed: " + general(k.median_ms, 4) + " ms median over " +
                         std::to_string(k.runs) + " runs" +
                         (k.slowdown != 1.0 ? " at the machine's usual pace (measured " + general(k.median_ms * k.slowdown, 4) +
                                                  " ms while the machine ran slow, divided by " + fixed(k.slowdown, 2) + ")"
                                            : std::string()) +
                         ".</p>\n";
            if (const TrainedCandidate* t = training_of(info, best)) {
                const FinalTraining& f = t->result;
                h += std::string("<p id=\"final-training\">") +
                     (f.epochs == 0 ? "The start model's own weights (its full training did not improve them on validation)"
                                    : "Trained in full: " + epochs_trained_text(f) +
                                          (cut_short(f) ? " of " + std::to_string(f.epochs_asked) + " epochs (the rest did not fit max_total_seconds), "
                                                                     : std::string(" epochs, ")) +
                                          fixed(f.train_seconds, 1) + " s") +
                     "; validation accuracy " + accuracy_text(f.val_accuracy) +
                     ", test accuracy " + accuracy_text(f.test_accuracy) +
                     (f.float_test_accuracy ? " in int8 (fp32 before quantization: validation " +
                                                  accuracy_text(f.float_val_accuracy) + ", test " +
                                                  accuracy_text(f.float_test_accuracy) +
                                                  "; best.safetensors is int8, best_fp32.safetensors fp32)"
                                            : std::string()) +
                     (t->weights.empty() ? std::string() : "; weights: " + html_escape(t->weights)) + ".</p>\n";
            }
            if (!r.top_layers.empty()) layer_chart(r);
            h += "<pre id=\"best-dsl\">" + html_escape(with_model_name(r.dsl, name)) + "</pre>\n";
        }

    }

    // The best model's costliest layers as horizontal bars (ms and share of the model's time), the
    // rest of the model as one grey bar.
    void layer_chart(const CandidateRecord& r) {
        std::vector<LayerCost> bars = r.top_layers;
        double shown = 0, max_ms = 0;
        for (const LayerCost& l : bars) shown += l.share;
        const double total_ms = judged_latency_ms(r).value_or(0.0);
        if (shown < 0.995 && shown > 0 && total_ms > 0)
            bars.push_back(LayerCost{"(other layers)", total_ms * (1 - shown), 1 - shown});
        for (const LayerCost& l : bars) max_ms = std::max(max_ms, l.ms);
        const double row = 22, label_w = 170, bar_w = 560, chart_h = 34 + row * static_cast<double>(bars.size());
        h += "<h3>Per-layer latency (" + std::string(r.measured_ms ? "measured" : "predicted") + ", costliest first)</h3>\n";
        h += "<svg id=\"layer-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"" + fixed(chart_h, 0) +
             "\" viewBox=\"0 0 900 " + fixed(chart_h, 0) + "\" role=\"img\" aria-label=\"per-layer latency of the best model\">\n";
        for (std::size_t k = 0; k < bars.size(); ++k) {
            const LayerCost& l = bars[k];
            const double y = 8 + row * static_cast<double>(k);
            const double w = max_ms > 0 ? std::max(1.0, bar_w * l.ms / max_ms) : 1.0;
            const bool other = k + 1 == bars.size() && bars.size() > r.top_layers.size();
            h += "<text x=\"" + fixed(label_w - 8, 0) + "\" y=\"" + fixed(y + 14, 0) + "\" text-anchor=\"end\">" +
                 html_escape(l.name) + "</text>";
            h += "<rect class=\"layer-bar" + std::string(other ? " other" : "") + "\" x=\"" + fixed(label_w, 0) + "\" y=\"" +
                 fixed(y + 2, 0) + "\" width=\"" + fixed(w, 1) + "\" height=\"" + fixed(row - 6, 0) + "\"><title>" +
                 html_escape(l.name) + ": " + general(l.ms, 4) + " ms, " + fixed(l.share * 100, 1) + "%</title></rect>";
            h += "<text x=\"" + fixed(label_w + w + 6, 1) + "\" y=\"" + fixed(y + 14, 0) + "\">" + general(l.ms, 3) + " ms (" +
                 fixed(l.share * 100, 0) + "%)</text>\n";
        }
        h += "<text x=\"" + fixed(label_w, 0) + "\" y=\"" + fixed(chart_h - 6, 0) + "\" class=\"muted\">share of the model's " +
             general(total_ms, 4) + " ms</text>\n</svg>\n";
    }

    // Why nothing was handed over, and every full training.
    void trainings() {
        if (!best && !ranked.empty())
            h += "<p id=\"no-best\"><strong>No model was handed over:</strong> no feasible candidate was confirmed on a "
                 "longer measurement or reached the accuracy limit when trained in full.</p>\n";
        if (!info.final_trainings.empty()) {
            h += "<h2>Full training</h2>\n<table id=\"final-trainings\">\n<tr><th class=\"num\">#</th><th class=\"num\">epochs</th>"
                 "<th class=\"num\">seconds</th><th class=\"num\">validation</th><th class=\"num\">test</th>"
                 "<th>recipe</th></tr>\n";
            for (const TrainedCandidate& t : info.final_trainings) {
                h += "<tr><td class=\"num\">" +
                     (t.position < records.size() ? std::to_string(records[t.position].index) : std::string("?")) +
                     "</td><td class=\"num\">" + epochs_trained_text(t.result) + "</td><td class=\"num\">" +
                     fixed(t.result.train_seconds, 1) + "</td><td class=\"num\">" + accuracy_text(t.result.val_accuracy) +
                     "</td><td class=\"num\">" + accuracy_text(t.result.test_accuracy) + "</td><td>" +
                     recipe_text(t.result.recipe) + "</td></tr>\n";
            }
            h += "</table>\n";
            if (info.start_model && info.start_model->distillation)
                h += "<p id=\"distillation\">The full trainings learned from the start model as well as from the labels "
                     "(distillation: weight " + fixed(info.start_model->distillation->first, 2) + ", temperature " +
                     fixed(info.start_model->distillation->second, 1) + ").</p>\n";
        }

    }

    // Every candidate, folded.
    void all_candidates() {
        h += "<details id=\"all-candidates\"><summary>All " + std::to_string(records.size()) + " candidates</summary>\n";
        h += "<table>\n<tr><th class=\"num\">#</th><th>verdict</th><th class=\"num\">latency ms</th><th class=\"num\">params</th>"
             "<th class=\"num\">MACs</th><th class=\"num\">accuracy</th><th>reason</th><th>note</th></tr>\n";
        for (const CandidateRecord& r : records) {
            h += "<tr><td class=\"num\">" + std::to_string(r.index) + "</td><td>" + std::string(verdict_name(r.verdict)) +
                 "</td><td class=\"num\">" + ms_text(judged_latency_ms(r)) + (r.measured_ms || !r.predicted_ms ? "" : " (pred.)") +
                 "</td><td class=\"num\">" + grouped(r.params) + "</td><td class=\"num\">" + grouped(r.macs) +
                 "</td><td class=\"num\">" + accuracy_text(r.accuracy) + "</td><td>" + html_escape(r.reason) + "</td><td>" +
                 html_escape(r.note) + "</td></tr>\n";
        }
        h += "</table>\n</details>\n</body>\n</html>\n";
        }
    };

    }  // namespace report_detail

    inline std::string report_html(const Task& task, const std::vector<CandidateRecord>& records, const ReportInfo& info) {
        report_detail::HtmlReport page(task, records, info);
        page.page_head();
        page.task_table();
        page.outcome();
        page.scatter();
        page.h += report_detail::progress_chart(records, info.objective);
        page.best_candidates();
        page.best_model();
        page.trainings();
        page.all_candidates();
        return std::move(page.h);
    }

    }  // namespace lamda

    #endif  // LAMDA_SEARCH_REPORT_HPP
