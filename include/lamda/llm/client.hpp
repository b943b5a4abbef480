// lamda/llm/client.hpp: talking to an LLM server over the OpenAI-compatible chat-completions protocol
// (OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio).
//
// Contract:
//   - LlmConfig says where and how (base_url up to /v1, model, max_tokens, timeouts, retries, caps).
//   - LlmClient::chat_body() POSTs {base_url}/chat/completions and returns a ChatReply, or throws
//     LlmError with a kind. It retries what may pass (connect errors, 429 with Retry-After, 5xx:
//     exponential backoff with jitter); every other fault is an LlmError naming the cause.
//   - The API key goes into the Authorization header only; redact_secret() keeps it out of messages.
// Requires LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm).
#ifndef LAMDA_LLM_CLIENT_HPP
#define LAMDA_LLM_CLIENT_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/client.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../detail/format.hpp"
#include "../exception.hpp"
#include "../detail/json_write.hpp"
#include "../search/types.hpp"

#include <httplib.h>
#include <simdjson.h>

#include "../detail/http_client.hpp"  // (also takes away <resolv.h>'s `_res` macro)
#include "../detail/url.hpp"

namespace lamda {

// ---------------------------------------------------------------------------------------------
// Errors, configuration, secrets
// ---------------------------------------------------------------------------------------------

enum class LlmErrorKind {
    Config,       // a bad URL, a budget too small for the prompt, https without OpenSSL
    Connect,      // cannot connect, or the connection dropped before a reply (retried)
    Timeout,      // no reply within timeout_s (retried)
    RateLimited,  // HTTP 429 (retried after Retry-After)
    Server,       // HTTP 5xx (retried)
    Client,       // any other HTTP status: 4xx with the server's message (not retried)
    TooLarge,     // the reply body is over max_reply_bytes
    Truncated,    // the body ended early (shorter than its Content-Length, or JSON cut off)
    BadJson,      // the body is not JSON
    NoChoices,    // JSON without choices[0].message.content
    ContentType,  // a 2xx reply that is not application/json (an HTML error page, ...)
    ContextLength,  // HTTP 400 context_length_exceeded: the request is over the model's window
};

inline constexpr std::string_view llm_error_kind_name(LlmErrorKind k) noexcept {
    switch (k) {
    case LlmErrorKind::Config: return "config";
    case LlmErrorKind::Connect: return "connect";
    case LlmErrorKind::Timeout: return "timeout";
    case LlmErrorKind::RateLimited: return "rate_limited";
    case LlmErrorKind::Server: return "server_error";
    case LlmErrorKind::Client: return "client_error";
    case LlmErrorKind::TooLarge: return "too_large";
    case LlmErrorKind::ContextLength: return "context_length_exceeded";
    case LlmErrorKind::Truncated: return "truncated";
    case LlmErrorKind::BadJson: return "bad_json";
    case LlmErrorKind::NoChoices: return "no_choices";
    case LlmErrorKind::ContentType: return "content_type";
    }
    return "?";
}

// What went wrong with one chat request. what() is "KIND: MESSAGE" and never holds the API key.
class LlmError : public Exception {
public:
    LlmError(LlmErrorKind kind, const std::string& message, int status = 0,
             std::optional<double> retry_after_s = std::nullopt)
        : Exception(std::string(llm_error_kind_name(kind)) + ": " + message, ErrorKind::server),
          kind_(kind), status_(status), retry_after_s_(retry_after_s) {}
    LlmErrorKind kind() const noexcept { return kind_; }
    int status() const noexcept { return status_; }  // HTTP status, 0 when none came back
    std::optional<double> retry_after_s() const noexcept { return retry_after_s_; }
    bool retryable() const noexcept {
        return kind_ == LlmErrorKind::Connect || kind_ == LlmErrorKind::Timeout ||
               kind_ == LlmErrorKind::RateLimited || kind_ == LlmErrorKind::Server;
    }

private:
    LlmErrorKind kind_;
    int status_;
    std::optional<double> retry_after_s_;
};

struct LlmConfig {
    std::string base_url = "http://127.0.0.1:8080/v1";  // http:// or https://, up to the /v1
    std::string model;
    double temperature = 0.7;
    int max_tokens = 2048;                    // of the reply
    double timeout_s = 300;                   // reading the reply (a slow local model needs long)
    double connect_timeout_s = 10;
    int max_retries = 4;                      // connect errors, timeouts, 429 and 5xx
    double backoff_base_s = 1;                // retry n waits min(cap, base * 2^n) * [0.5, 1)
    double backoff_cap_s = 30;
    double max_retry_after_s = 120;           // a longer Retry-After is cut to this
    std::size_t max_reply_bytes = 4u << 20;   // a bigger body is an error (reading stops there)
    int context_tokens = 8192;                // the model's context window: request + reply
    std::string api_key;                      // sent as "Authorization: Bearer"; never shown
    bool stream = false;                      // ask for SSE (stream: true); SSE is accepted either way
    std::size_t max_header_bytes = 64u << 10; // the reply's headers, all together
    std::size_t max_headers = 128;            // the reply's header count
    double progress_interval_s = 5;           // on_progress while streaming, at most this often
    // Ollama: talk to its native /api/chat (the OpenAI-compatible endpoint ignores num_ctx and cuts
    // the prompt's start silently) with options.num_ctx = context_tokens.
    bool ollama_native = false;
    // Raw JSON members added to every request body (a constraint: "grammar": ..., "response_format": ...).
    std::string extra_body;

    // The request (its whole JSON body, estimated as bytes / 3.3) stays within this.
    int prompt_budget_tokens() const noexcept { return context_tokens - max_tokens; }
};

// Tokens estimated from characters: ~3.3 per token on lamda's digit- and markup-heavy prompts
// (real tokenizers); the proposer calibrates the ratio from the server's usage.prompt_tokens.
inline constexpr double default_chars_per_token = 3.3;
inline std::size_t estimate_tokens(std::size_t chars, double chars_per_token = default_chars_per_token) noexcept {
    if (!(chars_per_token >= 1.0 && chars_per_token <= 16.0)) chars_per_token = default_chars_per_token;
    return static_cast<std::size_t>(std::ceil(static_cast<double>(chars) / chars_per_token));
}

// LAMDA_API_KEY, else OPENAI_API_KEY, else "" (local servers need none).
inline std::string llm_api_key_from_env() {
    for (const char* name : {"LAMDA_API_KEY", "OPENAI_API_KEY"}) {
        const char* v = std::getenv(name);
        if (v && *v) return v;
    }
    return {};
}

// `text` with every occurrence of `secret` replaced by "[redacted]". Everything the LLM code
// prints, throws, journals or reports goes through it.
inline std::string redact_secret(std::string_view text, std::string_view secret) {
    std::string out(text);
    if (secret.empty()) return out;
    std::size_t at = 0;
    while ((at = out.find(secret, at)) != std::string::npos) {
        out.replace(at, secret.size(), "[redacted]");
        at += 10;
    }
    return out;
}

struct ChatMessage {
    std::string role;  // "system", "user", "assistant"
    std::string content;
};

struct ChatReply {
    std::string content;        // choices[0].message.content ("" when null: see empty_cause)
    std::string reasoning;      // reasoning_content / reasoning / thinking, when the server splits it off
    std::string model;          // the model the server says answered ("" if it did not say)
    std::string finish_reason;  // "stop", "length", "tool_calls", "deadline", "stopped" ... ("" if absent)
    std::string empty_cause;    // why content was null or missing ("the model called a tool ...")
    bool streamed = false;      // the reply came as server-sent events
    bool stopped_early = false; // lamda stopped reading it (complete, or too long)
    std::int64_t prompt_tokens = -1, completion_tokens = -1;  // usage, -1 when not given
    double seconds = 0;         // the successful attempt's round trip
    int attempts = 1;
    std::size_t request_bytes = 0;
};

// The request body: {"model","messages","temperature","max_tokens","stream"} (OpenAI style), or
// Ollama's native {"model","messages","stream","options":{"num_ctx","num_predict","temperature"}},
// plus config.extra_body's members.
inline std::string chat_request_json(const LlmConfig& c, const std::vector<ChatMessage>& messages) {
    JsonWriter j;
    j.begin_object().field("model", std::string_view(c.model)).key("messages").begin_array();
    for (const ChatMessage& m : messages)
        j.begin_object()
            .field("role", std::string_view(m.role))
            .field("content", std::string_view(valid_utf8(m.content)))
            .end_object();
    j.end_array();
    if (c.ollama_native) {
        j.field("stream", false).key("options").begin_object().field("num_ctx", c.context_tokens)
            .field("num_predict", c.max_tokens).field("temperature", c.temperature).end_object();
    } else {
        j.field("temperature", c.temperature).field("max_tokens", c.max_tokens).field("stream", c.stream);
        if (c.stream) j.key("stream_options").begin_object().field("include_usage", true).end_object();
    }
    j.end_object();
    std::string body = j.str();
    if (!c.extra_body.empty()) {
        body.pop_back();
        body += "," + c.extra_body + "}";
    }
    return body;
}

namespace llm_detail {

inline std::string trim(std::string_view s) { return std::string(lamda::detail::trim(s)); }

inline std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// One printable line of at most `n` characters, for error messages that quote a body.
inline std::string snippet(std::string_view s, std::size_t n = 200) {
    std::string out;
    for (char ch : s) {
        if (out.size() >= n) {
            out += "...";
            break;
        }
        const auto c = static_cast<unsigned char>(ch);
        out += (c < 0x20 || c == 0x7f) ? ' ' : ch;
    }
    return valid_utf8(trim(out));
}

inline std::size_t json_escaped_size(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out.size() - 2;
}

inline std::string group_digits(std::int64_t v) {
    std::string digits = std::to_string(v < 0 ? -v : v), out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return v < 0 ? "-" + out : out;
}

// `v` with `digits` significant digits, never in scientific notation (0.00007, not 7e-05).
inline std::string num(double v, int digits = 3) {
    std::ostringstream o;
    if (!std::isfinite(v) || v == 0 || std::fabs(v) >= 1e15 || std::fabs(v) < 1e-9) {
        o.precision(digits);
        o << v;
        return o.str();
    }
    const int magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
    const int decimals = std::max(0, digits - 1 - magnitude);
    o.setf(std::ios::fixed);
    o.precision(std::min(decimals, 12));
    o << v;
    std::string s = o.str();
    if (s.find('.') != std::string::npos) {
        while (!s.empty() && s.back() == '0') s.pop_back();
        if (!s.empty() && s.back() == '.') s.pop_back();
    }
    return s;
}

inline std::string fixed2(double v) { return lamda::detail::format_fixed(v, 2); }

inline std::string percent(double share) { return std::to_string(static_cast<int>(std::lround(share * 100))) + "%"; }

// The base URL's parts (detail/url.hpp's rule); throws LlmError(Config) naming the URL.
inline detail::HttpUrl parse_base_url(const std::string& url) {
    detail::HttpUrl u;
    if (const std::string problem = detail::parse_http_url(url, u); !problem.empty())
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': " + problem);
#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    if (u.scheme == "https")
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': this lamda's cpp-httplib has no OpenSSL support, so "
                                             "https is not available (use http, or rebuild with CPPHTTPLIB_OPENSSL_SUPPORT)");
#endif
    return u;
}

// The server's own words from an error body: {"error":{"message":...}}, {"error":"..."},
// {"message":...} or {"detail":...}; else the body's start.
inline std::string server_message(std::string_view body) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    const simdjson::padded_string padded(body);
    if (!parser.parse(padded).get(doc)) {
        simdjson::dom::element e;
        std::string_view s;
        if (!doc["error"].get(e)) {
            if (!e.get_string().get(s)) return snippet(s, 300);
            simdjson::dom::element m;
            if (!e["message"].get(m) && !m.get_string().get(s)) return snippet(s, 300);
        }
        for (const char* key : {"message", "detail"})
            if (!doc[key].get(e) && !e.get_string().get(s)) return snippet(s, 300);
    }
    return body.empty() ? std::string("(empty body)") : snippet(body, 300);
}

inline std::optional<double> retry_after(const httplib::Response& res) {
    if (!res.has_header("Retry-After")) return std::nullopt;
    const std::string v = trim(res.get_header_value("Retry-After"));
    if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;  // an HTTP date: the backoff decides
    return static_cast<double>(std::stol(v));
}

}  // namespace llm_detail

namespace llm_detail {

inline std::int64_t int_field(simdjson::dom::element e, const char* key) {
    simdjson::dom::element v;
    std::int64_t n = -1;
    if (!e[key].get(v) && !v.get_int64().get(n) && n >= 0) return n;
    return -1;
}

inline std::string string_field(simdjson::dom::element e, const char* key) {
    simdjson::dom::element v;
    std::string_view s;
    if (!e[key].get(v) && !v.get_string().get(s)) return valid_utf8(s);
    return {};
}

// Why a reply's content is empty, in words the user can act on.
inline std::string empty_cause(const ChatReply& r, bool had_tool_calls, bool was_null) {
    const std::string what = was_null ? "content is null" : "content is empty";
    if (had_tool_calls)
        return what + ": the model called a tool (tool_calls) instead of answering; lamda offers no tools";
    if (!r.reasoning.empty() && r.finish_reason == "length")
        return what + ": cut off at max_tokens while reasoning (" + std::to_string(r.reasoning.size()) +
               " characters of reasoning): raise --llm-max-tokens";
    if (r.finish_reason == "length") return what + ": cut off at max_tokens: raise --llm-max-tokens";
    if (!r.reasoning.empty()) return what + ": the model only reasoned and gave no answer";
    return what;
}

// Reads the message object of a chat reply (OpenAI choices[0].message or delta, Ollama message).
inline void read_message(simdjson::dom::element m, ChatReply& r, bool& has_content, bool& was_null, bool& tool_calls) {
    simdjson::dom::element v;
    std::string_view s;
    if (!m["content"].get(v)) {
        if (!v.get_string().get(s)) {
            r.content += valid_utf8(s);
            has_content = true;
        } else if (v.is_null()) {
            was_null = true;
        }
    }
    for (const char* key : {"reasoning_content", "reasoning", "thinking"})
        if (!m[key].get(v) && !v.get_string().get(s)) r.reasoning += valid_utf8(s);
    simdjson::dom::array calls;
    if (!m["tool_calls"].get(v) && !v.get_array().get(calls) && calls.size() > 0) tool_calls = true;
}

}  // namespace llm_detail

// Parses a chat-completions reply body (or Ollama's native /api/chat reply); throws LlmError
// (BadJson, Truncated, NoChoices). A null content (tool calls, or reasoning that used every
// token) is not an error: the reply's empty_cause names it.
inline ChatReply parse_chat_reply(std::string_view body) {
    using llm_detail::snippet;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    const simdjson::padded_string padded(body);
    if (const auto err = parser.parse(padded).get(doc)) {
        if (err == simdjson::INCOMPLETE_ARRAY_OR_OBJECT || err == simdjson::UNCLOSED_STRING)
            throw LlmError(LlmErrorKind::Truncated, "the reply's JSON ends early after " + std::to_string(body.size()) +
                                                        " bytes (" + simdjson::error_message(err) + "): " + snippet(body, 120));
        throw LlmError(LlmErrorKind::BadJson, std::string("the reply is not valid JSON (") + simdjson::error_message(err) +
                                                  "): " + snippet(body, 120));
    }
    ChatReply r;
    r.model = llm_detail::string_field(doc, "model");
    simdjson::dom::element e;
    bool has_content = false, was_null = false, tool_calls = false;
    simdjson::dom::array choices;
    if (doc["choices"].get(e) || e.get_array().get(choices) || choices.size() == 0) {
        simdjson::dom::element msg;
        if (!doc["message"].get(msg) && msg.is_object()) {  // Ollama's native /api/chat
            llm_detail::read_message(msg, r, has_content, was_null, tool_calls);
            r.finish_reason = llm_detail::string_field(doc, "done_reason");
            r.prompt_tokens = llm_detail::int_field(doc, "prompt_eval_count");
            r.completion_tokens = llm_detail::int_field(doc, "eval_count");
        } else {
            std::string why = "the reply has no choices[0]";
            simdjson::dom::element err_e;
            if (!doc["error"].get(err_e)) why += " (server error: " + llm_detail::server_message(body) + ")";
            throw LlmError(LlmErrorKind::NoChoices, why + ": " + snippet(body, 120));
        }
    } else {
        simdjson::dom::element first = choices.at(0);
        r.finish_reason = llm_detail::string_field(first, "finish_reason");
        simdjson::dom::element msg;
        if (!first["message"].get(msg) && msg.is_object()) llm_detail::read_message(msg, r, has_content, was_null, tool_calls);
        simdjson::dom::element usage;
        if (!doc["usage"].get(usage) && usage.is_object()) {
            r.prompt_tokens = llm_detail::int_field(usage, "prompt_tokens");
            r.completion_tokens = llm_detail::int_field(usage, "completion_tokens");
        }
    }
    if (!has_content && !was_null && !tool_calls && r.reasoning.empty())
        throw LlmError(LlmErrorKind::NoChoices, "choices[0].message.content is missing or not a string: " + snippet(body, 120));
    if (r.content.empty()) r.empty_cause = llm_detail::empty_cause(r, tool_calls, was_null);
    return r;
}

// Server-sent events of a streamed chat completion, fed in pieces as they arrive: every
// `data: {...}` line's choices[0].delta is appended; `data: [DONE]` ends it. Lines are capped.
class SseAccumulator {
public:
    ChatReply reply;
    bool done = false;
    bool any_event = false;
    std::string error;  // a `data:` line that was not JSON, or an {"error":...} event

    void feed(std::string_view data) {
        buffer_.append(data.data(), data.size());
        std::size_t start = 0;
        for (;;) {
            const std::size_t nl = buffer_.find('\n', start);
            if (nl == std::string::npos) break;
            line(std::string_view(buffer_).substr(start, nl - start));
            start = nl + 1;
        }
        buffer_.erase(0, start);
        if (buffer_.size() > (1u << 20) && error.empty()) error = "an event line longer than 1 MiB";
    }
    void finish() {
        if (!buffer_.empty()) line(buffer_);
        buffer_.clear();
        if (reply.content.empty())
            reply.empty_cause = llm_detail::empty_cause(reply, tool_calls_, saw_null_);
    }

private:
    std::string buffer_;
    bool tool_calls_ = false, saw_null_ = false;
    simdjson::dom::parser parser_;

    void line(std::string_view l) {
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (l.substr(0, 5) != "data:") return;  // comments, event:, id:, retry:
        l.remove_prefix(5);
        while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
        if (l == "[DONE]") {
            done = true;
            return;
        }
        const simdjson::padded_string padded(l);
        simdjson::dom::element doc;
        if (parser_.parse(padded).get(doc)) {
            if (error.empty()) error = "an event that is not JSON: " + llm_detail::snippet(l, 120);
            return;
        }
        any_event = true;
        simdjson::dom::element e;
        if (!doc["error"].get(e) && error.empty()) error = "the server sent an error event: " + llm_detail::server_message(l);
        const std::string model = llm_detail::string_field(doc, "model");
        if (!model.empty()) reply.model = model;
        simdjson::dom::array choices;
        if (!doc["choices"].get(e) && !e.get_array().get(choices) && choices.size() > 0) {
            simdjson::dom::element first = choices.at(0);
            const std::string fr = llm_detail::string_field(first, "finish_reason");
            if (!fr.empty()) reply.finish_reason = fr;
            simdjson::dom::element delta;
            bool has = false, was_null = false;
            if (!first["delta"].get(delta) && delta.is_object()) llm_detail::read_message(delta, reply, has, was_null, tool_calls_);
            else if (!first["message"].get(delta) && delta.is_object()) llm_detail::read_message(delta, reply, has, was_null, tool_calls_);
            saw_null_ = saw_null_ || (was_null && reply.content.empty());
        }
        simdjson::dom::element usage;
        if (!doc["usage"].get(usage) && usage.is_object()) {
            reply.prompt_tokens = llm_detail::int_field(usage, "prompt_tokens");
            reply.completion_tokens = llm_detail::int_field(usage, "completion_tokens");
        }
    }
};

// What a server says about itself (probe()): its kind, the model, the context window, and which
// constraints on the reply it supports.
struct ServerInfo {
    std::string kind = "openai-compatible";  // "ollama", "llama.cpp", "vllm", "openai-compatible"
    std::string model;                       // as the server names it ("" when it did not say)
    int context_tokens = 0;                  // 0: the server did not say
    std::string window_source;               // "/api/show num_ctx", "/props n_ctx", "/v1/models max_model_len"
    bool grammar = false;                    // GBNF ("grammar": llama.cpp; "guided_grammar": vLLM)
    bool json_schema = false;                // response_format json_schema (or vLLM guided_json)
};

// The request members that constrain a reply to the DSL (`mode`: "auto", "grammar", "json", "off"):
//   grammar: llama.cpp's "grammar" (GBNF), vLLM's "guided_grammar";
//   json:    OpenAI-style "response_format": {"type":"json_schema", ...} whose "model" field holds the
//            DSL (Ollama's native API: "format": schema); extraction unwraps it;
//   auto:    a grammar where the server takes one, else a JSON schema where it takes one, else none.
// `gbnf`/`json_schema` come from llm/grammar.hpp (dsl_gbnf(), dsl_json_schema()); an empty one is
// not offered. `chosen` gets what was used ("grammar", "json", "off"). Throws LlmError(Config) when
// a forced mode is not supported by the server.
inline std::string constraint_fields(std::string_view mode, const ServerInfo& info, bool ollama_native, const std::string& gbnf,
                                     const std::string& json_schema, std::string* chosen = nullptr) {
    auto string_member = [](const char* key, const std::string& value) {
        std::string out = "\"" + std::string(key) + "\":";
        append_json_string(out, value);
        return out;
    };
    auto use = [&](const char* what, std::string fields) {
        if (chosen) *chosen = what;
        return fields;
    };
    const bool want_grammar = mode == "grammar" || (mode == "auto" && info.grammar && !gbnf.empty());
    const bool want_json = !want_grammar && (mode == "json" || (mode == "auto" && info.json_schema && !json_schema.empty()));
    if (mode != "auto" && mode != "grammar" && mode != "json" && mode != "off")
        throw LlmError(LlmErrorKind::Config, "--llm-constrain takes auto, grammar, json or off, not '" + llm_detail::snippet(mode, 40) + "'");
    if (want_grammar) {
        if (gbnf.empty()) throw LlmError(LlmErrorKind::Config, "no DSL grammar is available in this lamda (llm/grammar.hpp)");
        if (info.kind == "vllm") return use("grammar", string_member("guided_grammar", gbnf));
        if (info.kind == "llama.cpp" || mode == "grammar") return use("grammar", string_member("grammar", gbnf));
    }
    if (want_json) {
        if (json_schema.empty()) throw LlmError(LlmErrorKind::Config, "no DSL JSON schema is available in this lamda (llm/grammar.hpp)");
        if (ollama_native) return use("json", "\"format\":" + json_schema);
        return use("json", "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"lamda_model\",\"schema\":" +
                               json_schema + "}}");
    }
    if (chosen) *chosen = "off";
    return {};
}

// One OpenAI-compatible endpoint. chat_body() retries what may pass (connect errors, 429, 5xx;
// a timeout once, streaming) and throws LlmError for the rest, or once the retries are spent.
// Every request has a total deadline (not per read): min(timeout_s, the caller's deadline).
class LlmClient {
public:
    using Clock = std::chrono::steady_clock;

    explicit LlmClient(LlmConfig config) : config_(std::move(config)), url_(llm_detail::parse_base_url(config_.base_url)) {
        if (config_.model.empty()) throw LlmError(LlmErrorKind::Config, "no model name (--llm-model)");
        if (config_.max_tokens < 1) throw LlmError(LlmErrorKind::Config, "max_tokens must be >= 1");
        if (config_.timeout_s <= 0 || config_.connect_timeout_s <= 0)
            throw LlmError(LlmErrorKind::Config, "timeouts must be > 0");
        if (config_.max_retries < 0) throw LlmError(LlmErrorKind::Config, "max_retries must be >= 0");
        if (config_.prompt_budget_tokens() < 256)
            throw LlmError(LlmErrorKind::Config, "context_tokens (" + std::to_string(config_.context_tokens) +
                                                     ") leaves less than 256 tokens for the request after max_tokens (" +
                                                     std::to_string(config_.max_tokens) + ")");
        std::random_device rd;
        rng_.seed((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
    }

    const LlmConfig& config() const noexcept { return config_; }
    LlmConfig& mutable_config() noexcept { return config_; }
    // POST target, e.g. "http://127.0.0.1:8080/v1/chat/completions" (holds no secret).
    std::string endpoint() const { return url_.scheme + "://" + url_.authority + chat_path(); }

    // How the client waits between retries (a test hook: tests must not really wait).
    std::function<void(double seconds)> sleep = [](double s) {
        if (s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(s));
    };
    // Told before each retry: "HTTP 503 ...; retry 1 of 4 in 1.3 s".
    std::function<void(const std::string&)> on_retry;
    // While a reply streams in, at most every progress_interval_s: (characters so far, seconds).
    std::function<void(std::size_t chars, double seconds)> on_progress;
    // Asked as a streamed reply grows (content so far): true stops reading it (complete or too long).
    std::function<bool(const std::string& content)> stop_when;

    ChatReply chat(const std::vector<ChatMessage>& messages) { return chat_body(chat_request_json(config_, messages)); }

    // Sends a ready request body (chat_request_json()). `deadline`: no wait (request or backoff)
    // goes past it. A timed-out request is not resent as is: the retry streams (and keeps what
    // came before the deadline), and a timeout while streaming is not retried.
    ChatReply chat_body(const std::string& body, std::optional<Clock::time_point> deadline = std::nullopt) {
        std::string sent = body;
        bool streaming = config_.stream;
        for (int attempt = 0;; ++attempt) {
            try {
                ChatReply r = attempt_once(sent, deadline);
                r.attempts = attempt + 1;
                r.request_bytes = sent.size();
                return r;
            } catch (const LlmError& e) {
                const std::string msg = redact(e.what());
                const bool out_of_time = deadline && Clock::now() >= *deadline;
                bool retry = e.retryable() && attempt < config_.max_retries && !out_of_time;
                if (e.kind() == LlmErrorKind::Timeout) {
                    if (streaming || config_.ollama_native) retry = false;
                    else if (retry) {
                        const std::size_t at = sent.rfind("\"stream\":false");
                        if (at == std::string::npos) retry = false;
                        else {
                            sent.replace(at, 14, "\"stream\":true,\"stream_options\":{\"include_usage\":true}");
                            streaming = true;
                        }
                    }
                }
                if (!retry) {
                    const std::string what = msg.substr(msg.find(": ") + 2);
                    throw LlmError(e.kind(),
                                   what + (attempt > 0 ? " (after " + std::to_string(attempt + 1) + " attempts)" : "") +
                                       (out_of_time && e.retryable() ? " (the task's time is up)" : ""),
                                   e.status(), e.retry_after_s());
                }
                double wait = e.kind() == LlmErrorKind::Timeout ? 0.0 : backoff(attempt);
                if (e.retry_after_s()) wait = std::min(*e.retry_after_s(), config_.max_retry_after_s);
                if (deadline) wait = std::min(wait, std::max(0.0, std::chrono::duration<double>(*deadline - Clock::now()).count()));
                if (on_retry)
                    on_retry(msg + "; retry " + std::to_string(attempt + 1) + " of " + std::to_string(config_.max_retries) +
                             (e.kind() == LlmErrorKind::Timeout ? " streaming" : "") + " in " + llm_detail::num(wait, 2) + " s");
                sleep(wait);
            }
        }
    }

    // Asks the server what it is and what its window is (Ollama /api/show, llama.cpp /props,
    // vLLM /v1/models); never throws for an answer it does not understand: the fields stay unknown.
    ServerInfo probe() {
        ServerInfo info;
        std::string body;
        int status = 0;
        // llama.cpp's server: GET /props
        if (get("/props", body, status) && status == 200) {
            simdjson::dom::parser p;
            simdjson::dom::element doc, e;
            const simdjson::padded_string padded(body);
            if (!p.parse(padded).get(doc) && doc.is_object()) {
                std::int64_t n = -1;
                if (!doc["default_generation_settings"].get(e)) n = llm_detail::int_field(e, "n_ctx");
                if (n < 0) n = llm_detail::int_field(doc, "n_ctx");
                if (n > 0 || !doc["default_generation_settings"].get(e)) {
                    info.kind = "llama.cpp";
                    info.grammar = info.json_schema = true;
                    if (n > 0) {
                        info.context_tokens = static_cast<int>(std::min<std::int64_t>(n, 1 << 26));
                        info.window_source = "/props n_ctx";
                    }
                    info.model = llm_detail::string_field(doc, "model_alias");
                    if (info.model.empty()) info.model = llm_detail::string_field(doc, "model_path");
                    return info;
                }
            }
        }
        // Ollama: POST /api/show {"model": ...}
        {
            JsonWriter j;
            j.begin_object().field("model", std::string_view(config_.model)).end_object();
            if (post_root("/api/show", j.str(), body, status) && status == 200) {
                simdjson::dom::parser p;
                simdjson::dom::element doc, e;
                const simdjson::padded_string padded(body);
                if (!p.parse(padded).get(doc) && doc.is_object() &&
                    (!doc["model_info"].get(e) || !doc["parameters"].get(e) || !doc["modelfile"].get(e))) {
                    info.kind = "ollama";
                    info.model = config_.model;
                    info.json_schema = true;  // Ollama's "format" takes a JSON schema
                    const std::string params = llm_detail::string_field(doc, "parameters");
                    const std::size_t at = params.find("num_ctx");
                    if (at != std::string::npos) {
                        const long long n = std::atoll(params.c_str() + at + 7);
                        if (n > 0 && n < (1 << 26)) {
                            info.context_tokens = static_cast<int>(n);
                            info.window_source = "/api/show parameters num_ctx";
                        }
                    }
                    if (info.context_tokens == 0) {
                        info.context_tokens = 2048;  // Ollama's own default when the model sets none
                        info.window_source = "Ollama's default num_ctx (not set by the model)";
                    }
                    return info;
                }
            }
        }
        // vLLM (and OpenAI-style servers): GET {prefix}/models
        if (get(url_.prefix + "/models", body, status) && status == 200) {
            simdjson::dom::parser p;
            simdjson::dom::element doc, e;
            simdjson::dom::array data;
            const simdjson::padded_string padded(body);
            if (!p.parse(padded).get(doc) && !doc["data"].get(e) && !e.get_array().get(data)) {
                info.json_schema = true;
                for (simdjson::dom::element m : data) {
                    const std::string id = llm_detail::string_field(m, "id");
                    const std::int64_t n = llm_detail::int_field(m, "max_model_len");
                    if (n > 0) {
                        info.kind = "vllm";
                        info.grammar = true;
                    }
                    if (id == config_.model || info.model.empty()) {
                        info.model = id;
                        if (n > 0) {
                            info.context_tokens = static_cast<int>(std::min<std::int64_t>(n, 1 << 26));
                            info.window_source = "/v1/models max_model_len";
                        }
                    }
                }
            }
        }
        return info;
    }

    std::string redact(std::string_view text) const { return redact_secret(text, config_.api_key); }

private:
    LlmConfig config_;
    detail::HttpUrl url_;
    std::mt19937_64 rng_;

    std::string chat_path() const { return config_.ollama_native ? std::string("/api/chat") : url_.prefix + "/chat/completions"; }

    double backoff(int retry) {
        const double base = std::min(config_.backoff_cap_s, config_.backoff_base_s * std::pow(2.0, retry));
        return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
    }

    [[noreturn]] void fail(LlmErrorKind kind, const std::string& message, int status = 0,
                           std::optional<double> retry = std::nullopt) const {
        throw LlmError(kind, redact(message), status, retry);
    }

    static void set_timeout(httplib::ClientImpl& cli, double s, void (httplib::ClientImpl::*setter)(time_t, time_t)) {
        s = std::max(0.001, s);
        const auto sec = static_cast<time_t>(s);
        (cli.*setter)(sec, static_cast<time_t>((s - static_cast<double>(sec)) * 1e6));
    }

    // A client for the base URL reading through lamda's own stream (detail/http_client.hpp):
    // every byte read is counted and offered to `admit`, every wait ends by `deadline`.
    std::unique_ptr<httplib::ClientImpl> make_client(Clock::time_point deadline,
                                                     std::function<bool(std::uint64_t)> admit) const {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (url_.scheme == "https")
            return std::make_unique<detail::CountingClient<httplib::SSLClient>>(url_.host, url_.port, deadline, std::move(admit));
#endif
        return std::make_unique<detail::CountingClient<httplib::ClientImpl>>(url_.host, url_.port, deadline, std::move(admit));
    }
    // What a reply's status line and headers may take before the response handler sees them
    // (httplib has no cap of its own): the header cap, plus the status line and what one read
    // brings of the body.
    std::uint64_t head_read_cap() const { return static_cast<std::uint64_t>(config_.max_header_bytes) + 16384; }

    // A short probe request (GET or POST at the server's root); false when nothing came back.
    bool send_small(const std::string& method, const std::string& path, const std::string& body_in, std::string& body,
                    int& status) {
        const double t = std::min(config_.timeout_s, 10.0);
        const Clock::time_point deadline =
            Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
        bool head_done = false;
        const std::uint64_t head_cap = head_read_cap();
        const std::unique_ptr<httplib::ClientImpl> client =
            make_client(deadline, [&head_done, head_cap](std::uint64_t total) { return head_done || total <= head_cap; });
        httplib::ClientImpl& cli = *client;
        if (!cli.is_valid()) return false;
        set_timeout(cli, std::min(config_.connect_timeout_s, t), &httplib::ClientImpl::set_connection_timeout);
        set_timeout(cli, t, &httplib::ClientImpl::set_read_timeout);
        cli.set_keep_alive(false);
        httplib::Request req;
        req.method = method;
        req.path = path;
        req.headers = {{"Accept", "application/json"}};
        if (!body_in.empty()) req.headers.emplace("Content-Type", "application/json");
        if (!config_.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + config_.api_key);
        req.body = body_in;
        body.clear();
        bool over = false;
        req.response_handler = [&](const httplib::Response& r) {
            head_done = true;
            return r.headers.size() <= config_.max_headers;
        };
        req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
            if (body.size() + n > (1u << 20)) {
                over = true;
                return false;
            }
            body.append(data, n);
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        const bool ok = run_with_deadline(cli, req, res, err, deadline);
        status = ok ? res.status : 0;
        return ok && !over;
    }
    bool get(const std::string& path, std::string& body, int& status) { return send_small("GET", path, "", body, status); }
    bool post_root(const std::string& path, const std::string& in, std::string& body, int& status) {
        return send_small("POST", path, in, body, status);
    }

    // cli.send() with a watchdog that stops the client at `deadline`: a server that trickles a
    // byte at a time (headers or body) cannot hold a request past it. Returns send()'s result;
    // `timed_out` says whether the watchdog fired.
    bool run_with_deadline(httplib::ClientImpl& cli, httplib::Request& req, httplib::Response& res, httplib::Error& err,
                           Clock::time_point deadline, bool* timed_out = nullptr) {
        std::mutex m;
        std::condition_variable cv;
        bool finished = false, fired = false;
        std::thread watchdog([&] {
            std::unique_lock<std::mutex> lock(m);
            if (!cv.wait_until(lock, deadline, [&] { return finished; })) {
                fired = true;
                cli.stop();
            }
        });
        bool ok = false;
        try {
            const detail::BlockSigpipe no_sigpipe;  // https: OpenSSL writes with write()
            ok = cli.send(req, res, err);
        } catch (...) {
            {
                std::lock_guard<std::mutex> lock(m);
                finished = true;
            }
            cv.notify_all();
            watchdog.join();
            throw;
        }
        {
            std::lock_guard<std::mutex> lock(m);
            finished = true;
        }
        cv.notify_all();
        watchdog.join();
        if (timed_out) *timed_out = fired;
        return ok;
    }

    ChatReply attempt_once(const std::string& body, std::optional<Clock::time_point> outer_deadline) {
        using llm_detail::snippet;
        const auto t0 = Clock::now();
        Clock::time_point deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config_.timeout_s));
        if (outer_deadline && *outer_deadline < deadline) deadline = *outer_deadline;
        const double budget_s = std::chrono::duration<double>(deadline - t0).count();
        if (budget_s <= 0) fail(LlmErrorKind::Timeout, "no time left for a request (the task's max_seconds)");
        // Set by the response handler; until then every byte read is status line and headers.
        bool head_done = false, headers_over = false;
        const std::uint64_t head_cap = head_read_cap();
        const std::unique_ptr<httplib::ClientImpl> client =
            make_client(deadline, [&head_done, &headers_over, head_cap](std::uint64_t total) {
                if (head_done || total <= head_cap) return true;
                headers_over = true;
                return false;
            });
        httplib::ClientImpl& cli = *client;
        if (!cli.is_valid()) fail(LlmErrorKind::Config, "cannot use the URL '" + config_.base_url + "'");
        set_timeout(cli, std::min(config_.connect_timeout_s, budget_s), &httplib::ClientImpl::set_connection_timeout);
        set_timeout(cli, budget_s, &httplib::ClientImpl::set_read_timeout);
        set_timeout(cli, budget_s, &httplib::ClientImpl::set_write_timeout);
        cli.set_keep_alive(false);
        const bool want_stream = body.find("\"stream\":true") != std::string::npos;
        httplib::Request req;
        req.method = "POST";
        req.path = chat_path();
        req.headers = {{"Content-Type", "application/json"},
                       {"Accept", want_stream ? "text/event-stream" : "application/json, text/event-stream"}};
        if (!config_.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + config_.api_key);
        req.body = body;
        std::string got;
        bool too_large = false, sse = false, stopped = false;
        std::optional<std::uint64_t> declared;
        const std::size_t cap = config_.max_reply_bytes;
        SseAccumulator acc;
        auto last_progress = t0;
        std::size_t checked_at = 0;
        req.response_handler = [&](const httplib::Response& r) {
            head_done = true;
            std::size_t bytes = 0;
            for (const auto& h : r.headers) bytes += h.first.size() + h.second.size() + 4;
            if (r.headers.size() > config_.max_headers || bytes > config_.max_header_bytes) {
                headers_over = true;
                return false;
            }
            if (r.has_header("Content-Length")) {
                try {
                    declared = std::stoull(r.get_header_value("Content-Length"));
                } catch (const std::exception&) {
                }
            }
            sse = llm_detail::starts_with(llm_detail::lower(r.get_header_value("Content-Type")), "text/event-stream") &&
                  r.status >= 200 && r.status < 300;
            if (declared && *declared > cap) {
                too_large = true;
                return false;  // do not read what will not be kept
            }
            return true;
        };
        req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
            if (got.size() + n > cap) {
                too_large = true;
                return false;
            }
            got.append(data, n);
            if (sse) {
                acc.feed(std::string_view(data, n));
                const auto now = Clock::now();
                if (on_progress && std::chrono::duration<double>(now - last_progress).count() >= config_.progress_interval_s) {
                    last_progress = now;
                    on_progress(acc.reply.content.size() + acc.reply.reasoning.size(), std::chrono::duration<double>(now - t0).count());
                }
                if (acc.done) return true;
                // Asked when the content grew by 512 bytes or a fence may have closed: never a
                // rescan per tiny event.
                const std::size_t size = acc.reply.content.size();
                if (stop_when && size > 0 && size > checked_at &&
                    (size >= checked_at + 512 || acc.reply.content.find('`', checked_at) != std::string::npos)) {
                    checked_at = size;
                    if (stop_when(acc.reply.content)) {
                        stopped = true;
                        return false;
                    }
                }
            }
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        bool timed_out = false;
        const bool ok = run_with_deadline(cli, req, res, err, deadline, &timed_out);
        const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        const std::string where = "POST " + endpoint();
        if (headers_over)
            fail(LlmErrorKind::TooLarge, "the reply's headers are over the cap (" + std::to_string(config_.max_headers) + " headers, " +
                                             std::to_string(config_.max_header_bytes) + " bytes) (" + where + ")");
        if (too_large)
            fail(LlmErrorKind::TooLarge, "the reply is larger than the " + std::to_string(cap) + "-byte cap" +
                                             (declared ? " (Content-Length " + std::to_string(*declared) + ")" : std::string()) +
                                             " (" + where + ")", ok ? res.status : 0);
        // A streamed reply that lamda stopped, or that the deadline cut: keep what came.
        if (sse && (stopped || (timed_out && !acc.reply.content.empty()))) {
            acc.finish();
            ChatReply r = acc.reply;
            r.streamed = true;
            r.stopped_early = stopped;
            if (!stopped) r.finish_reason = "deadline";
            else if (r.finish_reason.empty()) r.finish_reason = "stopped";
            r.seconds = seconds;
            return r;
        }
        if (!ok) {
            const std::string why = httplib::to_string(err);
            if (timed_out || seconds >= 0.9 * budget_s)
                fail(LlmErrorKind::Timeout, "no complete reply within " + llm_detail::num(budget_s) + " s (a total deadline per request; " +
                                                std::to_string(got.size()) + " bytes came) (" + where + ")");
            switch (err) {
            case httplib::Error::Read:
                if (declared && got.size() < *declared)
                    fail(LlmErrorKind::Truncated, "the reply ended after " + std::to_string(got.size()) + " of its " +
                                                      std::to_string(*declared) + " bytes (" + where + ")");
                if (!got.empty())
                    fail(LlmErrorKind::Truncated, "the connection broke after " + std::to_string(got.size()) +
                                                      " bytes of the reply (" + where + ")");
                fail(LlmErrorKind::Connect, "the connection closed before a reply (" + where + ")");
            case httplib::Error::ConnectionTimeout:
                fail(LlmErrorKind::Connect, "no connection within " + llm_detail::num(config_.connect_timeout_s) + " s (" + where + ")");
            case httplib::Error::SSLServerVerification:
            case httplib::Error::SSLLoadingCerts:
                fail(LlmErrorKind::Config, "TLS: " + why + " (" + where + ")");
            case httplib::Error::Connection:
                fail(LlmErrorKind::Connect, "cannot connect (refused, unreachable or unknown host; is the server running?) (" +
                                                where + ")");
            default:
                fail(LlmErrorKind::Connect, "cannot reach the server: " + why + " (" + where + ")");
            }
        }
        const int status = res.status;
        if (status == 429)
            fail(LlmErrorKind::RateLimited, "HTTP 429 (rate limited): " + llm_detail::server_message(got), status,
                 llm_detail::retry_after(res));
        if (status >= 500)
            fail(LlmErrorKind::Server, "HTTP " + std::to_string(status) + ": " + llm_detail::server_message(got), status,
                 llm_detail::retry_after(res));
        if (status < 200 || status >= 300) {
            const std::string message = llm_detail::server_message(got);
            const std::string low = llm_detail::lower(got);
            if (status == 400 && (low.find("context_length_exceeded") != std::string::npos ||
                                  low.find("maximum context length") != std::string::npos ||
                                  low.find("exceeds the available context size") != std::string::npos ||
                                  low.find("context window") != std::string::npos))
                fail(LlmErrorKind::ContextLength, "HTTP 400: " + message, status);
            std::string hint;
            if (status == 401 || status == 403) hint = " (check LAMDA_API_KEY or OPENAI_API_KEY)";
            if (status == 404) hint = " (check --llm-url, which ends before /chat/completions, e.g. .../v1, and --llm-model)";
            fail(LlmErrorKind::Client, "HTTP " + std::to_string(status) + ": " + message + hint, status);
        }
        if (sse) {
            acc.finish();
            if (!acc.error.empty() && acc.reply.content.empty()) fail(LlmErrorKind::BadJson, acc.error + " (" + where + ")", status);
            if (!acc.any_event) fail(LlmErrorKind::Truncated, "an event stream with no events (" + where + ")", status);
            ChatReply r = acc.reply;
            r.streamed = true;
            r.seconds = seconds;
            return r;
        }
        const std::string type = llm_detail::lower(res.get_header_value("Content-Type"));
        const bool ndjson = config_.ollama_native && llm_detail::starts_with(type, "application/x-ndjson");
        if (!llm_detail::starts_with(type, "application/json") && !ndjson)
            fail(LlmErrorKind::ContentType, "the reply is '" + (type.empty() ? std::string("(no content type)") : snippet(type, 60)) +
                                                "', not application/json: " + snippet(got, 120), status);
        if (declared && got.size() < *declared)
            fail(LlmErrorKind::Truncated, "the reply ended after " + std::to_string(got.size()) + " of its " +
                                              std::to_string(*declared) + " bytes", status);
        try {
            ChatReply r = parse_chat_reply(got);
            r.seconds = seconds;
            return r;
        } catch (const LlmError& e) {
            const std::string msg = e.what();
            fail(e.kind(), msg.substr(msg.find(": ") + 2), status);
        }
    }
};

// The numbers in a context_length_exceeded message: the window and what the request needed, e.g.
// "maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the
// messages, 1000 in the completion)" (OpenAI, vLLM) or "request (5000 tokens) exceeds the
// available context size (4096 tokens)" (llama.cpp). Zero where a number is not there.
struct ContextNumbers {
    int window = 0;          // the model's context length
    int requested = 0;       // prompt + completion, or the prompt alone
    int prompt_tokens = 0;   // "N in the messages" / "request (N tokens)"
};

inline ContextNumbers parse_context_error(std::string_view message) {
    ContextNumbers n;
    const std::string low = llm_detail::lower(message);
    auto number_after = [&](std::string_view key) -> int {
        const std::size_t at = low.find(key);
        if (at == std::string::npos) return 0;
        std::size_t i = at + key.size();
        while (i < low.size() && !std::isdigit(static_cast<unsigned char>(low[i])) && i < at + key.size() + 24) ++i;
        long long v = 0;
        std::size_t digits = 0;
        while (i < low.size() && std::isdigit(static_cast<unsigned char>(low[i])) && digits < 9) {
            v = v * 10 + (low[i] - '0');
            ++i;
            ++digits;
        }
        return digits ? static_cast<int>(v) : 0;
    };
    n.window = number_after("maximum context length is");
    if (!n.window) n.window = number_after("context size (");
    if (!n.window) n.window = number_after("context window of");
    n.requested = number_after("you requested");
    if (!n.requested) n.requested = number_after("request (");
    const std::size_t msgs = low.find(" in the messages");
    if (msgs != std::string::npos) {
        std::size_t b = msgs;
        while (b > 0 && std::isdigit(static_cast<unsigned char>(low[b - 1]))) --b;
        if (b < msgs && msgs - b <= 9) n.prompt_tokens = std::atoi(low.c_str() + b);
    }
    if (!n.prompt_tokens) n.prompt_tokens = number_after("request (");
    return n;
}

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_CLIENT_HPP
