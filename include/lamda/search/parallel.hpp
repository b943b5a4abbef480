// lamda/search/parallel.hpp: the generation loop with several candidates in flight (docs/scale.md).
// The proposer, the screening (parse, analysis, prediction, dedup), the journal and the report
// stay in the calling thread; the expensive steps of a candidate (measurement, proxy training:
// loop.hpp's run_candidate) go to a CandidateRunner: N threads on this node (ThreadRunner,
// `lamda generate --workers N`) or N-1 MPI ranks (search/mpi.hpp, `mpirun -n N lamda generate`).
//
//   lamda::ThreadRunner runner(task, worker_setups, "runs/demo");   // one GenerateSetup per worker
//   GenerateResult r = lamda::run_generation_parallel(task, proposer, setup, runner, resumed);
//
// Contract: records are journaled (setup.on_record) in the order they finish, index = position,
// each candidate once; the proposer sees the pending ones (Proposer::propose_next), so N
// workers get N different designs. A search with one slot decides exactly what run_generation()
// decides. A worker's exception becomes a Failed record (run_candidate never throws for a
// candidate); a runner that loses a worker throws (MPI: Open MPI ends the job), after every record
// returned so far was journaled: --resume continues. Measurements on one node never overlap
// training on that node (NodeGate: readers-writer lock, writer first, on node-local files); a
// trainer that calls Trainer::set_between_steps's hook pauses between mini-batches while a
// measurement runs, so a measurement waits one step of each training, not whole trainings.
// Needs LAMDA_WITH_LATENCY and POSIX (flock).
#ifndef LAMDA_SEARCH_PARALLEL_HPP
#define LAMDA_SEARCH_PARALLEL_HPP

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/search/parallel.hpp needs LAMDA_WITH_LATENCY (the latency model; CMake: link lamda::latency)"
#else

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../detail/hash.hpp"
#include "../detail/json_write.hpp"
#include "../exception.hpp"
#include "journal.hpp"
#include "loop.hpp"

namespace lamda {

// This machine's name, for records' evaluated_by.
inline std::string node_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
    return std::string(buf);
}

// Runs screened candidates somewhere else (threads, MPI ranks). Used from one thread.
class CandidateRunner {
public:
    virtual ~CandidateRunner() = default;
    // The search's own side ("rank 0 @ host"), named in records it measured itself (a task's
    // "measure_on": "one_device").
    virtual std::string search_side_name() const { return "main @ " + node_name(); }
    // Runs `timing` (a measurement, or the pace reference's) on the search's side, under this
    // node's gate where the runner has one.
    virtual void while_measuring(const std::function<void()>& timing) { timing(); }
    // Candidates it can run at once (>= 1).
    virtual int slots() const = 0;
    // Starts `screened` (a record whose screening left it undecided) under `ticket`.
    virtual void submit(std::uint64_t ticket, const CandidateRecord& screened) = 0;
    // Blocks until a submitted candidate finishes; returns its ticket, its record (verdict
    // decided, evaluated_by set) and the seconds its worker spent measuring and training.
    struct Done {
        std::uint64_t ticket = 0;
        CandidateRecord record;
        StageSeconds stage_seconds;
    };
    virtual Done wait() = 0;
};

// The messages between the search and a remote worker (search/mpi.hpp): one JSON object each,
// the record written and read by the journal's own writer and reader (so every field is bounded
// and checked the same way). A job: {"ticket":N,"record":{...}}; a result adds "measure_s" and
// "train_s" (the worker's stage seconds).
namespace runner_wire {

inline std::string encode(std::uint64_t ticket, const CandidateRecord& r, const StageSeconds* stages = nullptr) {
    JsonWriter j;
    j.begin_object();
    j.field("ticket", ticket);
    if (stages) {
        j.field("measure_s", stages->measure);
        j.field("train_s", stages->train);
    }
    j.key("record");
    write_candidate_json(j, r, false);
    j.end_object();
    return j.str();
}

struct Decoded {
    std::uint64_t ticket = 0;
    CandidateRecord record;
    StageSeconds stage_seconds;
};

// Throws JournalError naming `where` (e.g. "MPI message from rank 2") on anything malformed.
inline Decoded decode(std::string_view text, const std::string& where) {
    const journal_detail::Reader r(where, "message");
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(text);
    const simdjson::dom::element doc = r.parse(parser, padded);
    Decoded d;
    d.ticket = r.uinteger(r.at(doc, "ticket", ""), "ticket");
    if (r.has(doc, "measure_s")) d.stage_seconds.measure = r.num(r.at(doc, "measure_s", ""), "measure_s");
    if (r.has(doc, "train_s")) d.stage_seconds.train = r.num(r.at(doc, "train_s", ""), "train_s");
    d.record = journal_detail::parse_candidate(r, r.at(doc, "record", ""));
    return d;
}

}  // namespace runner_wire

// run_generation() with up to runner.slots() candidates being measured/trained at once. With
// task.measure_one_device, every measurement is taken here, by `setup.measure` (through
// runner.while_measuring), before the candidate goes to a worker to be trained; the workers do not
// measure, and a record's evaluated_by says "...; measured by <search side>".
inline GenerateResult run_generation_parallel(const Task& task, Proposer& proposer, const GenerateSetup& setup,
                                              CandidateRunner& runner, std::vector<CandidateRecord> resumed = {}) {
    using clock = std::chrono::steady_clock;
    GenerateResult result;
    result.records = std::move(resumed);
    result.resumed = static_cast<int>(result.records.size());
    std::set<std::string> seen;
    for (const auto& r : result.records) seen.insert(r.hash);
    const double before = result.records.empty() ? 0.0 : result.records.back().elapsed_s;
    const auto start = clock::now();
    auto elapsed = [&] { return before + std::chrono::duration<double>(clock::now() - start).count(); };
    const int slots = runner.slots() > 0 ? runner.slots() : 1;
    std::map<std::uint64_t, CandidateRecord> pending;  // by ticket
    std::uint64_t next_ticket = 0;
    int duplicates_in_row = 0;
    bool proposing = true;
    auto record = [&](CandidateRecord rec) {
        rec.index = static_cast<int>(result.records.size());
        rec.proposer = proposer.name();
        rec.elapsed_s = elapsed();
        if (setup.on_record) setup.on_record(rec);  // journaled before anything else happens
        result.records.push_back(std::move(rec));
        if (setup.on_progress) setup.on_progress(result.records.back(), result.records);
    };
    for (;;) {
        while (proposing && static_cast<int>(pending.size()) < slots) {
            const std::size_t in_flight = result.records.size() + pending.size();
            if (in_flight >= static_cast<std::size_t>(task.budget.max_candidates > 0 ? task.budget.max_candidates : 0)) {
                result.stop_reason = "max_candidates";
                proposing = false;
            } else if (elapsed() >= task.budget.max_seconds) {
                result.stop_reason = "max_seconds";
                proposing = false;
            } else if (total_time_spent(task, setup, result.records, elapsed())) {
                result.stop_reason = "max_total_seconds";
                proposing = false;
            } else if (setup.should_stop && setup.should_stop()) {
                result.stop_reason = "stopped";
                proposing = false;
            }
            if (!proposing) break;
            std::vector<CandidateRecord> in_progress;
            in_progress.reserve(pending.size());
            for (const auto& [t, r] : pending) in_progress.push_back(r);
            const auto t_propose = clock::now();
            std::optional<Proposal> proposal = proposer.propose_next(task, result.records, in_progress);
            result.stage_seconds.propose += std::chrono::duration<double>(clock::now() - t_propose).count();
            if (!proposal) {
                result.stop_reason = "exhausted";
                proposing = false;
                break;
            }
            std::optional<Screened> s = screen_candidate(task, *proposal, setup, seen, &result.stage_seconds);
            if (!s) {
                ++result.duplicates;
                if (++duplicates_in_row >= setup.max_duplicates_in_row) {
                    result.stop_reason = "exhausted";
                    proposing = false;
                }
                continue;
            }
            duplicates_in_row = 0;
            seen.insert(s->record.hash);
            if (s->decided) {
                record(std::move(s->record));
                continue;
            }
            if (task.measure_one_device && (setup.measure || setup.measure_int8)) {
                GenerateSetup here = setup;
                here.trainer = nullptr;
                const auto measured_here = [&runner](const std::function<Measurement(const Graph&)>& measure) {
                    return [&runner, &measure](const Graph& g) {
                        Measurement m;
                        runner.while_measuring([&] { m = measure(g); });
                        return m;
                    };
                };
                if (setup.measure) here.measure = measured_here(setup.measure);
                if (setup.measure_int8) here.measure_int8 = measured_here(setup.measure_int8);
                if (setup.machine_slowdown)  // the reference model is timed like a candidate, on the same terms
                    here.machine_slowdown = [&runner, &setup] {
                        double slowdown = 1.0;
                        runner.while_measuring([&] { slowdown = setup.machine_slowdown(); });
                        return slowdown;
                    };
                CandidateRecord measured = run_candidate(task, std::move(s->record), here, &result.stage_seconds);
                measured.evaluated_by = "measured by " + runner.search_side_name();
                if (measured.verdict != Verdict::Feasible || task.objective != Objective::Accuracy) {
                    record(std::move(measured));  // decided by the measurement: nothing to train
                    continue;
                }
                s->record = std::move(measured);
            }
            const std::uint64_t ticket = next_ticket++;
            runner.submit(ticket, s->record);
            pending.emplace(ticket, std::move(s->record));
        }
        if (pending.empty()) break;  // (a stop lets what is in flight finish: it is journaled)
        CandidateRunner::Done done = runner.wait();
        const auto it = pending.find(done.ticket);
        if (it == pending.end())
            throw Exception(Error(ErrorKind::internal, "parallel search: a worker returned ticket " +
                                                           std::to_string(done.ticket) + ", which is not in flight"));
        const std::string hash = it->second.hash;
        pending.erase(it);
        if (done.record.hash != hash)
            throw Exception(Error(ErrorKind::internal, "parallel search: ticket " + std::to_string(done.ticket) +
                                                           " came back with another candidate's hash"));
        if (task.measure_one_device && setup.measure && done.record.measured_ms)
            done.record.evaluated_by += "; measured by " + runner.search_side_name();
        result.stage_seconds.measure += done.stage_seconds.measure;
        result.stage_seconds.train += done.stage_seconds.train;
        record(std::move(done.record));
        if (setup.should_stop && setup.should_stop() && proposing) {
            result.stop_reason = "stopped";
            proposing = false;
        }
    }
    result.elapsed_s = elapsed();
    return result;
}

// Measurement fairness on one node: a measurement never overlaps a proxy training on the same
// node (training is a reader, measuring the writer, and a waiting writer goes first). A training
// holds its read lock only between calls of Hold::yield(), called between mini-batch steps:
// yield lets a waiting measurement in and returns when it is done. Works
// across threads and processes (MPI ranks) alike: two flock()ed files under /tmp named after
// `key` (the search's output directory): every opener of the same key on this node shares them.
// flock needs no cleanup when a process dies (the kernel drops its locks). The files themselves
// are removed by the last NodeGate of the key to go (the destructor, when it can lock both
// files at once without waiting); since a file may be unlinked while others wait on it, every
// lock taken is checked to be on the file the path names now, and taken again on that one if
// not (the usual unlink-under-lock protocol).
class NodeGate {
public:
    explicit NodeGate(const std::string& key) {
        const std::string base = (std::filesystem::temp_directory_path() /
                                  ("lamda-gate-" + std::to_string(::getuid()) + "-" + hex(detail::fnv1a(key))))
                                     .string();
        turnstile_path_ = base + ".turn";
        gate_path_ = base + ".gate";
    }
    NodeGate(const NodeGate&) = delete;
    NodeGate& operator=(const NodeGate&) = delete;
    ~NodeGate() { remove_if_unused(); }

    // RAII holds (each opens its own descriptors: flock locks belong to an open file).
    class Hold {
    public:
        Hold(const NodeGate& g, bool exclusive) : gate_path_(g.gate_path_), turn_path_(g.turnstile_path_) {
            turn_ = open_or_throw(g.turnstile_path_);
            gate_ = open_or_throw(g.gate_path_);
            lock(turn_, LOCK_EX, turn_path_);  // a waiting measurer blocks new trainers here
            if (exclusive) {
                lock(gate_, LOCK_EX, gate_path_);  // keeps the turnstile until done
            } else {
                lock(gate_, LOCK_SH, gate_path_);
                (void)::flock(turn_, LOCK_UN);
            }
        }
        Hold(const Hold&) = delete;
        Hold& operator=(const Hold&) = delete;
        // A training's pause point: drops the read lock, queues behind a waiting measurement at
        // the turnstile (free, hence at once, when nobody measures) and takes the read lock again.
        void yield() {
            if (gate_ < 0 || turn_ < 0) return;
            (void)::flock(gate_, LOCK_UN);
            lock(turn_, LOCK_EX, turn_path_);
            lock(gate_, LOCK_SH, gate_path_);
            (void)::flock(turn_, LOCK_UN);
        }
        ~Hold() {
            if (gate_ >= 0) (void)::close(gate_);
            if (turn_ >= 0) (void)::close(turn_);
        }

    private:
        std::string gate_path_, turn_path_;
        int turn_ = -1, gate_ = -1;
        [[noreturn]] void fail(const std::string& path, const char* what) {
            if (gate_ >= 0) (void)::close(gate_);
            if (turn_ >= 0) (void)::close(turn_);
            gate_ = turn_ = -1;
            throw Exception(Error(ErrorKind::io, Where{path, 0, 0, {}}, what));
        }
        int open_or_throw(const std::string& path) {
            const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) fail(path, "cannot open the node's measurement lock");
            return fd;
        }
        // Locks `fd` and makes sure it is the file `path` names now: a NodeGate going away may
        // have removed it meanwhile, and a lock on a removed file excludes nobody.
        void lock(int& fd, int op, const std::string& path) {
            for (;;) {
                while (::flock(fd, op) != 0)
                    if (errno != EINTR) fail(path, "cannot lock the node's measurement lock");
                if (names(fd, path)) return;
                (void)::close(fd);
                fd = -1;
                fd = open_or_throw(path);
            }
        }
    };
    Hold measuring() const { return Hold(*this, true); }
    Hold training() const { return Hold(*this, false); }

    const std::string& turnstile_path() const noexcept { return turnstile_path_; }
    const std::string& gate_path() const noexcept { return gate_path_; }

private:
    std::string turnstile_path_, gate_path_;
    static std::string hex(std::uint64_t h) {
        static const char* digits = "0123456789abcdef";
        std::string out(16, '0');
        for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 15];
        return out;
    }
    // Whether `path` names the file open as `fd`.
    static bool names(int fd, const std::string& path) noexcept {
        struct stat open_file {}, named {};
        if (::fstat(fd, &open_file) != 0 || ::stat(path.c_str(), &named) != 0) return false;
        return open_file.st_dev == named.st_dev && open_file.st_ino == named.st_ino;
    }
    // Removes both files when nobody on this node holds or waits for them: both locked at once,
    // without waiting (someone still using them removes them when their own NodeGate goes).
    void remove_if_unused() const noexcept {
        const int turn = ::open(turnstile_path_.c_str(), O_RDWR | O_CLOEXEC);
        if (turn < 0) return;
        if (::flock(turn, LOCK_EX | LOCK_NB) == 0 && names(turn, turnstile_path_)) {
            const int gate = ::open(gate_path_.c_str(), O_RDWR | O_CLOEXEC);
            if (gate < 0) {
                (void)::unlink(turnstile_path_.c_str());
            } else {
                if (::flock(gate, LOCK_EX | LOCK_NB) == 0 && names(gate, gate_path_)) {
                    (void)::unlink(gate_path_.c_str());
                    (void)::unlink(turnstile_path_.c_str());
                }
                (void)::close(gate);
            }
        }
        (void)::close(turn);
    }
};

namespace parallel_detail {

// A trainer whose trainings hold the node's gate as readers, yielding it between steps.
class GatedTrainer : public Trainer {
public:
    GatedTrainer(Trainer& inner, std::shared_ptr<const NodeGate> gate) : inner_(inner), gate_(std::move(gate)) {}
    double proxy_accuracy(const Graph& graph) override {
        NodeGate::Hold hold = gate_->training();
        const Pausing pausing(inner_, hold);
        return inner_.proxy_accuracy(graph);
    }
    FinalTraining train_final(const Graph& graph, const std::string& weights_path) override {
        NodeGate::Hold hold = gate_->training();
        const Pausing pausing(inner_, hold);
        return inner_.train_final(graph, weights_path);
    }
    // Adaptation (search/adapt.hpp) through the same gate: evaluating and fine-tuning use the
    // node's cores as training does.
    double weights_accuracy(const Graph& graph, const std::string& weights_path) override {
        const NodeGate::Hold hold = gate_->training();
        return inner_.weights_accuracy(graph, weights_path);
    }
    double weights_test_accuracy(const Graph& graph, const std::string& weights_path) override {
        const NodeGate::Hold hold = gate_->training();
        return inner_.weights_test_accuracy(graph, weights_path);
    }
    double finetune_accuracy(const Graph& graph, const std::string& init_path) override {
        NodeGate::Hold hold = gate_->training();
        const Pausing pausing(inner_, hold);
        return inner_.finetune_accuracy(graph, init_path);
    }
    FinalTraining train_final_from(const Graph& graph, const std::string& init_path,
                                   const std::string& weights_path) override {
        NodeGate::Hold hold = gate_->training();
        const Pausing pausing(inner_, hold);
        return inner_.train_final_from(graph, init_path, weights_path);
    }
    std::vector<Tensor> training_images(std::size_t n) override { return inner_.training_images(n); }
    // int8 (search/types.hpp): calibration and evaluation use the node's cores as training does.
    double last_int8_accuracy(const Graph& graph) override {
        const NodeGate::Hold hold = gate_->training();
        return inner_.last_int8_accuracy(graph);
    }
    QuantizedAccuracy quantize_final(const Graph& graph, const std::string& fp32_path,
                                     const std::string& int8_path) override {
        const NodeGate::Hold hold = gate_->training();
        return inner_.quantize_final(graph, fp32_path, int8_path);
    }

private:
    // The inner trainer yields `hold` between steps while this lives (also when it throws).
    struct Pausing {
        Trainer& t;
        Pausing(Trainer& trainer, NodeGate::Hold& hold) : t(trainer) {
            t.set_between_steps([&hold] { hold.yield(); });
        }
        Pausing(const Pausing&) = delete;
        Pausing& operator=(const Pausing&) = delete;
        ~Pausing() { t.set_between_steps({}); }
    };

    Trainer& inner_;
    std::shared_ptr<const NodeGate> gate_;
};

}  // namespace parallel_detail

// A setup whose measurements and trainings go through `gate` (see NodeGate). `owned` keeps the
// gated trainer alive; the returned setup points into it. `local_measure` false: measurements run
// elsewhere (a board behind lamda-agent) and need not wait for this node's trainings.
inline GenerateSetup gated_setup(GenerateSetup setup, std::shared_ptr<const NodeGate> gate,
                                 std::unique_ptr<Trainer>& owned, bool local_measure = true) {
    if (local_measure)
        for (auto* f : {&setup.measure, &setup.measure_int8}) {
            if (!*f) continue;
            auto measure = std::move(*f);
            *f = [measure, gate](const Graph& g) {
                const NodeGate::Hold hold = gate->measuring();
                return measure(g);
            };
        }
    if (local_measure && setup.machine_slowdown)  // the reference model is timed like a candidate
        setup.machine_slowdown = [slowdown = std::move(setup.machine_slowdown), gate] {
            const NodeGate::Hold hold = gate->measuring();
            return slowdown();
        };
    if (setup.trainer) {
        owned = std::make_unique<parallel_detail::GatedTrainer>(*setup.trainer, gate);
        setup.trainer = owned.get();
    }
    return setup;
}

// N worker threads on this node, each with its own setup (its own trainer: a trainer need not be
// thread-safe); measurements and trainings gated per node by `gate_key` (see NodeGate). With
// task.measure_one_device the workers only train (the search's thread measures).
class ThreadRunner : public CandidateRunner {
public:
    ThreadRunner(const Task& task, std::vector<GenerateSetup> worker_setups, const std::string& gate_key,
                 bool local_measure = true)
        : task_(task), local_measure_(local_measure) {
        if (worker_setups.empty()) throw Exception(Error(ErrorKind::usage, "ThreadRunner: no workers"));
        auto gate = std::make_shared<const NodeGate>(gate_key);
        gate_ = gate;
        const std::string node = node_name();
        gated_.resize(worker_setups.size());
        for (std::size_t i = 0; i < worker_setups.size(); ++i) {
            if (task.measure_one_device) worker_setups[i].measure = worker_setups[i].measure_int8 = nullptr;
            setups_.push_back(gated_setup(std::move(worker_setups[i]), gate, gated_[i], local_measure));
            names_.push_back("worker " + std::to_string(i) + " @ " + node);
        }
        for (std::size_t i = 0; i < setups_.size(); ++i) threads_.emplace_back([this, i] { work(i); });
    }
    ThreadRunner(const ThreadRunner&) = delete;
    ThreadRunner& operator=(const ThreadRunner&) = delete;
    ~ThreadRunner() override {
        {
            std::lock_guard<std::mutex> lock(m_);
            closing_ = true;
        }
        jobs_cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    int slots() const override { return static_cast<int>(setups_.size()); }
    std::string search_side_name() const override { return "main thread @ " + node_name(); }
    void while_measuring(const std::function<void()>& timing) override {
        if (!local_measure_) return timing();
        const NodeGate::Hold hold = gate_->measuring();
        timing();
    }
    void submit(std::uint64_t ticket, const CandidateRecord& screened) override {
        {
            std::lock_guard<std::mutex> lock(m_);
            jobs_.emplace_back(ticket, screened);
            ++in_flight_;
        }
        jobs_cv_.notify_one();
    }
    Done wait() override {
        std::unique_lock<std::mutex> lock(m_);
        if (in_flight_ == 0 && done_.empty())
            throw Exception(Error(ErrorKind::internal, "ThreadRunner::wait: nothing in flight"));
        done_cv_.wait(lock, [this] { return !done_.empty(); });
        Done d = std::move(done_.front());
        done_.pop_front();
        --in_flight_;
        return d;
    }

private:
    Task task_;
    bool local_measure_ = true;
    std::shared_ptr<const NodeGate> gate_;
    std::vector<GenerateSetup> setups_;
    std::vector<std::unique_ptr<Trainer>> gated_;
    std::vector<std::string> names_;
    std::vector<std::thread> threads_;
    std::mutex m_;
    std::condition_variable jobs_cv_, done_cv_;
    std::deque<std::pair<std::uint64_t, CandidateRecord>> jobs_;
    std::deque<Done> done_;
    std::size_t in_flight_ = 0;
    bool closing_ = false;

    void work(std::size_t i) {
        for (;;) {
            std::pair<std::uint64_t, CandidateRecord> job;
            {
                std::unique_lock<std::mutex> lock(m_);
                jobs_cv_.wait(lock, [this] { return closing_ || !jobs_.empty(); });
                if (closing_) return;  // (jobs not started are dropped: the search is over)
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            Done d;
            d.ticket = job.first;
            const std::string hash = job.second.hash;
            try {
                d.record = run_candidate(task_, std::move(job.second), setups_[i], &d.stage_seconds);
            } catch (const std::exception& e) {  // (run_candidate catches; copying may not)
                d.record.hash = hash;
                d.record.verdict = Verdict::Failed;
                d.record.reason = std::string("evaluation failed: ") + e.what();
            }
            d.record.evaluated_by = names_[i];
            {
                std::lock_guard<std::mutex> lock(m_);
                done_.push_back(std::move(d));
            }
            done_cv_.notify_one();
        }
    }
};

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_PARALLEL_HPP
