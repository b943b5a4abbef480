// lamda/llm/reply.hpp: the models in an LLM reply, and why a reply held none.
//
// Contract:
//   - extract_dsl_candidates(text) returns the DSL models the reply submitted: ```lamda fences, other
//     fences whose text is DSL, or runs of bare DSL lines; chatter and reasoning are ignored.
//   - It never throws and never allocates more than a small multiple of the reply's size.
// Requires LAMDA_WITH_LLM (it shares llm/client.hpp's reply type).
#ifndef LAMDA_LLM_REPLY_HPP
#define LAMDA_LLM_REPLY_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/reply.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "client.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Extraction: the models in a reply
// ---------------------------------------------------------------------------------------------

namespace llm_detail {

inline bool is_op_word(std::string_view w) {
    for (OpKind k : all_op_kinds)
        if (op_name(k) == w) return true;
    return false;
}

inline bool is_name(std::string_view w) {
    if (w.empty() || !(std::isalpha(static_cast<unsigned char>(w[0])) || w[0] == '_')) return false;
    return std::all_of(w.begin(), w.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// The op word of a DSL layer line ("NAME: OP ..." or "OP ..."), or "" when it is not one.
inline std::string layer_op(std::string_view line) {
    std::string code = trim(line.substr(0, line.find('#')));
    const std::size_t colon = code.find(':');
    const std::size_t eq = code.find('=');
    if (colon != std::string::npos && (eq == std::string::npos || colon < eq)) {
        if (!is_name(trim(code.substr(0, colon)))) return {};
        code = trim(code.substr(colon + 1));
    }
    const std::string op = code.substr(0, code.find_first_of(" \t"));
    return is_op_word(op) ? op : std::string();
}

inline bool is_model_line(std::string_view line) {
    const std::string t = trim(line);
    return starts_with(t, "model ") && is_name(trim(std::string_view(t).substr(6)));
}

// A DSL line: a layer, a `model` line or a comment.
inline bool is_dsl_line(std::string_view line) {
    const std::string t = trim(line);
    return !t.empty() && (t[0] == '#' || is_model_line(t) || !layer_op(t).empty());
}

inline std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string line(text.substr(start, end - start));
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
        start = end + 1;
    }
    return lines;
}

// Splits a text that may hold several models (a second `model` line or `input` layer starts
// the next one). Keeps chunks without an input layer only when `keep_all`.
inline void split_models(const std::vector<std::string>& lines, bool keep_all, std::vector<std::string>& out) {
    std::string chunk;
    bool has_input = false, has_layer = false;
    auto flush = [&] {
        if ((has_input || (keep_all && has_layer)) && !trim(chunk).empty()) out.push_back(chunk);
        chunk.clear();
        has_input = has_layer = false;
    };
    for (const std::string& line : lines) {
        const std::string op = layer_op(line);
        if ((is_model_line(line) && has_layer) || (op == "input" && has_input)) flush();
        if (op == "input") has_input = true;
        if (!op.empty()) has_layer = true;
        chunk += line + "\n";
    }
    flush();
}

inline std::string strip_thinking(std::string_view reply) {
    std::string s(reply);
    for (;;) {
        const std::size_t a = s.find("<think>");
        if (a == std::string::npos) break;
        const std::size_t b = s.find("</think>", a);
        s.erase(a, b == std::string::npos ? std::string::npos : b + 8 - a);
    }
    return s;
}

}  // namespace llm_detail

// The DSL models in an LLM reply, in order: the contents of ```lamda fences (and of other
// fences whose text is DSL), or, when the reply has no fence, the runs of DSL lines in bare
// text. Several models per reply are allowed (also several in one fence); chatter and
// <think> sections are ignored; repeats within the reply are dropped. At most `max_models`.
inline std::vector<std::string> extract_dsl_candidates(std::string_view reply, std::size_t max_models = 8) {
    using namespace llm_detail;
    const std::vector<std::string> lines = split_lines(strip_thinking(reply));
    std::vector<std::string> found;
    bool any_fence = false;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string t = trim(lines[i]);
        if (!starts_with(t, "```") && !starts_with(t, "~~~")) continue;
        any_fence = true;
        const std::string fence = t.substr(0, 3);
        const std::string tag = lower(trim(std::string_view(t).substr(3)));
        std::vector<std::string> body;
        std::size_t j = i + 1;
        for (; j < lines.size() && !starts_with(trim(lines[j]), fence); ++j) body.push_back(lines[j]);
        i = j;  // the closing fence (or the end: a reply cut off by max_tokens)
        bool dsl = tag == "lamda";
        if (!dsl) {
            for (const std::string& l : body) dsl = dsl || layer_op(l) == "input";
        }
        if (dsl) split_models(body, tag == "lamda", found);
    }
    if (!any_fence) {
        std::vector<std::string> run;
        auto flush = [&] {
            split_models(run, false, found);
            run.clear();
        };
        for (const std::string& line : lines) {
            if (is_dsl_line(line) || (trim(line).empty() && !run.empty())) {
                run.push_back(line);
            } else {
                flush();
            }
        }
        flush();
    }
    std::vector<std::string> out;
    for (std::string& m : found) {
        // Trim blank lines at both ends; keep the text otherwise as written.
        std::vector<std::string> ls = split_lines(m);
        while (!ls.empty() && trim(ls.back()).empty()) ls.pop_back();
        std::size_t a = 0;
        while (a < ls.size() && trim(ls[a]).empty()) ++a;
        std::string text;
        for (std::size_t k = a; k < ls.size(); ++k) text += ls[k] + "\n";
        if (text.empty() || std::find(out.begin(), out.end(), text) != out.end()) continue;
        out.push_back(std::move(text));
        if (out.size() >= max_models) break;
    }
    return out;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_REPLY_HPP
