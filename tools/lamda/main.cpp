// The `lamda` command line: thin wrappers that parse arguments, call the library and print.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <lamda/lamda.hpp>

namespace {

// Exit codes shared by every subcommand.
constexpr int exit_ok = 0;
constexpr int exit_invalid = 1;  // the input was read but is not acceptable

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
    const lamda::ParseResult parsed = lamda::parse_dsl_file(path);
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

int run_fmt(const std::string& path, bool in_place, bool check_only) {
    const lamda::ParseResult parsed = lamda::parse_dsl_file(path);
    if (!parsed.ok()) {
        print_diagnostics(parsed.diagnostics);
        return exit_invalid;
    }
    const std::string canonical = lamda::print_dsl(parsed.graph);
    if (check_only || in_place) {
        std::ifstream in(path, std::ios::binary);
        const std::string current((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
        if (check_only) {
            if (current != canonical) {
                std::cerr << path << ": not in canonical form (run `lamda fmt -i " << path
                          << "`)\n";
                return exit_invalid;
            }
            return exit_ok;
        }
        if (current != canonical) {
            std::ofstream out(path, std::ios::binary | std::ios::trunc);
            out << canonical;
            if (!out.flush()) {
                std::cerr << path << ": error: cannot write the file\n";
                return exit_invalid;
            }
        }
        return exit_ok;
    }
    std::cout << canonical;
    return exit_ok;
}

int run_device(bool as_json, double seconds) {
    lamda::DeviceInfo info = lamda::describe_device();
    lamda::measure_fma_peak_gflops(info, seconds);
    if (as_json) {
        lamda::JsonWriter json;
        json.begin_object()
            .field("cpu_model", info.cpu_model)
            .field("architecture", info.architecture)
            .key("isa")
            .begin_array();
        for (const auto& feature : info.isa) json.value(feature);
        json.end_array()
            .field("xnnpack_isa", info.xnnpack_isa)
            .field("logical_cores", info.logical_cores)
            .field("fma_kernel", info.fma_kernel)
            .field("peak_gflops", info.peak_gflops)
            .field("peak_threads", 1)
            .end_object();
        std::cout << json.str() << '\n';
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

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"lamda: generates deep neural networks that fit an edge device.\n"
                 "Models are written in the lamda DSL (docs/dsl.md)."};
    app.set_version_flag("--version", std::string("lamda ") + lamda::version_string);
    app.require_subcommand(1);

    std::string model_path;
    bool as_json = false;
    auto* check = app.add_subcommand(
        "check", "Validate a model and print its per-layer shapes, parameters, MACs and memory.\n"
                 "Exits 0 for a valid model, 1 with diagnostics on stderr for an invalid one.");
    check->add_option("model", model_path, "Model file in the lamda DSL")->required();
    check->add_flag("--json", as_json, "Print one JSON object instead of a table");

    bool in_place = false, check_only = false;
    auto* fmt = app.add_subcommand("fmt", "Print a model in canonical form.");
    fmt->add_option("model", model_path, "Model file in the lamda DSL")->required();
    fmt->add_flag("-i,--in-place", in_place, "Rewrite the file instead of printing");
    fmt->add_flag("--check", check_only, "Exit 1 if the file is not in canonical form");

    double peak_seconds = 0.5;
    auto* device = app.add_subcommand(
        "device", "Describe this machine: CPU, the ISA XNNPACK uses, cores, and a measured\n"
                  "single-thread FMA peak in GFLOP/s (the denominator of every efficiency figure).");
    device->add_flag("--json", as_json, "Print one JSON object");
    device->add_option("--seconds", peak_seconds, "How long to measure the FMA peak")
        ->check(CLI::Range(0.01, 60.0));

    CLI11_PARSE(app, argc, argv);

    try {
        if (check->parsed()) return run_check(model_path, as_json);
        if (fmt->parsed()) return run_fmt(model_path, in_place, check_only);
        if (device->parsed()) return run_device(as_json, peak_seconds);
    } catch (const std::exception& e) {
        std::cerr << "lamda: error: " << e.what() << '\n';
        return exit_invalid;
    }
    return exit_invalid;
}
