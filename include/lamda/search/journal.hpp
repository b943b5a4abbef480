// lamda/search/journal.hpp: journal.jsonl, the durable record of a search (docs/generate.md). One JSON
// object per line: a header, then one line per candidate, in the order they were decided.
//
//   {"type":"header","format":"lamda-journal","version":1,"task":{...},"proposer":"offline","seed":1,"lamda_version":"0.1.0"}
//   {"type":"candidate","index":0,"proposer":"offline","note":"...","dsl":"...","hash":"...",...}
//
//   lamda::JournalContents old = lamda::repair_journal(path);  // drops a torn last line (warning)
//   if (auto why = lamda::journal_mismatch(old.header, task, "offline", seed); !why.empty()) ...
//   lamda::JournalWriter w(path, header);  // appends; writes the header into a new journal
//   w.append(record);                       // one write(), then fsync(): durable on return
//
// Writing a line is core (candidate_json, journal_header_json); the reader and the writer need
// LAMDA_WITH_LATENCY (simdjson) and POSIX (open, write, fsync, flock: lamda targets Linux).
#ifndef LAMDA_SEARCH_JOURNAL_HPP
#define LAMDA_SEARCH_JOURNAL_HPP

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../exception.hpp"
#include "../core/analysis.hpp"
#include "../detail/hash.hpp"
#include "../detail/json_write.hpp"
#include "../dsl/parser.hpp"
#include "types.hpp"
#include "memory.hpp"
#include "task.hpp"
#include "../version.hpp"

namespace lamda {

inline constexpr std::string_view journal_format_name = "lamda-journal";
inline constexpr int journal_format_version = 1;

class JournalError : public Exception {
public:
    using Exception::Exception;
};

// The first line of a journal: what search it belongs to.
struct JournalHeader {
    Task task;
    std::string proposer;
    std::uint64_t seed = 0;
    std::string lamda_version = version_string;
};

// The header line, without its newline.
inline std::string journal_header_json(const JournalHeader& h) {
    JsonWriter j;
    j.begin_object();
    j.field("type", "header");
    j.field("format", journal_format_name);
    j.field("version", journal_format_version);
    j.key("task");
    write_task_json(j, h.task);
    j.field("proposer", std::string_view(valid_utf8(h.proposer)));
    j.field("seed", h.seed);
    j.field("lamda_version", std::string_view(valid_utf8(h.lamda_version)));
    j.end_object();
    return j.str();
}


// Every field of the record as one JSON object, written into `j`. Absent optional numbers are
// null; text that is not valid UTF-8 has its stray bytes replaced by U+FFFD. `type` adds
// "type":"candidate" (journal lines have it).
inline void write_candidate_json(JsonWriter& j, const CandidateRecord& r, bool type = true) {
    j.begin_object();
    if (type) j.field("type", "candidate");
    j.field("index", r.index);
    j.field("proposer", std::string_view(valid_utf8(r.proposer)));
    j.field("note", std::string_view(valid_utf8(r.note)));
    j.field("dsl", std::string_view(valid_utf8(r.dsl)));
    j.field("hash", std::string_view(valid_utf8(r.hash)));
    j.field("verdict", verdict_name(r.verdict));
    j.field("reason", std::string_view(valid_utf8(r.reason)));
    j.key("diagnostics").begin_array();
    for (const std::string& d : r.diagnostics) j.value(std::string_view(valid_utf8(d)));
    j.end_array();
    j.field("params", r.params);
    j.field("macs", r.macs);
    j.field("peak_activation_bytes", r.peak_activation_bytes);
    j.field("predicted_ms", r.predicted_ms);
    j.field("measured_ms", r.measured_ms);
    j.field("accuracy", r.accuracy);
    j.key("top_layers").begin_array();
    for (const LayerCost& l : r.top_layers) {
        j.begin_object();
        j.field("name", std::string_view(valid_utf8(l.name)));
        j.field("ms", l.ms);
        j.field("share", l.share);
        j.end_object();
    }
    j.end_array();
    j.field("seconds", r.seconds);
    if (r.train_seconds > 0) j.field("train_s", r.train_seconds);
    j.field("elapsed_s", r.elapsed_s);
    if (!r.evaluated_by.empty()) j.field("evaluated_by", std::string_view(valid_utf8(r.evaluated_by)));
    if (r.parent >= 0) j.field("parent", r.parent);
    if (!r.inherited.empty()) j.field("inherited", std::string_view(valid_utf8(r.inherited)));
    if (!r.weights.empty()) j.field("weights", std::string_view(valid_utf8(r.weights)));
    if (!r.precision.empty()) j.field("precision", std::string_view(valid_utf8(r.precision)));
    if (r.float_accuracy) j.field("float_accuracy", r.float_accuracy);
    j.end_object();
}

// A candidate's journal line, without its newline.
inline std::string candidate_json(const CandidateRecord& r) {
    JsonWriter j;
    write_candidate_json(j, r);
    return j.str();
}

// Why a journal cannot be resumed by this search ("" when it can): its task (budget and profile
// path aside: a resumed run may be given more budget, and the profile may move), proposer or
// seed differ from the current ones.
inline std::string journal_mismatch(const JournalHeader& journal, const Task& task, std::string_view proposer,
                                    std::uint64_t seed) {
    std::vector<std::string> diffs;
    const auto differ = [&diffs](const std::string& what, const std::string& was, const std::string& now) {
        if (was != now) diffs.push_back(what + ": journal has " + was + ", now " + now);
    };
    const auto task_without_run_settings = [](Task t) {
        t.budget = Budget{};
        t.profile.clear();
        return task_json(t);
    };
    const Task& jt = journal.task;
    differ("task name", "'" + jt.name + "'", "'" + task.name + "'");
    differ("input", to_string(jt.input), to_string(task.input));
    differ("classes", std::to_string(jt.classes), std::to_string(task.classes));
    differ("dataset", "'" + jt.dataset + "'", "'" + task.dataset + "'");
    {
        const auto constraints_text = [](const Constraints& c) {
            JsonWriter j;
            j.begin_object();
            if (c.latency_ms > 0) j.field("latency_ms", c.latency_ms);
            j.field("threads", c.threads);
            if (c.max_params > 0) j.field("max_params", c.max_params);
            if (c.max_activation_bytes > 0) j.field("max_activation_bytes", c.max_activation_bytes);
            if (c.max_weight_bytes > 0) j.field("max_weight_bytes", c.max_weight_bytes);
            if (c.min_accuracy) j.field("min_accuracy", *c.min_accuracy);
            if (c.min_accuracy_drop) j.field("min_accuracy_drop", *c.min_accuracy_drop);
            j.end_object();
            return j.str();
        };
        differ("constraints", constraints_text(jt.constraints), constraints_text(task.constraints));
    }
    {
        const auto objective_text = [](const Task& t) {
            return t.objective_given ? std::string(objective_name(t.objective)) : std::string("(not given)");
        };
        differ("objective", objective_text(jt), objective_text(task));
    }
    differ("precision", std::string(task_precision_name(jt.precision)), std::string(task_precision_name(task.precision)));
    if (diffs.empty() && task_without_run_settings(jt) != task_without_run_settings(task))
        diffs.emplace_back("task: differs");  // a field added to Task but not compared above
    differ("proposer", "'" + journal.proposer + "'", "'" + std::string(proposer) + "'");
    differ("seed", std::to_string(journal.seed), std::to_string(seed));
    if (diffs.empty()) return {};
    std::string out = "the journal belongs to another search (";
    for (std::size_t i = 0; i < diffs.size(); ++i) out += (i ? "; " : "") + diffs[i];
    out += "); resume with the same task, --proposer and --seed, or use another --out directory";
    return out;
}

namespace journal_detail {
// The 16 hex digits of FNV-1a: the same as text_hash() (search/proposers.hpp), without its includes.
inline std::string hash16(std::string_view text) {
    std::uint64_t h = detail::fnv1a(text);
    static const char* digits = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 15];
    return out;
}
}  // namespace journal_detail

// Checks a record read back from a journal against what lamda computes from it, so that a resumed
// search trusts nothing it did not compute: the DSL is parsed again (an invalid record must not
// parse, any other must, in canonical form), its hash recomputed, its params, MACs and peak memory
// analysed again, and its verdict checked against the task (a record marked feasible must meet
// the parameter and memory limits and, when measured, the latency limit). `where` is "FILE:LINE".
// Throws JournalError naming the line and the disagreement; returns normally when it agrees.
inline void validate_resumed_record(const CandidateRecord& r, const Task& task, const std::string& where) {
    const auto bad = [&](const std::string& what) {
        throw JournalError(where + ": error: journal: candidate " + std::to_string(r.index) + ": " + what +
                           "; the journal was edited or belongs to another lamda (remove the line, or start a new "
                           "search in another --out directory)");
    };
    const auto finite = [&](const std::optional<double>& v, const char* name, double hi) {
        if (v && !(std::isfinite(*v) && *v >= 0 && *v <= hi)) bad(std::string(name) + " is not a number in 0.." + std::to_string(hi));
    };
    finite(r.predicted_ms, "predicted_ms", 1e12);
    finite(r.measured_ms, "measured_ms", 1e12);
    finite(r.accuracy, "accuracy", 1.0);
    finite(r.float_accuracy, "float_accuracy", 1.0);
    if (task.precision == TaskPrecision::Fp32 ? !r.precision.empty() && r.precision != "fp32"
                                              : task.precision == TaskPrecision::Int8 && r.precision != "int8")
        bad("its precision '" + r.precision + "' is not one the task's \"" +
            std::string(task_precision_name(task.precision)) + "\" allows");
    if (r.parent >= r.index) bad("its parent #" + std::to_string(r.parent) + " is not an earlier candidate");
    if (!r.weights.empty()) {
        // A file name in DIR/weights/ that lamda wrote: nothing that leads elsewhere.
        const std::string_view w = r.weights;
        const bool ok = w.rfind("weights/", 0) == 0 && w.size() > 8 && w.size() < 200 &&
                        w.find("..") == std::string_view::npos && w.find('/', 8) == std::string_view::npos &&
                        w.find('\\') == std::string_view::npos;
        if (!ok) bad("weights '" + r.weights + "' is not a file in the search's weights/ directory");
    }
    const std::string raw_hash = journal_detail::hash16(r.dsl);
    // Text a proposer sent that was not UTF-8 was hashed as sent but journalled with U+FFFD in
    // place of its stray bytes: the hash of such an invalid or failed record cannot be checked.
    const bool replaced = (r.dsl + r.note + r.reason).find("\xEF\xBF\xBD") != std::string::npos;
    if (replaced && (r.verdict == Verdict::Failed || r.verdict == Verdict::Invalid)) {
        if (r.verdict == Verdict::Invalid && parse_dsl(r.dsl, "candidate").ok())
            bad("marked invalid, but its DSL is a valid model");
        return;
    }
    if (r.verdict == Verdict::Failed) {
        // A failed proposal hashes its note and error with its text; a failed evaluation, its DSL.
        const std::string failed = journal_detail::hash16("failed proposal: " + r.note + "\n" + r.reason + "\n" + r.dsl);
        if (r.hash != raw_hash && r.hash != failed) bad("hash " + r.hash + " is not the hash of its text");
        return;
    }
    if (r.hash != raw_hash) bad("hash " + r.hash + " is not the hash of its DSL (" + raw_hash + ")");
    const ParseResult parsed = parse_dsl(r.dsl, "candidate");
    if (r.verdict == Verdict::Invalid) {
        if (parsed.ok()) bad("marked invalid, but its DSL is a valid model");
        return;
    }
    if (!parsed.ok())
        bad("marked " + std::string(verdict_name(r.verdict)) + ", but its DSL does not parse: " +
            (parsed.diagnostics.empty() ? std::string("?") : parsed.diagnostics.front().message));
    if (print_dsl(parsed.graph) != r.dsl) bad("its DSL is not in canonical form, as lamda records it");
    const ModelStats stats = analyze(parsed.graph);
    const auto same = [&](const char* name, std::int64_t recorded, std::int64_t actual) {
        if (recorded != actual)
            bad(std::string("\"") + name + "\": " + std::to_string(recorded) + " is recorded, but the model has " +
                std::to_string(actual));
    };
    same("params", r.params, stats.params);
    same("macs", r.macs, stats.macs);
    same("peak_activation_bytes", r.peak_activation_bytes, stats.peak_activation_bytes);
    const Shape in = parsed.graph.layers.front().shape;
    const bool right_task = in.h == task.input.h && in.w == task.input.w && in.c == task.input.c &&
                            stats.output_shape.h == 1 && stats.output_shape.w == 1 &&
                            stats.output_shape.c == task.classes;
    const std::string verdict = "marked " + std::string(verdict_name(r.verdict));
    if (r.verdict == Verdict::WrongTask) {
        if (right_task) bad(verdict + ", but its input and output are the task's");
        return;
    }
    if (!right_task) bad(verdict + ", but its input or output is not the task's");
    const Constraints& c = task.constraints;
    const bool over_params = c.max_params > 0 && stats.params > c.max_params;
    if (r.verdict == Verdict::OverParams) {
        if (!over_params) bad(verdict + ", but " + std::to_string(stats.params) + " parameters are within the limit");
        return;
    }
    if (over_params)
        bad(verdict + ", but its " + std::to_string(stats.params) + " parameters are over max_params " +
            std::to_string(c.max_params));
    // As the loop decides: in the record's precision; "any" is over memory only when both are.
    const bool int8 = is_int8(r);
    const std::string over = over_memory(c, firmware_memory(parsed.graph, int8), int8);
    if (r.verdict == Verdict::OverMemory) {
        const bool other_fits = task.precision == TaskPrecision::Any &&
                                over_memory(c, firmware_memory(parsed.graph, !int8), !int8).empty();
        if (over.empty() || other_fits) bad(verdict + ", but its firmware RAM and weights are within the limits");
        return;
    }
    if (!over.empty()) bad(verdict + ", but it " + over);
    if (r.verdict == Verdict::Feasible && c.latency_ms > 0 && r.measured_ms && *r.measured_ms > c.latency_ms)
        bad(verdict + ", but its measured latency is over the limit");
    if (r.verdict == Verdict::OverMeasured && !r.measured_ms) bad(verdict + ", but it has no measured latency");
}

}  // namespace lamda

#if defined(LAMDA_WITH_LATENCY)

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <simdjson.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "../detail/json_read.hpp"
#include "../detail/read_file.hpp"

namespace lamda {

// The largest journal read_journal() reads (a candidate's line is a few KB: millions of them).
inline constexpr std::uintmax_t max_journal_bytes = std::uintmax_t{1} << 30;

// What read_journal() found.
struct JournalContents {
    bool has_header = false;  // false: an empty (or new, or torn-at-the-header) journal
    JournalHeader header;
    std::vector<CandidateRecord> records;  // in order; records[i].index == i
    std::vector<std::string> warnings;     // e.g. the torn last line that was dropped
    std::uint64_t complete_bytes = 0;      // length of the file's complete lines
    std::uint64_t file_bytes = 0;          // length of the file; more than complete_bytes: torn
    bool torn() const noexcept { return file_bytes != complete_bytes; }
};

namespace journal_detail {

using Reader = JsonReader<JournalError>;
using simdjson::dom::element;

inline std::optional<double> optional_num(const Reader& r, const element& obj, std::string_view key) {
    if (auto e = r.maybe(obj, key, "")) return r.num(*e, std::string(key));
    return std::nullopt;
}
// A number that the writer may have written as null (it was not finite).
inline double num_or_nan(const Reader& r, const element& obj, std::string_view key, const std::string& path) {
    if (auto e = r.maybe(obj, key, path)) return r.num(*e, Reader::join(path, key));
    if (!r.has(obj, key)) r.fail(Reader::join(path, key), "missing");
    return std::numeric_limits<double>::quiet_NaN();
}
inline std::string opt_str(const Reader& r, const element& obj, std::string_view key) {
    if (auto e = r.maybe(obj, key, "")) return r.str(*e, std::string(key));
    return {};
}

inline JournalHeader parse_header(const Reader& r, const element& doc) {
    JournalHeader h;
    const std::string format = r.str(r.at(doc, "format", ""), "format");
    if (format != journal_format_name) r.fail("format", "'" + format + "' is not '" + std::string(journal_format_name) + "'");
    const std::int64_t version = r.integer(r.at(doc, "version", ""), "version", 0, 1 << 30);
    if (version != journal_format_version)
        r.fail("version", "journal version " + std::to_string(version) + " is not supported (this lamda reads version " +
                              std::to_string(journal_format_version) + ")");
    const task_detail::Reader tr(r.where, r.what);
    try {
        h.task = task_detail::parse_task_element(tr, r.at(doc, "task", ""), "task");
    } catch (const TaskError& e) {  // the same message, as the journal's error (found by fuzz_journal_line)
        throw JournalError(e.error());
    }
    h.proposer = r.str(r.at(doc, "proposer", ""), "proposer");
    h.seed = r.uinteger(r.at(doc, "seed", ""), "seed");
    h.lamda_version = opt_str(r, doc, "lamda_version");
    return h;
}

inline CandidateRecord parse_candidate(const Reader& r, const element& doc) {
    CandidateRecord c;
    c.index = r.int_in(r.at(doc, "index", ""), "index", 0, std::numeric_limits<int>::max());
    c.proposer = opt_str(r, doc, "proposer");
    c.note = opt_str(r, doc, "note");
    c.dsl = r.str(r.at(doc, "dsl", ""), "dsl");
    c.hash = r.str(r.at(doc, "hash", ""), "hash");
    const std::string verdict = r.str(r.at(doc, "verdict", ""), "verdict");
    if (!parse_verdict(verdict, c.verdict)) r.fail("verdict", "unknown verdict '" + verdict + "'");
    c.reason = opt_str(r, doc, "reason");
    if (auto e = r.maybe(doc, "diagnostics", "")) c.diagnostics = r.strings(*e, "diagnostics");
    const std::int64_t big = std::numeric_limits<std::int64_t>::max();
    if (auto e = r.maybe(doc, "params", "")) c.params = r.integer(*e, "params", -1, big);
    if (auto e = r.maybe(doc, "macs", "")) c.macs = r.integer(*e, "macs", -1, big);
    if (auto e = r.maybe(doc, "peak_activation_bytes", ""))
        c.peak_activation_bytes = r.integer(*e, "peak_activation_bytes", -1, big);
    c.predicted_ms = optional_num(r, doc, "predicted_ms");
    c.measured_ms = optional_num(r, doc, "measured_ms");
    c.accuracy = optional_num(r, doc, "accuracy");
    if (auto e = r.maybe(doc, "top_layers", "")) {
        std::size_t i = 0;
        for (element l : r.arr(*e, "top_layers")) {
            const std::string p = Reader::index("top_layers", i++);
            LayerCost cost;
            cost.name = r.str(r.at(l, "name", p), Reader::join(p, "name"));
            cost.ms = num_or_nan(r, l, "ms", p);
            cost.share = num_or_nan(r, l, "share", p);
            c.top_layers.push_back(std::move(cost));
        }
    }
    if (r.has(doc, "seconds")) c.seconds = num_or_nan(r, doc, "seconds", "");
    if (r.has(doc, "train_s")) c.train_seconds = std::max(0.0, num_or_nan(r, doc, "train_s", ""));  // NaN: 0, unknown
    if (r.has(doc, "elapsed_s")) c.elapsed_s = num_or_nan(r, doc, "elapsed_s", "");
    c.evaluated_by = opt_str(r, doc, "evaluated_by");
    if (auto e = r.maybe(doc, "parent", "")) c.parent = r.int_in(*e, "parent", -1, std::numeric_limits<int>::max());
    c.inherited = opt_str(r, doc, "inherited");
    c.weights = opt_str(r, doc, "weights");
    c.precision = opt_str(r, doc, "precision");
    if (!c.precision.empty() && c.precision != "fp32" && c.precision != "int8")
        r.fail("precision", "'" + c.precision + "' is not 'fp32' or 'int8'");
    c.float_accuracy = optional_num(r, doc, "float_accuracy");
    return c;
}

// Reads one parsed line into `out`; throws JournalError naming `r.where` (FILE:LINE).
inline void read_line(const Reader& r, const element& doc, bool first, JournalContents& out) {
    const std::string type = r.str(r.at(doc, "type", ""), "type");
    if (first) {
        if (type != "header") r.fail("type", "the first line must be the header, not '" + type + "'");
        out.header = parse_header(r, doc);
        out.has_header = true;
        return;
    }
    if (type != "candidate") r.fail("type", "expected 'candidate', got '" + type + "'");
    CandidateRecord c = parse_candidate(r, doc);
    if (c.index != static_cast<int>(out.records.size()))
        r.fail("index", "candidate " + std::to_string(c.index) + " where candidate " +
                            std::to_string(out.records.size()) + " was expected");
    out.records.push_back(std::move(c));
}

}  // namespace journal_detail

// Parses a journal's text; `where` (the file name) starts messages. A torn last line (no
// newline at the end, or not a valid line) is dropped with a warning; any other bad line is a
// JournalError naming its line number.
inline JournalContents parse_journal(std::string_view text, const std::string& where = "journal.jsonl") {
    JournalContents out;
    out.file_bytes = text.size();
    simdjson::dom::parser parser;
    std::size_t pos = 0;
    int line_no = 0;
    while (pos < text.size()) {
        ++line_no;
        const std::size_t nl = text.find('\n', pos);
        const bool last = nl == std::string_view::npos || nl + 1 == text.size();
        const std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        const std::string at = where + ":" + std::to_string(line_no);
        if (nl == std::string_view::npos) {
            out.warnings.push_back(at + ": warning: dropped a torn last line (" + std::to_string(line.size()) +
                                   " bytes without a newline: the process was stopped while writing it)");
            break;
        }
        const journal_detail::Reader r(at, "journal");
        const simdjson::padded_string padded(line);
        simdjson::dom::element doc;
        if (const auto err = parser.parse(padded).get(doc)) {
            // The writer ends every line with its newline in the same write(): a crash during that
            // write leaves a last line without its newline (dropped above). A line that has its
            // newline was written whole, so one that is not JSON was edited or corrupted: an
            // error, last line or not, and the file is left as it is.
            throw JournalError(at + ": error: journal: the line is not valid JSON (" +
                               simdjson::error_message(err) + ")" +
                               (last ? "; only a torn last line (one without its newline) is dropped" : ""));
        }
        journal_detail::read_line(r, doc, line_no == 1, out);
        pos = nl + 1;
        out.complete_bytes = pos;
    }
    return out;
}

// validate_resumed_record() for every record of a journal read from `path` (record i is on line
// i + 2, after the header).
inline void validate_resumed_records(const JournalContents& c, const Task& task, const std::string& path) {
    for (std::size_t i = 0; i < c.records.size(); ++i)
        validate_resumed_record(c.records[i], task, path + ":" + std::to_string(i + 2));
}

// Reads DIR/journal.jsonl. A file that does not exist reads as an empty journal.
inline JournalContents read_journal(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return {};
    std::string text;
    switch (detail::read_file_bounded(path, static_cast<std::size_t>(max_journal_bytes), text)) {
    case detail::ReadStatus::ok: break;
    case detail::ReadStatus::cannot_open: throw JournalError(path + ": error: cannot open the journal");
    case detail::ReadStatus::read_error: throw JournalError(path + ": error: cannot read the journal");
    case detail::ReadStatus::too_large:
        throw JournalError(path + ": error: the journal is larger than the limit of " +
                           std::to_string(max_journal_bytes) + " bytes");
    }
    return parse_journal(text, path);
}

namespace journal_detail {
inline std::string errno_text() { return std::strerror(errno); }

inline void sync_directory_of(const std::string& path) {
    std::filesystem::path dir = std::filesystem::path(path).parent_path();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;  // best effort: the entry is durable once the directory is synced
    (void)::fsync(fd);
    (void)::close(fd);
}
}  // namespace journal_detail

// Reads the journal and, when its last line is torn, truncates the file back to its last complete
// line (and syncs it), so that appending can go on. Returns what was read, warnings included.
inline JournalContents repair_journal(const std::string& path) {
    JournalContents c = read_journal(path);
    if (!c.torn()) return c;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw JournalError(path + ": error: cannot open the journal to repair it: " + journal_detail::errno_text());
    if (::ftruncate(fd, static_cast<off_t>(c.complete_bytes)) != 0 || ::fsync(fd) != 0) {
        const std::string why = journal_detail::errno_text();
        (void)::close(fd);
        throw JournalError(path + ": error: cannot truncate the torn last line: " + why);
    }
    (void)::close(fd);
    c.file_bytes = c.complete_bytes;
    return c;
}

// Appends to a journal. Opening takes an exclusive lock (a second search writing into the same
// directory is refused), writes the header when the journal is new or empty, and refuses a
// journal whose last line is torn (repair_journal() it first) or that has a corrupt line. append() writes
// the whole line with one write() and fsync()s before it returns: a record that append() returned
// from survives SIGKILL and power loss; a kill during append() leaves at most a torn last line,
// which repair_journal() drops.
class JournalWriter {
public:
    JournalWriter(const std::string& path, const JournalHeader& header) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) throw JournalError(path + ": error: cannot open the journal: " + journal_detail::errno_text());
        try {
            if (::flock(fd_, LOCK_EX | LOCK_NB) != 0)
                throw JournalError(path + ": error: another process is writing this journal (is a search running "
                                          "into the same --out directory?)");
            struct stat st {};
            if (::fstat(fd_, &st) != 0) throw JournalError(path + ": error: cannot stat the journal: " + journal_detail::errno_text());
            if (st.st_size == 0) {
                write_line(journal_header_json(header));
                journal_detail::sync_directory_of(path);
            } else if (read_journal(path).torn()) {  // (throws on a corrupt line before the last)
                throw JournalError(path + ": error: the journal ends in a torn line; repair_journal() it first");
            }
        } catch (...) {
            (void)::close(fd_);
            throw;
        }
    }
    JournalWriter(const JournalWriter&) = delete;
    JournalWriter& operator=(const JournalWriter&) = delete;
    JournalWriter(JournalWriter&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), broken_(o.broken_) {}
    JournalWriter& operator=(JournalWriter&& o) noexcept {
        if (this != &o) {
            if (fd_ >= 0) (void)::close(fd_);
            path_ = std::move(o.path_);
            fd_ = std::exchange(o.fd_, -1);
            broken_ = o.broken_;
        }
        return *this;
    }
    ~JournalWriter() {
        if (fd_ >= 0) (void)::close(fd_);
    }

    // Appends the record's line; durable when it returns. Throws JournalError on an I/O error
    // (the partial line is cut off again, and the writer refuses further appends).
    void append(const CandidateRecord& r) { write_line(candidate_json(r)); }

    const std::string& path() const noexcept { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    bool broken_ = false;

    void write_line(std::string line) {
        if (fd_ < 0 || broken_) throw JournalError(path_ + ": error: the journal is not open for writing");
        line += '\n';
        struct stat st {};
        const bool sized = ::fstat(fd_, &st) == 0;
        std::size_t done = 0;
        while (done < line.size()) {
            const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const std::string why = n < 0 ? journal_detail::errno_text() : "nothing written";
                broken_ = true;
                if (sized && done > 0) (void)::ftruncate(fd_, st.st_size);  // no torn line left behind
                throw JournalError(path_ + ": error: cannot write the journal: " + why);
            }
            done += static_cast<std::size_t>(n);
        }
        while (::fsync(fd_) != 0) {
            if (errno == EINTR) continue;
            broken_ = true;
            throw JournalError(path_ + ": error: cannot sync the journal: " + journal_detail::errno_text());
        }
    }
};

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_JOURNAL_HPP
