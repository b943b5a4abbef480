// The generation loop (search/loop.hpp), its design space (search/designer.hpp) and built-in proposers
// (search/proposers.hpp). Latency here comes from a deterministic stand-in (MACs at a fixed rate plus a
// per-layer cost) so that results are exact and the tests are fast; the real measurement path is
// exercised by tests/cli_test.sh through `lamda generate`.
#include <doctest/doctest.h>

#include <lamda/search/loop.hpp>

#include "../generate_test_support.hpp"

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>

namespace {

using namespace lamda;

Task small_task(double latency_ms = 0.08, int max_candidates = 30) {
    Task t;
    t.name = "test";
    t.input = {28, 28, 1};
    t.classes = 10;
    t.constraints.latency_ms = latency_ms;
    t.budget.max_candidates = max_candidates;
    t.budget.max_seconds = 600;
    return t;
}

using lamda_test::synthetic_measure;

GenerateSetup synthetic_setup() {
    GenerateSetup s;
    s.measure = synthetic_measure;
    return s;
}

// Hands out a fixed list of texts, then nothing.
class ScriptedProposer : public Proposer {
public:
    explicit ScriptedProposer(std::vector<std::string> texts) : texts_(std::move(texts)) {}
    std::string name() const override { return "scripted"; }
    std::optional<Proposal> propose(const Task&, const std::vector<CandidateRecord>&) override {
        if (next_ >= texts_.size()) return std::nullopt;
        return Proposal{texts_[next_++], "scripted"};
    }

private:
    std::vector<std::string> texts_;
    std::size_t next_ = 0;
};

class FixedTrainer : public Trainer {
public:
    explicit FixedTrainer(double accuracy) : accuracy_(accuracy) {}
    double proxy_accuracy(const Graph&) override { return accuracy_; }
    FinalTraining train_final(const Graph&, const std::string&) override { return {}; }

private:
    double accuracy_;
};

const char* valid_model = R"(input: input shape=28x28x1
c1: conv2d out=8 kernel=3 stride=2 act=relu
pool: gap
fc: fc out=10
)";

}  // namespace

TEST_CASE("design: compact form round-trips and renders to valid DSL") {
    int valid = 0;
    for (const auto& seed : zoo_seed_designs()) {
        const std::string& name = seed.first;  // not a structured binding: CHECK_MESSAGE captures it
        const Design& d = seed.second;
        Design back;
        CHECK_MESSAGE(parse_design(design_to_string(d), back).empty(), name);
        CHECK(back == d);
        const ParseResult r = parse_dsl(render_design(d, {28, 28, 1}, 10));
        CHECK_MESSAGE(r.ok(), name, "\n", format_diagnostics(r.diagnostics));
    }
    std::mt19937_64 rng(7);
    for (int i = 0; i < 300; ++i) {
        const Design d = random_design(rng);
        Design back;
        REQUIRE(parse_design(design_to_string(d), back).empty());
        CHECK(back == d);
        const ParseResult r = parse_dsl(render_design(d, {32, 32, 3}, 100));
        if (!r.ok()) continue;  // too many downsamplings for 32x32: the proposers draw again
        ++valid;
        for (const Layer& l : r.graph.layers)
            CHECK_MESSAGE(stage_of_layer(l.name, d.stages.size()) >= -1, l.name);
        CHECK(analyze(r.graph).output_shape.c == 100);
    }
    CHECK(valid > 150);
}

TEST_CASE("design: a residual block's projection shortcut reads the block's input") {
    // Stage 0 keeps 16 channels at stride 1 (identity shortcut); stage 1 doubles the channels and
    // halves the resolution, so its shortcut is a strided 1x1 projection of stage 0's output.
    Design d;
    d.stem_channels = 16, d.stem_stride = 2;
    d.stages = {{BlockKind::Residual, 16, 1, 1, false, 3, 1, false},
                {BlockKind::Residual, 32, 1, 2, false, 3, 1, false}};
    const ParseResult r = parse_dsl(render_design(d, {28, 28, 1}, 10));
    REQUIRE_MESSAGE(r.ok(), format_diagnostics(r.diagnostics));
    auto layer = [&](const std::string& name) -> const Layer& {
        for (const Layer& l : r.graph.layers)
            if (l.name == name) return l;
        FAIL("no layer " << name);
        return r.graph.layers.front();
    };
    const Layer& down = layer("s1b0_down");
    REQUIRE(down.inputs.size() == 1);
    CHECK(r.graph.layers.at(static_cast<std::size_t>(down.inputs[0])).name == "s0b0");
    const Layer& identity = layer("s0b0");
    REQUIRE(identity.inputs.size() == 2);
    CHECK(r.graph.layers.at(static_cast<std::size_t>(identity.inputs[0])).name == "stem_act");
}

TEST_CASE("design: malformed compact forms are refused with a reason") {
    Design d;
    CHECK_FALSE(parse_design("", d).empty());
    CHECK_FALSE(parse_design("stem=16k3s2 act=relu", d).empty());                      // no head
    CHECK_FALSE(parse_design("stem=16k3s2 act=gelu head=0 | ir c16 r1 s1 k3 e3", d).empty());
    CHECK_FALSE(parse_design("stem=16k3s2 act=relu head=0 | xx c16", d).empty());
    CHECK_FALSE(parse_design("stem=16k3s2 act=relu head=0 | ir c99999999 r1 s1 k3 e3", d).empty());
    CHECK_FALSE(parse_design("stem=16k3s2 act=relu head=0 | ir c16 r1 s3 k3 e3", d).empty());
    CHECK_FALSE(parse_design("stem=16k3s2 act=relu head=0", d).empty());  // no stage
    CHECK(parse_design("stem=16k3s2 act=relu head=0 | ir c16 r2 s2p k5 e3 se", d).empty());
    CHECK(d.stages.at(0).pool);
    CHECK(d.stages.at(0).se);
}

TEST_CASE("text_hash is the canonical form's: formatting does not make a new candidate") {
    std::string c1, h1, c2, h2;
    REQUIRE(canonical_hash(valid_model, c1, h1));
    REQUIRE(canonical_hash("# same model\ninput:   input shape=28x28x1\nc1: conv2d kernel=3 out=8 act=relu stride=2\n"
                           "pool: gap\nfc: fc out=10\n",
                           c2, h2));
    CHECK(h1 == h2);
    CHECK(h1.size() == 16);
    CHECK(text_hash("a") != text_hash("b"));
}

TEST_CASE("generate: each verdict, in the loop's order") {
    Task task = small_task(0.05);
    task.constraints.max_params = 5000;
    task.constraints.min_accuracy = 0.9;
    task.objective = Objective::Accuracy;
    ScriptedProposer proposer({
        "input: input shape=28x28x1\nc: conv2d out=8 kernel=3 in=2\n",          // invalid
        "input: input shape=32x32x1\np: gap\nfc: fc out=10\n",                   // wrong input
        "input: input shape=28x28x1\np: gap\nfc: fc out=7\n",                    // wrong classes
        "input: input shape=28x28x1\nf: flatten\nfc: fc out=10\n",              // 7850 params
        "input: input shape=28x28x1\nc: conv2d out=128 kernel=5\np: gap\nfc: fc out=10\n",  // slow
        valid_model,
        valid_model,  // a repeat: skipped, not a candidate
    });
    FixedTrainer trainer(0.5);
    GenerateSetup setup = synthetic_setup();
    setup.trainer = &trainer;
    std::vector<CandidateRecord> journal;
    setup.on_record = [&](const CandidateRecord& r) { journal.push_back(r); };
    const GenerateResult result = run_generation(task, proposer, setup);
    REQUIRE(result.records.size() == 6);
    CHECK(result.duplicates == 1);
    CHECK(result.stop_reason == "exhausted");
    CHECK(journal.size() == 6);
    const Verdict expected[] = {Verdict::Invalid,    Verdict::WrongTask,    Verdict::WrongTask,
                                Verdict::OverParams, Verdict::OverMeasured, Verdict::BelowAccuracy};
    for (std::size_t i = 0; i < 6; ++i) {
        CHECK_MESSAGE(result.records[i].verdict == expected[i], i, ": ", result.records[i].reason);
        CHECK(result.records[i].index == static_cast<int>(i));
        CHECK(result.records[i].proposer == "scripted");
    }
    CHECK(result.records[0].diagnostics.size() == 1);
    CHECK(result.records[0].diagnostics[0].find("candidate:2:") != std::string::npos);
    CHECK(result.records[3].reason.find("7850 parameters") != std::string::npos);
    CHECK(result.records[4].reason.find("of the 0.05 ms budget") != std::string::npos);
    CHECK(result.records[4].top_layers.front().name == "c");  // the layer that costs most, named
    CHECK(result.records[5].accuracy == doctest::Approx(0.5));
}

TEST_CASE("generate: a measurement over budget taken while the machine runs slow is judged at its usual pace") {
    // A shared machine's slow burst: every run takes 1.5x. The reference model says so (or not).
    const double usual_ms = synthetic_measure(parse_dsl(valid_model).graph).median_ms;
    Task task = small_task(usual_ms * 1.2, 1);
    auto decide = [&](double reference_slowdown, int& asked) {
        ScriptedProposer proposer({valid_model});
        GenerateSetup setup;
        setup.measure = [](const Graph& g) {
            Measurement m = synthetic_measure(g);
            m.median_ms *= 1.5;
            for (LayerCost& l : m.per_layer) l.ms *= 1.5;
            return m;
        };
        setup.machine_slowdown = [&] {
            ++asked;
            return reference_slowdown;
        };
        const GenerateResult r = run_generation(task, proposer, setup);
        REQUIRE(r.records.size() == 1);
        return r.records[0];
    };
    int asked = 0;
    const CandidateRecord slow = decide(1.5, asked);
    CHECK(asked == 1);
    CHECK_MESSAGE(slow.verdict == Verdict::Feasible, slow.reason);
    REQUIRE(slow.measured_ms);
    CHECK(*slow.measured_ms == doctest::Approx(usual_ms));
    CHECK(slow.reason.find("while a reference model ran 1.50x its fastest time") != std::string::npos);
    double costliest_ms = 0;
    for (const LayerCost& l : synthetic_measure(parse_dsl(valid_model).graph).per_layer) costliest_ms = std::max(costliest_ms, l.ms);
    CHECK(slow.top_layers.front().ms == doctest::Approx(costliest_ms));  // per layer, at the usual pace too

    asked = 0;
    const CandidateRecord steady = decide(1.02, asked);  // the machine is not slow: the model is
    CHECK(asked == 1);
    CHECK_MESSAGE(steady.verdict == Verdict::OverMeasured, steady.reason);
    CHECK(*steady.measured_ms == doctest::Approx(usual_ms * 1.5));
    CHECK(steady.reason.find("reference model") == std::string::npos);

    asked = 0;
    task.constraints.latency_ms = usual_ms * 2;  // within budget as measured: nothing is asked
    const CandidateRecord fits = decide(1.5, asked);
    CHECK(asked == 0);
    CHECK(fits.verdict == Verdict::Feasible);
    CHECK(*fits.measured_ms == doctest::Approx(usual_ms * 1.5));
}

TEST_CASE("generate: a slow burst excuses a measurement down to the latency model's prediction, not below") {
    CHECK(usual_pace_ms(1.5, 1.5, std::nullopt) == doctest::Approx(1.0));  // unpredicted: the reference decides
    CHECK(usual_pace_ms(1.5, 1.5, 1.3) == doctest::Approx(1.3));           // the reference read more than the candidate felt
    CHECK(usual_pace_ms(1.5, 1.5, 0.9) == doctest::Approx(1.0));           // predicted faster: the division stands
    CHECK(usual_pace_ms(1.5, 1.5, 2.0) == doctest::Approx(1.5));           // never slower than measured
}

TEST_CASE("generate: a failing measurement is a Failed candidate and the loop goes on") {
    ScriptedProposer proposer({valid_model, "input: input shape=28x28x1\np: gap\nfc: fc out=10\n"});
    GenerateSetup setup;
    int calls = 0;
    setup.measure = [&](const Graph& g) -> Measurement {
        if (calls++ == 0) throw std::runtime_error("executor exploded");
        return synthetic_measure(g);
    };
    const GenerateResult result = run_generation(small_task(), proposer, setup);
    REQUIRE(result.records.size() == 2);
    CHECK(result.records[0].verdict == Verdict::Failed);
    CHECK(result.records[0].reason.find("executor exploded") != std::string::npos);
    CHECK(result.records[1].verdict == Verdict::Feasible);
}

TEST_CASE("generate: offline and random searches stop at the budget with distinct candidates") {
    for (int which = 0; which < 2; ++which) {
        std::unique_ptr<Proposer> p;
        if (which == 0) p = std::make_unique<OfflineDesigner>(3);
        else p = std::make_unique<RandomProposer>(3);
        const GenerateResult r = run_generation(small_task(0.08, 40), *p, synthetic_setup());
        CHECK(r.records.size() == 40);
        CHECK(r.stop_reason == "max_candidates");
        std::set<std::string> hashes;
        for (const auto& rec : r.records) {
            CHECK(hashes.insert(rec.hash).second);
            CHECK(rec.verdict != Verdict::Invalid);  // the built-in proposers only offer valid text
            CHECK(rec.note.find("design: ") != std::string::npos);
        }
        CHECK_FALSE(rank_feasible(r.records, Objective::Capacity).empty());
    }
}

TEST_CASE("generate: a resumed search continues exactly where it stopped") {
    // Deterministic measurements: the resumed run must make the same proposals as a straight one.
    for (int which = 0; which < 2; ++which) {
        auto make = [&]() -> std::unique_ptr<Proposer> {
            if (which == 0) return std::make_unique<OfflineDesigner>(11);
            return std::make_unique<RandomProposer>(11);
        };
        auto straight_proposer = make();
        const GenerateResult straight = run_generation(small_task(0.08, 25), *straight_proposer, synthetic_setup());
        auto first_proposer = make();
        GenerateResult first = run_generation(small_task(0.08, 9), *first_proposer, synthetic_setup());
        auto resumed_proposer = make();  // a new process: nothing but the records survive
        const GenerateResult resumed =
            run_generation(small_task(0.08, 25), *resumed_proposer, synthetic_setup(), first.records);
        CHECK(resumed.resumed == 9);
        REQUIRE(resumed.records.size() == straight.records.size());
        for (std::size_t i = 0; i < straight.records.size(); ++i) {
            CHECK(resumed.records[i].hash == straight.records[i].hash);
            CHECK(resumed.records[i].index == static_cast<int>(i));
        }
        CHECK(resumed.records.back().elapsed_s >= first.records.back().elapsed_s);
    }
}

TEST_CASE("generate: the offline designer beats random at equal budget (synthetic device)") {
    // Capacity objective: the largest MACs under the latency limit. Over several seeds, so that
    // one lucky random draw does not decide it.
    double offline_total = 0, random_total = 0;
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        OfflineDesigner offline(seed);
        RandomProposer random(seed);
        const Task task = small_task(0.08, 40);
        const auto a = run_generation(task, offline, synthetic_setup());
        const auto b = run_generation(task, random, synthetic_setup());
        const auto best_a = rank_feasible(a.records, task.objective);
        const auto best_b = rank_feasible(b.records, task.objective);
        REQUIRE_FALSE(best_a.empty());
        offline_total += double(a.records[best_a[0]].macs);
        if (!best_b.empty()) random_total += double(b.records[best_b[0]].macs);
    }
    CHECK(offline_total > random_total);
}

TEST_CASE("generate: the offline designer counts parameters before proposing") {
    // A parameter limit the zoo's seeds and the designer's growing edits overshoot: the loop would
    // reject those unmeasured, each spending a candidate of the budget.
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        Task task = small_task(0.08, 30);
        task.constraints.max_params = 3000;
        OfflineDesigner offline(seed);
        RandomProposer random(seed);
        const auto a = run_generation(task, offline, synthetic_setup());
        const auto b = run_generation(task, random, synthetic_setup());
        auto over = [](const GenerateResult& r) {
            return std::count_if(r.records.begin(), r.records.end(),
                                 [](const CandidateRecord& c) { return c.verdict == Verdict::OverParams; });
        };
        INFO("seed " << seed << ": offline " << over(a) << " over max_params, random " << over(b));
        CHECK(a.records.size() == 30);
        CHECK(over(a) <= 1);
        CHECK(over(b) > over(a));  // the baseline draws without counting: it does spend them
        CHECK_FALSE(rank_feasible(a.records, task.objective).empty());
    }
}

TEST_CASE("generate: the offline designer trades a stage for width and keeps the resolution") {
    // "Fewer, wider": one stage goes (its downsampling moves to a neighbour) and every width
    // grows, so that per-operator overhead buys multiply-adds instead.
    const auto total_stride = [](const Design& d) {
        int s = d.stem_stride;
        for (const StageDesign& st : d.stages) s *= st.stride;
        return s;
    };
    int seen_moves = 0;
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        OfflineDesigner offline(seed);
        const auto r = run_generation(small_task(0.08, 40), offline, synthetic_setup());
        for (const CandidateRecord& c : r.records) {
            const std::string move = "lateral s";
            if (c.note.rfind(move, 0) != 0 || c.note.find("removed, widths x1.15 of #") == std::string::npos ||
                c.note.find('+') != std::string::npos)
                continue;
            const std::size_t at = c.note.find(" of #") + 5;
            const int parent = std::stoi(c.note.substr(at));
            REQUIRE(parent >= 0);
            REQUIRE(parent < c.index);
            const auto child_design = proposer_detail::design_of(c);
            const auto parent_design = proposer_detail::design_of(r.records[static_cast<std::size_t>(parent)]);
            REQUIRE(child_design);
            REQUIRE(parent_design);
            INFO("seed " << seed << " #" << c.index << ": " << c.note);
            ++seen_moves;
            CHECK(child_design->stages.size() + 1 == parent_design->stages.size());
            CHECK(total_stride(*child_design) == total_stride(*parent_design));
            CHECK(child_design->stem_channels >= parent_design->stem_channels);
            CHECK(child_design->head_channels >= parent_design->head_channels);
            CHECK(c.verdict != Verdict::Invalid);
        }
    }
    CHECK(seen_moves > 0);
}

TEST_CASE("generate: with parameters binding and time left, the designer buys resolution, not weights") {
    // A generous time budget and a tight parameter limit: the move runs the same weights over
    // more pixels (a downsampling one stage later, or a full-resolution stem), so the child has
    // exactly its parent's parameters and more multiply-adds.
    Task task = small_task(1.0, 40);
    task.constraints.max_params = 12000;
    int seen_moves = 0;
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        OfflineDesigner offline(seed);
        const auto r = run_generation(task, offline, synthetic_setup());
        for (const CandidateRecord& c : r.records) {
            if (c.note.rfind("resolution ", 0) != 0) continue;
            const int parent = std::stoi(c.note.substr(c.note.find(" of #") + 5));
            REQUIRE(parent >= 0);
            REQUIRE(parent < c.index);
            const CandidateRecord& p = r.records[static_cast<std::size_t>(parent)];
            INFO("seed " << seed << " #" << c.index << ": " << c.note);
            ++seen_moves;
            CHECK(p.params >= 0.85 * task.constraints.max_params);
            CHECK(c.params == p.params);
            CHECK(c.macs > p.macs);
        }
    }
    CHECK(seen_moves > 0);
}

TEST_CASE("generate: the offline designer sizes widths on the target's channel tile") {
    CHECK(channel_step_for("avx512f", false) == 16);
    CHECK(channel_step_for("fma3", false) == 16);
    CHECK(channel_step_for("neonfma", false) == 8);
    CHECK(channel_step_for("avx512f", true) == 8);  // int8 kernels tile by 8 (and c8 in K)
    CHECK(channel_step_for("", false) == 8);
    DesignBounds tile16;
    tile16.channel_step = 16;
    using design_detail::round_channels;
    CHECK(round_channels(24, tile16) == 32);  // pays for 32 on a 16-wide tile anyway
    CHECK(round_channels(22, tile16) == 16);
    CHECK(round_channels(40, tile16) == 48);
    CHECK(round_channels(9, tile16) == 8);  // below one tile: multiples of 8, as before
    CHECK(round_channels(24, DesignBounds{}) == 24);

    // Every width the designer itself picks (its seeds are the zoo's, as they are) sits on the tile.
    int edited = 0;
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        OfflineDesigner offline(seed, tile16);
        const auto r = run_generation(small_task(0.08, 30), offline, synthetic_setup());
        for (const CandidateRecord& c : r.records) {
            if (c.note.rfind("seed ", 0) == 0 || c.note.find("scale widths") == std::string::npos) continue;
            const auto d = proposer_detail::design_of(c);
            REQUIRE(d);
            INFO("seed " << seed << " #" << c.index << ": " << c.note);
            ++edited;
            const auto on_tile = [](int w) { return w == 8 || w % 16 == 0; };
            CHECK(on_tile(d->stem_channels));
            for (const StageDesign& st : d->stages) CHECK(on_tile(st.channels));
            if (d->head_channels > 0) CHECK(on_tile(d->head_channels));
        }
    }
    CHECK(edited > 0);
}

TEST_CASE("generate: a proposer that only repeats itself ends the search") {
    std::vector<std::string> same(100, valid_model);
    ScriptedProposer proposer(same);
    const GenerateResult r = run_generation(small_task(), proposer, synthetic_setup());
    CHECK(r.records.size() == 1);
    CHECK(r.stop_reason == "exhausted");
    CHECK(r.duplicates == 50);
}

namespace {

// Proxy accuracy 0.80 in fp32 and 0.78 after quantization; counts the int8 evaluations.
class QuantizingTrainer : public Trainer {
public:
    double proxy_accuracy(const Graph&) override { return 0.80; }
    FinalTraining train_final(const Graph&, const std::string&) override { return {}; }
    double last_int8_accuracy(const Graph&) override {
        ++int8_evaluations;
        return 0.78;
    }
    int int8_evaluations = 0;
};

// fp32 at the synthetic rate, int8 at `int8_factor` of it: which precision wins is the test's choice.
GenerateSetup two_precision_setup(double int8_factor, int* fp32_runs, int* int8_runs) {
    GenerateSetup s;
    s.measure = [fp32_runs](const Graph& g) {
        ++*fp32_runs;
        return synthetic_measure(g);
    };
    s.measure_int8 = [int8_factor, int8_runs](const Graph& g) {
        ++*int8_runs;
        Measurement m = synthetic_measure(g);
        m.median_ms *= int8_factor;
        return m;
    };
    return s;
}

// An accuracy task in `precision` whose one candidate is valid_model, int8 measuring
// `int8_factor` times fp32, trained by a QuantizingTrainer.
struct OneCandidateRun {
    GenerateResult result;
    int fp32_runs = 0, int8_runs = 0, int8_evaluations = 0;
};
OneCandidateRun run_one_candidate(TaskPrecision precision, double int8_factor) {
    Task task = small_task(10.0, 3);
    task.precision = precision;
    task.objective = Objective::Accuracy;
    OneCandidateRun out;
    GenerateSetup s = two_precision_setup(int8_factor, &out.fp32_runs, &out.int8_runs);
    QuantizingTrainer trainer;
    s.trainer = &trainer;
    ScriptedProposer proposer({valid_model});
    out.result = run_generation(task, proposer, s);
    out.int8_evaluations = trainer.int8_evaluations;
    return out;
}

}  // namespace

TEST_CASE("an int8 task measures in int8 and judges accuracy after quantization") {
    const OneCandidateRun run = run_one_candidate(TaskPrecision::Int8, 0.5);
    const GenerateResult& r = run.result;
    REQUIRE(r.records.size() == 1);
    const CandidateRecord& c = r.records[0];
    CHECK(c.verdict == Verdict::Feasible);
    CHECK(c.precision == "int8");
    CHECK(run.fp32_runs == 0);
    CHECK(run.int8_runs == 1);
    REQUIRE(c.measured_ms);
    CHECK(*c.measured_ms == doctest::Approx(synthetic_measure(parse_dsl(valid_model).graph).median_ms * 0.5));
    REQUIRE(c.accuracy);
    CHECK(*c.accuracy == doctest::Approx(0.78));
    REQUIRE(c.float_accuracy);
    CHECK(*c.float_accuracy == doctest::Approx(0.80));
    CHECK(run.int8_evaluations == 1);
    CHECK(c.reason.find("in int8") != std::string::npos);
}

TEST_CASE("precision any keeps the faster measured precision") {
    for (double factor : {0.5, 2.0}) {
        CAPTURE(factor);
        const OneCandidateRun run = run_one_candidate(TaskPrecision::Any, factor);
        const GenerateResult& r = run.result;
        REQUIRE(r.records.size() == 1);
        const CandidateRecord& c = r.records[0];
        CHECK(run.fp32_runs == 1);
        CHECK(run.int8_runs == 1);
        CHECK(c.precision == (factor < 1 ? "int8" : "fp32"));
        REQUIRE(c.accuracy);
        CHECK(*c.accuracy == doctest::Approx(factor < 1 ? 0.78 : 0.80));
        CHECK(c.float_accuracy.has_value() == (factor < 1));
        CHECK(run.int8_evaluations == (factor < 1 ? 1 : 0));
        CHECK(c.reason.find("fp32 ") != std::string::npos);  // both measurements are said
    }
}

TEST_CASE("precision any without an int8 latency model measures int8 before rejecting on fp32's prediction") {
    // An fp32 model predicting 10 ms per operator: valid_model's conv and fc, 20 ms, against a
    // 10 ms budget. int8 has no model and measures at half the synthetic rate.
    std::vector<LatencySample> samples;
    for (PrimKind k : all_prim_kinds)
        for (int i = 0; i < 12; ++i) {
            LatencySample sample;
            sample.op.kind = k;
            sample.op.ih = sample.op.oh = sample.op.iw = sample.op.ow = 4 + i;
            sample.op.ic = 1 + i;
            sample.op.oc = 8 + i;
            sample.op.kh = sample.op.kw = 3;
            sample.ms = 10.0;
            samples.push_back(sample);
        }
    const LatencyModel slow = fit_latency_model(samples, {});
    const Graph g = parse_dsl(valid_model).graph;
    REQUIRE(slow.predict_ms(g) > 12.0);
    for (TaskPrecision p : {TaskPrecision::Fp32, TaskPrecision::Any}) {
        Task task = small_task(10.0, 3);
        task.precision = p;
        int fp32_runs = 0, int8_runs = 0;
        GenerateSetup s = two_precision_setup(0.5, &fp32_runs, &int8_runs);
        s.latency = &slow;
        ScriptedProposer proposer({valid_model});
        const GenerateResult r = run_generation(task, proposer, s);
        REQUIRE(r.records.size() == 1);
        CAPTURE(r.records[0].reason);
        if (p == TaskPrecision::Fp32) {
            CHECK(r.records[0].verdict == Verdict::OverPredicted);
            CHECK(fp32_runs + int8_runs == 0);
        } else {
            CHECK(r.records[0].verdict == Verdict::Feasible);
            CHECK(r.records[0].precision == "int8");
            CHECK(int8_runs == 1);
        }
    }
}

TEST_CASE("flash and RAM limits count int8 bytes in an int8 task") {
    // conv 3x3x1 -> 8 (72 weights + 8 bias), fc 8 -> 10 (80 + 10): 170 params, 680 bytes in fp32;
    // int8: 72 + 8*4 + 8*4 = 136 and 80 + 10*4 + 10*4 = 160, 296 bytes.
    const Graph g = parse_dsl(valid_model).graph;
    const FirmwareMemory f32 = firmware_memory(g), i8 = firmware_memory(g, true);
    REQUIRE(f32.ok);
    REQUIRE(i8.ok);
    CHECK(f32.weight_bytes == 680);
    CHECK(i8.weight_bytes == 296);
    CHECK(i8.arena_bytes < f32.arena_bytes);
    CHECK(i8.output_bytes == 40);  // float logits in both
    Task task = small_task(10.0, 3);
    task.constraints.max_weight_bytes = 400;
    int fp32_runs = 0, int8_runs = 0;
    for (TaskPrecision p : {TaskPrecision::Fp32, TaskPrecision::Int8, TaskPrecision::Any}) {
        task.precision = p;
        ScriptedProposer proposer({valid_model});
        const GenerateResult r = run_generation(task, proposer, two_precision_setup(2.0, &fp32_runs, &int8_runs));
        REQUIRE(r.records.size() == 1);
        CAPTURE(r.records[0].reason);
        CHECK(r.records[0].verdict == (p == TaskPrecision::Fp32 ? Verdict::OverMemory : Verdict::Feasible));
        // "any": fp32 does not fit, so int8 runs although it measures slower.
        if (p == TaskPrecision::Any) CHECK(r.records[0].precision == "int8");
    }
    CHECK(fp32_runs == 0);
}
