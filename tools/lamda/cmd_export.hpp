// `lamda export` and `lamda run` (docs/export.md).
//
//     lamda export MODEL [--weights W.safetensors] [--pytorch OUT.py] [--cpp OUT.hpp]
//                  [--namespace NS]     (W may be an int8 file from `lamda quantize` for --cpp/--firmware)
//     lamda run MODEL [--weights W | --seed S] [--save-weights W2] [--input X --out Y]
//               [--executor reference|xnnpack] [--dataset D [--limit N]]
//     lamda import MODEL.onnx [-o OUT.lamda] [--weights OUT.safetensors]   (LAMDA_WITH_ONNX)
//
// In main.cpp, next to the train commands (their callbacks set the exit code):
//
//     lamda_cli::add_export_commands(app, train_exit);
#ifndef LAMDA_TOOLS_CMD_EXPORT_HPP
#define LAMDA_TOOLS_CMD_EXPORT_HPP

#include <CLI/CLI.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/file.hpp>
#include <lamda/data/dataset.hpp>
#include <lamda/core/diagnostics.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/deploy/export.hpp>
#include <lamda/deploy/firmware.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/exec/fold.hpp>
#if defined(LAMDA_WITH_ONNX)
#include <lamda/deploy/onnx_import.hpp>
#endif
#include <lamda/exec/reference.hpp>
#include <lamda/data/weights.hpp>

#include "cli_io.hpp"
#if defined(LAMDA_WITH_XNNPACK)
#include <lamda/exec/xnnpack.hpp>
#endif

namespace lamda_cli {

namespace export_cli {

inline int report_exception(int& exit_code, const std::exception& e) {
    std::cerr << "lamda: error: " << e.what() << '\n';
    return exit_code = 1;
}

// The graph `weights` fit: the model, or the model with batch norm folded (as `lamda train`
// saves weights). Throws ExportError listing the problems otherwise.
inline lamda::Graph graph_fitting(const lamda::Graph& graph, const lamda::Weights& weights,
                                  const std::string& path) {
    const std::vector<std::string> problems = lamda::validate_weights(graph, weights);
    if (problems.empty()) return graph;
    lamda::Graph folded = lamda::fold_batchnorm_graph(graph);
    if (lamda::validate_weights(folded, weights).empty()) return folded;
    std::string msg = path + ": the weights do not fit the model:";
    for (const std::string& p : problems) msg += "\n  " + p;
    throw lamda::ExportError(msg);
}

inline void write_text(const std::string& path, const std::string& text) {
    if (path == "-") {  // standard output (docs/cli.md); status lines go to stderr
        std::cout << text;
        if (!std::cout.flush()) throw lamda::ExportError("cannot write to standard output");
        return;
    }
    std::ofstream f(path, std::ios::binary);
    if (!f) throw lamda::ExportError("cannot write '" + path + "'");
    f << text;
    if (!f.flush()) throw lamda::ExportError("cannot write '" + path + "'");
}

}  // namespace export_cli

struct ExportArgs {
    std::string model, weights, pytorch, cpp, ns;
    std::string firmware;                        // --firmware DIR (docs/firmware.md)
    std::int64_t max_flash = 0, max_ram = 0;     // 0: no limit
    bool json = false;
};

namespace export_cli {

// --firmware DIR: checks --max-flash/--max-ram, writes model.h and model.c, prints the numbers
// (text or --json) to stdout. 1 when over a limit (nothing written).
inline int emit_firmware(const ExportArgs& a, const lamda::FirmwareSource& fw, const char* precision) {
    const std::int64_t ram = fw.arena_bytes + fw.output_bytes;  // the input lives in the arena
    bool refused = false;
    if (a.max_flash > 0 && fw.flash_bytes > a.max_flash) {
        std::cerr << "lamda: error: export --firmware: needs " << fw.flash_bytes << " bytes of flash ("
                  << fw.weight_bytes << " weights + " << fw.code_bytes_estimate
                  << " code, estimated), over --max-flash " << a.max_flash << '\n';
        refused = true;
    }
    if (a.max_ram > 0 && ram > a.max_ram) {
        std::cerr << "lamda: error: export --firmware: needs " << ram << " bytes of RAM (arena "
                  << fw.arena_bytes << ", the input inside, + output " << fw.output_bytes
                  << "), over --max-ram " << a.max_ram << '\n';
        refused = true;
    }
    if (refused) return 1;
    std::error_code ec;
    std::filesystem::create_directories(a.firmware, ec);
    if (ec) throw lamda::ExportError("cannot create directory '" + a.firmware + "': " + ec.message());
    write_text((std::filesystem::path(a.firmware) / "model.h").string(), fw.header);
    write_text((std::filesystem::path(a.firmware) / "model.c").string(), fw.source);
    if (a.json) {
        std::string dir;
        lamda::append_json_string(dir, a.firmware);
        std::cout << "{\"dir\": " << dir << ", \"precision\": \"" << precision << '"'
                  << ", \"flash_bytes\": " << fw.flash_bytes << ", \"weight_bytes\": " << fw.weight_bytes
                  << ", \"code_bytes_estimate\": " << fw.code_bytes_estimate
                  << ", \"arena_bytes\": " << fw.arena_bytes << ", \"input_offset\": " << fw.input_offset
                  << ", \"input_bytes\": " << fw.input_bytes
                  << ", \"output_bytes\": " << fw.output_bytes << ", \"ram_bytes\": " << ram
                  << ", \"tflm_arena_bytes\": " << fw.tflm_arena_bytes
                  << ", \"tflm_arena_io_bytes\": " << fw.tflm_arena_io_bytes << ", \"macs\": " << fw.macs
                  << ", \"params\": " << fw.params << ", \"flushed_weights\": " << fw.flushed_weights
                  << ", \"in_place_ops\": " << fw.in_place << "}\n";
    } else {
        std::cerr << "wrote " << a.firmware << "/model.h and model.c (" << precision << ")\n";
        std::cout << "flash: " << fw.flash_bytes << " bytes (" << fw.weight_bytes << " weights + "
                  << fw.code_bytes_estimate << " code, estimated)\n"
                  << "arena: " << fw.arena_bytes << " bytes (the input's " << fw.input_bytes
                  << " inside at offset " << fw.input_offset << "; + output " << fw.output_bytes
                  << " owned by the caller; TFLite Micro's greedy plan: " << fw.tflm_arena_bytes << ", "
                  << fw.tflm_arena_io_bytes << " with the output inside)\n"
                  << "RAM: " << ram << " bytes (arena + output)\n"
                  << "MACs: " << fw.macs << ", params: " << fw.params << ", subnormal weights flushed: "
                  << fw.flushed_weights << '\n';
    }
    return 0;
}

inline int write_firmware(const ExportArgs& a, const lamda::Graph& graph, const lamda::Weights& weights) {
    return emit_firmware(a, lamda::firmware_source(graph, weights), "float32");
}

// An int8 weights file (lamda quantize, "lamda.precision": "int8"), read for the batch-norm-folded
// graph: read_quantized checks every tensor and scale, naming the file and the tensor.
struct Int8Export {
    lamda::Graph graph;             // the model with its batch norms folded
    lamda::QuantizedModel model;
    lamda::Weights float_weights;   // the F32 tensors of the layers that run in float
};

inline Int8Export read_int8_export(const lamda::Graph& parsed, const lamda::SafetensorsData& file,
                                   const std::string& path) {
    Int8Export q;
    q.graph = lamda::fold_batchnorm_graph(parsed);
    q.model = lamda::read_quantized(q.graph, file, path, q.float_weights);
    return q;
}

// The int8 firmware of an int8 weights file.
inline int write_firmware_int8(const ExportArgs& a, const Int8Export& q) {
    return emit_firmware(a, lamda::firmware_source_int8(q.graph, q.model, q.float_weights), "int8");
}

}  // namespace export_cli

inline int run_export(const ExportArgs& a) {
    if (a.pytorch.empty() && a.cpp.empty() && a.firmware.empty()) {
        std::cerr << "lamda: error: export: give --pytorch OUT.py, --cpp OUT.hpp and/or --firmware DIR\n";
        return 2;
    }
    if (a.json && (is_stdio(a.pytorch) || is_stdio(a.cpp))) {
        std::cerr << "lamda export: error: --json and an output '-' would share standard output\n";
        return 2;
    }
    if (a.json && !a.firmware.empty() && (!a.pytorch.empty() || !a.cpp.empty())) {
        std::cerr << "lamda export: error: --json with --firmware prints the firmware's numbers; "
                     "export --pytorch/--cpp in a second command\n";
        return 2;
    }
    const lamda::ParseResult parsed = parse_model(a.model);  // a file or '-'
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    lamda::Graph graph = parsed.graph;
    lamda::Weights weights;
    std::optional<export_cli::Int8Export> int8;  // an int8 weights file (lamda quantize)
    if (!a.weights.empty()) {
        lamda::SafetensorsData file = lamda::read_safetensors_file(a.weights);
        if (lamda::is_quantized(file)) {
            if (!a.pytorch.empty())
                throw lamda::ExportError(a.weights + ": is an int8 weights file (lamda quantize), but --pytorch "
                                         "writes a float module that loads fp32 weights; export the float "
                                         "weights, or --cpp/--firmware for int8");
            int8 = export_cli::read_int8_export(parsed.graph, file, a.weights);
            graph = int8->graph;
        } else {
            weights = std::move(file.tensors);
            graph = export_cli::graph_fitting(parsed.graph, weights, a.weights);
        }
        if (graph.layers.size() != parsed.graph.layers.size())
            std::cerr << "lamda: note: " << a.weights
                      << (int8 ? " is int8, made for the batch-norm-folded model; exporting the folded model\n"
                               : " holds batch-norm-folded weights; exporting the folded model\n");
    } else if (!a.cpp.empty() || !a.firmware.empty()) {
        std::cerr << "lamda: error: export --cpp/--firmware needs --weights W.safetensors\n";
        return 2;
    }
    if (!a.firmware.empty()) {
        const int rc = int8 ? export_cli::write_firmware_int8(a, *int8) : export_cli::write_firmware(a, graph, weights);
        if (rc != 0) return rc;
    }
    const char* precision = int8 ? "int8" : "float32";
    lamda::JsonWriter json;  // --json without --firmware (docs/cli.md, schema "export")
    json.begin_object()
        .field("model", display_name(a.model))
        .field("name", graph.name)
        .field("folded", graph.layers.size() != parsed.graph.layers.size())
        .field("precision", precision)
        .key("written")
        .begin_array();
    if (!a.pytorch.empty()) {
        export_cli::write_text(a.pytorch, lamda::pytorch_module_source(graph));
        std::cerr << "wrote " << (a.pytorch == "-" ? std::string("the module to standard output") : a.pytorch) << '\n';
        json.begin_object().field("kind", "pytorch").field("path", a.pytorch).end_object();
    }
    if (!a.cpp.empty()) {
        const std::string ns = a.ns.empty() ? lamda::cpp_namespace_for(graph.name, int8.has_value()) : a.ns;
        std::int64_t weight_bytes = 0;  // the arrays' bytes in the header
        if (int8) {
            export_cli::write_text(a.cpp, lamda::cpp_header_source_int8(graph, int8->model, int8->float_weights, ns));
            weight_bytes = lamda::int8_header_sizes(graph, int8->model, int8->float_weights).weight_bytes;
        } else {
            export_cli::write_text(a.cpp, lamda::cpp_header_source(graph, weights, ns));
            for (const lamda::ExpectedTensor& e : lamda::expected_weights(graph))
                weight_bytes += 4 * weights.at(e.name).elements();
        }
        std::cerr << "wrote " << (a.cpp == "-" ? std::string("the header to standard output") : a.cpp)
                  << " (namespace " << ns << ", " << precision << ", " << weight_bytes << " bytes of weights)\n";
        json.begin_object()
            .field("kind", "cpp")
            .field("path", a.cpp)
            .field("namespace", ns)
            .field("weight_bytes", weight_bytes)
            .end_object();
    }
    json.end_array().end_object();
    if (a.json && a.firmware.empty()) std::cout << json.str() << '\n';
    return 0;
}

struct RunArgs {
    std::string model, weights, save_weights, input, out, executor = "reference", dataset;
    std::uint64_t seed = 1;
    std::size_t limit = 10;
    bool json = false;
};

inline int run_run(const RunArgs& a) {
    const lamda::ParseResult parsed = parse_model(a.model);  // a file or '-'
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    lamda::Graph graph = parsed.graph;
    lamda::Weights weights;
    if (!a.weights.empty()) {
        lamda::SafetensorsData file = lamda::read_safetensors_file(a.weights);
        if (lamda::is_quantized(file))  // one line, not a list of every I8 tensor
            throw lamda::ExportError(a.weights + ": is an int8 weights file (lamda quantize), but run takes fp32 "
                                     "weights; `lamda eval` and `lamda bench` run int8 files");
        weights = std::move(file.tensors);
        graph = export_cli::graph_fitting(parsed.graph, weights, a.weights);
    } else {
        weights = lamda::random_weights(graph, a.seed);
    }
    if (!a.save_weights.empty()) lamda::write_safetensors(a.save_weights, weights);
    if (a.executor != "reference" && a.executor != "xnnpack") {
        std::cerr << "lamda: error: run: --executor is reference or xnnpack\n";
        return 2;
    }
#if !defined(LAMDA_WITH_XNNPACK)
    if (a.executor == "xnnpack" || !a.dataset.empty()) {
        std::cerr << "lamda: error: this lamda was built without XNNPACK\n";
        return 1;
    }
#endif
    lamda::JsonWriter json;  // --json (docs/cli.md, schema "run")
    json.begin_object()
        .field("model", display_name(a.model))
        .field("name", graph.name)
        .field("weights", a.weights.empty() ? std::string("random") : a.weights)
        .field("executor", a.executor);
    if (!a.input.empty()) {
        const lamda::Weights in = lamda::read_safetensors(a.input);
        const auto it = in.find("input");
        const lamda::Shape s = graph.input().shape;
        if (it == in.end() || it->second.shape != std::vector<std::int64_t>{1, s.h, s.w, s.c})
            throw lamda::ExportError(a.input + ": needs a tensor 'input' of shape [1," +
                                     std::to_string(s.h) + "," + std::to_string(s.w) + "," +
                                     std::to_string(s.c) + "] (NHWC)");
        lamda::Tensor x(s);
        x.data = it->second.data;
        lamda::Tensor y;
        if (a.executor == "reference") {
            y = lamda::run_reference(graph, weights, x);
        } else {
#if defined(LAMDA_WITH_XNNPACK)
            lamda::XnnExecutor exec(graph, weights);
            std::copy(x.data.begin(), x.data.end(), exec.input());
            exec.run();
            y = lamda::Tensor(exec.output_shape());
            std::copy(exec.output(), exec.output() + y.data.size(), y.data.begin());
#endif
        }
        lamda::Weights out;
        out["output"] = lamda::WeightTensor{{1, y.shape.h, y.shape.w, y.shape.c}, y.data};
        if (a.out.empty()) throw lamda::ExportError("run: --input needs --out Y.safetensors");
        lamda::write_safetensors(a.out, out);
        json.key("output").begin_object().field("file", a.out).key("shape").begin_array();
        for (std::int64_t d : {std::int64_t{1}, y.shape.h, y.shape.w, y.shape.c}) json.value(d);
        json.end_array().end_object();
    }
#if defined(LAMDA_WITH_XNNPACK)
    if (!a.dataset.empty()) {
        // The same path as `lamda eval`: XNNPACK, one thread, argmax of the output.
        const lamda::DatasetSplits data = lamda::load_dataset(a.dataset);
        lamda::check_classifier(graph, data.test);
        lamda::XnnExecutor exec(graph, weights, lamda::XnnOptions{1});
        const std::size_t n = std::min(a.limit, data.test.size());
        std::int64_t correct = 0;
        json.key("predictions").begin_array();
        for (std::size_t i = 0; i < n; ++i) {
            data.test.copy_image(i, exec.input());
            exec.run();
            const std::int64_t p = lamda::argmax(exec.output(), exec.output_shape().c);
            correct += p == data.test.labels[i];
            if (!a.json)
                std::cout << "image " << i << ": predicted " << p << ", label " << data.test.labels[i] << '\n';
            json.begin_object()
                .field("image", static_cast<std::int64_t>(i))
                .field("predicted", p)
                .field("label", static_cast<std::int64_t>(data.test.labels[i]))
                .end_object();
        }
        json.end_array().field("correct", correct).field("count", static_cast<std::int64_t>(n));
        if (!a.json) std::cout << "correct: " << correct << " of " << n << '\n';
    }
#endif
    json.end_object();
    if (a.json) std::cout << json.str() << '\n';
    return 0;
}

struct ImportArgs {
    std::string onnx, out, weights;
    bool json = false;
};

inline int run_import(const ImportArgs& a) {
#if defined(LAMDA_WITH_ONNX)
    if (a.json && is_stdio(a.out)) {
        std::cerr << "lamda import: error: --json and -o - would share standard output; "
                     "without -o the model is in the JSON's \"dsl\"\n";
        return 2;
    }
    lamda::OnnxImport m;
    if (is_stdio(a.onnx)) {  // '-': the ONNX bytes from standard input, up to protobuf's 2 GiB
        std::string bytes, error;
        if (!read_input(a.onnx, (std::size_t{1} << 31) - 1, bytes, error))
            throw lamda::OnnxImportError("<stdin>: " + error);
        onnx::ModelProto model;
        if (!model.ParseFromString(bytes))
            throw lamda::OnnxImportError("<stdin>: not an ONNX model (protobuf parse failed)");
        try {
            m = lamda::import_onnx(model);
        } catch (const lamda::OnnxImportError& e) {
            throw lamda::OnnxImportError(std::string("<stdin>: ") + e.what());
        }
    } else {
        m = lamda::import_onnx_file(a.onnx);
    }
    if (a.out.empty()) {
        if (!a.json) std::cout << m.dsl;
    } else {
        export_cli::write_text(a.out, m.dsl);
    }
    if (!a.weights.empty()) lamda::write_safetensors(a.weights, m.weights, {{"source", a.onnx}});
    if (a.json) {  // docs/cli.md, schema "import"
        const lamda::ModelStats stats = lamda::analyze(m.graph);
        std::int64_t weight_values = 0;
        for (const auto& [name, t] : m.weights) weight_values += static_cast<std::int64_t>(t.data.size());
        lamda::JsonWriter json;
        json.begin_object()
            .field("source", display_name(a.onnx))
            .field("name", m.graph.name)
            .field("layers", static_cast<std::int64_t>(m.graph.layers.size()))
            .field("params", stats.params)
            .field("macs", stats.macs)
            .field("weight_tensors", static_cast<std::int64_t>(m.weights.size()))
            .field("weight_values", weight_values);
        if (!a.out.empty()) json.field("out", a.out);
        if (!a.weights.empty()) json.field("weights", a.weights);
        if (a.out.empty()) json.field("dsl", m.dsl);
        json.end_object();
        std::cout << json.str() << '\n';
    }
    return 0;
#else
    (void)a;
    std::cerr << "lamda: error: this lamda was built without ONNX import; install libonnx-dev "
                 "and rebuild\n";
    return 1;
#endif
}

inline void add_export_commands(CLI::App& app, int& exit_code) {
    auto ia = std::make_shared<ImportArgs>();
    auto* imp = app.add_subcommand(
        "import", "Convert an ONNX model into the DSL (printed, or -o) and its initializers into\n"
                  "safetensors (--weights). See docs/export.md for the supported ops.");
    imp->add_option("model", ia->onnx, "ONNX model file, or - for standard input")->required();
    imp->add_option("-o,--out", ia->out, "Write the model here instead of printing it ('-': standard output)");
    imp->add_option("--weights", ia->weights, "Write the weights here (safetensors)");
    imp->add_flag("--json", ia->json, "Print one JSON object: the numbers, and the model when there is no -o");
    imp->callback([ia, &exit_code] {
        try {
            exit_code = run_import(*ia);
        } catch (const std::exception& e) {
            export_cli::report_exception(exit_code, e);
        }
    });

    auto ex = std::make_shared<ExportArgs>();
    auto* exp = app.add_subcommand(
        "export", "Write a model as a PyTorch nn.Module (--pytorch OUT.py) or as a C++ header with\n"
                  "dsl/layers.hpp templates, embedded weights and an XNNPACK run() (--cpp OUT.hpp).\n"
                  "See docs/export.md.");
    exp->add_option("model", ex->model, "Model file in the lamda DSL, or - for standard input")->required();
    exp->add_option("--weights", ex->weights,
                    "Weights (safetensors); required by --cpp, checked against the model; an int8\n"
                    "file (lamda quantize) gives an int8 header or firmware");
    exp->add_option("--pytorch", ex->pytorch, "Write a PyTorch module here");
    exp->add_option("--cpp", ex->cpp, "Write a C++ header here");
    exp->add_option("--namespace", ex->ns, "The C++ header's namespace (default: the model name)");
    exp->add_option("--firmware", ex->firmware,
                    "Write model.h and model.c here: dependency-free C99 for microcontrollers\n"
                    "(docs/firmware.md)");
    exp->add_option("--max-flash", ex->max_flash, "--firmware: refuse above this many flash bytes")
        ->check(CLI::NonNegativeNumber);
    exp->add_option("--max-ram", ex->max_ram,
                    "--firmware: refuse when arena + input + output exceed this many bytes")
        ->check(CLI::NonNegativeNumber);
    exp->add_flag("--json", ex->json, "Print one JSON object: what was written, or --firmware's numbers");
    exp->callback([ex, &exit_code] {
        try {
            exit_code = run_export(*ex);
        } catch (const std::exception& e) {
            export_cli::report_exception(exit_code, e);
        }
    });

    auto ra = std::make_shared<RunArgs>();
    auto* run = app.add_subcommand(
        "run", "Run a model once: on an input tensor (--input X.safetensors holding 'input' of\n"
               "shape [1,H,W,C], NHWC; the output goes to --out as 'output'), or on the first\n"
               "--limit test images of --dataset, printing each prediction (XNNPACK, as `lamda\n"
               "eval`). Without --weights the weights are random (--seed); --save-weights writes\n"
               "the weights used.");
    run->add_option("model", ra->model, "Model file in the lamda DSL, or - for standard input")->required();
    run->add_option("--weights", ra->weights, "Weights (safetensors)");
    run->add_option("--seed", ra->seed, "Seed of the random weights when --weights is left out");
    run->add_option("--save-weights", ra->save_weights, "Write the weights used (safetensors)");
    run->add_option("--input", ra->input, "Input tensor file (safetensors, tensor 'input')");
    run->add_option("--out", ra->out, "Output tensor file (safetensors, tensor 'output')");
    run->add_option("--executor", ra->executor, "reference (default) or xnnpack, for --input");
    run->add_option("--dataset", ra->dataset, "fashion-mnist or a directory (docs/training.md)");
    run->add_option("--limit", ra->limit, "Images of --dataset to classify (default 10)");
    run->add_flag("--json", ra->json, "Print one JSON object (the predictions, the output's shape)");
    run->callback([ra, &exit_code] {
        try {
            exit_code = run_run(*ra);
        } catch (const std::exception& e) {
            export_cli::report_exception(exit_code, e);
        }
    });
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_EXPORT_HPP
