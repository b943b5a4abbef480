// lamda/detail/json_read.hpp: reading JSON documents (latency profiles, task files, journal lines) with
// simdjson's DOM, with error messages that name the file and the field path:
//
//   FILE: error: WHAT: FIELD.PATH: PROBLEM
//   tasks/x.json: error: task: constraints.latency_ms: must be > 0, got -1
//
//   lamda::JsonReader<MyError> r("tasks/x.json", "task");
//   const simdjson::dom::element doc = r.parse(parser, padded);      // throws MyError
//   double ms = r.num(r.at(doc, "latency_ms", "constraints"), "constraints.latency_ms");
//   int threads = r.int_in(r.at(doc, "threads", ""), "threads", 1, 1024);
//
// Numbers from the file never reach a conversion unchecked: integers are range-checked before
// they are narrowed (detail/checked.hpp), a double becomes an integer only when it is integral
// and exactly representable, and non-finite values are refused.
//
// Compiled only with LAMDA_WITH_LATENCY defined (the build defines it when Eigen and simdjson
// are there; this header needs simdjson, link -lsimdjson).
#ifndef LAMDA_DETAIL_JSON_READ_HPP
#define LAMDA_DETAIL_JSON_READ_HPP

#if !defined(LAMDA_WITH_LATENCY)
#error "lamda/detail/json_read.hpp needs LAMDA_WITH_LATENCY (simdjson; CMake: link lamda::latency)"
#else

#include <simdjson.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/diagnostics.hpp"
#include "checked.hpp"

namespace lamda {

// `Error` is the exception type thrown (constructible from a std::string), so that each file
// kind keeps its own (ProfileError, TaskError, JournalError).
template <class Error>
struct JsonReader {
    using element = simdjson::dom::element;

    std::string where;  // the file name (optionally with ":LINE") that starts every message
    std::string what;   // what is being read: "task", "malformed latency profile", ...

    JsonReader(std::string where_, std::string what_) : where(std::move(where_)), what(std::move(what_)) {}

    // "a.b" from ("a", "b"); the top level is "".
    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }
    static std::string index(const std::string& path, std::size_t i) {
        return path + "[" + std::to_string(i) + "]";
    }

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw Error(where + ": error: " + what + ": " + (field.empty() ? "(top level)" : field) + ": " + problem);
    }

    // Parses `text` (which `padded` holds) into `parser`'s document; a syntax error names the
    // JSON problem. The element lives as long as the parser and is not changed by later calls.
    element parse(simdjson::dom::parser& parser, const simdjson::padded_string& padded) const {
        element doc;
        if (const auto err = parser.parse(padded).get(doc))
            throw Error(where + ": error: " + what + ": not valid JSON (" + simdjson::error_message(err) + ")");
        return doc;
    }

    simdjson::dom::object obj(const element& e, const std::string& path) const {
        simdjson::dom::object o;
        if (e.get_object().get(o)) fail(path, "expected an object");
        return o;
    }
    // The member `key` of the object `obj` (at `path`); missing is an error.
    element at(const element& obj_, std::string_view key, const std::string& path) const {
        const simdjson::dom::object o = obj(obj_, path);
        element e;
        if (o[key].get(e)) fail(join(path, key), "missing");
        return e;
    }
    bool has(const element& obj_, std::string_view key) const {
        simdjson::dom::object o;
        if (obj_.get_object().get(o)) return false;
        element e;
        return !o[key].get(e);
    }
    // The member `key`, or nothing when it is absent or null.
    std::optional<element> maybe(const element& obj_, std::string_view key, const std::string& path) const {
        const simdjson::dom::object o = obj(obj_, path);
        element e;
        if (o[key].get(e) || e.is_null()) return std::nullopt;
        return e;
    }

    double num(const element& e, const std::string& path) const {
        double d = 0;
        if (e.is_double()) {
            if (e.get_double().get(d)) fail(path, "expected a number");
        } else if (e.is_int64()) {
            std::int64_t i = 0;
            if (e.get_int64().get(i)) fail(path, "expected a number");
            d = static_cast<double>(i);
        } else if (e.is_uint64()) {
            std::uint64_t u = 0;
            if (e.get_uint64().get(u)) fail(path, "expected a number");
            d = static_cast<double>(u);
        } else {
            fail(path, "expected a number");
        }
        if (!std::isfinite(d)) fail(path, "not a finite number");
        return d;
    }
    // An integer in lo..hi. A number with a fraction, or a string, is an error; an integral
    // number written with an exponent (1e5) is accepted.
    std::int64_t integer(const element& e, const std::string& path, std::int64_t lo, std::int64_t hi) const {
        std::int64_t i = 0;
        if (e.is_int64()) {
            if (e.get_int64().get(i)) fail(path, "expected an integer");
        } else if (e.is_uint64()) {
            fail(path, "too large (outside " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
        } else if (e.is_double()) {
            double d = 0;
            if (e.get_double().get(d) || !std::isfinite(d) || d != std::floor(d))
                fail(path, "expected an integer");
            // 2^53: past it a double no longer holds every integer, and the cast below is only
            // defined for values an int64 can hold.
            if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0))
                fail(path, "outside " + std::to_string(lo) + ".." + std::to_string(hi));
            i = static_cast<std::int64_t>(d);
        } else {
            fail(path, "expected an integer");
        }
        if (i < lo || i > hi)
            fail(path, std::to_string(i) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
        return i;
    }
    // An int in lo..hi (the narrowing is checked, whatever lo and hi are).
    int int_in(const element& e, const std::string& path, int lo, int hi) const {
        const std::optional<int> v = detail::checked_int(integer(e, path, lo, hi), lo, hi);
        if (!v) fail(path, "outside " + std::to_string(lo) + ".." + std::to_string(hi));
        return *v;
    }
    std::uint64_t uinteger(const element& e, const std::string& path) const {
        if (e.is_uint64()) {
            std::uint64_t u = 0;
            if (e.get_uint64().get(u)) fail(path, "expected a non-negative integer");
            return u;
        }
        std::int64_t i = 0;
        if (!e.is_int64() || e.get_int64().get(i) || i < 0) fail(path, "expected a non-negative integer");
        return static_cast<std::uint64_t>(i);
    }
    bool boolean(const element& e, const std::string& path) const {
        bool b = false;
        if (e.get_bool().get(b)) fail(path, "expected true or false");
        return b;
    }
    std::string str(const element& e, const std::string& path) const {
        std::string_view s;
        if (e.get_string().get(s)) fail(path, "expected a string");
        return std::string(s);
    }
    simdjson::dom::array arr(const element& e, const std::string& path) const {
        simdjson::dom::array a;
        if (e.get_array().get(a)) fail(path, "expected an array");
        return a;
    }
    std::vector<double> doubles(const element& e, const std::string& path) const {
        std::vector<double> v;
        std::size_t i = 0;
        for (element x : arr(e, path)) v.push_back(num(x, index(path, i++)));
        return v;
    }
    std::vector<std::string> strings(const element& e, const std::string& path) const {
        std::vector<std::string> v;
        std::size_t i = 0;
        for (element x : arr(e, path)) v.push_back(str(x, index(path, i++)));
        return v;
    }

    // Every member of the object at `path` must be one of `allowed`, once: an unknown key is an
    // error with a did-you-mean hint, a repeated key an error too.
    void only_keys(const element& obj_, const std::string& path, std::initializer_list<std::string_view> allowed) const {
        std::vector<std::string_view> seen;
        for (auto member : obj(obj_, path)) {
            const std::string_view key = member.key;
            bool known = false;
            for (std::string_view a : allowed) known = known || a == key;
            if (!known) {
                std::string problem = "unknown key";
                const std::string hint = closest_match(key, allowed);
                if (!hint.empty()) {
                    problem += "; did you mean '" + hint + "'?";
                } else {
                    problem += " (expected ";
                    bool first = true;
                    for (std::string_view a : allowed) {
                        problem += (first ? "" : ", ") + std::string(a);
                        first = false;
                    }
                    problem += ")";
                }
                fail(join(path, key), problem);
            }
            for (std::string_view s : seen)
                if (s == key) fail(join(path, key), "appears twice");
            seen.push_back(key);
        }
    }
};

}  // namespace lamda

#endif  // LAMDA_WITH_LATENCY
#endif  // LAMDA_DETAIL_JSON_READ_HPP
