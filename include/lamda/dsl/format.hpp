// lamda/dsl/format.hpp: `lamda fmt`, the formatter that keeps what a person wrote.
//   lamda::FormatResult f = lamda::format_dsl(text, "model.lamda");
//   if (f.ok()) std::cout << f.text;  else print f.diagnostics
//
// Contract: format_dsl(text) parses `text` (parse_dsl, the same limits) and, for a valid model,
// returns the text with every layer line and the `model NAME` line replaced by its canonical form
// (print_dsl's line for that layer) and everything else kept:
//   - comment lines stay where they are, with their text as written (indentation and trailing
//     white space removed);
//   - a trailing comment stays on its line; the trailing comments of consecutive lines are aligned
//     two columns after the longest of those lines;
//   - blank lines stay, a run of them becomes one, and none are kept at the start or the end;
//   - lines end with '\n' (a '\r' before it is dropped) and the text ends with one '\n'.
// It is idempotent (format_dsl(format_dsl(t).text).text == format_dsl(t).text) and preserves the
// graph (parse_dsl(format_dsl(t).text).graph == parse_dsl(t).graph, up to source locations).
// An invalid model returns the parser's diagnostics and no text. Never throws (core header:
// -fno-exceptions, no I/O).
#ifndef LAMDA_DSL_FORMAT_HPP
#define LAMDA_DSL_FORMAT_HPP

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/diagnostics.hpp"
#include "parser.hpp"

namespace lamda {

struct FormatResult {
    std::string text;                      // the formatted text when ok()
    std::vector<Diagnostic> diagnostics;   // the parser's, when the model is not valid
    bool ok() const noexcept { return diagnostics.empty(); }
};

namespace format_detail {

inline std::string_view trim(std::string_view s) noexcept {
    std::size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
    return s.substr(b, e - b);
}

// The canonical lines of print_dsl's output, without their '\n'.
inline std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = text.find('\n', pos);
        const std::size_t stop = end == std::string_view::npos ? text.size() : end;
        lines.push_back(text.substr(pos, stop - pos));
        if (end == std::string_view::npos) break;
        pos = end + 1;
    }
    return lines;
}

struct OutLine {
    enum Kind { Blank, Comment, Code } kind = Blank;
    std::string code;     // Code: the canonical text; Comment: the comment
    std::string comment;  // Code: the trailing comment, from '#', or empty
};

}  // namespace format_detail

inline FormatResult format_dsl(std::string_view text, std::string_view file = "<input>",
                               const Limits& limits = {}) {
    using namespace format_detail;
    FormatResult result;
    ParseResult parsed = parse_dsl(text, file, limits);
    if (!parsed.ok()) {
        result.diagnostics = std::move(parsed.diagnostics);
        return result;
    }
    const Graph& graph = parsed.graph;
    const std::string canonical = print_dsl(graph);
    const std::vector<std::string_view> canonical_lines = split_lines(canonical);
    const std::size_t first_layer = graph.name.empty() ? 0 : 1;  // "model NAME" comes first

    // Which source line holds which layer (the parser records each layer's line).
    std::size_t source_lines = 1;
    for (char c : text) source_lines += c == '\n' ? 1 : 0;
    std::vector<int> layer_at(source_lines + 1, -1);
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const int line = graph.layers[i].loc.line;
        if (line > 0 && static_cast<std::size_t>(line) <= source_lines)
            layer_at[static_cast<std::size_t>(line)] = static_cast<int>(i);
    }

    std::vector<OutLine> out;
    std::size_t pos = 0;
    for (std::size_t number = 1; pos <= text.size(); ++number) {
        const std::size_t end = text.find('\n', pos);
        const std::size_t stop = end == std::string_view::npos ? text.size() : end;
        const std::string_view line = text.substr(pos, stop - pos);
        pos = end == std::string_view::npos ? text.size() + 1 : end + 1;

        // '#' is no part of any token, so the first one starts the comment.
        const std::size_t hash = line.find('#');
        const std::string_view code = trim(line.substr(0, hash));
        const std::string_view comment =
            hash == std::string_view::npos ? std::string_view{} : trim(line.substr(hash));
        OutLine o;
        if (code.empty()) {
            if (comment.empty()) {
                if (!out.empty() && out.back().kind != OutLine::Blank) out.push_back(o);
                continue;
            }
            o.kind = OutLine::Comment;
            o.code = std::string(comment);
            out.push_back(std::move(o));
            continue;
        }
        o.kind = OutLine::Code;
        o.comment = std::string(comment);
        const int layer = number < layer_at.size() ? layer_at[number] : -1;
        if (layer >= 0 && first_layer + static_cast<std::size_t>(layer) < canonical_lines.size()) {
            o.code = std::string(canonical_lines[first_layer + static_cast<std::size_t>(layer)]);
        } else if (!graph.name.empty() && !canonical_lines.empty()) {
            // The only other line a valid model has is `model NAME`.
            o.code = std::string(canonical_lines[0]);
        } else {
            o.code = std::string(code);  // unreachable for a valid model; keep it as written
        }
        out.push_back(std::move(o));
    }
    while (!out.empty() && out.back().kind == OutLine::Blank) out.pop_back();

    // Align the trailing comments of each run of consecutive commented code lines.
    std::vector<std::size_t> column(out.size(), 0);
    for (std::size_t i = 0; i < out.size();) {
        if (out[i].kind != OutLine::Code || out[i].comment.empty()) {
            ++i;
            continue;
        }
        std::size_t j = i, width = 0;
        while (j < out.size() && out[j].kind == OutLine::Code && !out[j].comment.empty()) {
            width = out[j].code.size() > width ? out[j].code.size() : width;
            ++j;
        }
        for (std::size_t k = i; k < j; ++k) column[k] = width + 2;
        i = j;
    }

    for (std::size_t i = 0; i < out.size(); ++i) {
        const OutLine& o = out[i];
        if (o.kind == OutLine::Code) {
            result.text += o.code;
            if (!o.comment.empty()) {
                result.text.append(column[i] - o.code.size(), ' ');
                result.text += o.comment;
            }
        } else if (o.kind == OutLine::Comment) {
            result.text += o.code;
        }
        result.text += '\n';
    }
    return result;
}

}  // namespace lamda

#endif  // LAMDA_DSL_FORMAT_HPP
