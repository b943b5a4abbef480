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
#include <lamda/search/loop.hpp>
#include <lamda/search/journal.hpp>
#include <lamda/search/report.hpp>
#include <lamda/search/task.hpp>
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

inline std::string fixed(double v, int digits) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(digits);
    o << v;
    return o.str();
}

inline std::string one_line(const lamda::CandidateRecord& r) {
    std::string s = "#" + std::to_string(r.index) + " " + std::string(lamda::verdict_name(r.verdict));
    if (r.macs >= 0) s += "  " + fixed(double(r.macs) / 1e6, 2) + " MMACs  " + std::to_string(r.params) + " params";
    if (r.predicted_ms) s += "  pred " + fixed(*r.predicted_ms, 4) + " ms";
    if (r.measured_ms) s += "  meas " + fixed(*r.measured_ms, 4) + " ms";
    if (r.accuracy) s += "  acc " + fixed(*r.accuracy * 100, 2) + "%";
    return s;
}

inline void write_text_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << text;
        f.flush();
        if (!f) throw std::runtime_error(tmp + ": cannot write");
    }
    std::filesystem::rename(tmp, path);  // readers never see half a report
}

}  // namespace generate_cli


inline int run_generate(const GenerateArgs& a, const TrainerFactory& make_trainer) {
    using namespace lamda;
    namespace fs = std::filesystem;
    using generate_cli::one_line;

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
    else throw std::runtime_error("--proposer llm: this lamda was built without the LLM generator (cpp-httplib); "
                                  "install libcpp-httplib-dev and rebuild, or use --proposer offline or random");
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
    if (!task.objective_given) task.objective = trainer ? Objective::Accuracy : Objective::Capacity;
    if (task.objective == Objective::Accuracy && !trainer)
        throw std::runtime_error(a.task + ": objective \"accuracy\" needs a dataset and a lamda built with "
                                 "libtorch; use \"capacity\" or add a dataset");
    if (task.constraints.min_accuracy && !trainer)
        std::cerr << "lamda: warning: min_accuracy cannot be checked without a trainer; it is ignored\n";

    std::optional<LatencyProfile> profile;
    if (!task.profile.empty()) {
        profile = read_latency_profile(task.profile);
        const std::string w = fingerprint_warning(profile->fingerprint, current_fingerprint(task.constraints.threads));
        if (!w.empty()) std::cerr << "lamda: warning: " << task.profile << ": " << w << "\n";
    } else if (!a.quiet) {
        std::cerr << "lamda: no latency profile (task \"profile\" or --profile): every candidate is measured\n";
    }

    fs::create_directories(a.out);
    const std::string journal_path = (fs::path(a.out) / "journal.jsonl").string();
    std::vector<CandidateRecord> resumed;
    if (a.resume) {
        JournalContents c = repair_journal(journal_path);
        for (const std::string& w : c.warnings) std::cerr << w << "\n";
        if (c.has_header) {
            const std::string why = journal_mismatch(c.header, task, proposer->name(), a.seed);
            if (!why.empty()) throw std::runtime_error(journal_path + ": " + why);
        }
        resumed = std::move(c.records);
        if (!a.quiet) std::cerr << "lamda: resuming after " << resumed.size() << " recorded candidates\n";
    } else {
        std::error_code ec;
        if (fs::exists(journal_path, ec) && fs::file_size(journal_path, ec) > 0)
            throw std::runtime_error(journal_path + " exists: pass --resume to continue that search, "
                                     "or choose another --out directory");
    }
    JournalHeader header;
    header.task = task;
    header.proposer = proposer->name();
    header.seed = a.seed;
    JournalWriter journal(journal_path, header);

    GenerateSetup setup;
    if (profile) setup.latency = &profile->model;
    // measure_with(runs, warmup): this machine, or the board behind --device.
    std::function<std::function<Measurement(const Graph&)>(int, int)> measure_with;
#if defined(LAMDA_WITH_XNNPACK)
    measure_with = [&task](int runs, int warmup) { return xnnpack_measure(task.constraints.threads, runs, warmup); };
#endif
    // A board that stops answering (after the client's retries) stops the search; the candidate it
    // was measuring is left out of the journal, so that --resume measures it once the board is back.
    auto device_lost = std::make_shared<std::string>();
#if defined(LAMDA_WITH_AGENT)
    if (!a.device.empty()) {
        auto client = std::make_shared<AgentClient>(a.device);
        measure_with = [&task, client, device_lost](int runs, int warmup) -> std::function<Measurement(const Graph&)> {
            auto measure = agent_measure(client, task.constraints.threads, runs, warmup);
            return [measure, device_lost](const Graph& g) {
                try {
                    return measure(g);
                } catch (const AgentError& e) {
                    if (e.status == 0 || e.status >= 500) *device_lost = e.what();
                    throw;
                }
            };
        };
    }
#endif
    if (measure_with) setup.measure = measure_with(a.runs, 5);
    if (!setup.latency && !setup.measure)
        throw std::runtime_error("no way to judge latency: give a latency profile (this lamda has no executor)");
    setup.trainer = trainer.get();
    setup.proxy_accuracy_slack = a.proxy_slack;
    setup.on_record = [&journal, device_lost](const CandidateRecord& r) {
        if (!device_lost->empty() && r.verdict == Verdict::Failed) return;  // measured again on --resume
        journal.append(r);
    };
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    const auto start = std::chrono::steady_clock::now();
    setup.on_progress = [&](const CandidateRecord& r, const std::vector<CandidateRecord>& all) {
        if (a.quiet) return;
        const auto ranked = rank_feasible(all, task.objective);
        std::string best = "none feasible yet";
        if (!ranked.empty()) best = "best " + one_line(all[ranked.front()]);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const std::string head = "[" + std::to_string(all.size()) + "/" + std::to_string(task.budget.max_candidates) +
                                 " " + generate_cli::fixed(s, 0) + "s] ";
        if (tty) {
            std::string line = head + one_line(r) + " | " + best;
            if (line.size() > 150) line.resize(150);
            std::cerr << "\r\033[K" << line << std::flush;
        } else {
            std::cerr << head << one_line(r) << "  (" << r.reason << ")\n";
        }
    };
    generate_cli::interrupted().store(false);
    setup.should_stop = [device_lost] { return generate_cli::interrupted().load() || !device_lost->empty(); };
    auto previous_handler = std::signal(SIGINT, generate_cli::on_interrupt);

    GenerateResult result = run_generation(task, *proposer, setup, std::move(resumed));
    std::signal(SIGINT, previous_handler);
    if (!a.quiet) {
        if (tty) std::cerr << "\n";
        std::cerr << "lamda: stopped (" << result.stop_reason << ") after " << result.records.size()
                  << " candidates, " << result.duplicates << " repeats skipped\n";
    }
    if (!device_lost->empty())
        throw std::runtime_error(*device_lost + "\nthe search stopped; its journal is in " + journal_path +
                                 ": run the same command with --resume once the board answers again");

    // The best feasible candidates, confirmed with a longer measurement (a candidate that only
    // passed on a lucky run is not handed over) and, with a trainer, trained in full.
    ReportInfo info;
    info.objective = task.objective;
    info.proposer = proposer->name();
    info.seed = a.seed;
    info.device = describe_device().cpu_model + ", " + std::to_string(task.constraints.threads) + " thread(s)";
#if defined(LAMDA_WITH_AGENT)
    if (!a.device.empty()) info.device = "lamda-agent " + a.device + ", " + std::to_string(task.constraints.threads) + " thread(s)";
#endif
    info.stop_reason = result.stop_reason;
    const StageSeconds& st = result.stage_seconds;
    info.stage_seconds = {{"propose", st.propose}, {"validate", st.validate}, {"predict", st.predict},
                          {"measure", st.measure}, {"train", st.train}};
    const std::vector<std::size_t> ranked = rank_feasible(result.records, task.objective);
    std::vector<std::size_t> confirmed;  // best first, meeting the latency limit on a longer measurement
    for (std::size_t index : ranked) {
#if defined(LAMDA_WITH_XNNPACK)
        if (task.constraints.latency_ms > 0 && measure_with) {
            const Graph g = parse_dsl_or_throw(result.records[index].dsl, "best");
            const Measurement m = measure_with(a.confirm_runs, 20)(g);
            const bool meets = m.median_ms <= task.constraints.latency_ms;
            if (!a.quiet)
                std::cerr << "lamda: confirming #" << index << ": " << generate_cli::fixed(m.median_ms, 4)
                          << " ms median over " << a.confirm_runs << " runs (" << (meets ? "meets" : "misses")
                          << " the " << task.constraints.latency_ms << " ms budget)\n";
            info.confirmations.push_back({index, m.median_ms, a.confirm_runs});
            if (!meets) continue;
        }
#endif
        confirmed.push_back(index);
        if (confirmed.size() >= static_cast<std::size_t>(trainer ? a.final_top : 1)) break;
    }
    std::optional<std::size_t> best;
    if (!trainer) {
        if (!confirmed.empty()) best = confirmed.front();
    } else {
        // Full training, best first, until one reaches min_accuracy on the validation split.
        for (std::size_t index : confirmed) {
            const std::string weights = (fs::path(a.out) / ("candidate_" + std::to_string(index) + ".safetensors")).string();
            if (!a.quiet) std::cerr << "lamda: training #" << index << " in full\n";
            const FinalTraining f = trainer->train_final(parse_dsl_or_throw(result.records[index].dsl, "best"), weights);
            info.final_trainings.push_back({index, f, weights});
            if (!a.quiet)
                std::cerr << "lamda: #" << index << ": validation " << generate_cli::fixed(f.val_accuracy * 100, 2)
                          << "%, test " << generate_cli::fixed(f.test_accuracy * 100, 2) << "% after " << f.epochs
                          << " epochs (" << generate_cli::fixed(f.train_seconds, 0) << " s)\n";
            if (task.constraints.min_accuracy && f.val_accuracy < *task.constraints.min_accuracy) continue;
            best = index;
            fs::copy_file(weights, fs::path(a.out) / "best.safetensors", fs::copy_options::overwrite_existing);
            break;
        }
    }
    info.best = best;
    info.no_best = !best;
    info.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() +
                         (result.resumed > 0 ? result.records[static_cast<std::size_t>(result.resumed) - 1].elapsed_s : 0.0);

    if (best) {
        const CandidateRecord& b = result.records[*best];
        std::string text = "# Generated by lamda " + std::string(version_string) + " for task '" + task.name +
                           "' (candidate #" + std::to_string(b.index) + ", " + std::string(proposer->name()) +
                           " proposer, seed " + std::to_string(a.seed) + ")\n# " + one_line(b) + "\n" + b.dsl;
        generate_cli::write_text_file((fs::path(a.out) / "best.lamda").string(), text);
    }
    generate_cli::write_text_file((fs::path(a.out) / "report.json").string(), report_json(task, result.records, info));
    generate_cli::write_text_file((fs::path(a.out) / "report.html").string(), report_html(task, result.records, info));

    if (a.json) {
        JsonWriter j;
        j.begin_object().field("candidates", static_cast<std::int64_t>(result.records.size()))
            .field("stop_reason", result.stop_reason)
            .field("feasible", static_cast<std::int64_t>(ranked.size()));
        if (best) {
            const CandidateRecord& b = result.records[*best];
            j.key("best").begin_object().field("index", b.index).field("macs", b.macs).field("params", b.params);
            if (b.measured_ms) j.field("measured_ms", *b.measured_ms);
            for (const auto& c : info.confirmations)
                if (c.position == *best) j.field("confirmed_ms", c.median_ms);
            if (b.accuracy) j.field("val_accuracy", *b.accuracy);
            for (const auto& f : info.final_trainings)
                if (f.position == *best) j.field("test_accuracy", f.result.test_accuracy);
            j.end_object();
        } else {
            j.key("best").null();
        }
        j.end_object();
        std::cout << j.str() << "\n";
    }
    if (!best) {
        std::cerr << "lamda: no feasible model within the budget (" << result.records.size()
                  << " candidates); see " << (fs::path(a.out) / "report.html").string() << "\n";
        return 1;
    }
    if (!a.quiet && !a.json) {
        const CandidateRecord& b = result.records[*best];
        std::cout << "best: #" << b.index << " " << one_line(b) << "\n"
                  << "wrote " << (fs::path(a.out) / "best.lamda").string() << ", report.json, report.html\n";
    }
    return 0;
}

#else

inline int run_generate(const GenerateArgs&, const TrainerFactory&) {
    std::cerr << "lamda: error: generate needs lamda built with the latency model (Eigen and simdjson)\n";
    return 1;
}

#endif

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_GENERATE_HPP
