// The CLI's argument conventions (docs/cli.md), shared by every subcommand:
//   - one exit-code table, lamda::ExitCode: 0 ok, 1 the input or the search failed, 2 usage; CLI11's
//     own codes (105 extras, 106 required, 109 validation, ...) all become 2;
//   - an unknown command is named, with the closest known one;
//   - a value that is not a number says so, instead of "not in range";
//   - `--version` names the optional features this lamda was built with;
//   - help shows no default where the variable's initial value is a "not given" sentinel.
#ifndef LAMDA_TOOLS_CLI_APP_HPP
#define LAMDA_TOOLS_CLI_APP_HPP

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <lamda/core/diagnostics.hpp>
#include <lamda/core/error.hpp>
#include <lamda/version.hpp>

namespace lamda_cli {

// "lamda 0.1.0" and the features built in, one line each.
inline std::string version_text() {
    std::string features;
    auto add = [&features](const char* name) { features += std::string(features.empty() ? "" : " ") + name; };
#if defined(LAMDA_WITH_XNNPACK)
    add("xnnpack");
#endif
#if defined(LAMDA_WITH_LATENCY)
    add("latency");
#endif
#if defined(LAMDA_WITH_TORCH) || defined(LAMDA_CLI_WITH_TRAINER)
    add("torch");
#endif
#if defined(LAMDA_WITH_ONNX)
    add("onnx");
#endif
#if defined(LAMDA_WITH_LLM)
    add("llm");
#endif
#if defined(LAMDA_WITH_AGENT)
    add("agent");
#endif
#if defined(LAMDA_WITH_ZLIB)
    add("zlib");
#endif
    return std::string("lamda ") + lamda::version_string + "\nfeatures: " + (features.empty() ? "none" : features);
}

namespace cli_detail {

// CLI11's "--runs: Value abc not in range 1 to 100000" -> "--runs: 'abc' is not a number ...".
inline std::string clearer(std::string message) {
    const std::size_t value_at = message.find("Value ");
    const std::size_t range_at = message.find(" not in range ");
    if (value_at == std::string::npos || range_at == std::string::npos || range_at < value_at) return message;
    const std::string value = message.substr(value_at + 6, range_at - value_at - 6);
    const std::string range = message.substr(range_at + 14);
    const char* begin = value.c_str();
    char* end = nullptr;
    std::strtod(begin, &end);
    const bool number = !value.empty() && end == begin + value.size();
    return message.substr(0, value_at) + "'" + value + "' " +
           (number ? "is out of range (" + range + ")" : "is not a number (expected " + range + ")");
}

// Help prints every option's captured default ("=15"). Options whose default depends on other
// options or on the mode start from a sentinel the option's own check refuses (--epochs 0 in
// [1, 100000], --erase -1 in [0, 1]) and say their default in words; showing the sentinel would
// offer a value the option rejects. One rule for all: a default its own validators refuse is
// hidden, in every subcommand.
inline void hide_sentinel_defaults(CLI::App& app) {
    for (CLI::Option* option : app.get_options()) {
        std::string shown = option->get_default_str();
        if (shown.empty()) continue;
        for (int i = 0;; ++i) {
            CLI::Validator* validator = nullptr;
            try {
                validator = option->get_validator(i);
            } catch (const CLI::OptionNotFound&) {
                break;
            }
            std::string value = shown;  // validators may transform their argument
            if (!(*validator)(value).empty()) {
                option->default_str("");
                break;
            }
        }
    }
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) hide_sentinel_defaults(*sub);
}

}  // namespace cli_detail

// Parses the command line. Returns -1 to go on, or the exit code to return now (0 after --help or
// --version, 2 for any usage error, which is printed on stderr).
inline int parse_command_line(CLI::App& app, int argc, char** argv) {
    const int usage = lamda::exit_code(lamda::ExitCode::usage);
    cli_detail::hide_sentinel_defaults(app);
    std::string command;
    if (argc >= 2 && argv[1][0] != '-') {
        command = argv[1];
        std::vector<std::string> names;
        bool known = false;
        for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
            names.push_back(sub->get_name());
            known = known || sub->check_name(command);
        }
        if (!known) {
            std::cerr << "lamda: error: unknown command '" << command << "'\n";
            const std::string guess = lamda::closest_match(command, names);
            if (!guess.empty()) {
                std::cerr << "  hint: did you mean '" << guess << "'?\n";
            } else {
                std::string all;
                for (const std::string& n : names) all += (all.empty() ? "" : ", ") + n;
                std::cerr << "  hint: commands are: " << all << "\n";
            }
            return usage;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
        std::cerr << "lamda" << (command.empty() ? "" : " " + command) << ": error: " << cli_detail::clearer(e.what())
                  << "\n  hint: see `lamda" << (command.empty() ? "" : " " + command) << " --help`\n";
        return usage;
    }
    return -1;
}

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CLI_APP_HPP
