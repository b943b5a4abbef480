// lamda/core/diagnostics.hpp: errors that name FILE:LINE:COL, what is wrong and how to fix it.
// They are shown to people and fed back to the generator, so they must be specific.
#ifndef LAMDA_CORE_DIAGNOSTICS_HPP
#define LAMDA_CORE_DIAGNOSTICS_HPP

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "error.hpp"

namespace lamda {

struct Diagnostic {
    std::string file;
    int line = 0;    // 1-based; 0 when the error concerns the whole file
    int column = 0;  // 1-based; 0 when unknown
    std::string message;
    std::string hint;  // may be empty
};

// "file:line:col: error: message" and, when there is a hint, "\n  hint: ...".
inline std::string format_diagnostic(const Diagnostic& d) {
    std::string out = d.file.empty() ? std::string("<input>") : d.file;
    if (d.line > 0) {
        out += ':' + std::to_string(d.line);
        if (d.column > 0) out += ':' + std::to_string(d.column);
    }
    out += ": error: " + d.message;
    if (!d.hint.empty()) out += "\n  hint: " + d.hint;
    return out;
}

// The same diagnostic in the one error model (core/error.hpp).
inline Error to_error(const Diagnostic& d) {
    return Error(ErrorKind::input, Where{d.file.empty() ? std::string("<input>") : d.file, d.line, d.column, {}},
                 d.message, d.hint);
}

inline std::string format_diagnostics(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const auto& d : ds) {
        out += format_diagnostic(d);
        out += '\n';
    }
    return out;
}

// Levenshtein distance, for "did you mean" hints; inputs are short keywords.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            const std::size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            std::size_t best = above + 1 < row[j - 1] + 1 ? above + 1 : row[j - 1] + 1;
            row[j] = substitute < best ? substitute : best;
            diagonal = above;
        }
    }
    return row[b.size()];
}

// The candidate closest to `word`, if it is close enough to be a plausible typo (at most a third
// of the shorter word's letters differ); else empty. Candidates whose length alone rules them out
// are skipped, which keeps hints cheap on long files full of mistakes.
template <typename Range>
std::string closest_match(std::string_view word, const Range& candidates) {
    constexpr std::size_t longest_word = 64;  // names are at most 64 characters
    if (word.empty() || word.size() > longest_word) return {};
    std::string best;
    std::size_t best_distance = static_cast<std::size_t>(-1);
    for (const auto& candidate : candidates) {
        const std::string_view c(candidate);
        const std::size_t shorter = word.size() < c.size() ? word.size() : c.size();
        const std::size_t allowed = shorter / 3 > 1 ? shorter / 3 : 1;
        const std::size_t length_gap = word.size() > c.size() ? word.size() - c.size()
                                                              : c.size() - word.size();
        if (length_gap > allowed || c.size() > longest_word) continue;
        const std::size_t d = edit_distance(word, c);
        if (d <= allowed && d < best_distance) {
            best_distance = d;
            best = std::string(c);
        }
    }
    return best;
}

}  // namespace lamda

#endif  // LAMDA_CORE_DIAGNOSTICS_HPP
