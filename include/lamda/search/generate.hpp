// lamda/search/generate.hpp: the whole search as one call -- everything `lamda generate` does, for
// programs that use lamda as a library (examples/search/search.cpp):
//
//   lamda::Task task = lamda::read_task("task.json");
//   lamda::OfflineDesigner proposer(/*seed=*/1);
//   lamda::GenerateOptions o;
//   o.out_dir = "runs/demo";
//   o.status = &std::cerr;                       // progress and status lines; nullptr: silent
//   lamda::GenerateOutcome r = lamda::generate(task, proposer, /*trainer=*/nullptr, o);
//   // r.best: the handed-over candidate; DIR/best.lamda, report.json, report.html, journal.jsonl
//
// What it does, in order: resolves the objective (accuracy when a trainer is given, capacity
// otherwise, unless the task says), reads the latency profile, opens (or, with resume, checks and
// continues) DIR/journal.jsonl, runs the loop (search/loop.hpp) measuring on this CPU through
// XNNPACK or through `measure_with` (a board), confirms the best feasible candidates with a
// longer measurement, trains the top ones in full when a trainer is given (until one meets
// min_accuracy), and writes best.lamda (+ best.safetensors), report.json and report.html
// atomically (a reader never sees half a file). With o.workers > 1 (threads) or o.runner (MPI
// ranks, search/mpi.hpp) several candidates are measured/trained at once (search/parallel.hpp,
// docs/scale.md); the journal, the report and the final steps stay in the calling thread.
//
// Contract: throws lamda::Exception (TaskError, JournalError, ProfileError, ...) for bad input
// and for a lost board (after the journal is safe: nothing computed is lost, --resume continues);
// a search that finds nothing feasible is not an exception: outcome.best is empty.
// Needs LAMDA_WITH_LATENCY; measuring on this CPU needs LAMDA_WITH_XNNPACK.
#ifndef LAMDA_SEARCH_GENERATE_HPP
#define LAMDA_SEARCH_GENERATE_HPP

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/search/generate.hpp needs LAMDA_WITH_LATENCY (the latency model; CMake: link lamda::latency)"
#else

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "../detail/format.hpp"
#include "../dsl/file.hpp"
#include "../exception.hpp"
#include "../exec/device.hpp"
#include "../latency/model.hpp"
#include "../version.hpp"
#include "adapt.hpp"
#include "journal.hpp"
#include "loop.hpp"
#include "parallel.hpp"
#include "report.hpp"
#include "task.hpp"
#include "types.hpp"

namespace lamda {

// How a search is run; the task says what is searched for.
struct GenerateOptions {
    std::string out_dir;        // journal, report, best model (created when missing)
    std::string task_file;      // names the task in messages (default: the task's name)
    std::uint64_t seed = 1;     // recorded in the journal; the proposer was built with it
    bool resume = false;        // continue DIR/journal.jsonl (it must match task, proposer, seed)
    int final_top = 3;          // with a trainer: at most this many trained in full, best first
    double proxy_slack = default_proxy_accuracy_slack;  // GenerateSetup::proxy_accuracy_slack
    int runs = 30;              // timed runs per measured candidate
    int confirm_runs = 300;     // timed runs confirming the best at the end
    // Measures on a board instead of this CPU: (runs, warmup, int8) -> a measuring function (int8:
    // the int8 executor with synthetic scales, for tasks in int8 or "any" precision). Its
    // exceptions with device_lost() true stop the search (see below). Empty: this CPU (XNNPACK).
    std::function<std::function<Measurement(const Graph&)>(int runs, int warmup, bool int8)> measure_with;
    // Called on a measuring exception: true when the board is gone (the search stops, the
    // candidate is left out of the journal so that --resume measures it again).
    std::function<bool(const std::exception&)> device_lost;
    std::string device_description;  // report's "device" (default: this CPU's model and threads)
    std::function<bool()> should_stop;  // polled between candidates (Ctrl-C)
    std::ostream* status = nullptr;     // progress and status lines; nullptr: silent
    bool status_is_terminal = false;    // one rewritten progress line instead of a line each
    // Parallel evaluation (search/parallel.hpp, docs/scale.md). `runner` (e.g. MPI ranks,
    // search/mpi.hpp) takes the measuring and training; else `workers` > 1 threads on this node,
    // each training with its own trainer from `worker_trainers` (one per worker when there is a
    // trainer: a trainer need not be thread-safe). Measurements never overlap trainings (NodeGate).
    std::shared_ptr<CandidateRunner> runner;
    int workers = 1;
    std::vector<Trainer*> worker_trainers;
    // Adaptation (search/adapt.hpp, docs/adapt.md): the start model, loaded and checked by
    // load_start_model(); the proposer is then an AdaptDesigner over it. Candidate 0 is the start
    // model, evaluated with its own weights; later candidates inherit their parent's weights and
    // are fine-tuned; the final training starts from the inherited weights. One process, one
    // evaluation at a time (no workers, no runner).
    std::shared_ptr<const StartModel> start;
    // Adaptation: > 0 distils the start model into the final trainings (Trainer::set_distillation:
    // this share of the loss from its predictions softened by distill_temperature); 0: labels only.
    double distill_weight = 0;
    double distill_temperature = 4;
};

struct GenerateOutcome {
    GenerateResult result;            // every record, the stop reason, stage times
    ReportInfo info;                  // what report.json/html say about confirmation and training
    std::vector<std::size_t> ranked;  // feasible candidates, best first
    std::optional<std::size_t> best;  // position in result.records of the handed-over model
    std::string journal_path;
    // With a start model: its measured latency (ms, this search's device) and its test accuracy
    // with its own weights (when there is a trainer).
    std::optional<double> start_ms, start_test_accuracy;
    // The constraints the search held candidates to: the task's, with min_accuracy set from the
    // start model's accuracy and min_accuracy_drop in an adaptation.
    Constraints constraints;
};

namespace generate_detail {

using detail::format_fixed;

// Writes through a temporary file and a rename, so that readers never see half a file.
inline void write_file_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << text;
        f.flush();
        if (!f) throw Exception(Error(ErrorKind::io, Where{tmp, 0, 0, {}}, "cannot write the file"));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw Exception(Error(ErrorKind::io, Where{path, 0, 0, {}}, "cannot rename " + tmp + ": " + ec.message()));
}

}  // namespace generate_detail

namespace generate_detail {

// The board's loss, set by whichever thread measured when it happened.
class LostBoard {
public:
    void set(std::string what) {
        std::lock_guard<std::mutex> lock(m_);
        if (what_.empty()) what_ = what.empty() ? std::string("the board was lost") : std::move(what);
    }
    bool lost() const {
        std::lock_guard<std::mutex> lock(m_);
        return !what_.empty();
    }
    std::string what() const {
        std::lock_guard<std::mutex> lock(m_);
        return what_;
    }

private:
    mutable std::mutex m_;
    std::string what_;
};

// The machine's pace for GenerateSetup::machine_slowdown: a fixed reference model (the zoo's
// first seed design at the task's input) timed when the search first measures and whenever a
// measurement is doubted; its time over the fastest seen so far is how slow the machine runs now.
// A reference that cannot be timed (a measurer that refuses it) turns the check off (pace 1):
// it must never fail a candidate.
class PaceReference {
public:
    PaceReference(const Task& task, std::function<Measurement(const Graph&)> measure)
        : graph_(parse_dsl_or_throw(render_design(zoo_seed_designs().front().second, task.input, task.classes, "pace"),
                                    "pace reference")),
          measure_(std::move(measure)) {}

    void seed() {
        std::lock_guard<std::mutex> lock(m_);
        if (fastest_ms_ <= 0) sample_locked();
    }

    double slowdown() {
        std::lock_guard<std::mutex> lock(m_);
        const double now = sample_locked();
        return fastest_ms_ > 0 && now > 0 ? now / fastest_ms_ : 1.0;
    }

private:
    double sample_locked() {
        if (off_) return fastest_ms_;
        try {
            const double ms = measure_(graph_).median_ms;
            if (ms > 0 && std::isfinite(ms) && (fastest_ms_ <= 0 || ms < fastest_ms_)) fastest_ms_ = ms;
            return ms > 0 && std::isfinite(ms) ? ms : fastest_ms_;
        } catch (const std::exception&) {
            off_ = true;  // (a lost board shows in the candidate's own measurement)
            return fastest_ms_;
        }
    }

    std::mutex m_;
    Graph graph_;
    std::function<Measurement(const Graph&)> measure_;
    double fastest_ms_ = 0;
    bool off_ = false;
};

}  // namespace generate_detail

// Where a candidate's latency is measured under `o`: the caller's board (o.measure_with) or, with
// XNNPACK, this CPU on the task's threads; empty when neither. (runs, warmup, int8) -> measuring function.
using MeasurerFn = std::function<std::function<Measurement(const Graph&)>(int, int, bool)>;
inline MeasurerFn measurer_for(const Task& task, const GenerateOptions& o) {
    auto measure_with = o.measure_with;
#if defined(LAMDA_WITH_XNNPACK)
    if (!measure_with) {
        const int threads = task.constraints.threads;
        measure_with = [threads](int runs, int warmup, bool int8) { return xnnpack_measure(threads, runs, warmup, int8); };
    }
#else
    (void)task;
#endif
    return measure_with;
}

// What evaluating a candidate needs (measurement, trainer, slack), the same for the search's own
// loop and for a worker (a thread, an MPI rank): no latency model, journal or callbacks.
// A measuring exception that o.device_lost() calls a lost board is noted in `lost` (when given).
inline GenerateSetup evaluation_setup(const Task& task, const GenerateOptions& o, Trainer* trainer,
                                      std::shared_ptr<generate_detail::LostBoard> lost = nullptr) {
    GenerateSetup setup;
    if (auto measure_with = measurer_for(task, o)) {
        // A measuring exception that o.device_lost() recognises marks the board lost.
        const auto guarded = [&](auto fn) {
            return [fn = std::move(fn), is_lost = o.device_lost, lost](auto&&... args) {
                try {
                    return fn(std::forward<decltype(args)>(args)...);
                } catch (const std::exception& e) {
                    if (is_lost && lost && is_lost(e)) lost->set(e.what());
                    throw;
                }
            };
        };
        // The machine's pace (GenerateSetup::machine_slowdown): the reference runs in fp32 where
        // the candidates run (a board or this CPU), first beside the search's first measurement, so
        // that a slow burst later has a baseline to be compared with.
        std::shared_ptr<generate_detail::PaceReference> pace;
        try {
            pace = std::make_shared<generate_detail::PaceReference>(task, measure_with(o.runs, 5, false));
        } catch (const std::exception&) {  // no reference renders at this input: no pace check
        }
        for (bool int8 : task_precisions(task)) {
            auto& slot = int8 ? setup.measure_int8 : setup.measure;
            slot = guarded([measure = measure_with(o.runs, 5, int8), pace](const Graph& g) {
                if (pace) pace->seed();
                return measure(g);
            });
        }
        if (pace) setup.machine_slowdown = [pace] { return pace->slowdown(); };
    }
    setup.trainer = trainer;
    setup.proxy_accuracy_slack = o.proxy_slack;
    return setup;
}

// One line about a candidate: "#12 feasible  3.88 MMACs  81482 params  pred 0.0910 ms ...".
inline std::string candidate_summary(const CandidateRecord& r) {
    using generate_detail::format_fixed;
    std::string s = "#" + std::to_string(r.index) + " " + std::string(verdict_name(r.verdict));
    if (r.macs >= 0) s += "  " + format_fixed(double(r.macs) / 1e6, 2) + " MMACs  " + std::to_string(r.params) + " params";
    if (r.predicted_ms) s += "  pred " + format_fixed(*r.predicted_ms, 4) + " ms";
    if (r.measured_ms) s += "  meas " + format_fixed(*r.measured_ms, 4) + " ms";
    if (r.accuracy) s += "  acc " + format_fixed(*r.accuracy * 100, 2) + "%";
    return s;
}

// The objective a search uses: the task's when it names one, else accuracy exactly when there
// is a trainer. Throws TaskError when accuracy is asked for and cannot be judged.
inline void resolve_objective(Task& task, bool have_trainer, const std::string& task_file) {
    if (!task.objective_given) task.objective = have_trainer ? Objective::Accuracy : Objective::Capacity;
    if (task.objective == Objective::Accuracy && !have_trainer)
        throw TaskError(task_file + ": objective \"accuracy\" needs a dataset and a lamda built with "
                        "libtorch; use \"capacity\" or add a dataset");
}

namespace generate_detail {

// Opens the journal: a fresh one (refusing to overwrite a search), or the one to resume, whose
// records are returned.
inline std::vector<CandidateRecord> open_journal(const Task& task, const Proposer& proposer,
                                                 const GenerateOptions& o, const std::string& path) {
    namespace fs = std::filesystem;
    std::vector<CandidateRecord> resumed;
    if (o.resume) {
        JournalContents c = repair_journal(path);
        if (o.status)
            for (const std::string& w : c.warnings) *o.status << w << "\n";
        if (c.has_header) {
            const std::string why = journal_mismatch(c.header, task, proposer.name(), o.seed);
            if (!why.empty()) throw JournalError(path + ": " + why);
        }
        validate_resumed_records(c, task, path);  // trusts nothing it did not compute
        resumed = std::move(c.records);
        if (o.status) *o.status << "lamda: resuming after " << resumed.size() << " recorded candidates\n";
    } else {
        std::error_code ec;
        if (fs::exists(path, ec) && fs::file_size(path, ec) > 0)
            throw JournalError(path + " exists: pass --resume to continue that search, "
                               "or choose another --out directory");
    }
    return resumed;
}

// Confirms the best feasible candidates with a longer measurement, best first; returns those
// that still meet the latency limit (at most `wanted`).
// A confirmation over the budget taken while the machine runs slow is judged at the machine's
// usual pace, by the search's rule (usual_pace_divisor), and says so.
inline std::vector<std::size_t> confirm_best(const Task& task, const GenerateOptions& o,
                                             const MeasurerFn& measure_with,
                                             const std::vector<CandidateRecord>& records,
                                             const std::vector<std::size_t>& ranked, std::size_t wanted,
                                             ReportInfo& info, const GenerateSetup& pace) {
    std::vector<std::size_t> confirmed;
    for (std::size_t index : ranked) {
        if (task.constraints.latency_ms > 0 && measure_with) {
            const Graph g = parse_dsl_or_throw(records[index].dsl, "best");
            const Measurement m = measure_with(o.confirm_runs, 20, is_int8(records[index]))(g);
            Confirmation c{index, m.median_ms, o.confirm_runs};
            double reference_slowdown = 1.0;
            if (c.median_ms > task.constraints.latency_ms) {
                reference_slowdown = usual_pace_divisor(pace);
                c.median_ms = usual_pace_ms(m.median_ms, reference_slowdown, records[index].predicted_ms);
                c.slowdown = m.median_ms / c.median_ms;  // what the measurement was divided by
            }
            const bool meets = c.median_ms <= task.constraints.latency_ms;
            if (o.status) {
                *o.status << "lamda: confirming #" << index << ": " << format_fixed(c.median_ms, 4) << " ms median over "
                          << o.confirm_runs << " runs" << (is_int8(records[index]) ? " in int8" : "");
                if (c.slowdown != 1.0)
                    *o.status << " at the usual pace (measured " << format_fixed(m.median_ms, 4)
                              << " ms while a reference model ran " << format_fixed(reference_slowdown, 2) << "x slow"
                              << (c.slowdown < reference_slowdown ? "; no faster than predicted" : "") << ")";
                *o.status << " (" << (meets ? "meets" : "misses") << " the " << task.constraints.latency_ms << " ms budget)\n";
            }
            info.confirmations.push_back(c);
            if (!meets) continue;
        }
        confirmed.push_back(index);
        if (confirmed.size() >= wanted) break;
    }
    return confirmed;
}

// The start model of an adaptation kept as it came: its own weights copied to `weights` and
// evaluated (epochs 0; `own_val`: their validation accuracy), for when its full training ended
// below them on validation.
inline FinalTraining keep_start_weights(Trainer& trainer, const Graph& g, const std::string& own,
                                        const std::string& weights, double own_val) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::copy_file(own, weights, fs::copy_options::overwrite_existing, ec);
    if (ec) throw Exception(Error(ErrorKind::io, Where{weights, 0, 0, {}}, "cannot write the start model's weights: " + ec.message()));
    const auto start = std::chrono::steady_clock::now();
    FinalTraining f;
    f.val_accuracy = own_val;
    f.test_accuracy = trainer.weights_test_accuracy(g, weights);
    f.epochs = 0;
    f.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return f;
}

// Budget::max_total_seconds: the seconds a candidate's full training is expected to take, from its
// proxy training or fine-tuning (`ratio`: Trainer::final_seconds_per_proxy_second); 0: unknown
// (not trained during the search, as a start model).
inline double final_training_estimate(const CandidateRecord& r, double ratio) {
    return r.train_seconds > 0 ? r.train_seconds * ratio : 0.0;
}

// Budget::max_total_seconds: the most of it a final training is kept (the rest is the search's).
// A training expected to take longer runs the epochs that fit: a 12-epoch fine-tuning estimated at
// 150-170 s of a 181 s total fitted no candidate when recorded, so nothing was kept, the search
// ran to the end and the best trained 1 epoch (docs/adapt.md).
constexpr double final_training_max_share = 0.5;
// The same when adapting a start model: its candidates inherit trained weights, so a shorter
// search finds as good a candidate and the final training's epochs gain more (docs/adapt.md).
constexpr double adapted_final_training_max_share = 0.7;

// Adapting a start model saved with batch norm folded: its candidates' full trainings put batch
// norm back (train_final_inherited), and an epoch then takes about this many times as long as the
// fine-tunings promise (1.2-1.5x for 0.05 and 0.1 ms models on the 2-core VM: one planned for 12
// epochs ran 7; docs/adapt.md).
constexpr double batchnorm_put_back_cost = 1.4;

// Budget::max_total_seconds: a full training's seconds per second of proxy training (or
// fine-tuning): the trainer's figure, times batchnorm_put_back_cost when adapting a start model
// whose convolutions get batch norm back.
inline double final_seconds_ratio(double trainer_ratio, const StartModel* start) {
    return start && with_identity_batchnorm(start->graph, Weights{}) ? trainer_ratio * batchnorm_put_back_cost : trainer_ratio;
}

// Says on `status` that `first` is trained before `best` (the best by the objective alone), and why.
// `fit`: final_training_fit.
inline void say_ranked_in_time(std::ostream& status, const std::vector<CandidateRecord>& records, std::size_t best,
                               std::size_t first, const std::function<double(const CandidateRecord&)>& fit) {
    const auto percent = [&](std::size_t i) { return format_fixed(100.0 * fit(records[i]), 0) + "%"; };
    status << "lamda: #" << records[first].index << " ranked before #" << records[best].index
           << " for the full training: " << percent(first) << " of its training fits the time kept for it, "
           << percent(best) << " of #" << records[best].index << "'s (max_total_seconds)\n";
}

// A candidate whose final training fits at least this share of its estimate in the time left is
// trained (the epochs that fit: 8 of 12) rather than passed over for a lesser one that fits whole:
// with 10% over as the bar, a 0.05 ms adaptation found its best candidates (78% proxy) after the
// time for their whole training had gone, searched on, and trained one at 71.5% for all its
// epochs: 85.48% test, against 86.96-87.06% for the seeds that trained their best (docs/adapt.md).
constexpr double trainable_share = 2.0 / 3.0;

// The seconds the search keeps for candidate r's final training: its estimate, at most
// `max_share` of `max_total_seconds`; 0: unknown.
inline double final_training_kept(const CandidateRecord& r, double ratio, double max_total_seconds,
                                  double max_share) {
    return std::min(final_training_estimate(r, ratio), max_share * max_total_seconds);
}

// Budget::max_total_seconds (Proposer::set_final_training_fit): the share of candidate r's full
// training that what the search keeps for it (final_training_kept) allows; 1 when all of it fits
// or its time is unknown.
inline std::function<double(const CandidateRecord&)> final_training_fit(double ratio, double max_total_seconds,
                                                                        double max_share) {
    return [ratio, max_total_seconds, max_share](const CandidateRecord& r) {
        const double needs = final_training_estimate(r, ratio);
        return needs > 0 ? final_training_kept(r, ratio, max_total_seconds, max_share) / needs : 1.0;
    };
}

// Budget::max_total_seconds (GenerateSetup::final_reserve): what the search keeps for its final
// training -- final_training_kept for the best-ranked candidate for which trainable_share of that
// fitted the time left when it was recorded (at most that time: the search then stops for it; one
// that did not fit could never be trained, so it is passed over; one that did is kept for, rather
// than searching on and falling back to lesser candidates), and the mean time of the last ten
// candidates, so that the next one does not eat into it.
inline std::function<double(const std::vector<CandidateRecord>&)> final_reserve(Objective objective, double ratio,
                                                                               double max_total_seconds,
                                                                               double max_share) {
    const auto fit = final_training_fit(ratio, max_total_seconds, max_share);
    return [objective, ratio, max_total_seconds, max_share, fit](const std::vector<CandidateRecord>& records) {
        double keep = 0;
        for (std::size_t i : rank_feasible_in_time(records, objective, fit)) {
            const double kept = final_training_kept(records[i], ratio, max_total_seconds, max_share);
            const double left_then = max_total_seconds - records[i].elapsed_s;
            if (kept > 0 && trainable_share * kept <= left_then) {
                keep = std::min(kept, left_then);
                break;
            }
        }
        if (keep <= 0) return 0.0;
        const std::size_t recent = std::min<std::size_t>(records.size(), 10);
        double sum = 0;
        for (std::size_t i = records.size() - recent; i < records.size(); ++i) sum += records[i].seconds;
        return keep + sum / static_cast<double>(recent);
    };
}

// Budget::max_total_seconds: `ranked` without the candidates of which not even trainable_share of
// the final training (final_training_kept of `max_total_seconds`) fits the `left` seconds, said on
// `status` (one that fits that share trains the epochs that fit: the search stopped for it, and its
// last candidate may have run long); all of them when none fits (the best is then trained for as
// many epochs as fit, at least one).
inline std::vector<std::size_t> pass_over_unfinishable(const std::vector<std::size_t>& ranked,
                                                       const std::vector<CandidateRecord>& records, double ratio,
                                                       double max_total_seconds, double max_share, double left,
                                                       std::ostream* status) {
    std::vector<std::size_t> kept;
    std::string passed;
    for (std::size_t i : ranked) {
        const double needs = final_training_kept(records[i], ratio, max_total_seconds, max_share);
        if (trainable_share * needs <= left) {
            kept.push_back(i);
        } else if (passed.size() < 400) {
            passed += std::string(passed.empty() ? "" : ", ") + "#" + std::to_string(records[i].index) + " (" +
                      format_fixed(needs, 0) + " s)";
        }
    }
    const std::vector<std::size_t>& trained = kept.empty() ? ranked : kept;
    if (!status || passed.empty()) return trained;
    if (kept.empty())
        *status << "lamda: no candidate's full training is expected to fit the " << format_fixed(std::max(0.0, left), 0)
                << " s left (max_total_seconds): the best is trained for the epochs that fit\n";
    else
        *status << "lamda: passed over, their full training expected to take longer than the "
                << format_fixed(std::max(0.0, left), 0) << " s left (max_total_seconds): " << passed << "\n";
    return trained;
}

// Training images whose statistics start the batch norms put back (with_identity_batchnorm):
// per channel, 256 images x the map's positions.
constexpr std::size_t batchnorm_statistics_images = 256;

// An inherited candidate's full training from `init`, with batch norm put back where lamda's
// saved weights had folded it (search/inherit.hpp, with_identity_batchnorm): the graph with it
// trains from `init` plus batch norms that compute the identity, their statistics from
// batchnorm_statistics_images training images (written beside `init` as NAME_bn.safetensors, and
// removed after), and the trainer saves the weights folded, which fit `g` again. How many
// batch norms went back is said on `status`.
inline FinalTraining train_final_inherited(Trainer& trainer, const Graph& g, const std::string& init,
                                           const std::string& weights, std::ostream* status) {
    namespace fs = std::filesystem;
    const std::vector<Tensor> images = trainer.training_images(batchnorm_statistics_images);
    const auto normalised = with_identity_batchnorm(g, read_safetensors(init), images);
    if (!normalised) return trainer.train_final_from(g, init, weights);
    const std::size_t added = normalised->first.layers.size() - g.layers.size();
    if (status)
        *status << "lamda: batch norm put back after " << added << " convolutions for the full training"
                << (images.empty() ? std::string() : ", its statistics from " + std::to_string(images.size()) + " training images")
                << "\n";
    const std::string with_bn = (fs::path(init).parent_path() / (fs::path(init).stem().string() + "_bn.safetensors")).string();
    write_safetensors(with_bn, normalised->second);
    FinalTraining f = trainer.train_final_from(normalised->first, with_bn, weights);
    std::error_code ec;
    fs::remove(with_bn, ec);
    return f;
}

// Trains the confirmed candidates in full, best first, until one reaches min_accuracy on the
// validation split; returns it (its weights copied to DIR/best.safetensors). An adaptation's start
// model (candidate 0) trains on from its own weights, which it keeps if that does not improve
// their validation accuracy: a full training never hands over less than the user brought.
// `time_left`, when given (Budget::max_total_seconds), limits each training to the seconds left.
inline std::optional<std::size_t> train_final(const Task& task, const GenerateOptions& o, Trainer& trainer,
                                              const std::vector<CandidateRecord>& records,
                                              const std::vector<std::size_t>& confirmed, ReportInfo& info,
                                              const std::function<double()>& time_left = {},
                                              const std::function<void(std::size_t)>& before_each = {}) {
    namespace fs = std::filesystem;
    for (std::size_t index : confirmed) {
        if (before_each) before_each(index);
        if (time_left) trainer.set_final_time_limit(std::max(1.0, time_left()));
        const std::string weights =
            (fs::path(o.out_dir) / ("candidate_" + std::to_string(index) + ".safetensors")).string();
        const CandidateRecord& r = records[index];
        std::error_code exists_ec;
        const bool inherited = !r.weights.empty() && fs::exists(fs::path(o.out_dir) / r.weights, exists_ec);
        const bool start_model = inherited && o.start && index == 0 && r.parent < 0;
        if (o.status)
            *o.status << "lamda: training #" << index << " in full"
                      << (inherited ? " from its " + std::string(r.parent < 0 ? "own" : "inherited, fine-tuned") + " weights" : std::string())
                      << "\n";
        const Graph g = parse_dsl_or_throw(r.dsl, "best");
        const std::string init = inherited ? (fs::path(o.out_dir) / r.weights).string() : std::string();
        FinalTraining f = inherited ? train_final_inherited(trainer, g, init, weights, o.status) : trainer.train_final(g, weights);
        bool kept_start = false;
        if (start_model) {
            const double own = trainer.weights_accuracy(g, init);
            if (own >= f.val_accuracy) {
                if (o.status)
                    *o.status << "lamda: #0: full training reached " << format_fixed(f.val_accuracy * 100, 2)
                              << "% validation, its own weights " << format_fixed(own * 100, 2) << "%: keeping its own\n";
                f = keep_start_weights(trainer, g, init, weights, own);
                kept_start = true;
            }
        }
        std::string handed_over = weights;
        if (is_int8(r)) {  // quantized after training; the fp32 weights stay beside
            const std::string int8_weights =
                (fs::path(o.out_dir) / ("candidate_" + std::to_string(index) + "_int8.safetensors")).string();
            const QuantizedAccuracy q = trainer.quantize_final(g, weights, int8_weights);
            f.float_val_accuracy = f.val_accuracy;
            f.float_test_accuracy = f.test_accuracy;
            f.val_accuracy = q.val_accuracy;
            f.test_accuracy = q.test_accuracy;
            handed_over = int8_weights;
        }
        info.final_trainings.push_back({index, f, handed_over});
        if (o.status) {
            *o.status << "lamda: #" << index << ": validation " << format_fixed(f.val_accuracy * 100, 2) << "%, test "
                      << format_fixed(f.test_accuracy * 100, 2) << "%";
            if (f.float_test_accuracy)
                *o.status << " in int8 (fp32: validation " << format_fixed(*f.float_val_accuracy * 100, 2) << "%, test "
                          << format_fixed(*f.float_test_accuracy * 100, 2) << "%)";
            if (kept_start)
                *o.status << " with its own weights\n";
            else if (cut_short(f))
                *o.status << " after " << epochs_trained_text(f) << " of " << f.epochs_asked << " epochs, all that fitted max_total_seconds ("
                          << format_fixed(f.train_seconds, 0) << " s)\n";
            else
                *o.status << " after " << f.epochs << " epochs (" << format_fixed(f.train_seconds, 0) << " s)\n";
        }
        if (task.constraints.min_accuracy && f.val_accuracy < *task.constraints.min_accuracy) continue;
        const auto copy = [&](const std::string& from, const char* name) {
            std::error_code ec;
            fs::copy_file(from, fs::path(o.out_dir) / name, fs::copy_options::overwrite_existing, ec);
            if (ec) throw Exception(Error(ErrorKind::io, Where{o.out_dir, 0, 0, {}}, std::string("cannot write ") + name + ": " + ec.message()));
        };
        copy(handed_over, "best.safetensors");
        if (is_int8(r)) copy(weights, "best_fp32.safetensors");
        return index;
    }
    return std::nullopt;
}

// min_accuracy from the start model's accuracy (candidate 0) and min_accuracy_drop.
inline void set_relative_accuracy(Task& task, const CandidateRecord& start, std::ostream* status) {
    if (!task.constraints.min_accuracy_drop) return;
    if (!start.accuracy) {
        if (status) *status << "lamda: warning: the start model has no accuracy (" << start.reason
                            << "): min_accuracy_drop is not applied\n";
        return;
    }
    task.constraints.min_accuracy = std::max(0.0, *start.accuracy - *task.constraints.min_accuracy_drop / 100.0);
    if (status)
        *status << "lamda: start model: validation accuracy " << format_fixed(*start.accuracy * 100, 2)
                << "%; candidates must keep " << format_fixed(*task.constraints.min_accuracy * 100, 2) << "% (drop "
                << format_fixed(*task.constraints.min_accuracy_drop, 2) << " points)\n";
}

// The start model's (candidate 0's) test accuracy with its own weights, for the report; none
// without a trainer or weights, or (with a warning on `status`) when it cannot be evaluated.
inline std::optional<double> start_test_accuracy(Trainer* trainer, const GenerateOptions& o, const CandidateRecord& r0) {
    if (!trainer || r0.weights.empty()) return std::nullopt;
    try {
        return trainer->weights_test_accuracy(o.start->graph, (std::filesystem::path(o.out_dir) / r0.weights).string());
    } catch (const std::exception& e) {
        if (o.status) *o.status << "lamda: warning: the start model's test accuracy: " << e.what() << "\n";
        return std::nullopt;
    }
}

// Adaptation's share of the setup: the start model's weights in DIR/weights/start.safetensors,
// weight inheritance, and (on --resume) the check that the journal adapts the same start model.
inline void prepare_adaptation(Task& task, const GenerateOptions& o, Trainer* trainer,
                               const std::vector<CandidateRecord>& resumed, GenerateSetup& setup) {
    namespace fs = std::filesystem;
    if (o.workers > 1 || o.runner)
        throw Exception(Error(ErrorKind::usage, "--start-from: adapting a model runs one evaluation at a time "
                                                "(no --workers, no mpirun) in this version"));
    if (!resumed.empty() && resumed.front().hash != text_hash(o.start->dsl))
        throw JournalError(o.out_dir + "/journal.jsonl: candidate 0 is not the start model " + o.start->source +
                           ": resume with the same --start-from, or use another --out directory");
    std::error_code ec;
    fs::create_directories(fs::path(o.out_dir) / "weights", ec);
    if (ec) throw Exception(Error(ErrorKind::io, Where{o.out_dir, 0, 0, {}}, "cannot create weights/: " + ec.message()));
    write_safetensors((fs::path(o.out_dir) / std::string(start_weights_file)).string(), o.start->weights);
    if (trainer) {
        setup.inherit = weight_inheritance(o.out_dir, o.seed);
        setup.weights_dir = o.out_dir;
        if (o.distill_weight > 0) {  // checked now, not after the search
            trainer->set_distillation(o.start->graph, (fs::path(o.out_dir) / std::string(start_weights_file)).string(),
                                      o.distill_weight, o.distill_temperature);
            if (o.status)
                *o.status << "lamda: the final trainings learn from the start model too (distillation: weight "
                          << format_fixed(o.distill_weight, 2) << ", temperature " << format_fixed(o.distill_temperature, 1)
                          << ")\n";
        }
    }
    if (!resumed.empty()) set_relative_accuracy(task, resumed.front(), nullptr);
}

// The progress printer: one rewritten line on a terminal, a line per candidate in a log.
inline std::function<void(const CandidateRecord&, const std::vector<CandidateRecord>&)> progress_printer(
    const Task& task, const GenerateOptions& o, std::chrono::steady_clock::time_point start) {
    if (!o.status) return {};
    std::ostream* out = o.status;
    const bool tty = o.status_is_terminal;
    const Objective objective = task.objective;
    const int budget = task.budget.max_candidates;
    // The search ends by max_seconds or, sooner, by max_total_seconds (which includes the final training).
    const double max_seconds = task.budget.max_total_seconds > 0
                                   ? std::min(task.budget.max_seconds, task.budget.max_total_seconds)
                                   : task.budget.max_seconds;
    return [out, tty, objective, budget, max_seconds, start](const CandidateRecord& r, const std::vector<CandidateRecord>& all) {
        const auto ranked = rank_feasible(all, objective);
        std::string best = "none feasible yet";
        if (!ranked.empty()) best = "best " + candidate_summary(all[ranked.front()]);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::string head = "[" + std::to_string(all.size()) + "/" + std::to_string(budget) + " " + format_fixed(s, 0) + "s";
        if (all.size() >= 3 && budget > 0 && static_cast<int>(all.size()) < budget) {
            // whichever ends the search first: the candidate count at this pace, or the time
            const double eta = std::min(s / static_cast<double>(all.size()) * static_cast<double>(budget - static_cast<int>(all.size())),
                                        std::max(0.0, max_seconds - all.back().elapsed_s));
            head += ", ~" + format_fixed(eta, 0) + "s left";
        }
        head += "] ";
        if (tty) {
            std::string line = head + candidate_summary(r) + " | " + best;
            if (line.size() > 150) line.resize(150);
            *out << "\r\033[K" << line << std::flush;
        } else {
            *out << head << candidate_summary(r) << "  (" << r.reason << ")\n";
        }
    };
}

}  // namespace generate_detail

// Runs a whole search (see the top of this file). `trainer` may be null (capacity objective).
inline GenerateOutcome generate(Task task, Proposer& proposer, Trainer* trainer, const GenerateOptions& o) {
    namespace fs = std::filesystem;
    using generate_detail::format_fixed;
    const auto start = std::chrono::steady_clock::now();
    resolve_objective(task, trainer != nullptr, o.task_file.empty() ? "task '" + task.name + "'" : o.task_file);
    if (task.constraints.min_accuracy_drop && !o.start && o.status)
        *o.status << "lamda: warning: min_accuracy_drop is relative to a start model (--start-from); it is ignored\n";
    if (task.constraints.min_accuracy && !trainer && o.status)
        *o.status << "lamda: warning: min_accuracy cannot be checked without a trainer; it is ignored\n";

    std::optional<LatencyProfile> profile;
    if (!task.profile.empty()) {
        profile = read_latency_profile(task.profile);
        const std::string w = fingerprint_warning(profile->fingerprint, current_fingerprint(task.constraints.threads));
        if (!w.empty() && o.status) *o.status << "lamda: warning: " << task.profile << ": " << w << "\n";
    } else if (o.status) {
        *o.status << "lamda: no latency profile (task \"profile\" or --profile): every candidate is measured\n";
    }

    if (o.out_dir.empty()) throw Exception(Error(ErrorKind::usage, "generate: no output directory"));
    std::error_code ec;
    fs::create_directories(o.out_dir, ec);
    if (ec) throw Exception(Error(ErrorKind::io, Where{o.out_dir, 0, 0, {}}, "cannot create the directory: " + ec.message()));
    GenerateOutcome out;
    out.journal_path = (fs::path(o.out_dir) / "journal.jsonl").string();
    std::vector<CandidateRecord> resumed = generate_detail::open_journal(task, proposer, o, out.journal_path);
    JournalHeader header;
    header.task = task;
    header.proposer = proposer.name();
    header.seed = o.seed;
    JournalWriter journal(out.journal_path, header);

    // Where latency is measured: the caller's board, or this CPU.
    const auto measure_with = measurer_for(task, o);
    // A board that stops answering stops the search; the candidate it was measuring (and, in a
    // parallel search, whatever finishes after it) is left out of the journal, so that --resume
    // measures it once the board is back.
    auto lost = std::make_shared<generate_detail::LostBoard>();
    GenerateSetup setup = evaluation_setup(task, o, trainer, lost);
    if (profile) {
        setup.latency = &profile->model;
        if (task.precision != TaskPrecision::Fp32) {
            if (profile->has_int8)
                setup.latency_int8 = &profile->int8_model;
            else if (o.status)
                *o.status << "lamda: warning: " << task.profile << " has no int8 model"
                          << (profile->int8_outdated ? " this lamda can use (it was fitted by an older one)"
                                                     : " (it was profiled in fp32 only)")
                          << ": int8 candidates are measured, not predicted; `lamda profile --precision both` adds one\n";
        }
    }
    if (o.start) generate_detail::prepare_adaptation(task, o, trainer, resumed, setup);
    if (!setup.latency && !setup.measure && !setup.measure_int8 && !o.runner)
        throw Exception(Error(ErrorKind::usage, "no way to judge latency: give a latency profile (this lamda has no executor)"));
    const bool start_drop = o.start && task.constraints.min_accuracy_drop.has_value();
    setup.on_record = [&journal, lost, &task, start_drop, &o, trainer, &out](const CandidateRecord& r) {
        if (lost->lost()) return;  // measured again on --resume
        journal.append(r);
        if (o.start && r.index == 0) {
            // The loop reads `task` by reference: from here on, candidates are held to the start's accuracy.
            if (start_drop) generate_detail::set_relative_accuracy(task, r, o.status);
            // Now, inside the search's clock: after the search it took the final training's time
            // (31 s of 181 for a 34 MMAC start model; docs/adapt.md).
            out.start_test_accuracy = generate_detail::start_test_accuracy(trainer, o, r);
        }
    };
    setup.on_progress = generate_detail::progress_printer(task, o, start);
    auto should_stop = o.should_stop;
    setup.should_stop = [should_stop, lost] { return lost->lost() || (should_stop && should_stop()); };
    // Budget::max_total_seconds: the search keeps its final training's time (estimated from the
    // proxy trainings), and the final training gets what is left.
    const double final_ratio = trainer && task.budget.max_total_seconds > 0
                                   ? generate_detail::final_seconds_ratio(trainer->final_seconds_per_proxy_second(), o.start.get())
                                   : 0.0;
    const double final_share = o.start ? generate_detail::adapted_final_training_max_share
                                       : generate_detail::final_training_max_share;
    std::function<double(const CandidateRecord&)> final_fit;  // the share of each one's full training that fits
    if (final_ratio > 0) {
        setup.final_reserve =
            generate_detail::final_reserve(task.objective, final_ratio, task.budget.max_total_seconds, final_share);
        final_fit = generate_detail::final_training_fit(final_ratio, task.budget.max_total_seconds, final_share);
        proposer.set_final_training_fit(final_fit);
    }
    const double resumed_s = resumed.empty() ? 0.0 : resumed.back().elapsed_s;
    const auto total_spent = [start, resumed_s] {  // search and final training, across resumes
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() + resumed_s;
    };

    if (o.runner) {
        out.result = run_generation_parallel(task, proposer, setup, *o.runner, std::move(resumed));
    } else if (o.workers > 1) {
        if (trainer && o.worker_trainers.size() < static_cast<std::size_t>(o.workers))
            throw Exception(Error(ErrorKind::usage, std::to_string(o.workers) + " workers need a trainer each (" +
                                                        std::to_string(o.worker_trainers.size()) + " given)"));
        std::vector<GenerateSetup> workers;
        for (int i = 0; i < o.workers; ++i) {
            GenerateSetup w = setup;
            w.on_record = {};
            w.on_progress = {};
            w.trainer = trainer ? o.worker_trainers[static_cast<std::size_t>(i)] : nullptr;
            workers.push_back(std::move(w));
        }
        ThreadRunner runner(task, std::move(workers), fs::absolute(o.out_dir).string(), /*local_measure=*/!o.measure_with);
        out.result = run_generation_parallel(task, proposer, setup, runner, std::move(resumed));
    } else {
        out.result = run_generation(task, proposer, setup, std::move(resumed));
    }
    if (o.start && !out.result.records.empty()) {
        const CandidateRecord& r0 = out.result.records.front();
        out.start_ms = r0.measured_ms;
        if (!out.start_ms && measure_with && !lost->lost()) {  // never run (predicted over budget)
            try {
                out.start_ms = measure_with(o.runs, 5, is_int8(r0))(parse_dsl_or_throw(r0.dsl, "start")).median_ms;
            } catch (const std::exception&) {
            }
        }
    }
    if (o.status) {
        if (o.status_is_terminal) *o.status << "\n";
        *o.status << "lamda: stopped (" << out.result.stop_reason << ") after " << out.result.records.size()
                  << " candidates, " << out.result.duplicates << " repeats skipped\n";
    }
    if (lost->lost())
        throw Exception(Error(ErrorKind::device, lost->what() + "\nthe search stopped; its journal is in " + out.journal_path +
                                                     ": run the same command with --resume once the board answers again"));

    ReportInfo& info = out.info;
    info.objective = task.objective;
    info.proposer = proposer.name();
    info.seed = o.seed;
    info.device = !o.device_description.empty()
                      ? o.device_description
                      : describe_device().cpu_model + ", " + std::to_string(task.constraints.threads) + " thread(s)";
    info.stop_reason = out.result.stop_reason;
    if (o.start) {
        info.start_model = ReportInfo::StartModelInfo{o.start->source, out.start_ms, out.start_test_accuracy};
        if (trainer && o.distill_weight > 0)
            info.start_model->distillation = std::make_pair(o.distill_weight, o.distill_temperature);
    }
    out.ranked = rank_feasible(out.result.records, task.objective);
    if (final_ratio > 0) {
        const std::vector<std::size_t> by_objective = out.ranked;
        out.ranked = rank_feasible_in_time(out.result.records, task.objective, final_fit);
        if (o.status && !out.ranked.empty() && out.ranked.front() != by_objective.front())
            generate_detail::say_ranked_in_time(*o.status, out.result.records, by_objective.front(), out.ranked.front(),
                                                final_fit);
        out.ranked = generate_detail::pass_over_unfinishable(out.ranked, out.result.records, final_ratio,
                                                             task.budget.max_total_seconds, final_share,
                                                             task.budget.max_total_seconds - total_spent(), o.status);
    }
    const std::size_t wanted = static_cast<std::size_t>(trainer ? (o.final_top > 0 ? o.final_top : 1) : 1);
    const auto confirm_start = std::chrono::steady_clock::now();
    const std::vector<std::size_t> confirmed =
        generate_detail::confirm_best(task, o, measure_with, out.result.records, out.ranked, wanted, info, setup);
    const double confirm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - confirm_start).count();
    // report.json and report.html (and best.lamda once nothing is `pending`): the timings so far,
    // `best` the model handed over (or, while pending, the one being trained).
    const auto write_reports = [&](std::optional<std::size_t> best, const std::string& pending, double final_s) {
        const StageSeconds& st = out.result.stage_seconds;
        info.stage_seconds = {{"propose", st.propose}, {"validate", st.validate}, {"predict", st.predict},
                              {"measure", st.measure}, {"train", st.train}};
        if (confirm_s > 0) info.stage_seconds.emplace_back("confirm", confirm_s);
        if (final_s > 0) info.stage_seconds.emplace_back("final training", final_s);
        info.best = best;
        info.no_best = !best;
        info.pending = pending;
        info.total_seconds = total_spent();
        const fs::path dir(o.out_dir);
        if (pending.empty() && best) {
            const CandidateRecord& b = out.result.records[*best];
            // Named after the task (report.hpp's best_model_name: the report's heading says the same);
            // the candidate's number is said once.
            const std::string summary = candidate_summary(b);
            const std::string text = "# Generated by lamda " + std::string(version_string) + " for task '" + task.name +
                                     "' (candidate #" + std::to_string(b.index) + ", " + std::string(proposer.name()) +
                                     " proposer, seed " + std::to_string(o.seed) + ")\n# " +
                                     summary.substr(std::min(summary.size(), summary.find(' ') + 1)) + "\n" +
                                     with_model_name(b.dsl, best_model_name(task));
            generate_detail::write_file_atomically((dir / "best.lamda").string(), text);
        }
        generate_detail::write_file_atomically((dir / "report.json").string(), report_json(task, out.result.records, info));
        generate_detail::write_file_atomically((dir / "report.html").string(), report_html(task, out.result.records, info));
    };
    double final_train_s = 0;
    if (!trainer) {
        if (!confirmed.empty()) out.best = confirmed.front();
    } else {
        const auto train_start = std::chrono::steady_clock::now();
        std::function<double()> time_left;
        if (task.budget.max_total_seconds > 0)
            time_left = [&task, &total_spent] { return task.budget.max_total_seconds - total_spent(); };
        // A report before each training, so that a run stopped during one (hours for a large model)
        // leaves what the search found and the trainings made so far, not only the journal.
        const auto report_before = [&](std::size_t position) {
            const double so_far = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
            write_reports(position, "the final training of #" + std::to_string(out.result.records[position].index), so_far);
        };
        out.best = generate_detail::train_final(task, o, *trainer, out.result.records, confirmed, info, time_left,
                                                report_before);
        final_train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - train_start).count();
        // A resumed search recorded its start model before this run: evaluated now, after the
        // final training, whose time it would otherwise take.
        if (o.start && out.result.resumed > 0) {
            out.start_test_accuracy = generate_detail::start_test_accuracy(trainer, o, out.result.records.front());
            if (info.start_model) info.start_model->test_accuracy = out.start_test_accuracy;
        }
    }
    write_reports(out.best, std::string(), final_train_s);
    out.constraints = task.constraints;
    return out;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_GENERATE_HPP
