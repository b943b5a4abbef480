// lamda/train/trainer.hpp: trains a lamda graph on an image classification dataset with libtorch and
// exports its weights, batch norm folded, for the executors. Compiled only with LAMDA_WITH_TORCH
// (see train/torch_module.hpp for how to build and link); without it this header is empty.
//
//   lamda::DatasetSplits data = lamda::load_dataset("fashion-mnist");
//   lamda::TrainOptions opt = lamda::TrainOptions::full();
//   opt.epochs = 5;
//   lamda::TrainResult r = lamda::train_model(graph, data, opt);
//   lamda::write_safetensors("w.safetensors", r.weights);   // fits r.graph (batch norm folded)
//
// What it does: the validation split is carved from the training set (split_dataset, seeded by
// validation_split_seed: the same for every candidate and every run, whatever options.seed); the
// test set is only evaluated at the end, when given. Each epoch
// visits the (optionally subsampled) training images in a seeded order, in mini-batches, with
// optional augmentation (a random shift by up to `shift` pixels, i.e. zero padding then a random
// crop; a random horizontal flip; random erasing of a rectangle), and minimises cross-entropy
// with optional label smoothing with Adam or SGD (momentum 0.9, optionally a cosine learning-rate schedule to zero). A model
// whose output layer is softmax is trained on the log of its probabilities. With
// TrainOptions::distill, a trained teacher's softened predictions join the labels in the loss
// (knowledge distillation; Distillation below).
//
// Determinism: torch::manual_seed(seed) before the parameters are created, and lamda's own
// SplitMix64 for the split, the order and the augmentation: the same seed, options and thread
// count give the same weights (libtorch's CPU kernels are deterministic at a fixed thread count).
// torch::set_num_threads(threads) is process-wide; train_model sets it on every call.
//
// Proxy mode (TrainOptions::proxy(): a 6000-image subset, 1 epoch, batch 32) ranks candidates in seconds;
// full mode (TrainOptions::full()) trains the final model.
//
// Speed: a process that trains should call keep_freed_memory_for_training() once (the lamda tool
// does): with glibc's default malloc settings, libtorch's per-step tensors go back to the kernel
// and fault in again, and small models can train 4-5x slower (docs/training.md).
#ifndef LAMDA_TRAIN_TRAINER_HPP
#define LAMDA_TRAIN_TRAINER_HPP

#if !defined(LAMDA_WITH_TORCH)
#error "lamda/train/trainer.hpp needs LAMDA_WITH_TORCH (Debian's libtorch-dev; CMake: link lamda::torch)"
#else

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "../data/dataset.hpp"
#include "../exec/fold.hpp"
#include "../exec/reference_int8.hpp"
#include "../core/ir.hpp"
#include "../search/types.hpp"
#include "torch_module.hpp"
#include "../data/weights.hpp"

namespace lamda {

enum class OptimizerKind { Adam, Sgd };

inline constexpr std::string_view optimizer_name(OptimizerKind o) noexcept {
    return o == OptimizerKind::Adam ? "adam" : "sgd";
}

inline bool parse_optimizer(std::string_view s, OptimizerKind& out) noexcept {
    if (s == "adam") out = OptimizerKind::Adam;
    else if (s == "sgd") out = OptimizerKind::Sgd;
    else return false;
    return true;
}

// Reported after every epoch.
struct TrainProgress {
    int epoch = 0;                       // 1-based: the epoch just finished
    int epochs = 0;
    double loss = 0;                     // mean training loss over the epoch
    double train_accuracy = 0;           // on the epoch's (augmented) batches, in train mode
    std::optional<double> val_accuracy;  // when TrainOptions::validate_each_epoch
    double lr = 0;                       // learning rate of the epoch's last step
    double seconds = 0;                  // since training started
};

// Reported within an epoch, at most every TrainOptions::step_progress_seconds: a long epoch shows
// that it is alive and how far it got.
struct TrainStepProgress {
    int epoch = 0;                  // 1-based: the epoch under way
    int epochs = 0;
    std::int64_t images = 0;        // trained on so far in this epoch
    std::int64_t epoch_images = 0;  // in the whole epoch
    double loss = 0;                // mean training loss so far in this epoch
    double seconds = 0;             // since training started
};

// Knowledge distillation (Hinton et al., 2015): a trained teacher's softened predictions join the
// labels in the loss, loss = (1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T),
// where x_T = softmax(log-probabilities / T). Used when a model adapted from a larger one (search/
// adapt.hpp: the start model) is trained: the teacher knows more than the labels say about which
// classes look alike. The teacher must classify the same inputs into as many scores.
struct Distillation {
    Graph teacher;
    Weights teacher_weights;  // fit `teacher` (batch norm folded or not)
    double weight = 0.5;      // in (0, 1]: the teacher's share of the loss
    double temperature = 4;   // > 0; 4 is the usual choice for 10 classes
};

struct TrainOptions {
    OptimizerKind optimizer = OptimizerKind::Adam;
    double lr = 3e-3;            // initial learning rate
    double weight_decay = 0;     // L2 penalty (torch's weight_decay), on every parameter
    int epochs = 10;
    int batch_size = 128;
    bool cosine = true;          // cosine decay of the learning rate to 0 over all steps
    double label_smoothing = 0;  // in [0, 1)
    int shift = 0;               // augmentation: random shift by up to this many pixels; 0: off
    bool flip = false;           // augmentation: random horizontal flip
    double erase = 0;            // augmentation: probability of random erasing (below); 0: off
    std::size_t train_subset = 0;  // train on a seeded sample of this many images; 0: all
    std::size_t val_subset = 0;    // validate on the first this many validation images; 0: all
    double validation_fraction = default_validation_fraction;  // of the training set, for DatasetSplits overloads
    std::uint64_t seed = 1;            // initialisation, order, augmentation, subset (not the validation split)
    int threads = 1;                   // torch::set_num_threads
    // Activations and convolution weights in channels-last memory (TorchModel::use_channels_last):
    // an epoch of 10,000 Fashion-MNIST images took 0.63-0.90x NCHW's time on nine searched models
    // (depthwise convolutions or none) and 1.03x on a plain ResNet (docs/training.md).
    bool channels_last = true;
    bool validate_each_epoch = false;  // TrainProgress::val_accuracy after every epoch
    std::function<void(const TrainProgress&)> progress;  // called after every epoch
    std::function<void(const TrainStepProgress&)> step_progress;  // within epochs, see below
    double step_progress_seconds = 2;  // at most this often (0: after every step)
    // Distillation from a teacher (above); null: the labels alone.
    std::shared_ptr<const Distillation> distill;
    // Called before every mini-batch step: a parallel search pauses the node's trainings here
    // while a latency is measured (search/parallel.hpp's NodeGate); it may block or throw.
    std::function<void()> between_steps;
    // Wall-time limit of the whole training, evaluation included (seconds; 0: none). The first
    // steps are timed and the training cut to the steps that fit (at least one epoch; the last
    // epoch may stop part-way), the learning-rate schedule spanning the steps that will run.
    // Each epoch's pace plans again: should the machine slow down, fewer steps are left; should
    // epochs run faster, more of those asked are added (the schedule stretched). Whole epochs
    // only left up to an epoch's time unused: 33 of 181 s in a 0.05 ms adaptation's final
    // training (docs/adapt.md). TrainResult::epochs_trained says how much ran. A search with
    // budget.max_total_seconds sets it on its final training.
    double max_seconds = 0;
    // After the last step, batch norm's running statistics are set afresh from the trained
    // weights over up to this many training images (train_detail::recalibrate_batchnorm); 0: they
    // stay the running averages of training.
    std::size_t batchnorm_images = 2048;

    // For the search: seconds per small candidate, enough to rank them. One epoch ranks as well as
    // two did (Kendall tau against 3-epoch full trainings of 21 searched candidates, two seeds:
    // 0.64 and 0.74 against 0.57 and 0.72) in 0.64x the training time (docs/benchmarks.md,
    // bench/proxy_tau.sh); its accuracies are about 5 points lower (GenerateSetup's slack).
    static TrainOptions proxy() {
        TrainOptions o;
        o.epochs = 1;
        o.batch_size = 32;  // more steps on few images: 78% val for LeNet-5 vs 72% at 128
        o.train_subset = 6000;
        o.val_subset = 3000;
        o.lr = 3e-3;
        // Its 188 steps end at a learning rate near 0, so the running statistics already fit:
        // setting them afresh moved four searched models' proxy accuracies (two seeds each) by
        // -0.27 to +0.24 points and cost 11-19% more time (docs/training.md).
        o.batchnorm_images = 0;
        return o;
    }
    // Fine-tuning an inherited candidate (search/adapt.hpp): proxy's subset and one epoch, a
    // lower learning rate: the weights start close to where they should end.
    static TrainOptions finetune() {
        TrainOptions o = proxy();
        o.epochs = 1;
        o.lr = 1e-3;
        return o;
    }
    // For the final model.
    static TrainOptions full() {
        TrainOptions o;
        o.epochs = 15;
        o.lr = 3e-3;
        o.weight_decay = 1e-5;
        o.label_smoothing = 0.1;
        o.shift = 2;
        o.flip = true;
        return o;
    }
};

struct TrainResult {
    double val_accuracy = 0;              // in [0, 1], through libtorch
    std::optional<double> test_accuracy;  // when a test set was given
    double train_seconds = 0;             // the whole of train_model: training and evaluation
    int epochs = 0;                       // begun: fewer than asked when max_seconds cut them
    int epochs_asked = 0;                 // TrainOptions::epochs
    double epochs_trained = 0;            // steps run / steps per epoch: the last may be partial
    std::vector<double> epoch_loss;       // mean training loss of each epoch
    std::int64_t train_images = 0, val_images = 0, test_images = 0;
    std::int64_t batchnorm_images = 0;  // batch norm's statistics were set from these (0: training's kept)
    Graph graph;      // the trained graph with batch norm folded (exec/fold.hpp)
    Weights weights;  // its weights: what `lamda train --out` saves
    Weights trained;  // the same before folding: fits `graph` as given (what fine-tuning starts from)
};

namespace train_detail {

inline void check_options(const TrainOptions& o) {
    const auto bad = [](const std::string& what) { throw std::invalid_argument("TrainOptions: " + what); };
    if (o.epochs < 1 || o.epochs > 100000) bad("epochs must be in 1..100000, got " + std::to_string(o.epochs));
    if (o.batch_size < 1 || o.batch_size > 65536)
        bad("batch size must be in 1..65536, got " + std::to_string(o.batch_size));
    if (!(o.lr > 0 && o.lr < 1e3)) bad("learning rate must be positive, got " + std::to_string(o.lr));
    if (!(o.weight_decay >= 0 && o.weight_decay < 1e3)) bad("weight decay must be >= 0");
    if (!(o.label_smoothing >= 0 && o.label_smoothing < 1)) bad("label smoothing must be in [0, 1)");
    if (o.shift < 0 || o.shift > 64) bad("shift must be in 0..64, got " + std::to_string(o.shift));
    if (!(o.erase >= 0 && o.erase <= 1)) bad("erase probability must be in [0, 1], got " + std::to_string(o.erase));
    if (!(o.validation_fraction >= 0 && o.validation_fraction < 1))
        bad("validation fraction must be in [0, 1)");
    if (o.threads < 1 || o.threads > 1024) bad("threads must be in 1..1024, got " + std::to_string(o.threads));
    if (!(o.max_seconds >= 0 && o.max_seconds <= 1e9)) bad("max_seconds must be in 0..1e9");
    if (o.distill) {
        if (!(o.distill->weight > 0 && o.distill->weight <= 1))
            bad("distillation weight must be in (0, 1], got " + std::to_string(o.distill->weight));
        if (!(o.distill->temperature > 0 && o.distill->temperature <= 100))
            bad("distillation temperature must be in (0, 100], got " + std::to_string(o.distill->temperature));
    }
}

// The teacher of a distillation, ready to score batches: checked against the student's input and
// output (ExecutorError or DatasetError naming what differs), weights loaded, in eval mode.
inline std::unique_ptr<TorchModel> make_teacher(const Distillation& d, const Graph& student) {
    if (d.teacher.layers.empty()) throw DatasetError("the distillation teacher has no layers");
    const Shape tin = d.teacher.input().shape, sin = student.input().shape;
    if (tin != sin)
        throw DatasetError("the distillation teacher's input is " + to_string(tin) + " but the model's is " +
                           to_string(sin));
    const Shape tout = d.teacher.output().shape, sout = student.output().shape;
    if (tout != sout)
        throw DatasetError("the distillation teacher's output '" + d.teacher.output().name + "' is " +
                           to_string(tout) + " but the model's is " + to_string(sout) +
                           " (the same scores are needed)");
    auto teacher = std::make_unique<TorchModel>(d.teacher);
    teacher->load_weights(d.teacher_weights);
    teacher->eval();
    return teacher;
}

// Fills `out` (NCHW, n images) from `d`'s images at `idx[0..n)`, shifted by (dy, dx) with zeros
// coming in, and mirrored when flip[k]. Without augmentation dy = dx = 0 and no flips.
inline void gather(const Dataset& d, const std::size_t* idx, std::size_t n, float* out,
                   const int* dy, const int* dx, const bool* flip) {
    const std::int64_t H = d.shape.h, W = d.shape.w, C = d.shape.c;
    std::vector<float> buffer(d.image_elements());  // one image as floats (datasets keep uint8)
    for (std::size_t k = 0; k < n; ++k) {
        d.copy_image(idx[k], buffer.data());
        const float* img = buffer.data();
        float* o = out + k * static_cast<std::size_t>(C * H * W);
        const std::int64_t sy = dy ? dy[k] : 0, sx = dx ? dx[k] : 0;
        const bool mirror = flip && flip[k];
        for (std::int64_t y = 0; y < H; ++y)
            for (std::int64_t x = 0; x < W; ++x) {
                const std::int64_t iy = y + sy, ix0 = x + sx;
                const std::int64_t ix = mirror ? W - 1 - ix0 : ix0;
                const bool inside = iy >= 0 && iy < H && ix0 >= 0 && ix0 < W;
                for (std::int64_t c = 0; c < C; ++c)
                    o[(c * H + y) * W + x] = inside ? img[(iy * W + ix) * C + c] : 0.0f;
            }
    }
}

// Log-probabilities [N, K] from the model's output [N, K, 1, 1].
inline torch::Tensor log_probs(const Graph& g, const torch::Tensor& out) {
    const torch::Tensor flat = out.reshape({out.size(0), -1});
    if (g.output().op == OpKind::Softmax) return torch::log(flat.clamp_min(1e-12));
    return torch::log_softmax(flat, 1);
}

// The learning rate of a cosine decay from `base` to 0 over `total_steps`, at `step`.
inline double cosine_lr(double base, std::int64_t step, double total_steps) {
    return base * 0.5 * (1.0 + std::cos(3.14159265358979323846 * static_cast<double>(step) / total_steps));
}

// TrainOptions::max_seconds: the closing evaluation (validation and test images, forward only)
// is allowed this fraction of an epoch's time.
constexpr double evaluation_epoch_fraction = 0.2;

// TrainOptions::max_seconds: how many steps of `step_s` fit in `seconds_left`, the closing
// evaluation (a fraction of an epoch of `steps_per_epoch` steps) included; may be 0 or negative.
inline double steps_fitting(double seconds_left, double step_s, std::int64_t steps_per_epoch) {
    return std::floor((seconds_left - evaluation_epoch_fraction * step_s * static_cast<double>(steps_per_epoch)) / step_s);
}

// TrainOptions::max_seconds: a last epoch shorter than this share of one is left out (the steps
// end with the epoch before): it would still pay an epoch's validation and shuffle for a few
// steps (`lamda train --max-seconds 20` ran 4.05 epochs, the last 4 steps and a 6,000-image
// validation).
constexpr double shortest_partial_epoch = 0.25;

// `steps` without a last partial epoch shorter than shortest_partial_epoch, but not under `floor`;
// all `asked` steps stay whole (the schedule the caller asked for ends there).
inline std::int64_t without_short_tail(std::int64_t steps, std::int64_t asked, std::int64_t steps_per_epoch,
                                       std::int64_t floor) {
    if (steps == asked) return asked;
    const std::int64_t tail = steps % steps_per_epoch;
    if (tail > 0 && static_cast<double>(tail) < shortest_partial_epoch * static_cast<double>(steps_per_epoch))
        return std::max(floor, steps - tail);
    return steps;
}

// TrainOptions::max_seconds: how many of `asked` steps fit in `max_seconds` when `spent` seconds
// are gone and a step takes `step_s`: at least one epoch of `steps_per_epoch` (or all asked).
inline std::int64_t steps_that_fit(std::int64_t asked, std::int64_t steps_per_epoch, double max_seconds,
                                   double spent, double step_s) {
    if (!(max_seconds > 0) || !(step_s > 0)) return asked;
    const double fit = steps_fitting(max_seconds - spent, step_s, steps_per_epoch);
    const std::int64_t at_least = std::min(steps_per_epoch, asked);
    const auto steps = static_cast<std::int64_t>(
        std::clamp(fit, static_cast<double>(at_least), static_cast<double>(asked)));
    return without_short_tail(steps, asked, steps_per_epoch, at_least);
}

// TrainOptions::max_seconds: an epoch that ran faster than the first steps promised adds steps
// (up to those asked) only if they fit at this much over its pace, which swings by 10-30% on a
// shared machine: steps too many would be cut before the schedule's end.
constexpr double epoch_extension_margin = 1.1;

// TrainOptions::max_seconds, planned again after an epoch: `done` of `planned` steps ran (of
// `asked`), `seconds_left` remain and the epoch's steps took `step_s` each. Slower than planned:
// the steps that still fit (none: stop now); faster: more, at epoch_extension_margin over the pace
// (also when the plan ended with this epoch: its first steps may have run slow).
inline std::int64_t steps_replanned(std::int64_t planned, std::int64_t done, std::int64_t asked,
                                    std::int64_t steps_per_epoch, double seconds_left, double step_s) {
    if (!(step_s > 0) || done > planned) return planned;
    const double fit = steps_fitting(seconds_left, step_s, steps_per_epoch);
    if (fit < static_cast<double>(planned - done))
        return without_short_tail(done + static_cast<std::int64_t>(std::max(0.0, fit)), asked, steps_per_epoch, done);
    const double more = steps_fitting(seconds_left, epoch_extension_margin * step_s, steps_per_epoch);
    const auto extended = static_cast<std::int64_t>(
        std::min(static_cast<double>(asked), static_cast<double>(done) + std::max(0.0, more)));
    return std::max(planned, without_short_tail(extended, asked, steps_per_epoch, done));
}

// Random erasing (Zhong et al., AAAI 2020, their settings): a rectangle of 2% to 40% of the image,
// aspect ratio between 0.3 and 1/0.3 (log-uniform), placed at random, filled with uniform noise
// in [0, 1] on every channel. Up to 10 draws for a rectangle that fits; none fits: untouched.
// Hiding a part of the object makes a network use all of it rather than one telling patch; that
// helps a model with capacity to spare and cost a 49K-parameter one 0.57 points (docs/training.md).
struct RandomErasing {
    static constexpr double min_area = 0.02, max_area = 0.4, min_aspect = 0.3;
    static constexpr int tries = 10;
    // Erases one image (CHW, `C` x `H` x `W` floats at `img`) with `rng`'s draws.
    static void apply(float* img, std::int64_t C, std::int64_t H, std::int64_t W, detail::SplitMix64& rng) {
        const double area = static_cast<double>(H * W);
        for (int t = 0; t < tries; ++t) {
            const double target = area * rng.uniform(static_cast<float>(min_area), static_cast<float>(max_area));
            const double log_aspect = rng.uniform(static_cast<float>(std::log(min_aspect)),
                                                  static_cast<float>(-std::log(min_aspect)));
            const double aspect = std::exp(log_aspect);
            const auto h = static_cast<std::int64_t>(std::lround(std::sqrt(target * aspect)));
            const auto w = static_cast<std::int64_t>(std::lround(std::sqrt(target / aspect)));
            if (h < 1 || w < 1 || h > H || w > W) continue;
            const auto y0 = static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(H - h + 1));
            const auto x0 = static_cast<std::int64_t>(rng.next() % static_cast<std::uint64_t>(W - w + 1));
            for (std::int64_t c = 0; c < C; ++c)
                for (std::int64_t y = y0; y < y0 + h; ++y)
                    for (std::int64_t x = x0; x < x0 + w; ++x) img[(c * H + y) * W + x] = rng.uniform(0.0f, 1.0f);
            return;
        }
    }
};

// One epoch's mini-batches of `train`: its images in a seeded order (from `seed` and `epoch`, the
// same on every platform), `batch_size` at a time, optionally shifted by up to `shift` pixels,
// mirrored and erased (with probability `erase`, RandomErasing) at random. Without erasing the
// random draws are those of a build before it: the same seed gives the same batches. A last
// batch of one image is skipped (it breaks batch norm's batch statistics; the image comes in
// another epoch's order). train_model and QAT share this, so a
// batch means the same in both.
class EpochBatches {
public:
    EpochBatches(const Dataset& train, std::size_t batch_size, std::uint64_t seed, int epoch, int shift = 0,
                 bool flip = false, double erase = 0)
        : train_(train), bs_(batch_size), shift_(shift), flip_(flip), erase_(erase),
          epoch_seed_(seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(epoch) + 1),
          order_(seeded_permutation(train.size(), epoch_seed_)), rng_{epoch_seed_ ^ 0xA5A5A5A5A5A5A5A5ULL},
          buf_(batch_size * static_cast<std::size_t>(train.shape.elements())), labels_(batch_size), dy_(batch_size),
          dx_(batch_size), flips_(new bool[batch_size]) {}

    // Batches per epoch, the skipped one included (the cosine schedule counts it).
    static std::size_t per_epoch(std::size_t images, std::size_t batch_size) {
        return (images + batch_size - 1) / batch_size;
    }
    // The next batch as x [B, C, H, W] and labels y [B] (views of this object's buffers, valid until
    // the next call); false at the end of the epoch.
    bool next(torch::Tensor& x, torch::Tensor& y) {
        const std::size_t n = train_.size();
        while (start_ < n) {
            const std::size_t start = start_, b = std::min(bs_, n - start);
            start_ += bs_;
            if (b < 2) continue;
            for (std::size_t k = 0; k < b; ++k) {
                if (shift_ > 0) {
                    const auto span = static_cast<std::uint64_t>(2 * shift_ + 1);
                    dy_[k] = static_cast<int>(rng_.next() % span) - shift_;
                    dx_[k] = static_cast<int>(rng_.next() % span) - shift_;
                }
                flips_[k] = flip_ && (rng_.next() >> 63) != 0;
                labels_[k] = train_.labels[order_[start + k]];
            }
            gather(train_, order_.data() + start, b, buf_.data(), shift_ > 0 ? dy_.data() : nullptr,
                   shift_ > 0 ? dx_.data() : nullptr, flip_ ? flips_.get() : nullptr);
            if (erase_ > 0) {
                const std::int64_t C = train_.shape.c, H = train_.shape.h, W = train_.shape.w;
                for (std::size_t k = 0; k < b; ++k)
                    if (rng_.uniform(0.0f, 1.0f) < static_cast<float>(erase_))
                        RandomErasing::apply(buf_.data() + k * static_cast<std::size_t>(C * H * W), C, H, W, rng_);
            }
            const auto B = static_cast<std::int64_t>(b);
            x = torch::from_blob(buf_.data(), {B, train_.shape.c, train_.shape.h, train_.shape.w}, torch::kFloat32);
            y = torch::from_blob(labels_.data(), {B}, torch::kInt64);
            return true;
        }
        return false;
    }

private:
    const Dataset& train_;
    std::size_t bs_;
    int shift_;
    bool flip_;
    double erase_;
    std::uint64_t epoch_seed_;
    std::vector<std::size_t> order_;
    detail::SplitMix64 rng_;
    std::vector<float> buf_;
    std::vector<std::int64_t> labels_;
    std::vector<int> dy_, dx_;
    std::unique_ptr<bool[]> flips_;
    std::size_t start_ = 0;
};

// The training images recalibrate_batchnorm uses for these arguments (0: it keeps the
// statistics): whole batches when more than one, at least two images.
inline std::size_t batchnorm_sample_size(const TorchModel& model, std::size_t train_images, std::size_t images,
                                         std::size_t batch) noexcept {
    if (images == 0 || train_images == 0 || batch == 0 || !model.has_batchnorm()) return 0;
    std::size_t n = std::min(images, train_images);
    if (n > batch) n -= n % batch;
    return n < 2 ? 0 : n;  // train mode's batch statistics need two values per channel
}

// Batch norm's running statistics follow the weights with momentum 0.1: after few steps, or
// while the learning rate is still high, they describe the weights of earlier steps, and eval
// mode normalises with the wrong statistics (one epoch on 2,700 Fashion-MNIST images: 32% on its
// training batches, 10.7% on validation). This sets them from the trained weights: the plain
// average of the batch statistics over up to `images` training images (a seeded sample, no
// augmentation) in batches of the training's size, as PreciseBN does (Wu and Johnson, 2021,
// "Rethinking 'Batch' in BatchNorm"). A last partial batch is left out when a full one ran.
// Returns the number of images used (0: none, the statistics kept): batchnorm_sample_size.
inline std::size_t recalibrate_batchnorm(TorchModel& model, const Dataset& train, std::size_t images,
                                         std::size_t batch, std::uint64_t seed) {
    const std::size_t n = batchnorm_sample_size(model, train.size(), images, batch);
    if (n == 0) return 0;
    const std::vector<std::size_t> order = seeded_permutation(train.size(), seed);
    const auto per = static_cast<std::size_t>(train.shape.elements());
    std::vector<float> buf(std::min(batch, n) * per);
    torch::NoGradGuard no_grad;
    model.collect_batchnorm_statistics(true);
    for (std::size_t start = 0; start < n; start += batch) {
        const std::size_t b = std::min(batch, n - start);
        gather(train, order.data() + start, b, buf.data(), nullptr, nullptr, nullptr);
        model.forward(torch::from_blob(buf.data(),
                                       {static_cast<std::int64_t>(b), train.shape.c, train.shape.h, train.shape.w},
                                       torch::kFloat32));
    }
    model.collect_batchnorm_statistics(false);
    return n;
}

// Images per evaluation batch: up to 500, fewer when the model's largest activation would then
// pass 16 MiB. Unless keep_freed_memory_for_training() turned mmap off, glibc serves a block over
// 32 MiB (its largest mmap threshold) by a fresh mmap whose pages fault in on first touch, every
// batch: 500 images of a 104-channel 14x14 map are 41 MB, and a 0.05 ms search's model evaluated
// 16,000 images in 9.5 s that way (docs/training.md); smaller batches also bound the memory.
inline std::size_t evaluation_batch(const Graph& graph) {
    std::int64_t largest = 1;
    for (const Layer& l : graph.layers) largest = std::max(largest, l.shape.elements());
    constexpr std::int64_t limit_bytes = 16 << 20;
    const std::int64_t fit = limit_bytes / (largest * static_cast<std::int64_t>(sizeof(float)));
    return static_cast<std::size_t>(std::clamp<std::int64_t>(fit, 16, 500));
}

}  // namespace train_detail

// Accuracy of `model` (put in eval mode) over the first `limit` images of `d` (all when 0),
// through libtorch in batches.
inline Accuracy torch_accuracy(TorchModel& model, const Dataset& d, std::size_t limit = 0) {
    model.eval();
    torch::NoGradGuard no_grad;
    const std::size_t n = limit == 0 ? d.size() : std::min(limit, d.size());
    const std::size_t batch = train_detail::evaluation_batch(model.graph());
    const auto per = static_cast<std::size_t>(d.shape.elements());
    std::vector<float> buf(batch * per);
    std::vector<std::size_t> idx(batch);
    Accuracy a;
    for (std::size_t start = 0; start < n; start += batch) {
        const std::size_t b = std::min(batch, n - start);
        for (std::size_t k = 0; k < b; ++k) idx[k] = start + k;
        train_detail::gather(d, idx.data(), b, buf.data(), nullptr, nullptr, nullptr);
        const torch::Tensor x = torch::from_blob(
            buf.data(), {static_cast<std::int64_t>(b), d.shape.c, d.shape.h, d.shape.w}, torch::kFloat32);
        const torch::Tensor out = model.forward(x);
        const torch::Tensor scores = out.reshape({out.size(0), -1}).contiguous();
        const float* s = scores.data_ptr<float>();
        const std::int64_t k_out = scores.size(1);
        for (std::size_t k = 0; k < b; ++k)
            if (argmax(s + static_cast<std::int64_t>(k) * k_out, k_out) == d.labels[start + k]) ++a.correct;
    }
    a.n = static_cast<std::int64_t>(n);
    a.accuracy = n ? static_cast<double>(a.correct) / static_cast<double>(n) : 0.0;
    return a;
}

// Trains `graph` (input: the images' shape; output: 1x1xK scores, K >= classes) on `train`,
// reports accuracy on `val` (and on `*test` when not null), and returns the weights with batch
// norm folded. Throws std::invalid_argument for bad options, DatasetError when the model does
// not fit the data, ExecutorError when the graph cannot run, std::runtime_error when training
// diverges.
// `init`, when given, replaces the initial parameters (fine-tuning); it must fit `graph`.
inline TrainResult train_model(const Graph& graph, const Dataset& train_set, const Dataset& val_set,
                               const Dataset* test_set, const TrainOptions& options,
                               const Weights* init = nullptr) {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    train_detail::check_options(options);
    check_classifier(graph, train_set);
    if (train_set.size() < 2) throw DatasetError("training needs at least 2 images");
    if (val_set.empty()) throw DatasetError("the validation set is empty");
    torch::set_num_threads(options.threads);
    torch::manual_seed(options.seed);

    const Dataset sampled = options.train_subset ? subset(train_set, options.train_subset, options.seed)
                                                 : Dataset();
    const Dataset& train = options.train_subset ? sampled : train_set;

    TorchModel model(graph);
    if (init) model.load_weights(*init);
    model.use_channels_last(options.channels_last);
    const std::unique_ptr<TorchModel> teacher =
        options.distill ? train_detail::make_teacher(*options.distill, graph) : nullptr;
    if (teacher) teacher->use_channels_last(options.channels_last);
    std::unique_ptr<torch::optim::Optimizer> optimizer;
    if (options.optimizer == OptimizerKind::Adam)
        optimizer = std::make_unique<torch::optim::Adam>(
            model.parameters(), torch::optim::AdamOptions(options.lr).weight_decay(options.weight_decay));
    else
        optimizer = std::make_unique<torch::optim::SGD>(
            model.parameters(),
            torch::optim::SGDOptions(options.lr).momentum(0.9).weight_decay(options.weight_decay));
    const auto set_lr = [&](double lr) {
        for (auto& group : optimizer->param_groups()) {
            if (options.optimizer == OptimizerKind::Adam)
                static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
            else
                static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
        }
    };

    const std::size_t n = train.size();
    const auto bs = static_cast<std::size_t>(options.batch_size);
    const auto steps_per_epoch = static_cast<std::int64_t>(train_detail::EpochBatches::per_epoch(n, bs));
    const std::int64_t steps_asked = steps_per_epoch * options.epochs;
    // max_seconds may cut the steps, once the first ones are timed; the schedule spans those planned.
    std::int64_t planned_steps = steps_asked;
    const auto epochs_planned = [&] { return static_cast<int>((planned_steps + steps_per_epoch - 1) / steps_per_epoch); };
    const double smoothing = options.label_smoothing;
    // max_seconds: the steps timed before the training is sized (a tenth of the first epoch, at
    // least 5, short of its end; an epoch of one step is timed whole, at its end). The first
    // quarter of them is warm-up, left out of the pace: libtorch's first steps took about a second
    // more than the rest on the 2-core VM, which sized a 0.05 ms model's final training at 5 epochs
    // where 7 fitted (docs/generate.md).
    const auto probe_steps = std::min(std::max<std::int64_t>(5, steps_per_epoch / 10), steps_per_epoch - 1);
    const std::int64_t warmup_steps = probe_steps / 4;
    double warmup_excess = 0;  // what the warm-up steps took beyond the pace: a cost paid once
    const auto loop_start = clock::now();
    auto warm_start = loop_start;
    const double setup_s = std::chrono::duration<double>(loop_start - t0).count();
    const double epoch_overhead = options.validate_each_epoch ? 1.05 : 1.0;  // the epoch's validation
    // With recalibration, what an epoch's validation set batch norm's statistics to: kept, so that
    // the end, when nothing was trained after it, uses them instead of doing the same work again.
    const bool recalibrates =
        train_detail::batchnorm_sample_size(model, train.size(), options.batchnorm_images, bs) > 0;
    struct Validated {
        std::int64_t after_steps = -1;
        Accuracy val;
        std::vector<torch::Tensor> statistics;
        std::size_t batchnorm_images = 0;
    } validated;

    TrainResult result;
    double lr = options.lr;
    auto last_step_report = t0;
    auto epoch_start = loop_start;
    for (int epoch = 0; epoch < epochs_planned(); ++epoch) {
        model.train();
        train_detail::EpochBatches batches(train, bs, options.seed, epoch, options.shift, options.flip,
                                           options.erase);
        double loss_sum = 0;
        std::int64_t seen = 0, correct = 0;
        std::int64_t step = steps_per_epoch * epoch;
        const std::int64_t epoch_first_step = step;
        torch::Tensor x, y;
        for (; step < planned_steps && batches.next(x, y); ++step) {
            if (options.max_seconds > 0 && epoch == 0 && step == warmup_steps) warm_start = clock::now();
            if (options.max_seconds > 0 && epoch == 0 && probe_steps > 0 && step == probe_steps) {
                const double per_step = std::chrono::duration<double>(clock::now() - warm_start).count() /
                                        static_cast<double>(probe_steps - warmup_steps);
                warmup_excess = std::max(0.0, std::chrono::duration<double>(warm_start - loop_start).count() -
                                                  per_step * static_cast<double>(warmup_steps));
                planned_steps = train_detail::steps_that_fit(steps_asked, steps_per_epoch, options.max_seconds,
                                                             setup_s + warmup_excess, per_step * epoch_overhead);
            }
            if (options.between_steps) options.between_steps();
            const std::int64_t B = x.size(0);
            const auto b = static_cast<std::size_t>(B);
            if (options.cosine) {
                lr = train_detail::cosine_lr(options.lr, step, static_cast<double>(planned_steps));
                set_lr(lr);
            }
            const torch::Tensor logp = train_detail::log_probs(graph, model.forward(x));
            torch::Tensor loss = torch::nll_loss(logp, y);
            if (smoothing > 0) loss = (1.0 - smoothing) * loss - smoothing * logp.mean(1).mean();
            if (teacher) {
                const double a = options.distill->weight, T = options.distill->temperature;
                torch::Tensor target;
                {
                    torch::NoGradGuard no_grad;
                    target = torch::softmax(train_detail::log_probs(options.distill->teacher, teacher->forward(x)) / T, 1);
                }
                // KL(teacher || student), averaged over the batch; T^2 keeps its gradients on the
                // scale of the labels' term whatever the temperature.
                const torch::Tensor kl =
                    torch::kl_div(torch::log_softmax(logp / T, 1), target, at::Reduction::Sum) / static_cast<double>(B);
                loss = (1.0 - a) * loss + a * T * T * kl;
            }
            optimizer->zero_grad();
            loss.backward();
            optimizer->step();
            const double l = loss.item<double>();
            if (!std::isfinite(l))
                throw std::runtime_error("training diverged: the loss is " + std::to_string(l) +
                                         " in epoch " + std::to_string(epoch + 1) +
                                         "; try a lower learning rate");
            loss_sum += l * static_cast<double>(b);
            seen += B;
            correct += logp.argmax(1).eq(y).sum().item<std::int64_t>();
            if (options.step_progress &&
                std::chrono::duration<double>(clock::now() - last_step_report).count() >= options.step_progress_seconds) {
                last_step_report = clock::now();
                TrainStepProgress sp;
                sp.epoch = epoch + 1;
                sp.epochs = epochs_planned();
                sp.images = seen;
                sp.epoch_images = static_cast<std::int64_t>(n);
                sp.loss = loss_sum / static_cast<double>(seen);
                sp.seconds = std::chrono::duration<double>(last_step_report - t0).count();
                options.step_progress(sp);
            }
        }
        // Where the training stands: a whole epoch (a batch under two images is skipped but
        // counted), or the plan's end within it.
        const std::int64_t done = std::min(planned_steps, steps_per_epoch * (epoch + 1));
        TrainProgress p;
        p.epoch = epoch + 1;
        p.epochs = epochs_planned();
        p.loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
        p.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
        p.lr = lr;
        result.epoch_loss.push_back(p.loss);
        if (options.validate_each_epoch) {
            // As the end will see the weights: batch norm's statistics set afresh (when the end
            // sets them), then training's running averages put back, so the training goes on
            // unchanged. With those averages, one epoch on 2,700 images read 10.67% here and
            // 41.33% at the end (docs/training.md).
            std::vector<torch::Tensor> running;
            if (recalibrates) running = model.batchnorm_statistics();
            validated.batchnorm_images =
                train_detail::recalibrate_batchnorm(model, train, options.batchnorm_images, bs, options.seed);
            validated.val = torch_accuracy(model, val_set, options.val_subset);
            validated.after_steps = done;
            p.val_accuracy = validated.val.accuracy;
            if (recalibrates) {
                validated.statistics = model.batchnorm_statistics();
                model.restore_batchnorm_statistics(running);
            }
        }
        p.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        // Planned again on this epoch's pace, unless the plan ended part-way through it.
        if (options.max_seconds > 0 && done < steps_asked && (done < planned_steps || done % steps_per_epoch == 0)) {
            const double epoch_s = std::chrono::duration<double>(clock::now() - epoch_start).count() -
                                   (epoch == 0 ? warmup_excess : 0.0);
            planned_steps = train_detail::steps_replanned(
                planned_steps, done, steps_asked, steps_per_epoch, options.max_seconds - p.seconds,
                epoch_s / static_cast<double>(std::max<std::int64_t>(1, done - epoch_first_step)));
            p.epochs = epochs_planned();
        }
        epoch_start = clock::now();
        if (options.progress) options.progress(p);
    }

    result.epochs = epochs_planned();
    result.epochs_asked = options.epochs;
    result.epochs_trained = static_cast<double>(planned_steps) / static_cast<double>(steps_per_epoch);
    Accuracy val;
    if (validated.after_steps == planned_steps) {  // the last epoch's validation saw these weights
        if (recalibrates) model.restore_batchnorm_statistics(validated.statistics);
        model.eval();
        result.batchnorm_images = static_cast<std::int64_t>(validated.batchnorm_images);
        val = validated.val;
    } else {
        result.batchnorm_images = static_cast<std::int64_t>(
            train_detail::recalibrate_batchnorm(model, train, options.batchnorm_images, bs, options.seed));
        val = torch_accuracy(model, val_set, options.val_subset);
    }
    result.val_accuracy = val.accuracy;
    result.val_images = val.n;
    result.train_images = static_cast<std::int64_t>(n);
    if (test_set && !test_set->empty()) {
        check_classifier(graph, *test_set);
        const Accuracy test = torch_accuracy(model, *test_set);
        result.test_accuracy = test.accuracy;
        result.test_images = test.n;
    }
    result.trained = model.export_weights();
    auto folded = fold_batchnorm(graph, result.trained);
    result.graph = std::move(folded.first);
    result.weights = std::move(folded.second);
    result.train_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return result;
}

// The same, splitting data.train into training and validation sets by validation_split (the
// fraction options.validation_fraction, never seeded by options.seed); data.test, when not
// empty, gives test_accuracy.
inline TrainResult train_model(const Graph& graph, const DatasetSplits& data,
                               const TrainOptions& options, const Weights* init = nullptr) {
    train_detail::check_options(options);
    const auto parts = validation_split(data.train, options.validation_fraction);
    return train_model(graph, parts.first, parts.second, data.test.empty() ? nullptr : &data.test,
                       options, init);
}

// Process-wide (glibc only; elsewhere nothing): freed memory stays in the process for reuse instead
// of going back to the kernel. libtorch frees and allocates every step's activations and
// gradients (megabytes each); glibc's defaults return them (its trim threshold, and the mmap
// threshold that grows only after large blocks were freed), and each step faults the pages in
// again: on the 2-core VM, 18% of a training's samples were page faults, and a 4 MMAC model's
// epoch of 10,000 images took 12.4 s instead of 2.5-2.7 s (docs/training.md). Every block comes
// from the heap, which is trimmed only past 1 GiB free: the resident memory stays at its peak.
// The mmap threshold cannot rise past 32 MiB, so larger blocks (a batch of 128 at 336 channels
// and 14x14 is 32.2 MiB) were mapped and faulted in afresh at every step, unless mmap is off:
// 4 million page faults and twice the time in an epoch of the fmnist_large start model.
// Returns false when glibc refused a setting.
inline bool keep_freed_memory_for_training() {
#if defined(__GLIBC__)
    constexpr int largest_heap_block = 32 << 20;
    constexpr int trim_above = 1 << 30;
    constexpr int grow_by = 64 << 20;
    const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, largest_heap_block) == 1;
    const bool trim_ok = mallopt(M_TRIM_THRESHOLD, trim_above) == 1;
    const bool pad_ok = mallopt(M_TOP_PAD, grow_by) == 1;
    const bool no_mmap_ok = mallopt(M_MMAP_MAX, 0) == 1;  // a thread's arena still maps what it cannot hold
    return mmap_ok && trim_ok && pad_ok && no_mmap_ok;
#else
    return true;
#endif
}

// What a training image costs at batch size `full_batch` over its cost at `proxy_batch`, for
// estimating a full training from a proxy one: every step costs as much again as
// `step_overhead_images` images (optimizer step, libtorch dispatch). Measured on Fashion-MNIST
// searches at 2 threads, a full epoch's image cost 0.57-0.68x a proxy's for 0.5-1.3 MMAC models
// and 0.93x for a 7.8 MMAC one; 12 gives 0.80x at batches 32 and 128 (docs/generate.md, "Search
// and final training in one time limit"). The final training corrects the rest by timing itself.
inline double final_image_cost(int proxy_batch, int full_batch) {
    constexpr double step_overhead_images = 12;
    return (1.0 + step_overhead_images / full_batch) / (1.0 + step_overhead_images / proxy_batch);
}

// The generation loop's trainer (search/types.hpp): proxy training for ranking candidates, full
// training for the final ones. The validation split is made once, from the full options'
// validation fraction (validation_split), so every candidate is ranked on the same images.
class TorchTrainer : public Trainer {
public:
    explicit TorchTrainer(const DatasetSplits& data, TrainOptions proxy = TrainOptions::proxy(),
                          TrainOptions full = TrainOptions::full())
        : name_(data.name), test_(data.test), proxy_(std::move(proxy)), full_(std::move(full)) {
        train_detail::check_options(proxy_);
        train_detail::check_options(full_);
        if (test_.empty())
            throw DatasetError("dataset '" + name_ + "' has no test set, which the final figure needs");
        auto parts = validation_split(data.train, full_.validation_fraction);
        train_ = std::move(parts.first);
        val_ = std::move(parts.second);
    }

    double proxy_accuracy(const Graph& graph) override {
        last_read_.reset();
        last_ = train_model(graph, train_, val_, nullptr, proxy_);
        return last_->val_accuracy;
    }

    FinalTraining train_final(const Graph& graph, const std::string& weights_path) override {
        return final_training(graph, weights_path, nullptr);
    }

    void set_distillation(const Graph& teacher, const std::string& weights_path, double weight,
                          double temperature) override {
        auto d = std::make_shared<Distillation>();
        d->teacher = teacher;
        d->teacher_weights = read_safetensors(weights_path);
        d->weight = weight;
        d->temperature = temperature;
        TrainOptions checked = full_;
        checked.distill = d;
        train_detail::check_options(checked);
        check_classifier(teacher, test_, name_);
        {
            TorchModel probe(teacher);
            probe.load_weights(d->teacher_weights);  // ExecutorError naming what does not fit
        }
        full_.distill = std::move(d);
    }

    // The images a full training sees over those a proxy training sees, times what an image costs
    // at the full batch size over the proxy's (final_image_cost, measured).
    double final_seconds_per_proxy_second() const override {
        const std::size_t proxy_n = proxy_.train_subset ? std::min(proxy_.train_subset, train_.size()) : train_.size();
        const double proxy_images = static_cast<double>(proxy_n) * proxy_.epochs;
        const double full_images = static_cast<double>(train_.size()) * full_.epochs;
        return proxy_images > 0 ? full_images / proxy_images * final_image_cost(proxy_.batch_size, full_.batch_size) : 0.0;
    }
    void set_final_time_limit(double seconds) override { full_.max_seconds = std::max(0.0, seconds); }

    void set_between_steps(std::function<void()> hook) override {
        proxy_.between_steps = hook;
        full_.between_steps = std::move(hook);
    }

    double weights_accuracy(const Graph& graph, const std::string& weights_path) override {
        last_.reset();
        last_read_ = read_safetensors(weights_path);
        return evaluate(graph, *last_read_, val_, proxy_.val_subset);
    }
    double weights_test_accuracy(const Graph& graph, const std::string& weights_path) override {
        return evaluate(graph, read_safetensors(weights_path), test_, 0);
    }
    double finetune_accuracy(const Graph& graph, const std::string& init_path) override {
        const Weights init = read_safetensors(init_path);
        last_read_.reset();
        last_ = train_model(graph, train_, val_, nullptr, finetune_options(), &init);
        write_safetensors(init_path, last_->trained);
        return last_->val_accuracy;
    }
    FinalTraining train_final_from(const Graph& graph, const std::string& init_path,
                                   const std::string& weights_path) override {
        const Weights init = read_safetensors(init_path);
        return final_training(graph, weights_path, &init);
    }

    std::vector<Tensor> training_images(std::size_t n) override { return calibration_slice(train_, n, full_.seed); }

    // int8: post-training quantization (exec/reference_int8.hpp, min/max ranges as `lamda quantize`
    // by default) calibrated on the first int8_calibration_images of a seeded order of the training
    // split, evaluated through the int8 executor on the same validation images as the fp32 figure.
    double last_int8_accuracy(const Graph& graph) override {
        const Weights* w = last_read_ ? &*last_read_ : last_ ? &last_->weights : nullptr;
        if (!w) throw std::logic_error("last_int8_accuracy: nothing was trained or read yet");
        const PtqResult q = quantize_ptq(graph, *w, calibration_images(), PtqOptions{});
        return int8_accuracy(q, val_, proxy_.val_subset);
    }
    QuantizedAccuracy quantize_final(const Graph& graph, const std::string& fp32_path,
                                     const std::string& int8_path) override {
        const PtqResult q = quantize_ptq(graph, read_safetensors(fp32_path), calibration_images(), PtqOptions{});
        const auto [tensors, meta] = quantized_to_weights(q.model, q.float_weights);
        write_safetensors(int8_path, tensors, meta);
        QuantizedAccuracy a;
        a.val_accuracy = int8_accuracy(q, val_, full_.val_subset);
        a.test_accuracy = int8_accuracy(q, test_, 0);
        return a;
    }
    int int8_calibration_images = 500;  // `lamda quantize --calibration`'s default


    // Fine-tuning: the proxy's options (threads, subset, seed) with TrainOptions::finetune()'s
    // epochs and learning rate.
    TrainOptions finetune_options() const {
        TrainOptions o = proxy_;
        const TrainOptions f = TrainOptions::finetune();
        o.epochs = f.epochs;
        o.lr = f.lr;
        return o;
    }
    TrainOptions& proxy_options() noexcept { return proxy_; }
    TrainOptions& full_options() noexcept { return full_; }
    const std::string& dataset_name() const noexcept { return name_; }
    // The last proxy or final training's full result.
    const std::optional<TrainResult>& last_result() const noexcept { return last_; }

private:
    // The full training of the handed-over model (from `init` when given), saved to weights_path.
    FinalTraining final_training(const Graph& graph, const std::string& weights_path, const Weights* init) {
        last_ = train_model(graph, train_, val_, &test_, full_, init);
        write_safetensors(weights_path, last_->weights);
        FinalTraining f;
        f.val_accuracy = last_->val_accuracy;
        f.test_accuracy = last_->test_accuracy.value_or(0.0);
        f.train_seconds = last_->train_seconds;
        f.epochs = last_->epochs;
        f.epochs_asked = last_->epochs_asked;
        f.epochs_trained = last_->epochs_trained;
        TrainingRecipe r;
        r.optimizer = std::string(optimizer_name(full_.optimizer));
        r.lr = full_.lr;
        r.cosine = full_.cosine;
        r.batch_size = full_.batch_size;
        r.weight_decay = full_.weight_decay;
        r.label_smoothing = full_.label_smoothing;
        r.shift = full_.shift;
        r.flip = full_.flip;
        r.erase = full_.erase;
        r.seed = full_.seed;
        r.threads = full_.threads;
        r.from_inherited_weights = init != nullptr;
        r.batchnorm_images = last_->batchnorm_images;
        f.recipe = std::move(r);
        return f;
    }

    std::string name_;
    Dataset train_, val_, test_;
    TrainOptions proxy_, full_;
    std::optional<TrainResult> last_;
    std::optional<Weights> last_read_;  // weights_accuracy's, until the next training
    std::vector<Tensor> calibration_;   // int8: calibration images, drawn once

    // Given weights, evaluated through XNNPACK where lamda has it: 8x faster than libtorch's
    // inference on a CPU (a 34 MMAC start model's 10,000 test images: 3.7 s against 31 s at 2
    // threads, which a 181 s adaptation lost from its final training; docs/adapt.md).
    double evaluate(const Graph& graph, const Weights& weights, const Dataset& d, std::size_t limit) {
        check_classifier(graph, d);
#if defined(LAMDA_WITH_XNNPACK)
        return evaluate_accuracy(graph, weights, d, proxy_.threads, limit).accuracy;
#else
        torch::set_num_threads(proxy_.threads);
        TorchModel model(graph);
        model.load_weights(weights);
        return torch_accuracy(model, d, limit).accuracy;
#endif
    }

    const std::vector<Tensor>& calibration_images() {
        if (calibration_.empty())
            calibration_ = training_images(static_cast<std::size_t>(std::max(1, int8_calibration_images)));
        return calibration_;
    }

    // The first `limit` images of `d` (all when 0) through the int8 executor.
    double int8_accuracy(const PtqResult& q, const Dataset& d, std::size_t limit) const {
        return evaluate_accuracy_int8(q.graph, q.model, q.float_weights, d, proxy_.threads, limit).accuracy;
    }
};

}  // namespace lamda

#endif  // defined(LAMDA_WITH_TORCH)
#endif  // LAMDA_TRAIN_TRAINER_HPP
