// lamda/search/task.hpp: task files (docs/generate.md), the input of `lamda generate`.
//
//   lamda::Task t = lamda::read_task("examples/tasks/fmnist_fast.json");  // throws TaskError
//   std::string text = lamda::task_json(t);                                // the same task, as JSON
//
// Writing a task (task_json, write_task_json) is core; reading one (parse_task, read_task) needs
// LAMDA_WITH_LATENCY (simdjson). Errors name the file, the field and what is wrong:
//
//   tasks/x.json: error: task: constraints.latency_ms: must be > 0, got -1
#ifndef LAMDA_SEARCH_TASK_HPP
#define LAMDA_SEARCH_TASK_HPP

#include <stdexcept>
#include <string>
#include <string_view>

#include "../exception.hpp"
#include "../detail/json_write.hpp"
#include "types.hpp"

namespace lamda {

class TaskError : public Exception {
public:
    using Exception::Exception;
};

// The task as a JSON object, written into `j` (after a key, in an array, or alone). Absent limits
// (0, no min_accuracy), an empty dataset or profile, and an objective that was not given are left
// out, so that parse_task() reads back the same Task. Text is made valid UTF-8.
inline void write_task_json(JsonWriter& j, const Task& t) {
    j.begin_object();
    j.field("name", std::string_view(valid_utf8(t.name)));
    j.key("input").begin_array().value(t.input.h).value(t.input.w).value(t.input.c).end_array();
    j.field("classes", t.classes);
    if (!t.dataset.empty()) j.field("dataset", std::string_view(valid_utf8(t.dataset)));
    j.key("constraints").begin_object();
    const Constraints& c = t.constraints;
    if (c.latency_ms > 0) j.field("latency_ms", c.latency_ms);
    j.field("threads", c.threads);
    if (c.max_params > 0) j.field("max_params", c.max_params);
    if (c.max_activation_bytes > 0) j.field("max_activation_bytes", c.max_activation_bytes);
    if (c.max_weight_bytes > 0) j.field("max_weight_bytes", c.max_weight_bytes);
    if (c.min_accuracy) j.field("min_accuracy", *c.min_accuracy);
    if (c.min_accuracy_drop) j.field("min_accuracy_drop", *c.min_accuracy_drop);
    j.end_object();
    if (!t.profile.empty()) j.field("profile", std::string_view(valid_utf8(t.profile)));
    j.key("budget").begin_object();
    j.field("max_candidates", t.budget.max_candidates);
    j.field("max_seconds", t.budget.max_seconds);
    if (t.budget.max_total_seconds > 0) j.field("max_total_seconds", t.budget.max_total_seconds);
    j.end_object();
    if (t.objective_given) j.field("objective", objective_name(t.objective));
    if (t.measure_one_device) j.field("measure_on", std::string_view("one_device"));
    if (t.precision != TaskPrecision::Fp32) j.field("precision", task_precision_name(t.precision));
    j.end_object();
}

inline std::string task_json(const Task& t) {
    JsonWriter j;
    write_task_json(j, t);
    return j.str();
}

}  // namespace lamda

#if defined(LAMDA_WITH_LATENCY)

#include <simdjson.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../detail/json_read.hpp"
#include "../detail/read_file.hpp"
#include "../core/validate.hpp"

namespace lamda {

namespace task_detail {

using Reader = JsonReader<TaskError>;
using simdjson::dom::element;

inline std::string number_text(double v) {
    JsonWriter j;
    j.value(v);
    return j.str();
}

// A positive, finite number no larger than `hi`.
inline double positive(const Reader& r, const element& e, const std::string& path, double hi) {
    const double v = r.num(e, path);
    if (!(v > 0)) r.fail(path, "must be > 0, got " + number_text(v));
    if (v > hi) r.fail(path, "must be at most " + number_text(hi) + ", got " + number_text(v));
    return v;
}

inline std::string nonempty_string(const Reader& r, const element& e, const std::string& path,
                                   std::size_t max_length) {
    std::string s = r.str(e, path);
    if (s.empty()) r.fail(path, "must not be empty");
    if (s.size() > max_length) r.fail(path, "longer than " + std::to_string(max_length) + " characters");
    for (char ch : s)
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) r.fail(path, "contains a control character");
    return s;
}

// The object of a task; `doc` is the document's root (or a journal header's "task").
inline Task parse_task_element(const Reader& r, const element& doc, const std::string& base) {
    const auto path = [&base](std::string_view key) { return Reader::join(base, key); };
    if (!doc.is_object()) r.fail(base, "expected an object (a task file is {\"name\": ..., \"input\": [H, W, C], ...})");
    r.only_keys(doc, base, {"name", "input", "classes", "dataset", "constraints", "profile", "budget", "objective",
                            "measure_on", "precision"});
    const Limits limits;
    Task t;
    t.name = nonempty_string(r, r.at(doc, "name", base), path("name"), 128);

    {
        const std::string p = path("input");
        const auto a = r.arr(r.at(doc, "input", base), p);
        if (a.size() != 3) r.fail(p, "expected [H, W, C] (3 integers), got " + std::to_string(a.size()) + " values");
        std::int64_t v[3] = {0, 0, 0};
        std::size_t i = 0;
        for (element x : a) {
            const std::int64_t hi = i < 2 ? limits.max_spatial : limits.max_channels;
            v[i] = r.integer(x, Reader::index(p, i), 1, hi);
            ++i;
        }
        t.input = Shape{v[0], v[1], v[2]};
    }
    t.classes = r.int_in(r.at(doc, "classes", base), path("classes"), 2, 100000);
    if (auto e = r.maybe(doc, "dataset", base)) t.dataset = nonempty_string(r, *e, path("dataset"), 4096);

    {
        const std::string p = path("constraints");
        const element c = r.at(doc, "constraints", base);
        r.only_keys(c, p, {"latency_ms", "threads", "max_params", "max_activation_bytes", "max_weight_bytes", "min_accuracy",
                           "min_accuracy_drop"});
        Constraints& k = t.constraints;
        if (auto e = r.maybe(c, "latency_ms", p)) k.latency_ms = positive(r, *e, Reader::join(p, "latency_ms"), 3.6e6);
        if (auto e = r.maybe(c, "threads", p)) k.threads = r.int_in(*e, Reader::join(p, "threads"), 1, 1024);
        if (auto e = r.maybe(c, "max_params", p))
            k.max_params = r.integer(*e, Reader::join(p, "max_params"), 1, limits.max_params);
        if (auto e = r.maybe(c, "max_activation_bytes", p))
            k.max_activation_bytes = r.integer(*e, Reader::join(p, "max_activation_bytes"), 1, limits.max_activation_bytes);
        if (auto e = r.maybe(c, "max_weight_bytes", p))
            k.max_weight_bytes = r.integer(*e, Reader::join(p, "max_weight_bytes"), 1, limits.max_params * 4);
        if (auto e = r.maybe(c, "min_accuracy", p)) {
            const std::string q = Reader::join(p, "min_accuracy");
            const double v = r.num(*e, q);
            if (v > 1 && v <= 100)
                r.fail(q, "must be a fraction in (0, 1], got " + number_text(v) + "; did you mean " +
                              number_text(v / 100) + " (" + number_text(v) + "%)?");
            if (!(v > 0 && v <= 1)) r.fail(q, "must be a fraction in (0, 1], got " + number_text(v));
            k.min_accuracy = v;
        }
        if (auto e = r.maybe(c, "min_accuracy_drop", p)) {  // points against a start model (search/adapt.hpp)
            const std::string q = Reader::join(p, "min_accuracy_drop");
            const double v = r.num(*e, q);
            if (!(v >= 0 && v < 100))
                r.fail(q, "must be accuracy points in [0, 100) (1.0: the adapted model may lose one point), got " +
                              number_text(v));
            if (k.min_accuracy) r.fail(q, "give min_accuracy or min_accuracy_drop, not both");
            k.min_accuracy_drop = v;
        }
    }
    if (auto e = r.maybe(doc, "profile", base)) t.profile = nonempty_string(r, *e, path("profile"), 4096);

    if (auto b = r.maybe(doc, "budget", base)) {
        const std::string p = path("budget");
        r.only_keys(*b, p, {"max_candidates", "max_seconds", "max_total_seconds"});
        if (auto e = r.maybe(*b, "max_candidates", p))
            t.budget.max_candidates = r.int_in(*e, Reader::join(p, "max_candidates"), 1, 1000000);
        if (auto e = r.maybe(*b, "max_total_seconds", p)) {
            t.budget.max_total_seconds = positive(r, *e, Reader::join(p, "max_total_seconds"), 1.0e7);
            t.budget.max_seconds = t.budget.max_total_seconds;  // unless given: the total limits the search
        }
        if (auto e = r.maybe(*b, "max_seconds", p))
            t.budget.max_seconds = positive(r, *e, Reader::join(p, "max_seconds"), 1.0e7);
    }
    if (auto e = r.maybe(doc, "objective", base)) {
        const std::string p = path("objective");
        const std::string o = r.str(*e, p);
        if (o == "accuracy") {
            t.objective = Objective::Accuracy;
        } else if (o == "capacity") {
            t.objective = Objective::Capacity;
        } else {
            const std::string hint = closest_match(o, std::initializer_list<std::string_view>{"accuracy", "capacity"});
            r.fail(p, "'" + o + "' is not 'accuracy' or 'capacity'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
        }
        t.objective_given = true;
    }
    if (auto e = r.maybe(doc, "precision", base)) {  // search/types.hpp's TaskPrecision
        const std::string p = path("precision");
        const std::string v = r.str(*e, p);
        if (v == "fp32") t.precision = TaskPrecision::Fp32;
        else if (v == "int8") t.precision = TaskPrecision::Int8;
        else if (v == "any") t.precision = TaskPrecision::Any;
        else {
            const std::string hint = closest_match(v, std::initializer_list<std::string_view>{"fp32", "int8", "any"});
            r.fail(p, "'" + v + "' is not 'fp32', 'int8' or 'any'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
        }
    }
    if (auto e = r.maybe(doc, "measure_on", base)) {  // search/parallel.hpp
        const std::string p = path("measure_on");
        const std::string v = r.str(*e, p);
        if (v == "one_device") t.measure_one_device = true;
        else if (v != "any")
            r.fail(p, "'" + v + "' is not 'any' (each worker measures) or 'one_device' (the search's own process "
                                "measures every candidate: rank 0 under MPI)");
    }
    if (t.objective_given && t.objective == Objective::Accuracy && t.dataset.empty())
        r.fail(path("objective"), "'accuracy' needs a dataset to train on (set \"dataset\", or use 'capacity')");
    if (t.constraints.min_accuracy && t.dataset.empty())
        r.fail(path("constraints.min_accuracy"), "needs a dataset to measure accuracy on (set \"dataset\")");
    if (t.constraints.min_accuracy_drop && t.dataset.empty())
        r.fail(path("constraints.min_accuracy_drop"), "needs a dataset to measure accuracy on (set \"dataset\")");
    return t;
}

}  // namespace task_detail

// Parses a task file's text; `where` names it in messages. Paths (profile, dataset) are kept as
// written: read_task() resolves them.
inline Task parse_task(std::string_view json, const std::string& where = "<task>") {
    const task_detail::Reader r(where, "task");
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(json);
    const auto doc = r.parse(parser, padded);
    return task_detail::parse_task_element(r, doc, "");
}

// A path in a task file, relative to the task file's directory (absolute paths stay).
inline std::string resolve_task_path(const std::string& task_path, const std::string& p) {
    namespace fs = std::filesystem;
    const fs::path rel(p);
    if (rel.is_absolute()) return p;
    const fs::path dir = fs::path(task_path).parent_path();
    if (dir.empty()) return p;
    return (dir / rel).lexically_normal().string();
}

// Reads and parses a task file. `profile`, and a `dataset` that names a directory (contains a
// '/'), are resolved against the task file's directory.
inline Task read_task(const std::string& path) {
    std::string text;  // at most 1 MiB + 1 bytes are read, whatever the file (/dev/zero)
    switch (detail::read_file_bounded(path, std::size_t{1} << 20, text)) {
    case detail::ReadStatus::ok: break;
    case detail::ReadStatus::cannot_open: throw TaskError(path + ": error: cannot open the task file");
    case detail::ReadStatus::read_error: throw TaskError(path + ": error: cannot read the task file");
    case detail::ReadStatus::too_large: throw TaskError(path + ": error: the task file is larger than 1 MiB");
    }
    Task t = parse_task(text, path);
    if (!t.profile.empty()) t.profile = resolve_task_path(path, t.profile);
    if (t.dataset.find('/') != std::string::npos) t.dataset = resolve_task_path(path, t.dataset);
    return t;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_SEARCH_TASK_HPP
