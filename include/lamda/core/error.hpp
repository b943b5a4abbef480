// lamda/core/error.hpp: the one error model. An Error says what went wrong (kind, message, hint)
// and where (file, line, column, field path); format_error() is the one formatter every caller
// uses, and ExitCode is the one table of process exit codes.
//
// Contract: this header never throws and needs only the C++17 standard library, so the core
// (lamda/core.hpp) can carry errors as values under -fno-exceptions. The throwing wrapper,
// lamda::Exception, lives outside the core in lamda/exception.hpp.
#ifndef LAMDA_CORE_ERROR_HPP
#define LAMDA_CORE_ERROR_HPP

#include <string>
#include <utility>

namespace lamda {

// What kind of failure: callers branch on this, people read the message.
enum class ErrorKind {
    input,        // a file, task, model, reply or request is malformed or inconsistent
    limit,        // a size from outside is over one of lamda's limits
    io,           // a file or socket could not be read or written
    unsupported,  // valid, but lamda cannot do it (an ONNX op, a precision, a feature not built)
    device,       // the executor, a board or the agent failed
    server,       // an LLM server or agent answered with an error
    search,       // the search ran but found nothing that meets the task
    usage,        // the command line is wrong
    internal,     // a bug in lamda
};

inline const char* error_kind_name(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::input: return "input";
        case ErrorKind::limit: return "limit";
        case ErrorKind::io: return "io";
        case ErrorKind::unsupported: return "unsupported";
        case ErrorKind::device: return "device";
        case ErrorKind::server: return "server";
        case ErrorKind::search: return "search";
        case ErrorKind::usage: return "usage";
        case ErrorKind::internal: return "internal";
    }
    return "internal";
}

// Where an error is: any part may be empty/zero.
struct Where {
    std::string file;   // a path, "<stdin>", a URL or a layer name
    int line = 0;       // 1-based; 0 when the error concerns the whole file
    int column = 0;     // 1-based; 0 when unknown
    std::string field;  // a JSON field path ("constraints.max_latency_ms") or tensor name
};

struct Error {
    ErrorKind kind = ErrorKind::input;
    Where where;
    std::string message;  // what is wrong, one sentence, no "error:" prefix
    std::string hint;     // how to fix it; may be empty

    Error() = default;
    Error(ErrorKind k, std::string what) : kind(k), message(std::move(what)) {}
    Error(ErrorKind k, Where w, std::string what, std::string fix = {})
        : kind(k), where(std::move(w)), message(std::move(what)), hint(std::move(fix)) {}
};

// "file:line:col: field: message" and, when there is a hint, "\n  hint: ...". A part that is
// empty is left out; a message that already names its place is printed as it is.
inline std::string format_error(const Error& e) {
    std::string out;
    if (!e.where.file.empty()) {
        out += e.where.file;
        if (e.where.line > 0) {
            out += ':' + std::to_string(e.where.line);
            if (e.where.column > 0) out += ':' + std::to_string(e.where.column);
        }
        out += ": ";
    }
    if (!e.where.field.empty()) out += e.where.field + ": ";
    out += e.message;
    if (!e.hint.empty()) out += "\n  hint: " + e.hint;
    return out;
}

// Process exit codes of every lamda program (docs/cli.md): one table, used by every subcommand.
enum class ExitCode : int {
    ok = 0,      // done
    failed = 1,  // the input or the search failed (bad file, no feasible model, server error)
    usage = 2,   // the command line is wrong
};

constexpr int exit_code(ExitCode c) noexcept { return static_cast<int>(c); }

constexpr ExitCode exit_code_for(ErrorKind kind) noexcept {
    return kind == ErrorKind::usage ? ExitCode::usage : ExitCode::failed;
}

}  // namespace lamda

#endif  // LAMDA_CORE_ERROR_HPP
