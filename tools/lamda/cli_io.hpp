// The CLI's file conventions, shared by every subcommand (docs/cli.md):
//   - a file argument "-" is standard input (for inputs) or standard output (for outputs);
//   - inputs are read with a size limit, and an unreadable one is one clear error;
//   - a file that is not lamda DSL but ONNX or safetensors is named as such, with the command that
//     reads it, instead of a screenful of parser errors.
#ifndef LAMDA_TOOLS_CLI_IO_HPP
#define LAMDA_TOOLS_CLI_IO_HPP

#include <cstddef>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <lamda/core/diagnostics.hpp>
#include <lamda/core/error.hpp>
#include <lamda/dsl/parser.hpp>

namespace lamda_cli {

constexpr int exit_ok = lamda::exit_code(lamda::ExitCode::ok);
constexpr int exit_failed = lamda::exit_code(lamda::ExitCode::failed);
constexpr int exit_usage = lamda::exit_code(lamda::ExitCode::usage);

inline bool is_stdio(const std::string& path) noexcept { return path == "-"; }

// Progress lines that redraw themselves ('\r') only on a terminal: in a log they would be one
// endless line.
inline bool stderr_is_terminal() noexcept { return ::isatty(STDERR_FILENO) == 1; }

// The name diagnostics use for a path.
inline std::string display_name(const std::string& path) { return is_stdio(path) ? "<stdin>" : path; }

// Reads at most `max_bytes` (+1, to tell "too big"); false with `error` (what, not where) set
// otherwise.
inline bool read_input(const std::string& path, std::size_t max_bytes, std::string& text, std::string& error) {
    std::istream* in = &std::cin;
    std::ifstream file;
    if (!is_stdio(path)) {
        file.open(path, std::ios::binary);
        if (!file) {
            error = "cannot open the file";
            return false;
        }
        in = &file;
    }
    text.assign(max_bytes + 1, '\0');
    in->read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(in->gcount()));
    if (in->bad()) {
        error = "cannot read the file";
        return false;
    }
    if (text.size() > max_bytes) {
        error = "more than " + std::to_string(max_bytes) + " bytes, the limit";
        return false;
    }
    return true;
}

// What a file that is not lamda DSL looks like, or empty. ONNX is a protobuf whose first field
// is ir_version (tag 0x08); safetensors starts with an 8-byte header length and '{'.
inline std::string foreign_format(const std::string& path, std::string_view head) {
    auto ends_with = [&](std::string_view suffix) {
        return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(".onnx") || (!head.empty() && head[0] == '\x08' && head.size() > 1 &&
                               static_cast<unsigned char>(head[1]) < 0x20))
        return "this is an ONNX file, not a lamda model: convert it with `lamda import " + path +
               " -o model.lamda --weights model.safetensors`";
    if (ends_with(".safetensors") || (head.size() > 8 && head[8] == '{'))
        return "this is a weights file (safetensors), not a lamda model: pass it with --weights";
    return {};
}

// Reads and parses a model file or "-"; a file that is ONNX or safetensors is one diagnostic
// that says which command reads it.
inline lamda::ParseResult parse_model(const std::string& path, const lamda::Limits& limits = {}) {
    std::string text, error;
    lamda::ParseResult failed;
    if (!read_input(path, limits.max_file_bytes, text, error)) {
        failed.diagnostics.push_back(lamda::Diagnostic{display_name(path), 0, 0, error, {}});
        return failed;
    }
    const std::string foreign = foreign_format(path, std::string_view(text).substr(0, 16));
    if (!foreign.empty()) {
        failed.diagnostics.push_back(lamda::Diagnostic{display_name(path), 0, 0, foreign, {}});
        return failed;
    }
    return lamda::parse_dsl(text, display_name(path), limits);
}

// Writes `text` to a file or, for "-", to standard output; false with `error` (what) set.
inline bool write_output(const std::string& path, const std::string& text, std::string& error) {
    if (is_stdio(path)) {
        std::cout << text;
        std::cout.flush();
        if (!std::cout) {
            error = "cannot write to standard output";
            return false;
        }
        return true;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
        error = "cannot write the file";
        return false;
    }
    return true;
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CLI_IO_HPP
