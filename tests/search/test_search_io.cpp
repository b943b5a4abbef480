// The generation loop's files: task files (parse, errors that name the field, relative paths),
// the journal (exact round trip, durable appends, a torn last line dropped and repaired, a corrupt
// middle line refused, a SIGKILLed writer), the Pareto front and best candidate, and the reports.
// Built with LAMDA_WITH_LATENCY (simdjson).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <simdjson.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lamda/search/journal.hpp"
#include "lamda/detail/json_read.hpp"
#include "lamda/search/report.hpp"
#include "lamda/search/types.hpp"
#include "lamda/search/task.hpp"

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system's temporary directory, removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "lamda-search-io-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void spit(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

std::string task_error(const std::string& json) {
    try {
        lamda::parse_task(json, "tasks/x.json");
    } catch (const lamda::TaskError& e) {
        return e.what();
    }
    return "(no error)";
}

const char* const good_task = R"({
  "name": "fmnist_medium",
  "input": [28, 28, 1],
  "classes": 10,
  "dataset": "fashion-mnist",
  "constraints": {"latency_ms": 0.1, "threads": 2, "max_params": 100000,
                  "max_activation_bytes": 1000000, "min_accuracy": 0.92},
  "profile": "profiles/here.json",
  "budget": {"max_candidates": 50, "max_seconds": 120.5},
  "objective": "accuracy"
})";

// `good_task` with `from` replaced by `to` (which must be there).
std::string edited(const std::string& from, const std::string& to) {
    std::string s = good_task;
    const auto at = s.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    return s.replace(at, from.size(), to);
}

lamda::CandidateRecord record(int index, lamda::Verdict v, std::optional<double> measured, std::optional<double> predicted,
                              std::int64_t macs, std::optional<double> accuracy = std::nullopt) {
    lamda::CandidateRecord r;
    r.index = index;
    r.proposer = "offline";
    r.note = "edit " + std::to_string(index);
    r.dsl = "model m" + std::to_string(index) + "\ninput: input shape=28x28x1\npool: gap\nlogits: fc out=10\n";
    r.hash = "00000000000000" + std::to_string(10 + index);
    r.verdict = v;
    r.reason = std::string(lamda::verdict_name(v));
    r.params = macs / 10;
    r.macs = macs;
    r.peak_activation_bytes = 4096;
    r.measured_ms = measured;
    r.predicted_ms = predicted;
    r.accuracy = accuracy;
    r.seconds = 0.25 * index;
    r.elapsed_s = 1.5 * index;
    return r;
}

// A record that exercises every field and awkward text.
lamda::CandidateRecord awkward_record(int index) {
    lamda::CandidateRecord r;
    r.index = index;
    r.proposer = "llm";
    r.note = "turn 3: \"widen\" b2 \\ 50% \t tab, ünïcödé → 模型 🚀, <b>&amp;</b>\nsecond line";
    r.dsl = "model weird # \"quoted\" <script>alert(1)</script>\ninput: input shape=28x28x1\n\x01\x1f ctrl\r\n";
    r.hash = "0123456789abcdef";
    r.verdict = lamda::Verdict::OverMeasured;
    r.reason = "measured 0.3 ms > 0.1 ms";
    r.diagnostics = {"<test>:2:7: error: unknown layer type 'conv3d'\n  hint: did you mean 'conv2d'?", ""};
    r.params = 123456789012LL;
    r.macs = 0;
    r.peak_activation_bytes = -1;
    r.predicted_ms = 0.1 + 0.2;  // 0.30000000000000004: needs all 17 digits
    r.measured_ms = 1e-300;
    r.accuracy = 0.9123456789012345;
    r.top_layers = {{"b3_expand", 0.123456789, 1.0 / 3.0}, {"stem \"x\"", 5e-324, 0}};
    r.seconds = 12345.678901234567;
    r.elapsed_s = std::nextafter(1.0, 2.0);
    return r;
}

void check_same(const lamda::CandidateRecord& a, const lamda::CandidateRecord& b) {
    CHECK(a.index == b.index);
    CHECK(a.proposer == b.proposer);
    CHECK(a.note == b.note);
    CHECK(a.dsl == b.dsl);
    CHECK(a.hash == b.hash);
    CHECK(a.verdict == b.verdict);
    CHECK(a.reason == b.reason);
    CHECK(a.diagnostics == b.diagnostics);
    CHECK(a.params == b.params);
    CHECK(a.macs == b.macs);
    CHECK(a.peak_activation_bytes == b.peak_activation_bytes);
    CHECK(a.predicted_ms == b.predicted_ms);  // exact: doubles round-trip bit for bit
    CHECK(a.measured_ms == b.measured_ms);
    CHECK(a.accuracy == b.accuracy);
    REQUIRE(a.top_layers.size() == b.top_layers.size());
    for (std::size_t i = 0; i < a.top_layers.size(); ++i) {
        CHECK(a.top_layers[i].name == b.top_layers[i].name);
        CHECK(a.top_layers[i].ms == b.top_layers[i].ms);
        CHECK(a.top_layers[i].share == b.top_layers[i].share);
    }
    CHECK(a.seconds == b.seconds);
    CHECK(a.elapsed_s == b.elapsed_s);
}

lamda::JournalHeader header_for(const lamda::Task& task, std::uint64_t seed = 7) {
    lamda::JournalHeader h;
    h.task = task;
    h.proposer = "offline";
    h.seed = seed;
    return h;
}

}  // namespace

// ---- Task files ----------------------------------------------------------------------------

TEST_CASE("parse_task reads every field") {
    const lamda::Task t = lamda::parse_task(good_task, "t.json");
    CHECK(t.name == "fmnist_medium");
    CHECK(t.input == lamda::Shape{28, 28, 1});
    CHECK(t.classes == 10);
    CHECK(t.dataset == "fashion-mnist");
    CHECK(t.constraints.latency_ms == 0.1);
    CHECK(t.constraints.threads == 2);
    CHECK(t.constraints.max_params == 100000);
    CHECK(t.constraints.max_activation_bytes == 1000000);
    REQUIRE(t.constraints.min_accuracy);
    CHECK(*t.constraints.min_accuracy == 0.92);
    CHECK(t.profile == "profiles/here.json");  // parse_task keeps paths as written
    CHECK(t.budget.max_candidates == 50);
    CHECK(t.budget.max_seconds == 120.5);
    CHECK(t.objective == lamda::Objective::Accuracy);
    CHECK(t.objective_given);

    // task_json writes it back; parsing that gives the same task.
    const lamda::Task u = lamda::parse_task(lamda::task_json(t), "again");
    CHECK(lamda::task_json(u) == lamda::task_json(t));
    CHECK(u.constraints.min_accuracy == t.constraints.min_accuracy);
    CHECK(u.budget.max_seconds == t.budget.max_seconds);
}

TEST_CASE("parse_task: defaults for what a task leaves out") {
    const lamda::Task t = lamda::parse_task(
        R"({"name": "n", "input": [32, 32, 3], "classes": 100, "constraints": {"latency_ms": 1}})", "t.json");
    CHECK(t.dataset.empty());
    CHECK(t.constraints.threads == 1);
    CHECK(t.constraints.max_params == 0);
    CHECK(t.constraints.max_activation_bytes == 0);
    CHECK_FALSE(t.constraints.min_accuracy);
    CHECK(t.profile.empty());
    CHECK(t.budget.max_candidates == lamda::Budget{}.max_candidates);
    CHECK(t.budget.max_seconds == lamda::Budget{}.max_seconds);
    CHECK_FALSE(t.objective_given);
    // Integral numbers with an exponent are integers; null is absent.
    const lamda::Task u = lamda::parse_task(
        R"({"name": "n", "input": [32, 32, 3], "classes": 10, "dataset": null,
            "constraints": {"max_params": 1e5, "latency_ms": null}})", "t.json");
    CHECK(u.constraints.max_params == 100000);
    CHECK(u.constraints.latency_ms == 0);
    const lamda::Task v = lamda::parse_task(lamda::task_json(t), "t");
    CHECK(lamda::task_json(v) == lamda::task_json(t));
}

TEST_CASE("task file errors name the file, the field and what is wrong") {
    CHECK(task_error(edited("\"latency_ms\": 0.1", "\"latency_ms\": -1")) ==
          "tasks/x.json: error: task: constraints.latency_ms: must be > 0, got -1");
    const struct {
        std::string json;
        std::string expected;
    } cases[] = {
        {"", "tasks/x.json: error: task: not valid JSON"},
        {"{\"name\": \"x\",", "not valid JSON"},
        {"[1, 2]", "tasks/x.json: error: task: (top level): expected an object"},
        {edited("\"name\": \"fmnist_medium\",", ""), "task: name: missing"},
        {edited("\"fmnist_medium\"", "\"\""), "name: must not be empty"},
        {edited("\"fmnist_medium\"", "42"), "name: expected a string"},
        {edited("[28, 28, 1]", "[28, 28]"), "input: expected [H, W, C] (3 integers), got 2 values"},
        {edited("[28, 28, 1]", "[28, 0, 1]"), "input[1]: 0 is outside 1..16384"},
        {edited("[28, 28, 1]", "[28, 28, 1.5]"), "input[2]: expected an integer"},
        {edited("[28, 28, 1]", "\"28x28x1\""), "input: expected an array"},
        {edited("\"classes\": 10", "\"classes\": 1"), "classes: 1 is outside 2..100000"},
        {edited("\"classes\": 10", "\"classes\": \"ten\""), "classes: expected an integer"},
        {edited("\"classes\": 10", "\"classes\": 18446744073709551615"), "classes: too large"},
        {edited("\"threads\": 2", "\"threads\": 0"), "constraints.threads: 0 is outside 1..1024"},
        {edited("\"max_params\": 100000", "\"max_params\": -5"), "constraints.max_params: -5 is outside"},
        {edited("\"min_accuracy\": 0.92", "\"min_accuracy\": 92"),
         "constraints.min_accuracy: must be a fraction in (0, 1], got 92; did you mean 0.92 (92%)?"},
        {edited("\"min_accuracy\": 0.92", "\"min_accuracy\": 0"), "constraints.min_accuracy: must be a fraction in (0, 1], got 0"},
        {edited("\"min_accuracy\": 0.92", "\"min_accuracy\": 1000"), "must be a fraction in (0, 1], got 1000"},
        {edited("\"max_seconds\": 120.5", "\"max_seconds\": 0"), "budget.max_seconds: must be > 0, got 0"},
        {edited("\"max_candidates\": 50", "\"max_candidates\": 0"), "budget.max_candidates: 0 is outside 1..1000000"},
        {edited("\"objective\": \"accuracy\"", "\"objective\": \"acuracy\""),
         "objective: 'acuracy' is not 'accuracy' or 'capacity'; did you mean 'accuracy'?"},
        {edited("\"dataset\": \"fashion-mnist\",", ""), "objective: 'accuracy' needs a dataset"},
        {edited("\"profile\": \"profiles/here.json\"", "\"profile\": 3"), "profile: expected a string"},
        {R"({"name": "n", "input": [1, 1, 1], "classes": 2, "constraints": 5})", "constraints: expected an object"},
        {R"({"name": "n", "input": [1, 1, 1], "classes": 2})", "task: constraints: missing"},
        // Unknown keys: a hint when one is close, else the list of keys.
        {edited("\"constraints\"", "\"constriants\""), "task: constriants: unknown key; did you mean 'constraints'?"},
        {edited("\"latency_ms\"", "\"latncy_ms\""), "constraints.latncy_ms: unknown key; did you mean 'latency_ms'?"},
        {edited("\"max_seconds\"", "\"seconds_max_total\""), "budget.seconds_max_total: unknown key (expected max_candidates, max_seconds, max_total_seconds)"},
        {edited("\"classes\": 10", "\"classes\": 10, \"classes\": 12"), "classes: appears twice"},
    };
    for (const auto& c : cases) {
        const std::string e = task_error(c.json);
        CHECK_MESSAGE(e.find(c.expected) != std::string::npos, "expected '" << c.expected << "' in: " << e);
        CHECK_MESSAGE(e.rfind("tasks/x.json: error: task: ", 0) == 0, e);
    }
    // min_accuracy without a dataset cannot be checked.
    const std::string no_dataset = edited("\"dataset\": \"fashion-mnist\",", "");
    std::string s = no_dataset;
    s.replace(s.find("\"objective\": \"accuracy\""), 23, "\"objective\": \"capacity\"");
    CHECK(task_error(s).find("constraints.min_accuracy: needs a dataset") != std::string::npos);
}

TEST_CASE("read_task resolves the profile against the task file's directory") {
    TempDir dir;
    fs::create_directories(dir.path / "tasks");
    spit(dir.file("tasks/t.json"), edited("\"profiles/here.json\"", "\"../profiles/p.json\""));
    const lamda::Task t = lamda::read_task(dir.file("tasks/t.json"));
    CHECK(fs::path(t.profile) == (dir.path / "profiles" / "p.json"));
    CHECK(t.dataset == "fashion-mnist");  // a name, not a path

    spit(dir.file("tasks/abs.json"), edited("\"profiles/here.json\"", "\"/etc/p.json\""));
    CHECK(lamda::read_task(dir.file("tasks/abs.json")).profile == "/etc/p.json");

    spit(dir.file("tasks/data.json"), edited("\"fashion-mnist\"", "\"./data/fm\""));
    CHECK(fs::path(lamda::read_task(dir.file("tasks/data.json")).dataset) == dir.path / "tasks" / "data" / "fm");

    spit(dir.file("tasks/bad.json"), edited("\"latency_ms\": 0.1", "\"latency_ms\": -1"));
    try {
        lamda::read_task(dir.file("tasks/bad.json"));
        FAIL("no error");
    } catch (const lamda::TaskError& e) {
        CHECK(std::string(e.what()) == dir.file("tasks/bad.json") + ": error: task: constraints.latency_ms: must be > 0, got -1");
    }
    CHECK_THROWS_WITH_AS(lamda::read_task(dir.file("missing.json")), doctest::Contains("cannot open the task file"),
                         lamda::TaskError);
}

TEST_CASE("the example tasks parse") {
    const std::string root = LAMDA_SOURCE_DIR "/examples/tasks/";
    const lamda::Task fast = lamda::read_task(root + "fmnist_fast.json");
    const lamda::Task medium = lamda::read_task(root + "fmnist_medium.json");
    const lamda::Task large = lamda::read_task(root + "fmnist_large.json");
    for (const lamda::Task* t : {&fast, &medium, &large}) {
        CHECK(t->input == lamda::Shape{28, 28, 1});
        CHECK(t->classes == 10);
        CHECK(t->dataset == "fashion-mnist");
        CHECK(t->profile.empty());  // profiles are machine-specific: given on the command line
    }
    CHECK(fast.constraints.latency_ms == 0.05);
    CHECK(medium.constraints.latency_ms == 0.1);
    CHECK(medium.constraints.max_params == 100000);
    CHECK(medium.constraints.min_accuracy == 0.92);
    CHECK(large.constraints.latency_ms == 0.5);
}

// ---- The journal ---------------------------------------------------------------------------

TEST_CASE("parse_task: precision fp32, int8 or any") {
    const std::string base = R"({"name": "n", "input": [28, 28, 1], "classes": 10, "constraints": {}, "precision": )";
    CHECK(lamda::parse_task(base + "\"int8\"}", "t").precision == lamda::TaskPrecision::Int8);
    CHECK(lamda::parse_task(base + "\"any\"}", "t").precision == lamda::TaskPrecision::Any);
    const lamda::Task f = lamda::parse_task(base + "\"fp32\"}", "t");
    CHECK(f.precision == lamda::TaskPrecision::Fp32);
    CHECK(lamda::task_json(f).find("precision") == std::string::npos);  // the default is not written
    const lamda::Task i = lamda::parse_task(base + "\"int8\"}", "t");
    CHECK(lamda::task_json(i).find("\"precision\":\"int8\"") != std::string::npos);
    CHECK(lamda::parse_task(lamda::task_json(i), "again").precision == lamda::TaskPrecision::Int8);
    try {
        (void)lamda::parse_task(base + "\"int4\"}", "t.json");
        FAIL("int4 was accepted");
    } catch (const lamda::TaskError& e) {
        CHECK(std::string(e.what()).find("precision: 'int4' is not 'fp32', 'int8' or 'any'; did you mean 'int8'?") !=
              std::string::npos);
    }
    // A journal of an fp32 search is not resumed as an int8 one.
    lamda::JournalHeader h;
    h.task = f;
    h.proposer = "offline";
    h.seed = 1;
    CHECK(lamda::journal_mismatch(h, i, "offline", 1).find("precision: journal has fp32, now int8") != std::string::npos);
}

TEST_CASE("journal: records round-trip exactly") {
    TempDir dir;
    const std::string path = dir.file("journal.jsonl");
    const lamda::Task task = lamda::parse_task(good_task, "t");
    std::vector<lamda::CandidateRecord> written = {
        awkward_record(0),
        record(1, lamda::Verdict::Feasible, 0.05, 0.04, 1000000, 0.9),
        record(2, lamda::Verdict::Invalid, std::nullopt, std::nullopt, -1),
    };
    written[2].diagnostics = {"x:1:1: error: \"oops\""};
    written[2].params = -1;
    {
        lamda::JournalWriter w(path, header_for(task, std::numeric_limits<std::uint64_t>::max()));
        for (const auto& r : written) w.append(r);
    }
    const std::string text = slurp(path);
    CHECK(std::count(text.begin(), text.end(), '\n') == 4);  // header + 3, one line each
    CHECK(text.rfind("{\"type\":\"header\",\"format\":\"lamda-journal\",\"version\":1,\"task\":{", 0) == 0);

    const lamda::JournalContents c = lamda::read_journal(path);
    CHECK(c.warnings.empty());
    CHECK_FALSE(c.torn());
    REQUIRE(c.has_header);
    CHECK(c.header.proposer == "offline");
    CHECK(c.header.seed == std::numeric_limits<std::uint64_t>::max());
    CHECK(c.header.lamda_version == lamda::version_string);
    CHECK(lamda::task_json(c.header.task) == lamda::task_json(task));
    REQUIRE(c.records.size() == written.size());
    for (std::size_t i = 0; i < written.size(); ++i) check_same(c.records[i], written[i]);

    // Text that is not UTF-8 is made valid (the line stays readable), not written raw.
    lamda::CandidateRecord bad = record(3, lamda::Verdict::Invalid, std::nullopt, std::nullopt, -1);
    bad.dsl = std::string("a\xff\xc3(b\xe2\x82") + "c";
    {
        lamda::JournalWriter w(path, header_for(task));
        w.append(bad);
    }
    const lamda::JournalContents c2 = lamda::read_journal(path);
    REQUIRE(c2.records.size() == 4);
    CHECK(c2.records[3].dsl == "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd" "c");
    CHECK(lamda::valid_utf8("ok ü 模 🚀") == "ok ü 模 🚀");
    CHECK(lamda::valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
}

TEST_CASE("journal: append is on disk when it returns, a second writer is refused") {
    TempDir dir;
    const std::string path = dir.file("journal.jsonl");
    const lamda::Task task = lamda::parse_task(good_task, "t");
    lamda::JournalWriter w(path, header_for(task));
    CHECK(lamda::read_journal(path).has_header);  // the header is written at once
    for (int i = 0; i < 5; ++i) {
        w.append(record(i, lamda::Verdict::Feasible, 0.01 * (i + 1), std::nullopt, 1000 * (i + 1)));
        // Read through another file description while the writer is open: nothing is buffered.
        const lamda::JournalContents c = lamda::read_journal(path);
        CHECK(c.records.size() == static_cast<std::size_t>(i + 1));
        CHECK_FALSE(c.torn());
    }
    CHECK_THROWS_WITH_AS(lamda::JournalWriter(path, header_for(task)), doctest::Contains("another process"),
                         lamda::JournalError);
    // Reopening an existing journal appends (no second header).
    lamda::JournalWriter moved = std::move(w);
    moved.append(record(5, lamda::Verdict::Feasible, 0.2, std::nullopt, 9));
    CHECK(lamda::read_journal(path).records.size() == 6);
}

TEST_CASE("journal: a torn last line is dropped with a warning and repaired") {
    TempDir dir;
    const std::string path = dir.file("journal.jsonl");
    const lamda::Task task = lamda::parse_task(good_task, "t");
    {
        lamda::JournalWriter w(path, header_for(task));
        for (int i = 0; i < 3; ++i) w.append(record(i, lamda::Verdict::Feasible, 0.01, 0.02, 1000));
    }
    const std::string complete = slurp(path);
    const std::string next = lamda::candidate_json(record(3, lamda::Verdict::Feasible, 0.01, 0.02, 1000));

    // Every cut of the next line (and garbage that a power loss can leave, newline or not).
    std::vector<std::string> tails;
    for (std::size_t n = 1; n <= next.size(); n += 7) tails.push_back(next.substr(0, n));
    tails.push_back(next);                            // all but the newline
    tails.push_back(std::string(40, '\0'));           // zeros, no newline
    // A last line that ends in its newline was written whole (the writer writes the newline in the
    // same write()): when it is not a valid record it is an error naming the line, not dropped.
    for (const std::string& bad : {std::string(40, '\0') + "\n", next.substr(0, 30) + "\n"}) {
        spit(path, complete + bad);
        CHECK_THROWS_WITH_AS(lamda::read_journal(path), doctest::Contains((path + ":5: error: journal").c_str()),
                             lamda::JournalError);
        CHECK_THROWS_AS(lamda::repair_journal(path), lamda::JournalError);
        CHECK(slurp(path) == complete + bad);  // not truncated
    }
    for (const std::string& tail : tails) {
        spit(path, complete + tail);
        const lamda::JournalContents c = lamda::read_journal(path);
        CHECK(c.records.size() == 3);
        REQUIRE(c.warnings.size() == 1);
        CHECK(c.warnings[0].find(path + ":5: warning: dropped a torn last line") == 0);
        CHECK(c.torn());
        CHECK(c.complete_bytes == complete.size());
        // Appending to a torn journal is refused until it is repaired.
        CHECK_THROWS_WITH_AS(lamda::JournalWriter(path, header_for(task)), doctest::Contains("torn"), lamda::JournalError);
        const lamda::JournalContents r = lamda::repair_journal(path);
        CHECK(r.records.size() == 3);
        CHECK(r.warnings.size() == 1);
        CHECK(slurp(path) == complete);
        CHECK(lamda::read_journal(path).warnings.empty());
    }
    {
        lamda::JournalWriter w(path, header_for(task));
        w.append(record(3, lamda::Verdict::Feasible, 0.01, 0.02, 1000));
    }
    CHECK(lamda::read_journal(path).records.size() == 4);

    // A torn header: the journal is as good as new.
    spit(path, lamda::journal_header_json(header_for(task)).substr(0, 20));
    const lamda::JournalContents h = lamda::repair_journal(path);
    CHECK_FALSE(h.has_header);
    CHECK(h.warnings.size() == 1);
    CHECK(fs::file_size(path) == 0);
    { lamda::JournalWriter w(path, header_for(task)); }
    CHECK(lamda::read_journal(path).has_header);

    // No file at all: an empty journal.
    const lamda::JournalContents none = lamda::read_journal(dir.file("none.jsonl"));
    CHECK_FALSE(none.has_header);
    CHECK(none.records.empty());
}

TEST_CASE("journal: a corrupt line that is not the last is an error naming the line") {
    TempDir dir;
    const std::string path = dir.file("journal.jsonl");
    const lamda::Task task = lamda::parse_task(good_task, "t");
    const std::string header = lamda::journal_header_json(header_for(task)) + "\n";
    const auto line = [](int i) {
        return lamda::candidate_json(record(i, lamda::Verdict::Feasible, 0.01, 0.02, 1000)) + "\n";
    };
    const auto error_of = [&](const std::string& text) -> std::string {
        spit(path, text);
        try {
            lamda::repair_journal(path);
        } catch (const lamda::JournalError& e) {
            CHECK(slurp(path) == text);  // not touched
            return e.what();
        }
        return "(no error)";
    };
    CHECK(error_of(header + line(0) + "{\"type\":\"cand\n" + line(2)).find(path + ":3: error: journal: the line is not valid JSON") == 0);
    CHECK(error_of(header + line(0) + "\n" + line(1)).find(path + ":3: error") == 0);  // an empty line
    CHECK(error_of(header + line(0) + line(2) + line(3)).find(path + ":3: error: journal: index: candidate 2 where candidate 1 was expected") == 0);
    std::string bad_verdict = line(1);
    bad_verdict.replace(bad_verdict.find("\"feasible\""), 10, "\"great\"");
    CHECK(error_of(header + line(0) + bad_verdict + line(2)).find(path + ":3: error: journal: verdict: unknown verdict 'great'") == 0);
    CHECK(error_of(line(0) + line(1)).find(":1: error: journal: type: the first line must be the header") != std::string::npos);
    std::string v2 = header;
    v2.replace(v2.find("\"version\":1"), 11, "\"version\":2");
    CHECK(error_of(v2 + line(0)).find(":1: error: journal: version: journal version 2 is not supported") != std::string::npos);
}

TEST_CASE("journal: a writer killed with SIGKILL loses no appended record") {
    TempDir dir;
    const std::string path = dir.file("journal.jsonl");
    const lamda::Task task = lamda::parse_task(good_task, "t");
    const std::string progress = dir.file("appended");
    const auto appended = [&progress]() {
        int n = 0;
        if (std::FILE* f = std::fopen(progress.c_str(), "r")) {
            if (std::fscanf(f, "%d", &n) != 1) n = 0;
            std::fclose(f);
        }
        return n;
    };
    // Under qemu-user a forked child can hang before its first append (a fork of the multithreaded
    // emulator); a try in which it appended nothing at all is made once more.
    int done = 0;
    for (int attempt = 0; attempt < 2 && done == 0; ++attempt) {
        std::remove(path.c_str());
        std::remove(progress.c_str());
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // Appends until killed; after each append returns, records how many are done.
            try {
                lamda::JournalWriter w(path, header_for(task));
                lamda::CandidateRecord r = awkward_record(0);
                r.dsl.append(20000, 'x');  // long lines: more time inside write()
                for (int i = 0; i < 100000; ++i) {
                    r.index = i;
                    w.append(r);
                    std::FILE* f = std::fopen(progress.c_str(), "w");
                    if (f) {
                        std::fprintf(f, "%d\n", i + 1);
                        std::fclose(f);
                    }
                }
            } catch (...) {
            }
            ::_exit(0);
        }
        const auto start = std::chrono::steady_clock::now();
        while (appended() < 20 && std::chrono::steady_clock::now() - start < std::chrono::seconds(20))
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ::kill(child, SIGKILL);
        int status = 0;
        ::waitpid(child, &status, 0);
        done = appended();  // appends that had returned before the kill (or one fewer)
    }
    REQUIRE(done >= 20);
    const lamda::JournalContents c = lamda::repair_journal(path);
    CHECK(static_cast<int>(c.records.size()) >= done);
    CHECK(c.warnings.size() <= 1);
    for (std::size_t i = 0; i < c.records.size(); ++i) CHECK(c.records[i].index == static_cast<int>(i));
    CHECK_FALSE(lamda::read_journal(path).torn());
}

TEST_CASE("journal_mismatch: a journal of another search is refused with the reason") {
    const lamda::Task task = lamda::parse_task(good_task, "t");
    const lamda::JournalHeader h = header_for(task, 7);
    CHECK(lamda::journal_mismatch(h, task, "offline", 7).empty());
    lamda::Task more_budget = task;
    more_budget.budget.max_candidates = 500;
    more_budget.profile = "/elsewhere/profile.json";
    CHECK(lamda::journal_mismatch(h, more_budget, "offline", 7).empty());

    const std::string seed = lamda::journal_mismatch(h, task, "offline", 8);
    CHECK(seed.find("seed: journal has 7, now 8") != std::string::npos);
    CHECK(seed.find("--seed") != std::string::npos);
    CHECK(lamda::journal_mismatch(h, task, "random", 7).find("proposer: journal has 'offline', now 'random'") !=
          std::string::npos);
    lamda::Task tighter = task;
    tighter.constraints.latency_ms = 0.05;
    CHECK(lamda::journal_mismatch(h, tighter, "offline", 7).find("constraints: journal has {\"latency_ms\":0.1") !=
          std::string::npos);
    lamda::Task other = task;
    other.classes = 100;
    other.input = lamda::Shape{32, 32, 3};
    const std::string both = lamda::journal_mismatch(h, other, "offline", 7);
    CHECK(both.find("input: journal has 28x28x1, now 32x32x3") != std::string::npos);
    CHECK(both.find("classes: journal has 10, now 100") != std::string::npos);
}

// ---- Pareto front, best, reports -----------------------------------------------------------

namespace {

std::vector<lamda::CandidateRecord> synthetic_records() {
    using V = lamda::Verdict;
    return {
        record(0, V::Feasible, 0.04, 0.05, 100000),          // front
        record(1, V::Feasible, 0.08, 0.07, 400000),          // front
        record(2, V::Feasible, 0.09, 0.09, 300000),          // dominated by 1
        record(3, V::OverMeasured, 0.2, 0.12, 2000000),      // front (infeasible)
        record(4, V::OverPredicted, std::nullopt, 0.9, 9000000),  // front, predicted only
        record(5, V::Invalid, std::nullopt, std::nullopt, -1),     // not on the plane
        record(6, V::Feasible, 0.08, 0.08, 400000),          // equal to 1: 1 stands for both
        record(7, V::OverParams, std::nullopt, std::nullopt, 50000),  // no latency
        record(8, V::Feasible, 0.03, 0.03, 100000),          // front: dominates 0
    };
}

}  // namespace

TEST_CASE("pareto_front and best_candidate on synthetic records") {
    const auto records = synthetic_records();
    using O = lamda::Objective;
    CHECK(lamda::pareto_front(records, O::Capacity) == std::vector<std::size_t>{8, 1, 3, 4});
    CHECK(lamda::pareto_front(records, O::Capacity, true) == std::vector<std::size_t>{8, 1});
    CHECK(lamda::best_candidate(records, O::Capacity) == std::optional<std::size_t>(1));  // 6 ties, later
    CHECK(lamda::rank_feasible(records, O::Capacity) == std::vector<std::size_t>{1, 6, 2, 8, 0});
    // Ties on score go to the lower latency.
    auto tie = records;
    tie[6].measured_ms = 0.075;
    CHECK(lamda::best_candidate(tie, O::Capacity) == std::optional<std::size_t>(6));

    // Accuracy: only trained candidates have a score.
    auto acc = records;
    acc[0].accuracy = 0.90;
    acc[1].accuracy = 0.89;  // slower and worse than 0: not on the front
    acc[2].accuracy = 0.93;
    acc[3].accuracy = 0.95;
    CHECK(lamda::pareto_front(acc, O::Accuracy) == std::vector<std::size_t>{0, 2, 3});
    CHECK(lamda::best_candidate(acc, O::Accuracy) == std::optional<std::size_t>(2));

    std::vector<lamda::CandidateRecord> none = {record(0, lamda::Verdict::OverMeasured, 1.0, 1.0, 10)};
    CHECK_FALSE(lamda::best_candidate(none, O::Capacity));
    CHECK(lamda::pareto_front({}, O::Capacity).empty());
}

TEST_CASE("why_no_best says what stopped every candidate") {
    lamda::Task task = lamda::parse_task(good_task, "t");
    task.constraints.latency_ms = 0.1;
    task.constraints.min_accuracy = 0.92;
    using V = lamda::Verdict;
    const std::vector<lamda::CandidateRecord> none = {record(0, V::OverMeasured, 1.0, 1.0, 10),
                                                      record(1, V::OverMeasured, 1.0, 1.0, 10),
                                                      record(2, V::BelowAccuracy, 1.0, 1.0, 10)};
    lamda::ReportInfo info;
    CHECK(lamda::why_no_best(task.constraints, none, 0, info) ==
          "none of the 3 candidates met every constraint (2 over_measured, 1 below_accuracy)");
    CHECK(lamda::why_no_best(task.constraints, {}, 0, info) == "no candidate was evaluated");
    // Feasible ones: one slower when measured again, one below min_accuracy after full training.
    info.confirmations.push_back({0, 0.1123, 200});
    info.confirmations.push_back({1, 0.0950, 200});
    lamda::TrainedCandidate t;
    t.position = 1;
    t.result.val_accuracy = 0.915;
    info.final_trainings.push_back(t);
    CHECK(lamda::why_no_best(task.constraints, none, 2, info) ==
          "2 feasible; 1 measured again over the 0.1000 ms budget; 1 trained in full below min_accuracy 92.00% "
          "(best 91.50% on validation)");
    CHECK(lamda::why_no_best(task.constraints, none, 2, lamda::ReportInfo{}) == "2 feasible, none confirmed or trained");
}

TEST_CASE("report_json parses back") {
    const lamda::Task task = lamda::parse_task(good_task, "t");
    auto records = synthetic_records();
    records[1].dsl = "model <best>\n";
    lamda::ReportInfo info;
    info.objective = lamda::Objective::Capacity;
    info.proposer = "offline";
    info.seed = 42;
    info.total_seconds = 12.5;
    info.stage_seconds = {{"propose", 0.5}, {"predict", 1.25}, {"measure", 10}};
    info.stop_reason = "budget: 9 candidates";
    info.final_trainings = {{6, lamda::FinalTraining{0.85, 0.84, 30.0, 5}, "out/candidate_6.safetensors"},
                            {1, lamda::FinalTraining{0.91, 0.905, 33.0, 5}, "out/candidate_1.safetensors"}};
    info.confirmations = {{1, 0.079, 200, 1.31}};  // measured 0.1035 ms while the machine ran slow
    lamda::TrainingRecipe recipe;
    recipe.optimizer = "sgd";
    recipe.lr = 0.05;
    recipe.erase = 0.25;
    recipe.flip = true;
    recipe.seed = 7;
    info.final_trainings[1].result.recipe = recipe;
    const std::string json = lamda::report_json(task, records, info);

    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE_MESSAGE(!parser.parse(json).get(doc), json);
    CHECK(std::string_view(doc["format"]) == "lamda-report");
    CHECK(std::string_view(doc["task"]["name"]) == "fmnist_medium");
    CHECK(std::string_view(doc["objective"]) == "capacity");
    CHECK(std::uint64_t(doc["seed"]) == 42);
    CHECK(double(doc["timings"]["total_s"]) == 12.5);
    CHECK(double(doc["timings"]["stages"]["predict"]) == 1.25);
    CHECK(std::int64_t(doc["candidates"]) == 9);
    CHECK(std::int64_t(doc["verdicts"]["feasible"]) == 5);
    CHECK(std::int64_t(doc["verdicts"]["invalid"]) == 1);
    CHECK(std::int64_t(doc["best"]["index"]) == 1);
    CHECK(std::string_view(doc["best"]["dsl"]) == "model <best>\n");
    CHECK(double(doc["final_training"]["test_accuracy"]) == 0.905);
    CHECK(std::string_view(doc["final_training"]["weights"]) == "out/candidate_1.safetensors");
    CHECK(simdjson::dom::array(doc["final_trainings"]).size() == 2);
    CHECK(std::string_view(doc["final_training"]["recipe"]["optimizer"]) == "sgd");
    CHECK(double(doc["final_training"]["recipe"]["lr"]) == 0.05);
    CHECK(double(doc["final_training"]["recipe"]["erase"]) == 0.25);
    CHECK(bool(doc["final_training"]["recipe"]["flip"]));
    CHECK(std::uint64_t(doc["final_training"]["recipe"]["seed"]) == 7);
    CHECK(doc["final_trainings"].at(0)["recipe"].error() == simdjson::NO_SUCH_FIELD);  // the trainer did not say
    CHECK(lamda::report_html(task, records, info).find("<td>sgd, lr 0.05 constant, batch 0, weight decay 0, label smoothing 0, "
                                                      "shift 0, flip, erase 0.25, seed 7, 0 threads</td>") != std::string::npos);
    CHECK(double(doc["confirmations"].at(0)["median_ms"]) == 0.079);
    CHECK(double(doc["confirmations"].at(0)["slowdown"]) == 1.31);
    CHECK(double(doc["best_confirmed_ms"]) == 0.079);  // at the usual pace
    std::vector<std::int64_t> front;
    for (auto e : doc["pareto_front"].get_array()) front.push_back(std::int64_t(e));
    CHECK(front == std::vector<std::int64_t>{8, 1, 3, 4});
    CHECK(simdjson::dom::array(doc["summary"]).size() == 9);
    CHECK(doc["summary"].at(5)["measured_ms"].is_null());
    // The task inside reads back as a task.
    const lamda::Task back = lamda::parse_task(simdjson::to_string(doc["task"]), "report.json");
    CHECK(lamda::task_json(back) == lamda::task_json(task));

    // The loop names the best; or hands none over.
    info.best = 6;
    REQUIRE(!parser.parse(lamda::report_json(task, records, info)).get(doc));
    CHECK(std::int64_t(doc["best"]["index"]) == 6);
    CHECK(double(doc["final_training"]["test_accuracy"]) == 0.84);
    // A final training cut by max_total_seconds part-way through its fourth epoch of 12.
    info.final_trainings[0].result.epochs_asked = 12;
    info.final_trainings[0].result.epochs = 4;
    info.final_trainings[0].result.epochs_trained = 3.81;
    REQUIRE(!parser.parse(lamda::report_json(task, records, info)).get(doc));
    CHECK(std::int64_t(doc["final_training"]["epochs"]) == 4);
    CHECK(double(doc["final_training"]["epochs_trained"]) == 3.81);
    CHECK(std::int64_t(doc["final_training"]["epochs_asked"]) == 12);
    CHECK(lamda::report_html(task, records, info).find("Trained in full: 3.81 of 12 epochs (the rest did not fit") !=
          std::string::npos);
    CHECK(doc["final_trainings"].at(1)["epochs_trained"].error() == simdjson::NO_SUCH_FIELD);  // whole epochs
    info.best.reset();
    info.no_best = true;
    REQUIRE(!parser.parse(lamda::report_json(task, records, info)).get(doc));
    CHECK(doc["best"].is_null());
    CHECK(doc["final_training"].is_null());
    CHECK(lamda::report_html(task, records, info).find("id=\"no-best\"") != std::string::npos);
    info.no_best = false;

    // An adaptation names its start model (docs/adapt.md); a search from scratch has none.
    CHECK(doc["start_model"].is_null());
    info.start_model = lamda::ReportInfo::StartModelInfo{"model.onnx", 0.25, std::nullopt};
    REQUIRE(!parser.parse(lamda::report_json(task, records, info)).get(doc));
    CHECK(std::string_view(doc["start_model"]["source"]) == "model.onnx");
    CHECK(double(doc["start_model"]["measured_ms"]) == 0.25);
    CHECK(doc["start_model"]["test_accuracy"].is_null());
    info.start_model->test_accuracy = 0.727;
    REQUIRE(!parser.parse(lamda::report_json(task, records, info)).get(doc));
    CHECK(double(doc["start_model"]["test_accuracy"]) == 0.727);

    // No feasible candidate: best is null.
    const std::string none = lamda::report_json(task, {record(0, lamda::Verdict::Invalid, {}, {}, -1)}, info);
    REQUIRE(!parser.parse(none).get(doc));
    CHECK(doc["best"].is_null());
}

TEST_CASE("report_html: one page with the scatter, the front, the limit, the table, escaped text") {
    const lamda::Task task = lamda::parse_task(good_task, "t");
    auto records = synthetic_records();
    records[1].dsl = "model best # <script>alert('x')</script> & \"q\"\ninput: input shape=28x28x1\n";
    records[1].note = "<img src=x onerror=alert(1)>";
    lamda::ReportInfo info;
    info.objective = lamda::Objective::Capacity;
    info.proposer = "offline";
    const std::string html = lamda::report_html(task, records, info);
    const auto count = [&html](const std::string& s) {
        std::size_t n = 0;
        for (auto at = html.find(s); at != std::string::npos; at = html.find(s, at + 1)) ++n;
        return n;
    };
    CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(count("<svg id=\"scatter\"") == 1);
    CHECK(count("<circle class=\"candidate ") == 7);  // 9 minus the invalid one and the one without latency
    CHECK(count("<circle class=\"candidate infeasible predicted on-front\" data-index=\"4\"") == 1);
    CHECK(count("<circle class=\"candidate feasible measured on-front\"") == 2);
    CHECK(count("<polyline id=\"pareto\" class=\"pareto\"") == 1);
    CHECK(count("<line id=\"constraint\" class=\"constraint\"") == 1);
    CHECK(count("id=\"best-ring\"") == 1);
    CHECK(count("<g id=\"legend\"") == 1);
    CHECK(count("<table id=\"best-table\"") == 1);
    // The model is named after the task (best_model_name, as in best.lamda); its comment stays, escaped.
    CHECK(count("<pre id=\"best-dsl\">model " + lamda::best_model_name(task) +
                "  # &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;") == 1);
    CHECK(count("<script") == 0);
    CHECK(count("<img") == 0);
    CHECK(count("&lt;img src=x") >= 1);
    // Self-contained: nothing fetched.
    CHECK(count("src=\"") == 0);
    CHECK(count("href=") == 0);
    CHECK(count("@import") == 0);
    CHECK(count("log scale") >= 1);  // MACs on a log axis

    // Accuracy objective; no feasible candidate; no latency limit.
    auto acc = records;
    for (auto& r : acc) {
        if (r.verdict == lamda::Verdict::Feasible) r.verdict = lamda::Verdict::BelowAccuracy;
        if (r.macs > 0) r.accuracy = 0.5 + static_cast<double>(r.index) / 100;
    }
    lamda::Task no_limit = task;
    no_limit.constraints.latency_ms = 0;
    info.objective = lamda::Objective::Accuracy;
    const std::string h2 = lamda::report_html(no_limit, acc, info);
    CHECK(h2.find("id=\"no-feasible\"") != std::string::npos);
    CHECK(h2.find("id=\"constraint\"") == std::string::npos);
    CHECK(h2.find("validation accuracy") != std::string::npos);
    CHECK(h2.find("id=\"best-dsl\"") == std::string::npos);

    // Nothing at all still makes a page.
    const std::string empty = lamda::report_html(task, {}, info);
    CHECK(empty.find("<svg id=\"scatter\"") != std::string::npos);
    CHECK(empty.find("</html>") != std::string::npos);
}

TEST_CASE("JsonReader: paths and messages") {
    struct E : std::runtime_error {
        using std::runtime_error::runtime_error;
    };
    const lamda::JsonReader<E> r("f.json", "thing");
    simdjson::dom::parser parser;
    const simdjson::padded_string text(std::string(R"({"a": {"b": [1, 2.5, "x"]}, "n": null})"));
    const auto doc = r.parse(parser, text);
    CHECK(lamda::JsonReader<E>::join("", "a") == "a");
    CHECK(lamda::JsonReader<E>::join("a", "b") == "a.b");
    CHECK_THROWS_WITH_AS(r.at(doc, "zz", ""), "f.json: error: thing: zz: missing", E);
    CHECK_THROWS_WITH_AS(r.doubles(r.at(r.at(doc, "a", ""), "b", "a"), "a.b"), "f.json: error: thing: a.b[2]: expected a number", E);
    CHECK_FALSE(r.maybe(doc, "n", ""));
    CHECK(r.has(doc, "n"));
    CHECK_THROWS_WITH_AS(r.only_keys(doc, "", {"a"}), "f.json: error: thing: n: unknown key; did you mean 'a'?", E);
}
