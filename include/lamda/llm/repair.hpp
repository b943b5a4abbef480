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
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/diagnostics.hpp"
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
inline AutoFix auto_fix_dsl(std::string_view dsl, int max_fixes = 8) {
    AutoFix r{std::string(dsl), {}};
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
