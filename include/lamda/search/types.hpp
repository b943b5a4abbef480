// lamda/search/types.hpp: the vocabulary of the generation loop -- a task and its constraints, and the
// record kept for every candidate network. Core (no dependencies): the task file reader
// (search/task.hpp), the journal (search/journal.hpp), the report (search/report.hpp), the proposers and the loop
// itself (search/loop.hpp) all speak these types.
#ifndef LAMDA_SEARCH_TYPES_HPP
#define LAMDA_SEARCH_TYPES_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "../data/tensor.hpp"

namespace lamda {

// What "best" means: accuracy when a trainer and a dataset are there, otherwise capacity (MACs),
// the best proxy for accuracy that needs no training.
enum class Objective { Accuracy, Capacity };

inline constexpr std::string_view objective_name(Objective o) noexcept {
    return o == Objective::Accuracy ? "accuracy" : "capacity";
}

// Limits a candidate must meet. A zero or absent limit is no limit.
struct Constraints {
    double latency_ms = 0;                  // measured median on `threads` threads; 0: none
    int threads = 1;                        // thread count latency is measured and predicted at
    std::int64_t max_params = 0;            // 0: none
    // RAM the firmware export allocates: arena (the input inside) + output (search/memory.hpp); 0: none
    std::int64_t max_activation_bytes = 0;
    std::int64_t max_weight_bytes = 0;      // weights in flash, batch norm folded, in the candidate's precision; 0: none
    std::optional<double> min_accuracy;     // validation accuracy in [0, 1]; needs a trainer
    // Adapting a start model (search/adapt.hpp): accuracy points (0..100) the adapted model may
    // lose against the start model; sets min_accuracy once the start model is evaluated.
    std::optional<double> min_accuracy_drop;
};

// The arithmetic a task's model runs in ("precision" in a task file). Int8: every candidate is
// measured, predicted and sized as the int8 executor and firmware run it (exec/xnnpack.hpp,
// deploy/firmware.hpp), its proxy accuracy is that of its proxy-trained weights after post-training
// quantization, and the handed-over best.safetensors is int8 (best_fp32.safetensors beside it).
// Any: each candidate in whichever of the two is faster on the device (measured).
enum class TaskPrecision { Fp32, Int8, Any };

inline constexpr std::string_view task_precision_name(TaskPrecision p) noexcept {
    return p == TaskPrecision::Int8 ? "int8" : p == TaskPrecision::Any ? "any" : "fp32";
}

struct Budget {
    int max_candidates = 100;  // candidates recorded (duplicates are not candidates)
    double max_seconds = 600;  // wall time of the whole search, resumed runs included
    // Wall time of the search and the final training together (0: no such limit): the search
    // stops while its best candidate's final training, estimated from its proxy training, still
    // fits, candidates whose estimate does not fit are passed over, and the final training's
    // epochs are cut to the time left (TrainOptions::max_seconds).
    double max_total_seconds = 0;
};

// A task file (docs/generate.md) as read by parse_task().
struct Task {
    std::string name;
    Shape input{28, 28, 1};
    int classes = 10;
    std::string dataset;  // "" (none), "fashion-mnist", or a directory of IDX/.npy files
    Constraints constraints;
    std::string profile;  // latency profile path, resolved against the task file's directory
    Budget budget;
    Objective objective = Objective::Capacity;
    bool objective_given = false;  // false: accuracy when a dataset and a trainer exist
    // "measure_on": "one_device": every latency of a parallel search is measured by the search's
    // own process (rank 0, or the main thread), so all are comparable; workers only train.
    bool measure_one_device = false;
    TaskPrecision precision = TaskPrecision::Fp32;
};

// What became of a candidate, in the order the loop decides it.
enum class Verdict {
    Invalid,        // did not parse or validate; `diagnostics` say why
    WrongTask,      // valid, but its input shape or class count is not the task's
    OverParams,     // more parameters than max_params
    OverMemory,     // peak activations above max_activation_bytes
    OverPredicted,  // predicted latency well over the budget: never run
    OverMeasured,   // measured latency over the budget
    BelowAccuracy,  // meets latency, params and memory, but not min_accuracy
    Feasible,       // meets every constraint
    Failed,         // an evaluation step failed (executor or trainer error); `reason` says which
};

inline constexpr std::string_view verdict_name(Verdict v) noexcept {
    switch (v) {
    case Verdict::Invalid: return "invalid";
    case Verdict::WrongTask: return "wrong_task";
    case Verdict::OverParams: return "over_params";
    case Verdict::OverMemory: return "over_memory";
    case Verdict::OverPredicted: return "over_predicted";
    case Verdict::OverMeasured: return "over_measured";
    case Verdict::BelowAccuracy: return "below_accuracy";
    case Verdict::Feasible: return "feasible";
    case Verdict::Failed: return "failed";
    }
    return "?";
}

inline bool parse_verdict(std::string_view s, Verdict& out) noexcept {
    for (Verdict v : {Verdict::Invalid, Verdict::WrongTask, Verdict::OverParams, Verdict::OverMemory,
                      Verdict::OverPredicted, Verdict::OverMeasured, Verdict::BelowAccuracy,
                      Verdict::Feasible, Verdict::Failed}) {
        if (verdict_name(v) == s) {
            out = v;
            return true;
        }
    }
    return false;
}

// One layer's share of a candidate's latency, for feedback ("b3_expand: 31%").
struct LayerCost {
    std::string name;
    double ms = 0;
    double share = 0;  // of the model's total, 0..1
};

// Everything the loop learned about one candidate: one line of journal.jsonl.
struct CandidateRecord {
    int index = 0;              // 0-based, in the order candidates were decided
    std::string proposer;       // "offline", "random", "llm"
    std::string note;           // the proposer's own words: which edit, which turn
    std::string dsl;            // the text as proposed (canonical form when it parsed)
    std::string hash;           // 16 hex digits of the canonical form (or of the raw text)
    Verdict verdict = Verdict::Invalid;
    std::string reason;         // one line: why this verdict
    std::vector<std::string> diagnostics;  // formatted, for invalid candidates
    std::int64_t params = -1, macs = -1, peak_activation_bytes = -1;  // -1: not analysed
    std::optional<double> predicted_ms, measured_ms, accuracy;
    std::vector<LayerCost> top_layers;  // most expensive layers, measured if run else predicted
    double seconds = 0;    // time spent deciding this candidate (training included)
    double train_seconds = 0;  // of that, its proxy training or fine-tuning (0: not trained)
    double elapsed_s = 0;  // search time when it was recorded, across resumes
    std::string evaluated_by;  // who measured/trained it in a parallel search ("rank 2 @ host"); "": this process
    // Adaptation (search/adapt.hpp): the candidate whose weights this one started from (-1: none),
    // what was inherited ("12 reused, 3 sliced, 1 fresh"), and its weights file relative to the
    // search's directory ("weights/candidate_3.safetensors"; "": none kept).
    int parent = -1;
    std::string inherited;
    std::string weights;
    // The precision the candidate was judged in: "" (fp32, in a task without "precision"), "fp32"
    // or "int8". An int8 candidate's accuracy is after quantization; float_accuracy is its
    // accuracy before (the same proxy-trained weights in fp32).
    std::string precision;
    std::optional<double> float_accuracy;
};

// The precisions a task's candidates may run in: fp32 (false) and/or int8 (true), fp32 first.
inline std::vector<bool> task_precisions(const Task& task) {
    if (task.precision == TaskPrecision::Fp32) return {false};
    if (task.precision == TaskPrecision::Int8) return {true};
    return {false, true};
}

// What a record says its precision is, given the task ("" stays for fp32 tasks, as before).
inline std::string precision_text(const Task& task, bool int8) {
    if (task.precision == TaskPrecision::Fp32) return {};
    return int8 ? "int8" : "fp32";
}

// Whether a record was judged in int8.
inline bool is_int8(const CandidateRecord& r) noexcept { return r.precision == "int8"; }

// A candidate's score under the objective; larger is better. Capacity is log-free MACs.
inline double objective_score(const CandidateRecord& r, Objective objective) noexcept {
    if (objective == Objective::Accuracy) return r.accuracy ? *r.accuracy : -1.0;
    return static_cast<double>(r.macs);
}

// Budget::max_total_seconds: with an accuracy objective, a candidate's proxy accuracy is taken as
// this much lower per share of its full training that the time kept for that training cannot run
// (all of it: 5 points). The search ranks its final candidates by it, and the adapting designer its
// parents: a 0.05 ms adaptation trained its best (78% proxy) 5 of 12 epochs to 89.65% test while a
// 77% one that fitted 9 was passed over (docs/adapt.md).
inline constexpr double unfit_training_points = 0.05;

// objective_score when only `fit` (0..1) of the candidate's full training can run.
inline double objective_score_in_time(const CandidateRecord& r, Objective objective, double fit) noexcept {
    const double score = objective_score(r, objective);
    const double unfit = 1.0 - (fit < 0 ? 0.0 : fit > 1 ? 1.0 : fit);
    return objective == Objective::Accuracy ? score - unfit_training_points * unfit : score;
}

// The latency a record is judged by: measured when it was run, otherwise predicted.
inline std::optional<double> judged_latency_ms(const CandidateRecord& r) noexcept {
    return r.measured_ms ? r.measured_ms : r.predicted_ms;
}

// `s` with every byte that is not part of well-formed UTF-8 replaced by U+FFFD, so that text
// from a proposer (an LLM may emit anything) can go into JSON and HTML that strict readers accept.
inline std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;  // continuation bytes
        unsigned lo = 0x80, hi = 0xbf;  // allowed range of the first continuation byte
        if (b < 0x80) {
            n = 0;
        } else if (b >= 0xc2 && b <= 0xdf) {
            n = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
            n = 2;
            if (b == 0xe0) lo = 0xa0;
            if (b == 0xed) hi = 0x9f;  // no surrogates
        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3;
            if (b == 0xf0) lo = 0x90;
            if (b == 0xf4) hi = 0x8f;
        } else {
            out += "\xef\xbf\xbd";
            ++i;
            continue;
        }
        bool ok = i + n < s.size();  // the sequence's last byte is there
        for (std::size_t k = 1; ok && k <= n; ++k) {
            const auto c = static_cast<unsigned char>(s[i + k]);
            ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xbf);
        }
        if (ok) {
            out.append(s.substr(i, n + 1));
            i += n + 1;
        } else {
            out += "\xef\xbf\xbd";
            ++i;
        }
    }
    return out;
}

// How a full training trained: the settings of train/trainer.hpp's TrainOptions a user may change
// (`lamda train`'s options), so that report.json says how its figure was made.
struct TrainingRecipe {
    std::string optimizer;  // "adam" or "sgd"
    double lr = 0;          // initial learning rate
    bool cosine = false;    // cosine decay to 0
    int batch_size = 0;
    double weight_decay = 0, label_smoothing = 0;
    int shift = 0;       // augmentation: random shift by up to this many pixels
    bool flip = false;   // augmentation: random horizontal flip
    double erase = 0;    // augmentation: random erasing's probability
    std::uint64_t seed = 0;
    int threads = 0;
    bool from_inherited_weights = false;  // fine-tuned from a parent's weights (docs/adapt.md)
    // Batch norm's statistics were set afresh from this many training images after the training
    // (docs/training.md); 0: the training's running averages were kept (or the model has none).
    std::int64_t batchnorm_images = 0;
};

// Result of training a search's finished candidate in full.
struct FinalTraining {
    double val_accuracy = 0;   // on the validation split carved from the training set
    double test_accuracy = 0;  // on the test set: used once, for this figure
    double train_seconds = 0;
    int epochs = 0;        // begun
    int epochs_asked = 0;  // fewer ran when the time left for it (Budget::max_total_seconds) cut them
    double epochs_trained = 0;  // steps run / steps per epoch: that time limit may stop the last part-way
    // An int8 candidate (CandidateRecord::precision): the accuracies above are of the quantized
    // weights (Trainer::quantize_final); these are the fp32 weights' before quantization.
    std::optional<double> float_val_accuracy = std::nullopt, float_test_accuracy = std::nullopt;
    std::optional<TrainingRecipe> recipe = std::nullopt;  // nullopt: the trainer did not say
};

// Accuracy of weights quantized to int8 (post-training quantization, calibrated on training images).
struct QuantizedAccuracy {
    double val_accuracy = 0;
    double test_accuracy = 0;
};

// What the loop needs from a trainer (train/trainer.hpp's TorchTrainer implements it; the loop itself
// needs no libtorch). Accuracies are fractions in [0, 1]. Errors are thrown as exceptions derived
// from std::exception and recorded as a Failed candidate; the loop goes on.
class Trainer {
public:
    virtual ~Trainer() = default;
    // Short proxy training (a subset, few epochs: seconds); returns validation accuracy.
    virtual double proxy_accuracy(const Graph& graph) = 0;
    // Full training; saves safetensors weights (batch norm folded) to `weights_path`.
    virtual FinalTraining train_final(const Graph& graph, const std::string& weights_path) = 0;
    // Adaptation (search/adapt.hpp); a trainer without it throws std::logic_error.
    // Validation accuracy of `graph` with the weights in `weights_path`, not trained.
    virtual double weights_accuracy(const Graph& graph, const std::string& weights_path) {
        (void)graph, (void)weights_path;
        throw std::logic_error("this trainer cannot evaluate given weights");
    }
    // Test-set accuracy of `graph` with the weights in `weights_path`, not trained.
    virtual double weights_test_accuracy(const Graph& graph, const std::string& weights_path) {
        (void)graph, (void)weights_path;
        throw std::logic_error("this trainer cannot evaluate given weights");
    }
    // Fine-tuning: a proxy training (fewer steps) that starts from the weights in `init_path`
    // and saves what it reached there (same layout); returns validation accuracy.
    virtual double finetune_accuracy(const Graph& graph, const std::string& init_path) {
        (void)graph, (void)init_path;
        throw std::logic_error("this trainer cannot fine-tune");
    }
    // Full training that starts from the weights in `init_path` instead of from scratch.
    virtual FinalTraining train_final_from(const Graph& graph, const std::string& init_path,
                                           const std::string& weights_path) {
        (void)graph, (void)init_path, (void)weights_path;
        throw std::logic_error("this trainer cannot fine-tune");
    }
    // Adaptation: the first `n` images of a seeded order of the training split (never validation
    // or test images), for statistics such as a batch norm's put back (with_identity_batchnorm).
    // Empty from a trainer without a dataset.
    virtual std::vector<Tensor> training_images(std::size_t n) {
        (void)n;
        return {};
    }
    // int8 (Task::precision): validation accuracy after post-training quantization (calibrated on
    // training images, never validation or test ones) of the weights that this trainer's last
    // proxy_accuracy, finetune_accuracy or weights_accuracy call trained or read, for `graph`.
    virtual double last_int8_accuracy(const Graph& graph) {
        (void)graph;
        throw std::logic_error("this trainer cannot quantize");
    }
    // Quantizes the fp32 weights in `fp32_path` (from train_final) into the int8 file `int8_path`
    // (data/weights.hpp's quantized layout, docs/weights.md); its validation and test accuracy.
    virtual QuantizedAccuracy quantize_final(const Graph& graph, const std::string& fp32_path,
                                             const std::string& int8_path) {
        (void)graph, (void)fp32_path, (void)int8_path;
        throw std::logic_error("this trainer cannot quantize");
    }
    // Adaptation: the final trainings (train_final, train_final_from) from now on also learn from
    // `teacher` with the weights in `weights_path` (knowledge distillation, train/trainer.hpp's
    // Distillation: `weight` of the loss, softened by `temperature`). Throws std::invalid_argument
    // or a DatasetError when they do not fit; a trainer without it throws std::logic_error.
    virtual void set_distillation(const Graph& teacher, const std::string& weights_path, double weight,
                                  double temperature) {
        (void)teacher, (void)weights_path, (void)weight, (void)temperature;
        throw std::logic_error("this trainer cannot distill");
    }
    // A hook to call between mini-batch steps (empty: none), so a parallel search can pause
    // training while it measures a latency (search/parallel.hpp). A trainer without steps ignores it.
    virtual void set_between_steps(std::function<void()> hook) { (void)hook; }
    // Budget::max_total_seconds: the full training's expected seconds per second that a proxy
    // training (or fine-tuning) of the same model took (0: cannot tell), and the wall-time limit
    // of the full trainings from now on (0: none; at least one epoch always runs).
    virtual double final_seconds_per_proxy_second() const { return 0; }
    virtual void set_final_time_limit(double seconds) { (void)seconds; }
};

}  // namespace lamda

#endif  // LAMDA_SEARCH_TYPES_HPP
