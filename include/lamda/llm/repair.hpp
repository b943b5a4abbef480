// lamda/llm/repair.hpp: mechanical repairs of near-miss DSL written by a language model.
//
// Contract:
//   - auto_fix_dsl(text) applies only fixes that have one obvious answer, re-checking after each,
//     and names every fix; whatever else is wrong stays for a repair turn.
// Requires LAMDA_WITH_LLM.
#ifndef LAMDA_LLM_REPAIR_HPP
#define LAMDA_LLM_REPAIR_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/repair.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/diagnostics.hpp"
#include "../core/ir.hpp"
#include "../dsl/parser.hpp"
#include "client.hpp"
#include "reply.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Mechanical repairs
// ---------------------------------------------------------------------------------------------

struct AutoFix {
    std::string dsl;                 // the text after the fixes (the input when there were none)
    std::vector<std::string> fixes;  // what was changed, one line each ("line 7: in=32 -> in=16 on 'b1_pw' ...")
};

namespace llm_detail {

// "'name'" -> "name" from the first quoted word after `after` in `s`.
inline std::string quoted_after(std::string_view s, std::string_view after) {
    std::size_t at = s.find(after);
    if (at == std::string_view::npos) return {};
    at = s.find('\'', at + after.size());
    if (at == std::string_view::npos) return {};
    const std::size_t end = s.find('\'', at + 1);
    if (end == std::string_view::npos) return {};
    return std::string(s.substr(at + 1, end - at - 1));
}

inline bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One fix for one diagnostic, applied to `lines`; "" when this diagnostic has no obvious fix.
inline std::string fix_one(const Diagnostic& d, std::vector<std::string>& lines, const std::string& whole) {
    if (d.line < 1 || static_cast<std::size_t>(d.line) > lines.size()) return {};
    std::string& line = lines[static_cast<std::size_t>(d.line) - 1];
    const std::size_t hash_at = line.find('#');
    const std::string code = line.substr(0, hash_at);
    const std::string comment = hash_at == std::string::npos ? std::string() : line.substr(hash_at);
    // "expected 32 input channels from 'x', got 16" / hint "set in=16 on 'name' ...": correct in=.
    if (starts_with(d.message, "expected ") && d.message.find(" input channels from '") != std::string::npos) {
        const std::size_t got_at = d.message.rfind(", got ");
        const std::string expected = d.message.substr(9, d.message.find(' ', 9) - 9);
        const std::string actual = got_at == std::string::npos ? std::string() : trim(d.message.substr(got_at + 6));
        if (!all_digits(expected) || !all_digits(actual)) return {};
        const std::string token = "in=" + expected;
        std::size_t at = 0;
        while ((at = code.find(token, at)) != std::string::npos) {
            const bool starts = at == 0 || std::isspace(static_cast<unsigned char>(code[at - 1]));
            const std::size_t after = at + token.size();
            const bool ends = after == code.size() || std::isspace(static_cast<unsigned char>(code[after]));
            if (starts && ends) break;
            at = after;
        }
        if (at == std::string::npos) return {};
        line = code.substr(0, at) + "in=" + actual + code.substr(at + token.size()) + comment;
        return "line " + std::to_string(d.line) + ": in=" + expected + " -> in=" + actual + " on '" +
               quoted_after(d.hint, " on ") + "' (its input '" + quoted_after(d.message, " from ") + "' has " + actual +
               " channels)";
    }
    // "fc 'logits' needs a 1x1xC input, got 7x7x32 from 'x'": a flatten in between.
    if (starts_with(d.message, "fc '") && d.message.find(" needs a 1x1xC input, got ") != std::string::npos) {
        const std::string fc = quoted_after(d.message, "fc");
        const std::string src = quoted_after(d.message, " from ");
        if (fc.empty() || src.empty()) return {};
        std::string rest = code, name_part;
        const std::size_t colon = code.find(':');
        const std::size_t eq = code.find('=');
        if (colon != std::string::npos && (eq == std::string::npos || colon < eq)) {
            name_part = trim(code.substr(0, colon)) + ": ";
            rest = code.substr(colon + 1);
        }
        std::istringstream words(rest);
        std::vector<std::string> tokens;
        for (std::string w; words >> w;) tokens.push_back(w);
        if (tokens.empty() || tokens[0] != "fc") return {};
        std::string flat = fc + "_flatten";
        for (int n = 2; whole.find(flat + ":") != std::string::npos; ++n) flat = fc + "_flatten" + std::to_string(n);
        bool explicit_input = false;
        for (std::size_t k = 1; k < tokens.size() && tokens[k].find('=') == std::string::npos; ++k) {
            std::string w = tokens[k];
            const bool comma = !w.empty() && w.back() == ',';
            if (comma) w.pop_back();
            if (w == src) {
                tokens[k] = flat + (comma ? "," : "");
                explicit_input = true;
            }
        }
        std::string rebuilt = name_part;
        for (std::size_t k = 0; k < tokens.size(); ++k) rebuilt += (k ? " " : "") + tokens[k];
        const std::string indent = line.substr(0, line.find_first_not_of(" \t") == std::string::npos ? 0 : line.find_first_not_of(" \t"));
        line = indent + rebuilt + (comment.empty() ? "" : "  " + comment);
        lines.insert(lines.begin() + (d.line - 1), indent + flat + ": flatten " + src);
        (void)explicit_input;
        return "line " + std::to_string(d.line) + ": inserted '" + flat + ": flatten " + src + "' before fc '" + fc +
               "' (an fc needs a 1x1xC input)";
    }
    return {};
}

}  // namespace llm_detail

// Applies the fixes that have one obvious answer, one at a time, re-checking after each:
//   - an `in=N` that disagrees with the channels its input has is corrected;
//   - an fc whose input is not 1x1 gets a `flatten` in between.
// Whatever else is wrong stays for the LLM (a repair turn).
namespace llm_detail {

// ASCII stand-ins for the non-ASCII characters models write into DSL.
struct Replacement {
    const char* utf8;
    const char* name;
    const char* ascii;
};
inline constexpr Replacement non_ascii_replacements[] = {
    {"\xC3\x97", "'\xC3\x97' (U+00D7 multiplication sign)", "x"},
    {"\xE2\x80\x98", "'\xE2\x80\x98' (U+2018 left single quote)", "'"},
    {"\xE2\x80\x99", "'\xE2\x80\x99' (U+2019 right single quote)", "'"},
    {"\xE2\x80\x9C", "'\xE2\x80\x9C' (U+201C left double quote)", "\""},
    {"\xE2\x80\x9D", "'\xE2\x80\x9D' (U+201D right double quote)", "\""},
    {"\xE2\x80\x93", "'\xE2\x80\x93' (U+2013 en dash)", "-"},
    {"\xE2\x80\x94", "'\xE2\x80\x94' (U+2014 em dash)", "-"},
    {"\xE2\x88\x92", "'\xE2\x88\x92' (U+2212 minus sign)", "-"},
    {"\xC2\xA0", "U+00A0 (no-break space)", " "},
    {"\xE2\x80\x8B", "U+200B (zero-width space)", ""},
    {"\xEF\xBC\x9A", "'\xEF\xBC\x9A' (U+FF1A fullwidth colon)", ":"},
    {"\xEF\xBC\x8C", "'\xEF\xBC\x8C' (U+FF0C fullwidth comma)", ","},
    {"\xEF\xBC\x9D", "'\xEF\xBC\x9D' (U+FF1D fullwidth equals sign)", "="},
};

inline std::string lower_ascii(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Near-miss spellings fixed in the code part of one line (comments are left alone); each fix named.
inline std::string normalize_line(const std::string& line, int number, const Shape* task_input, std::vector<std::string>& fixes) {
    const std::string where = "line " + std::to_string(number) + ": ";
    const std::size_t hash_at = line.find('#');
    std::string code = line.substr(0, hash_at);
    const std::string comment = hash_at == std::string::npos ? std::string() : line.substr(hash_at);
    for (const Replacement& r : non_ascii_replacements) {
        std::size_t at = code.find(r.utf8), count = 0;
        while (at != std::string::npos) {
            code.replace(at, std::strlen(r.utf8), r.ascii);
            ++count;
            at = code.find(r.utf8, at + std::strlen(r.ascii));
        }
        if (count)
            fixes.push_back(where + "non-ASCII " + std::string(r.name) + " -> " +
                            (std::strlen(r.ascii) ? "'" + std::string(r.ascii) + "'" : std::string("nothing")) +
                            (count > 1 ? " (" + std::to_string(count) + " times)" : ""));
    }
    // key=(3,3), key=[3, 3], key=(3 x 3) -> key=3 or key=3x5; keys and word values lower case
    std::string out;
    std::size_t i = 0;
    while (i < code.size()) {
        const std::size_t eq = code.find('=', i);
        if (eq == std::string::npos) {
            out += code.substr(i);
            break;
        }
        std::size_t ks = eq;
        while (ks > i && (std::isalnum(static_cast<unsigned char>(code[ks - 1])) || code[ks - 1] == '_')) --ks;
        out += code.substr(i, ks - i);
        std::string key = code.substr(ks, eq - ks);
        std::size_t v = eq + 1, ve = v;
        std::string value;
        if (v < code.size() && (code[v] == '(' || code[v] == '[')) {
            const char close = code[v] == '(' ? ')' : ']';
            const std::size_t end = code.find(close, v);
            if (end != std::string::npos) {
                std::vector<std::string> parts;
                std::string cur;
                for (std::size_t k = v + 1; k < end; ++k) {
                    const char c = code[k];
                    if (c == ',' || c == 'x' || c == 'X' || c == ' ') {
                        if (!cur.empty()) parts.push_back(cur);
                        cur.clear();
                    } else {
                        cur += c;
                    }
                }
                if (!cur.empty()) parts.push_back(cur);
                bool digits = !parts.empty() && parts.size() <= 4;
                for (const std::string& part : parts) digits = digits && all_digits(part);
                if (digits) {
                    value = parts.size() == 2 && parts[0] == parts[1] ? parts[0] : parts[0];
                    if (!(parts.size() == 2 && parts[0] == parts[1]))
                        for (std::size_t k = 1; k < parts.size(); ++k) value += "x" + parts[k];
                    fixes.push_back(where + key + "=" + code.substr(v, end + 1 - v) + " -> " + key + "=" + value);
                    ve = end + 1;
                }
            }
        }
        if (ve == v) {  // a plain value
            while (ve < code.size() && !std::isspace(static_cast<unsigned char>(code[ve]))) ++ve;
            value = code.substr(v, ve - v);
            if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
                fixes.push_back(where + key + "=" + value + " -> " + key + "=" + value.substr(1, value.size() - 2) + " (no quotes)");
                value = value.substr(1, value.size() - 2);
            }
            const std::string lk = lower_ascii(key);
            if ((lk == "act" || lk == "padding" || lk == "bias" || lk == "ceil") && value != lower_ascii(value)) {
                fixes.push_back(where + key + "=" + value + " -> " + lk + "=" + lower_ascii(value));
                value = lower_ascii(value);
            }
        }
        if (key != lower_ascii(key)) {
            fixes.push_back(where + key + "= -> " + lower_ascii(key) + "=");
            key = lower_ascii(key);
        }
        // shape=1x28x28 (NCHW) or 1x1x28x28 for a 28x28x1 task -> the task's HWC
        if (key == "shape" && task_input && task_input->known()) {
            std::vector<std::int64_t> dims;
            std::string cur;
            bool ok = true;
            for (char c : value + "x") {
                if (c == 'x' || c == 'X') {
                    if (!all_digits(cur) || cur.size() > 9) ok = false;
                    else dims.push_back(std::atoll(cur.c_str()));
                    cur.clear();
                } else {
                    cur += c;
                }
            }
            if (ok && dims.size() == 4 && dims[0] == 1) dims.erase(dims.begin());
            const Shape& t = *task_input;
            const std::string hwc = std::to_string(t.h) + "x" + std::to_string(t.w) + "x" + std::to_string(t.c);
            if (ok && dims.size() == 3 && !(dims[0] == t.h && dims[1] == t.w && dims[2] == t.c) && dims[0] == t.c &&
                dims[1] == t.h && dims[2] == t.w) {
                fixes.push_back(where + "shape=" + value + " looks like NCHW (channels first); lamda's shapes are " +
                                "height x width x channels: shape=" + hwc);
                value = hwc;
            } else if (ok && dims.size() == 4 && dims[1] == t.h && dims[2] == t.w && dims[3] == t.c) {
                fixes.push_back(where + "shape=" + value + " has a batch axis; lamda's shapes are HxWxC: shape=" + hwc);
                value = hwc;
            }
        }
        out += key + "=" + value;
        i = ve;
    }
    // an op word in the wrong case: "Conv2d" -> "conv2d"
    const std::size_t colon = out.find(':');
    const std::size_t first_eq = out.find('=');
    std::size_t os = colon != std::string::npos && (first_eq == std::string::npos || colon < first_eq) ? colon + 1 : 0;
    while (os < out.size() && std::isspace(static_cast<unsigned char>(out[os]))) ++os;
    std::size_t oe = os;
    while (oe < out.size() && !std::isspace(static_cast<unsigned char>(out[oe]))) ++oe;
    const std::string op = out.substr(os, oe - os);
    if (!op.empty() && op != lower_ascii(op) && is_op_word(lower_ascii(op))) {
        fixes.push_back(where + "op '" + op + "' -> '" + lower_ascii(op) + "'");
        out.replace(os, oe - os, lower_ascii(op));
    }
    return out + comment;
}

}  // namespace llm_detail

// Near-miss spellings fixed on every line at once, each fix named: non-ASCII characters (x for the
// multiplication sign, ASCII quotes for curly ones, ...), key=(3,3) tuples, act=ReLU and other
// word values or keys in the wrong case, an op word in the wrong case, and (with the task's input)
// an NCHW or batched input shape turned into the task's HWC.
inline AutoFix normalize_dsl(std::string_view dsl, const Shape* task_input = nullptr) {
    AutoFix r{std::string(dsl), {}};
    std::vector<std::string> lines = llm_detail::split_lines(dsl);
    std::string text;
    for (std::size_t i = 0; i < lines.size(); ++i)
        text += llm_detail::normalize_line(lines[i], static_cast<int>(i + 1), task_input, r.fixes) + (i + 1 < lines.size() ? "\n" : "");
    if (!r.fixes.empty()) r.dsl = text;
    return r;
}

// normalize_dsl(), then the fixes below.
inline AutoFix auto_fix_dsl(std::string_view dsl, int max_fixes = 8, const Shape* task_input = nullptr) {
    AutoFix r = normalize_dsl(dsl, task_input);
    for (int round = 0; round < max_fixes; ++round) {
        const ParseResult parsed = parse_dsl(r.dsl, "candidate");
        if (parsed.ok()) break;
        std::vector<std::string> lines = llm_detail::split_lines(r.dsl);
        std::string fix;
        for (const Diagnostic& d : parsed.diagnostics) {
            fix = llm_detail::fix_one(d, lines, r.dsl);
            if (!fix.empty()) break;
        }
        if (fix.empty()) break;
        std::string text;
        for (std::size_t i = 0; i < lines.size(); ++i) text += lines[i] + (i + 1 < lines.size() ? "\n" : "");
        r.dsl = text;
        r.fixes.push_back(fix);
    }
    return r;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_REPAIR_HPP
