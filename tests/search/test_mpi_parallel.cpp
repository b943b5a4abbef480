// A search with several candidates in flight (search/parallel.hpp): the worker threads of
// `--workers N` and the message format MPI ranks exchange (search/mpi.hpp; the MPI run itself is
// tests/mpi_test.sh). Latency comes from the deterministic stand-in of generate_test_support.hpp.
#include <doctest/doctest.h>

#include <lamda/search/parallel.hpp>
#include <lamda/search/task.hpp>

#include "../generate_test_support.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace {

using namespace lamda;

Task small_task(double latency_ms = 0.08, int max_candidates = 24) {
    Task t;
    t.name = "test";
    t.input = {28, 28, 1};
    t.classes = 10;
    t.constraints.latency_ms = latency_ms;
    t.budget.max_candidates = max_candidates;
    t.budget.max_seconds = 600;
    return t;
}

GenerateSetup synthetic_setup() {
    GenerateSetup s;
    s.measure = lamda_test::synthetic_measure;
    return s;
}

std::string gate_key(const char* name) {
    return (std::filesystem::temp_directory_path() / (std::string("lamda-test-parallel-") + name)).string();
}

std::vector<GenerateSetup> copies(const GenerateSetup& s, int n, std::vector<Trainer*> trainers = {}) {
    std::vector<GenerateSetup> out;
    for (int i = 0; i < n; ++i) {
        GenerateSetup w = s;
        if (!trainers.empty()) w.trainer = trainers[static_cast<std::size_t>(i)];
        out.push_back(std::move(w));
    }
    return out;
}

// Counts how many trainings run at once and whether a measurement ever overlapped one.
struct Overlap {
    std::atomic<int> training{0};
    std::atomic<int> measuring{0};
    std::atomic<int> max_training{0};
    std::atomic<bool> overlapped{false};
};

class SlowTrainer : public Trainer {
public:
    SlowTrainer(Overlap& o, bool fail_big = false) : o_(o), fail_big_(fail_big) {}
    double proxy_accuracy(const Graph& g) override {
        const int now = ++o_.training;
        int seen = o_.max_training.load();
        while (now > seen && !o_.max_training.compare_exchange_weak(seen, now)) {
        }
        if (o_.measuring.load() > 0) o_.overlapped = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        if (o_.measuring.load() > 0) o_.overlapped = true;
        --o_.training;
        const ModelStats s = analyze(g);
        if (fail_big_ && s.params > 20000) throw std::runtime_error("out of memory (test)");
        return 0.5 + 0.4 * double(s.params % 97) / 97.0;
    }
    FinalTraining train_final(const Graph&, const std::string&) override { return {}; }

private:
    Overlap& o_;
    bool fail_big_;
};

}  // namespace

TEST_CASE("parallel: one worker decides exactly what the sequential loop decides") {
    const Task task = small_task();
    OfflineDesigner a(7), b(7);
    const GenerateResult seq = run_generation(task, a, synthetic_setup());
    ThreadRunner runner(task, copies(synthetic_setup(), 1), gate_key("one"));
    const GenerateResult par = run_generation_parallel(task, b, synthetic_setup(), runner);
    REQUIRE(seq.records.size() == par.records.size());
    for (std::size_t i = 0; i < seq.records.size(); ++i) {
        CHECK(seq.records[i].hash == par.records[i].hash);
        CHECK(seq.records[i].verdict == par.records[i].verdict);
        CHECK(par.records[i].index == static_cast<int>(i));
    }
    CHECK(seq.stop_reason == par.stop_reason);
}

TEST_CASE("parallel: three workers record each candidate once, judged as a sequential run judges it") {
    const Task task = small_task(0.08, 30);
    OfflineDesigner proposer(3);
    std::vector<std::string> journaled;
    GenerateSetup setup = synthetic_setup();
    setup.on_record = [&](const CandidateRecord& r) { journaled.push_back(r.hash); };
    ThreadRunner runner(task, copies(synthetic_setup(), 3), gate_key("three"));
    const GenerateResult r = run_generation_parallel(task, proposer, setup, runner);
    CHECK(r.stop_reason == "max_candidates");
    REQUIRE(r.records.size() == 30);
    CHECK(journaled.size() == 30);
    std::set<std::string> hashes;
    int by_worker = 0;
    for (std::size_t i = 0; i < r.records.size(); ++i) {
        const CandidateRecord& c = r.records[i];
        CHECK(c.index == static_cast<int>(i));
        CHECK(journaled[i] == c.hash);
        CHECK(hashes.insert(c.hash).second);
        if (!c.evaluated_by.empty()) {
            ++by_worker;
            CHECK(c.evaluated_by.rfind("worker ", 0) == 0);
            CHECK(c.measured_ms.has_value());
        }
        // Validity: the same verdict as deciding the text alone, sequentially.
        const auto again = evaluate_candidate(task, Proposal{c.dsl, c.note}, synthetic_setup(), {});
        REQUIRE(again.has_value());
        CHECK(again->verdict == c.verdict);
    }
    CHECK(by_worker > 0);
}

TEST_CASE("parallel: measurements never overlap trainings, and a failing training is a Failed record") {
    Task task = small_task(0.2, 16);
    task.objective = Objective::Accuracy;
    task.objective_given = true;
    Overlap o;
    SlowTrainer t0(o, true), t1(o, true), t2(o, true);
    GenerateSetup setup;
    setup.measure = [&o](const Graph& g) {
        ++o.measuring;
        if (o.training.load() > 0) o.overlapped = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        Measurement m = lamda_test::synthetic_measure(g);
        if (o.training.load() > 0) o.overlapped = true;
        --o.measuring;
        return m;
    };
    ThreadRunner runner(task, copies(setup, 3, {&t0, &t1, &t2}), gate_key("gate"));
    RandomProposer proposer(5);
    const GenerateResult r = run_generation_parallel(task, proposer, setup, runner);
    REQUIRE(r.records.size() == 16);
    CHECK_FALSE(o.overlapped.load());
    CHECK(o.max_training.load() >= 1);
    int failed = 0, trained = 0;
    for (const auto& c : r.records) {
        if (c.verdict == Verdict::Failed) {
            ++failed;
            CHECK(c.reason.find("out of memory (test)") != std::string::npos);
        }
        if (c.accuracy) ++trained;
    }
    CHECK(trained > 0);
    MESSAGE("failed: " << failed << ", trained: " << trained << ", most trainings at once: " << o.max_training.load());
}

// A training of 100 steps of 10 ms that calls the pause hook between steps, as TorchTrainer does.
class SteppedTrainer : public Trainer {
public:
    explicit SteppedTrainer(Overlap& o) : o_(o) {}
    std::atomic<int> steps{0};
    void set_between_steps(std::function<void()> hook) override { hook_ = std::move(hook); }
    double proxy_accuracy(const Graph&) override {
        for (int i = 0; i < 100; ++i) {
            if (hook_) hook_();
            ++o_.training;
            if (o_.measuring.load() > 0) o_.overlapped = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            if (o_.measuring.load() > 0) o_.overlapped = true;
            --o_.training;
            ++steps;
        }
        return 0.5;
    }
    FinalTraining train_final(const Graph&, const std::string&) override { return {}; }

private:
    Overlap& o_;
    std::function<void()> hook_;
};

TEST_CASE("parallel: a measurement pauses the node's trainings between steps, not after them") {
    Overlap o;
    SteppedTrainer a(o), b(o);
    auto gate = std::make_shared<const NodeGate>(gate_key("pause"));
    GenerateSetup setup;
    setup.measure = [&o](const Graph&) {
        ++o.measuring;
        if (o.training.load() > 0) o.overlapped = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (o.training.load() > 0) o.overlapped = true;
        --o.measuring;
        return Measurement{1.0, {}};
    };
    std::unique_ptr<Trainer> owned_a, owned_b;
    GenerateSetup sa = setup, sb = setup;
    sa.trainer = &a;
    sb.trainer = &b;
    const GenerateSetup ga = gated_setup(sa, gate, owned_a);
    const GenerateSetup gb = gated_setup(sb, gate, owned_b);
    const Graph graph;
    std::thread ta([&] { (void)ga.trainer->proxy_accuracy(graph); });
    std::thread tb([&] { (void)gb.trainer->proxy_accuracy(graph); });
    while (a.steps.load() < 3 || b.steps.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < 5; ++i) (void)ga.measure(graph);
    // Five measurements done while both 1-second trainings are still under way: each waited for
    // one step of each training, not for the trainings to end.
    const int a_at = a.steps.load(), b_at = b.steps.load();
    ta.join();
    tb.join();
    CHECK(a_at < 100);
    CHECK(b_at < 100);
    CHECK(a.steps.load() == 100);
    CHECK(b.steps.load() == 100);
    CHECK_FALSE(o.overlapped.load());
    MESSAGE("steps done when the measurements ended: " << a_at << " and " << b_at << " of 100");
}

// Whether another opener could take `path` exclusively right now (flock without waiting).
bool free_to_lock(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const bool got = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    return got;
}

TEST_CASE("parallel: the node's lock files go with the last gate, never from under a holder") {
    namespace fs = std::filesystem;
    const std::string key = gate_key("cleanup");
    std::optional<NodeGate> a(std::in_place, key);
    const std::string gate_file = a->gate_path(), turn_file = a->turnstile_path();
    {
        std::optional<NodeGate::Hold> training;
        training.emplace(*a, false);
        { NodeGate rank_done(key); }  // another rank ends while this one trains: files stay
        CHECK(fs::exists(gate_file));
        CHECK(fs::exists(turn_file));
        CHECK_FALSE(free_to_lock(gate_file));  // and still exclude a measurement

        // Files unlinked under a waiting training (as a remover does between its steps): the
        // training's next pause moves to the files the paths name now, re-creating them, so
        // that a new opener is still excluded.
        fs::remove(gate_file);
        fs::remove(turn_file);
        training->yield();
        CHECK(fs::exists(gate_file));
        CHECK(fs::exists(turn_file));
        CHECK_FALSE(free_to_lock(gate_file));
    }
    { NodeGate last(key); }  // nobody holds them: removed
    CHECK_FALSE(fs::exists(gate_file));
    CHECK_FALSE(fs::exists(turn_file));

    { const NodeGate::Hold again = a->measuring(); }  // a gate still in use opens them again
    CHECK(fs::exists(gate_file));
    a.reset();
    CHECK_FALSE(fs::exists(gate_file));
    CHECK_FALSE(fs::exists(turn_file));
}

TEST_CASE("parallel: measure_on one_device -- the search's thread measures every candidate, workers only train") {
    Task task = small_task(0.2, 16);
    task.objective = Objective::Accuracy;
    task.objective_given = true;
    task.measure_one_device = true;
    Overlap o;
    SlowTrainer t0(o), t1(o), t2(o);
    const std::thread::id main_thread = std::this_thread::get_id();
    std::atomic<int> measured{0}, elsewhere{0};
    GenerateSetup setup;
    setup.measure = [&](const Graph& g) {
        ++measured;
        if (std::this_thread::get_id() != main_thread) ++elsewhere;
        ++o.measuring;
        if (o.training.load() > 0) o.overlapped = true;
        Measurement m = lamda_test::synthetic_measure(g);
        --o.measuring;
        return m;
    };
    ThreadRunner runner(task, copies(setup, 3, {&t0, &t1, &t2}), gate_key("one-device"));
    RandomProposer proposer(9);
    const GenerateResult r = run_generation_parallel(task, proposer, setup, runner);
    REQUIRE(r.records.size() == 16);
    CHECK(elsewhere.load() == 0);
    CHECK_FALSE(o.overlapped.load());
    int with_ms = 0, trained = 0;
    for (const auto& c : r.records) {
        if (!c.measured_ms) continue;
        ++with_ms;
        CHECK(c.evaluated_by.find("measured by main thread @ ") != std::string::npos);
        if (c.accuracy) {
            ++trained;
            CHECK(c.evaluated_by.rfind("worker ", 0) == 0);
        }
    }
    CHECK(with_ms == measured.load());
    CHECK(trained > 0);
    // The task file's spelling, and a wrong value named.
    const std::string base = R"({"name": "t", "input": [28, 28, 1], "classes": 10, "constraints": {"latency_ms": 1},
                                "budget": {"max_candidates": 5, "max_seconds": 60}, "measure_on": )";
    CHECK(parse_task(base + "\"one_device\"}").measure_one_device);
    CHECK_FALSE(parse_task(base + "\"any\"}").measure_one_device);
    CHECK(parse_task(task_json(parse_task(base + "\"one_device\"}"))).measure_one_device);
    try {
        (void)parse_task(base + "\"rank7\"}", "t.json");
        FAIL("accepted measure_on rank7");
    } catch (const TaskError& e) {
        CHECK(std::string(e.what()).find("measure_on") != std::string::npos);
        CHECK(std::string(e.what()).find("one_device") != std::string::npos);
    }
}

TEST_CASE("parallel: a gated worker trainer still adapts (fine-tuning and weight evaluation are forwarded)") {
    struct Adapting : Trainer {
        int hooked = 0;
        double proxy_accuracy(const Graph&) override { return 0.1; }
        FinalTraining train_final(const Graph&, const std::string&) override { return {}; }
        double weights_accuracy(const Graph&, const std::string&) override { return 0.2; }
        double weights_test_accuracy(const Graph&, const std::string&) override { return 0.3; }
        double finetune_accuracy(const Graph&, const std::string&) override { return hooked ? 0.4 : -1; }
        FinalTraining train_final_from(const Graph&, const std::string&, const std::string&) override {
            FinalTraining f;
            f.test_accuracy = hooked ? 0.5 : -1;
            return f;
        }
        void set_between_steps(std::function<void()> hook) override { hooked = hook ? 1 : 0; }
    } inner;
    GenerateSetup s;
    s.trainer = &inner;
    std::unique_ptr<Trainer> owned;
    const GenerateSetup g = gated_setup(s, std::make_shared<const NodeGate>(gate_key("adapt")), owned);
    const Graph graph;
    CHECK(g.trainer->weights_accuracy(graph, "w") == 0.2);
    CHECK(g.trainer->weights_test_accuracy(graph, "w") == 0.3);
    CHECK(g.trainer->finetune_accuracy(graph, "w") == 0.4);  // with the pause hook set
    CHECK(g.trainer->train_final_from(graph, "a", "b").test_accuracy == 0.5);
    CHECK(inner.hooked == 0);  // and cleared afterwards
}

TEST_CASE("parallel: the built-in proposers never hand out a pending design again") {
    const Task task = small_task();
    for (int kind = 0; kind < 2; ++kind) {
        std::unique_ptr<Proposer> p;
        if (kind == 0) p = std::make_unique<OfflineDesigner>(1);
        else p = std::make_unique<RandomProposer>(1);
        std::vector<CandidateRecord> pending;
        std::set<std::string> hashes;
        for (int i = 0; i < 8; ++i) {
            auto next = p->propose_next(task, {}, pending);
            REQUIRE(next.has_value());
            auto s = screen_candidate(task, *next, GenerateSetup{}, {});
            REQUIRE(s.has_value());
            CHECK(hashes.insert(s->record.hash).second);
            pending.push_back(s->record);
        }
    }
}

TEST_CASE("runner_wire: a record survives the trip, and malformed messages are errors that name their sender") {
    CandidateRecord r;
    r.index = 4;
    r.proposer = "offline";
    r.note = "grow s1; design: x";
    r.dsl = "input: input shape=28x28x1\np: gap\nfc: fc out=10\n";
    r.hash = "0123456789abcdef";
    r.verdict = Verdict::Feasible;
    r.reason = "meets \xff every";  // invalid UTF-8 is replaced, not sent raw
    r.params = 10, r.macs = 100, r.peak_activation_bytes = 3136;
    r.predicted_ms = 0.01;
    r.measured_ms = 0.02;
    r.top_layers = {{"fc", 0.01, 0.5}};
    r.evaluated_by = "rank 2 @ node7";
    StageSeconds st;
    st.measure = 1.5;
    st.train = 2.5;
    const auto d = runner_wire::decode(runner_wire::encode(9, r, &st), "MPI message from rank 2");
    CHECK(d.ticket == 9);
    CHECK(d.record.hash == r.hash);
    CHECK(d.record.dsl == r.dsl);
    CHECK(d.record.verdict == Verdict::Feasible);
    CHECK(d.record.measured_ms == r.measured_ms);
    CHECK(d.record.evaluated_by == "rank 2 @ node7");
    CHECK(d.record.reason == "meets \xef\xbf\xbd every");
    CHECK(d.stage_seconds.measure == 1.5);
    CHECK(d.stage_seconds.train == 2.5);
    for (const char* bad : {"", "{", "[]", "{\"ticket\":1}", "{\"ticket\":-1,\"record\":{}}",
                            "{\"ticket\":1,\"record\":{\"index\":0,\"dsl\":\"x\",\"hash\":\"h\",\"verdict\":\"great\"}}"}) {
        try {
            (void)runner_wire::decode(bad, "MPI message from rank 3");
            FAIL("accepted: " << bad);
        } catch (const Exception& e) {
            CHECK(std::string(e.what()).find("rank 3") != std::string::npos);
        }
    }
}
