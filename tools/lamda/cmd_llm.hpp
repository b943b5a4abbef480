// tools/lamda/cmd_llm.hpp: the LLM generator's command line (docs/llm.md).
//   - `lamda llm-check --llm-url URL --llm-model NAME`: one short request, and what came back;
//   - the --llm-* options of `lamda generate --proposer llm` and the proposer they build.
// Included by cmd_generate.hpp and main.cpp. Needs LAMDA_WITH_LLM (cpp-httplib); without it the
// options still parse and using them says that this lamda has no LLM generator.
#ifndef LAMDA_TOOLS_CMD_LLM_HPP
#define LAMDA_TOOLS_CMD_LLM_HPP

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#if defined(LAMDA_WITH_LLM)
#include <lamda/detail/json_write.hpp>
#include <lamda/llm/llm.hpp>
#include <lamda/llm/grammar.hpp>
#include <lamda/search/task.hpp>
#endif

namespace lamda_cli {

struct LlmArgs {
    std::string url;
    std::string model;
    double temperature = 0.7;
    int max_tokens = 2048;
    double timeout_s = 300;
    int context_tokens = 8192;
    int max_retries = 4;
    int candidates_per_turn = 3;
    const CLI::Option* candidates_option = nullptr;  // --llm-candidates, to know whether it was given
    std::string constrain = "auto";  // auto | grammar | json | off
    bool stream = false;
    bool json = false;  // llm-check: one JSON object (docs/cli.md, schema "llm-check")
};

// The --llm-* options, on `generate` and on `llm-check`.
inline void add_llm_options(CLI::App* cmd, LlmArgs& a, bool for_check) {
    auto* url = cmd->add_option("--llm-url", a.url,
                                "OpenAI-compatible base URL, up to /v1 (e.g. http://localhost:11434/v1 for Ollama, "
                                "https://api.openai.com/v1); the API key comes from LAMDA_API_KEY or OPENAI_API_KEY");
    auto* model = cmd->add_option("--llm-model", a.model, "Model name the server knows (e.g. gpt-4o-mini, qwen2.5-coder:7b)");
    if (for_check) {
        url->required();
        model->required();
    }
    cmd->add_option("--llm-temperature", a.temperature, "Sampling temperature")->check(CLI::Range(0.0, 2.0));
    cmd->add_option("--llm-max-tokens", a.max_tokens, "Most tokens per reply")->check(CLI::Range(16, 1000000));
    cmd->add_option("--llm-timeout", a.timeout_s, "Seconds to wait for a reply (each attempt)")->check(CLI::Range(0.1, 86400.0));
    cmd->add_option("--llm-max-retries", a.max_retries, "Retries of connect errors, timeouts, 429 and 5xx")
        ->check(CLI::Range(0, 100));
    cmd->add_option("--llm-constrain", a.constrain,
                    "Constrain replies to the DSL: auto (what the server supports: llama.cpp grammar, vLLM guided "
                    "decoding, JSON schema), grammar, json or off")
        ->check(CLI::IsMember({"auto", "grammar", "json", "off"}));
    cmd->add_flag("--llm-stream", a.stream, "Stream replies (SSE): progress on stderr, and a reply stops once complete");
    if (!for_check) {
        cmd->add_option("--llm-context-tokens", a.context_tokens,
                        "The model's context window in tokens: each request is kept within it, less --llm-max-tokens")
            ->check(CLI::Range(512, 10000000));
        a.candidates_option =
            cmd->add_option("--llm-candidates", a.candidates_per_turn,
                            "Models asked for per turn; not given: 3, or with --workers N / N MPI workers, N (up to 8), "
                            "so one turn keeps every worker busy")
                ->check(CLI::Range(1, 8));
    }
}

inline CLI::App* add_llm_check_command(CLI::App& app, LlmArgs& a) {
    auto* cmd = app.add_subcommand(
        "llm-check",
        "Send one short chat request to an OpenAI-compatible server and say what came back (the\n"
        "model, its reply and the latency) or what went wrong. Exits 0 when a reply came back.");
    add_llm_options(cmd, a, true);
    cmd->add_flag("--json", a.json, "Print one JSON object (docs/cli.md), also when the check fails");
    return cmd;
}

#if defined(LAMDA_WITH_LLM)

inline lamda::LlmConfig llm_config(const LlmArgs& a) {
    if (a.url.empty() || a.model.empty())
        throw std::runtime_error("--proposer llm needs --llm-url and --llm-model (see docs/llm.md)");
    lamda::LlmConfig c;
    c.base_url = a.url;
    c.model = a.model;
    c.temperature = a.temperature;
    c.max_tokens = a.max_tokens;
    c.timeout_s = a.timeout_s;
    c.max_retries = a.max_retries;
    c.context_tokens = a.context_tokens;
    c.stream = a.stream;
    c.api_key = lamda::llm_api_key_from_env();
    return c;
}

// The DSL's grammar and JSON schema (llm/grammar.hpp), generated from the op catalog; with a
// task, its input line is fixed to the task's shape.
inline std::pair<std::string, std::string> llm_grammars(const lamda::Task* task = nullptr) {
    lamda::DslGrammarOptions o;
    if (task) o.input_shape = task->input;
    return {lamda::dsl_gbnf(o), lamda::dsl_json_schema(o)};
}

inline std::string api_key_source() {
    for (const char* name : {"LAMDA_API_KEY", "OPENAI_API_KEY"}) {
        const char* v = std::getenv(name);
        if (v && *v) return std::string("from ") + name + " (not shown)";
    }
    return "none (LAMDA_API_KEY and OPENAI_API_KEY are unset)";
}

// Models asked for per turn: --llm-candidates when given; else at least one per parallel evaluator
// (--workers threads or MPI worker ranks), so a turn's reply can keep them all busy, up to 8.
inline int llm_candidates_per_turn(const LlmArgs& a, int parallel_evaluators) {
    if (a.candidates_option && a.candidates_option->count() > 0) return a.candidates_per_turn;
    return std::min(8, std::max(a.candidates_per_turn, parallel_evaluators));
}

// The proposer of `lamda generate --proposer llm`; its progress goes to stderr unless `quiet`.
// `parallel_evaluators`: candidates evaluated at once (--workers, or the MPI worker ranks).
// `start_model`: adapting (--start-from), the start model's DSL, shown in every request.
// `target`, `model`: the device the latencies are for and its latency model (a profile's), which
// the prompt describes.
inline std::unique_ptr<lamda::Proposer> make_llm_proposer(const LlmArgs& a, const lamda::Task& task, bool quiet,
                                                          const lamda::DeviceInfo& target, const lamda::LatencyModel* model,
                                                          int parallel_evaluators = 1, std::string start_model = {}) {
    lamda::LlmProposerOptions o;
    o.candidates_per_turn = llm_candidates_per_turn(a, parallel_evaluators);
    o.start_model = std::move(start_model);
    o.probe_server = true;  // the server's kind and window (Ollama: native API with num_ctx)
    o.constrain = a.constrain;
    std::tie(o.gbnf, o.json_schema) = llm_grammars(&task);
    o.device_summary = lamda::llm_device_summary(task, target, model);
    o.channel_tile_hint = lamda::llm_channel_tile_hint(task, target);
    lamda::LlmConfig config = llm_config(a);
    auto p = std::make_unique<lamda::LlmProposer>(config, o);
    if (!quiet) {
        std::cerr << "lamda: llm: " << p->client().endpoint() << ", model " << config.model << ", API key "
                  << api_key_source() << "\n";
        const bool tty = ::isatty(STDERR_FILENO) == 1;
        p->on_log = [tty](const std::string& s) { std::cerr << (tty ? "\r\033[K" : "") << "lamda: llm: " << s << "\n"; };
        p->client().on_retry = [tty](const std::string& s) {
            std::cerr << (tty ? "\r\033[K" : "") << "lamda: llm: " << s << "\n";
        };
    }
    return p;
}

inline int run_llm_check(const LlmArgs& a) {
    lamda::LlmConfig c;
    // --json: the lines below as one object, printed at the end (with "ok" and "error" on failure).
    lamda::JsonWriter json;
    json.begin_object();
    std::ostringstream discard;
    std::ostream& text = a.json ? static_cast<std::ostream&>(discard) : std::cout;
    try {
        c = llm_config(a);
        c.max_tokens = std::min(c.max_tokens, 64);
        c.context_tokens = std::max(c.context_tokens, c.max_tokens + 1024);
        lamda::LlmClient client(c);
        client.on_retry = [](const std::string& s) { std::cerr << "lamda: llm-check: " << s << "\n"; };
        text << "endpoint:  POST " << client.endpoint() << "\n"
             << "model:     " << c.model << "\n"
             << "api key:   " << api_key_source() << "\n";
        json.field("endpoint", client.endpoint()).field("model", c.model).field("api_key", api_key_source());
        const lamda::ServerInfo info = client.probe();
        const auto [gbnf, schema] = llm_grammars();
        std::string chosen = "off";
        std::string constrain_note;
        try {
            lamda::constraint_fields(a.constrain, info, info.kind == "ollama", gbnf, schema, &chosen);
        } catch (const lamda::LlmError& e) {
            constrain_note = std::string(" (") + e.what() + ")";
        }
        json.key("server")
            .begin_object()
            .field("kind", info.kind)
            .field("model", info.model)
            .field("context_tokens", static_cast<std::int64_t>(info.context_tokens))
            .field("window_source", info.window_source)
            .field("grammar", static_cast<bool>(info.grammar))
            .field("json_schema", static_cast<bool>(info.json_schema))
            .end_object()
            .field("constrain", a.constrain)
            .field("constrain_chosen", chosen);
        text << "server:    " << info.kind << (info.model.empty() ? std::string() : ", serving " + info.model) << "\n"
                  << "window:    "
                  << (info.context_tokens > 0 ? std::to_string(info.context_tokens) + " tokens (" + info.window_source + ")"
                                              : std::string("not reported; --llm-context-tokens is used"))
                  << "\n"
                  << "grammar:   " << (info.grammar ? (info.kind == "vllm" ? "yes (guided_grammar)" : "yes (GBNF \"grammar\")") : "no") << "\n"
                  << "json:      " << (info.json_schema ? (info.kind == "ollama" ? "yes (format: schema)" : "yes (response_format json_schema)") : "unknown")
                  << "\n"
                  << "constrain: " << a.constrain << " -> " << chosen << constrain_note << "\n";
        const lamda::ChatReply r = client.chat({{"system", "You are a connectivity check. Answer in one word."},
                                                {"user", "Reply with the single word: ready"}});
        json.field("answered_by", r.model)
            .field("latency_s", r.seconds)
            .field("attempts", static_cast<std::int64_t>(r.attempts))
            .field("finish_reason", r.finish_reason)
            .field("reply", lamda::llm_detail::snippet(client.redact(r.content), 400))
            .field("ok", true)
            .end_object();
        if (a.json) std::cout << json.str() << '\n';
        text << "answered:  " << (r.model.empty() ? std::string("(the server did not say which model)") : r.model) << "\n"
                  << "latency:   " << std::fixed << std::setprecision(3) << r.seconds << " s"
                  << (r.attempts > 1 ? " (after " + std::to_string(r.attempts) + " attempts)" : std::string()) << "\n"
                  << "finish:    " << (r.finish_reason.empty() ? std::string("(not given)") : r.finish_reason) << "\n"
                  << "reply:     " << lamda::llm_detail::snippet(client.redact(r.content), 400) << "\n";
        return 0;
    } catch (const lamda::LlmError& e) {
        const std::string message = lamda::redact_secret(e.what(), c.api_key);
        std::cerr << "lamda: llm-check: error: " << message << "\n";
        if (a.json) {
            lamda::JsonWriter failed;  // the fields gathered so far are dropped: one flat answer
            failed.begin_object().field("ok", false).field("model", c.model).field("error", message).end_object();
            std::cout << failed.str() << '\n';
        }
        return 1;
    }
}

#else

inline int run_llm_check(const LlmArgs&) {
    std::cerr << "lamda: error: this lamda was built without the LLM generator (cpp-httplib); install "
                 "libcpp-httplib-dev and rebuild\n";
    return 1;
}

#endif  // LAMDA_WITH_LLM

}  // namespace lamda_cli

#endif  // LAMDA_TOOLS_CMD_LLM_HPP
