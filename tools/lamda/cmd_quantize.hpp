// `lamda quantize`: post-training int8 quantization (lamda/exec/reference_int8.hpp) of trained
// fp32 weights, calibrated on a slice of the dataset's training set, written as a quantized
// safetensors file (docs/weights.md), and the fp32 vs int8 test accuracy (docs/int8.md).
//
//     lamda quantize MODEL --weights W --dataset D --out Q.safetensors [--calibration 500]
//                    [--range minmax|percentile] [--percentile 99.99] [--eval 10000] [--json]
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
#include <string>
#include <vector>

#include <lamda/core/diagnostics.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/data/weights.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/exec/reference_int8.hpp>

namespace lamda_cli {

struct QuantizeArgs {
    std::string model, weights, dataset, out;
    int calibration = 500;            // training images used for calibration
    std::string range = "minmax";     // or percentile
    double percentile = 99.99;
    int eval = 10000;                 // test images evaluated in fp32 and int8 (0: none)
    std::uint64_t seed = 1;
    bool json = false;
};

namespace quantize_cli {

struct Eval {
    std::int64_t fp32 = 0, int8 = 0, n = 0;
};

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
    const std::size_t nc = std::min<std::size_t>(static_cast<std::size_t>(a.calibration), data.train.size());
    const std::vector<std::size_t> order = lamda::seeded_permutation(data.train.size(), a.seed);
    std::vector<lamda::Tensor> calib;
    calib.reserve(nc);
    for (std::size_t i = 0; i < nc; ++i) {
        lamda::Tensor t(data.train.shape);
        data.train.copy_image(order[i], t.data.data());
        calib.push_back(std::move(t));
    }
    lamda::PtqOptions opt;
    opt.range = a.range == "percentile" ? lamda::CalibrationRange::Percentile : lamda::CalibrationRange::MinMax;
    opt.percentile = a.percentile;
    const auto t0 = std::chrono::steady_clock::now();
    std::cerr << "calibrating on " << nc << " training images (" << a.range << ")...\n";
    const lamda::PtqResult q = lamda::quantize_ptq(graph, file.tensors, calib, opt);
    const double calib_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
        lamda::Weights folded_w;
        lamda::Graph folded_g = q.graph;
        if (lamda::validate_weights(graph, file.tensors).empty()) {
            auto f = lamda::fold_batchnorm(graph, file.tensors);
            folded_w = std::move(f.second);
        } else {
            folded_w = file.tensors;
        }
        const auto classes = static_cast<std::size_t>(test.classes);
        lamda::Tensor img(test.shape);
        for (std::size_t i = 0; i < ne; ++i) {
            test.copy_image(i, img.data.data());
            const lamda::Tensor f = lamda::run_reference(folded_g, folded_w, img);
            const lamda::Int8Run r = lamda::run_reference_int8(q.graph, q.model, q.float_weights, img);
            const auto label = static_cast<std::size_t>(test.labels[i]);
            ev.fp32 += argmax_of(f.data, classes) == label;
            ev.int8 += argmax_of(r.output.data, classes) == label;
        }
        ev.n = static_cast<std::int64_t>(ne);
    }

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
            j.field("executor", "reference").end_object();
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
        if (ev.n > 0)
            std::cout << "test accuracy (" << ev.n << " images, reference executor): fp32 " << pct(ev.fp32, ev.n)
                      << ", int8 " << pct(ev.int8, ev.n) << '\n';
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
