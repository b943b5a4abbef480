// `lamda train` and the generation loop's trainer: the lamda tool's only translation unit that
// sees libtorch, built as the module lamda-train.so (only when libtorch is found) that the tool
// opens when a command trains (train_module.hpp). Also `lamda quantize`'s libtorch parts
// (--fake-quant, --qat-epochs). Its one exported symbol is lamda_train_module_v1.
#include "train_module.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <lamda/core/diagnostics.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/exec/fold.hpp>
#include <lamda/detail/format.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/train/qat.hpp>
#include <lamda/train/trainer.hpp>
#include <lamda/data/weights.hpp>

#include "cli_io.hpp"

#if !defined(LAMDA_WITH_TORCH)
#error "cmd_train.cpp needs libtorch (LAMDA_WITH_TORCH); the build compiles it only when found"
#endif

namespace lamda_cli {

namespace {

// Within an epoch, on stderr: on a terminal one line redrawn every second; in a log a plain line
// every 15 s (an epoch of a full training takes a minute: silence would look like a hang).
void print_step(const lamda::TrainStepProgress& p) {
    char line[200];
    std::snprintf(line, sizeof line, "epoch %d/%d: %lld/%lld images (%.0f%%), loss %.4f, %.1f s", p.epoch, p.epochs,
                  static_cast<long long>(p.images), static_cast<long long>(p.epoch_images),
                  p.epoch_images > 0 ? 100.0 * static_cast<double>(p.images) / static_cast<double>(p.epoch_images) : 0.0,
                  p.loss, p.seconds);
    if (lamda_cli::stderr_is_terminal()) std::cerr << "\r\033[K" << line << std::flush;
    else std::cerr << line << '\n' << std::flush;
}

// Step progress as often as the output can take it: redrawn every second on a terminal.
void show_steps(lamda::TrainOptions& o) {
    o.step_progress = print_step;
    o.step_progress_seconds = lamda_cli::stderr_is_terminal() ? 1.0 : 15.0;
}

// One line per epoch on stderr (`lamda train`, and the loop's full trainings).
void print_epoch(const lamda::TrainProgress& p) {
    if (lamda_cli::stderr_is_terminal()) std::cerr << "\r\033[K";  // over the step line
    char line[200];
    std::snprintf(line, sizeof line, "epoch %d/%d: loss %.4f, train %.2f%%, val %.2f%%, lr %.2g, %.1f s\n",
                  p.epoch, p.epochs, p.loss, 100.0 * p.train_accuracy, 100.0 * p.val_accuracy.value_or(0.0),
                  p.lr, p.seconds);
    std::cerr << line << std::flush;
}

int run_train(const TrainArgs& args) {
    const lamda::ParseResult parsed = lamda::parse_dsl_file(args.model);
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    lamda::TrainOptions o = args.proxy ? lamda::TrainOptions::proxy() : lamda::TrainOptions::full();
    if (!lamda::parse_optimizer(args.optimizer, o.optimizer))
        throw std::invalid_argument("--optimizer must be adam or sgd, not '" + args.optimizer + "'");
    // SGD needs a larger step than Adam's default.
    if (o.optimizer == lamda::OptimizerKind::Sgd) o.lr = 0.05;
    if (args.epochs > 0) o.epochs = args.epochs;
    o.max_seconds = args.max_seconds;
    if (args.batch > 0) o.batch_size = args.batch;
    if (args.lr > 0) o.lr = args.lr;
    if (args.weight_decay >= 0) o.weight_decay = args.weight_decay;
    if (args.label_smoothing >= 0) o.label_smoothing = args.label_smoothing;
    if (args.shift >= 0) o.shift = args.shift;
    if (args.no_flip) o.flip = false;
    if (args.erase >= 0) o.erase = args.erase;
    if (args.no_cosine) o.cosine = false;
    if (args.nchw) o.channels_last = false;
    if (args.subset > 0) o.train_subset = args.subset;
    if (args.batchnorm_images >= 0) o.batchnorm_images = static_cast<std::size_t>(args.batchnorm_images);
    o.validation_fraction = args.val_fraction;
    o.seed = args.seed;
    o.threads = args.threads;
    o.validate_each_epoch = true;
    o.progress = print_epoch;
    show_steps(o);
    if (args.progress_s >= 0) o.step_progress_seconds = args.progress_s;

    std::optional<lamda::Weights> init;
    if (!args.init.empty()) init = lamda::read_safetensors(args.init);
    if (!args.teacher.empty()) {
        const lamda::ParseResult teacher = lamda::parse_dsl_file(args.teacher);
        if (!teacher.ok()) {
            std::cerr << lamda::format_diagnostics(teacher.diagnostics);
            return 1;
        }
        auto d = std::make_shared<lamda::Distillation>();
        d->teacher = teacher.graph;
        d->teacher_weights = lamda::read_safetensors(
            args.teacher_weights.empty() ? std::filesystem::path(args.teacher).replace_extension(".safetensors").string()
                                         : args.teacher_weights);
        // `lamda train --out` saves weights with batch norm folded: they fit the folded model.
        if (!lamda::validate_weights(d->teacher, d->teacher_weights).empty()) {
            lamda::Graph folded = lamda::fold_batchnorm_graph(d->teacher);
            if (lamda::validate_weights(folded, d->teacher_weights).empty()) d->teacher = std::move(folded);
        }
        d->weight = args.distill;
        d->temperature = args.distill_temperature;
        o.distill = std::move(d);
    }

    std::cerr << "loading " << args.dataset << "...\n";
    const lamda::DatasetSplits data = lamda::load_dataset(args.dataset);
    // The images it really trains on: what is left after the validation split (split_dataset's
    // rounding), or the --subset sample of those.
    std::size_t held = static_cast<std::size_t>(o.validation_fraction * static_cast<double>(data.train.size()) + 0.5);
    if (o.validation_fraction > 0 && held == 0 && data.train.size() > 1) held = 1;
    held = std::min(held, data.train.size());
    const std::size_t rest = data.train.size() - held;
    const std::size_t trained_on = o.train_subset > 0 ? std::min(o.train_subset, rest) : rest;
    std::cerr << "training " << (parsed.graph.name.empty() ? args.model : parsed.graph.name) << " on "
              << data.name << ": " << trained_on << " training images ("
              << (o.train_subset > 0 ? "a seeded sample of the " + std::to_string(rest) + " left after "
                                     : std::string())
              << held << " of " << data.train.size() << " held out for validation), "
              << data.test.size() << " test images, " << (o.max_seconds > 0 ? "up to " : "") << o.epochs << " epochs"
              << (o.max_seconds > 0 ? " in " + lamda::detail::format_fixed(o.max_seconds, 0) + " s" : std::string()) << ", "
              << lamda::optimizer_name(o.optimizer) << ", " << o.threads << " thread"
              << (o.threads == 1 ? "" : "s") << (init ? ", from " + args.init : std::string())
              << (o.distill ? ", distilling " + args.teacher : std::string()) << '\n';
    const lamda::TrainResult r = lamda::train_model(parsed.graph, data, o, init ? &*init : nullptr);
    if (!args.out.empty()) lamda::write_safetensors(args.out, r.weights);

    if (args.json) {
        lamda::JsonWriter json;
        json.begin_object()
            .field("model", parsed.graph.name.empty() ? args.model : parsed.graph.name)
            .field("dataset", data.name)
            .field("val_accuracy", r.val_accuracy);
        json.key("test_accuracy");
        if (r.test_accuracy) json.value(*r.test_accuracy);
        else json.null();
        json.field("train_seconds", r.train_seconds)
            .field("epochs", r.epochs)
            .field("epochs_trained", r.epochs_trained)
            .field("train_images", r.train_images)
            .field("val_images", r.val_images)
            .field("test_images", r.test_images)
            .field("batchnorm_images", r.batchnorm_images)
            .field("optimizer", std::string(lamda::optimizer_name(o.optimizer)))
            .field("lr", o.lr)
            .field("batch", o.batch_size)
            .field("seed", o.seed)
            .field("threads", o.threads);
        json.key("init");
        if (args.init.empty()) json.null();
        else json.value(args.init);
        json.key("distillation");
        if (o.distill) {
            json.begin_object()
                .field("teacher", args.teacher)
                .field("weight", o.distill->weight)
                .field("temperature", o.distill->temperature)
                .end_object();
        } else {
            json.null();
        }
        json.key("weights");
        if (args.out.empty()) json.null();
        else json.value(args.out);
        json.end_object();
        std::cout << json.str() << '\n';
    } else {
        char line[200];
        std::snprintf(line, sizeof line, "val_accuracy:  %.2f%% (%lld images)\n",
                      100.0 * r.val_accuracy, static_cast<long long>(r.val_images));
        std::cout << line;
        if (r.test_accuracy) {
            std::snprintf(line, sizeof line, "test_accuracy: %.2f%% (%lld images)\n",
                          100.0 * *r.test_accuracy, static_cast<long long>(r.test_images));
            std::cout << line;
        }
        if (r.batchnorm_images > 0) {
            std::snprintf(line, sizeof line, "batch norm:    statistics set from %lld training images\n",
                          static_cast<long long>(r.batchnorm_images));
            std::cout << line;
        }
        std::snprintf(line, sizeof line, "train_seconds: %.1f\n", r.train_seconds);
        std::cout << line;
        if (r.epochs_trained < r.epochs_asked) {
            std::snprintf(line, sizeof line, "epochs:        %.2f of %d (all that fitted --max-seconds)\n",
                          r.epochs_trained, r.epochs_asked);
            std::cout << line;
        }
        if (!args.out.empty()) std::cout << "weights:       " << args.out << " (batch norm folded)\n";
    }
    return 0;
}

lamda::Accuracy fake_quant_accuracy(const lamda::PtqResult& q, const lamda::Dataset& d, std::size_t limit,
                                        int threads) {
    return lamda::fake_quant_accuracy(q, d, limit, threads);
}

QatRun qat_finetune(const lamda::Graph& graph, const lamda::Weights& weights, const lamda::Dataset& train,
                    const std::vector<lamda::Tensor>& calibration, const lamda::PtqOptions& ptq, int epochs,
                    double lr, std::size_t subset, std::uint64_t seed, int threads) {
    lamda::QatOptions o;
    o.epochs = epochs;
    o.lr = lr;
    o.train_subset = subset;
    o.seed = seed;
    o.threads = threads;
    o.ptq = ptq;
    o.progress = [](const lamda::QatProgress& p) {
        char line[160];
        std::snprintf(line, sizeof line, "QAT epoch %d/%d: loss %.4f, %.1f s\n", p.epoch, p.epochs, p.loss, p.seconds);
        std::cerr << line << std::flush;
    };
    lamda::QatResult r = lamda::quantization_aware_finetune(graph, weights, train, calibration, o);
    QatRun run;
    run.ptq = std::move(r.ptq);
    run.epoch_loss = std::move(r.epoch_loss);
    run.train_images = r.train_images;
    run.seconds = r.seconds;
    return run;
}

std::unique_ptr<lamda::Trainer> make_trainer(const std::string& dataset, int threads, std::uint64_t seed,
                                             int full_epochs, double full_erase) {
    lamda::TrainOptions proxy = lamda::TrainOptions::proxy();
    lamda::TrainOptions full = lamda::TrainOptions::full();
    proxy.threads = full.threads = threads;
    proxy.seed = full.seed = seed;
    full.validate_each_epoch = true;  // a full training takes minutes: show how it goes
    full.progress = print_epoch;
    show_steps(full);
    if (full_epochs > 0) full.epochs = full_epochs;
    if (full_erase >= 0) full.erase = full_erase;
    return std::make_unique<lamda::TorchTrainer>(lamda::load_dataset(dataset), proxy, full);
}

}  // namespace

}  // namespace lamda_cli

// Built with -fvisibility=hidden: this is the module's only exported symbol.
extern "C" __attribute__((visibility("default"))) const lamda_cli::TrainModule* lamda_train_module_v1() {
    static const bool kept = lamda::keep_freed_memory_for_training();  // once: this process trains
    (void)kept;
    static const lamda_cli::TrainModule module{lamda::version_string, lamda_cli::train_module_layout(),
                                               &lamda_cli::run_train,   &lamda_cli::make_trainer,
                                               &lamda_cli::fake_quant_accuracy, &lamda_cli::qat_finetune};
    return &module;
}
