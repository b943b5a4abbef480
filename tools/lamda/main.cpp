// The `lamda` command line: thin wrappers that parse arguments, call the library and print.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <lamda/lamda.hpp>

#include "cli_app.hpp"
#include "cli_io.hpp"
#include "cmd_export.hpp"
#include "cmd_generate.hpp"
#include "cmd_latency.hpp"
#include "cmd_llm.hpp"
#include "cmd_quantize.hpp"
#include "cmd_sample.hpp"
#include "cmd_train.hpp"

namespace {

// Exit codes shared by every subcommand: lamda::ExitCode (core/error.hpp).
constexpr int exit_ok = lamda::exit_code(lamda::ExitCode::ok);
constexpr int exit_invalid = lamda::exit_code(lamda::ExitCode::failed);  // the input or the search failed

// Prints an error once: a message that already names its place ("file:line: error: ...") as it
// is, any other behind "lamda: error: ".
void print_error(const char* what) {
    const std::string text(what);
    if (text.find("error: ") != std::string::npos && text.rfind("lamda: ", 0) != 0)
        std::cerr << text << '\n';
    else
        std::cerr << "lamda: error: " << text << '\n';
}

void print_diagnostics(const std::vector<lamda::Diagnostic>& diagnostics) {
    std::cerr << lamda::format_diagnostics(diagnostics);
}

void write_shape(lamda::JsonWriter& json, const lamda::Shape& s) {
    json.begin_array().value(s.h).value(s.w).value(s.c).end_array();
}

void write_diagnostics_json(lamda::JsonWriter& json,
                            const std::vector<lamda::Diagnostic>& diagnostics) {
    json.key("diagnostics").begin_array();
    for (const auto& d : diagnostics) {
        json.begin_object()
            .field("file", d.file)
            .field("line", d.line)
            .field("column", d.column)
            .field("message", d.message)
            .field("hint", d.hint)
            .end_object();
    }
    json.end_array();
}

// "1234567" -> "1,234,567", so that tables are readable at a glance.
std::string grouped(std::int64_t v) {
    std::string digits = std::to_string(v < 0 ? -v : v), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return v < 0 ? "-" + out : out;
}

std::string pad_right(const std::string& s, std::size_t width) {
    return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}
std::string pad_left(const std::string& s, std::size_t width) {
    return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

int run_check(const std::string& path, bool as_json) {
    const lamda::ParseResult parsed = lamda_cli::parse_model(path);
    if (!parsed.ok()) {
        print_diagnostics(parsed.diagnostics);
        if (as_json) {
            lamda::JsonWriter json;
            json.begin_object().field("valid", false).field("file", path);
            write_diagnostics_json(json, parsed.diagnostics);
            json.end_object();
            std::cout << json.str() << '\n';
        }
        return exit_invalid;
    }
    const lamda::Graph& graph = parsed.graph;
    const lamda::ModelStats stats = lamda::analyze(graph);

    if (as_json) {
        lamda::JsonWriter json;
        json.begin_object()
            .field("valid", true)
            .field("file", path)
            .field("name", graph.name)
            .key("input_shape");
        write_shape(json, graph.input().shape);
        json.key("output_shape");
        write_shape(json, stats.output_shape);
        json.field("params", stats.params)
            .field("macs", stats.macs)
            .field("weight_bytes", stats.weight_bytes)
            .field("activation_bytes", stats.peak_activation_bytes)
            .field("layer_count", static_cast<std::int64_t>(graph.layers.size()));
        json.key("layers").begin_array();
        for (std::size_t i = 0; i < graph.layers.size(); ++i) {
            const lamda::Layer& layer = graph.layers[i];
            const lamda::LayerStats& ls = stats.layers[i];
            json.begin_object()
                .field("name", layer.name)
                .field("op", lamda::op_name(layer.op))
                .field("line", layer.loc.line);
            json.key("inputs").begin_array();
            for (int input : layer.inputs)
                json.value(graph.layers[static_cast<std::size_t>(input)].name);
            json.end_array().key("shape");
            write_shape(json, layer.shape);
            json.field("params", ls.params)
                .field("macs", ls.macs)
                .field("output_bytes", ls.output_bytes)
                .field("live_bytes", ls.live_bytes)
                .end_object();
        }
        json.end_array().end_object();
        std::cout << json.str() << '\n';
        return exit_ok;
    }

    std::size_t name_width = 5;
    for (const auto& layer : graph.layers) name_width = std::max(name_width, layer.name.size());
    name_width += 2;
    std::cout << pad_right("layer", name_width) << pad_right("op", 13) << pad_right("output", 16)
              << pad_left("params", 13) << pad_left("MACs", 17) << pad_left("act bytes", 14)
              << pad_left("live bytes", 14) << '\n';
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const lamda::Layer& layer = graph.layers[i];
        const lamda::LayerStats& ls = stats.layers[i];
        std::cout << pad_right(layer.name, name_width)
                  << pad_right(std::string(lamda::op_name(layer.op)), 13)
                  << pad_right(lamda::to_string(layer.shape), 16) << pad_left(grouped(ls.params), 13)
                  << pad_left(grouped(ls.macs), 17) << pad_left(grouped(ls.output_bytes), 14)
                  << pad_left(grouped(ls.live_bytes), 14) << '\n';
    }
    std::cout << '\n'
              << "model:            " << (graph.name.empty() ? path : graph.name) << '\n'
              << "layers:           " << graph.layers.size() << '\n'
              << "input:            " << lamda::to_string(graph.input().shape) << '\n'
              << "output:           " << lamda::to_string(stats.output_shape) << '\n'
              << "parameters:       " << grouped(stats.params) << '\n'
              << "MACs:             " << grouped(stats.macs) << '\n'
              << "weight bytes:     " << grouped(stats.weight_bytes) << '\n'
              << "peak activations: " << grouped(stats.peak_activation_bytes) << " bytes\n";
    return exit_ok;
}

struct FmtArgs {
    std::vector<std::string> models;
    bool in_place = false, check_only = false, json = false;
};

// `lamda fmt`: the formatter that keeps comments (lamda/dsl/format.hpp). Exits 1 when a model is
// invalid or, with --check, not formatted; 2 for -i on standard input.
int run_fmt(const FmtArgs& args) {
    for (const std::string& path : args.models)
        if (args.in_place && lamda_cli::is_stdio(path)) {
            std::cerr << "lamda fmt: error: -i rewrites files; standard input ('-') has none\n";
            return lamda_cli::exit_usage;
        }
    int rc = exit_ok;
    lamda::JsonWriter json;
    json.begin_object().key("files").begin_array();
    for (const std::string& path : args.models) {
        const std::string name = lamda_cli::display_name(path);
        std::string text, error;
        lamda::FormatResult f;
        if (!lamda_cli::read_input(path, lamda::Limits{}.max_file_bytes, text, error)) {
            f.diagnostics.push_back(lamda::Diagnostic{name, 0, 0, error, {}});
        } else {
            const std::string foreign = lamda_cli::foreign_format(path, std::string_view(text).substr(0, 16));
            if (!foreign.empty()) f.diagnostics.push_back(lamda::Diagnostic{name, 0, 0, foreign, {}});
            else f = lamda::format_dsl(text, name);
        }
        const bool formatted = f.ok() && f.text == text;
        bool written = false;
        if (!f.ok()) {
            print_diagnostics(f.diagnostics);
            rc = exit_invalid;
        } else if (args.check_only) {
            if (!formatted) {
                std::cerr << name << ": not formatted (run `lamda fmt -i " << path << "`)\n";
                rc = exit_invalid;
            }
        } else if (args.in_place) {
            if (!formatted) {
                if (!lamda_cli::write_output(path, f.text, error)) {
                    std::cerr << path << ": error: " << error << '\n';
                    rc = exit_invalid;
                } else {
                    written = true;
                }
            }
        } else if (!args.json) {
            std::cout << f.text;
        }
        if (args.json) {
            json.begin_object()
                .field("file", name)
                .field("valid", f.ok())
                .field("formatted", formatted)
                .field("written", written);
            if (f.ok() && !args.check_only && !args.in_place) json.field("text", f.text);
            write_diagnostics_json(json, f.diagnostics);
            json.end_object();
        }
    }
    json.end_array().field("ok", rc == exit_ok).end_object();
    if (args.json) std::cout << json.str() << '\n';
    return rc;
}

int run_device(bool as_json, double seconds) {
    lamda::DeviceInfo info = lamda::describe_device();
    lamda::measure_fma_peak_gflops(info, seconds);
    if (as_json) {
        std::cout << lamda::device_json(info) << '\n';
        return exit_ok;
    }
    std::string isa;
    for (const auto& feature : info.isa) isa += (isa.empty() ? "" : " ") + feature;
    char peak[64];
    std::snprintf(peak, sizeof peak, "%.1f GFLOP/s (1 thread, %s FMA)", info.peak_gflops,
                  info.fma_kernel.c_str());
    std::cout << "cpu:          " << info.cpu_model << " (" << info.architecture << ")\n"
              << "isa:          " << isa << '\n'
              << "xnnpack isa:  " << info.xnnpack_isa << '\n'
              << "cores:        " << info.logical_cores << '\n'
              << "peak:         " << peak << '\n';
    return exit_ok;
}

struct BenchArgs {
    std::string model;
    std::string weights;
    int threads = 1;
    int runs = 50;
    int warmup = 5;
    double duration_s = 0;   // > 0: time runs for this long instead of --runs
    double peak_gflops = 0;  // 0: no "% of peak" (a 0.3 s peak measured under load misleads)
    bool json = false;
    std::string device;      // --device URL: measure on that lamda-agent
    std::string precision = "fp32";  // --precision fp32 | int8
};

#if defined(LAMDA_WITH_XNNPACK)
void lamda_cli_print_bench(const lamda::BenchResult& r, double peak);
#endif

int run_bench(const BenchArgs& args) {
#if defined(LAMDA_WITH_XNNPACK)
    const lamda::ParseResult parsed = lamda_cli::parse_model(args.model);
    if (!parsed.ok()) {
        print_diagnostics(parsed.diagnostics);
        return exit_invalid;
    }
    // Weights from `lamda train` (or `generate`) have batch norm folded in: the graph they fit is
    // the folded one. An int8 file (lamda quantize) is timed with its scales.
    lamda::ModelWeights model;
    if (args.weights.empty()) {
        model.graph = parsed.graph;
        model.weights = lamda::random_weights(model.graph, 1);
    } else {
        try {
            model = lamda::read_model_weights(parsed.graph, args.weights);
        } catch (const lamda::ExecutorError& e) {
            std::cerr << args.weights << ": error: " << e.what() << '\n';
            return exit_invalid;
        }
    }
    const lamda::Graph& graph = model.graph;
    const lamda::Weights& weights = model.weights;
    const bool int8_file = model.int8;
    lamda::BenchOptions options;
    options.threads = args.threads;
    options.runs = args.runs;
    options.warmup = args.warmup;
    options.int8 = args.precision == "int8" || int8_file;
    if (int8_file) options.quantized = &model.quantized;
    options.duration_s = args.duration_s;
    auto precision_text = [&](bool int8) {
        return !int8      ? std::string("fp32")
               : int8_file ? "int8 (weights and scales from " + args.weights + ")"
                           : std::string("int8 (scales from one run on the timing input: for timing, not accuracy)");
    };
#if defined(LAMDA_WITH_AGENT)
    if (!args.device.empty()) {  // the same measurement and JSON, on the board
        std::string bytes;
        if (!args.weights.empty()) {
            std::ifstream in(args.weights, std::ios::binary);
            bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        // The parsed model, not the file again: `-` (standard input) was read once already.
        const std::string dsl = lamda::print_dsl(parsed.graph);
        lamda::AgentClient client(args.device);
        lamda::AgentBenchResult remote = client.bench(dsl, options, args.model, bytes);
        if (args.json) {
            std::cout << remote.json << '\n';
            return exit_ok;
        }
        lamda_cli_print_bench(remote.result, args.peak_gflops > 0 ? args.peak_gflops : remote.peak_gflops);
        std::cout << "precision: " << precision_text(remote.result.int8) << '\n';
        std::cout << "device:   " << args.device << '\n';
        return exit_ok;
    }
#endif
    const lamda::BenchResult r = lamda::benchmark_model(graph, weights, options);
    // "% of peak" only against a peak the user measured on an idle machine (`lamda device`):
    // the 0.3 s one bench used to take swung by 25% on a loaded machine.
    const double peak = args.peak_gflops;
    if (args.json) {
        lamda::JsonWriter json;
        json.begin_object().field("model", graph.name.empty() ? lamda_cli::display_name(args.model) : graph.name);
        lamda::write_bench_context(json, r.threads);
        lamda::write_bench_json(json, r, peak);
        json.end_object();
        std::cout << json.str() << '\n';
        return exit_ok;
    }
    lamda_cli_print_bench(r, peak);
    std::cout << "precision: " << precision_text(r.int8) << '\n';
    return exit_ok;
#else
    (void)args;
    std::cerr << "lamda: error: this lamda was built without XNNPACK, so it cannot run models; "
                 "install libxnnpack-dev and libpthreadpool-dev and rebuild\n";
    return exit_invalid;
#endif
}

#if defined(LAMDA_WITH_XNNPACK)
// "12.34 us" below a millisecond, "1.234 ms" above: tiny models keep their digits.
std::string bench_time(double ms) {
    char text[32];
    if (ms < 1.0) std::snprintf(text, sizeof text, "%.2f us", ms * 1000.0);
    else std::snprintf(text, sizeof text, "%.3f ms", ms);
    return text;
}

// The table `lamda bench` prints. `peak` <= 0: no "% of peak" line.
void lamda_cli_print_bench(const lamda::BenchResult& r, double peak) {
    double total = 0;
    std::size_t name_width = 5;
    for (const auto& t : r.per_op) {
        total += t.median_ms;
        name_width = std::max(name_width, t.name.size());
    }
    name_width += 2;
    char line[512];
    std::cout << pad_right("layer", name_width) << pad_right("op", 13) << pad_right("lowering", 10)
              << pad_left("median us", 12) << pad_left("share", 8) << pad_left("GFLOP/s", 10) << '\n';
    for (const auto& t : r.per_op) {
        if (t.lowering == lamda::XnnLowering::Alias) continue;
        const double gflops = t.median_ms > 0 ? 2.0 * static_cast<double>(t.macs) / (t.median_ms * 1e6) : 0.0;
        std::snprintf(line, sizeof line, "%12.2f%7.1f%%%10.1f", t.median_ms * 1000.0,
                      total > 0 ? 100.0 * t.median_ms / total : 0.0, gflops);
        std::cout << pad_right(t.name, name_width)
                  << pad_right(std::string(lamda::op_name(t.op)), 13)
                  << pad_right(lamda::lowering_name(t.lowering), 10) << line << '\n';
    }
    std::cout << "\ninit:     " << bench_time(r.init_ms) << " (building the executor), first inference "
              << bench_time(r.first_ms) << '\n'
              << "latency:  median " << bench_time(r.median_ms) << ", mean " << bench_time(r.mean_ms)
              << ", std " << bench_time(r.std_ms) << ", min " << bench_time(r.min_ms) << ", p95 "
              << bench_time(r.p95_ms) << ", p99 " << bench_time(r.p99_ms) << '\n';
    std::snprintf(line, sizeof line, " after %d warm-up (%d thread%s; per-op table from %d runs)\n", r.warmup,
                  r.threads, r.threads == 1 ? "" : "s", r.per_op_runs);
    std::cout << "runs:     " << r.runs << " in " << bench_time(r.timed_s * 1000.0) << line;
    if (r.peak_rss_delta_bytes >= 0)
        std::cout << "memory:   " << grouped(r.peak_rss_delta_bytes)
                  << " bytes peak RSS growth (executor, weights packed, buffers)\n";
    if (peak > 0) {
        std::snprintf(line, sizeof line,
                      "speed:    %.1f GFLOP/s = %.1f%% of the %.1f GFLOP/s single-thread FMA peak\n",
                      r.gflops, 100.0 * r.gflops / peak, peak);
    } else {
        std::snprintf(line, sizeof line,
                      "speed:    %.1f GFLOP/s (for %% of peak: --peak G, from `lamda device` when idle)\n",
                      r.gflops);
    }
    std::cout << line;
}
#endif

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"lamda: generates deep neural networks that fit an edge device.\n"
                 "Models are written in the lamda DSL (docs/dsl.md)."};
    app.set_version_flag("--version", lamda_cli::version_text());
    app.option_defaults()->always_capture_default();  // help shows every option's default
    app.require_subcommand(1);

    std::string model_path;
    bool as_json = false;
    auto* check = app.add_subcommand(
        "check", "Validate a model and print its per-layer shapes, parameters, MACs and memory.\n"
                 "Exits 0 for a valid model, 1 with diagnostics on stderr for an invalid one.");
    check->add_option("model", model_path, "Model file in the lamda DSL")->required();
    check->add_flag("--json", as_json, "Print one JSON object instead of a table");

    FmtArgs fmt_args;
    auto* fmt = app.add_subcommand(
        "fmt", "Print models formatted: every layer in canonical form, comments and blank lines\n"
               "kept where they were written. '-' reads standard input.");
    fmt->add_option("models", fmt_args.models, "Model files in the lamda DSL, or - for standard input")
        ->required();
    fmt->add_flag("-i,--in-place", fmt_args.in_place, "Rewrite the files instead of printing");
    fmt->add_flag("--check", fmt_args.check_only, "Print nothing; exit 1 if a file is not formatted");
    fmt->add_flag("--json", fmt_args.json, "Print one JSON object (docs/cli.md)");

    double peak_seconds = 0.5;
    auto* device = app.add_subcommand(
        "device", "Describe this machine: CPU, the ISA XNNPACK uses, cores, and a measured\n"
                  "single-thread FMA peak in GFLOP/s (the denominator of every efficiency figure).");
    device->add_flag("--json", as_json, "Print one JSON object");
    device->add_option("--seconds", peak_seconds, "How long to measure the FMA peak")
        ->check(CLI::Range(0.01, 60.0));

    BenchArgs bench_args;
    auto* bench = app.add_subcommand(
        "bench", "Measure a model through XNNPACK: init and first-inference time, latency (median,\n"
                 "mean, std, min, p95, p99) over --runs or --duration, peak RSS growth, GFLOP/s\n"
                 "(and the fraction of --peak), and a per-op table. --json adds a context block.");
    bench->add_option("model", bench_args.model, "Model file in the lamda DSL")->required();
    bench->add_option("--weights", bench_args.weights,
                      "Weights (safetensors, see docs/weights.md); random when left out");
    bench->add_option("--threads", bench_args.threads, "Threads (pthreadpool)")
        ->check(CLI::Range(1, 1024));
    bench->add_option("--runs", bench_args.runs, "Timed runs")->check(CLI::Range(1, 100000));
    bench->add_option("--warmup", bench_args.warmup, "Untimed runs first")
        ->check(CLI::Range(0, 100000));
    bench->add_option("--duration", bench_args.duration_s,
                      "Time runs for this many seconds instead of --runs (0: use --runs)")
        ->check(CLI::Range(0.0, 3600.0));
    bench->add_option("--peak", bench_args.peak_gflops,
                      "The device's single-thread peak in GFLOP/s, from `lamda device` on an idle machine;\n"
                      "given, bench prints the fraction of it (0: not printed)")
        ->check(CLI::NonNegativeNumber);
    bench->add_flag("--json", bench_args.json, "Print one JSON object");
    bench->add_option("--precision", bench_args.precision,
                      "fp32, or int8: qs8/qc8 XNNPACK operators (ops without an int8 kernel in "
                      "float between converts), scales from one run on the timing input")
        ->check(CLI::IsMember({"fp32", "int8"}));
#if defined(LAMDA_WITH_AGENT)
    bench->add_option("--device", bench_args.device,
                      "Measure on the lamda-agent at this URL (http://board:7070; token from "
                      "LAMDA_AGENT_TOKEN; docs/agent.md)");
#endif

    lamda_cli::SampleArgs sample_args;
    auto* sample = lamda_cli::add_sample_command(app, sample_args);
    lamda_cli::LatencyCli latency_args;
    lamda_cli::register_latency_commands(app, latency_args);
    lamda_cli::GenerateArgs generate_args;
    auto* generate = lamda_cli::add_generate_command(app, generate_args);
    lamda_cli::LlmArgs llm_check_args;
    auto* llm_check = lamda_cli::add_llm_check_command(app, llm_check_args);
    int train_exit = -1;  // `train` and `eval` run in their callbacks and set it
    lamda_cli::add_train_commands(app, train_exit);
    lamda_cli::add_export_commands(app, train_exit);  // `export`, `import`, `run` (cmd_export.hpp)
    lamda_cli::add_quantize_command(app, train_exit);  // `quantize` (cmd_quantize.hpp)

    if (const int rc = lamda_cli::parse_command_line(app, argc, argv); rc >= 0) return rc;
    if (train_exit >= 0) return train_exit;

    try {
        if (check->parsed()) return run_check(model_path, as_json);
        if (fmt->parsed()) return run_fmt(fmt_args);
        if (device->parsed()) return run_device(as_json, peak_seconds);
        if (bench->parsed()) return run_bench(bench_args);
        if (sample->parsed()) return lamda_cli::run_sample(sample_args);
        if (const int rc = lamda_cli::run_latency_commands(latency_args); rc >= 0) return rc;
        if (llm_check->parsed()) return lamda_cli::run_llm_check(llm_check_args);
        if (generate->parsed()) {
            lamda_cli::TrainerFactory trainer;
            if (lamda_cli::have_trainer)
                trainer = [&](const lamda::Task& task, std::uint64_t seed) {
                    return lamda_cli::make_trainer(task.dataset, generate_args.train_threads, seed,
                                                   generate_args.final_epochs, generate_args.final_erase);
                };
            return lamda_cli::run_generate(generate_args, trainer);
        }
    } catch (const lamda::Exception& e) {
        print_error(e.what());
        return lamda::exit_code(lamda::exit_code_for(e.kind()));
    } catch (const std::exception& e) {
        print_error(e.what());
        return exit_invalid;
    }
    return exit_invalid;
}
