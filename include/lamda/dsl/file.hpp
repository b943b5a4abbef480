// lamda/dsl/file.hpp: the DSL parser's file and exception conveniences, outside the core.
//   lamda::ParseResult r = lamda::parse_dsl_file("model.lamda");   // never throws
//   lamda::Graph g = lamda::parse_dsl_or_throw(text, "model.lamda"); // throws lamda::ModelError
// Contract: parse_dsl_file reads at most Limits::max_file_bytes + 1 bytes and reports an
// unreadable file as one diagnostic; ModelError carries every diagnostic of a failed parse.
// Needs <fstream> and exceptions, which is why lamda/core.hpp leaves this header out.
#ifndef LAMDA_DSL_FILE_HPP
#define LAMDA_DSL_FILE_HPP

#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/diagnostics.hpp"
#include "../exception.hpp"
#include "parser.hpp"

namespace lamda {

// Thrown where a caller asked for a valid model and did not get one.
class ModelError : public Exception {
public:
    explicit ModelError(std::vector<Diagnostic> diagnostics)
        : Exception(diagnostics.empty() ? Error(ErrorKind::input, "invalid model")
                                        : to_error(diagnostics.front())),
          diagnostics_(std::move(diagnostics)),
          what_(format_diagnostics(diagnostics_)) {}
    const char* what() const noexcept override { return what_.c_str(); }
    const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
    std::string what_;
};

// Reads and parses a file; a file that cannot be read is one diagnostic, never an exception.
inline ParseResult parse_dsl_file(const std::string& path, const Limits& limits = {}) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        ParseResult failed;
        failed.diagnostics.push_back(Diagnostic{path, 0, 0, "cannot open the file", {}});
        return failed;
    }
    // Read at most one byte past the limit, so an endless or huge file costs nothing.
    std::string text(limits.max_file_bytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (in.bad()) {
        ParseResult failed;
        failed.diagnostics.push_back(Diagnostic{path, 0, 0, "cannot read the file", {}});
        return failed;
    }
    return parse_dsl(text, path, limits);
}

// Parses or throws ModelError carrying every diagnostic.
inline Graph parse_dsl_or_throw(std::string_view text, std::string_view file = "<input>",
                                const Limits& limits = {}) {
    ParseResult result = parse_dsl(text, file, limits);
    if (!result.ok()) throw ModelError(std::move(result.diagnostics));
    return std::move(result.graph);
}

}  // namespace lamda

#endif  // LAMDA_DSL_FILE_HPP
