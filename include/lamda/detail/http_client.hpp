// lamda/detail/http_client.hpp: cpp-httplib's client with a socket stream of lamda's own, for
// the two clients that talk to servers lamda does not control: the agent client (--device) and
// the LLM client.
//
// httplib 0.11 reads a reply's status line and headers with no cap of its own, and its response
// handler sees the headers only when all of them are in: a server that sends headers without end
// grows the client's memory until the request's deadline. CountingClient<httplib::ClientImpl>
// (plain) and CountingClient<httplib::SSLClient> (TLS: httplib's connect and certificate check are
// kept) read and write through CountingClientStream, which
//   - counts every byte read itself and hands the total to `admit`, which may end the reply (the
//     read fails, httplib reports Error::Read): the caller caps headers and bodies there, the same
//     on every platform (Linux's TCP_INFO counts are wrong under qemu-user);
//   - bounds every wait by the read/write timeout and by the request's deadline.
// Requires cpp-httplib: compiled with LAMDA_WITH_LLM or LAMDA_WITH_AGENT.
#ifndef LAMDA_DETAIL_HTTP_CLIENT_HPP
#define LAMDA_DETAIL_HTTP_CLIENT_HPP

#if !defined(LAMDA_WITH_LLM) && !defined(LAMDA_WITH_AGENT)
#error "lamda/detail/http_client.hpp needs cpp-httplib: LAMDA_WITH_LLM or LAMDA_WITH_AGENT (CMake: link lamda::llm)"
#else

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include <httplib.h>
// <httplib.h> pulls in <resolv.h>, whose `_res` macro breaks Eigen (latency/model.hpp) when that is
// included later; httplib's own text is already expanded, so the macro can go.
#if defined(_res)
#undef _res
#endif

namespace lamda {
namespace detail {

// While a request or a TLS connection is served: OpenSSL writes with write(), so a peer that has
// gone away would raise SIGPIPE and end the whole process (the CLI, or the agent). Blocked on this
// thread for the scope; one raised meanwhile is taken back.
struct BlockSigpipe {
    sigset_t old{};
    BlockSigpipe() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, &old);
    }
    ~BlockSigpipe() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        const timespec zero{0, 0};
        while (sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {}
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    BlockSigpipe(const BlockSigpipe&) = delete;
    BlockSigpipe& operator=(const BlockSigpipe&) = delete;
};

// The client's socket stream: plain or TLS (`ssl`), every wait bounded by the read/write timeout
// and by the request's deadline, and every byte read counted here and handed to `admit`, which
// may end the reply (read fails). The count is the client's own, so the reply caps hold the same
// on every platform (Linux's TCP_INFO counts are wrong under qemu-user).
class CountingClientStream final : public httplib::Stream {
public:
    using clock = std::chrono::steady_clock;
    CountingClientStream(int fd, void* ssl, double read_timeout_s, double write_timeout_s, clock::time_point deadline,
                         const std::function<bool(std::uint64_t)>& admit)
        : fd_(fd), ssl_(ssl), read_timeout_s_(read_timeout_s), write_timeout_s_(write_timeout_s), deadline_(deadline),
          admit_(admit) {}

    bool is_readable() const override { return pending() || wait(POLLIN, read_timeout_s_) > 0; }
    bool is_writable() const override { return wait(POLLOUT, write_timeout_s_) > 0; }

    ssize_t read(char* ptr, std::size_t size) override {
        if (size == 0) return 0;
        if (!pending() && wait(POLLIN, read_timeout_s_) <= 0) return -1;
        const ssize_t n = raw_read(ptr, size);
        if (n > 0) {
            total_ += static_cast<std::uint64_t>(n);
            if (admit_ && !admit_(total_)) return -1;
        }
        return n;
    }
    ssize_t write(const char* ptr, std::size_t size) override {
        if (wait(POLLOUT, write_timeout_s_) <= 0) return -1;
        return raw_write(ptr, size);
    }
    void get_remote_ip_and_port(std::string& ip, int& port) const override {
        ip.clear();
        port = 0;
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override {
        ip.clear();
        port = 0;
    }
    socket_t socket() const override { return fd_; }

private:
    int fd_;
    void* ssl_;
    double read_timeout_s_, write_timeout_s_;
    clock::time_point deadline_;
    const std::function<bool(std::uint64_t)>& admit_;
    std::uint64_t total_ = 0;

    bool pending() const {
        if (ssl_ == nullptr) return false;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        return SSL_pending(static_cast<SSL*>(ssl_)) > 0;
#else
        return false;
#endif
    }
    // poll() until the timeout or the request's deadline, whichever is first: >0 ready.
    int wait(short events, double timeout_s) const {
        const auto until = std::min(deadline_, clock::now() + std::chrono::duration_cast<clock::duration>(
                                                                  std::chrono::duration<double>(std::min(timeout_s, 1e6))));
        for (;;) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now()).count();
            if (left <= 0) return 0;
            pollfd p{fd_, events, 0};
            const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
            if (r < 0 && errno == EINTR) continue;
            if (r == 0) continue;
            return r;
        }
    }
    ssize_t raw_read(char* ptr, std::size_t size) {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (ssl_ != nullptr) {
            // A blocking socket (httplib's): a record that stalls half-way is ended by the
            // request's watchdog, which shuts the socket down.
            const int n = SSL_read(static_cast<SSL*>(ssl_), ptr, static_cast<int>(std::min<std::size_t>(size, 1 << 20)));
            if (n > 0) return n;
            return SSL_get_error(static_cast<SSL*>(ssl_), n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
#endif
        ssize_t n = 0;
        do n = ::recv(fd_, ptr, size, 0);
        while (n < 0 && errno == EINTR);
        return n;
    }
    ssize_t raw_write(const char* ptr, std::size_t size) {
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        if (ssl_ != nullptr) {
            const int n = SSL_write(static_cast<SSL*>(ssl_), ptr, static_cast<int>(std::min<std::size_t>(size, 1 << 20)));
            return n > 0 ? n : -1;
        }
#endif
        ssize_t n = 0;
        do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }
};

// httplib's client (plain: ClientImpl; TLS: SSLClient, whose connect and certificate check are
// kept) reading and writing through a CountingClientStream.
template <class Base>
class CountingClient final : public Base {
public:
    CountingClient(const std::string& host, int port, CountingClientStream::clock::time_point deadline,
                   std::function<bool(std::uint64_t)> admit)
        : Base(host, port), deadline_(deadline), admit_(std::move(admit)) {}

private:
    CountingClientStream::clock::time_point deadline_;
    std::function<bool(std::uint64_t)> admit_;

    bool process_socket(const typename Base::Socket& socket, std::function<bool(httplib::Stream&)> callback) override {
        void* ssl = nullptr;
#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
        ssl = socket.ssl;
#endif
        auto secs = [](time_t s, time_t us) { return static_cast<double>(s) + static_cast<double>(us) * 1e-6; };
        CountingClientStream strm(static_cast<int>(socket.sock), ssl, secs(this->read_timeout_sec_, this->read_timeout_usec_),
                                  secs(this->write_timeout_sec_, this->write_timeout_usec_), deadline_, admit_);
        return callback(strm);
    }
};

}  // namespace detail
}  // namespace lamda

#endif  // LAMDA_WITH_LLM || LAMDA_WITH_AGENT
#endif  // LAMDA_DETAIL_HTTP_CLIENT_HPP
