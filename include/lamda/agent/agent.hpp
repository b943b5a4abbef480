// lamda/agent/agent.hpp: the on-device measurement agent (`lamda-agent`) and its client.
//
// The agent runs on the board and measures there; the search host sends it models over HTTP(S):
//   GET  /v1/device              the JSON of `lamda device --json` (peak measured at start-up)
//   POST /v1/bench               {"dsl", "name"?, "weights_base64"?, "threads"?, "runs"?, "warmup"?}
//                                -> the JSON of `lamda bench --json`; invalid DSL -> 400 with the
//                                diagnostics of `lamda check` ({"valid": false, "diagnostics": [...]})
//   POST /v1/measure             {"dsl", "threads"?, "runs"?, "warmup"?, "max_seconds"?, "quantile"?}
//                                -> {"ms"} (the whole-model timing of `lamda eval-predictor`)
//   POST /v1/profile             {"threads"?, "budget_s"?, "calibration_models"?, "calibration_seed"?,
//                                "seed"?, "quantile"?} -> 202 {"id"}
//   GET  /v1/profile/ID          {"id", "state": queued|running|done|failed, "progress", "error"}
//   GET  /v1/profile/ID/result   the profile JSON `lamda profile --out` writes (409 until done)
// Every request carries "Authorization: Bearer TOKEN" (compared in constant time; 401 otherwise,
// before the body is read). Bodies over AgentLimits::max_body_bytes get 413. Measurements never
// overlap: one mutex serialises benchmarks, timings and profile jobs; a request that would wait
// behind too many others (or too long) gets 503 with Retry-After.
//
//   lamda::AgentServer server(options);          // options.token, options.limits, TLS cert/key
//   const int port = server.bind("0.0.0.0", 7070);
//   server.listen();                              // blocks until stop()
//
//   lamda::AgentClient board("http://board:7070"); // token from LAMDA_AGENT_TOKEN
//   lamda::AgentBenchResult r = board.bench(dsl_text, options);
//
// Compiled only with LAMDA_WITH_AGENT defined (the build defines it when cpp-httplib, XNNPACK
// and the latency model are all there); link cpp-httplib (-lcpp-httplib on Debian), XNNPACK,
// pthreadpool and simdjson. docs/agent.md describes running it on a board.
#ifndef LAMDA_AGENT_AGENT_HPP
#define LAMDA_AGENT_AGENT_HPP

#if !defined(LAMDA_WITH_AGENT)
#error "lamda/agent/agent.hpp needs LAMDA_WITH_AGENT (cpp-httplib, XNNPACK and simdjson)"
#else

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../detail/format.hpp"
#include "../exception.hpp"
#include "../core/analysis.hpp"
#include "../exec/bench.hpp"
#include "../exec/device.hpp"
#include "../core/diagnostics.hpp"
#include "../dsl/parser.hpp"
#include "../search/loop.hpp"
#include "../detail/json_write.hpp"
#include "../detail/json_read.hpp"
#include "../latency/model.hpp"
#include "../latency/profiler.hpp"
#include "../search/sampler.hpp"
#include "../core/validate.hpp"
#include "../data/weights.hpp"

// After lamda's headers: <httplib.h> pulls in <resolv.h>, whose `_res` macro breaks Eigen
// (latency/model.hpp) when it comes first.
#include <httplib.h>
#include <simdjson.h>

namespace lamda {

// A failed agent request, on either side. `status` is the HTTP status (0: no response at all).
class AgentError : public Exception {
public:
    explicit AgentError(const std::string& what, int status_ = 0)
        : Exception(what, status_ == 0 ? ErrorKind::device : ErrorKind::server), status(status_) {}
    int status = 0;
};

// What one request may make the agent do.
struct AgentLimits {
    std::size_t max_body_bytes = std::size_t{16} << 20;  // 413 above
    int max_threads = 64;
    int max_runs = 10000;           // timed runs of one benchmark (and warm-up runs)
    std::int64_t max_macs = std::int64_t{50} << 30;
    std::int64_t max_params = std::int64_t{256} << 20;
    int max_layers = 4000;
    std::int64_t max_activation_bytes = std::int64_t{2} << 30;
    std::int64_t max_memory_bytes = std::int64_t{4} << 30;  // XNNPACK workspace (BenchOptions)
    double time_limit_s = 120;      // one benchmark or timing, estimated before it starts
    double max_profile_budget_s = 3600;
    int max_calibration_models = 2000;
    int max_queue = 4;              // requests waiting for the measurement lock; 503 beyond
    double max_wait_s = 300;        // ... or waiting longer than this; 503 then
    int max_jobs = 16;              // profile jobs remembered (finished ones are dropped first)
};

struct AgentOptions {
    std::string token;              // required (read_agent_token_file)
    AgentLimits limits;
    std::string cert_path, key_path;  // both: HTTPS
    double read_timeout_s = 10;     // a client that stalls this long is dropped
    double write_timeout_s = 30;
    int worker_threads = 0;         // 0: max_queue + 4
    double peak_seconds = 0.5;      // FMA peak measured once at start-up (`lamda device`)
    bool log = false;               // one line per request on stderr
};

namespace agent_detail {

inline bool equal_constant_time(std::string_view a, std::string_view b) noexcept {
    // Time depends on the length of `b` (the request's) only, never on where they differ.
    unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
    for (std::size_t i = 0; i < b.size(); ++i) {
        const unsigned char x = a.empty() ? 0 : static_cast<unsigned char>(a[i % a.size()]);
        diff |= static_cast<unsigned>(x ^ static_cast<unsigned char>(b[i]));
    }
    return diff == 0 && !a.empty();
}

inline std::string trim(const std::string& s) { return std::string(lamda::detail::trim(s)); }

inline std::string json_error(const std::string& message) {
    JsonWriter j;
    j.begin_object().field("error", message).end_object();
    return j.str();
}

struct RequestError : Exception {
    explicit RequestError(const std::string& what, int status_ = 400) : Exception(what), status(status_) {}
    int status = 400;
};


}  // namespace agent_detail

// ---- base64 (weights travel inside the JSON body) ----

inline std::string base64_encode(std::string_view in) {
    static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                                (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                                std::uint32_t{static_cast<unsigned char>(in[i + 2])};
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
    }
    if (i < in.size()) {
        std::uint32_t v = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
        if (i + 1 < in.size()) v |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += i + 1 < in.size() ? table[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

// Strict: only the standard alphabet, padding at the end, length a multiple of 4.
inline std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0) return std::nullopt;
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        const bool last = i + 4 == in.size();
        const int pad = last ? (in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0) : 0;
        std::uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = in[i + static_cast<std::size_t>(k)];
            int d = 0;
            if (k >= 4 - pad) {
                if (c != '=') return std::nullopt;
            } else if ((d = value(c)) < 0) {
                return std::nullopt;
            }
            v = (v << 6) | static_cast<std::uint32_t>(d);
        }
        out += static_cast<char>((v >> 16) & 255);
        if (pad < 2) out += static_cast<char>((v >> 8) & 255);
        if (pad < 1) out += static_cast<char>(v & 255);
    }
    return out;
}

// Reads the bearer token from a file that only its owner may read (mode 0600 or 0400): a file
// readable or writable by group or others is refused, as is an empty one.
inline std::string read_agent_token_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw AgentError(path + ": cannot read the token file");
    if (!S_ISREG(st.st_mode)) throw AgentError(path + ": the token file is not a regular file");
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw AgentError(path + ": the token file is accessible to group or others (mode " + mode +
                         "); run `chmod 600 " + path + "`");
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw AgentError(path + ": cannot read the token file");
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    token = agent_detail::trim(std::move(token));
    if (token.size() < 16)
        throw AgentError(path + ": the token is " + std::to_string(token.size()) +
                         " characters; use at least 16 (e.g. `openssl rand -hex 32`)");
    if (token.find_first_of("\r\n") != std::string::npos) throw AgentError(path + ": the token must be one line");
    return token;
}

// The JSON `lamda check --json` prints for an invalid model.
inline std::string invalid_model_json(const std::string& file, const std::vector<Diagnostic>& diagnostics) {
    JsonWriter json;
    json.begin_object().field("valid", false).field("file", file).key("diagnostics").begin_array();
    for (const auto& d : diagnostics)
        json.begin_object()
            .field("file", d.file)
            .field("line", d.line)
            .field("column", d.column)
            .field("message", d.message)
            .field("hint", d.hint)
            .end_object();
    json.end_array().field("error", format_diagnostics(diagnostics)).end_object();
    return json.str();
}

// A measurement as the agent recorded it (for tests and the log): steady-clock seconds.
struct AgentMeasurementSpan {
    std::string what;  // "bench", "measure", "profile"
    double start_s = 0, end_s = 0;
};

class AgentServer {
public:
    explicit AgentServer(AgentOptions options) : options_(std::move(options)) {
        if (options_.token.empty()) throw AgentError("the agent needs a bearer token");
        if (options_.cert_path.empty() != options_.key_path.empty())
            throw AgentError("TLS needs both a certificate and a key");
        if (!options_.cert_path.empty()) {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
            auto ssl = std::make_unique<httplib::SSLServer>(options_.cert_path.c_str(), options_.key_path.c_str());
            if (!ssl->is_valid())
                throw AgentError("cannot load the TLS certificate '" + options_.cert_path + "' and key '" +
                                 options_.key_path + "'");
            server_ = std::move(ssl);
#else
            throw AgentError("this lamda-agent's cpp-httplib has no OpenSSL support: TLS is unavailable");
#endif
        } else {
            server_ = std::make_unique<httplib::Server>();
        }
        device_ = describe_device();
        {
            std::lock_guard<std::timed_mutex> lock(measure_mutex_);
            if (options_.peak_seconds > 0) measure_fma_peak_gflops(device_, options_.peak_seconds);
        }
        setup();
    }

    AgentServer(const AgentServer&) = delete;
    AgentServer& operator=(const AgentServer&) = delete;
    ~AgentServer() { stop(); }

    // Binds; port 0 picks a free one. Returns the port. Throws when the address is taken.
    int bind(const std::string& host, int port) {
        int bound = port;
        if (port == 0) {
            bound = server_->bind_to_any_port(host.c_str());
            if (bound <= 0) throw AgentError("cannot listen on " + host + " (any port)");
        } else if (!server_->bind_to_port(host.c_str(), port)) {
            throw AgentError("cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not this machine's address)");
        }
        port_ = bound;
        return bound;
    }
    // Serves until stop(); the socket is already listening after bind().
    bool listen() { return server_->listen_after_bind(); }
    // Stops serving and ends the profile jobs (a running one is abandoned at its next progress tick).
    void stop() {
        stopping_.store(true);
        if (server_) server_->stop();
        std::vector<std::pair<std::string, std::thread>> threads;
        {
            std::lock_guard<std::mutex> lock(jobs_mutex_);
            threads.swap(job_threads_);
        }
        for (auto& t : threads)
            if (t.second.joinable()) t.second.join();
    }
    int port() const noexcept { return port_; }
    const DeviceInfo& device() const noexcept { return device_; }
    std::vector<AgentMeasurementSpan> measurements() const {
        std::lock_guard<std::mutex> lock(log_mutex_);
        return spans_;
    }

private:
    struct Job {
        std::string id;
        std::string state = "queued";
        std::string progress, error, result;
        std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
    };

    using clock = std::chrono::steady_clock;

    AgentOptions options_;
    std::unique_ptr<httplib::Server> server_;
    DeviceInfo device_;
    int port_ = 0;
    std::timed_mutex measure_mutex_;
    std::atomic<int> waiting_{0};
    std::atomic<bool> stopping_{false};
    mutable std::mutex log_mutex_;
    std::vector<AgentMeasurementSpan> spans_;
    std::mutex jobs_mutex_;
    std::map<std::string, Job> jobs_;
    std::vector<std::pair<std::string, std::thread>> job_threads_;  // job id, its thread
    std::mt19937_64 id_rng_{std::random_device{}()};
    const clock::time_point epoch_ = clock::now();

    double now_s() const { return std::chrono::duration<double>(clock::now() - epoch_).count(); }

    static void send_json(httplib::Response& res, int status, const std::string& body) {
        res.status = status;
        res.set_content(body, "application/json");
    }

    // Holds the measurement lock for one request; 503 when the queue is full or the wait too long.
    class Turn {
    public:
        Turn(AgentServer& s, const char* what) : s_(s), what_(what) {
            if (s_.waiting_.fetch_add(1) >= s_.options_.limits.max_queue) {
                s_.waiting_.fetch_sub(1);
                throw agent_detail::RequestError("busy: " + std::to_string(s_.options_.limits.max_queue) +
                                                     " requests are already waiting for a measurement",
                                                 503);
            }
            const bool got = s_.measure_mutex_.try_lock_for(std::chrono::duration<double>(s_.options_.limits.max_wait_s));
            s_.waiting_.fetch_sub(1);
            if (!got) throw agent_detail::RequestError("busy: waited too long for the measurement in progress", 503);
            start_ = s_.now_s();
        }
        ~Turn() {
            const double end = s_.now_s();
            {
                std::lock_guard<std::mutex> lock(s_.log_mutex_);
                s_.spans_.push_back({what_, start_, end});
                if (s_.spans_.size() > 10000) s_.spans_.erase(s_.spans_.begin());
            }
            s_.measure_mutex_.unlock();
        }
        Turn(const Turn&) = delete;
        Turn& operator=(const Turn&) = delete;

    private:
        AgentServer& s_;
        const char* what_;
        double start_ = 0;
    };

    template <class F>
    void guarded(httplib::Response& res, F&& f) {
        try {
            f();
        } catch (const agent_detail::RequestError& e) {
            if (e.status == 503) res.set_header("Retry-After", "5");
            send_json(res, e.status, agent_detail::json_error(e.what()));
        } catch (const std::bad_alloc&) {
            send_json(res, 507, agent_detail::json_error("out of memory"));
        } catch (const std::exception& e) {
            // The model or the request cannot be measured here (e.g. XNNPACK refused it): not
            // worth retrying, so not a 5xx.
            send_json(res, 422, agent_detail::json_error(e.what()));
        }
    }

    using Reader = JsonReader<agent_detail::RequestError>;

    struct Body {
        simdjson::dom::parser parser;
        simdjson::padded_string padded;
        simdjson::dom::element doc;
    };

    static void parse_body(Body& b, const httplib::Request& req, const char* what,
                           std::initializer_list<std::string_view> keys) {
        b.padded = simdjson::padded_string(req.body);
        Reader r("request", what);
        b.doc = r.parse(b.parser, b.padded);
        r.obj(b.doc, "");
        r.only_keys(b.doc, "", keys);
    }

    static int int_field(const Body& b, const char* key, int fallback, int lo, int hi) {
        Reader r("request", "body");
        if (const auto e = r.maybe(b.doc, key, "")) return static_cast<int>(r.integer(*e, key, lo, hi));
        return fallback;
    }
    static double num_field(const Body& b, const char* key, double fallback, double lo, double hi) {
        Reader r("request", "body");
        if (const auto e = r.maybe(b.doc, key, "")) {
            const double v = r.num(*e, key);
            if (v < lo || v > hi)
                r.fail(key, "outside " + std::to_string(lo) + ".." + std::to_string(hi));
            return v;
        }
        return fallback;
    }
    static std::string str_field(const Body& b, const char* key, const std::string& fallback) {
        Reader r("request", "body");
        if (const auto e = r.maybe(b.doc, key, "")) return r.str(*e, key);
        return fallback;
    }

    // The model of a bench or measure request: DSL within the limits, or a 400 with diagnostics.
    Graph model_of(const Body& b, const std::string& name, httplib::Response& res, bool& ok) const {
        Reader r("request", "body");
        const std::string dsl = r.str(r.at(b.doc, "dsl", ""), "dsl");
        Limits limits;
        limits.max_file_bytes = options_.limits.max_body_bytes;
        limits.max_layers = options_.limits.max_layers;
        limits.max_params = options_.limits.max_params;
        limits.max_activation_bytes = options_.limits.max_activation_bytes;
        ParseResult parsed = parse_dsl(dsl, name, limits);
        if (!parsed.ok()) {
            send_json(res, 400, invalid_model_json(name, parsed.diagnostics));
            ok = false;
            return {};
        }
        const ModelStats stats = analyze(parsed.graph);
        if (stats.macs > options_.limits.max_macs)
            throw agent_detail::RequestError(name + ": " + std::to_string(stats.macs) + " MACs, over this agent's limit of " +
                                             std::to_string(options_.limits.max_macs));
        ok = true;
        return std::move(parsed.graph);
    }

    // One timed run, to refuse up front a request that would run past the time limit.
    void check_duration(const Graph& g, int threads, double runs) const {
        const double once_s = measure_model_ms(g, threads, 1, 0, 60.0, 0.5) / 1000.0;
        const double estimate = once_s * runs;
        if (estimate > options_.limits.time_limit_s) {
            char text[200];
            std::snprintf(text, sizeof text,
                          "this measurement would take about %.1f s (%.3f ms a run), over the agent's limit of %.0f s; "
                          "ask for fewer runs",
                          estimate, once_s * 1000, options_.limits.time_limit_s);
            throw agent_detail::RequestError(text);
        }
    }

    void setup() {
        httplib::Server& s = *server_;
        const AgentLimits& lim = options_.limits;
        const int workers = options_.worker_threads > 0 ? options_.worker_threads : lim.max_queue + 4;
        s.new_task_queue = [workers] { return new httplib::ThreadPool(static_cast<std::size_t>(workers)); };
        s.set_payload_max_length(lim.max_body_bytes);
        auto secs = [](double v, time_t& sec, time_t& usec) {
            sec = static_cast<time_t>(v);
            usec = static_cast<time_t>((v - static_cast<double>(sec)) * 1e6);
        };
        time_t sec = 0, usec = 0;
        secs(options_.read_timeout_s, sec, usec);
        s.set_read_timeout(sec, usec);
        s.set_keep_alive_timeout(sec > 0 ? sec : 1);
        secs(options_.write_timeout_s, sec, usec);
        s.set_write_timeout(sec, usec);
        s.set_keep_alive_max_count(100);

        s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return authorize(req, res); });
        s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return;
            const char* what = res.status == 413 ? "request body over the agent's limit"
                             : res.status == 404 ? "no such endpoint"
                                                 : "request refused";
            send_json(res, res.status, agent_detail::json_error(what));
        });

        // Routes: one named handler each.
        s.Get("/v1/device", [this](const httplib::Request& req, httplib::Response& res) { handle_device(req, res); });
        s.Post("/v1/bench", [this](const httplib::Request& req, httplib::Response& res) { handle_bench(req, res); });
        s.Post("/v1/measure", [this](const httplib::Request& req, httplib::Response& res) { handle_measure(req, res); });
        s.Post("/v1/profile", [this](const httplib::Request& req, httplib::Response& res) { handle_profile(req, res); });
        s.Get(R"(/v1/profile/([0-9a-f]{1,32}))", [this](const httplib::Request& req, httplib::Response& res) { handle_profile_status(req, res); });
        s.Get(R"(/v1/profile/([0-9a-f]{1,32})/result)", [this](const httplib::Request& req, httplib::Response& res) { handle_profile_result(req, res); });
    }

    // Every request must carry the bearer token; answers 401 (and logs) otherwise.
    httplib::Server::HandlerResponse authorize(const httplib::Request& req, httplib::Response& res) {
        const std::string auth = req.get_header_value("Authorization");
        const std::string_view prefix = "Bearer ";
        const bool ok = auth.size() > prefix.size() && std::string_view(auth).substr(0, prefix.size()) == prefix &&
                        agent_detail::equal_constant_time(options_.token, std::string_view(auth).substr(prefix.size()));
        if (options_.log) std::fprintf(stderr, "lamda-agent: %s %s from %s%s\n", req.method.c_str(), req.path.c_str(),
                                       req.remote_addr.c_str(), ok ? "" : " (401)");
        if (ok) return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("WWW-Authenticate", "Bearer");
        res.set_header("Connection", "close");
        send_json(res, 401, agent_detail::json_error(auth.empty() ? "missing bearer token" : "wrong bearer token"));
        return httplib::Server::HandlerResponse::Handled;
    }

    // GET "/v1/device"
    void handle_device(const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, device_json(device_));
    }

    // POST "/v1/bench"
    void handle_bench(const httplib::Request& req, httplib::Response& res) {
        guarded(res, [&] {
            Body b;
            parse_body(b, req, "bench request", {"dsl", "name", "weights_base64", "threads", "runs", "warmup"});
            const std::string name = str_field(b, "name", "<request>");
            BenchOptions o;
            o.threads = int_field(b, "threads", 1, 1, options_.limits.max_threads);
            o.runs = int_field(b, "runs", 50, 1, options_.limits.max_runs);
            o.warmup = int_field(b, "warmup", 5, 0, options_.limits.max_runs);
            o.max_memory_bytes = options_.limits.max_memory_bytes;
            bool ok = false;
            const Graph g = model_of(b, name, res, ok);
            if (!ok) return;
            // Random weights are built only once this request holds the measurement lock, so
            // requests waiting in the queue hold no weights of their own (issue 16).
            Weights weights;
            const std::string encoded = str_field(b, "weights_base64", "");
            if (!encoded.empty()) {
                const std::optional<std::string> bytes = base64_decode(encoded);
                if (!bytes) throw agent_detail::RequestError("weights_base64: not valid base64");
                try {
                    weights = parse_safetensors(*bytes, name + " weights").tensors;
                } catch (const WeightsError& e) {
                    throw agent_detail::RequestError(e.what());
                }
                const auto problems = validate_weights(g, weights);
                if (!problems.empty()) throw agent_detail::RequestError(name + " weights: " + problems.front());
            }
            BenchResult r;
            {
                Turn turn(*this, "bench");
                if (encoded.empty()) weights = random_weights(g, 1);
                check_duration(g, o.threads, o.warmup + 2.0 * o.runs);
                r = benchmark_model(g, weights, o);
            }
            JsonWriter json;
            json.begin_object().field("model", g.name.empty() ? name : g.name);
            write_bench_json(json, r, device_.peak_gflops);
            json.end_object();
            send_json(res, 200, json.str());
        });
    }

    // POST "/v1/measure"
    void handle_measure(const httplib::Request& req, httplib::Response& res) {
        guarded(res, [&] {
            Body b;
            parse_body(b, req, "measure request",
                       {"dsl", "name", "threads", "runs", "warmup", "max_seconds", "quantile"});
            const std::string name = str_field(b, "name", "<request>");
            const int threads = int_field(b, "threads", 1, 1, options_.limits.max_threads);
            const int runs = int_field(b, "runs", 15, 1, options_.limits.max_runs);
            const int warmup = int_field(b, "warmup", 2, 0, 100);
            const double max_seconds = num_field(b, "max_seconds", 2.0, 0.0, options_.limits.time_limit_s);
            const double q = num_field(b, "quantile", 0.5, 0.0, 1.0);
            bool ok = false;
            const Graph g = model_of(b, name, res, ok);
            if (!ok) return;
            double ms = 0;
            {
                Turn turn(*this, "measure");
                check_duration(g, threads, warmup + 3.0);
                ms = measure_model_ms(g, threads, runs, warmup, max_seconds, q);
            }
            JsonWriter json;
            json.begin_object().field("ms", ms).end_object();
            send_json(res, 200, json.str());
        });
    }

    // POST "/v1/profile"
    void handle_profile(const httplib::Request& req, httplib::Response& res) {
        guarded(res, [&] {
            Body b;
            parse_body(b, req, "profile request",
                       {"threads", "budget_s", "calibration_models", "calibration_seed", "seed", "quantile"});
            ProfileOptions o;
            o.threads = int_field(b, "threads", 1, 1, options_.limits.max_threads);
            o.budget_s = num_field(b, "budget_s", 150, 0.05, options_.limits.max_profile_budget_s);
            o.quantile = num_field(b, "quantile", 0.5, 0.0, 1.0);
            const int count = int_field(b, "calibration_models", 320, 0, options_.limits.max_calibration_models);
            Reader r("request", "body");
            std::uint64_t calibration_seed = 0xCA11B;
            if (const auto e = r.maybe(b.doc, "calibration_seed", "")) calibration_seed = r.uinteger(*e, "calibration_seed");
            if (const auto e = r.maybe(b.doc, "seed", "")) o.seed = r.uinteger(*e, "seed");
            std::string id;
            {
                std::lock_guard<std::mutex> lock(jobs_mutex_);
                int active = 0;
                for (const auto& [key, job] : jobs_) active += job.state == "queued" || job.state == "running";
                if (active >= options_.limits.max_queue)
                    throw agent_detail::RequestError("busy: " + std::to_string(active) + " profile jobs queued or running", 503);
                while (static_cast<int>(jobs_.size()) >= options_.limits.max_jobs) {  // forget the oldest finished
                    auto oldest = jobs_.end();
                    for (auto it = jobs_.begin(); it != jobs_.end(); ++it)
                        if ((it->second.state == "done" || it->second.state == "failed") &&
                            (oldest == jobs_.end() || it->second.created < oldest->second.created))
                            oldest = it;
                    if (oldest == jobs_.end()) break;
                    jobs_.erase(oldest);
                }
                char hex[17];
                std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id_rng_()));
                id = hex;
                jobs_[id].id = id;
                reap_finished_jobs();
                job_threads_.emplace_back(id, std::thread([this, id, o, count, calibration_seed]() mutable {
                    run_job(id, o, count, calibration_seed);
                }));
            }
            JsonWriter json;
            json.begin_object().field("id", id).field("state", "queued").end_object();
            send_json(res, 202, json.str());
        });
    }

    // GET R"(/v1/profile/([0-9a-f]{1,32}))"
    void handle_profile_status(const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(jobs_mutex_);
        const auto it = jobs_.find(req.matches[1].str());
        if (it == jobs_.end()) return send_json(res, 404, agent_detail::json_error("no such profile job"));
        const Job& j = it->second;
        JsonWriter json;
        json.begin_object()
            .field("id", j.id)
            .field("state", j.state)
            .field("progress", j.progress)
            .field("error", j.error)
            .field("elapsed_s", std::chrono::duration<double>(clock::now() - j.created).count())
            .end_object();
        send_json(res, 200, json.str());
    }

    // GET R"(/v1/profile/([0-9a-f]{1,32})/result)"
    void handle_profile_result(const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(jobs_mutex_);
        const auto it = jobs_.find(req.matches[1].str());
        if (it == jobs_.end()) return send_json(res, 404, agent_detail::json_error("no such profile job"));
        const Job& j = it->second;
        if (j.state == "failed") return send_json(res, 422, agent_detail::json_error("profile job failed: " + j.error));
        if (j.state != "done") return send_json(res, 409, agent_detail::json_error("profile job is " + j.state));
        send_json(res, 200, j.result);
    }

    struct Stopped {};

    // Joins the threads of finished profile jobs (and of forgotten ones, which had finished).
    // Called with jobs_mutex_ held: a finished job's thread has set its state under that lock
    // and takes no lock after, so the join cannot wait on us.
    void reap_finished_jobs() {
        for (auto it = job_threads_.begin(); it != job_threads_.end();) {
            const auto job = jobs_.find(it->first);
            const bool finished = job == jobs_.end() || job->second.state == "done" || job->second.state == "failed";
            if (finished && it->second.joinable()) {
                it->second.join();
                it = job_threads_.erase(it);
            } else {
                ++it;
            }
        }
    }

    void set_job(const std::string& id, const std::function<void(Job&)>& f) {
        std::lock_guard<std::mutex> lock(jobs_mutex_);
        const auto it = jobs_.find(id);
        if (it != jobs_.end()) f(it->second);
    }

    void run_job(const std::string& id, ProfileOptions o, int count, std::uint64_t calibration_seed) {
        try {
            std::vector<std::string> families;
            auto models = lamda::calibration_models(calibration_seed, count, families);
            o.progress = [this, &id](const std::string& line) {
                if (stopping_.load()) throw Stopped{};
                set_job(id, [&](Job& j) { j.progress = line; });
            };
            LatencyProfile p;
            {
                // Waits for its turn like any request, but without a queue limit (the job was accepted).
                while (!measure_mutex_.try_lock_for(std::chrono::milliseconds(100)))
                    if (stopping_.load()) throw Stopped{};
                std::unique_lock<std::timed_mutex> lock(measure_mutex_, std::adopt_lock);
                const double start = now_s();
                set_job(id, [](Job& j) { j.state = "running"; });
                try {
                    p = profile_device(o, models, families);
                } catch (...) {
                    std::lock_guard<std::mutex> log(log_mutex_);
                    spans_.push_back({"profile", start, now_s()});
                    throw;
                }
                std::lock_guard<std::mutex> log(log_mutex_);
                spans_.push_back({"profile", start, now_s()});
            }
            p.calibration_seed = static_cast<std::int64_t>(calibration_seed & 0x7fffffffffffffffull);
            std::string text = latency_profile_json(p);
            set_job(id, [&](Job& j) {
                j.result = std::move(text);
                j.state = "done";
            });
        } catch (const Stopped&) {
            set_job(id, [](Job& j) {
                j.state = "failed";
                j.error = "the agent stopped";
            });
        } catch (const std::exception& e) {
            const std::string what = e.what();
            set_job(id, [&](Job& j) {
                j.state = "failed";
                j.error = what;
            });
        }
    }
};

// ---- the host side ----

struct AgentClientOptions {
    std::string token;           // empty: LAMDA_AGENT_TOKEN
    double connect_timeout_s = 10;
    double timeout_s = 900;      // read/write, per request (a benchmark may wait for its turn)
    int attempts = 3;            // on connection errors and 5xx
    double retry_delay_s = 1;    // doubled after each failed attempt
    std::string ca_cert_path;    // https: verify against this CA (empty: LAMDA_AGENT_CA_CERT, else the system's)
    bool verify_tls = true;
};

struct AgentBenchResult {
    std::string model;
    double peak_gflops = 0;
    BenchResult result;  // per_op: name, op, lowering, median_ms, macs
    std::string json;    // the agent's JSON, as `lamda bench --json` prints it
};

struct AgentProfileRequest {
    int threads = 1;
    double budget_s = 150;
    int calibration_models = 320;
    std::uint64_t calibration_seed = 0xCA11B;
    std::uint64_t seed = 1;
    double quantile = 0.5;
};

struct AgentJobStatus {
    std::string id, state, progress, error;
    double elapsed_s = 0;
};

class AgentClient {
public:
    explicit AgentClient(std::string url, AgentClientOptions options = {}) : url_(std::move(url)), options_(std::move(options)) {
        while (!url_.empty() && url_.back() == '/') url_.pop_back();
        const auto scheme_end = url_.find("://");
        if (scheme_end == std::string::npos || (url_.compare(0, scheme_end, "http") != 0 && url_.compare(0, scheme_end, "https") != 0))
            throw AgentError("device '" + url_ + "': expected http://HOST:PORT or https://HOST:PORT");
        https_ = url_.compare(0, scheme_end, "https") == 0;
#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (https_) throw AgentError("device " + url_ + ": this lamda's cpp-httplib has no OpenSSL support (https)");
#endif
        const std::string rest = url_.substr(scheme_end + 3);
        const auto slash = rest.find('/');
        authority_ = rest.substr(0, slash);
        if (slash != std::string::npos) prefix_ = rest.substr(slash);
        if (authority_.empty()) throw AgentError("device '" + url_ + "': no host");
        if (options_.token.empty())
            if (const char* t = std::getenv("LAMDA_AGENT_TOKEN")) options_.token = agent_detail::trim(t);
        if (options_.token.empty())
            throw AgentError("device " + url_ + ": no token (set LAMDA_AGENT_TOKEN to the agent's token)");
        if (options_.ca_cert_path.empty())
            if (const char* ca = std::getenv("LAMDA_AGENT_CA_CERT")) options_.ca_cert_path = ca;
    }

    const std::string& url() const noexcept { return url_; }
    // "board_7070": the device's host and port, as a file-name part.
    std::string file_tag() const {
        std::string out;
        for (char c : authority_)
            out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
        return out;
    }

    // The JSON of `lamda device --json`, measured on the board, and parsed.
    std::string device_json_text() { return request("GET", "/v1/device", ""); }
    DeviceInfo device() {
        const std::string text = device_json_text();
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(text);
        Reader r(url_, "device reply");
        const auto doc = r.parse(parser, padded);
        DeviceInfo d;
        d.cpu_model = r.str(r.at(doc, "cpu_model", ""), "cpu_model");
        d.architecture = r.str(r.at(doc, "architecture", ""), "architecture");
        d.isa = r.strings(r.at(doc, "isa", ""), "isa");
        d.xnnpack_isa = r.str(r.at(doc, "xnnpack_isa", ""), "xnnpack_isa");
        d.logical_cores = static_cast<int>(r.integer(r.at(doc, "logical_cores", ""), "logical_cores", 0, 1 << 20));
        d.fma_kernel = r.str(r.at(doc, "fma_kernel", ""), "fma_kernel");
        d.peak_gflops = r.num(r.at(doc, "peak_gflops", ""), "peak_gflops");
        return d;
    }

    // Benchmarks `dsl` on the board (`lamda bench`). `name` labels diagnostics and the result;
    // `safetensors` (the file's bytes) are the weights, random when empty.
    AgentBenchResult bench(const std::string& dsl, const BenchOptions& o = {}, const std::string& name = "<model>",
                           const std::string& safetensors = "") {
        JsonWriter body;
        body.begin_object().field("dsl", dsl).field("name", name).field("threads", o.threads).field("runs", o.runs).field("warmup", o.warmup);
        if (!safetensors.empty()) body.field("weights_base64", base64_encode(safetensors));
        body.end_object();
        AgentBenchResult out;
        out.json = request("POST", "/v1/bench", body.str());
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(out.json);
        Reader r(url_, "bench reply");
        const auto doc = r.parse(parser, padded);
        BenchResult& b = out.result;
        out.model = r.str(r.at(doc, "model", ""), "model");
        b.median_ms = r.num(r.at(doc, "median_ms", ""), "median_ms");
        b.p10_ms = r.num(r.at(doc, "p10_ms", ""), "p10_ms");
        b.p90_ms = r.num(r.at(doc, "p90_ms", ""), "p90_ms");
        b.min_ms = r.num(r.at(doc, "min_ms", ""), "min_ms");
        b.threads = static_cast<int>(r.integer(r.at(doc, "threads", ""), "threads", 1, 1024));
        b.runs = static_cast<int>(r.integer(r.at(doc, "runs", ""), "runs", 0, 100000000));
        b.warmup = static_cast<int>(r.integer(r.at(doc, "warmup", ""), "warmup", 0, 100000000));
        b.macs = r.integer(r.at(doc, "macs", ""), "macs", 0, INT64_MAX);
        b.params = r.integer(r.at(doc, "params", ""), "params", 0, INT64_MAX);
        b.gflops = r.num(r.at(doc, "gflops", ""), "gflops");
        if (const auto e = r.maybe(doc, "peak_gflops", "")) out.peak_gflops = r.num(*e, "peak_gflops");
        std::size_t i = 0;
        for (const auto op : r.arr(r.at(doc, "per_op", ""), "per_op")) {
            const std::string path = Reader::index("per_op", i++);
            OpTiming t;
            t.name = r.str(r.at(op, "name", path), path + ".name");
            dsl_detail::lookup_op(r.str(r.at(op, "op", path), path + ".op"), t.op);
            const std::string lowering = r.str(r.at(op, "lowering", path), path + ".lowering");
            t.lowering = lowering == "fused" ? XnnLowering::Fused
                       : lowering == "alias" ? XnnLowering::Alias
                       : lowering == "loop"  ? XnnLowering::Loop
                                             : XnnLowering::Operators;
            t.median_ms = r.num(r.at(op, "median_ms", path), path + ".median_ms");
            t.macs = r.integer(r.at(op, "macs", path), path + ".macs", 0, INT64_MAX);
            b.per_op.push_back(std::move(t));
        }
        return out;
    }

    // The whole-model timing of `lamda eval-predictor` (measure_model_ms), on the board.
    double measure_ms(const std::string& dsl, int threads = 1, int runs = 15, int warmup = 2, double max_seconds = 2.0,
                      double q = 0.5, const std::string& name = "<model>") {
        JsonWriter body;
        body.begin_object()
            .field("dsl", dsl)
            .field("name", name)
            .field("threads", threads)
            .field("runs", runs)
            .field("warmup", warmup)
            .field("max_seconds", max_seconds)
            .field("quantile", q)
            .end_object();
        const std::string text = request("POST", "/v1/measure", body.str());
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(text);
        Reader r(url_, "measure reply");
        const auto doc = r.parse(parser, padded);
        return r.num(r.at(doc, "ms", ""), "ms");
    }

    std::string start_profile(const AgentProfileRequest& p) {
        JsonWriter body;
        body.begin_object()
            .field("threads", p.threads)
            .field("budget_s", p.budget_s)
            .field("calibration_models", p.calibration_models)
            .field("calibration_seed", p.calibration_seed)
            .field("seed", p.seed)
            .field("quantile", p.quantile)
            .end_object();
        const std::string text = request("POST", "/v1/profile", body.str());
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(text);
        Reader r(url_, "profile reply");
        return r.str(r.at(r.parse(parser, padded), "id", ""), "id");
    }

    AgentJobStatus profile_status(const std::string& id) {
        const std::string text = request("GET", "/v1/profile/" + id, "");
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(text);
        Reader r(url_, "profile status");
        const auto doc = r.parse(parser, padded);
        AgentJobStatus s;
        s.id = r.str(r.at(doc, "id", ""), "id");
        s.state = r.str(r.at(doc, "state", ""), "state");
        s.progress = r.str(r.at(doc, "progress", ""), "progress");
        s.error = r.str(r.at(doc, "error", ""), "error");
        s.elapsed_s = r.num(r.at(doc, "elapsed_s", ""), "elapsed_s");
        return s;
    }

    // The profile JSON (as `lamda profile --out` writes it) of a finished job.
    std::string profile_result_json(const std::string& id) { return request("GET", "/v1/profile/" + id + "/result", ""); }

    // Starts a job, polls it (calling `progress` with each new status) and returns the profile JSON.
    std::string profile(const AgentProfileRequest& p, const std::function<void(const AgentJobStatus&)>& progress = {},
                        double poll_s = 1.0) {
        const std::string id = start_profile(p);
        for (;;) {
            const AgentJobStatus s = profile_status(id);
            if (progress) progress(s);
            if (s.state == "done") return profile_result_json(id);
            if (s.state == "failed") throw AgentError("device " + url_ + ": profile job " + id + " failed: " + s.error, 422);
            std::this_thread::sleep_for(std::chrono::duration<double>(poll_s));
        }
    }

    // Sends one request; retries connection errors and 5xx, then throws AgentError naming the device.
    std::string request(const std::string& method, const std::string& path, const std::string& body) {
        std::string last;
        int last_status = 0;
        double delay = options_.retry_delay_s;
        const int attempts = std::max(1, options_.attempts);
        for (int attempt = 1; attempt <= attempts; ++attempt) {
            httplib::Result res = send(method, prefix_ + path, body);
            if (!res) {
                last = "no answer (" + httplib::to_string(res.error()) + " error)";
                last_status = 0;
            } else if (res->status >= 200 && res->status < 300) {
                return res->body;
            } else {
                last_status = res->status;
                last = "HTTP " + std::to_string(res->status) + ": " + error_text(res->body);
                if (res->status < 500) break;  // the request itself is wrong: no retry
                if (res->status == 503 && res->has_header("Retry-After")) {
                    const double after = std::atof(res->get_header_value("Retry-After").c_str());
                    if (after > 0) delay = std::max(delay, std::min(after, 60.0));
                }
            }
            if (attempt < attempts) {
                std::this_thread::sleep_for(std::chrono::duration<double>(delay));
                delay *= 2;
            }
        }
        const bool gave_up = last_status == 0 || last_status >= 500;
        throw AgentError("device " + url_ + ": " + method + " " + path + ": " + last +
                             (gave_up ? " (after " + std::to_string(attempts) + " attempt" + (attempts == 1 ? "" : "s") + ")" : ""),
                         last_status);
    }

private:
    using Reader = JsonReader<AgentError>;

    std::string url_, authority_, prefix_;
    bool https_ = false;
    AgentClientOptions options_;

    static std::string error_text(const std::string& body) {
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(body);
        simdjson::dom::element doc;
        std::string_view v;
        if (!parser.parse(padded).get(doc) && !doc["error"].get(v)) return agent_detail::trim(std::string(v));
        return body.size() > 300 ? body.substr(0, 300) + "..." : body;
    }

    httplib::Result send(const std::string& method, const std::string& path, const std::string& body) {
        httplib::Client cli((https_ ? "https://" : "http://") + authority_);
        auto secs = [](double v, time_t& sec, time_t& usec) {
            sec = static_cast<time_t>(v);
            usec = static_cast<time_t>((v - static_cast<double>(sec)) * 1e6);
        };
        time_t sec = 0, usec = 0;
        secs(options_.connect_timeout_s, sec, usec);
        cli.set_connection_timeout(sec, usec);
        secs(options_.timeout_s, sec, usec);
        cli.set_read_timeout(sec, usec);
        cli.set_write_timeout(sec, usec);
        cli.set_bearer_token_auth(options_.token.c_str());
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (https_) {
            if (!options_.ca_cert_path.empty()) cli.set_ca_cert_path(options_.ca_cert_path.c_str());
            cli.enable_server_certificate_verification(options_.verify_tls);
        }
#endif
        if (method == "GET") return cli.Get(path.c_str());
        return cli.Post(path.c_str(), body, "application/json");
    }
};

// GenerateSetup::measure through an agent: the same measurement as xnnpack_measure, on the board.
inline std::function<Measurement(const Graph&)> agent_measure(std::shared_ptr<AgentClient> client, int threads,
                                                              int runs = 30, int warmup = 5) {
    return [client = std::move(client), threads, runs, warmup](const Graph& g) {
        BenchOptions o;
        o.threads = threads;
        o.runs = runs;
        o.warmup = warmup;
        const AgentBenchResult r = client->bench(print_dsl(g), o, g.name.empty() ? "candidate" : g.name);
        Measurement m;
        m.median_ms = r.result.median_ms;
        for (const OpTiming& t : r.result.per_op)
            if (t.median_ms > 0) m.per_layer.push_back({t.name, t.median_ms, 0.0});
        double total = 0;
        for (const auto& l : m.per_layer) total += l.ms;
        for (auto& l : m.per_layer) l.share = total > 0 ? l.ms / total : 0;
        return m;
    };
}

// "P.json" for one device; "P.<host_port>.json" for each of several (`lamda profile --device`).
inline std::string agent_profile_path(const std::string& out, const AgentClient& client, bool several) {
    if (!several) return out;
    const auto slash = out.find_last_of('/');
    const auto dot = out.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return out + "." + client.file_tag();
    return out.substr(0, dot) + "." + client.file_tag() + out.substr(dot);
}

}  // namespace lamda

#endif  // LAMDA_WITH_AGENT
#endif  // LAMDA_AGENT_AGENT_HPP
