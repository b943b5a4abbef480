// A hostile HTTP server for the clients' tests (tests/agent/test_agent.cpp, tests/llm/test_llm.cpp):
// raw sockets, so that it can answer what no well-behaved server library would send.
#ifndef LAMDA_TESTS_HOSTILE_SERVER_HPP
#define LAMDA_TESTS_HOSTILE_SERVER_HPP

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <utility>

namespace lamda_test {

// A hostile server on 127.0.0.1 for a client's side: each connection gets `answer(fd, stop)` after
// its request head has arrived; endless answers end when `stop` is set (a closed Linux socket may
// go on acknowledging data for a while). Stopped and joined on destruction.
struct HostileServer {
    int listener = -1;
    int port = 0;
    std::atomic<bool> stopping{false};
    std::thread thread;

    using Answer = std::function<void(int, const std::atomic<bool>&)>;
    explicit HostileServer(Answer answer) {
        listener = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listener >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listener, 8) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port = ntohs(addr.sin_port);
        thread = std::thread([this, answer = std::move(answer)] {
            while (!stopping.load()) {
                pollfd p{listener, POLLIN, 0};
                if (::poll(&p, 1, 50) <= 0) continue;
                const int fd = ::accept(listener, nullptr, nullptr);
                if (fd < 0) continue;
                timeval tv{1, 0};  // a send blocked on a full window gives up, so `stopping` is seen
                ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                std::string head;
                char buffer[4096];
                while (head.find("\r\n\r\n") == std::string::npos) {
                    pollfd q{fd, POLLIN, 0};
                    if (::poll(&q, 1, 2000) <= 0) break;
                    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
                    if (n <= 0) break;
                    head.append(buffer, static_cast<std::size_t>(n));
                }
                answer(fd, stopping);
                ::close(fd);
            }
        });
    }
    ~HostileServer() {
        stopping.store(true);
        thread.join();
        ::close(listener);
    }
    // False once the client has gone away.
    static bool send_all(int fd, const std::string& bytes) {
        return ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
    }
};

}  // namespace lamda_test

#endif  // LAMDA_TESTS_HOSTILE_SERVER_HPP
