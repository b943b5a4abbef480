// lamda/llm/llm.hpp: the LLM generator -- a Proposer that asks a language model for candidates over
// the OpenAI-compatible chat-completions protocol (OpenAI, Ollama, vLLM, llama.cpp's server,
// LM Studio), feeds the loop's verdicts back to it, and repairs what it gets wrong:
//
//   lamda::LlmConfig config;                       // base_url, model, temperature, ...
//   config.base_url = "http://127.0.0.1:8080/v1";
//   config.model = "qwen2.5-coder-7b";
//   config.api_key = lamda::llm_api_key_from_env(); // LAMDA_API_KEY or OPENAI_API_KEY
//   lamda::LlmProposer proposer(config);
//   lamda::run_generation(task, proposer, setup);   // search/loop.hpp
//
// Parts, each usable on its own:
//   - LlmClient: POST {base_url}/chat/completions with retries (connect errors, timeouts, 429
//     with Retry-After, 5xx: exponential backoff with jitter); every other fault is an LlmError
//     with a kind (4xx with the server's message, a body over the size cap, invalid or
//     truncated JSON, no `choices`, a wrong content type). The API key goes into the
//     Authorization header only; redact_secret() keeps it out of every message.
//   - extract_dsl_candidates(): the models in a reply (```lamda fences, bare fences, or bare
//     DSL text); chatter is ignored.
//   - auto_fix_dsl(): mechanical fixes with one obvious answer (an `in=` that disagrees with its
//     input; an fc on a non-1x1 input gets a flatten).
//   - LlmProposer: the system message (the DSL reference, docs/dsl.md, embedded; the op catalog;
//     the output rules), a task message (constraints, device, what costs most here) and the
//     history inside a token budget (the best k candidates in full, recent ones as one line
//     each, older ones dropped), repair turns for invalid candidates.
//
// Compiled only with LAMDA_WITH_LLM defined (the build defines it when cpp-httplib is found,
// next to the latency model); needs simdjson and cpp-httplib (link -lcpp-httplib on Debian).
#ifndef LAMDA_LLM_LLM_HPP
#define LAMDA_LLM_LLM_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/llm.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../exception.hpp"
#include "../core/analysis.hpp"
#include "../exec/device.hpp"
#include "../core/diagnostics.hpp"
#include "../dsl/parser.hpp"
#include "../core/ir.hpp"
#include "../detail/json_write.hpp"
#include "../latency/model.hpp"
#include "../search/proposers.hpp"
#include "../search/report.hpp"
#include "../search/types.hpp"

// After lamda's headers: <httplib.h> pulls in <resolv.h>, whose `_res` macro breaks Eigen
// (latency/model.hpp) when it comes first.
#include <httplib.h>
#include <simdjson.h>

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

    // The request (its whole JSON body, estimated as bytes / 4) stays within this.
    int prompt_budget_tokens() const noexcept { return context_tokens - max_tokens; }
};

// Tokens estimated from characters (about 4 per token for English and code).
inline std::size_t estimate_tokens(std::size_t chars) noexcept { return (chars + 3) / 4; }

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
    std::string content;        // choices[0].message.content
    std::string model;          // the model the server says answered ("" if it did not say)
    std::string finish_reason;  // "stop", "length", ... ("" if absent)
    double seconds = 0;         // the successful attempt's round trip
    int attempts = 1;
    std::size_t request_bytes = 0;
};

// The request body: {"model","messages","temperature","max_tokens","stream":false}.
inline std::string chat_request_json(const LlmConfig& c, const std::vector<ChatMessage>& messages) {
    JsonWriter j;
    j.begin_object().field("model", std::string_view(c.model)).key("messages").begin_array();
    for (const ChatMessage& m : messages)
        j.begin_object()
            .field("role", std::string_view(m.role))
            .field("content", std::string_view(valid_utf8(m.content)))
            .end_object();
    j.end_array().field("temperature", c.temperature).field("max_tokens", c.max_tokens).field("stream", false);
    j.end_object();
    return j.str();
}

namespace llm_detail {

inline std::string trim(std::string_view s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return std::string(s.substr(a, b - a));
}

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

inline std::string num(double v, int digits = 3) {
    std::ostringstream o;
    o.precision(digits);
    o << v;
    return o.str();
}

inline std::string fixed2(double v) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(2);
    o << v;
    return o.str();
}

inline std::string percent(double share) { return std::to_string(static_cast<int>(std::lround(share * 100))) + "%"; }

// scheme://authority[/prefix] -> its parts; throws LlmError(Config).
struct BaseUrl {
    std::string scheme, authority, prefix;  // prefix: "" or "/v1" (no trailing slash)
};

inline BaseUrl parse_base_url(const std::string& url) {
    BaseUrl u;
    const std::size_t colon = url.find("://");
    if (colon == std::string::npos)
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "' is not a URL (expected http://HOST:PORT/v1 or https://...)");
    u.scheme = lower(url.substr(0, colon));
    if (u.scheme != "http" && u.scheme != "https")
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': the scheme must be http or https");
#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    if (u.scheme == "https")
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': this lamda's cpp-httplib has no OpenSSL support, so "
                                             "https is not available (use http, or rebuild with CPPHTTPLIB_OPENSSL_SUPPORT)");
#endif
    const std::string rest = url.substr(colon + 3);
    const std::size_t slash = rest.find('/');
    u.authority = rest.substr(0, slash);
    if (u.authority.empty() || u.authority.find_first_of(" @?#") != std::string::npos)
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': expected a host (and port) after " + u.scheme + "://");
    if (slash != std::string::npos) u.prefix = rest.substr(slash);
    while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
    if (u.prefix.find_first_of("?# ") != std::string::npos)
        throw LlmError(LlmErrorKind::Config, "'" + snippet(url) + "': the base URL takes no query or fragment");
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

// Parses a chat-completions reply body; throws LlmError (BadJson, Truncated, NoChoices).
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
    std::string_view s;
    simdjson::dom::element e;
    if (!doc["model"].get(e) && !e.get_string().get(s)) r.model = valid_utf8(s);
    simdjson::dom::array choices;
    if (doc["choices"].get(e) || e.get_array().get(choices) || choices.size() == 0) {
        std::string why = "the reply has no choices[0]";
        simdjson::dom::element err_e;
        if (!doc["error"].get(err_e)) why += " (server error: " + llm_detail::server_message(body) + ")";
        throw LlmError(LlmErrorKind::NoChoices, why + ": " + snippet(body, 120));
    }
    simdjson::dom::element first = choices.at(0);
    if (!first["finish_reason"].get(e) && !e.get_string().get(s)) r.finish_reason = std::string(s);
    if (first["message"]["content"].get(e) || e.get_string().get(s))
        throw LlmError(LlmErrorKind::NoChoices, "choices[0].message.content is missing or not a string: " + snippet(body, 120));
    r.content = valid_utf8(s);
    return r;
}

// One OpenAI-compatible endpoint. chat() retries what may pass (connect errors, timeouts, 429,
// 5xx) and throws LlmError for the rest, or once the retries are spent.
class LlmClient {
public:
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
    // POST target, e.g. "http://127.0.0.1:8080/v1/chat/completions" (holds no secret).
    std::string endpoint() const { return url_.scheme + "://" + url_.authority + url_.prefix + "/chat/completions"; }

    // How the client waits between retries (a test hook: tests must not really wait).
    std::function<void(double seconds)> sleep = [](double s) {
        if (s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(s));
    };
    // Told before each retry: "HTTP 503 ...; retry 1 of 4 in 1.3 s".
    std::function<void(const std::string&)> on_retry;

    ChatReply chat(const std::vector<ChatMessage>& messages) { return chat_body(chat_request_json(config_, messages)); }

    // Sends a ready request body (chat_request_json()).
    ChatReply chat_body(const std::string& body) {
        for (int attempt = 0;; ++attempt) {
            try {
                ChatReply r = attempt_once(body);
                r.attempts = attempt + 1;
                r.request_bytes = body.size();
                return r;
            } catch (const LlmError& e) {
                const std::string msg = redact(e.what());
                if (!e.retryable() || attempt >= config_.max_retries) {
                    const std::string what = msg.substr(msg.find(": ") + 2);
                    throw LlmError(e.kind(),
                                   what + (attempt > 0 ? " (after " + std::to_string(attempt + 1) + " attempts)" : ""),
                                   e.status(), e.retry_after_s());
                }
                double wait = backoff(attempt);
                if (e.retry_after_s()) wait = std::min(*e.retry_after_s(), config_.max_retry_after_s);
                if (on_retry)
                    on_retry(msg + "; retry " + std::to_string(attempt + 1) + " of " + std::to_string(config_.max_retries) +
                             " in " + llm_detail::num(wait, 2) + " s");
                sleep(wait);
            }
        }
    }

    std::string redact(std::string_view text) const { return redact_secret(text, config_.api_key); }

private:
    LlmConfig config_;
    llm_detail::BaseUrl url_;
    std::mt19937_64 rng_;

    double backoff(int retry) {
        const double base = std::min(config_.backoff_cap_s, config_.backoff_base_s * std::pow(2.0, retry));
        return base * std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
    }

    [[noreturn]] void fail(LlmErrorKind kind, const std::string& message, int status = 0,
                           std::optional<double> retry = std::nullopt) const {
        throw LlmError(kind, redact(message), status, retry);
    }

    static void set_timeout(httplib::Client& cli, double s, void (httplib::Client::*setter)(time_t, time_t)) {
        const auto sec = static_cast<time_t>(s);
        (cli.*setter)(sec, static_cast<time_t>((s - static_cast<double>(sec)) * 1e6));
    }

    ChatReply attempt_once(const std::string& body) {
        using llm_detail::snippet;
        httplib::Client cli(url_.scheme + "://" + url_.authority);
        if (!cli.is_valid()) fail(LlmErrorKind::Config, "cannot use the URL '" + config_.base_url + "'");
        set_timeout(cli, config_.connect_timeout_s, &httplib::Client::set_connection_timeout);
        set_timeout(cli, config_.timeout_s, &httplib::Client::set_read_timeout);
        set_timeout(cli, config_.timeout_s, &httplib::Client::set_write_timeout);
        cli.set_keep_alive(false);
        httplib::Request req;
        req.method = "POST";
        req.path = url_.prefix + "/chat/completions";
        req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
        if (!config_.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + config_.api_key);
        req.body = body;
        std::string got;
        bool too_large = false;
        std::optional<std::uint64_t> declared;
        const std::size_t cap = config_.max_reply_bytes;
        req.response_handler = [&](const httplib::Response& r) {
            if (r.has_header("Content-Length")) {
                try {
                    declared = std::stoull(r.get_header_value("Content-Length"));
                } catch (const std::exception&) {
                }
            }
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
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        const auto t0 = std::chrono::steady_clock::now();
        const bool ok = cli.send(req, res, err);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const std::string where = "POST " + endpoint();
        if (too_large)
            fail(LlmErrorKind::TooLarge, "the reply is larger than the " + std::to_string(cap) + "-byte cap" +
                                             (declared ? " (Content-Length " + std::to_string(*declared) + ")" : std::string()) +
                                             " (" + where + ")", ok ? res.status : 0);
        if (!ok) {
            const std::string why = httplib::to_string(err);
            switch (err) {
            case httplib::Error::Read:
                if (seconds >= 0.9 * config_.timeout_s)
                    fail(LlmErrorKind::Timeout, "no reply within " + llm_detail::num(config_.timeout_s) + " s (" + where + ")");
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
            std::string hint;
            if (status == 401 || status == 403) hint = " (check LAMDA_API_KEY or OPENAI_API_KEY)";
            if (status == 404) hint = " (check --llm-url, which ends before /chat/completions, e.g. .../v1, and --llm-model)";
            fail(LlmErrorKind::Client, "HTTP " + std::to_string(status) + ": " + llm_detail::server_message(got) + hint, status);
        }
        const std::string type = llm_detail::lower(res.get_header_value("Content-Type"));
        if (!llm_detail::starts_with(type, "application/json"))
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

// A DSL line: a layer, a `model` line or a comment.
inline bool is_dsl_line(std::string_view line) {
    const std::string t = trim(line);
    return !t.empty() && (t[0] == '#' || is_model_line(t) || !layer_op(t).empty());
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

inline std::string strip_thinking(std::string_view reply) {
    std::string s(reply);
    for (;;) {
        const std::size_t a = s.find("<think>");
        if (a == std::string::npos) break;
        const std::size_t b = s.find("</think>", a);
        s.erase(a, b == std::string::npos ? std::string::npos : b + 8 - a);
    }
    return s;
}

}  // namespace llm_detail

// The DSL models in an LLM reply, in order: the contents of ```lamda fences (and of other
// fences whose text is DSL), or, when the reply has no fence, the runs of DSL lines in bare
// text. Several models per reply are allowed (also several in one fence); chatter and
// <think> sections are ignored; repeats within the reply are dropped. At most `max_models`.
inline std::vector<std::string> extract_dsl_candidates(std::string_view reply, std::size_t max_models = 8) {
    using namespace llm_detail;
    const std::vector<std::string> lines = split_lines(strip_thinking(reply));
    std::vector<std::string> found;
    bool any_fence = false;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string t = trim(lines[i]);
        if (!starts_with(t, "```") && !starts_with(t, "~~~")) continue;
        any_fence = true;
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
        if (dsl) split_models(body, tag == "lamda", found);
    }
    if (!any_fence) {
        std::vector<std::string> run;
        auto flush = [&] {
            split_models(run, false, found);
            run.clear();
        };
        for (const std::string& line : lines) {
            if (is_dsl_line(line) || (trim(line).empty() && !run.empty())) {
                run.push_back(line);
            } else {
                flush();
            }
        }
        flush();
    }
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

// ---------------------------------------------------------------------------------------------
// Mechanical repairs
// ---------------------------------------------------------------------------------------------

struct AutoFix {
    std::string dsl;                 // the text after the fixes (the input when there were none)
    std::vector<std::string> fixes;  // what was changed, one line each ("line 7: in=32 -> in=16 on 'b1_pw' ...")
};

namespace llm_detail {

// "'name'" -> "name" from the first quoted word after `after` in `s`.
inline std::string quoted_after(std::string_view s, std::string_view after) {
    std::size_t at = s.find(after);
    if (at == std::string_view::npos) return {};
    at = s.find('\'', at + after.size());
    if (at == std::string_view::npos) return {};
    const std::size_t end = s.find('\'', at + 1);
    if (end == std::string_view::npos) return {};
    return std::string(s.substr(at + 1, end - at - 1));
}

inline bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One fix for one diagnostic, applied to `lines`; "" when this diagnostic has no obvious fix.
inline std::string fix_one(const Diagnostic& d, std::vector<std::string>& lines, const std::string& whole) {
    if (d.line < 1 || static_cast<std::size_t>(d.line) > lines.size()) return {};
    std::string& line = lines[static_cast<std::size_t>(d.line) - 1];
    const std::size_t hash_at = line.find('#');
    const std::string code = line.substr(0, hash_at);
    const std::string comment = hash_at == std::string::npos ? std::string() : line.substr(hash_at);
    // "expected 32 input channels from 'x', got 16" / hint "set in=16 on 'name' ...": correct in=.
    if (starts_with(d.message, "expected ") && d.message.find(" input channels from '") != std::string::npos) {
        const std::size_t got_at = d.message.rfind(", got ");
        const std::string expected = d.message.substr(9, d.message.find(' ', 9) - 9);
        const std::string actual = got_at == std::string::npos ? std::string() : trim(d.message.substr(got_at + 6));
        if (!all_digits(expected) || !all_digits(actual)) return {};
        const std::string token = "in=" + expected;
        std::size_t at = 0;
        while ((at = code.find(token, at)) != std::string::npos) {
            const bool starts = at == 0 || std::isspace(static_cast<unsigned char>(code[at - 1]));
            const std::size_t after = at + token.size();
            const bool ends = after == code.size() || std::isspace(static_cast<unsigned char>(code[after]));
            if (starts && ends) break;
            at = after;
        }
        if (at == std::string::npos) return {};
        line = code.substr(0, at) + "in=" + actual + code.substr(at + token.size()) + comment;
        return "line " + std::to_string(d.line) + ": in=" + expected + " -> in=" + actual + " on '" +
               quoted_after(d.hint, " on ") + "' (its input '" + quoted_after(d.message, " from ") + "' has " + actual +
               " channels)";
    }
    // "fc 'logits' needs a 1x1xC input, got 7x7x32 from 'x'": a flatten in between.
    if (starts_with(d.message, "fc '") && d.message.find(" needs a 1x1xC input, got ") != std::string::npos) {
        const std::string fc = quoted_after(d.message, "fc");
        const std::string src = quoted_after(d.message, " from ");
        if (fc.empty() || src.empty()) return {};
        std::string rest = code, name_part;
        const std::size_t colon = code.find(':');
        const std::size_t eq = code.find('=');
        if (colon != std::string::npos && (eq == std::string::npos || colon < eq)) {
            name_part = trim(code.substr(0, colon)) + ": ";
            rest = code.substr(colon + 1);
        }
        std::istringstream words(rest);
        std::vector<std::string> tokens;
        for (std::string w; words >> w;) tokens.push_back(w);
        if (tokens.empty() || tokens[0] != "fc") return {};
        std::string flat = fc + "_flatten";
        for (int n = 2; whole.find(flat + ":") != std::string::npos; ++n) flat = fc + "_flatten" + std::to_string(n);
        bool explicit_input = false;
        for (std::size_t k = 1; k < tokens.size() && tokens[k].find('=') == std::string::npos; ++k) {
            std::string w = tokens[k];
            const bool comma = !w.empty() && w.back() == ',';
            if (comma) w.pop_back();
            if (w == src) {
                tokens[k] = flat + (comma ? "," : "");
                explicit_input = true;
            }
        }
        std::string rebuilt = name_part;
        for (std::size_t k = 0; k < tokens.size(); ++k) rebuilt += (k ? " " : "") + tokens[k];
        const std::string indent = line.substr(0, line.find_first_not_of(" \t") == std::string::npos ? 0 : line.find_first_not_of(" \t"));
        line = indent + rebuilt + (comment.empty() ? "" : "  " + comment);
        lines.insert(lines.begin() + (d.line - 1), indent + flat + ": flatten " + src);
        (void)explicit_input;
        return "line " + std::to_string(d.line) + ": inserted '" + flat + ": flatten " + src + "' before fc '" + fc +
               "' (an fc needs a 1x1xC input)";
    }
    return {};
}

}  // namespace llm_detail

// Applies the fixes that have one obvious answer, one at a time, re-checking after each:
//   - an `in=N` that disagrees with the channels its input has is corrected;
//   - an fc whose input is not 1x1 gets a `flatten` in between.
// Whatever else is wrong stays for the LLM (a repair turn).
inline AutoFix auto_fix_dsl(std::string_view dsl, int max_fixes = 8) {
    AutoFix r{std::string(dsl), {}};
    for (int round = 0; round < max_fixes; ++round) {
        const ParseResult parsed = parse_dsl(r.dsl, "candidate");
        if (parsed.ok()) break;
        std::vector<std::string> lines = llm_detail::split_lines(r.dsl);
        std::string fix;
        for (const Diagnostic& d : parsed.diagnostics) {
            fix = llm_detail::fix_one(d, lines, r.dsl);
            if (!fix.empty()) break;
        }
        if (fix.empty()) break;
        std::string text;
        for (std::size_t i = 0; i < lines.size(); ++i) text += lines[i] + (i + 1 < lines.size() ? "\n" : "");
        r.dsl = text;
        r.fixes.push_back(fix);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// What the model is told
// ---------------------------------------------------------------------------------------------

// docs/dsl.md, embedded so that an installed lamda needs no source tree. test_llm.cpp checks that
// it is the file's exact text; after editing docs/dsl.md, regenerate the lines below with
//   python3 -c "for l in open('docs/dsl.md').read().split('\n')[:-1]: print('    \"' + l.replace('\\\\','\\\\\\\\').replace('\"','\\\\\"') + '\\\\n\"')"
inline const char* llm_dsl_reference() {
    return
        "# The lamda DSL\n"
        "\n"
        "A lamda model is a text file (`.lamda`): one layer per line, read top to bottom.\n"
        "This page is also what the generator (an LLM) is shown, so it is short and exact.\n"
        "\n"
        "## Lines\n"
        "\n"
        "```\n"
        "# comment (from '#' to the end of the line; blank lines are ignored)\n"
        "model NAME                                 # optional, first non-comment line\n"
        "NAME: OP [INPUT, INPUT ...] [KEY=VALUE ...]\n"
        "```\n"
        "\n"
        "- `NAME` is the layer's name and the name of the value it produces: letters, digits and `_`,\n"
        "  starting with a letter or `_`, at most 64 characters, unique in the file. Weight tensors are named\n"
        "  after it (`NAME.weight`, `NAME.bias`). `NAME:` may be left out; the layer is then named\n"
        "  `OP_N` (N counts layers from 0), and the canonical form prints that name.\n"
        "- Inputs are names of earlier layers, separated by commas. **With no input, a layer takes the\n"
        "  output of the line above it** (a plain chain). Ops that combine values (`add`, `concat`, `mul`)\n"
        "  always name their inputs.\n"
        "- Attributes are `KEY=VALUE` with no spaces around `=`. Sizes that have a height and a width take\n"
        "  `N` (both) or `HxW`, e.g. `kernel=3`, `kernel=1x7`.\n"
        "- The first layer is the only `input` layer. Shapes are height x width x channels (NHWC, batch\n"
        "  implied). Every layer's output shape is inferred; you never write it except for `input`.\n"
        "\n"
        "## Example\n"
        "\n"
        "```\n"
        "model tiny_residual\n"
        "input: input shape=28x28x1\n"
        "stem: conv2d out=16 kernel=3 stride=2 act=relu      # 14x14x16\n"
        "b1_dw: dwconv kernel=3 act=relu6                     # 14x14x16\n"
        "b1_pw: conv2d out=16 kernel=1\n"
        "b1: add stem, b1_pw act=relu                         # residual\n"
        "se_pool: gap                                         # 1x1x16\n"
        "se_fc1: conv2d out=4 kernel=1 act=relu\n"
        "se_fc2: conv2d out=16 kernel=1 act=hardsigmoid\n"
        "se: mul b1, se_fc2                                   # squeeze-excitation\n"
        "pool: gap\n"
        "flat: flatten\n"
        "drop: dropout rate=0.2\n"
        "logits: fc out=10\n"
        "prob: softmax\n"
        "```\n"
        "\n"
        "## Ops\n"
        "\n"
        "| op | inputs | attributes (default) | output |\n"
        "|---|---|---|---|\n"
        "| `input` | none | `shape=HxWxC` (required) | HxWxC |\n"
        "| `conv2d` | 1 | `out` (required), `kernel` (required), `in` (optional check), `stride=1`, `padding=same`, `dilation=1`, `groups=1`, `bias=true`, `act=none` | Ho x Wo x out |\n"
        "| `dwconv` | 1 | `kernel` (required), `in` (optional check), `stride=1`, `padding=same`, `dilation=1`, `multiplier=1`, `bias=true`, `act=none` | Ho x Wo x C*multiplier |\n"
        "| `fc` | 1 (1x1xC) | `out` (required), `in` (optional check), `bias=true`, `act=none` | 1x1xout |\n"
        "| `batchnorm` | 1 | `eps=1e-05` | same |\n"
        "| `maxpool` | 1 | `kernel` (required), `stride=kernel`, `padding=valid`, `ceil=false` | Ho x Wo x C |\n"
        "| `avgpool` | 1 | `kernel` (required), `stride=kernel`, `padding=valid`, `ceil=false` | Ho x Wo x C |\n"
        "| `gap` | 1 | (global average pool) | 1x1xC |\n"
        "| `add` | 2 or more, same shape | `act=none` | same |\n"
        "| `concat` | 2 or more, same HxW | (joins channels, in input order) | H x W x sum(C) |\n"
        "| `mul` | 2: HxWxC and HxWxC or 1x1xC | (elementwise; a 1x1xC value is broadcast over H and W) | HxWxC |\n"
        "| `relu` `relu6` `hardswish` `hardsigmoid` `sigmoid` | 1 | | same |\n"
        "| `softmax` | 1 | (over channels) | same |\n"
        "| `flatten` | 1 | (H, W, C order) | 1x1x(H*W*C) |\n"
        "| `dropout` | 1 | `rate=0.5` (a no-op at inference) | same |\n"
        "\n"
        "- `act` is one of `none`, `relu`, `relu6`, `hardswish`, `hardsigmoid`, `sigmoid`: a fused activation.\n"
        "- `padding`: `same` (output = ceil(input / stride); an odd total pads the bottom and right one more),\n"
        "  `valid` (no padding), `N` (N on every side), `HxW` (H on top and bottom, W on left and right),\n"
        "  or `TxLxBxR` (top, left, bottom, right).\n"
        "- Output size on each axis: `floor((in + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1`;\n"
        "  with `ceil=true` (pools) the division rounds up, but a window never starts inside the trailing padding.\n"
        "- `in=C` on `conv2d`, `dwconv`, `fc` states the input channels you expect; a mismatch is an error.\n"
        "- `conv2d`: input and `out` channels must both divide by `groups`. `fc` needs a 1x1xC input: put\n"
        "  `gap` or `flatten` before it.\n"
        "- `bias`, `ceil`: `true` or `false`. `eps`, `rate`: decimal numbers (`rate` in [0, 1)).\n"
        "\n"
        "## Limits\n"
        "\n"
        "A file is at most 4 MiB and 10000 layers; a line at most 4096 characters. Channels are at most\n"
        "65536, height and width at most 16384, kernel at most 64, stride and dilation at most 64, a value\n"
        "at most 2^31 elements, a model at most 2^31 parameters. A file over a limit is an error, not a crash.\n"
        "\n"
        "## Errors\n"
        "\n"
        "Each error reads `FILE:LINE:COL: error: WHAT`, often followed by `hint: HOW TO FIX`, e.g.\n"
        "\n"
        "```\n"
        "model.lamda:7:1: error: expected 32 input channels from 'b3', got 16\n"
        "model.lamda:9:7: error: unknown op 'conv3d'\n"
        "  hint: did you mean 'conv2d'?\n"
        "```\n"
        "\n"
        "All independent errors in a file are reported. Fix every one and resubmit the whole model.\n"
        ;
}

// The op catalog and output rules that follow the DSL reference in the system message.
inline std::string llm_output_rules() {
    std::string ops;
    for (OpKind k : all_op_kinds) ops += (ops.empty() ? "" : ", ") + std::string(op_name(k));
    return "## Op catalog\n\n"
           "These ops exist, and no others: " + ops + ".\n"
           "Blocks that run fast on CPUs (XNNPACK, NHWC, float32), with their shapes for a 14x14x16 input:\n\n"
           "```lamda\n"
           "# MobileNetV2 inverted residual (expansion 4), with squeeze-excitation\n"
           "input: input shape=14x14x16\n"
           "b1_expand: conv2d out=64 kernel=1 act=relu6        # 14x14x64\n"
           "b1_dw: dwconv kernel=3 act=relu6                   # 14x14x64\n"
           "b1_se_pool: gap                                    # 1x1x64\n"
           "b1_se_fc1: conv2d out=16 kernel=1 act=relu\n"
           "b1_se_fc2: conv2d out=64 kernel=1 act=hardsigmoid\n"
           "b1_se: mul b1_dw, b1_se_fc2\n"
           "b1_project: conv2d out=16 kernel=1                 # 14x14x16\n"
           "b1: add input, b1_project\n"
           "# separable conv (MobileNetV1) with downsampling\n"
           "b2_dw: dwconv kernel=3 stride=2 act=relu           # 7x7x16\n"
           "b2_pw: conv2d out=32 kernel=1 act=relu             # 7x7x32\n"
           "# ResNet basic block\n"
           "b3_c1: conv2d out=32 kernel=3 act=relu\n"
           "b3_c2: conv2d out=32 kernel=3\n"
           "b3: add b2_pw, b3_c2 act=relu\n"
           "pool: gap\n"
           "logits: fc out=10\n"
           "```\n\n"
           "Cost: a conv2d costs H*W*k*k*Cin*Cout MACs; a 1x1 conv H*W*Cin*Cout; a dwconv only H*W*k*k*C. Downsample "
           "early (stride 2) to make every later layer cheaper. Latency is not MACs alone: each layer has a fixed "
           "cost, and depthwise layers do fewer MACs per microsecond than dense ones; the feedback tells you what "
           "each layer really costs on this device.\n\n"
           "## Output rules\n\n"
           "- Reply with one or more candidate models, each a complete model in its own ```lamda fenced block, "
           "from the `input` layer to the logits.\n"
           "- The `input` layer has exactly the task's shape, and the last layer outputs 1x1xCLASSES "
           "(e.g. `pool: gap` then `logits: fc out=CLASSES`).\n"
           "- Every model must differ from every earlier candidate. Layer names are unique within a model.\n"
           "- Leave `in=` out unless you are sure of the channel count.\n"
           "- Text outside the fenced blocks is ignored: keep it to a sentence.\n";
}

inline std::string llm_system_prompt() {
    return "You design small convolutional neural networks that must fit an edge device's latency budget. You "
           "write each network in the lamda DSL. lamda validates every candidate, predicts and measures its latency "
           "on the device, checks its size, and tells you the results; use them to propose better candidates.\n\n" +
           std::string(llm_dsl_reference()) + "\n" + llm_output_rules();
}

// The device in a few lines: the CPU and, with a latency model, what single layers cost here
// at the task's first feature-map size (so that the model knows e.g. how dear depthwise is).
inline std::string llm_device_summary(const Task& task, const LatencyModel* model) {
    using llm_detail::num;
    const DeviceInfo d = describe_device();
    std::string s = "CPU: " + (d.cpu_model.empty() ? std::string("unknown") : d.cpu_model) + " (" + d.architecture + ", " +
                    std::to_string(d.logical_cores) + " logical cores" +
                    (d.xnnpack_isa.empty() ? std::string() : ", XNNPACK " + d.xnnpack_isa + " kernels") +
                    "); latency is the median of runs on " + std::to_string(task.constraints.threads) + " thread(s).\n";
    if (!model) return s;
    const std::int64_t h = std::max<std::int64_t>(1, (task.input.h + 1) / 2);
    const std::int64_t w = std::max<std::int64_t>(1, (task.input.w + 1) / 2);
    const std::string in = "input: input shape=" + std::to_string(h) + "x" + std::to_string(w) + "x32\n";
    const std::pair<const char*, const char*> probes[] = {
        {"3x3 conv2d 32->32", "l: conv2d out=32 kernel=3 act=relu\n"},
        {"1x1 conv2d 32->64", "l: conv2d out=64 kernel=1 act=relu\n"},
        {"3x3 dwconv on 32 channels", "l: dwconv kernel=3 act=relu\n"},
        {"5x5 dwconv on 32 channels", "l: dwconv kernel=5 act=relu\n"},
        {"2x2 maxpool", "l: maxpool kernel=2\n"},
        {"add of two 32-channel maps", "a: conv2d out=32 kernel=1\nl: add input, a\n"},
    };
    std::string lines;
    for (const auto& [what, text] : probes) {
        const ParseResult r = parse_dsl(in + text, "probe");
        if (!r.ok()) continue;
        const LatencyPrediction p = model->predict(r.graph);
        const double ms = p.per_layer_ms.empty() ? 0.0 : p.per_layer_ms.back();
        const std::int64_t macs = analyze(r.graph).layers.back().macs;
        lines += "- " + std::string(what) + ": " + num(ms, 3) + " ms";
        if (macs > 0 && ms > 0) lines += " (" + num(ms / (double(macs) / 1e6), 3) + " ms per million MACs)";
        lines += "\n";
    }
    if (!lines.empty())
        s += "The device's latency model predicts these single layers on a " + std::to_string(h) + "x" + std::to_string(w) +
             "x32 feature map:\n" + lines;
    return s;
}

// ---------------------------------------------------------------------------------------------
// The proposer
// ---------------------------------------------------------------------------------------------

struct LlmProposerOptions {
    int candidates_per_turn = 3;   // asked for per turn (a reply may hold more or fewer)
    int max_models_per_reply = 8;  // more are ignored
    int best_k = 3;                // best candidates shown in full
    int max_recent = 80;           // earlier candidates shown as one line each, newest first
    int max_repairs = 2;           // repair turns per invalid candidate (and its repairs)
    int max_failed_turns = 5;      // consecutive failed turns before the proposer gives up
    int max_diagnostics = 12;      // diagnostics quoted per invalid candidate
    bool auto_fix = true;          // apply auto_fix_dsl() before handing a candidate over
    std::string device_summary;    // llm_device_summary(); empty: the CPU only
};

// Asks an LLM for candidates (see the top of this file). Each record's note names the turn
// that produced the candidate ("llm turn 3, candidate 2/3", "llm turn 5, repair of #12 (attempt
// 1/2)", "; auto-fixed: ..."); a turn that yields no candidate is handed to the loop as a failed
// proposal ("llm turn 4 failed: timeout: ..."), so the journal records every turn.
class LlmProposer : public Proposer {
public:
    explicit LlmProposer(LlmConfig config, LlmProposerOptions options = {})
        : client_(std::move(config)), options_(std::move(options)) {}

    std::string name() const override { return "llm"; }

    LlmClient& client() noexcept { return client_; }
    const LlmProposerOptions& options() const noexcept { return options_; }
    int turns() const noexcept { return turn_; }
    std::size_t last_request_bytes() const noexcept { return last_request_bytes_; }
    std::size_t max_request_bytes() const noexcept { return max_request_bytes_; }
    // Told what each turn did: "turn 3: 2 candidates in 4.1 s (request ~3,210 tokens)".
    std::function<void(const std::string&)> on_log;

    // The request body of the next turn for these records (exposed for tests and inspection).
    std::string request_body(const Task& task, const std::vector<CandidateRecord>& records,
                             std::optional<std::size_t> repair = std::nullopt) {
        return build_body(task, records, repair);
    }

    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        absorb(records);
        if (!started_) {
            started_ = true;
            for (const CandidateRecord& r : records) turn_ = std::max(turn_, turn_of(r.note));
        }
        std::set<std::string> seen;
        for (const CandidateRecord& r : records) seen.insert(r.hash);
        if (auto p = next_from_queue(records, seen)) return p;
        if (consecutive_failures_ >= options_.max_failed_turns) {
            log("giving up after " + std::to_string(consecutive_failures_) + " failed turns in a row");
            return std::nullopt;
        }
        const int turn = ++turn_;
        std::optional<std::size_t> repair;
        while (!repairs_.empty() && !repair) {
            const std::size_t r = repairs_.front();
            if (r < records.size() && records[r].verdict == Verdict::Invalid) repair = r;
            else repairs_.pop_front();
        }
        std::string body;
        try {
            body = build_body(task, records, repair);
        } catch (const LlmError& e) {
            if (!repair) return failure(turn, e.what());
            repairs_.pop_front();  // this repair does not fit the budget: a normal turn instead
            repair.reset();
            try {
                body = build_body(task, records, repair);
            } catch (const LlmError& e2) {
                return failure(turn, e2.what());
            }
        }
        ChatReply reply;
        try {
            reply = client_.chat_body(body);
        } catch (const LlmError& e) {
            return failure(turn, e.what());
        }
        last_request_bytes_ = body.size();
        max_request_bytes_ = std::max(max_request_bytes_, body.size());
        round_.clear();  // delivered
        last_problem_.clear();
        if (repair) repairs_.pop_front();
        const std::vector<std::string> models =
            extract_dsl_candidates(reply.content, static_cast<std::size_t>(std::max(1, options_.max_models_per_reply)));
        log("turn " + std::to_string(turn) + ": " + std::to_string(models.size()) + " candidate(s) in " +
            llm_detail::fixed2(reply.seconds) + " s" + (reply.attempts > 1 ? " after " + std::to_string(reply.attempts) + " attempts" : "") +
            " (request ~" + llm_detail::group_digits(static_cast<std::int64_t>(estimate_tokens(body.size()))) + " tokens" +
            (repair ? ", repair of #" + std::to_string(*repair) : std::string()) + ")");
        if (models.empty()) {
            last_problem_ = "Your last reply held no ```lamda block with a model; put each model in its own ```lamda fence.";
            return failure(turn, "the reply held no lamda model" +
                                     (reply.finish_reason == "length" ? std::string(" (cut off at max_tokens)") : std::string()) +
                                     ": " + llm_detail::snippet(reply.content, 160));
        }
        for (std::size_t i = 0; i < models.size(); ++i) {
            Pending p;
            p.dsl = models[i];
            p.turn = turn;
            if (repair) {
                p.repair_of = static_cast<int>(*repair);
                p.depth = depth_of(*repair) + 1;
                p.note = "llm turn " + std::to_string(turn) + ", repair of #" + std::to_string(*repair) + " (attempt " +
                         std::to_string(p.depth) + "/" + std::to_string(options_.max_repairs) + ")" +
                         (models.size() > 1 ? ", model " + std::to_string(i + 1) + "/" + std::to_string(models.size()) : "");
            } else {
                p.note = "llm turn " + std::to_string(turn) + ", candidate " + std::to_string(i + 1) + "/" +
                         std::to_string(models.size());
            }
            queue_.push_back(std::move(p));
        }
        if (auto p = next_from_queue(records, seen)) {
            consecutive_failures_ = 0;
            return p;
        }
        last_problem_ = "Every model in your last reply repeated an earlier candidate; propose different ones.";
        return failure(turn, "every model in the reply repeated an earlier candidate");
    }

private:
    struct Pending {
        std::string dsl, note;
        int turn = 0;
        int repair_of = -1;  // record index this repairs, -1: none
        int depth = 0;       // repairs so far in this candidate's line
        std::vector<std::string> fixes;
        bool failed = false;  // a failed-turn proposal, not a candidate
    };
    struct Outcome {
        std::string label;  // "candidate 2/3 of turn 7"
        int record = -1;    // -1: not recorded
        std::string remark; // "repeats #4; skipped", auto-fixes
    };

    LlmClient client_;
    LlmProposerOptions options_;
    std::deque<Pending> queue_;
    std::optional<Pending> outstanding_;
    std::size_t records_at_issue_ = 0;
    std::vector<Outcome> round_;           // the last reply's candidates, told in the next turn
    std::deque<std::size_t> repairs_;      // invalid records to repair
    std::map<std::size_t, int> depth_;     // record -> repairs in its line
    std::map<std::size_t, std::string> structure_;  // record -> "14 layers: conv2d x6, ..."
    std::string last_problem_;
    int turn_ = 0;
    int consecutive_failures_ = 0;
    bool started_ = false;
    std::size_t last_request_bytes_ = 0, max_request_bytes_ = 0;

    void log(const std::string& s) const {
        if (on_log) on_log(client_.redact(s));
    }

    static int turn_of(const std::string& note) {
        const std::size_t at = note.find("llm turn ");
        if (at == std::string::npos) return 0;
        return std::atoi(note.c_str() + at + 9);
    }

    int depth_of(std::size_t record) const {
        const auto it = depth_.find(record);
        return it == depth_.end() ? 0 : it->second;
    }

    static std::string label_of(const Pending& p) {
        const std::size_t comma = p.note.find(", ");
        return comma == std::string::npos ? p.note : p.note.substr(comma + 2) + " (turn " + std::to_string(p.turn) + ")";
    }

    Proposal failure(int turn, const std::string& error) {
        ++consecutive_failures_;
        const std::string e = client_.redact(error);
        log("turn " + std::to_string(turn) + " failed: " + e);
        Pending p;
        p.turn = turn;
        p.failed = true;
        outstanding_ = p;
        records_at_issue_ = SIZE_MAX;
        return Proposal{"", "llm turn " + std::to_string(turn) + " failed: " + e, e};
    }

    // What became of the proposal handed over last.
    void absorb(const std::vector<CandidateRecord>& records) {
        if (!outstanding_) return;
        Pending p = std::move(*outstanding_);
        outstanding_.reset();
        if (p.failed) return;
        Outcome o;
        o.label = label_of(p);
        if (!p.fixes.empty()) {
            o.remark = "lamda auto-fixed it before checking:";
            for (const std::string& f : p.fixes) o.remark += "\n    - " + f;
        }
        if (records.size() > records_at_issue_) {
            const std::size_t index = records.size() - 1;
            o.record = static_cast<int>(index);
            depth_[index] = p.depth;
            if (records[index].verdict == Verdict::Invalid && p.depth < options_.max_repairs) repairs_.push_back(index);
        } else {
            o.remark += std::string(o.remark.empty() ? "" : "\n  ") + "it repeated an earlier candidate; skipped";
        }
        round_.push_back(std::move(o));
    }

    // The next queued model that is not a repeat, auto-fixed; nothing when the queue runs dry.
    std::optional<Proposal> next_from_queue(const std::vector<CandidateRecord>& records, const std::set<std::string>& seen) {
        while (!queue_.empty()) {
            Pending p = std::move(queue_.front());
            queue_.pop_front();
            std::string canonical, hash;
            bool valid = canonical_hash(p.dsl, canonical, hash);
            if (!valid && options_.auto_fix) {
                AutoFix f = auto_fix_dsl(p.dsl);
                if (!f.fixes.empty()) {
                    p.dsl = f.dsl;
                    p.fixes = f.fixes;
                    valid = canonical_hash(p.dsl, canonical, hash);
                }
            }
            if (!valid) hash = text_hash(p.dsl);
            if (seen.count(hash)) {
                std::string which;
                for (const CandidateRecord& r : records)
                    if (r.hash == hash) which = "#" + std::to_string(r.index);
                round_.push_back({label_of(p), -1, "it repeats " + which + " exactly; skipped"});
                continue;
            }
            std::string note = p.note;
            if (!p.fixes.empty()) {
                note += "; auto-fixed: ";
                for (std::size_t i = 0; i < p.fixes.size(); ++i) note += (i ? "; " : "") + p.fixes[i];
            }
            Proposal out{p.dsl, client_.redact(note), ""};
            records_at_issue_ = records.size();
            outstanding_ = std::move(p);
            return out;
        }
        return std::nullopt;
    }

    // ---- the prompt ----

    const std::string& structure_of(const CandidateRecord& r) {
        auto it = structure_.find(static_cast<std::size_t>(r.index));
        if (it != structure_.end()) return it->second;
        std::string s;
        const ParseResult parsed = parse_dsl(r.dsl, "candidate");
        if (parsed.ok()) {
            std::vector<std::pair<std::string, int>> counts;
            std::int64_t widest = 0;
            for (const Layer& l : parsed.graph.layers) {
                if (l.op == OpKind::Input) continue;
                const std::string op(op_name(l.op));
                auto c = std::find_if(counts.begin(), counts.end(), [&](const auto& x) { return x.first == op; });
                if (c == counts.end()) counts.push_back({op, 1});
                else ++c->second;
                widest = std::max<std::int64_t>(widest, l.shape.c);
            }
            s = std::to_string(parsed.graph.layers.size() - 1) + " layers (";
            for (std::size_t i = 0; i < counts.size(); ++i)
                s += (i ? ", " : "") + counts[i].first + (counts[i].second > 1 ? " x" + std::to_string(counts[i].second) : "");
            s += "), widest " + std::to_string(widest);
        }
        return structure_[static_cast<std::size_t>(r.index)] = s;
    }

    static std::string figures(const CandidateRecord& r, const Task& task) {
        using llm_detail::num;
        std::string s;
        auto add = [&s](const std::string& x) { s += (s.empty() ? "" : ", ") + x; };
        if (r.predicted_ms) add("predicted " + num(*r.predicted_ms) + " ms");
        if (r.measured_ms) add("measured " + num(*r.measured_ms) + " ms");
        if (const auto ms = judged_latency_ms(r); ms && task.constraints.latency_ms > 0)
            add(llm_detail::percent(*ms / task.constraints.latency_ms) + " of the latency budget");
        if (r.params >= 0) add(llm_detail::group_digits(r.params) + " params");
        if (r.macs >= 0) add(llm_detail::group_digits(r.macs) + " MACs");
        if (r.accuracy) add("accuracy " + num(*r.accuracy * 100, 4) + "%");
        return s;
    }

    static std::string top_layers_text(const CandidateRecord& r) {
        std::string s;
        for (const LayerCost& l : r.top_layers)
            s += (s.empty() ? "" : ", ") + l.name + " " + llm_detail::num(l.ms) + " ms (" + llm_detail::percent(l.share) + ")";
        return s;
    }

    std::string one_line(const CandidateRecord& r, const Task& task) {
        std::string s = "- #" + std::to_string(r.index) + " " + std::string(verdict_name(r.verdict)) + ": ";
        if (r.verdict == Verdict::Invalid) return s + llm_detail::snippet(r.reason, 160) + "\n";
        s += figures(r, task);
        const std::string& st = structure_of(r);
        if (!st.empty()) s += "; " + st;
        if (!r.top_layers.empty()) {
            s += "; most expensive: ";
            for (std::size_t i = 0; i < r.top_layers.size() && i < 2; ++i)
                s += (i ? ", " : "") + r.top_layers[i].name + " " + llm_detail::percent(r.top_layers[i].share);
        }
        return s + "\n";
    }

    std::string detail(const Outcome& o, const std::vector<CandidateRecord>& records, const Task& task) const {
        std::string s = "- " + o.label;
        if (o.record >= 0 && static_cast<std::size_t>(o.record) < records.size()) {
            const CandidateRecord& r = records[static_cast<std::size_t>(o.record)];
            s += " -> #" + std::to_string(r.index) + " " + std::string(verdict_name(r.verdict)) + ": " +
                 llm_detail::snippet(r.reason, 300) + "\n";
            const std::string f = figures(r, task);
            if (!f.empty()) s += "  " + f + "\n";
            const std::string t = top_layers_text(r);
            if (!t.empty()) s += "  most expensive layers: " + t + "\n";
            if (!r.diagnostics.empty()) {
                s += "  lamda's diagnostics:\n";
                const std::size_t n = std::min(r.diagnostics.size(), static_cast<std::size_t>(std::max(1, options_.max_diagnostics)));
                for (std::size_t i = 0; i < n; ++i) s += "    " + llm_detail::snippet(r.diagnostics[i], 400) + "\n";
                if (r.diagnostics.size() > n) s += "    (" + std::to_string(r.diagnostics.size() - n) + " more)\n";
            }
        } else {
            s += "\n";
        }
        if (!o.remark.empty()) s += "  " + o.remark + "\n";
        return s;
    }

    static std::string task_text(const Task& task, std::size_t recorded) {
        using llm_detail::group_digits;
        const Shape& in = task.input;
        const std::string shape = std::to_string(in.h) + "x" + std::to_string(in.w) + "x" + std::to_string(in.c);
        const Constraints& c = task.constraints;
        std::string s = "# Task: " + task.name + "\n\nInput: " + shape + " (height x width x channels): the input layer is `input: input shape=" +
                        shape + "`.\nClasses: " + std::to_string(task.classes) + ": the last layer outputs 1x1x" +
                        std::to_string(task.classes) + " (e.g. `pool: gap` then `logits: fc out=" + std::to_string(task.classes) +
                        "`).\nConstraints (a candidate must meet all):\n";
        if (c.latency_ms > 0)
            s += "- median latency <= " + llm_detail::num(c.latency_ms, 4) + " ms on " + std::to_string(c.threads) +
                 " thread(s) (predicted first: a candidate predicted far above it is not even run)\n";
        if (c.max_params > 0) s += "- parameters <= " + group_digits(c.max_params) + "\n";
        if (c.max_activation_bytes > 0) s += "- peak activation memory <= " + group_digits(c.max_activation_bytes) + " bytes (float32)\n";
        if (c.min_accuracy && task.objective == Objective::Accuracy)
            s += "- validation accuracy >= " + llm_detail::num(*c.min_accuracy * 100, 4) + "%\n";
        if (c.latency_ms <= 0 && c.max_params <= 0 && c.max_activation_bytes <= 0 && !c.min_accuracy) s += "- none\n";
        s += task.objective == Objective::Accuracy
                 ? "Objective: the highest validation accuracy among candidates that meet the constraints.\n"
                 : "Objective: the largest capacity (MACs) that meets the constraints: use the budget, do not leave it idle.\n";
        s += "Candidates so far: " + std::to_string(recorded) + " of at most " + std::to_string(task.budget.max_candidates) + ".\n";
        return s;
    }

    // Builds the request for a turn: the system message, then one user message with the task and
    // as much history as the budget allows. Throws LlmError(Config) when even the fixed parts
    // do not fit.
    std::string build_body(const Task& task, const std::vector<CandidateRecord>& records, std::optional<std::size_t> repair) {
        using llm_detail::json_escaped_size;
        const LlmConfig& cfg = client_.config();
        const std::size_t budget = static_cast<std::size_t>(std::max(0, cfg.prompt_budget_tokens())) * 4;
        const std::string system = valid_utf8(llm_system_prompt());
        std::string head = task_text(task, records.size());
        const std::string device = options_.device_summary.empty() ? llm_device_summary(task, nullptr) : options_.device_summary;
        head += "\n## Device\n\n" + device + "\n";
        if (!last_problem_.empty()) head += "\nNote: " + last_problem_ + "\n";
        head = valid_utf8(head);
        std::string core, tail;
        if (repair) {
            const CandidateRecord& r = records[*repair];
            core = "\n## Repair #" + std::to_string(r.index) + "\n\nYour candidate #" + std::to_string(r.index) +
                   " is invalid. lamda reported:\n";
            const std::size_t n = std::min(r.diagnostics.size(), static_cast<std::size_t>(std::max(1, options_.max_diagnostics)));
            for (std::size_t i = 0; i < n; ++i) core += "  " + llm_detail::snippet(r.diagnostics[i], 400) + "\n";
            if (r.diagnostics.empty()) core += "  " + llm_detail::snippet(r.reason, 400) + "\n";
            core += "Its text (line numbers count from 1):\n```lamda\n" + r.dsl + (r.dsl.empty() || r.dsl.back() == '\n' ? "" : "\n") + "```\n";
            core = valid_utf8(core);
            tail = "\nFix every error and reply with the corrected complete model in one ```lamda block.\n";
        } else {
            tail = "\nPropose " + std::to_string(std::max(1, options_.candidates_per_turn)) +
                   " new models, each different from every candidate above, each in its own ```lamda block. Use the "
                   "feedback: over a limit, shrink where the layers cost most; well under the latency budget, grow "
                   "(wider, deeper, larger kernels) where it is cheap.\n";
        }
        auto body_of = [&](const std::string& user) {
            return chat_request_json(cfg, {ChatMessage{"system", system}, ChatMessage{"user", user}});
        };
        std::size_t used = body_of(head + core + tail).size();
        if (used > budget)
            throw LlmError(LlmErrorKind::Config,
                           "the request needs ~" + std::to_string(estimate_tokens(used)) + " tokens before any history, over the budget of " +
                               std::to_string(cfg.prompt_budget_tokens()) + " (context_tokens " + std::to_string(cfg.context_tokens) +
                               " - max_tokens " + std::to_string(cfg.max_tokens) + "); raise --llm-context-tokens");
        auto fits = [&](std::size_t extra) {
            if (used + extra > budget) return false;
            used += extra;
            return true;
        };
        // 1. what became of the last reply's candidates
        std::string results;
        {
            const std::string heading = "\n## Results of your last reply\n\n";
            for (const Outcome& o : round_) {
                const std::string d = valid_utf8(detail(o, records, task));
                if (fits(json_escaped_size(d) + (results.empty() ? json_escaped_size(heading) : 0)))
                    results += (results.empty() ? heading : std::string()) + d;
            }
        }
        // 2. the best candidates in full (the closest to feasible when none is)
        std::string best;
        std::set<std::size_t> shown;
        {
            std::vector<std::size_t> order = rank_feasible(records, task.objective);
            std::string heading = "\n## Best candidates so far\n\n";
            if (order.empty()) {
                std::vector<std::pair<double, std::size_t>> near;
                for (std::size_t i = 0; i < records.size(); ++i)
                    if (const auto v = proposer_detail::violation(records[i], task)) near.push_back({*v, i});
                std::stable_sort(near.begin(), near.end());
                for (const auto& n : near) order.push_back(n.second);
                heading = "\n## Closest to meeting the constraints so far (none meets them yet)\n\n";
            }
            int k = 0;
            for (std::size_t i : order) {
                if (k >= options_.best_k) break;
                const CandidateRecord& r = records[i];
                if (r.dsl.empty()) continue;
                const std::string item = valid_utf8("### #" + std::to_string(r.index) + " " + std::string(verdict_name(r.verdict)) +
                                                    ": " + figures(r, task) + "\n```lamda\n" + r.dsl +
                                                    (r.dsl.back() == '\n' ? "" : "\n") + "```\n");
                if (fits(json_escaped_size(item) + (best.empty() ? json_escaped_size(heading) : 0))) {
                    best += (best.empty() ? heading : std::string()) + item;
                    shown.insert(i);
                    ++k;
                }
            }
        }
        // 3. earlier candidates, one line each, newest first until the budget or max_recent
        std::string recent;
        {
            const std::string heading = "\n## Earlier candidates (one line each, oldest first)\n\n";
            const std::size_t reserve = 96;  // the "N older not shown" line
            std::vector<std::string> lines;
            std::size_t listed = 0, eligible = 0;
            bool full = false;
            for (std::size_t i = records.size(); i-- > 0;) {
                const CandidateRecord& r = records[i];
                if (r.dsl.empty() || shown.count(i)) continue;
                ++eligible;
                if (full || static_cast<int>(listed) >= options_.max_recent) continue;
                const std::string line = valid_utf8(one_line(r, task));
                const std::size_t cost = json_escaped_size(line) + (lines.empty() ? json_escaped_size(heading) : 0);
                if (used + cost + reserve > budget) {
                    full = true;
                    continue;
                }
                used += cost;
                lines.push_back(line);
                ++listed;
            }
            if (!lines.empty()) {
                recent = heading;
                for (std::size_t i = lines.size(); i-- > 0;) recent += lines[i];
            }
            if (eligible > listed) {
                const std::string more = "(" + std::to_string(eligible - listed) + " older candidates not shown)\n";
                if (fits(json_escaped_size(more))) recent += more;
            }
        }
        const std::string body = body_of(head + best + recent + results + core + tail);
        if (body.size() > budget)  // cannot happen: every part was counted
            throw LlmError(LlmErrorKind::Config, "internal: the request grew over its budget");
        return body;
    }
};

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_LLM_HPP
