// lamda/exception.hpp: lamda::Exception, the one exception type of the library outside the core.
// Every error lamda throws (ModelError, ExecutorError, WeightsError, TaskError, LlmError, ...)
// derives from it and carries a lamda::Error (core/error.hpp): catch lamda::Exception, print
// format_error(e.error()) once, exit with exit_code_for(e.error().kind).
//
// Contract: needs exceptions; the core (lamda/core.hpp) never includes this header.
#ifndef LAMDA_EXCEPTION_HPP
#define LAMDA_EXCEPTION_HPP

#include <stdexcept>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace lamda {

class Exception : public std::runtime_error {
public:
    // The message as it will be printed (it may already name a file and line).
    explicit Exception(const std::string& what, ErrorKind kind = ErrorKind::input)
        : std::runtime_error(what), error_(kind, what) {}
    explicit Exception(const char* what, ErrorKind kind = ErrorKind::input)
        : Exception(std::string(what), kind) {}
    explicit Exception(Error error)
        : std::runtime_error(format_error(error)), error_(std::move(error)) {}

    const Error& error() const noexcept { return error_; }
    ErrorKind kind() const noexcept { return error_.kind; }

private:
    Error error_;
};

}  // namespace lamda

#endif  // LAMDA_EXCEPTION_HPP
