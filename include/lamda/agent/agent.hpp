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

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
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
#include <system_error>
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
#include "../data/dataset.hpp"
#include "../data/weights.hpp"

// After lamda's headers: <httplib.h> pulls in <resolv.h>, whose `_res` macro breaks Eigen
// (latency/model.hpp) when it comes first.
#include <httplib.h>
#include <simdjson.h>

#include "../detail/http_client.hpp"
#include "../detail/url.hpp"

namespace lamda {

// A failed agent request, on either side. `status` is the HTTP status (0: no response at all).
class AgentError : public Exception {
public:
    explicit AgentError(const std::string& what, int status_ = 0)
        : Exception(what, status_ == 0 ? ErrorKind::device : ErrorKind::server), status(status_) {}
    int status = 0;
};

// What one request (and one connection) may make the agent do. The network limits hold for
// every client, with or without the token: docs/security.md, "Agent and network".
struct AgentLimits {
    std::size_t max_body_bytes = std::size_t{16} << 20;  // 413 above (Content-Length only: 411 without one)
    double head_timeout_s = 5;      // request line + headers must arrive within this (408 after)
    double body_timeout_s = 120;    // the body must arrive within this once the head is in (408 after)
    std::size_t max_head_bytes = 64 * 1024;  // request line + headers (431 above)
    int max_headers = 100;          // header lines (431 above)
    int max_connections = 64;       // served at once, each on a thread of its own; 503 and closed beyond
    std::int64_t memory_budget_bytes = std::int64_t{2} << 30;  // bodies + uploaded/random weights held at once (503 beyond)
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
    double read_timeout_s = 10;     // a client that sends nothing for this long is dropped
    double write_timeout_s = 30;    // a whole response must be taken within this
    double keep_alive_timeout_s = 5;  // an idle kept-alive connection is closed after this
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

// ---- the agent's connection handling (issue 16) ----
// cpp-httplib 0.11 reads a request with a timeout per read only, has no cap on the number or
// total size of headers, takes chunked and length-less bodies without --max-body-bytes and
// inflates gzip/deflate bodies without a bound; its thread pool lets slow clients hold every
// worker. Its parser and router are kept, but the agent owns the socket: GuardedHttpServer
// reads through a DeadlineStream (whole-head and whole-body deadlines, head byte and header
// line caps), serves each connection on a thread of its own up to max_connections, and
// AgentServer::authorize refuses every body framing but one Content-Length (docs/security.md).
// With a certificate (--cert/--key) it runs TLS itself on the same stream (OpenSSL on a
// non-blocking socket): the handshake counts against the first head deadline, and every limit
// above holds as for plain HTTP. (httplib's SSLServer would keep its own unguarded loop.)

// One budget for the memory requests hold at once (bodies, decoded and built weights).
class MemoryBudget {
public:
    explicit MemoryBudget(std::int64_t cap) : cap_(cap) {}
    bool try_take(std::int64_t n) noexcept {
        if (n <= 0) return true;
        std::int64_t used = used_.load();
        for (;;) {
            if (n > cap_ - used) return false;
            if (used_.compare_exchange_weak(used, used + n)) return true;
        }
    }
    void give(std::int64_t n) noexcept {
        if (n > 0) used_.fetch_sub(n);
    }
    std::int64_t used() const noexcept { return used_.load(); }
    std::int64_t cap() const noexcept { return cap_; }

private:
    std::atomic<std::int64_t> used_{0};
    std::int64_t cap_;
};

// What the connection's thread knows about the request in progress.
struct ConnectionState {
    MemoryBudget* budget = nullptr;
    std::int64_t reserved = 0;   // taken from *budget for this request
    int refusal_status = 0;      // set when the stream refused the request (then 408/431/413)
    std::string refusal;
    bool close = false;          // answer, then close the connection (body left unread)

    // Takes `n` more bytes for this request; false (nothing taken) when over the budget.
    bool reserve(std::int64_t n) noexcept {
        if (budget == nullptr) return true;
        if (!budget->try_take(n)) return false;
        reserved += n;
        return true;
    }
    void release() noexcept {
        if (budget != nullptr) budget->give(reserved);
        reserved = 0;
    }
    void refuse(int status, std::string why) {
        if (refusal_status == 0) {
            refusal_status = status;
            refusal = std::move(why);
        }
        close = true;
    }
};

inline ConnectionState*& current_connection() noexcept {
    static thread_local ConnectionState* state = nullptr;
    return state;
}
inline bool& reject_connection() noexcept {  // set while the accept thread turns a connection away
    static thread_local bool reject = false;
    return reject;
}

inline std::string seconds_text(double s) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", s);
    return text;
}

// A plain socket read with deadlines: the head (request line and headers) must be complete by
// head_deadline, the body by body_deadline (set when the head ends), and no single wait for
// bytes lasts longer than read_timeout_s. The head is watched byte by byte as httplib takes it:
// more than max_head_bytes, or more than max_headers lines, ends the request (431).
class DeadlineStream final : public httplib::Stream {
public:
    using clock = std::chrono::steady_clock;

    DeadlineStream(int fd, const AgentLimits& limits, double read_timeout_s, double write_timeout_s)
        : fd_(fd), limits_(limits), read_timeout_s_(read_timeout_s), write_timeout_s_(write_timeout_s) {}

    // Starts the next request on this connection: the head deadline counts from `start`.
    void begin_request(clock::time_point start) {
        in_head_ = true;
        head_bytes_ = 0;
        lines_ = 0;
        line_length_ = 0;
        head_deadline_ = start + to_duration(limits_.head_timeout_s);
        write_deadline_set_ = false;
        written_ = 0;
    }
    std::size_t written() const noexcept { return written_; }
    bool buffered() const noexcept { return pos_ < end_ || tls_pending(); }

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    // Runs the TLS handshake on `ssl` (its socket non-blocking) until `deadline`; from then on
    // every read and write goes through it. False (and a refusal to log) when it fails or is late.
    bool accept_tls(SSL* ssl, clock::time_point deadline) {
        ssl_ = ssl;
        for (;;) {
            const int r = SSL_accept(ssl);
            if (r == 1) return true;
            const int err = SSL_get_error(ssl, r);
            const short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
            if (events == 0) return false;
            if (wait(events, deadline) <= 0) {
                refuse(408, "TLS handshake not complete within " + seconds_text(limits_.head_timeout_s) + " s");
                return false;
            }
        }
    }
#endif

    bool is_readable() const override { return pos_ < end_ || tls_pending() || wait(POLLIN, read_deadline()) > 0; }
    bool is_writable() const override { return wait(POLLOUT, write_deadline()) > 0; }

    ssize_t read(char* ptr, std::size_t size) override {
        if (size == 0) return 0;
        if (pos_ == end_) {
            const ssize_t n = fill();
            if (n <= 0) return n;
            pos_ = 0;
            end_ = static_cast<std::size_t>(n);
        }
        std::size_t n = std::min(size, end_ - pos_);
        if (in_head_) {
            // Hand out the head byte by byte's worth of scanning; stop at its end so that the
            // body's bytes are counted against the body's deadline.
            for (std::size_t i = 0; i < n; ++i) {
                const char c = buffer_[pos_ + i];
                if (++head_bytes_ > limits_.max_head_bytes) {
                    refuse(431, "request head over " + std::to_string(limits_.max_head_bytes) + " bytes");
                    return -1;
                }
                if (c == '\n') {
                    if (line_length_ == 0 && lines_ > 0) {
                        in_head_ = false;
                        body_deadline_ = clock::now() + to_duration(limits_.body_timeout_s);
                        n = i + 1;
                        break;
                    }
                    line_length_ = 0;
                    if (++lines_ > limits_.max_headers + 1) {
                        refuse(431, "more than " + std::to_string(limits_.max_headers) + " header lines");
                        return -1;
                    }
                } else if (c != '\r') {
                    ++line_length_;
                }
            }
        }
        std::memcpy(ptr, buffer_ + pos_, n);
        pos_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, std::size_t size) override {
        if (!write_deadline_set_) {
            write_deadline_ = clock::now() + to_duration(write_timeout_s_);
            write_deadline_set_ = true;
        }
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (ssl_ != nullptr) {
            // Non-blocking: retried with the same bytes until the write deadline.
            const int chunk = static_cast<int>(std::min<std::size_t>(size, 1 << 20));
            for (;;) {
                const int n = SSL_write(ssl_, ptr, chunk);
                if (n > 0) {
                    written_ += static_cast<std::size_t>(n);
                    return n;
                }
                const int err = SSL_get_error(ssl_, n);
                const short events = err == SSL_ERROR_WANT_WRITE ? POLLOUT : err == SSL_ERROR_WANT_READ ? POLLIN : 0;
                if (events == 0 || wait(events, write_deadline()) <= 0) return -1;
            }
        }
#endif
        if (wait(POLLOUT, write_deadline()) <= 0) return -1;
        ssize_t n = 0;
        do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n > 0) written_ += static_cast<std::size_t>(n);
        return n;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
    socket_t socket() const override { return fd_; }

private:
    int fd_;
    const AgentLimits& limits_;
    double read_timeout_s_, write_timeout_s_;
    bool in_head_ = true;
    std::size_t head_bytes_ = 0, line_length_ = 0;
    int lines_ = 0;
    clock::time_point head_deadline_{}, body_deadline_{}, write_deadline_{};
    bool write_deadline_set_ = false;
    std::size_t written_ = 0;
    char buffer_[4096];
    std::size_t pos_ = 0, end_ = 0;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    SSL* ssl_ = nullptr;
#endif

    bool tls_pending() const {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        return ssl_ != nullptr && SSL_pending(ssl_) > 0;
#else
        return false;
#endif
    }
    // Fills buffer_ within the read deadline: >0 bytes, 0 at the end of the stream, -1 on an
    // error or a deadline (refused with 408).
    ssize_t fill() {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (ssl_ != nullptr) {
            // A TLS record that trickles in is bounded like plain bytes: the socket is
            // non-blocking and every wait for more is a poll() against the same deadline.
            short events = POLLIN;
            for (;;) {
                if (!tls_pending()) {
                    const int ready = wait(events, read_deadline());
                    if (ready <= 0) {
                        if (ready == 0) timed_out();
                        return -1;
                    }
                }
                const int n = SSL_read(ssl_, buffer_, static_cast<int>(sizeof buffer_));
                if (n > 0) return n;
                const int err = SSL_get_error(ssl_, n);
                if (err == SSL_ERROR_ZERO_RETURN) return 0;
                if (err == SSL_ERROR_WANT_READ) events = POLLIN;
                else if (err == SSL_ERROR_WANT_WRITE) events = POLLOUT;
                else return -1;
            }
        }
#endif
        const int ready = wait(POLLIN, read_deadline());
        if (ready <= 0) {
            if (ready == 0) timed_out();
            return -1;
        }
        ssize_t n = 0;
        do n = ::recv(fd_, buffer_, sizeof buffer_, 0);
        while (n < 0 && errno == EINTR);
        return n;
    }

    static clock::duration to_duration(double s) {
        return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::min(s, 1e6)));
    }
    clock::time_point read_deadline() const {
        const clock::time_point whole = in_head_ ? head_deadline_ : body_deadline_;
        return std::min(whole, clock::now() + to_duration(read_timeout_s_));
    }
    clock::time_point write_deadline() const {
        return write_deadline_set_ ? write_deadline_ : clock::now() + to_duration(write_timeout_s_);
    }
    // poll() until `deadline`: >0 ready, 0 timed out, <0 error.
    int wait(short events, clock::time_point deadline) const {
        for (;;) {
            const auto rest = deadline - clock::now();
            if (rest <= clock::duration::zero()) return 0;
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(rest).count();  // never 0 before the deadline
            pollfd p{fd_, events, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
            if (r < 0 && errno == EINTR) continue;
            if (r == 0) continue;  // re-check the deadline (poll may wake early)
            if (r > 0 && (p.revents & (POLLERR | POLLNVAL)) != 0 && (p.revents & events) == 0) return -1;
            return r;
        }
    }
    void timed_out() {
        const auto now = clock::now();
        if (in_head_ && now >= head_deadline_)
            refuse(408, "request head not complete within " + seconds_text(limits_.head_timeout_s) + " s");
        else if (!in_head_ && now >= body_deadline_)
            refuse(408, "request body not complete within " + seconds_text(limits_.body_timeout_s) + " s");
        else
            refuse(408, "nothing received for " + seconds_text(read_timeout_s_) + " s");
    }
    void refuse(int status, std::string why) {
        if (ConnectionState* c = current_connection()) c->refuse(status, std::move(why));
    }
    void address(bool local, std::string& ip, int& port) const {
        sockaddr_storage a{};
        socklen_t len = sizeof a;
        ip.clear();
        port = 0;
        const int r = local ? ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len)
                            : ::getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        if (r != 0) return;
        char text[INET6_ADDRSTRLEN] = {};
        if (a.ss_family == AF_INET) {
            const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
            ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
            port = ntohs(in->sin_port);
        } else if (a.ss_family == AF_INET6) {
            const auto* in = reinterpret_cast<const sockaddr_in6*>(&a);
            ::inet_ntop(AF_INET6, &in->sin6_addr, text, sizeof text);
            port = ntohs(in->sin6_port);
        }
        ip = text;
    }
};

// Each connection on a thread of its own, at most `max` at once; one more is turned away at
// once on the accepting thread (503, closed) instead of waiting behind slow clients.
class ConnectionThreads final : public httplib::TaskQueue {
public:
    explicit ConnectionThreads(int max) : max_(std::max(1, max)), state_(std::make_shared<State>()) {}
    void enqueue(std::function<void()> fn) override {
        bool admitted = false;
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            if (state_->active < max_) {
                ++state_->active;
                admitted = true;
            }
        }
        if (admitted) {
            try {
                std::thread([state = state_, fn]() {
                    fn();
                    std::lock_guard<std::mutex> lock(state->mutex);
                    --state->active;
                    state->done.notify_all();
                }).detach();
                return;
            } catch (const std::system_error&) {
                std::lock_guard<std::mutex> lock(state_->mutex);
                --state_->active;
            }
        }
        reject_connection() = true;  // process_and_close_socket answers 503 without reading
        fn();
        reject_connection() = false;
    }
    void shutdown() override {
        std::unique_lock<std::mutex> lock(state_->mutex);
        state_->done.wait(lock, [this] { return state_->active == 0; });
    }

private:
    struct State {
        std::mutex mutex;
        std::condition_variable done;
        int active = 0;
    };
    int max_;
    std::shared_ptr<State> state_;
};

// A whole response for a request httplib did not answer (refused on its request line).
inline std::string refusal_text(int status, const std::string& why) {
    const std::string body = json_error(why);
    const char* reason = status == 408 ? "Request Timeout" : status == 431 ? "Request Header Fields Too Large"
                       : status == 503 ? "Service Unavailable" : "Bad Request";
    return "HTTP/1.1 " + std::to_string(status) + " " + reason +
           "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n" + (status == 503 ? "Retry-After: 5\r\n" : "") + "\r\n" + body;
}
inline void write_refusal(httplib::Stream& strm, int status, const std::string& why) {
    const std::string text = refusal_text(status, why);
    for (std::size_t at = 0; at < text.size();) {
        const ssize_t n = strm.write(text.data() + at, text.size() - at);
        if (n <= 0) return;
        at += static_cast<std::size_t>(n);
    }
}

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
// The TLS context of --cert/--key, made as httplib's SSLServer makes it (TLS 1.2 or later, no
// compression or renegotiation).
inline SSL_CTX* make_tls_context(const std::string& cert_path, const std::string& key_path) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) throw AgentError("cannot make a TLS context");
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_path.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        throw AgentError("cannot load the TLS certificate '" + cert_path + "' and key '" + key_path + "'");
    }
    return ctx;
}

#endif

// httplib::Server with the connection loop above, for plain HTTP and (with a TLS context) HTTPS.
class GuardedHttpServer final : public httplib::Server {
public:
    GuardedHttpServer(const AgentLimits& limits, MemoryBudget& budget, double read_timeout_s, double write_timeout_s,
                      double keep_alive_timeout_s, const std::string& cert_path = "", const std::string& key_path = "")
        : limits_(limits), budget_(budget), read_timeout_s_(read_timeout_s), write_timeout_s_(write_timeout_s),
          keep_alive_timeout_s_(keep_alive_timeout_s) {
        if (!cert_path.empty()) {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
            tls_ = make_tls_context(cert_path, key_path);
#else
            (void)key_path;
            throw AgentError("this lamda-agent's cpp-httplib has no OpenSSL support: TLS is unavailable");
#endif
        }
    }
    ~GuardedHttpServer() override {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (tls_ != nullptr) SSL_CTX_free(tls_);
#endif
    }
    GuardedHttpServer(const GuardedHttpServer&) = delete;
    GuardedHttpServer& operator=(const GuardedHttpServer&) = delete;

private:
    const AgentLimits& limits_;
    MemoryBudget& budget_;
    double read_timeout_s_, write_timeout_s_, keep_alive_timeout_s_;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
    SSL_CTX* tls_ = nullptr;
#endif

    bool tls() const noexcept {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        return tls_ != nullptr;
#else
        return false;
#endif
    }

    bool process_and_close_socket(socket_t sock) override {
        if (reject_connection()) {
            // On the accepting thread: nothing here may wait. What the client already sent is
            // drained without waiting, so that closing does not reset the answer away. A TLS
            // client is closed without an answer (a handshake could wait).
            char sink[4096];
            for (int i = 0; i < 16 && ::recv(sock, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {}
            if (!tls()) {
                const std::string text = refusal_text(503, "busy: " + std::to_string(limits_.max_connections) +
                                                               " connections already open");
                (void)!::send(sock, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            ::shutdown(sock, SHUT_WR);
            ::close(sock);
            return false;
        }
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (tls_ != nullptr) {
            detail::BlockSigpipe no_sigpipe;  // OpenSSL writes with write()
            const int flags = ::fcntl(sock, F_GETFL, 0);
            SSL* ssl = flags < 0 || ::fcntl(sock, F_SETFL, flags | O_NONBLOCK) != 0 ? nullptr : SSL_new(tls_);
            if (ssl == nullptr || SSL_set_fd(ssl, sock) != 1) {
                if (ssl != nullptr) SSL_free(ssl);
                linger_close(sock);
                return false;
            }
            const bool ret = serve(sock, ssl);
            SSL_shutdown(ssl);  // close_notify, once, without waiting for the peer's
            SSL_free(ssl);
            linger_close(sock);
            return ret;
        }
#endif
        const bool ret = serve(sock, nullptr);
        linger_close(sock);
        return ret;
    }

    // Serves the requests of one connection (TLS when `ssl` is set, an SSL*).
    bool serve(int sock, void* ssl) {
        ConnectionState state;
        state.budget = &budget_;
        current_connection() = &state;
        DeadlineStream strm(sock, limits_, read_timeout_s_, write_timeout_s_);
        auto start = DeadlineStream::clock::now();
        bool ret = false;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (ssl != nullptr &&
            !strm.accept_tls(static_cast<SSL*>(ssl), start + std::chrono::duration_cast<DeadlineStream::clock::duration>(
                                                                  std::chrono::duration<double>(std::min(limits_.head_timeout_s, 1e6))))) {
            current_connection() = nullptr;
            return false;
        }
#else
        (void)ssl;
#endif
        for (int count = 100; count > 0; --count) {
            if (count < 100 && !strm.buffered()) {  // kept alive: wait for the next request
                if (!wait_for_next_request(sock)) break;
                start = DeadlineStream::clock::now();
            }
            if (svr_sock_ == INVALID_SOCKET) break;  // stopping
            strm.begin_request(start);
            state.refusal_status = 0;
            state.refusal.clear();
            state.close = false;
            bool closed = false;
            ret = process_request(strm, count == 1, closed, nullptr);
            state.release();
            if (!ret && state.refusal_status != 0 && strm.written() == 0)
                write_refusal(strm, state.refusal_status, state.refusal);
            if (!ret || closed || state.close) break;
        }
        current_connection() = nullptr;
        return ret;
    }

    // Whether a kept-alive connection sends its next request within keep_alive_timeout_s;
    // waits in slices of 100 ms so that stop() does not wait for idle connections.
    bool wait_for_next_request(int sock) const {
        const auto until = DeadlineStream::clock::now() +
                           std::chrono::duration_cast<DeadlineStream::clock::duration>(std::chrono::duration<double>(keep_alive_timeout_s_));
        while (svr_sock_ != INVALID_SOCKET) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - DeadlineStream::clock::now()).count();
            if (left <= 0) return false;
            pollfd p{sock, POLLIN, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100)));
            if (r > 0) return true;
            if (r < 0 && errno != EINTR) return false;
        }
        return false;
    }

    // Closes after the answer was sent: the unread rest of a refused request is drained for a
    // moment (at most 0.5 s and 256 KiB) so that the client reads the answer, not a reset.
    static void linger_close(int sock) {
        ::shutdown(sock, SHUT_WR);
        char sink[4096];
        std::size_t drained = 0;
        const auto until = DeadlineStream::clock::now() + std::chrono::milliseconds(500);
        while (drained < (std::size_t{256} << 10)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - DeadlineStream::clock::now()).count();
            if (left <= 0) break;
            pollfd p{sock, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
            const ssize_t n = ::recv(sock, sink, sizeof sink, MSG_DONTWAIT);
            if (n <= 0) break;
            drained += static_cast<std::size_t>(n);
        }
        ::close(sock);
    }
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
        // Plain HTTP and TLS alike: the same guarded connection loop (deadlines, caps, threads).
        server_ = std::make_unique<agent_detail::GuardedHttpServer>(options_.limits, budget_, options_.read_timeout_s,
                                                                    options_.write_timeout_s, options_.keep_alive_timeout_s,
                                                                    options_.cert_path, options_.key_path);
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

    // Waits (at most `timeout_s`) until no profile job is queued or running, and joins their
    // threads; true when none is left. For a caller that must leave no work behind between
    // requests: the request fuzzer, whose LeakSanitizer check after each input took a job's
    // in-flight allocations for leaks.
    bool wait_for_profile_jobs(double timeout_s) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
            {
                std::lock_guard<std::mutex> lock(jobs_mutex_);
                reap_finished_jobs();
                if (job_threads_.empty()) return true;
            }
            if (std::chrono::steady_clock::now() >= end) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    // Binds; port 0 picks a free one. Returns the port. Throws when the address is taken.
    int bind(const std::string& host, int port) {
        int bound = port;
        if (port == 0) {
            bound = server_->bind_to_any_port(host.c_str());
            if (bound <= 0) throw AgentError("cannot listen on " + host + " (any port)");
        } else if (!server_->bind_to_port(host.c_str(), port)) {
            throw AgentError("cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not this machine's address)");
        }
        host_ = host;
        port_ = bound;
        return bound;
    }
    // Serves until stop(); the socket is already listening after bind(). httplib's accept loop
    // ends, closing the socket, on any accept() error but EMFILE, EINTR and EAGAIN, and Linux
    // passes a connection's pending network error (ECONNABORTED, EPROTO, ENETUNREACH, ...) on
    // to accept(): a client could stop the agent. So the same port is bound again, after a
    // pause, until stop(); false when that fails 50 times in a row.
    bool listen() {
        in_listen_.fetch_add(1);
        struct Leave {
            std::atomic<int>& n;
            ~Leave() { n.fetch_sub(1); }
        } leave{in_listen_};
        for (;;) {
            const bool served = server_->listen_after_bind();
            const int accept_errno = errno;
            if (stopping_.load()) return served;
            std::fprintf(stderr, "lamda-agent: accepting on %s:%d ended (%s); listening again\n", host_.c_str(), port_,
                         std::strerror(accept_errno));
            for (int attempt = 1;; ++attempt) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                if (stopping_.load()) return served;
                if (server_->bind_to_port(host_.c_str(), port_)) break;
                if (attempt == 50) {
                    std::fprintf(stderr, "lamda-agent: cannot listen on %s:%d again: stopping\n", host_.c_str(), port_);
                    return false;
                }
            }
        }
    }
    // Stops serving and ends the profile jobs (a running one is abandoned at its next progress tick).
    void stop() {
        stopping_.store(true);
        if (server_) {
            server_->stop();
            // listen() may be binding again just now (see there): stop what it started, for 1 s at most.
            for (int i = 0; i < 100 && in_listen_.load() > 0; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                server_->stop();
            }
        }
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
    agent_detail::MemoryBudget budget_{options_.limits.memory_budget_bytes};
    std::unique_ptr<httplib::Server> server_;
    DeviceInfo device_;
    std::string host_;
    int port_ = 0;
    std::timed_mutex measure_mutex_;
    std::atomic<int> waiting_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<int> in_listen_{0};  // threads inside listen()
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
        if (const auto e = r.maybe(b.doc, key, "")) return r.int_in(*e, key, lo, hi);
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
        const int connections = lim.max_connections;
        s.new_task_queue = [connections] { return new agent_detail::ConnectionThreads(connections); };
        s.set_payload_max_length(lim.max_body_bytes);
        auto secs = [](double v, time_t& sec, time_t& usec) {
            sec = static_cast<time_t>(v);
            usec = static_cast<time_t>((v - static_cast<double>(sec)) * 1e6);
        };
        time_t sec = 0, usec = 0;
        secs(options_.read_timeout_s, sec, usec);
        s.set_read_timeout(sec, usec);
        s.set_keep_alive_timeout(std::max<time_t>(1, static_cast<time_t>(options_.keep_alive_timeout_s)));
        secs(options_.write_timeout_s, sec, usec);
        s.set_write_timeout(sec, usec);
        s.set_keep_alive_max_count(100);

        s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return authorize(req, res); });
        // Once an answer is written its request's memory goes back to the budget.
        s.set_logger([](const httplib::Request&, const httplib::Response&) {
            if (agent_detail::ConnectionState* c = agent_detail::current_connection()) c->release();
        });
        s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
            // A request the stream refused (deadline, head caps) reaches httplib as a failed
            // read, which it answers 400: say what happened instead.
            if (const agent_detail::ConnectionState* c = agent_detail::current_connection(); c && c->refusal_status != 0) {
                res.set_header("Connection", "close");
                send_json(res, c->refusal_status, agent_detail::json_error(c->refusal));
                return;
            }
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
        agent_detail::ConnectionState* conn = agent_detail::current_connection();
        if (!ok) {
            res.set_header("WWW-Authenticate", "Bearer");
            res.set_header("Connection", "close");
            if (conn) conn->close = true;  // the body, if any, is never read
            send_json(res, 401, agent_detail::json_error(auth.empty() ? "missing bearer token" : "wrong bearer token"));
            return httplib::Server::HandlerResponse::Handled;
        }
        const std::string refusal = check_framing(req, conn);
        if (refusal.empty()) return httplib::Server::HandlerResponse::Unhandled;
        res.set_header("Connection", "close");
        if (conn) conn->close = true;
        const int status = std::atoi(refusal.c_str());
        if (status == 503) res.set_header("Retry-After", "5");
        send_json(res, status, agent_detail::json_error(refusal.substr(4)));
        return httplib::Server::HandlerResponse::Handled;
    }

    // The body's framing, checked before a byte of it is read: one Content-Length within
    // max_body_bytes and no transfer or content coding (chunked, gzip, deflate, ... are refused:
    // httplib would read them without a bound, or inflate them). The body's memory (the bytes,
    // their padded copy for the JSON parser and the strings taken from it) is taken from the
    // memory budget here. Returns "STATUS message", or "" when the request may go on.
    std::string check_framing(const httplib::Request& req, agent_detail::ConnectionState* conn) const {
        if (req.has_header("Transfer-Encoding"))
            return "411 Transfer-Encoding '" + req.get_header_value("Transfer-Encoding").substr(0, 40) +
                   "' is not accepted: send the body with one Content-Length";
        for (std::size_t i = 0; i < req.get_header_value_count("Content-Encoding"); ++i) {
            const std::string coding = agent_detail::trim(req.get_header_value("Content-Encoding", i));
            if (!coding.empty() && coding != "identity")
                return "415 Content-Encoding '" + coding.substr(0, 40) + "' is not accepted: send the body uncompressed";
        }
        const std::size_t lengths = req.get_header_value_count("Content-Length");
        if (lengths > 1) return "400 " + std::to_string(lengths) + " Content-Length headers: send one";
        const bool wants_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                                req.method == "DELETE" || req.method == "PRI";
        if (lengths == 0) return wants_body ? "411 a " + req.method + " request needs a Content-Length" : "";
        const std::string text = agent_detail::trim(req.get_header_value("Content-Length"));
        if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
            return "400 Content-Length '" + text.substr(0, 40) + "' is not a number of bytes";
        const unsigned long long length = std::strtoull(text.c_str(), nullptr, 10);
        if (length > options_.limits.max_body_bytes)
            return "413 the body is " + text + " bytes, over this agent's limit of " +
                   std::to_string(options_.limits.max_body_bytes) + " (--max-body-bytes)";
        if (conn && !conn->reserve(3 * static_cast<std::int64_t>(length) + 4096))
            return "503 busy: the agent's memory budget (" + std::to_string(budget_.cap()) +
                   " bytes) is taken by requests in progress";
        return "";
    }

    // Takes `bytes` more from the memory budget for this request, before they are allocated.
    void reserve_memory(std::int64_t bytes, const std::string& what) const {
        agent_detail::ConnectionState* conn = agent_detail::current_connection();
        if (conn && !conn->reserve(bytes))
            throw agent_detail::RequestError("busy: " + what + " needs " + std::to_string(bytes) +
                                                 " bytes, over what the agent's memory budget (" +
                                                 std::to_string(budget_.cap()) + " bytes) has left",
                                             503);
    }

    // GET "/v1/device"
    void handle_device(const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, device_json(device_));
    }

    // POST "/v1/bench"
    void handle_bench(const httplib::Request& req, httplib::Response& res) {
        guarded(res, [&] {
            Body b;
            parse_body(b, req, "bench request", {"dsl", "name", "weights_base64", "threads", "runs", "warmup", "precision"});
            const std::string name = str_field(b, "name", "<request>");
            BenchOptions o;
            o.threads = int_field(b, "threads", 1, 1, options_.limits.max_threads);
            o.runs = int_field(b, "runs", 50, 1, options_.limits.max_runs);
            o.warmup = int_field(b, "warmup", 5, 0, options_.limits.max_runs);
            o.max_memory_bytes = options_.limits.max_memory_bytes;
            const std::string precision = str_field(b, "precision", "fp32");
            if (precision != "fp32" && precision != "int8")
                throw agent_detail::RequestError("precision: '" + precision + "' is neither fp32 nor int8");
            o.int8 = precision == "int8";
            bool ok = false;
            const Graph parsed = model_of(b, name, res, ok);
            if (!ok) return;
            // Random weights are built only once this request holds the measurement lock, so
            // requests waiting in the queue hold no weights of their own (issue 16).
            ModelWeights model;
            model.graph = parsed;
            const std::string encoded = str_field(b, "weights_base64", "");
            const std::int64_t weight_bytes = static_cast<std::int64_t>(analyze(parsed).params) * 4;
            if (!encoded.empty()) {
                // Decoded bytes plus the tensors built from them, taken before either exists.
                reserve_memory(static_cast<std::int64_t>(encoded.size() / 4 * 3) + weight_bytes, "decoding the weights");
                const std::optional<std::string> bytes = base64_decode(encoded);
                if (!bytes) throw agent_detail::RequestError("weights_base64: not valid base64");
                // fp32 (batch norm folded or not, as `lamda train` saves them) or int8 from
                // `lamda quantize`, read as `lamda bench` reads a file.
                try {
                    model = model_weights_of(parsed, parse_safetensors(*bytes, name + " weights"), name + " weights");
                } catch (const WeightsError& e) {
                    throw agent_detail::RequestError(e.what());
                } catch (const ExecutorError& e) {
                    throw agent_detail::RequestError(name + " weights: " + e.what());
                }
                if (model.int8) {
                    o.int8 = true;
                    o.quantized = &model.quantized;
                }
            }
            const Graph& g = model.graph;
            BenchResult r;
            {
                Turn turn(*this, "bench");
                if (encoded.empty()) {
                    reserve_memory(weight_bytes, "building random weights");
                    model.weights = random_weights(g, 1);
                }
                check_duration(g, o.threads, o.warmup + 2.0 * o.runs);
                r = benchmark_model(g, model.weights, o);
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
    double timeout_s = 900;      // the whole of one attempt: connect, send, wait, read (a benchmark may wait for its turn)
    std::size_t max_reply_head_bytes = std::size_t{1} << 20;  // a reply's status line and headers
    std::size_t max_reply_bytes = std::size_t{256} << 20;     // a reply's body, as large as a profile file may be (no Content-Encoding is accepted)
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
        if (const std::string problem = detail::parse_http_url(url_, endpoint_); !problem.empty())
            throw AgentError("device '" + url_.substr(0, 200) + "': " + problem);
#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (https()) throw AgentError("device " + url_ + ": this lamda's cpp-httplib has no OpenSSL support (https)");
#endif
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
        for (char c : endpoint_.authority)
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
        d.logical_cores = r.int_in(r.at(doc, "logical_cores", ""), "logical_cores", 0, 1 << 20);
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
        if (o.int8) body.field("precision", "int8");  // an int8 weights file says so itself
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
        // The rest of write_bench_json's figures (older agents may leave some out: they stay 0).
        for (const auto& [key, field] : {std::pair<const char*, double BenchResult::*>{"mean_ms", &BenchResult::mean_ms},
                                         {"std_ms", &BenchResult::std_ms}, {"max_ms", &BenchResult::max_ms},
                                         {"p95_ms", &BenchResult::p95_ms}, {"p99_ms", &BenchResult::p99_ms},
                                         {"init_ms", &BenchResult::init_ms}, {"first_ms", &BenchResult::first_ms},
                                         {"timed_s", &BenchResult::timed_s}})
            if (const auto e = r.maybe(doc, key, "")) b.*field = r.num(*e, key);
        b.threads = r.int_in(r.at(doc, "threads", ""), "threads", 1, 1024);
        b.runs = r.int_in(r.at(doc, "runs", ""), "runs", 0, 100000000);
        b.warmup = r.int_in(r.at(doc, "warmup", ""), "warmup", 0, 100000000);
        b.macs = r.integer(r.at(doc, "macs", ""), "macs", 0, INT64_MAX);
        b.params = r.integer(r.at(doc, "params", ""), "params", 0, INT64_MAX);
        b.gflops = r.num(r.at(doc, "gflops", ""), "gflops");
        if (const auto e = r.maybe(doc, "precision", "")) {  // agents before int8 do not say
            const std::string precision = r.str(*e, "precision");
            if (precision != "fp32" && precision != "int8") r.fail("precision", "'" + precision + "' is neither fp32 nor int8");
            b.int8 = precision == "int8";
        }
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
            Reply reply = send(method, endpoint_.prefix + path, body);
            const httplib::Result& res = reply.result;
            if (!reply.refusal.empty()) {
                // A reply too slow, too large or encoded: the agent (or what answers in its
                // place) misbehaves; trying again would only wait as long again.
                throw AgentError("device " + url_ + ": " + method + " " + path + ": " + reply.refusal);
            }
            if (!res) {
                last = "no answer (" + httplib::to_string(res.error()) + " error)";
                last_status = 0;
            } else if (res->status >= 200 && res->status < 300) {
                return std::move(reply.body);
            } else {
                last_status = res->status;
                last = "HTTP " + std::to_string(res->status) + ": " + error_text(reply.body);
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

    std::string url_;
    detail::HttpUrl endpoint_;  // the one parse of url_: scheme, host, port, authority, path prefix
    AgentClientOptions options_;

    static std::string error_text(const std::string& body) {
        simdjson::dom::parser parser;
        const simdjson::padded_string padded(body);
        simdjson::dom::element doc;
        std::string_view v;
        if (!parser.parse(padded).get(doc) && !doc["error"].get(v)) return agent_detail::trim(std::string(v));
        return body.size() > 300 ? body.substr(0, 300) + "..." : body;
    }

    struct Reply {
        httplib::Result result{std::unique_ptr<httplib::Response>(), httplib::Error::Unknown, httplib::Headers{}};
        std::string body;
        std::string refusal;  // why the reply was cut off (deadline, size, encoding); empty if it was not
    };

    // "host", port of the URL (detail/url.hpp; checked when the client was made).
    std::pair<std::string, int> host_port() const { return {endpoint_.host, endpoint_.port}; }
    bool https() const noexcept { return endpoint_.scheme == "https"; }

    // One attempt, bounded as a whole: a watchdog stops the client at the deadline. Every byte
    // read is counted by the client's own stream (detail::CountingClientStream): more
    // than the head cap before the headers were parsed (httplib's client keeps every header
    // line), or more than head + max_reply_bytes in all, ends the reply. The body goes through
    // a receiver that stops at max_reply_bytes; an encoded reply is refused.
    Reply send(const std::string& method, const std::string& path, const std::string& body) {
        Reply out;
        std::string refusal;  // set by the stream, receiver or handler (this thread) or the watchdog (under m)
        std::mutex m;
        std::condition_variable cv;
        bool done = false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                                      std::chrono::duration<double>(std::min(options_.timeout_s, 1e6)));
        const std::uint64_t head_cap = options_.max_reply_head_bytes;
        const std::uint64_t body_cap = options_.max_reply_bytes;
        std::uint64_t read_total = 0;       // bytes the stream has read (this thread only)
        std::uint64_t head_end = UINT64_MAX;  // read_total when the headers were parsed
        // 64 KiB of slack: a read may take the head's end and the body's start together.
        auto admit = [&](std::uint64_t total) {
            read_total = total;
            std::string why;
            if (head_end == UINT64_MAX && total > head_cap + 65536)
                why = "reply headers over " + std::to_string(options_.max_reply_head_bytes) + " bytes";
            else if (head_end != UINT64_MAX && total - head_end > body_cap + 65536)
                why = "reply over " + std::to_string(options_.max_reply_bytes) + " bytes";
            if (why.empty()) return true;
            std::lock_guard<std::mutex> lock(m);
            if (refusal.empty()) refusal = why;
            return false;
        };
        const std::pair<std::string, int> where = host_port();
        const std::string& host = where.first;
        const int port = where.second;
        std::unique_ptr<httplib::ClientImpl> client;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (https()) {
            auto tls = std::make_unique<detail::CountingClient<httplib::SSLClient>>(host, port, deadline, admit);
            if (!options_.ca_cert_path.empty()) tls->set_ca_cert_path(options_.ca_cert_path.c_str());
            tls->enable_server_certificate_verification(options_.verify_tls);
            client = std::move(tls);
        }
#endif
        if (!client) client = std::make_unique<detail::CountingClient<httplib::ClientImpl>>(host, port, deadline, admit);
        httplib::ClientImpl& cli = *client;
        auto secs = [](double v, time_t& sec, time_t& usec) {
            sec = static_cast<time_t>(v);
            usec = static_cast<time_t>((v - static_cast<double>(sec)) * 1e6);
        };
        time_t sec = 0, usec = 0;
        secs(std::min(options_.connect_timeout_s, options_.timeout_s), sec, usec);
        cli.set_connection_timeout(sec, usec);
        secs(options_.timeout_s, sec, usec);
        cli.set_read_timeout(sec, usec);
        cli.set_write_timeout(sec, usec);
        cli.set_bearer_token_auth(options_.token.c_str());
        cli.set_decompress(false);
        cli.set_keep_alive(false);

        std::thread watchdog([&] {
            std::unique_lock<std::mutex> lock(m);
            while (!done) {
                cv.wait_for(lock, std::chrono::milliseconds(20));
                if (done) break;
                if (std::chrono::steady_clock::now() >= deadline) {
                    if (refusal.empty())
                        refusal = "no complete reply within " + agent_detail::seconds_text(options_.timeout_s) +
                                  " s (the deadline of one request)";
                    cli.stop();  // shuts the socket down: the request in flight fails at once
                }
            }
        });

        httplib::Request req;
        req.method = method;
        req.path = path;
        req.headers.emplace("Accept-Encoding", "identity");
        if (method != "GET") {
            req.body = body;
            req.headers.emplace("Content-Type", "application/json");
        }
        req.response_handler = [&](const httplib::Response& r) {
            head_end = read_total;
            const std::string coding = r.get_header_value("Content-Encoding");
            std::lock_guard<std::mutex> lock(m);
            if (!coding.empty() && coding != "identity") {
                if (refusal.empty()) refusal = "reply with Content-Encoding '" + coding.substr(0, 40) + "' (only identity is accepted)";
                return false;
            }
            if (r.has_header("Content-Length") &&
                std::strtoull(r.get_header_value("Content-Length").c_str(), nullptr, 10) > options_.max_reply_bytes) {
                if (refusal.empty())
                    refusal = "reply of " + r.get_header_value("Content-Length").substr(0, 20) + " bytes, over the limit of " +
                              std::to_string(options_.max_reply_bytes);
                return false;
            }
            return true;
        };
        req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
            if (n > options_.max_reply_bytes - std::min(options_.max_reply_bytes, out.body.size())) {
                std::lock_guard<std::mutex> lock(m);
                if (refusal.empty()) refusal = "reply over " + std::to_string(options_.max_reply_bytes) + " bytes";
                return false;
            }
            out.body.append(data, n);
            return true;
        };
        detail::BlockSigpipe no_sigpipe;  // TLS: OpenSSL writes with write()
        out.result = cli.send(req);
        {
            std::lock_guard<std::mutex> lock(m);
            done = true;
            // The stream's waits end at the deadline too, possibly before the watchdog looks.
            if (!out.result && refusal.empty() && std::chrono::steady_clock::now() >= deadline)
                refusal = "no complete reply within " + agent_detail::seconds_text(options_.timeout_s) +
                          " s (the deadline of one request)";
        }
        cv.notify_all();
        watchdog.join();
        out.refusal = refusal;
        return out;
    }
};

// GenerateSetup::measure through an agent: the same measurement as xnnpack_measure, on the board
// (`int8`: the int8 executor with synthetic scales, GenerateSetup::measure_int8).
inline std::function<Measurement(const Graph&)> agent_measure(std::shared_ptr<AgentClient> client, int threads,
                                                              int runs = 30, int warmup = 5, bool int8 = false) {
    return [client = std::move(client), threads, runs, warmup, int8](const Graph& g) {
        BenchOptions o;
        o.threads = threads;
        o.runs = runs;
        o.warmup = warmup;
        o.int8 = int8;
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
