// `lamda quantize`: post-training int8 quantization (lamda/exec/reference_int8.hpp) of trained
// fp32 weights, calibrated on a slice of the dataset's training set, written as a quantized
// safetensors file (docs/weights.md), and the fp32 vs int8 test accuracy (docs/int8.md).
//
//     lamda quantize MODEL --weights W --dataset D --out Q.safetensors [--calibration 500]
//                    [--range minmax|percentile] [--percentile 99.99] [--eval 10000] [--json]
//                    [--fake-quant] [--qat-epochs N [--qat-threshold 1.0] [--qat-lr 1e-4]
//                    [--qat-subset N] [--qat-val N]] [--threads N]
//
// --fake-quant and --qat-epochs need libtorch (train/qat.hpp): that code lives in cmd_train.cpp,
// the tool's libtorch module (train_module.hpp), behind qat_fake_quant_accuracy() and
// qat_finetune() below; a lamda built without libtorch refuses both with a one-line error.
//
// Included by main.cpp: lamda_cli::add_quantize_command(app, exit_code) (runs in its callback).
#ifndef LAMDA_TOOLS_CMD_QUANTIZE_HPP
#define LAMDA_TOOLS_CMD_QUANTIZE_HPP

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <lamda/core/diagnostics.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/data/weights.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/exec/reference_int8.hpp>

#if defined(LAMDA_CLI_WITH_TRAINER)
#include "train_module.hpp"
#endif

namespace lamda_cli {

struct QuantizeArgs {
    std::string model, weights, dataset, out;
    int calibration = 500;            // training images used for calibration
    std::string range = "minmax";     // or percentile
    double percentile = 99.99;
    int eval = 10000;                 // test images evaluated in fp32 and int8 (0: none)
    std::uint64_t seed = 1;
    bool json = false;
    bool fake_quant = false;     // also evaluate the int8 model in libtorch with fake quantization
    int qat_epochs = 0;          // > 0: QAT when PTQ loses more than qat_threshold points (validation)
    double qat_threshold = 1.0;  // points of validation accuracy; negative: always fine-tune
    double qat_lr = 1e-4;
    std::size_t qat_subset = 0;  // fine-tune on a seeded sample of N training images; 0: all
    std::size_t qat_val = 0;     // validation images deciding QAT; 0: the whole validation split
    int threads = 1;
};

#if defined(LAMDA_CLI_WITH_TRAINER)
// Top-1 accuracy of `q` through libtorch with fake quantization, on the first `limit` images of `d`.
inline lamda::Accuracy qat_fake_quant_accuracy(const lamda::PtqResult& q, const lamda::Dataset& d, std::size_t limit,
                                               int threads) {
    return train_module().fake_quant_accuracy(q, d, limit, threads);
}
// Quantization-aware fine-tuning of `weights` on `train` (progress on stderr).
inline QatRun qat_finetune(const lamda::Graph& graph, const lamda::Weights& weights, const lamda::Dataset& train,
                           const std::vector<lamda::Tensor>& calibration, const lamda::PtqOptions& ptq, int epochs,
                           double lr, std::size_t subset, std::uint64_t seed, int threads) {
    return train_module().qat_finetune(graph, weights, train, calibration, ptq, epochs, lr, subset, seed, threads);
}
#endif

namespace quantize_cli {

struct Eval {
    std::int64_t fp32 = 0, int8 = 0, ptq_int8 = 0, n = 0;
};

// What --qat-epochs did: the validation numbers that decided, and the fine-tuning.
struct QatReport {
    bool asked = false, ran = false;
    std::string kept = "ptq";  // the model written: "ptq" or "qat" (the better on validation)
    std::int64_t val_images = 0;
    double val_fp32 = 0, val_ptq = 0, val_qat = 0;
    std::vector<double> epoch_loss;
    std::int64_t train_images = 0;
    double seconds = 0;
};

inline double points(double a) { return 100.0 * a; }

inline std::size_t argmax_of(const std::vector<float>& v, std::size_t n) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < n && k < v.size(); ++k)
        if (v[k] > v[best]) best = k;
    return best;
}

inline std::string pct(std::int64_t a, std::int64_t n) {
    char b[32];
    std::snprintf(b, sizeof b, "%.2f%%", n ? 100.0 * static_cast<double>(a) / static_cast<double>(n) : 0.0);
    return b;
}

}  // namespace quantize_cli

inline int run_quantize(const QuantizeArgs& a) {
    using namespace quantize_cli;
    auto fail = [](const std::string& m) {
        std::cerr << "lamda quantize: error: " << m << '\n';
        return 1;
    };
    if (a.range != "minmax" && a.range != "percentile")
        return fail("--range must be minmax or percentile, not '" + a.range + "'");
#if !defined(LAMDA_CLI_WITH_TRAINER)
    if (a.qat_epochs != 0)
        return fail("--qat-epochs needs libtorch, and this lamda was built without it (install libtorch-dev and rebuild)");
    if (a.fake_quant)
        return fail("--fake-quant needs libtorch, and this lamda was built without it (install libtorch-dev and rebuild)");
#endif
    if (a.qat_epochs < 0 || a.qat_epochs > 1000)
        return fail("--qat-epochs must be in 1..1000 (0: no QAT), got " + std::to_string(a.qat_epochs));
    if (!(a.qat_lr > 0 && a.qat_lr < 1)) return fail("--qat-lr must be in (0, 1), got " + std::to_string(a.qat_lr));
    if (!(a.qat_threshold >= -100 && a.qat_threshold <= 100))
        return fail("--qat-threshold must be in [-100, 100] points, got " + std::to_string(a.qat_threshold));
    const lamda::ParseResult parsed = lamda::parse_dsl_file(a.model);
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    const lamda::Graph& graph = parsed.graph;
    const lamda::SafetensorsData file = lamda::read_safetensors_file(a.weights);
    if (lamda::is_quantized(file))
        return fail(a.weights + ": is already an int8 file; quantize reads the fp32 weights");
    std::cerr << "loading " << a.dataset << "...\n";
    const lamda::DatasetSplits data = lamda::load_dataset(a.dataset);
    lamda::check_classifier(graph, data.train, data.name);

    // Calibration: a seeded slice of the training set (never the test set).
    const std::vector<lamda::Tensor> calib =
        lamda::calibration_slice(data.train, static_cast<std::size_t>(a.calibration), a.seed);
    const std::size_t nc = calib.size();
    lamda::PtqOptions opt;
    opt.range = a.range == "percentile" ? lamda::CalibrationRange::Percentile : lamda::CalibrationRange::MinMax;
    opt.percentile = a.percentile;
    const auto t0 = std::chrono::steady_clock::now();
    std::cerr << "calibrating on " << nc << " training images (" << a.range << ")...\n";
    lamda::PtqResult q = lamda::quantize_ptq(graph, file.tensors, calib, opt);
    const double calib_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // The float weights on the folded graph (what fp32 accuracy is measured on).
    lamda::Weights folded_w;
    if (lamda::validate_weights(graph, file.tensors).empty()) {
        auto f = lamda::fold_batchnorm(graph, file.tensors);
        folded_w = std::move(f.second);
    } else {
        folded_w = file.tensors;
    }

    // QAT: decided on a validation split of the training set (lamda train's: 10%), never
    // on the test set; fine-tuned on the rest.
    QatReport qat;
    std::optional<lamda::PtqResult> ptq_before;
#if defined(LAMDA_CLI_WITH_TRAINER)
    if (a.qat_epochs > 0) {
        qat.asked = true;
        auto parts = lamda::validation_split(data.train);
        const lamda::Dataset& val = parts.second;
        const std::size_t nv = a.qat_val ? std::min(a.qat_val, val.size()) : val.size();
        std::cerr << "validating fp32 and PTQ int8 on " << nv << " held-out training images...\n";
        const lamda::Accuracy vf = lamda::evaluate_accuracy(q.graph, folded_w, val, a.threads, nv);
        const lamda::Accuracy vq = lamda::evaluate_accuracy_int8(q.graph, q.model, q.float_weights, val, a.threads, nv);
        qat.val_images = vf.n;
        qat.val_fp32 = vf.accuracy;
        qat.val_ptq = vq.accuracy;
        if (points(vf.accuracy - vq.accuracy) > a.qat_threshold) {
            std::cerr << "PTQ loses " << points(vf.accuracy - vq.accuracy) << " points (threshold "
                      << a.qat_threshold << "): quantization-aware fine-tuning for " << a.qat_epochs << " epochs...\n";
            QatRun r = qat_finetune(graph, file.tensors, parts.first, calib, opt, a.qat_epochs, a.qat_lr, a.qat_subset,
                                    a.seed, a.threads);
            qat.ran = true;
            qat.epoch_loss = r.epoch_loss;
            qat.train_images = r.train_images;
            qat.seconds = r.seconds;
            qat.val_qat =
                lamda::evaluate_accuracy_int8(r.ptq.graph, r.ptq.model, r.ptq.float_weights, val, a.threads, nv).accuracy;
            if (qat.val_qat >= qat.val_ptq) {
                qat.kept = "qat";
                ptq_before = std::move(q);
                q = std::move(r.ptq);
            }
        }
    }
#endif
    const auto [tensors, meta] = lamda::quantized_to_weights(q.model, q.float_weights);
    lamda::write_safetensors(a.out, tensors, meta);

    std::int64_t fp32_bytes = 0, int8_bytes = 0;
    for (const auto& kv : file.tensors) fp32_bytes += static_cast<std::int64_t>(kv.second.data.size()) * 4;
    for (const auto& kv : tensors)
        int8_bytes += static_cast<std::int64_t>(kv.second.stored()) * (kv.second.dtype == lamda::WeightDType::I8 ? 1 : 4);

    // fp32 (float reference on the folded weights) and int8 (integer reference) on the test set.
    Eval ev;
    const lamda::Dataset& test = data.test;
    const std::size_t ne = std::min<std::size_t>(static_cast<std::size_t>(std::max(0, a.eval)), test.size());
    if (ne > 0) {
        std::cerr << "evaluating fp32 and int8 on " << ne << " test images...\n";
        const lamda::Graph& folded_g = q.graph;
        const auto classes = static_cast<std::size_t>(test.classes);
        lamda::Tensor img(test.shape);
        for (std::size_t i = 0; i < ne; ++i) {
            test.copy_image(i, img.data.data());
            const lamda::Tensor f = lamda::run_reference(folded_g, folded_w, img);
            const lamda::Int8Run r = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
            const auto label = static_cast<std::size_t>(test.labels[i]);
            ev.fp32 += argmax_of(f.data, classes) == label;
            ev.int8 += argmax_of(r.output.data, classes) == label;
            if (ptq_before) {
                const lamda::Int8Run p =
                    lamda::run_reference_int8(ptq_before->graph, ptq_before->model, ptq_before->float_weights, img);
                ev.ptq_int8 += argmax_of(p.output.data, classes) == label;
            }
        }
        ev.n = static_cast<std::int64_t>(ne);
    }
    // The same int8 model through libtorch's fake quantization (train/qat.hpp).
    std::optional<lamda::Accuracy> fq;
#if defined(LAMDA_CLI_WITH_TRAINER)
    if (a.fake_quant && ne > 0) {
        std::cerr << "evaluating int8 with libtorch fake quantization on " << ne << " test images...\n";
        fq = qat_fake_quant_accuracy(q, test, ne, a.threads);
    }
#endif

    const std::size_t int8_layers = q.graph.layers.size() - q.model.float_layers.size();
    if (a.json) {
        lamda::JsonWriter j;
        j.begin_object();
        j.field("model", a.model).field("weights", a.weights).field("out", a.out).field("precision", "int8");
        j.key("scheme").value(lamda::quantized_scheme_text());
        j.key("calibration").begin_object();
        j.field("dataset", data.name).field("images", static_cast<std::int64_t>(nc)).field("range", a.range);
        if (a.range == "percentile") j.field("percentile", a.percentile);
        j.field("seconds", calib_s).end_object();
        j.key("folded").begin_array();
        for (const auto& f : q.folded) j.value(f);
        j.end_array();
        j.field("int8_layers", static_cast<std::int64_t>(int8_layers));
        j.key("float_layers").begin_array();
        for (const auto& [layer, why] : q.float_reasons)
            j.begin_object().field("layer", layer).field("reason", why).end_object();
        j.end_array();
        j.key("bytes").begin_object().field("fp32", fp32_bytes).field("int8_file_tensors", int8_bytes).end_object();
        if (ev.n > 0) {
            const double f = static_cast<double>(ev.fp32) / static_cast<double>(ev.n);
            const double i = static_cast<double>(ev.int8) / static_cast<double>(ev.n);
            j.key("accuracy").begin_object();
            j.field("images", ev.n).field("fp32", f).field("int8", i).field("delta_points", 100.0 * (i - f));
            j.field("executor", "reference");
            if (fq) j.field("fake_quant", fq->accuracy).field("fake_quant_executor", "libtorch");
            if (ptq_before) j.field("ptq_int8", static_cast<double>(ev.ptq_int8) / static_cast<double>(ev.n));
            j.end_object();
        }
        if (qat.asked) {
            j.key("qat").begin_object();
            j.field("ran", qat.ran).field("kept", qat.kept).field("threshold_points", a.qat_threshold);
            j.field("epochs", static_cast<std::int64_t>(a.qat_epochs)).field("lr", a.qat_lr);
            j.key("validation").begin_object();
            j.field("images", qat.val_images).field("fp32", qat.val_fp32).field("ptq_int8", qat.val_ptq);
            j.key("qat_int8");
            if (qat.ran) j.value(qat.val_qat);
            else j.null();
            j.field("ptq_delta_points", points(qat.val_ptq - qat.val_fp32));
            j.key("qat_delta_points");
            if (qat.ran) j.value(points(qat.val_qat - qat.val_fp32));
            else j.null();
            j.end_object();
            j.key("epoch_loss").begin_array();
            for (double l : qat.epoch_loss) j.value(l);
            j.end_array();
            j.field("train_images", qat.train_images).field("seconds", qat.seconds).end_object();
        }
        j.end_object();
        std::cout << j.str() << '\n';
    } else {
        std::cout << "wrote " << a.out << ": int8, " << int8_layers << " of " << q.graph.layers.size()
                  << " layers in int8, calibrated on " << nc << " images (" << a.range << ")\n";
        if (!q.folded.empty()) {
            std::cout << "folded batch norm:";
            for (const auto& f : q.folded) std::cout << ' ' << f;
            std::cout << '\n';
        }
        for (const auto& [layer, why] : q.float_reasons)
            std::cout << "float layer " << layer << ": " << why << '\n';
        std::cout << "tensor bytes: fp32 " << fp32_bytes << ", int8 file " << int8_bytes << '\n';
        if (qat.asked) {
            char line[300];
            std::snprintf(line, sizeof line,
                          "validation (%lld held-out training images): fp32 %.2f%%, PTQ int8 %.2f%% (%+.2f points)",
                          static_cast<long long>(qat.val_images), points(qat.val_fp32), points(qat.val_ptq),
                          points(qat.val_ptq - qat.val_fp32));
            std::cout << line;
            if (qat.ran) {
                std::snprintf(line, sizeof line, ", QAT int8 %.2f%% (%+.2f points); wrote the %s model\n",
                              points(qat.val_qat), points(qat.val_qat - qat.val_fp32),
                              qat.kept == "qat" ? "QAT" : "PTQ (QAT did not beat it)");
                std::cout << line << "QAT: " << qat.epoch_loss.size() << " epochs on " << qat.train_images
                          << " training images, loss";
                for (double l : qat.epoch_loss) std::cout << ' ' << l;
                std::cout << ", " << qat.seconds << " s\n";
            } else {
                std::snprintf(line, sizeof line, "; within the %.2f-point threshold: no QAT\n", a.qat_threshold);
                std::cout << line;
            }
        }
        if (ev.n > 0) {
            std::cout << "test accuracy (" << ev.n << " images, reference executor): fp32 " << pct(ev.fp32, ev.n);
            if (ptq_before) std::cout << ", PTQ int8 " << pct(ev.ptq_int8, ev.n) << ", QAT int8 ";
            else std::cout << ", int8 ";
            std::cout << pct(ev.int8, ev.n);
            if (fq) std::cout << ", int8 fake-quant (libtorch) " << pct(fq->correct, fq->n);
            std::cout << '\n';
        }
    }
    return 0;
}

inline CLI::App* add_quantize_command(CLI::App& app, int& exit_code) {
    auto args = std::make_shared<QuantizeArgs>();
    auto* cmd = app.add_subcommand(
        "quantize",
        "Post-training int8 quantization: fold batch norm, calibrate activation ranges on a slice\n"
        "of the training set, write int8 weights with their scales and zero points (docs/int8.md),\n"
        "and report fp32 vs int8 test accuracy and which layers stay in float.");
    cmd->add_option("model", args->model, "Model file in the lamda DSL")->required();
    cmd->add_option("--weights", args->weights, "Trained fp32 weights (safetensors)")->required();
    cmd->add_option("--dataset", args->dataset, "fashion-mnist or a dataset directory (docs/training.md)")
        ->required();
    cmd->add_option("--out", args->out, "Write the int8 weights here (safetensors)")->required();
    cmd->add_option("--calibration", args->calibration, "Training images used for calibration (default 500)")
        ->check(CLI::Range(1, 1000000));
    cmd->add_option("--range", args->range, "Calibration range: minmax (default) or percentile");
    cmd->add_option("--percentile", args->percentile, "Percentile kept of each tail (default 99.99)")
        ->check(CLI::Range(50.0, 100.0));
    cmd->add_option("--eval", args->eval, "Test images evaluated in fp32 and int8 (default 10000; 0: none)")
        ->check(CLI::Range(0, 100000000));
    cmd->add_option("--seed", args->seed, "Seed of the calibration slice");
    cmd->add_flag("--json", args->json, "Print one JSON object");
    cmd->add_flag("--fake-quant", args->fake_quant,
                  "Also evaluate the int8 model in libtorch with fake quantization (needs libtorch)");
    cmd->add_option("--qat-epochs", args->qat_epochs,
                    "Quantization-aware fine-tuning for N epochs when PTQ loses more than --qat-threshold\n"
                    "points on a held-out slice of the training set (needs libtorch; default 0: none)");
    cmd->add_option("--qat-threshold", args->qat_threshold,
                    "Validation points PTQ may lose before QAT runs (default 1.0; negative: always)");
    cmd->add_option("--qat-lr", args->qat_lr, "QAT learning rate (Adam, cosine; default 1e-4)");
    cmd->add_option("--qat-subset", args->qat_subset, "Fine-tune on a seeded sample of N training images (default: all)");
    cmd->add_option("--qat-val", args->qat_val, "Validation images deciding QAT (default: the whole 10% split)");
    cmd->add_option("--threads", args->threads, "Threads for libtorch and XNNPACK (default 1)")
        ->check(CLI::Range(1, 1024));
    cmd->callback([args, &exit_code] {
        try {
            exit_code = run_quantize(*args);
        } catch (const std::exception& e) {
            std::cerr << "lamda quantize: error: " << e.what() << '\n';
            exit_code = 1;
        }
    });
    return cmd;
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_QUANTIZE_HPP
