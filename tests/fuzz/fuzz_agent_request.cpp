// libFuzzer target for the on-device agent's request handling (agent/agent.hpp): each input is
// sent as raw bytes over a loopback socket to one lamda-agent server (token "fuzz-token", small
// limits, short deadlines), then the write side is shut and the answer read to its end. Whatever
// the bytes -- a malformed request line or header, a hostile body, a valid bench request with the
// token -- the agent answers or closes: never a crash (ASan/UBSan watch the server's threads), and
// never a hang (no end of the answer within 30 s aborts; a profile job the input started must end
// within 30 s too, before the next input). Seeds: lamda_fuzz_seeds writes valid
// requests to DIR/agent_request/.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <lamda/agent/agent.hpp>

namespace {

lamda::AgentServer* agent = nullptr;

int start_agent() {
    lamda::AgentOptions o;
    o.token = "fuzz-token";
    o.peak_seconds = 0;  // no FMA peak measurement at start-up
    o.read_timeout_s = 2;
    o.write_timeout_s = 5;
    o.keep_alive_timeout_s = 0.2;
    lamda::AgentLimits& l = o.limits;
    l.max_body_bytes = 256 * 1024;
    l.head_timeout_s = 2;
    l.body_timeout_s = 2;
    l.memory_budget_bytes = 64 << 20;
    l.max_threads = 1;
    l.max_runs = 3;
    l.max_macs = 20'000'000;  // a benchmark stays in milliseconds
    l.max_params = 1 << 20;
    l.max_layers = 64;
    l.max_activation_bytes = 16 << 20;
    l.max_memory_bytes = 64 << 20;
    l.time_limit_s = 2;
    l.max_profile_budget_s = 0.1;
    l.max_calibration_models = 2;
    l.max_queue = 1;
    l.max_wait_s = 5;
    l.max_jobs = 2;
    // Never destroyed: libFuzzer ends the process with exit(), and the server serves until then.
    auto* server = agent = new lamda::AgentServer(o);
    const int port = server->bind("127.0.0.1", 0);
    std::thread([server] {
        server->listen();
        std::fprintf(stderr, "fuzz_agent_request: the agent stopped listening\n");
        std::abort();
    }).detach();
    return port;
}

[[noreturn]] void fail(const char* what, int error) {
    std::fprintf(stderr, "fuzz_agent_request: %s (%s)\n", what, std::strerror(error));
    std::abort();
}

// A connection to the agent. The agent listens again after an accept() error (agent.hpp,
// AgentServer::listen), so a refused connect is retried for 2 s before it counts as a failure.
int connect_to(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 1;; ++attempt) {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) fail("socket() failed", errno);
        timeval tv{30, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
        const int error = errno;
        ::close(fd);
        if (attempt == 100) fail("the agent refused connections for 2 s", error);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Sends the bytes, shuts the write side and reads until the agent closes. False: no end in time.
bool exchange(int port, const std::uint8_t* data, std::size_t size) {
    const int fd = connect_to(port);
    std::size_t sent = 0;
    while (sent < size) {  // the agent may answer and close early (a refused head): stop sending then
        const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    bool ended = false;
    char buffer[4096];
    for (std::size_t total = 0; total < (std::size_t{64} << 20);) {
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            ended = true;
            break;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) fail("reading the answer failed", errno);
        if (n < 0) break;  // the 30 s receive timeout
        total += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return ended;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const int port = start_agent();
    if (!exchange(port, data, size)) {
        std::fprintf(stderr, "fuzz_agent_request: the agent neither answered nor closed within 30 s\n");
        std::abort();
    }
    // A profile job the input started runs on after the answer: it must end before LeakSanitizer
    // checks this input, or its in-flight allocations read as leaks (CI, 2026-12-04).
    if (!agent->wait_for_profile_jobs(30)) {
        std::fprintf(stderr, "fuzz_agent_request: a profile job did not end within 30 s\n");
        std::abort();
    }
    return 0;
}
