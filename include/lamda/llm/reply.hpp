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
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "../dsl/parser.hpp"
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

// After the op word of a layer line: inputs (names, commas) and KEY=VALUE attributes only, so
// that a sentence like "Note: fc layers are cheap." is not taken for a layer.
inline bool layer_tail_ok(std::string_view line) {
    std::string code = trim(line.substr(0, line.find('#')));
    const std::size_t colon = code.find(':');
    const std::size_t eq = code.find('=');
    if (colon != std::string::npos && (eq == std::string::npos || colon < eq)) code = trim(code.substr(colon + 1));
    std::istringstream words(code);
    std::string w;
    words >> w;  // the op
    std::size_t inputs = 0;
    bool attrs = false;
    while (words >> w) {
        const std::size_t at = w.find('=');
        if (at != std::string::npos) {
            if (at == 0 || at + 1 == w.size()) return false;
            attrs = true;
            continue;
        }
        if (attrs) return false;  // an input after an attribute: prose
        while (!w.empty() && w.back() == ',') w.pop_back();
        while (!w.empty() && w.front() == ',') w.erase(0, 1);
        if (!w.empty() && !is_name(w)) return false;
        if (++inputs > 16) return false;
    }
    return true;
}

// A DSL line: a layer, a `model` line or a comment.
inline bool is_dsl_line(std::string_view line) {
    const std::string t = trim(line);
    return !t.empty() && (t[0] == '#' || is_model_line(t) || (!layer_op(t).empty() && layer_tail_ok(t)));
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

// The reply without its reasoning: <think>...</think> sections (also <thinking>, <reasoning>),
// everything before a closing tag whose opening tag is missing (DeepSeek-R1's template puts
// <think> in the prompt), and everything after an opening tag that never closes (cut off by
// max_tokens). `open_at_end` says whether the reply ended inside reasoning.
inline std::string strip_thinking(std::string_view reply, bool* open_at_end = nullptr) {
    std::string s(reply);
    if (open_at_end) *open_at_end = false;
    for (const char* tag : {"think", "thinking", "reasoning"}) {
        const std::string open = std::string("<") + tag + ">", close = std::string("</") + tag + ">";
        // a closing tag before any opening one: the reasoning started in the prompt
        const std::size_t first_close = s.find(close), first_open = s.find(open);
        if (first_close != std::string::npos && (first_open == std::string::npos || first_close < first_open))
            s.erase(0, first_close + close.size());
        for (;;) {
            const std::size_t a = s.find(open);
            if (a == std::string::npos) break;
            const std::size_t b = s.find(close, a);
            if (b == std::string::npos) {
                if (open_at_end) *open_at_end = true;
                s.erase(a);
                break;
            }
            s.erase(a, b + close.size() - a);
        }
    }
    return s;
}

// How many fenced blocks are closed in `text` (for stopping a streamed reply once complete).
inline std::size_t closed_fences(std::string_view text) {
    std::size_t fences = 0;
    for (const std::string& l : split_lines(text)) {
        const std::string t = trim(l);
        if (starts_with(t, "```") || starts_with(t, "~~~")) ++fences;
    }
    return fences / 2;
}

// A structured-output reply ({"model": "DSL"} or {"models": ["DSL", ...]}): the DSL texts; empty
// when `text` is not such JSON.
inline std::vector<std::string> unwrap_json_models(std::string_view text) {
    std::vector<std::string> out;
    const std::string t = trim(text);
    if (t.empty() || t[0] != '{') return out;
    simdjson::dom::parser parser;
    simdjson::dom::element doc, e;
    const simdjson::padded_string padded(t);
    if (parser.parse(padded).get(doc) || !doc.is_object()) return out;
    std::string_view s;
    if (!doc["model"].get(e) && !e.get_string().get(s)) out.emplace_back(s);
    simdjson::dom::array arr;
    if (!doc["models"].get(e) && !e.get_array().get(arr))
        for (simdjson::dom::element m : arr)
            if (!m.get_string().get(s)) out.emplace_back(s);
    return out;
}

}  // namespace llm_detail

// The DSL models in an LLM reply, in order: the contents of ```lamda fences (and of other
// fences whose text is DSL), or, when the reply has no fence, the runs of DSL lines in bare
// text. Several models per reply are allowed (also several in one fence); chatter and
// <think> sections are ignored; repeats within the reply are dropped. At most `max_models`.
inline std::vector<std::string> extract_dsl_candidates(std::string_view reply, std::size_t max_models = 8) {
    using namespace llm_detail;
    const std::string answer = strip_thinking(reply);
    const std::vector<std::string> wrapped = unwrap_json_models(answer);
    std::string joined;
    for (const std::string& m : wrapped) joined += "```lamda\n" + m + (m.empty() || m.back() == '\n' ? "" : "\n") + "```\n";
    const std::vector<std::string> lines = split_lines(wrapped.empty() ? answer : joined);
    std::vector<std::string> found;
    std::vector<std::string> run;  // bare DSL lines outside fences
    auto flush = [&] {
        split_models(run, false, found);
        run.clear();
    };
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string t = trim(lines[i]);
        if (!starts_with(t, "```") && !starts_with(t, "~~~")) {
            if (is_dsl_line(lines[i]) || (t.empty() && !run.empty())) run.push_back(lines[i]);
            else flush();
            continue;
        }
        flush();
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
        if (dsl && tag != "lamda" && tag != "" && tag != "text" && tag != "txt" && tag != "dsl") {
            // a fence of another language (```python) that happens to hold an `input` line: only
            // its DSL lines count, and only when nearly all of it is DSL
            std::size_t n = 0, nonblank = 0;
            for (const std::string& l : body) {
                nonblank += !trim(l).empty();
                n += is_dsl_line(l);
            }
            dsl = nonblank > 0 && n * 10 >= nonblank * 9;
        }
        if (dsl) split_models(body, tag == "lamda", found);
    }
    flush();
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

// What a reply submitted, and when nothing: exactly why.
struct ExtractedReply {
    std::vector<std::string> models;  // complete models only when the reply was cut off
    bool cut = false;                 // finish_reason "length" (or lamda's deadline): the reply was cut
    bool cut_in_reasoning = false;    // ... while the model was still reasoning
    bool dropped_cut_model = false;   // the last model was cut mid-way and is not a candidate
    std::string why_empty;            // "" when models were found
};

inline ExtractedReply extract_reply(const ChatReply& r, std::size_t max_models = 8) {
    ExtractedReply out;
    out.cut = r.finish_reason == "length" || r.finish_reason == "deadline";
    bool open_at_end = false;
    const std::string answer = llm_detail::strip_thinking(r.content, &open_at_end);
    out.cut_in_reasoning = out.cut && (open_at_end || (llm_detail::trim(answer).empty() && !r.reasoning.empty()));
    out.models = extract_dsl_candidates(r.content, max_models);
    if (out.cut && !out.models.empty() && !parse_dsl(out.models.back(), "reply").ok()) {
        out.models.pop_back();
        out.dropped_cut_model = true;
    }
    if (!out.models.empty()) return out;
    const std::string limit = r.finish_reason == "deadline" ? "the request's deadline (--llm-timeout, the task's max_seconds)"
                                                            : "max_tokens";
    const std::string raise = r.finish_reason == "deadline" ? "raise --llm-timeout" : "raise --llm-max-tokens";
    if (out.cut_in_reasoning)
        out.why_empty = "cut off at " + limit + " while reasoning (" + std::to_string(r.reasoning.size() + r.content.size()) +
                        " characters, no answer yet): " + raise;
    else if (out.cut && out.dropped_cut_model)
        out.why_empty = "cut off at " + limit + " in the middle of a model: " + raise + " or ask for fewer candidates (--llm-candidates)";
    else if (out.cut)
        out.why_empty = "cut off at " + limit + " before any model: " + raise;
    else if (r.content.empty())
        out.why_empty = r.empty_cause.empty() ? std::string("the reply was empty") : r.empty_cause;
    else if (llm_detail::trim(answer).empty())
        out.why_empty = "the reply held only reasoning and no answer";
    else
        out.why_empty = "the reply held no lamda model (no ```lamda block and no line `input: input shape=...`): " +
                        llm_detail::snippet(answer, 160);
    return out;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_REPLY_HPP
