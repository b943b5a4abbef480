// search/memory.hpp: the search's memory constraints (max_activation_bytes: RAM, max_weight_bytes:
// flash for weights) count what the firmware export allocates (deploy/firmware.hpp), so a
// candidate the loop finds within max_activation_bytes exports under --max-ram of the same number,
// one byte over is over_memory with the numbers, and a resumed journal is checked the same way.
#include <doctest/doctest.h>

#include <lamda/deploy/firmware.hpp>
#include <lamda/search/journal.hpp>
#include <lamda/search/loop.hpp>
#include <lamda/search/task.hpp>

#include <set>
#include <string>

namespace {

using namespace lamda;

// Batch norm that folds (after c1), one that does not (after an add), in-place activations.
const char* model_text = R"(model m
input: input shape=28x28x1
c1: conv2d out=8 kernel=3 stride=2
bn1: batchnorm
r1: relu
c2: conv2d out=8 kernel=3 padding=1
s: add c2, r1
bn2: batchnorm
g: gap
fc: fc out=10
)";

Task task_with(std::int64_t max_activation_bytes, std::int64_t max_weight_bytes) {
    Task t;
    t.name = "memory";
    t.input = {28, 28, 1};
    t.classes = 10;
    t.constraints.max_activation_bytes = max_activation_bytes;
    t.constraints.max_weight_bytes = max_weight_bytes;
    return t;
}

CandidateRecord decide(const Task& task) {
    GenerateSetup setup;  // no latency model, no measurement, no trainer: the screen decides
    const std::optional<CandidateRecord> r =
        evaluate_candidate(task, Proposal{model_text, "test"}, setup, std::set<std::string>{});
    REQUIRE(r.has_value());
    return *r;
}

}  // namespace

TEST_CASE("search memory: the firmware export's arena, output and weights") {
    const ParseResult p = parse_dsl(model_text, "m.lamda");
    REQUIRE(p.ok());
    const FirmwareMemory m = firmware_memory(p.graph);
    REQUIRE(m.ok);
    const FirmwareSource fw = firmware_source(p.graph, random_weights(p.graph, 1));
    CHECK(m.arena_bytes == fw.arena_bytes);
    CHECK(m.output_bytes == fw.output_bytes);
    CHECK(m.ram_bytes == fw.arena_bytes + fw.output_bytes);
    CHECK(m.weight_bytes == fw.weight_bytes);
    // Not the unplanned peak: the analysis' peak counts every value a buffer of its own.
    CHECK(m.arena_bytes < analyze(p.graph).peak_activation_bytes);
    Graph bad = p.graph;
    bad.layers[2].shape = Shape{};
    const FirmwareMemory mb = firmware_memory(bad);
    CHECK(!mb.ok);
    CHECK(over_memory(task_with(1000, 0).constraints, mb).find("plan failed") != std::string::npos);
    CHECK(over_memory(task_with(0, 0).constraints, mb).empty());  // no limit: nothing to check
}

TEST_CASE("search memory: max_activation_bytes and max_weight_bytes decide over_memory in the loop") {
    const ParseResult p = parse_dsl(model_text, "m.lamda");
    REQUIRE(p.ok());
    const FirmwareMemory m = firmware_memory(p.graph);
    REQUIRE(m.ok);

    const CandidateRecord fits = decide(task_with(m.ram_bytes, m.weight_bytes));
    CHECK(fits.verdict != Verdict::OverMemory);
    CHECK_NOTHROW(validate_resumed_record(fits, task_with(m.ram_bytes, m.weight_bytes), "j:1"));

    const CandidateRecord ram = decide(task_with(m.ram_bytes - 1, 0));
    CHECK(ram.verdict == Verdict::OverMemory);
    CHECK(ram.reason.find("needs " + std::to_string(m.ram_bytes) + " bytes of RAM") != std::string::npos);
    CHECK(ram.reason.find("arena " + std::to_string(m.arena_bytes)) != std::string::npos);
    CHECK(ram.reason.find("max_activation_bytes " + std::to_string(m.ram_bytes - 1)) != std::string::npos);
    CHECK_NOTHROW(validate_resumed_record(ram, task_with(m.ram_bytes - 1, 0), "j:2"));
    // The same record under a task whose limit it meets is a tampered journal.
    CHECK_THROWS_WITH(validate_resumed_record(ram, task_with(m.ram_bytes, 0), "j:2"),
                      doctest::Contains("within the limits"));
    CHECK_THROWS_WITH(validate_resumed_record(fits, task_with(m.ram_bytes - 1, 0), "j:1"),
                      doctest::Contains("max_activation_bytes"));

    const CandidateRecord flash = decide(task_with(0, m.weight_bytes - 1));
    CHECK(flash.verdict == Verdict::OverMemory);
    CHECK(flash.reason.find("needs " + std::to_string(m.weight_bytes) + " bytes of weights") != std::string::npos);

    // What the search accepted, the export accepts at --max-ram of the same number.
    const FirmwareSource fw = firmware_source(p.graph, random_weights(p.graph, 2));
    CHECK(fw.arena_bytes + fw.output_bytes <= m.ram_bytes);
}

TEST_CASE("search memory: the task file reads max_weight_bytes and writes it back") {
    const std::string json = R"({"name": "t", "input": [28, 28, 1], "classes": 10,
        "constraints": {"max_activation_bytes": 40000, "max_weight_bytes": 25000}})";
    const Task t = parse_task(json, "t.json");
    CHECK(t.constraints.max_activation_bytes == 40000);
    CHECK(t.constraints.max_weight_bytes == 25000);
    const Task u = parse_task(task_json(t), "again");
    CHECK(u.constraints.max_weight_bytes == 25000);
    CHECK_THROWS_WITH_AS(parse_task(R"({"name": "t", "input": [28, 28, 1], "classes": 10,
        "constraints": {"max_weight_bytes": 0}})", "t.json"),
                         doctest::Contains("max_weight_bytes"), TaskError);
}

TEST_CASE("search memory: int8 counts what the int8 firmware export allocates") {
    const ParseResult p = parse_dsl(model_text, "m.lamda");
    REQUIRE(p.ok());
    std::vector<Tensor> calibration;
    for (int k = 0; k < 4; ++k) {
        Tensor t(p.graph.layers.front().shape);
        for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<float>((i * 7 + k * 13) % 17) / 17.0f;
        calibration.push_back(std::move(t));
    }
    const PtqResult q = quantize_ptq(p.graph, random_weights(p.graph, 1), calibration);
    // bn2 follows an add: it cannot fold and runs in float (scratch in the arena, float weights).
    CHECK(q.model.float_layers == std::vector<std::string>{"bn2"});
    const FirmwareSource fw = firmware_source_int8(q.graph, q.model, q.float_weights);
    const FirmwareMemory m = firmware_memory(p.graph, true);
    REQUIRE(m.ok);
    CHECK(m.arena_bytes == fw.arena_bytes);
    CHECK(m.output_bytes == fw.output_bytes);
    CHECK(m.weight_bytes == fw.weight_bytes);
    const FirmwareMemory f32 = firmware_memory(p.graph);
    CHECK(m.weight_bytes < f32.weight_bytes);
    // Not always less RAM: bn2's float scratch (its input and output as float) makes this arena
    // larger than the float one, which is why the constraint is counted per precision.
    CHECK(m.arena_bytes > f32.arena_bytes);
    // The loop's memory verdict in an int8 task uses these numbers, and says int8.
    Task t = task_with(0, m.weight_bytes - 1);
    t.precision = TaskPrecision::Int8;
    const CandidateRecord r = decide(t);
    CHECK(r.verdict == Verdict::OverMemory);
    CHECK(r.reason.find("(int8, batch norm folded)") != std::string::npos);
    CHECK_NOTHROW(validate_resumed_record(r, t, "j:1"));
    t.constraints.max_weight_bytes = m.weight_bytes;
    const CandidateRecord fits = decide(t);
    CHECK(fits.verdict == Verdict::Feasible);
    // Resuming checks memory in the record's precision: within int8's bytes, over fp32's.
    CHECK_NOTHROW(validate_resumed_record(fits, t, "j:2"));
    CHECK_THROWS_WITH(validate_resumed_record(r, t, "j:1"), doctest::Contains("within the limits"));
    // "any": over memory only when neither precision fits; the one that fits is the record's.
    t.precision = TaskPrecision::Any;
    const CandidateRecord any = decide(t);
    CHECK(any.verdict == Verdict::Feasible);
    CHECK(any.precision == "int8");
    CHECK_NOTHROW(validate_resumed_record(any, t, "j:3"));
    t.constraints.max_weight_bytes = m.weight_bytes - 1;
    const CandidateRecord none = decide(t);
    CHECK(none.verdict == Verdict::OverMemory);
    CHECK_NOTHROW(validate_resumed_record(none, t, "j:4"));
}
