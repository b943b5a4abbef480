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

namespace lamda_cli {

struct GenerateArgs {
    std::string task;
    std::string out;
    std::string proposer = "offline";
    std::uint64_t seed = 1;
    bool resume = false;
    int max_candidates = 0;   // 0: the task's
    double max_seconds = 0;   // 0: the task's
    std::string profile;      // overrides the task's
    std::string objective;    // overrides the task's ("" keeps it)
    int final_top = 3;        // feasible candidates trained in full at the end, at most
    int train_threads = 1;    // libtorch threads (training never overlaps a measurement)
    int final_epochs = 0;     // epochs of the full trainings at the end; 0: the trainer's default (15)
    double proxy_slack = 0.15;  // GenerateSetup::proxy_accuracy_slack
    int runs = 30;            // timed runs per measured candidate
    int confirm_runs = 300;   // timed runs confirming the best at the end
    bool json = false;
    bool quiet = false;
    LlmArgs llm;              // --llm-* (cmd_llm.hpp), for --proposer llm
    std::string device;       // --device URL: measure on that lamda-agent (docs/agent.md)
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
    cmd->add_option("--train-threads", a.train_threads, "Threads for training candidates (libtorch)")
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--proxy-slack", a.proxy_slack,
                    "A proxy-trained candidate is below_accuracy only when this far below min_accuracy")
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_flag("--json", a.json, "Print a JSON summary at the end (report.json's best and stop)");
    cmd->add_flag("-q,--quiet", a.quiet, "No progress output");
    add_llm_options(cmd, a.llm, false);
#if defined(LAMDA_WITH_AGENT)
    cmd->add_option("--device", a.device,
                    "Measure candidates on the board running lamda-agent at this URL (token from "
                    "LAMDA_AGENT_TOKEN); if it stops answering, the search stops and --resume continues it");
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

}  // namespace generate_cli

// Parses the flags into the library's options and calls lamda::generate (search/generate.hpp);
// prints the summary. Exit codes: ExitCode (core/error.hpp).
inline int run_generate(const GenerateArgs& a, const TrainerFactory& make_trainer) {
    using namespace lamda;

    Task task = read_task(a.task);
    if (a.max_candidates > 0) task.budget.max_candidates = a.max_candidates;
    if (a.max_seconds > 0) task.budget.max_seconds = a.max_seconds;
    if (!a.profile.empty()) task.profile = a.profile;
    if (!a.objective.empty()) {
        task.objective = a.objective == "accuracy" ? Objective::Accuracy : Objective::Capacity;
        task.objective_given = true;
    }

    std::unique_ptr<Proposer> proposer;
    if (a.proposer == "offline") proposer = std::make_unique<OfflineDesigner>(a.seed);
    else if (a.proposer == "random") proposer = std::make_unique<RandomProposer>(a.seed);
#if defined(LAMDA_WITH_LLM)
    else proposer = make_llm_proposer(a.llm, task, a.quiet);
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
    o.status = a.quiet ? nullptr : &std::cerr;
    o.status_is_terminal = ::isatty(STDERR_FILENO) == 1;
#if defined(LAMDA_WITH_AGENT)
    if (!a.device.empty()) {
        auto client = std::make_shared<AgentClient>(a.device);
        const int threads = task.constraints.threads;
        o.measure_with = [threads, client](int runs, int warmup) { return agent_measure(client, threads, runs, warmup); };
        // A board that stops answering (after the client's retries) stops the search.
        o.device_lost = [](const std::exception& e) {
            const auto* agent = dynamic_cast<const AgentError*>(&e);
            return agent && (agent->status == 0 || agent->status >= 500);
        };
        o.device_description = "lamda-agent " + a.device + ", " + std::to_string(threads) + " thread(s)";
    }
#endif
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

    namespace fs = std::filesystem;
    if (a.json) {
        JsonWriter j;
        j.begin_object().field("candidates", static_cast<std::int64_t>(r.result.records.size()))
            .field("stop_reason", r.result.stop_reason)
            .field("feasible", static_cast<std::int64_t>(r.ranked.size()));
        if (r.best) {
            const CandidateRecord& b = r.result.records[*r.best];
            j.key("best").begin_object().field("index", b.index).field("macs", b.macs).field("params", b.params);
            if (b.measured_ms) j.field("measured_ms", *b.measured_ms);
            for (const auto& c : r.info.confirmations)
                if (c.position == *r.best) j.field("confirmed_ms", c.median_ms);
            if (b.accuracy) j.field("val_accuracy", *b.accuracy);
            for (const auto& f : r.info.final_trainings)
                if (f.position == *r.best) j.field("test_accuracy", f.result.test_accuracy);
            j.end_object();
        } else {
            j.key("best").null();
        }
        j.end_object();
        std::cout << j.str() << "\n";
    }
    if (!r.best) {
        std::cerr << "lamda: no feasible model within the budget (" << r.result.records.size()
                  << " candidates); see " << (fs::path(a.out) / "report.html").string() << "\n";
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
