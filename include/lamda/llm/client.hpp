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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../exception.hpp"
#include "../detail/json_write.hpp"
#include "../search/types.hpp"

#include <httplib.h>
#include <simdjson.h>
// <httplib.h> pulls in <resolv.h>, whose `_res` macro breaks Eigen (latency/model.hpp) when that is
// included later; httplib's own text is already expanded, so the macro can go.
#if defined(_res)
#undef _res
#endif

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

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_CLIENT_HPP
