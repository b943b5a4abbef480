// lamda-agent: the on-device measurement agent (include/lamda/agent/agent.hpp, docs/agent.md).
//   lamda-agent --listen 0.0.0.0:7070 --token-file /etc/lamda-agent/token [--cert C --key K]
// Serves `lamda device`, `lamda bench` and `lamda profile` measurements of this board to a
// search host (`lamda ... --device http://board:7070`). Stops on SIGINT or SIGTERM.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include <pthread.h>

#include <lamda/agent/agent.hpp>
#include <lamda/version.hpp>

int main(int argc, char** argv) {
    CLI::App app{"lamda-agent: measures models on this device for a lamda search host (docs/agent.md)."};
    app.set_version_flag("--version", std::string("lamda-agent ") + lamda::version_string);
    std::string listen, token_file;
    lamda::AgentOptions o;
    lamda::AgentLimits& lim = o.limits;
    app.add_option("--listen", listen, "HOST:PORT to listen on (e.g. 0.0.0.0:7070, or 127.0.0.1:7070)")->required();
    app.add_option("--token-file", token_file, "File holding the bearer token (mode 0600)")->required();
    auto* cert = app.add_option("--cert", o.cert_path, "TLS certificate (PEM): serve HTTPS");
    auto* key = app.add_option("--key", o.key_path, "TLS private key (PEM)");
    cert->needs(key);
    key->needs(cert);
    app.add_option("--max-body-bytes", lim.max_body_bytes, "Largest request body (413 above)")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 32));
    app.add_option("--max-runs", lim.max_runs, "Most timed runs of one benchmark")->check(CLI::Range(1, 100000));
    app.add_option("--max-threads", lim.max_threads, "Most threads a request may ask for")->check(CLI::Range(1, 1024));
    app.add_option("--max-macs", lim.max_macs, "Largest model, in MACs")->check(CLI::PositiveNumber);
    app.add_option("--max-params", lim.max_params, "Largest model, in parameters")->check(CLI::PositiveNumber);
    app.add_option("--max-layers", lim.max_layers, "Largest model, in layers")->check(CLI::Range(1, 10000));
    app.add_option("--time-limit-s", lim.time_limit_s, "Longest benchmark (estimated before it starts)")
        ->check(CLI::Range(1.0, 86400.0));
    app.add_option("--max-profile-s", lim.max_profile_budget_s, "Longest profile job budget")
        ->check(CLI::Range(1.0, 86400.0));
    app.add_option("--queue", lim.max_queue, "Requests that may wait for the measurement in progress (503 beyond)")
        ->check(CLI::Range(1, 64));
    app.add_option("--read-timeout-s", o.read_timeout_s, "Drop a client that sends nothing for this long")
        ->check(CLI::Range(0.1, 600.0));
    app.add_option("--head-timeout-s", lim.head_timeout_s,
                   "Whole request line and headers must arrive within this (408 after), token or not")
        ->check(CLI::Range(0.1, 600.0));
    app.add_option("--body-timeout-s", lim.body_timeout_s, "Whole request body must arrive within this (408 after)")
        ->check(CLI::Range(0.1, 86400.0));
    app.add_option("--max-head-bytes", lim.max_head_bytes, "Largest request line + headers (431 above)")
        ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 24));
    app.add_option("--max-headers", lim.max_headers, "Most header lines of one request (431 above)")
        ->check(CLI::Range(4, 10000));
    app.add_option("--max-connections", lim.max_connections, "Connections served at once (503 and closed beyond)")
        ->check(CLI::Range(1, 4096));
    app.add_option("--memory-budget-bytes", lim.memory_budget_bytes,
                   "Memory all requests' bodies and weights may hold at once (503 beyond)")
        ->check(CLI::Range(std::int64_t{1} << 20, std::int64_t{1} << 50));
    app.add_option("--peak-seconds", o.peak_seconds, "How long to measure the FMA peak at start-up")
        ->check(CLI::Range(0.01, 60.0));
    app.add_flag("-v,--verbose", o.log, "Log every request on stderr");
    CLI11_PARSE(app, argc, argv);

    const auto colon = listen.find_last_of(':');
    int port = -1;
    if (colon != std::string::npos) {
        try {
            port = std::stoi(listen.substr(colon + 1));
        } catch (const std::exception&) {
            port = -1;
        }
    }
    if (colon == std::string::npos || colon == 0 || port < 1 || port > 65535) {
        std::cerr << "lamda-agent: error: --listen wants HOST:PORT, got '" << listen << "'\n";
        return 1;
    }
    std::string host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);

    // SIGINT/SIGTERM are taken by a thread of their own (the server's threads inherit the mask).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    try {
        o.token = lamda::read_agent_token_file(token_file);
        lamda::AgentServer server(o);
        server.bind(host, port);
        std::fprintf(stderr, "lamda-agent: %s, peak %.1f GFLOP/s; listening on %s://%s:%d\n",
                     server.device().cpu_model.c_str(), server.device().peak_gflops,
                     o.cert_path.empty() ? "http" : "https", host.c_str(), port);
        std::thread stopper([&server, signals] {
            int sig = 0;
            sigwait(&signals, &sig);
            std::fprintf(stderr, "lamda-agent: signal %d, stopping\n", sig);
            server.stop();
        });
        server.listen();
        pthread_kill(stopper.native_handle(), SIGTERM);  // when listen() ended another way
        stopper.join();
    } catch (const std::exception& e) {
        std::cerr << "lamda-agent: error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
