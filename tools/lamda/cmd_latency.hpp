// tools/lamda/cmd_latency.hpp: `lamda profile`, `lamda predict` and `lamda eval-predictor`.
// Included by main.cpp, which calls register_latency_commands() before parsing and
// run_latency_commands() after (it returns -1 when none of these subcommands was given).
//   profile and eval-predictor need LAMDA_WITH_LATENCY and LAMDA_WITH_XNNPACK;
//   predict needs LAMDA_WITH_LATENCY only (a search host may predict for a board it cannot run).
#ifndef LAMDA_TOOLS_CMD_LATENCY_HPP
#define LAMDA_TOOLS_CMD_LATENCY_HPP

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <lamda/dsl/file.hpp>
#include "cli_io.hpp"  // stderr_is_terminal
#include <lamda/dsl/parser.hpp>
#include <lamda/detail/json_write.hpp>
#if defined(LAMDA_WITH_LATENCY)
#include <lamda/latency/model.hpp>
#endif
#include <lamda/search/sampler.hpp>
#if defined(LAMDA_WITH_LATENCY) && defined(LAMDA_WITH_XNNPACK)
#include <lamda/latency/profiler.hpp>
#endif
#if defined(LAMDA_WITH_AGENT)
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <lamda/agent/agent.hpp>
#endif

namespace lamda_cli {

struct LatencyCli {
    CLI::App* profile = nullptr;
    CLI::App* predict = nullptr;
    CLI::App* eval = nullptr;
    // profile
    std::string out;
    int threads = 1;
    double budget_s = 150;
    int calibration_models = 320;
    std::uint64_t calibration_seed = 0xCA11B;
    std::uint64_t profile_seed = 1;
    std::string profile_precision = "fp32";  // profile --precision: fp32 | both
    bool quiet = false;
    // predict / eval-predictor
    std::string model;
    std::string profile_path;
    bool json = false;
    std::string predict_precision = "fp32";  // predict --precision: fp32 | int8
    std::string eval_precision = "all";      // eval-predictor --precision: fp32 | int8 | all
    int models = 200;
    std::uint64_t seed = 2024;
    std::string zoo = "examples/models";
    int runs = 15;
    int rounds = 3;  // eval-predictor: passes over all models; a model's time is their median
    double quantile = 0.5;
    bool verbose = false;
    std::vector<std::string> devices;  // profile --device (repeatable): lamda-agent URLs
    std::string eval_device;           // eval-predictor --device
};

inline void register_latency_commands(CLI::App& app, LatencyCli& c) {
    c.profile = app.add_subcommand(
        "profile", "Measure this device for the latency model: single operators over sampled\n"
                   "configurations (adaptively, where the fit is worst) and whole random models for\n"
                   "the per-model overhead; writes samples, fit and device fingerprint as JSON.");
    c.profile->add_option("--out", c.out, "Profile file to write")->required();
    c.profile->add_option("--threads", c.threads, "Threads (pthreadpool)")->check(CLI::Range(1, 1024));
    c.profile->add_option("--budget-s", c.budget_s, "Seconds to spend measuring (default 150)")
        ->check(CLI::Range(5.0, 86400.0));
    c.profile->add_option("--calibration-models", c.calibration_models,
                          "Whole random models timed per operator and end to end (and an eighth as many tiny ones)")
        ->check(CLI::Range(0, 10000));
    c.profile->add_option("--calibration-seed", c.calibration_seed,
                          "Seed of the calibration models (evaluation must use another)");
    c.profile->add_option("--seed", c.profile_seed, "Seed of the operator configurations");
    c.profile->add_option("--precision", c.profile_precision,
                          "fp32: operators and models timed in fp32 only; both: also in int8 (the XNNPACK int8 path, "
                          "synthetic scales), so that `predict --precision int8` works; the budget is then shared "
                          "half and half")
        ->check(CLI::IsMember({"fp32", "both"}));
    c.profile->add_option("--quantile", c.quantile,
                          "Quantile of repeated timings (0.5: median; lower resists a busy machine)")
        ->check(CLI::Range(0.0, 1.0));
    c.profile->add_flag("-q,--quiet", c.quiet, "No progress line on stderr");
    c.profile->add_flag("--json", c.json, "Print one JSON object (what was written, per board with --device)");
#if defined(LAMDA_WITH_AGENT)
    c.profile->add_option("--device", c.devices,
                          "Profile the board running lamda-agent at this URL instead (token from LAMDA_AGENT_TOKEN); "
                          "repeat for several boards, profiled in parallel: --out P.json then writes P.<host_port>.json "
                          "for each (docs/agent.md)");
#endif

    c.predict = app.add_subcommand(
        "predict", "Predict a model's latency from a device profile, with the per-layer breakdown.");
    c.predict->add_option("model", c.model, "Model file in the lamda DSL")->required();
    c.predict->add_option("--profile", c.profile_path, "Profile from `lamda profile`")->required();
    c.predict->add_option("--precision", c.predict_precision,
                          "Predict the fp32 or the int8 executor's latency (int8 needs a profile made with "
                          "`lamda profile --precision both`)")
        ->check(CLI::IsMember({"fp32", "int8"}));
    c.predict->add_flag("--json", c.json, "Print one JSON object");

    c.eval = app.add_subcommand(
        "eval-predictor",
        "Measure fresh random models (never used for fitting) and the example zoo, and compare\n"
        "with the profile's predictions: fraction within 10% and 5%, MAPE and RMSE per family.");
    c.eval->add_option("--profile", c.profile_path, "Profile from `lamda profile`")->required();
    c.eval->add_option("--models", c.models, "Random models to measure")->check(CLI::Range(0, 100000));
    c.eval->add_option("--seed", c.seed, "Seed of the random models (not the calibration seed)");
    c.eval->add_option("--zoo", c.zoo, "Directory of .lamda models also evaluated ('' for none)");
    c.eval->add_option("--runs", c.runs, "Timed runs per model (median)")->check(CLI::Range(3, 1000));
    c.eval->add_option("--rounds", c.rounds,
                       "Passes over all models, each timing every model once; a model's time is the median "
                       "over passes (a burst of load on a shared machine then spoils one pass, not the figure)")
        ->check(CLI::Range(1, 100));
    c.eval->add_option("--quantile", c.quantile,
                       "Quantile of repeated timings (0.5: median; lower resists a busy machine)")
        ->check(CLI::Range(0.0, 1.0));
    c.eval->add_option("--precision", c.eval_precision,
                       "Precision(s) to time and predict: all (every one the profile has), fp32 or int8")
        ->check(CLI::IsMember({"all", "fp32", "int8"}));
    c.eval->add_flag("--json", c.json, "Print one JSON object");
    c.eval->add_flag("-v,--verbose", c.verbose, "Print every model");
#if defined(LAMDA_WITH_AGENT)
    c.eval->add_option("--device", c.eval_device,
                       "Measure on the board running lamda-agent at this URL (token from LAMDA_AGENT_TOKEN)");
#endif
}

#if defined(LAMDA_WITH_LATENCY)

namespace latency_cli_detail {

// A model's fitted regressors with the names `profile` shows: each kind's, then those of the
// convolutions on lamda's own kernels ("conv:pointwise", "conv:winograd").
inline std::vector<std::pair<std::string, const lamda::KindModel*>> regressors(const lamda::LatencyModel& m) {
    std::vector<std::pair<std::string, const lamda::KindModel*>> out;
    for (const lamda::KindModel& k : m.kinds)
        if (k.fitted) out.emplace_back(std::string(lamda::prim_kind_name(k.kind)), &k);
    for (lamda::OwnConv o : lamda::all_own_convs)
        if (m.own_conv_model(o).fitted)
            out.emplace_back("conv:" + std::string(lamda::own_conv_name(o)), &m.own_conv_model(o));
    return out;
}

inline lamda::LatencyProfile load_profile(const std::string& path, int threads) {
    lamda::LatencyProfile p = lamda::read_latency_profile(path);
    const std::string w = lamda::fingerprint_warning(p.fingerprint, lamda::current_fingerprint(threads));
    if (!w.empty()) std::cerr << path << ": " << w << '\n';
    return p;
}

inline void write_stats(lamda::JsonWriter& j, const lamda::AccuracyStats& s) {
    j.field("n", s.n)
        .field("within_10pct", s.within_10pct)
        .field("within_5pct", s.within_5pct)
        .field("within_15pct", s.within_15pct)
        .field("mape", s.mape)
        .field("rmse_ms", s.rmse_ms)
        .field("max_abs_pct", s.max_abs_pct);
}

inline std::string stats_line(const std::string& label, const lamda::AccuracyStats& s) {
    char line[256];
    std::snprintf(line, sizeof line, "%-18s %5d %9.1f%% %9.1f%% %8.2f%% %10.4f %8.1f%%", label.c_str(), s.n,
                  100 * s.within_10pct, 100 * s.within_5pct, s.mape, s.rmse_ms, s.max_abs_pct);
    return line;
}

// The calibration models `lamda profile` measures: (name, family, graph), families in turn.
}  // namespace latency_cli_detail

inline int run_predict(const LatencyCli& c) {
    const lamda::ParseResult parsed = lamda::parse_dsl_file(c.model);
    if (!parsed.ok()) {
        std::cerr << lamda::format_diagnostics(parsed.diagnostics);
        return 1;
    }
    const lamda::LatencyProfile p = latency_cli_detail::load_profile(c.profile_path, 1);
    lamda::LatencyPrecision prec = lamda::LatencyPrecision::Fp32;
    lamda::parse_precision(c.predict_precision, prec);  // CLI11 checked it
    const lamda::LatencyModel& m = p.model_for(prec, c.profile_path);
    const lamda::Graph& g = parsed.graph;
    const lamda::LatencyPrediction r = m.predict(g);
    if (c.json) {
        lamda::JsonWriter j;
        j.begin_object()
            .field("model", g.name.empty() ? c.model : g.name)
            .field("precision", lamda::precision_name(prec))
            .field("predicted_ms", r.total_ms)
            .field("operators_ms", r.ops_ms)
            .field("overhead_ms", [&] {  // a floating-point remainder of -1e-18 is no overhead
                double s = 0;
                for (double v : r.per_layer_ms) s += v;
                const double overhead = r.total_ms - s;
                return std::abs(overhead) <= 1e-12 * std::max(1.0, r.total_ms) ? 0.0 : overhead;
            }());
        j.key("per_op").begin_array();
        for (std::size_t i = 0; i < g.layers.size(); ++i) {
            bool runs = false;
            for (const lamda::PrimOp& op : r.ops) runs = runs || op.layer == static_cast<int>(i);
            if (!runs) continue;
            j.begin_object()
                .field("name", g.layers[i].name)
                .field("op", lamda::op_name(g.layers[i].op))
                .field("predicted_ms", r.per_layer_ms[i])
                .field("share", r.total_ms > 0 ? r.per_layer_ms[i] / r.total_ms : 0.0)
                .end_object();
        }
        j.end_array().end_object();
        std::cout << j.str() << '\n';
        return 0;
    }
    std::size_t width = 5;
    for (const auto& l : g.layers) width = std::max(width, l.name.size());
    width += 2;
    char line[256];
    std::cout << std::string("layer") + std::string(width - 5, ' ') << "op           predicted ms   share\n";
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        bool runs = false;
        for (const lamda::PrimOp& op : r.ops) runs = runs || op.layer == static_cast<int>(i);
        if (!runs) continue;
        const std::string name = g.layers[i].name;
        std::snprintf(line, sizeof line, "%-12s %12.4f %6.1f%%", std::string(lamda::op_name(g.layers[i].op)).c_str(),
                      r.per_layer_ms[i], r.total_ms > 0 ? 100 * r.per_layer_ms[i] / r.total_ms : 0.0);
        std::cout << name << std::string(width - std::min(width, name.size()), ' ') << line << '\n';
    }
    std::snprintf(line, sizeof line, "\npredicted: %.4f ms (%s, %zu operators; overhead term %.4f ms)\n",
                  r.total_ms, std::string(lamda::precision_name(prec)).c_str(), r.ops.size(), r.total_ms - [&] {
                      double s = 0;
                      for (double v : r.per_layer_ms) s += v;
                      return s;
                  }());
    std::cout << line;
    return 0;
}

#if defined(LAMDA_WITH_XNNPACK)

#if defined(LAMDA_WITH_AGENT)
namespace latency_cli_detail {

// profile --json: what one written profile holds (docs/cli.md's schema "profile").
inline void write_profile_summary(lamda::JsonWriter& j, const std::string& path, const lamda::LatencyProfile& p) {
    j.field("out", path)
        .field("samples", static_cast<std::int64_t>(p.samples.size()))
        .field("calibration_models", static_cast<std::int64_t>(p.calibration.size()))
        .field("elapsed_s", p.elapsed_s);
    j.key("load_average");
    if (p.load_average >= 0) j.value(p.load_average);
    else j.null();
    auto kinds = [&j](const lamda::LatencyModel& m) {
        j.begin_array();
        for (const auto& [name, k] : regressors(m)) {
            j.begin_object()
                .field("kind", name)
                .field("samples", static_cast<std::int64_t>(k->samples))
                .field("cv_error_pct", 100 * k->cv_rel_rmse)
                .field("context_samples", static_cast<std::int64_t>(k->context_samples))
                .field("context_factor", k->context_scale)
                .end_object();
        }
        j.end_array();
    };
    j.key("kinds");
    kinds(p.model);
    j.key("precisions").begin_array().value("fp32");
    if (p.has_int8) j.value("int8");
    j.end_array();
    if (p.has_int8) {
        j.key("int8").begin_object()
            .field("samples", static_cast<std::int64_t>(p.int8_samples.size()))
            .field("calibration_models", static_cast<std::int64_t>(p.int8_calibration.size()));
        j.key("kinds");
        kinds(p.int8_model);
        j.end_object();
    }
}

}  // namespace latency_cli_detail

// `lamda profile --device URL...`: each board profiles itself (the same job as run_profile, in
// its agent), in parallel; one profile file per board.
inline int run_profile_remote(const LatencyCli& c) {
    std::vector<std::unique_ptr<lamda::AgentClient>> clients;
    for (const std::string& url : c.devices) clients.push_back(std::make_unique<lamda::AgentClient>(url));
    const bool several = clients.size() > 1;
    std::vector<std::string> results(clients.size()), errors(clients.size()), summaries(clients.size());
    std::mutex io;
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < clients.size(); ++i)
        threads.emplace_back([&, i] {
            lamda::AgentClient& client = *clients[i];
            try {
                lamda::AgentProfileRequest p;
                p.threads = c.threads;
                p.budget_s = c.budget_s;
                p.calibration_models = c.calibration_models;
                p.calibration_seed = c.calibration_seed;
                p.seed = c.profile_seed;
                p.quantile = c.quantile;
                int polls = 0;
                const std::string text = client.profile(p, [&](const lamda::AgentJobStatus& st) {
                    if (c.quiet || st.progress.empty() || (several && polls++ % 10 != 0)) return;
                    std::lock_guard<std::mutex> lock(io);
                    if (several) std::cerr << client.url() << ": " << st.progress << '\n';
                    else if (lamda_cli::stderr_is_terminal()) std::cerr << '\r' << st.progress << "   " << std::flush;
                }, 1.0);
                const lamda::LatencyProfile prof = lamda::parse_latency_profile(text, client.url());
                const std::string path = lamda::agent_profile_path(c.out, client, several);
                std::ofstream out(path, std::ios::binary | std::ios::trunc);
                out << text << '\n';
                if (!out.flush()) throw lamda::ProfileError(path + ": error: cannot write the profile");
                char line[256];
                std::snprintf(line, sizeof line, "%s: %zu operator samples, %zu calibration models, %.1f s (load average %.2f)",
                              path.c_str(), prof.samples.size(), prof.calibration.size(), prof.elapsed_s, prof.load_average);
                results[i] = std::string(line) + " from " + client.url();
                lamda::JsonWriter j;
                j.begin_object().field("device", client.url());
                latency_cli_detail::write_profile_summary(j, path, prof);
                summaries[i] = j.end_object().str();
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (auto& t : threads) t.join();
    if (!c.quiet && !several) std::cerr << '\n';
    int rc = 0;
    std::string json = "{\"profiles\":[";
    for (std::size_t i = 0; i < clients.size(); ++i) {
        if (errors[i].empty()) {
            if (!c.json) std::cout << results[i] << '\n';
            json += (i ? "," : "") + summaries[i];
        } else {
            std::cerr << "lamda: error: " << errors[i] << '\n';
            lamda::JsonWriter j;
            j.begin_object().field("device", clients[i]->url()).field("error", errors[i]).end_object();
            json += (i ? "," : "") + j.str();
            rc = 1;
        }
    }
    if (c.json) std::cout << json << "]}\n";
    return rc;
}
#endif

inline int run_profile(const LatencyCli& c) {
#if defined(LAMDA_WITH_AGENT)
    if (!c.devices.empty()) {
        if (c.profile_precision != "fp32") {
            std::cerr << "lamda: error: --precision " << c.profile_precision
                      << " with --device: a board's agent profiles fp32 only; profile int8 on the board itself "
                         "(`lamda profile --precision both` there)\n";
            return 1;
        }
        return run_profile_remote(c);
    }
#endif
    std::vector<std::string> families;
    auto models = lamda::calibration_models(c.calibration_seed, c.calibration_models, families);
    lamda::ProfileOptions o;
    o.threads = c.threads;
    o.budget_s = c.budget_s;
    o.seed = c.profile_seed;
    o.quantile = c.quantile;
    o.int8 = c.profile_precision == "both";
    if (!c.quiet && lamda_cli::stderr_is_terminal())  // a log gets no '\r' progress line
        o.progress = [](const std::string& line) { std::cerr << '\r' << line << "   " << std::flush; };
    lamda::LatencyProfile p = lamda::profile_device(o, models, families);
    p.calibration_seed = static_cast<std::int64_t>(c.calibration_seed & 0x7fffffffffffffffull);
    if (!c.quiet) std::cerr << '\n';
    lamda::write_latency_profile(c.out, p);
    if (c.json) {
        lamda::JsonWriter j;
        j.begin_object().key("profiles").begin_array().begin_object().field("device", "this machine");
        latency_cli_detail::write_profile_summary(j, c.out, p);
        j.end_object().end_array().end_object();
        std::cout << j.str() << '\n';
        return 0;
    }
    char line[256];
    std::snprintf(line, sizeof line, "%s: %zu operator samples, %zu calibration models, %.1f s (load average %.2f)\n",
                  c.out.c_str(), p.samples.size(), p.calibration.size(), p.elapsed_s, p.load_average);
    std::cout << line;
    auto table = [&line](const lamda::LatencyModel& m) {
        std::cout << "kind              samples  CV error (RMS %)  in models  context factor\n";
        for (const auto& [name, k] : latency_cli_detail::regressors(m)) {
            std::snprintf(line, sizeof line, "%-16s %8d  %15.1f  %9d  %14.3f\n", name.c_str(), k->samples,
                          100 * k->cv_rel_rmse, k->context_samples, k->context_scale);
            std::cout << line;
        }
        const lamda::Calibration& cal = m.calibration;
        std::snprintf(line, sizeof line,
                      "calibration: scale gemm %.3f, depthwise %.3f, other %.3f; %.4f ms per operator; %.4f ms per model\n",
                      cal.scale[0], cal.scale[1], cal.scale[2], cal.per_op_ms, cal.constant_ms);
        std::cout << line;
    };
    table(p.model);
    if (p.has_int8) {
        std::snprintf(line, sizeof line, "\nint8: %zu operator samples, %zu calibration models\n", p.int8_samples.size(),
                      p.int8_calibration.size());
        std::cout << line;
        table(p.int8_model);
    }
    return 0;
}

inline int run_eval(const LatencyCli& c) {
#if defined(LAMDA_WITH_AGENT)
    std::unique_ptr<lamda::AgentClient> remote;
    if (!c.eval_device.empty()) remote = std::make_unique<lamda::AgentClient>(c.eval_device);
    // This machine's fingerprint says nothing about the board's.
    const lamda::LatencyProfile p = remote ? lamda::read_latency_profile(c.profile_path)
                                           : latency_cli_detail::load_profile(c.profile_path, 1);
#else
    const lamda::LatencyProfile p = latency_cli_detail::load_profile(c.profile_path, 1);
#endif
    const int threads = p.fingerprint.threads;
    // The precisions evaluated: each is timed and predicted on its own, and reported apart.
    std::vector<lamda::LatencyPrecision> precisions;
    if (c.eval_precision != "int8") precisions.push_back(lamda::LatencyPrecision::Fp32);
    if (c.eval_precision == "int8" || (c.eval_precision == "all" && p.has_int8))
        precisions.push_back(lamda::LatencyPrecision::Int8);
    for (lamda::LatencyPrecision prec : precisions) (void)p.model_for(prec, c.profile_path);  // int8: in the profile?
#if defined(LAMDA_WITH_AGENT)
    if (remote && precisions.back() == lamda::LatencyPrecision::Int8) {
        if (c.eval_precision == "int8") {
            std::cerr << "lamda: error: --precision int8 with --device: a board's agent times fp32 only\n";
            return 1;
        }
        std::cerr << "lamda: note: --device: a board's agent times fp32 only; int8 is not evaluated\n";
        precisions.pop_back();
    }
#endif
    struct Row {
        std::string name, family;
        lamda::LatencyPrecision precision = lamda::LatencyPrecision::Fp32;
        double measured = 0, predicted = 0;
    };
    std::vector<Row> rows;
    std::vector<std::string> families;
    const double load_before = lamda::current_load_average();
    // Fresh models: a seed equal to the profile's calibration seed is refused (the model of
    // index i depends on (seed, i) only, so another seed draws other models).
    if (p.calibration_seed >= 0 && static_cast<std::uint64_t>(p.calibration_seed) == c.seed) {
        std::cerr << "lamda: error: --seed " << c.seed
                  << " is the seed of the profile's calibration models; pick another\n";
        return 1;
    }
    const auto models = lamda::sample_named_models(c.seed, c.models, "eval-", families);
    std::vector<std::pair<std::string, lamda::Graph>> zoo;
    if (!c.zoo.empty() && std::filesystem::is_directory(c.zoo)) {
        std::vector<std::string> files;
        for (const auto& e : std::filesystem::directory_iterator(c.zoo))
            if (e.path().extension() == ".lamda") files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            const lamda::ParseResult r = lamda::parse_dsl_file(f);
            if (!r.ok()) {
                std::cerr << lamda::format_diagnostics(r.diagnostics);
                return 1;
            }
            zoo.emplace_back(std::filesystem::path(f).stem().string(), r.graph);
        }
    }
    // The random models, then the zoo.
    std::vector<const std::pair<std::string, lamda::Graph>*> all;
    for (const auto& m : models) all.push_back(&m);
    for (const auto& m : zoo) all.push_back(&m);
    const std::size_t total = all.size();
    // Round-robin passes, so that the timings of one model are minutes apart, not back to back;
    // in each pass a model is timed in every precision evaluated, one after the other, so that
    // load on a shared machine hits both alike.
    const std::size_t np = precisions.size();
    std::vector<std::vector<double>> timings(total * np);
    for (int round = 0; round < c.rounds; ++round)
        for (std::size_t i = 0; i < total; ++i)
            for (std::size_t k = 0; k < np; ++k) {
                const auto& [name, graph] = *all[i];
                double ms = 0;
#if defined(LAMDA_WITH_AGENT)
                if (remote)
                    ms = remote->measure_ms(lamda::print_dsl(graph), threads, c.runs, 2, 3.0, c.quantile, name);
                else
#endif
                ms = lamda::measure_model_ms(graph, threads, c.runs, 2, 3.0, c.quantile, precisions[k]);
                timings[i * np + k].push_back(ms);
                if ((!c.json || c.verbose) && lamda_cli::stderr_is_terminal()) {
                    std::fprintf(stderr, "\r[pass %d/%d, %zu/%zu] %-40s", round + 1, c.rounds, i + 1, total,
                                 name.c_str());
                    std::fflush(stderr);
                }
            }
    for (std::size_t k = 0; k < np; ++k)
        for (std::size_t i = 0; i < total; ++i) {
            Row row;
            row.name = all[i]->first;
            row.family = i < models.size() ? families[i] : "zoo";
            row.precision = precisions[k];
            row.predicted = p.model_for(precisions[k]).predict_ms(all[i]->second);
            row.measured = lamda::quantile(timings[i * np + k], 0.5);
            rows.push_back(row);
        }
    if ((!c.json || c.verbose) && lamda_cli::stderr_is_terminal()) std::fprintf(stderr, "\r%60s\r", "");
    const double load_after = lamda::current_load_average();

    // Per precision: (predicted, measured) by family, and over all random models.
    using Pairs = std::pair<std::vector<double>, std::vector<double>>;
    std::vector<std::map<std::string, Pairs>> by_family(np);
    std::vector<Pairs> random_models(np);
    for (const Row& r : rows) {
        const std::size_t k = static_cast<std::size_t>(
            std::find(precisions.begin(), precisions.end(), r.precision) - precisions.begin());
        by_family[k][r.family].first.push_back(r.predicted);
        by_family[k][r.family].second.push_back(r.measured);
        if (r.family != "zoo") {
            random_models[k].first.push_back(r.predicted);
            random_models[k].second.push_back(r.measured);
        }
    }
    std::vector<lamda::AccuracyStats> overall(np);
    for (std::size_t k = 0; k < np; ++k) overall[k] = lamda::accuracy_stats(random_models[k].first, random_models[k].second);
    if (c.json) {
        lamda::JsonWriter j;
        auto families_json = [&j](const std::map<std::string, Pairs>& fams) {
            j.key("families").begin_object();
            for (const auto& [fam, pm] : fams) {
                j.key(fam).begin_object();
                latency_cli_detail::write_stats(j, lamda::accuracy_stats(pm.first, pm.second));
                j.end_object();
            }
            j.end_object();
        };
        // The top-level figures are the first precision's (fp32 unless --precision int8), as
        // before int8 was evaluated; by_precision has every precision's.
        j.begin_object();
        latency_cli_detail::write_stats(j, overall[0]);
        j.field("precision", lamda::precision_name(precisions[0]));
        j.field("seed", c.seed).field("threads", threads).field("rounds", c.rounds).field("load_before", load_before).field("load_after", load_after);
        families_json(by_family[0]);
        j.key("by_precision").begin_object();
        for (std::size_t k = 0; k < np; ++k) {
            j.key(lamda::precision_name(precisions[k])).begin_object();
            latency_cli_detail::write_stats(j, overall[k]);
            families_json(by_family[k]);
            j.end_object();
        }
        j.end_object();
        j.key("models").begin_array();
        for (const Row& r : rows)
            j.begin_object()
                .field("name", r.name)
                .field("family", r.family)
                .field("precision", lamda::precision_name(r.precision))
                .field("measured_ms", r.measured)
                .field("predicted_ms", r.predicted)
                .field("error_pct", 100 * (r.predicted - r.measured) / r.measured)
                .end_object();
        j.end_array().end_object();
        std::cout << j.str() << '\n';
        return 0;
    }
    char line[256];
    if (c.verbose) {
        for (const Row& r : rows) {
            std::snprintf(line, sizeof line, "%-36s %-18s %-4s %10.4f %10.4f %+7.1f%%\n", r.name.c_str(), r.family.c_str(),
                          std::string(lamda::precision_name(r.precision)).c_str(), r.measured, r.predicted,
                          100 * (r.predicted - r.measured) / r.measured);
            std::cout << line;
        }
        std::cout << '\n';
    }
    for (std::size_t k = 0; k < np; ++k) {
        const std::string prec(lamda::precision_name(precisions[k]));
        if (k > 0) std::cout << '\n';
        std::cout << prec << ":\nfamily                 n  within10%   within5%     MAPE   RMSE ms   max err\n";
        for (const auto& [fam, pm] : by_family[k])
            if (fam != "zoo")
                std::cout << latency_cli_detail::stats_line(fam, lamda::accuracy_stats(pm.first, pm.second)) << '\n';
        std::cout << latency_cli_detail::stats_line("all random", overall[k]) << '\n';
        if (by_family[k].count("zoo")) {
            std::cout << latency_cli_detail::stats_line(
                             "zoo", lamda::accuracy_stats(by_family[k]["zoo"].first, by_family[k]["zoo"].second))
                      << "\n\nzoo model (" << prec << ")       measured ms  predicted ms   error\n";
            for (const Row& r : rows)
                if (r.family == "zoo" && r.precision == precisions[k]) {
                    std::snprintf(line, sizeof line, "%-22s %11.4f %13.4f %+7.1f%%\n", r.name.c_str(), r.measured,
                                  r.predicted, 100 * (r.predicted - r.measured) / r.measured);
                    std::cout << line;
                }
        }
    }
    std::snprintf(line, sizeof line, "\nseed %llu, %d thread(s), %d pass(es), load average %.2f before, %.2f after\n",
                  static_cast<unsigned long long>(c.seed), threads, c.rounds, load_before, load_after);
    std::cout << line;
    return 0;
}

#endif  // LAMDA_WITH_XNNPACK
#endif  // LAMDA_WITH_LATENCY

// -1 when none of the latency subcommands was parsed; otherwise the exit code.
inline int run_latency_commands(const LatencyCli& c) {
    const bool any = (c.profile && c.profile->parsed()) || (c.predict && c.predict->parsed()) ||
                     (c.eval && c.eval->parsed());
    if (!any) return -1;
#if defined(LAMDA_WITH_LATENCY)
    try {
        if (c.predict->parsed()) return run_predict(c);
#if defined(LAMDA_WITH_XNNPACK)
        if (c.profile->parsed()) return run_profile(c);
        if (c.eval->parsed()) return run_eval(c);
#else
        std::cerr << "lamda: error: this lamda was built without XNNPACK, so it cannot measure; "
                     "`lamda predict` works from a profile made elsewhere\n";
        return 1;
#endif
    } catch (const lamda::ProfileError& e) {
        std::cerr << e.what() << '\n';
        return 1;
    }
    return 1;
#else
    std::cerr << "lamda: error: this lamda was built without the latency model (Eigen and simdjson); "
                 "install libeigen3-dev and libsimdjson-dev and rebuild\n";
    return 1;
#endif
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_LATENCY_HPP
