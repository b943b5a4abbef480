// `lamda sample`: writes random, valid models (lamda/search/sampler.hpp) into a directory.
//
//     lamda sample --count 200 --seed 1 --out held_out [--family se] [--input 96x96x3] [--force]
//
// Model i is drawn from std::mt19937_64(lamda::sample_seed(seed, i)), so each file depends only on
// (seed, i): `--count 10` writes the first ten files of `--count 200`. Included by main.cpp:
//
//     lamda_cli::SampleArgs sample_args;
//     auto* sample = lamda_cli::add_sample_command(app, sample_args);
//     ...
//     if (sample->parsed()) return lamda_cli::run_sample(sample_args);
#ifndef LAMDA_TOOLS_CMD_SAMPLE_HPP
#define LAMDA_TOOLS_CMD_SAMPLE_HPP

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/core/ir.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/search/sampler.hpp>

namespace lamda_cli {

struct SampleArgs {
    int count = 0;
    std::uint64_t seed = 0;
    std::string out;
    std::string family = "any";  // or a lamda::family_name
    std::string input;           // HxWxC; empty: the default range of input sizes
    bool force = false;
    bool json = false;  // one JSON object on stdout (docs/cli.md, schema "sample")
};

inline constexpr int sample_max_count = 100000;

inline CLI::App* add_sample_command(CLI::App& app, SampleArgs& args) {
    auto* sample = app.add_subcommand(
        "sample",
        "Write random valid models (plain chains, residual, inverted-residual, squeeze-excitation\n"
        "and concat-branch families) over a range of input sizes and widths, as\n"
        "DIR/sample_0000.lamda ...; each file starts with a comment giving its family, seed,\n"
        "parameters and MACs. The same seed writes the same files on every platform.");
    sample->add_option("--count", args.count, "How many models (1 to 100000)")
        ->required()
        ->check(CLI::Range(1, sample_max_count));
    sample->add_option("--seed", args.seed, "Seed (model i depends only on the seed and i)");
    sample->add_option("--out", args.out, "Output directory (created if missing)")->required();
    sample->add_option("--family", args.family,
                       "chain, residual, inverted-residual, se, concat, mixed, or any (the "
                       "default: every family, equally likely)");
    sample->add_option("--input", args.input,
                       "Input shape HxWxC for every model (default: 28x28x1 to 224x224x3)");
    sample->add_flag("--force", args.force, "Write into a non-empty directory");
    sample->add_flag("--json", args.json, "Print one JSON object: the files and each family's numbers");
    return sample;
}

namespace sample_cli_detail {

// "224x224x3" -> Shape; false unless three positive integers of at most 4096.
inline bool parse_shape(const std::string& text, lamda::Shape& shape) {
    std::int64_t v[3] = {0, 0, 0};
    std::size_t part = 0, digits = 0;
    for (char c : text) {
        if (c >= '0' && c <= '9') {
            if (++digits > 5) return false;
            v[part] = v[part] * 10 + (c - '0');
        } else if (c == 'x' && digits > 0 && part < 2) {
            ++part;
            digits = 0;
        } else {
            return false;
        }
    }
    if (part != 2 || digits == 0) return false;
    for (std::int64_t x : v)
        if (x < 1 || x > 4096) return false;
    shape = lamda::Shape{v[0], v[1], v[2]};
    return true;
}

inline std::string millions(std::int64_t v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.2fM", static_cast<double>(v) / 1e6);
    return buffer;
}

template <class T>
T median_of(std::vector<T> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace sample_cli_detail

// Returns 0 when every file was written, 1 (with a message on `err`) otherwise.
inline int run_sample(const SampleArgs& args, std::ostream& out = std::cout,
                      std::ostream& err = std::cerr) {
    namespace fs = std::filesystem;
    using namespace sample_cli_detail;
    auto fail = [&err](const std::string& message) {
        err << "lamda sample: error: " << message << '\n';
        return 1;
    };
    if (args.count < 1 || args.count > sample_max_count)
        return fail("--count must be in [1, " + std::to_string(sample_max_count) + "]");
    if (args.out.empty()) return fail("--out names no directory");

    lamda::SampleSpace space;
    const bool any_family = args.family == "any";
    lamda::ModelFamily family = lamda::ModelFamily::Mixed;
    if (!any_family && !lamda::parse_model_family(args.family, family)) {
        std::string names = "any";
        for (lamda::ModelFamily f : lamda::all_model_families)
            names += ", " + std::string(lamda::family_name(f));
        return fail("unknown family '" + args.family + "' (one of " + names + ")");
    }
    if (!args.input.empty()) {
        lamda::Shape shape;
        if (!parse_shape(args.input, shape))
            return fail("--input '" + args.input +
                        "' is not HxWxC with each in [1, 4096], e.g. 96x96x3");
        space.input_shapes = {shape};
    }

    // The directory: created when missing; a non-empty one only with --force.
    std::error_code ec;
    const fs::path dir(args.out);
    if (fs::exists(dir, ec)) {
        if (!fs::is_directory(dir, ec)) return fail("'" + args.out + "' exists and is not a directory");
        if (!fs::is_empty(dir, ec) && !args.force)
            return fail("'" + args.out + "' is not empty (use --force to write into it anyway)");
    } else if (!fs::create_directories(dir, ec) || ec) {
        return fail("cannot create the directory '" + args.out + "': " + ec.message());
    }

    std::size_t width = 4;
    for (int n = args.count - 1; n >= 10000; n /= 10) ++width;

    struct Tally {
        std::vector<std::int64_t> macs, params;
        std::vector<int> layers;
    };
    std::map<std::string, Tally> tallies;  // by family name
    std::vector<std::string> files;
    for (int i = 0; i < args.count; ++i) {
        std::string index = std::to_string(i);
        index.insert(0, width > index.size() ? width - index.size() : 0, '0');
        const std::string name = "sample_" + index;
        const fs::path path = dir / (name + ".lamda");

        std::mt19937_64 rng(lamda::sample_seed(args.seed, static_cast<std::uint64_t>(i)));
        lamda::SampleInfo info;
        lamda::Graph graph;
        try {
            graph = any_family ? lamda::sample_model(rng, space, &info)
                               : lamda::sample_model(rng, space, family, &info);
        } catch (const std::exception& e) {
            return fail(std::string(e.what()) +
                        (args.input.empty() ? "" : " (try another --input)"));
        }
        graph.name = name;
        const std::string fname(lamda::family_name(info.family));

        std::ofstream file(path, std::ios::binary | std::ios::trunc);
        file << "# lamda sample: family=" << fname << " seed=" << args.seed << " index=" << i
             << " input=" << lamda::to_string(graph.input().shape) << " params=" << info.params
             << " macs=" << info.macs << " layers=" << info.layers << '\n'
             << lamda::print_dsl(graph);
        if (!file.flush()) return fail("cannot write '" + path.string() + "'");

        files.push_back(path.string());
        Tally& t = tallies[fname];
        t.macs.push_back(info.macs);
        t.params.push_back(info.params);
        t.layers.push_back(info.layers);
    }

    if (args.json) {
        lamda::JsonWriter json;
        json.begin_object()
            .field("out", args.out)
            .field("count", args.count)
            .field("seed", args.seed)
            .key("families")
            .begin_array();
        for (const auto& [fname, t] : tallies)
            json.begin_object()
                .field("family", fname)
                .field("models", static_cast<std::int64_t>(t.macs.size()))
                .field("macs_min", *std::min_element(t.macs.begin(), t.macs.end()))
                .field("macs_median", median_of(t.macs))
                .field("macs_max", *std::max_element(t.macs.begin(), t.macs.end()))
                .field("params_median", median_of(t.params))
                .field("layers_median", median_of(t.layers))
                .end_object();
        json.end_array().key("files").begin_array();
        for (const std::string& f : files) json.value(f);
        json.end_array().end_object();
        out << json.str() << '\n';
        err << "wrote " << args.count << " model" << (args.count == 1 ? "" : "s") << " to " << args.out << '\n';
        return 0;
    }
    for (const auto& [fname, t] : tallies) {
        out << fname << ": " << t.macs.size() << (t.macs.size() == 1 ? " model" : " models") << ", MACs "
            << millions(*std::min_element(t.macs.begin(), t.macs.end())) << " / "
            << millions(median_of(t.macs)) << " / "
            << millions(*std::max_element(t.macs.begin(), t.macs.end()))
            << " (min / median / max), params median " << millions(median_of(t.params))
            << ", layers median " << median_of(t.layers) << '\n';
    }
    err << "wrote " << args.count << " model" << (args.count == 1 ? "" : "s") << " to "
        << args.out << '\n';  // a status line: stderr (docs/cli.md)
    return 0;
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_SAMPLE_HPP
