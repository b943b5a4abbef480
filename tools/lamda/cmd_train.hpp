// `lamda train` and `lamda eval`, and the trainer the generation loop uses.
//
//     lamda train MODEL --dataset fashion-mnist|DIR [--epochs N] [--batch N] [--lr X]
//                 [--optimizer adam|sgd] [--seed S] [--threads N] [--subset N] [--proxy]
//                 [--out W.safetensors] [--json]
//     lamda eval MODEL --weights W.safetensors --dataset fashion-mnist|DIR [--threads N] [--json]
//
// Training needs libtorch, which only tools/lamda/cmd_train.cpp sees: the build compiles that
// file into the module lamda-train.so, which the tool opens when a command trains
// (train_module.hpp), and defines LAMDA_CLI_WITH_TRAINER for the tool, only when libtorch is
// found. Without it `lamda train` still exists and says that this lamda was built without a
// trainer, and make_trainer() returns null (the loop then ranks by capacity).
// `lamda eval` runs the test set through XNNPACK (in int8 for a `lamda quantize` file) and needs
// no libtorch. In main.cpp:
//
//     int train_exit = -1;                          // set by the commands' callbacks
//     lamda_cli::add_train_commands(app, train_exit);
//     CLI11_PARSE(app, argc, argv);
//     if (train_exit >= 0) return train_exit;
#ifndef LAMDA_TOOLS_CMD_TRAIN_HPP
#define LAMDA_TOOLS_CMD_TRAIN_HPP

#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <string>

#include <lamda/dsl/file.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/core/diagnostics.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/search/types.hpp>
#include <lamda/data/weights.hpp>

#if defined(LAMDA_CLI_WITH_TRAINER)
#include "train_module.hpp"
#endif

namespace lamda_cli {

// Whether this lamda can train (was built with libtorch).
#if defined(LAMDA_CLI_WITH_TRAINER)
inline constexpr bool have_trainer = true;
#else
inline constexpr bool have_trainer = false;
#endif

struct EvalArgs {
    std::string model;
    std::string weights;
    std::string dataset;
    int threads = 1;
    std::size_t limit = 0;
    bool json = false;
};

// `lamda eval`: accuracy on the test set through XNNPACK. Returns the exit code.
inline int run_eval(const EvalArgs& args) {
#if defined(LAMDA_WITH_XNNPACK)
    const lamda::ParseResult parsed = lamda::parse_dsl_file(args.model);
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    // An int8 file (`lamda quantize`) runs through XNNPACK's int8 operators on the folded graph;
    // an fp32 file as it is, or folded when it was saved folded.
    lamda::ModelWeights model;
    try {  // before the dataset is read: a mismatch is the likelier mistake, and quick to find
        model = lamda::read_model_weights(parsed.graph, args.weights);
    } catch (const lamda::ExecutorError& e) {
        std::cerr << args.weights << ": error: " << e.what() << '\n';
        return 1;
    }
    const lamda::DatasetSplits data = lamda::load_dataset(args.dataset);
    if (data.test.empty())
        throw lamda::DatasetError("dataset '" + data.name + "' has no test set to evaluate on");
    const bool int8 = model.int8;
    const lamda::Accuracy a =
        int8 ? lamda::evaluate_accuracy_int8(model.graph, model.quantized, model.weights, data.test, args.threads, args.limit)
             : lamda::evaluate_accuracy(model.graph, model.weights, data.test, args.threads, args.limit);
    const char* precision = int8 ? "int8" : "float32";
    if (args.json) {
        lamda::JsonWriter json;
        json.begin_object()
            .field("model", args.model)
            .field("weights", args.weights)
            .field("dataset", data.name)
            .field("accuracy", a.accuracy)
            .field("correct", a.correct)
            .field("n", a.n)
            .field("executor", "xnnpack")
            .field("precision", precision)
            .end_object();
        std::cout << json.str() << '\n';
    } else {
        char line[160];
        std::snprintf(line, sizeof line, "accuracy: %.2f%% (%lld of %lld test images)\n",
                      100.0 * a.accuracy, static_cast<long long>(a.correct),
                      static_cast<long long>(a.n));
        std::cout << line << "n: " << a.n << "\ndataset: " << data.name << "\nprecision: " << precision
                  << (int8 ? " (layers without an int8 kernel in float: " +
                                 std::to_string(model.quantized.float_layers.size()) + ")"
                           : std::string())
                  << "\nexecutor: XNNPACK, " << args.threads << " thread" << (args.threads == 1 ? "" : "s") << '\n';
    }
    return 0;
#else
    (void)args;
    std::cerr << "lamda: error: this lamda was built without XNNPACK, so it cannot run models; "
                 "install libxnnpack-dev and libpthreadpool-dev and rebuild\n";
    return 1;
#endif
}

// Runs `body` (returning an exit code) for a command's callback: CLI11 callbacks run inside
// parsing, so errors are reported here rather than escaping as exceptions.
template <typename F>
void run_command(int& exit_code, F&& body) {
    try {
        exit_code = body();
    } catch (const std::exception& e) {
        std::cerr << "lamda: error: " << e.what() << '\n';
        exit_code = 1;
    }
}

inline void add_eval_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<EvalArgs>();
    auto* eval = app.add_subcommand(
        "eval", "Accuracy of a model with trained weights on a dataset's test set, through the\n"
                "XNNPACK executor. Weights saved by `lamda train` (batch norm folded) fit the model\n"
                "as written; an int8 file from `lamda quantize` runs in int8. Prints the accuracy,\n"
                "the number of images and the precision.");
    eval->add_option("model", args->model, "Model file in the lamda DSL")->required();
    eval->add_option("--weights", args->weights, "Weights (safetensors): fp32, or int8 from `lamda quantize`")->required();
    eval->add_option("--dataset", args->dataset,
                     "fashion-mnist (Debian's dataset-fashion-mnist) or a directory of IDX or .npy "
                     "files (docs/training.md)")
        ->required();
    eval->add_option("--threads", args->threads, "Executor threads")->check(CLI::Range(1, 1024));
    eval->add_option("--limit", args->limit, "Evaluate only the first N test images");
    eval->add_flag("--json", args->json, "Print one JSON object");
    eval->callback([args, &exit_code] { run_command(exit_code, [&] { return run_eval(*args); }); });
}

#if defined(LAMDA_CLI_WITH_TRAINER)

// `train` (run by the libtorch module, train_module.hpp) and `eval`.
inline void add_train_commands(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<TrainArgs>();
    auto* train = app.add_subcommand(
        "train", "Train a model on a dataset with libtorch: the validation split (held out from the\n"
                 "training set) and, at the end, the test set are evaluated. Progress goes to\n"
                 "stderr. --out saves the weights, batch norm folded, for `lamda eval`.");
    train->add_option("model", args->model, "Model file in the lamda DSL")->required();
    train->add_option("--dataset", args->dataset,
                      "fashion-mnist (Debian's dataset-fashion-mnist) or a directory of IDX or .npy "
                      "files (docs/training.md)")
        ->required();
    train->add_option("--epochs", args->epochs, "Epochs (default 15; 1 with --proxy)")
        ->check(CLI::Range(1, 100000));
    train->add_option("--max-seconds", args->max_seconds,
                      "Train for at most this long, evaluation included: the steps that fit, at least one "
                      "epoch, the learning-rate schedule spanning them (default: no limit)")
        ->check(CLI::Range(0.0, 1e9));
    train->add_option("--batch", args->batch, "Batch size (default 128)")->check(CLI::Range(1, 65536));
    train->add_option("--lr", args->lr, "Initial learning rate (default 0.003 for adam, 0.05 for sgd)")
        ->check(CLI::PositiveNumber);
    train->add_option("--optimizer", args->optimizer, "adam (default) or sgd (momentum 0.9)")
        ->check(CLI::IsMember({"adam", "sgd"}));
    train->add_option("--weight-decay", args->weight_decay, "L2 weight decay (default 1e-5)")
        ->check(CLI::Range(0.0, 1.0));
    train->add_option("--label-smoothing", args->label_smoothing, "Label smoothing (default 0.1)")
        ->check(CLI::Range(0.0, 0.99));
    train->add_option("--shift", args->shift,
                      "Augmentation: random shift by up to N pixels (default 2; 0: off)")
        ->check(CLI::Range(0, 64));
    train->add_flag("--no-flip", args->no_flip, "Augmentation: no random horizontal flips");
    train->add_option("--erase", args->erase,
                      "Augmentation: probability of erasing a random rectangle of each image (default 0: off)")
        ->check(CLI::Range(0.0, 1.0));
    train->add_flag("--no-cosine", args->no_cosine, "Constant learning rate (no cosine schedule)");
    train->add_flag("--nchw", args->nchw,
                    "Keep activations in NCHW memory (default: channels-last, which trained most models faster here)");
    train->add_option("--val-fraction", args->val_fraction,
                      "Fraction of the training set held out for validation (default 0.1)")
        ->check(CLI::Range(0.001, 0.9));
    train->add_option("--seed", args->seed, "Seed: the same seed and thread count give the same weights (the validation split is the same for every seed)");
    train->add_option("--threads", args->threads, "libtorch threads (default 1)")
        ->check(CLI::Range(1, 1024));
    train->add_option("--subset", args->subset, "Train on a seeded sample of N training images");
    train->add_option("--batchnorm-images", args->batchnorm_images,
                      "After training, set batch norm's statistics from N training images (default 2048; 0 with --proxy; 0: keep training's running averages)")
        ->check(CLI::Range(0LL, 1LL << 40));
    train->add_option("--progress", args->progress_s,
                      "Seconds between progress lines within an epoch (default: 1 on a terminal, 15 in a log; 0: every step)")
        ->check(CLI::Range(0.0, 86400.0));
    train->add_flag("--proxy", args->proxy,
                    "The search's proxy mode: 6000 images, 1 epoch, batch 32, no augmentation");
    train->add_option("--init", args->init, "Start from these weights (safetensors fitting the model): fine-tuning");
    auto* teacher = train->add_option(
        "--teacher", args->teacher, "Knowledge distillation: also learn this trained model's predictions (same input and classes)");
    train->add_option("--teacher-weights", args->teacher_weights,
                      "The teacher's weights (default: the teacher's file with .safetensors)")
        ->needs(teacher);
    train->add_option("--distill", args->distill, "With --teacher: its share of the loss (default 0.5)")
        ->check(CLI::Range(0.01, 1.0))
        ->needs(teacher);
    train->add_option("--distill-temperature", args->distill_temperature,
                      "With --teacher: the temperature softening its predictions (default 4)")
        ->check(CLI::Range(0.05, 100.0))
        ->needs(teacher);
    train->add_option("--out", args->out, "Write the trained weights (safetensors)");
    train->add_flag("--json", args->json,
                    "Print one JSON object (val_accuracy, test_accuracy, train_seconds, ...)");
    train->callback([args, &exit_code] {
        run_command(exit_code, [&] { return train_module().run_train(*args); });
    });
    add_eval_command(app, exit_code);
}

// A trainer on `dataset` (a name or directory, as --dataset takes) with the proxy and full
// defaults of train/trainer.hpp, `threads` threads and seed `seed`; `full_epochs` > 0 overrides the full
// training's epoch count, `full_erase` >= 0 its random erasing probability. Throws
// lamda::DatasetError when the dataset cannot be loaded, and lamda::Exception when the libtorch
// module cannot be loaded.
inline std::unique_ptr<lamda::Trainer> make_trainer(const std::string& dataset, int threads,
                                                    std::uint64_t seed, int full_epochs = 0, double full_erase = -1) {
    return train_module().make_trainer(dataset, threads, seed, full_epochs, full_erase);
}

#else

// Without libtorch: `lamda train` exists only to say so; `lamda eval` works.
inline void add_train_commands(CLI::App& app, int& exit_code) {
    auto* train = app.add_subcommand(
        "train", "Train a model on a dataset (unavailable: this lamda was built without libtorch).");
    train->allow_extras();
    train->callback([&exit_code] {
        std::cerr << "lamda: error: this lamda was built without a trainer (libtorch), so it cannot "
                     "train; install libtorch-dev and rebuild\n";
        exit_code = 1;
    });
    add_eval_command(app, exit_code);
}

// Without libtorch there is no trainer: the loop falls back to its capacity objective.
inline std::unique_ptr<lamda::Trainer> make_trainer(const std::string& /*dataset*/, int /*threads*/,
                                                    std::uint64_t /*seed*/, int /*full_epochs*/ = 0,
                                                    double /*full_erase*/ = -1) {
    return nullptr;
}

#endif

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_TRAIN_HPP
