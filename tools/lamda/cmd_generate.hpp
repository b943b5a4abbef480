// tools/lamda/cmd_generate.hpp: `lamda generate TASK.json --out DIR`, the search.
// Included by main.cpp: add_generate_command() before parsing, run_generate() when parsed.
// Needs LAMDA_WITH_LATENCY (task files, journal, latency model); measuring needs XNNPACK and
// accuracy needs the trainer (LAMDA_WITH_TORCH), both optional.
#ifndef LAMDA_TOOLS_CMD_GENERATE_HPP
#define LAMDA_TOOLS_CMD_GENERATE_HPP

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <lamda/dsl/file.hpp>
#include <lamda/search/types.hpp>
#include "cmd_llm.hpp"

#if defined(LAMDA_WITH_AGENT)
#include <lamda/agent/agent.hpp>
#endif
#if defined(LAMDA_WITH_LATENCY)
#include <lamda/search/generate.hpp>
#endif
#if defined(LAMDA_WITH_MPI)
#include <lamda/search/mpi.hpp>
#endif

namespace lamda_cli {

struct GenerateArgs {
    std::string task;
    std::string out;
    std::string proposer = "offline";
    std::uint64_t seed = 1;
    bool resume = false;
    int max_candidates = 0;   // 0: the task's
    double max_seconds = 0;   // 0: the task's
    double max_total_seconds = 0;  // 0: the task's
    std::string profile;      // overrides the task's
    std::string objective;    // overrides the task's ("" keeps it)
    int final_top = 3;        // feasible candidates trained in full at the end, at most
    int train_threads = 1;    // libtorch threads (training never overlaps a measurement)
    int final_epochs = 0;     // epochs of the full trainings at the end; 0: the trainer's default (15)
    double final_erase = -1;  // random erasing probability of the full trainings; < 0: the trainer's default
    double proxy_slack = lamda::default_proxy_accuracy_slack;  // GenerateSetup::proxy_accuracy_slack
    int runs = 30;            // timed runs per measured candidate
    int confirm_runs = 300;   // timed runs confirming the best at the end
    bool json = false;
    bool quiet = false;
    LlmArgs llm;              // --llm-* (cmd_llm.hpp), for --proposer llm
    std::string device;       // --device URL[,URL...]: measure on lamda-agent(s) (docs/agent.md); a list: one per MPI rank
    int workers = 1;          // --workers N: candidates evaluated at once on this machine (threads)
    std::string start_from;     // --start-from MODEL: adapt this model (docs/adapt.md)
    std::string start_weights;  // --start-weights W: its weights (default MODEL.safetensors)
    double distill = 0;              // --distill W: the start model teaches the final trainings
    double distill_temperature = 4;  // --distill-temperature T
};

// Builds the trainer for a task's dataset (cmd_train.hpp's make_trainer when lamda has libtorch).
using TrainerFactory = std::function<std::unique_ptr<lamda::Trainer>(const lamda::Task&, std::uint64_t seed)>;

inline CLI::App* add_generate_command(CLI::App& app, GenerateArgs& a) {
    auto* cmd = app.add_subcommand(
        "generate",
        "Search for a model that meets a task's constraints (docs/generate.md): the proposer writes\n"
        "candidates, each is validated, analysed, its latency predicted and (when promising)\n"
        "measured, trained when the task has a dataset, and recorded in DIR/journal.jsonl.\n"
        "Writes DIR/best.lamda, DIR/report.json and DIR/report.html. Exits 0 when a feasible model\n"
        "was found, 1 when none was.");
    cmd->add_option("task", a.task, "Task file (JSON, docs/generate.md)")->required();
    cmd->add_option("--out", a.out, "Output directory (journal, report, best model)")->required();
    cmd->add_option("--proposer", a.proposer, "offline (built-in designer), random (baseline) or llm")
        ->check(CLI::IsMember({"offline", "random", "llm"}));
    cmd->add_option("--seed", a.seed, "Seed of the proposer (a search is deterministic under it)");
    cmd->add_flag("--resume", a.resume, "Continue the search recorded in DIR/journal.jsonl");
    cmd->add_option("--max-candidates", a.max_candidates, "Override the task's budget.max_candidates")
        ->check(CLI::Range(1, 1000000));
    cmd->add_option("--max-seconds", a.max_seconds, "Override the task's budget.max_seconds")
        ->check(CLI::Range(1.0, 1e7));
    cmd->add_option("--max-total-seconds", a.max_total_seconds,
                    "Override the task's budget.max_total_seconds: the search and the final training together "
                    "(the search keeps the final training's estimated time; its epochs are cut to what is left)")
        ->check(CLI::Range(1.0, 1e7));
    cmd->add_option("--profile", a.profile, "Latency profile (lamda profile); overrides the task's");
    cmd->add_option("--objective", a.objective,
                    "Override the task's objective: accuracy (needs the trainer) or capacity (no training)")
        ->check(CLI::IsMember({"accuracy", "capacity"}));
    cmd->add_option("--runs", a.runs, "Timed runs per measured candidate")->check(CLI::Range(3, 100000));
    cmd->add_option("--confirm-runs", a.confirm_runs, "Timed runs confirming the best model at the end")
        ->check(CLI::Range(3, 1000000));
    cmd->add_option("--final-top", a.final_top,
                    "With a trainer: train up to this many of the best candidates in full, best first, "
                    "until one meets min_accuracy")
        ->check(CLI::Range(1, 50));
    cmd->add_option("--final-epochs", a.final_epochs, "Epochs of the full trainings at the end (default 15)")
        ->check(CLI::Range(1, 1000));
    cmd->add_option("--final-erase", a.final_erase,
                    "Random erasing in the full trainings at the end: the probability of erasing a random "
                    "rectangle of each image (lamda train --erase; default 0: off)")
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--train-threads", a.train_threads, "Threads for training candidates (libtorch)")
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--proxy-slack", a.proxy_slack,
                    "A proxy-trained candidate is below_accuracy only when this far below min_accuracy")
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--workers", a.workers,
                    "Evaluate up to N candidates at once on this machine (threads, each with its own trainer; "
                    "a measurement never overlaps a training: docs/scale.md). Under mpirun the ranks are the workers")
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--start-from", a.start_from,
                    "Adapt this model (.lamda, or .onnx with its weights) instead of searching from the zoo: it is "
                    "candidate 0, evaluated with its own weights; later candidates inherit weights and are fine-tuned "
                    "(docs/adapt.md). With several --profile files (comma list) or --device URLs: one adapted model per "
                    "device and DIR/fleet.json");
    cmd->add_option("--start-weights", a.start_weights, "Weights of --start-from (default: MODEL with .safetensors)");
    cmd->add_option("--distill", a.distill,
                    "With --start-from: the final trainings also learn the start model's predictions (knowledge "
                    "distillation), this share of the loss (e.g. 0.5; default 0: the labels alone)")
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--distill-temperature", a.distill_temperature,
                    "Temperature softening the start model's predictions for --distill (default 4)")
        ->check(CLI::Range(0.05, 100.0));
    cmd->add_flag("--json", a.json, "Print a JSON summary at the end (report.json's best and stop)");
    cmd->add_flag("-q,--quiet", a.quiet, "No progress output");
    add_llm_options(cmd, a.llm, false);
#if defined(LAMDA_WITH_AGENT)
    cmd->add_option("--device", a.device,
                    "Measure candidates on the board running lamda-agent at this URL (token from "
                    "LAMDA_AGENT_TOKEN); if it stops answering, the search stops and --resume continues it. "
                    "Under mpirun a comma list: worker rank r measures on entry (r-1) mod n, rank 0 confirms on the first");
#endif
    return cmd;
}

#if defined(LAMDA_WITH_LATENCY)

namespace generate_cli {

inline std::atomic<bool>& interrupted() {
    static std::atomic<bool> flag{false};
    return flag;
}
extern "C" inline void on_interrupt(int) { interrupted().store(true); }

#if defined(LAMDA_WITH_MPI)
using MpiSessionPtr = const lamda::MpiSession*;
#else
using MpiSessionPtr = const void*;
#endif

// The --device list (comma-separated URLs); empty entries are an error.
inline std::vector<std::string> device_list(const std::string& text) {
    std::vector<std::string> out;
    if (text.empty()) return out;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t comma = text.find(',', pos);
        out.push_back(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (out.back().empty())
            throw lamda::Exception(lamda::Error(lamda::ErrorKind::usage, "--device '" + text + "': an empty URL in the list"));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

}  // namespace generate_cli

// One device's line of a fleet report (--start-from with several devices).
struct FleetRow {
    std::string device;  // the --profile file or --device URL
    std::string out;     // its search directory
    int exit = 0;
    std::optional<double> start_ms, start_test_accuracy, adapted_ms, adapted_test_accuracy;
    std::optional<int> best;
    std::size_t candidates = 0;
    double seconds = 0;
};

inline int run_generate_in(const GenerateArgs& a, const TrainerFactory& make_trainer, generate_cli::MpiSessionPtr mpi,
                           FleetRow* row = nullptr);

// Parses the flags into the library's options and calls lamda::generate (search/generate.hpp);
// prints the summary. Exit codes: ExitCode (core/error.hpp). Under mpirun/srun (lamda built with
// MPI), rank 0 searches and the other ranks evaluate (search/mpi.hpp); an error on any rank ends
// the job (the others would wait forever), after what was journaled is safe.
inline int run_generate(const GenerateArgs& a, const TrainerFactory& make_trainer) {
#if defined(LAMDA_WITH_MPI)
    lamda::MpiSession mpi;
    if (mpi.size() > 1) {
        try {
            return run_generate_in(a, make_trainer, &mpi);
        } catch (const std::exception& e) {
            std::cerr << "lamda: error (MPI rank " << mpi.rank() << " of " << mpi.size() << "): " << e.what() << "\n";
            mpi.abort(1);
        }
    }
#endif
    return run_generate_in(a, make_trainer, nullptr);
}

namespace generate_cli {

inline std::string ms_or_dash(const std::optional<double>& v, int digits) {
    return v ? lamda::detail::format_fixed(*v, digits) : std::string("-");
}

// --start-from with several devices: one adaptation per device, each in DIR/device_K, then
// DIR/fleet.json and a table on stdout.
inline int run_fleet(const GenerateArgs& a, const TrainerFactory& make_trainer, const std::vector<std::string>& profiles,
                     const std::vector<std::string>& devices) {
    using namespace lamda;
    namespace fs = std::filesystem;
    const std::size_t n = std::max(profiles.size(), devices.size());
    if (profiles.size() > 1 && devices.size() > 1 && profiles.size() != devices.size())
        throw Exception(Error(ErrorKind::usage, "--profile and --device lists of different lengths (" +
                                                    std::to_string(profiles.size()) + " and " +
                                                    std::to_string(devices.size()) + ")"));
    std::vector<FleetRow> rows;
    int worst = 0;
    for (std::size_t k = 0; k < n; ++k) {
        GenerateArgs b = a;
        b.profile = profiles.empty() ? std::string() : profiles[profiles.size() == 1 ? 0 : k];
        b.device = devices.empty() ? std::string() : devices[devices.size() == 1 ? 0 : k];
        b.out = (fs::path(a.out) / ("device_" + std::to_string(k + 1))).string();
        FleetRow row;
        row.device = !b.device.empty() && devices.size() > 1 ? b.device : b.profile;
        if (!b.device.empty() && profiles.size() > 1) row.device = b.profile + " @ " + b.device;
        row.out = b.out;
        if (!a.quiet) std::cerr << "lamda: fleet: device " << (k + 1) << " of " << n << ": " << row.device << "\n";
        row.exit = run_generate_in(b, make_trainer, nullptr, &row);
        worst = std::max(worst, row.exit);
        rows.push_back(row);
    }
    JsonWriter j;
    j.begin_object().field("start_from", std::string_view(a.start_from)).key("devices").begin_array();
    for (const FleetRow& r : rows) {
        j.begin_object().field("device", std::string_view(r.device)).field("out", std::string_view(r.out));
        j.field("start_ms", r.start_ms).field("start_test_accuracy", r.start_test_accuracy);
        j.field("adapted_ms", r.adapted_ms).field("adapted_test_accuracy", r.adapted_test_accuracy);
        if (r.best) j.field("best", *r.best); else j.key("best").null();
        j.field("candidates", static_cast<std::int64_t>(r.candidates)).field("seconds", r.seconds);
        j.end_object();
    }
    j.end_array().end_object();
    generate_detail::write_file_atomically((fs::path(a.out) / "fleet.json").string(), j.str() + "\n");
    std::cout << "device | start ms | start test acc | adapted ms | adapted test acc | seconds | out\n";
    for (const FleetRow& r : rows) {
        const auto pct = [](const std::optional<double>& v) {
            return v ? lamda::detail::format_fixed(*v * 100, 2) + "%" : std::string("-");
        };
        std::cout << r.device << " | " << ms_or_dash(r.start_ms, 4) << " | " << pct(r.start_test_accuracy) << " | "
                  << ms_or_dash(r.adapted_ms, 4) << " | " << pct(r.adapted_test_accuracy) << " | "
                  << lamda::detail::format_fixed(r.seconds, 0) << " | " << r.out << "\n";
    }
    std::cout << "wrote " << (fs::path(a.out) / "fleet.json").string() << "\n";
    return worst;
}

// The --profile list (comma-separated paths).
inline std::vector<std::string> profile_list(const std::string& text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (!text.empty()) {
        const std::size_t comma = text.find(',', pos);
        out.push_back(text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos));
        if (out.back().empty())
            throw lamda::Exception(lamda::Error(lamda::ErrorKind::usage, "--profile '" + text + "': an empty path in the list"));
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    return out;
}

}  // namespace generate_cli

inline int run_generate_in(const GenerateArgs& a, const TrainerFactory& make_trainer, generate_cli::MpiSessionPtr mpi,
                           FleetRow* row) {
    using namespace lamda;
#if defined(LAMDA_WITH_MPI)
    const int rank = mpi ? mpi->rank() : 0;
    const int ranks = mpi ? mpi->size() : 1;
#else
    (void)mpi;
    const int rank = 0, ranks = 1;
#endif
    const std::vector<std::string> devices = generate_cli::device_list(a.device);
    if (!a.start_from.empty() && ranks < 2 && !row) {
        const std::vector<std::string> profiles =
            a.profile.find(',') != std::string::npos ? generate_cli::profile_list(a.profile) : std::vector<std::string>{};
        if (profiles.size() > 1 || devices.size() > 1)
            return generate_cli::run_fleet(a, make_trainer, profiles.empty() && !a.profile.empty() ? std::vector<std::string>{a.profile} : profiles, devices);
    }
    if (devices.size() > 1 && ranks < 2)
        throw Exception(Error(ErrorKind::usage, "--device: a list of boards needs mpirun (one board per rank); "
                                                "give one URL to run as one process"));
    if (ranks > 1 && a.workers > 1)
        throw Exception(Error(ErrorKind::usage, "--workers " + std::to_string(a.workers) + " under mpirun: the " +
                                                    std::to_string(ranks) + " ranks are the workers; drop --workers"));
    // This rank's board: worker rank r measures on entry (r-1) mod n; rank 0 confirms on the first.
    const std::string device =
        devices.empty() ? std::string()
                        : devices[rank == 0 ? 0 : static_cast<std::size_t>(rank - 1) % devices.size()];

    Task task = read_task(a.task);
    if (a.max_candidates > 0) task.budget.max_candidates = a.max_candidates;
    if (a.max_total_seconds > 0) {
        task.budget.max_total_seconds = a.max_total_seconds;
        if (!(a.max_seconds > 0)) task.budget.max_seconds = std::max(task.budget.max_seconds, a.max_total_seconds);
    }
    if (a.max_seconds > 0) task.budget.max_seconds = a.max_seconds;
    if (!a.profile.empty()) task.profile = a.profile;
    // The device the latencies are for, read once: a profile's (its thread count when adapting,
    // its ISA for the designer's channel tile, its CPU and latency model for the LLM's prompt;
    // the loop loads the profile itself), else this machine when it measures. A board behind
    // --device is not known here: multiples of 8, no CPU line.
    std::optional<LatencyProfile> target_profile;
    if (!task.profile.empty()) target_profile = read_latency_profile(task.profile);
    const DeviceInfo target = target_profile ? device_info_of(target_profile->fingerprint)
                              : devices.empty() ? describe_device()
                                                : DeviceInfo{};
    [[maybe_unused]] const LatencyModel* target_model = target_profile ? &target_profile->model : nullptr;
    // Both designers' width grid: the target's channel tile.
    const int channel_tile = channel_step_for(target.xnnpack_isa, task.precision == TaskPrecision::Int8);
    if (!a.objective.empty()) {
        task.objective = a.objective == "accuracy" ? Objective::Accuracy : Objective::Capacity;
        task.objective_given = true;
    }

    std::unique_ptr<Proposer> proposer;
    std::shared_ptr<const StartModel> start;
    if (a.distill > 0 && a.start_from.empty())
        throw Exception(Error(ErrorKind::usage, "--distill: the teacher is the start model: give --start-from"));
    if (!a.start_from.empty()) {
        if (ranks > 1 || a.workers > 1)
            throw Exception(Error(ErrorKind::usage, "--start-from: adapting a model runs one evaluation at a time "
                                                    "(no --workers, no mpirun) in this version"));
        if (a.proposer == "random")
            throw Exception(Error(ErrorKind::usage, "--start-from works with --proposer offline (the designer edits "
                                                    "the start model) or llm (the model is shown it and edits it), "
                                                    "not random"));
        // A profile's own thread count is the device's (1 and 2 threads are two devices).
        if (target_profile) task.constraints.threads = target_profile->fingerprint.threads;
        start = std::make_shared<const StartModel>(load_start_model(a.start_from, a.start_weights, task));
        if (!a.quiet && start->folded)
            std::cerr << "lamda: " << a.start_from << ": its weights have batch norm folded: starting from the folded model\n";
        if (a.proposer == "offline") proposer = std::make_unique<AdaptDesigner>(a.seed, *start, channel_tile);
#if defined(LAMDA_WITH_LLM)
        else proposer = std::make_unique<StartModelFirst>(*start, make_llm_proposer(a.llm, task, a.quiet, target, target_model, 1, start->dsl));
#else
        else throw Exception(Error(ErrorKind::unsupported,
                                   "--proposer llm: this lamda was built without the LLM generator (cpp-httplib)"));
#endif
    } else if (rank > 0) {
        // A worker rank proposes nothing.
    } else if (a.proposer == "offline") {
        DesignBounds bounds;  // widths on the target's channel tile
        bounds.channel_step = channel_tile;
        proposer = std::make_unique<OfflineDesigner>(a.seed, bounds);
    }
    else if (a.proposer == "random") proposer = std::make_unique<RandomProposer>(a.seed);
#if defined(LAMDA_WITH_LLM)
    else proposer = make_llm_proposer(a.llm, task, a.quiet, target, target_model, ranks > 1 ? ranks - 1 : a.workers);
#else
    else throw Exception(Error(ErrorKind::unsupported,
                               "--proposer llm: this lamda was built without the LLM generator (cpp-httplib); "
                               "install libcpp-httplib-dev and rebuild, or use --proposer offline or random"));
#endif

    // The trainer decides the objective when the task leaves it open.
    std::unique_ptr<Trainer> trainer;
    if (!task.dataset.empty() && task.objective_given && task.objective == Objective::Capacity) {
        // Capacity asked for explicitly: nothing to train.
    } else if (!task.dataset.empty()) {
        if (make_trainer) {
            trainer = make_trainer(task, a.seed);
        } else {
            std::cerr << "lamda: warning: lamda was built without a trainer (libtorch): the dataset '"
                      << task.dataset << "' is not used and the search maximises capacity (MACs)\n";
        }
    }

    GenerateOptions o;
    o.out_dir = a.out;
    o.task_file = a.task;
    o.seed = a.seed;
    o.resume = a.resume;
    o.final_top = a.final_top;
    o.proxy_slack = a.proxy_slack;
    o.runs = a.runs;
    o.confirm_runs = a.confirm_runs;
    o.status = a.quiet || rank > 0 ? nullptr : &std::cerr;
    o.status_is_terminal = ::isatty(STDERR_FILENO) == 1;
    o.start = start;
    if (a.distill > 0 && !trainer && !a.quiet)
        std::cerr << "lamda: warning: --distill: nothing is trained in this search, so nothing is distilled\n";
    o.distill_weight = trainer ? a.distill : 0.0;
    o.distill_temperature = a.distill_temperature;
#if defined(LAMDA_WITH_AGENT)
    if (!device.empty()) {
        auto client = std::make_shared<AgentClient>(device);
        const int threads = task.constraints.threads;
        o.measure_with = [threads, client](int runs, int warmup, bool int8) {
            return agent_measure(client, threads, runs, warmup, int8);
        };
        // A board that stops answering (after the client's retries) stops the search.
        o.device_lost = [](const std::exception& e) {
            const auto* agent = dynamic_cast<const AgentError*>(&e);
            return agent && (agent->status == 0 || agent->status >= 500);
        };
        o.device_description = "lamda-agent " + device + ", " + std::to_string(threads) + " thread(s)";
    }
#endif
    // Parallel evaluation: the other MPI ranks, or --workers threads (each with its own trainer).
    std::vector<std::unique_ptr<Trainer>> worker_trainers;
#if defined(LAMDA_WITH_MPI)
    std::shared_ptr<MpiRunner> mpi_runner;
    if (mpi && ranks > 1) {
        if (rank > 0) {
            Task t = task;
            resolve_objective(t, trainer != nullptr, a.task);
            auto lost = std::make_shared<generate_detail::LostBoard>();
            mpi_serve(*mpi, t, evaluation_setup(t, o, trainer.get(), lost), std::filesystem::absolute(a.out).string(),
                      [lost] { return lost->lost(); }, /*local_measure=*/device.empty());
            return exit_code(ExitCode::ok);
        }
        // (rank 0's own measurements, for "measure_on": "one_device", pause this node's trainings)
        mpi_runner = std::make_shared<MpiRunner>(*mpi, device.empty() ? std::filesystem::absolute(a.out).string()
                                                                      : std::string());
        o.runner = mpi_runner;
        o.device_description = std::to_string(ranks - 1) + " MPI worker ranks (each candidate's evaluated_by names its "
                               "rank and node)" + (devices.empty() ? std::string(", on their CPUs")
                                                                    : ", on lamda-agent " + a.device) +
                               (task.measure_one_device ? "; every latency measured by rank 0" : "");
    }
#endif
    if (a.workers > 1) {
        o.workers = a.workers;
        if (trainer)
            for (int i = 0; i < a.workers; ++i) {
                worker_trainers.push_back(make_trainer(task, a.seed));
                o.worker_trainers.push_back(worker_trainers.back().get());
            }
    }
    generate_cli::interrupted().store(false);
    o.should_stop = [] { return generate_cli::interrupted().load(); };
    auto previous_handler = std::signal(SIGINT, generate_cli::on_interrupt);
    GenerateOutcome r;
    try {
        r = generate(task, *proposer, trainer.get(), o);
    } catch (...) {
        std::signal(SIGINT, previous_handler);
        throw;
    }
    std::signal(SIGINT, previous_handler);
#if defined(LAMDA_WITH_MPI)
    if (mpi_runner) mpi_runner->stop_workers();
#endif

    namespace fs = std::filesystem;
    std::optional<double> best_ms, best_test;
    if (r.best) {
        best_ms = r.result.records[*r.best].measured_ms;
        for (const auto& c : r.info.confirmations)
            if (c.position == *r.best) best_ms = c.median_ms;
        for (const auto& f : r.info.final_trainings)
            if (f.position == *r.best) best_test = f.result.test_accuracy;
    }
    if (row) {
        row->start_ms = r.start_ms;
        row->start_test_accuracy = r.start_test_accuracy;
        row->adapted_ms = best_ms;
        row->adapted_test_accuracy = best_test;
        if (r.best) row->best = r.result.records[*r.best].index;
        row->candidates = r.result.records.size();
        row->seconds = r.info.total_seconds;
    }
    if (start && !a.quiet) {
        const auto pct = [](const std::optional<double>& v) {
            return v ? detail::format_fixed(*v * 100, 2) + "%" : std::string("-");
        };
        std::cerr << "lamda: start model: " << generate_cli::ms_or_dash(r.start_ms, 4) << " ms, test accuracy "
                  << pct(r.start_test_accuracy) << "; adapted: " << generate_cli::ms_or_dash(best_ms, 4)
                  << " ms, test accuracy " << pct(best_test) << "\n";
    }
    if (a.json) {
        JsonWriter j;
        j.begin_object().field("candidates", static_cast<std::int64_t>(r.result.records.size()))
            .field("stop_reason", r.result.stop_reason)
            .field("feasible", static_cast<std::int64_t>(r.ranked.size()));
        if (r.best) {
            const CandidateRecord& b = r.result.records[*r.best];
            j.key("best").begin_object().field("index", b.index).field("macs", b.macs).field("params", b.params);
            j.field("precision", b.precision.empty() ? std::string("fp32") : b.precision);
            if (b.measured_ms) j.field("measured_ms", *b.measured_ms);
            for (const auto& c : r.info.confirmations)
                if (c.position == *r.best) j.field("confirmed_ms", c.median_ms);
            if (b.accuracy) j.field("val_accuracy", *b.accuracy);
            for (const auto& f : r.info.final_trainings)
                if (f.position == *r.best) {
                    j.field("final_val_accuracy", f.result.val_accuracy);
                    j.field("test_accuracy", f.result.test_accuracy);
                    if (f.result.float_test_accuracy) j.field("float_test_accuracy", *f.result.float_test_accuracy);
                }
            j.end_object();
        } else {
            j.key("best").null();
        }
        j.end_object();
        std::cout << j.str() << "\n";
    }
    if (!r.best) {
        std::cerr << "lamda: no feasible model within the budget: "
                  << why_no_best(r.constraints, r.result.records, r.ranked.size(), r.info) << "; see "
                  << (fs::path(a.out) / "report.html").string() << "\n";
        return exit_code(ExitCode::failed);
    }
    if (!a.quiet && !a.json) {
        const CandidateRecord& b = r.result.records[*r.best];
        std::cout << "best: " << candidate_summary(b) << "\n"
                  << "wrote " << (fs::path(a.out) / "best.lamda").string() << ", report.json, report.html\n";
    }
    return exit_code(ExitCode::ok);
}

#else

inline int run_generate(const GenerateArgs&, const TrainerFactory&) {
    std::cerr << "lamda: error: generate needs lamda built with the latency model (Eigen and simdjson)\n";
    return lamda::exit_code(lamda::ExitCode::failed);
}

#endif

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_GENERATE_HPP
