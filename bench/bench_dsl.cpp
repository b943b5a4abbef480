// Benchmarks of the front end on every model of the zoo (examples/models/*.lamda):
//   parse/NAME     text -> graph (tokenise, build, infer shapes, validate)
//   analyze/NAME   graph -> params, MACs, memory
//   roundtrip/NAME graph -> canonical text -> graph
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <lamda/lamda.hpp>

namespace {

struct Model {
    std::string name;
    std::string text;
};

std::vector<Model> load_zoo() {
    std::vector<Model> models;
    const std::filesystem::path dir = std::filesystem::path(LAMDA_SOURCE_DIR) / "examples" / "models";
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.path().extension() != ".lamda") continue;
        std::ifstream in(entry.path(), std::ios::binary);
        std::ostringstream text;
        text << in.rdbuf();
        models.push_back({entry.path().stem().string(), text.str()});
    }
    std::sort(models.begin(), models.end(),
              [](const Model& a, const Model& b) { return a.name < b.name; });
    return models;
}

lamda::Graph parse_or_die(const Model& model) {
    lamda::ParseResult result = lamda::parse_dsl(model.text, model.name + ".lamda");
    if (!result.ok()) {
        std::fputs(lamda::format_diagnostics(result.diagnostics).c_str(), stderr);
        std::exit(1);
    }
    return std::move(result.graph);
}

void bm_parse(benchmark::State& state, const Model& model) {
    for (auto _ : state) {
        lamda::ParseResult result = lamda::parse_dsl(model.text, model.name);
        benchmark::DoNotOptimize(result.graph.layers.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(model.text.size()));
}

void bm_analyze(benchmark::State& state, const lamda::Graph& graph) {
    for (auto _ : state) {
        lamda::ModelStats stats = lamda::analyze(graph);
        benchmark::DoNotOptimize(stats.macs);
    }
    state.counters["layers"] = static_cast<double>(graph.layers.size());
}

void bm_roundtrip(benchmark::State& state, const lamda::Graph& graph, const std::string& name) {
    for (auto _ : state) {
        const std::string text = lamda::print_dsl(graph);
        lamda::ParseResult again = lamda::parse_dsl(text, name);
        if (!again.ok() || again.graph != graph) {
            state.SkipWithError("print_dsl does not round-trip");
            break;
        }
        benchmark::DoNotOptimize(again.graph.layers.data());
    }
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<Model> zoo = load_zoo();
    std::vector<lamda::Graph> graphs;
    graphs.reserve(zoo.size());
    for (const Model& model : zoo) graphs.push_back(parse_or_die(model));
    if (zoo.empty()) std::fprintf(stderr, "no models found under %s/examples/models\n", LAMDA_SOURCE_DIR);

    for (std::size_t i = 0; i < zoo.size(); ++i) {
        const Model& model = zoo[i];
        const lamda::Graph& graph = graphs[i];
        benchmark::RegisterBenchmark(("parse/" + model.name).c_str(), bm_parse, model);
        benchmark::RegisterBenchmark(("analyze/" + model.name).c_str(), bm_analyze, graph);
        benchmark::RegisterBenchmark(("roundtrip/" + model.name).c_str(), bm_roundtrip, graph,
                                     model.name);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return zoo.empty() ? 1 : 0;
}
