// The LLM generator (llm/llm.hpp) against a real HTTP server on loopback: a cpp-httplib server that
// speaks the chat-completions protocol and is scripted with replies (valid and invalid DSL,
// chatter, 429, 5xx, slow replies, truncated and oversized bodies, wrong content types, 401).
// Latency comes from test_generate.cpp's deterministic stand-in; nothing here really waits for
// a backoff (the client's sleep is a hook).
#include <doctest/doctest.h>

#include <lamda/search/loop.hpp>
#include <lamda/search/journal.hpp>
#include <lamda/llm/llm.hpp>
#include <lamda/search/parallel.hpp>

#include "../generate_test_support.hpp"
#include "../hostile_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace lamda;

// ---- a scripted chat-completions server ----

struct Step {
    int status = 200;
    std::string body = {};
    std::string content_type = "application/json";
    double delay_s = 0;
    std::string retry_after = {};
    std::size_t cut_at = std::string::npos;  // declare the whole length, send this many bytes, drop
    double trickle_s = 0;  // > 0: send the body one byte at a time, this long apart (chunked)
    std::vector<std::pair<std::string, std::string>> headers = {};
};

std::string chat_json(const std::string& content, const std::string& model = "scripted-model") {
    JsonWriter j;
    j.begin_object().field("id", "chatcmpl-1").field("object", "chat.completion").field("model", std::string_view(model));
    j.key("choices").begin_array().begin_object().field("index", 0);
    j.key("message").begin_object().field("role", "assistant").field("content", std::string_view(content)).end_object();
    j.field("finish_reason", "stop").end_object().end_array().end_object();
    return j.str();
}

Step reply(const std::string& content) { return Step{200, chat_json(content)}; }

struct Received {
    std::string body = {};
    std::string authorization;
};

class FakeLlm {
public:
    // `routes`: more endpoints (/props, /api/show, /v1/models, /api/chat), registered before listening.
    explicit FakeLlm(std::function<void(httplib::Server&, FakeLlm&)> routes = nullptr) {
        server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
        if (routes) routes(server_, *this);
        port_ = server_.bind_to_any_port("127.0.0.1");
        REQUIRE(port_ > 0);
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        for (int i = 0; i < 500 && !server_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ~FakeLlm() {
        server_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

    void script(std::vector<Step> steps) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& s : steps) script_.push_back(std::move(s));
    }
    // Answers requests once the script is spent: (request number from 0, request body).
    void fallback(std::function<Step(int, const std::string&)> f) {
        std::lock_guard<std::mutex> lock(mutex_);
        fallback_ = std::move(f);
    }
    std::vector<Received> received() {
        std::lock_guard<std::mutex> lock(mutex_);
        return received_;
    }
    void handle(const httplib::Request& req, httplib::Response& res) { handle_impl(req, res); }

private:
    httplib::Server server_;
    int port_ = -1;
    std::thread thread_;
    std::mutex mutex_;
    std::deque<Step> script_;
    std::function<Step(int, const std::string&)> fallback_;
    std::vector<Received> received_;

    void handle_impl(const httplib::Request& req, httplib::Response& res) {
        Step step;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            received_.push_back({req.body, req.get_header_value("Authorization")});
            if (!script_.empty()) {
                step = std::move(script_.front());
                script_.pop_front();
            } else if (fallback_) {
                step = fallback_(static_cast<int>(received_.size()) - 1, req.body);
            } else {
                step = Step{500, R"({"error":{"message":"script exhausted"}})"};
            }
        }
        if (step.delay_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(step.delay_s));
        res.status = step.status;
        if (!step.retry_after.empty()) res.set_header("Retry-After", step.retry_after);
        for (const auto& h : step.headers) res.set_header(h.first.c_str(), h.second);
        if (step.trickle_s > 0) {
            const std::string body = step.body;
            const double gap = step.trickle_s;
            res.set_chunked_content_provider(step.content_type, [body, gap](std::size_t offset, httplib::DataSink& sink) {
                if (offset >= body.size()) {
                    sink.done();
                    return true;
                }
                std::this_thread::sleep_for(std::chrono::duration<double>(gap));
                return sink.write(body.data() + offset, 1);
            });
            return;
        }
        if (step.cut_at != std::string::npos) {
            const std::string body = step.body;
            const std::size_t cut = step.cut_at;
            res.set_content_provider(body.size(), step.content_type,
                                     [body, cut](std::size_t, std::size_t, httplib::DataSink& sink) {
                                         sink.write(body.data(), cut);
                                         return false;  // drop the connection mid-body
                                     });
            return;
        }
        res.set_content(step.body, step.content_type.c_str());
    }
};

// ---- the loop's stand-ins (as test_generate.cpp) ----

using lamda_test::synthetic_measure;
using lamda_test::HostileServer;

Task small_task(int max_candidates, double latency_ms = 0.05) {
    Task t;
    t.name = "llm_test";
    t.input = {28, 28, 1};
    t.classes = 10;
    t.constraints.latency_ms = latency_ms;
    t.budget.max_candidates = max_candidates;
    t.budget.max_seconds = 120;
    return t;
}

// A valid model for the task; `width` makes each one different (and its latency grow).
std::string model_text(int width, int extra_layers = 0) {
    std::string s = "model w" + std::to_string(width) + "\ninput: input shape=28x28x1\n"
                    "stem: conv2d out=" + std::to_string(width) + " kernel=3 stride=2 act=relu\n"
                    "body: conv2d out=" + std::to_string(width) + " kernel=3 stride=2 act=relu\n";
    for (int i = 0; i < extra_layers; ++i)
        s += "extra_layer_with_a_long_name_" + std::to_string(i) + ": dwconv kernel=3 act=relu6\n";
    return s + "pool: gap\nlogits: fc out=10\n";
}

std::string fenced(const std::string& dsl) { return "```lamda\n" + dsl + "```\n"; }

LlmConfig test_config(const FakeLlm& server) {
    LlmConfig c;
    c.base_url = server.url();
    c.model = "scripted-model";
    c.timeout_s = 5;
    c.connect_timeout_s = 2;
    c.max_retries = 1;
    c.max_reply_bytes = 64 * 1024;
    return c;
}

GenerateSetup synthetic_setup(std::vector<std::string>* journal_lines = nullptr) {
    GenerateSetup s;
    s.measure = synthetic_measure;
    if (journal_lines) s.on_record = [journal_lines](const CandidateRecord& r) { journal_lines->push_back(candidate_json(r)); };
    return s;
}

// The window (context_tokens) in which a request repairing `invalid` fills `share` of the prompt
// budget that c.max_tokens reply tokens leave (its fixed parts: task, device, the quoted model).
int repair_window(LlmConfig c, const LlmProposerOptions& o, const Task& task, const CandidateRecord& invalid,
                  double share) {
    c.context_tokens = c.max_tokens + 100000;
    const std::size_t repair_fixed = LlmProposer(c, o).request_body(task, {invalid}, 0).size();
    return c.max_tokens + static_cast<int>(std::ceil(static_cast<double>(repair_fixed) / share / default_chars_per_token));
}

bool any_feasible(const std::vector<CandidateRecord>& records) {
    for (const auto& r : records)
        if (r.verdict == Verdict::Feasible) return true;
    return false;
}

}  // namespace

TEST_CASE("llm: DSL is extracted from fences, bare fences and bare text, chatter is ignored") {
    const std::string a = model_text(8), b = model_text(12);
    // chatter around a fenced block
    auto m = extract_dsl_candidates("Sure! Here is a small model:\n\n" + fenced(a) + "\nIt should be fast.");
    REQUIRE(m.size() == 1);
    CHECK(m[0] == a);
    // several blocks, a bare fence, a repeat, and a non-DSL fence
    m = extract_dsl_candidates(fenced(a) + "and\n```\n" + b + "```\n```python\nprint('hi')\n```\n" + fenced(a));
    REQUIRE(m.size() == 2);
    CHECK(m[1] == b);
    // two models in one fence
    m = extract_dsl_candidates("```lamda\n" + a + "\n" + b + "```");
    REQUIRE(m.size() == 2);
    CHECK(parse_dsl(m[0]).ok());
    CHECK(parse_dsl(m[1]).ok());
    // bare text between sentences, and a <think> section that holds a draft
    m = extract_dsl_candidates("<think>\ninput: input shape=1x1x1\n</think>\nHere you go.\n" + a + "Hope this helps!\n");
    REQUIRE(m.size() == 1);
    CHECK(m[0] == a);
    // a reply cut off inside its fence still yields the (invalid) text, for the repair turn
    m = extract_dsl_candidates("```lamda\ninput: input shape=28x28x1\nc: conv2d out=8 ker");
    REQUIRE(m.size() == 1);
    CHECK_FALSE(parse_dsl(m[0]).ok());
    CHECK(extract_dsl_candidates("I cannot help with that.").empty());
    CHECK(extract_dsl_candidates("```\nsome: text\n```").empty());
    CHECK(extract_dsl_candidates(fenced(a) + fenced(b) + fenced(model_text(16)), 2).size() == 2);
}

TEST_CASE("llm: mechanical errors are fixed and the fixes are named") {
    // in= that disagrees with its input
    const std::string wrong_in = "input: input shape=28x28x1\nc1: conv2d out=16 kernel=3 stride=2\n"
                                 "c2: conv2d out=32 kernel=3 in=8   # expects 8\npool: gap\nlogits: fc out=10 in=32\n";
    AutoFix f = auto_fix_dsl(wrong_in);
    REQUIRE(parse_dsl(f.dsl).ok());
    REQUIRE(f.fixes.size() == 1);
    CHECK(f.fixes[0].find("in=8 -> in=16 on 'c2'") != std::string::npos);
    CHECK(f.dsl.find("# expects 8") != std::string::npos);  // comments are kept
    // fc on a 7x7 map: a flatten in between (implicit and explicit inputs)
    for (const std::string fc : {"logits: fc out=10\n", "logits: fc c2 out=10\n"}) {
        const std::string no_pool = "input: input shape=28x28x1\nc1: conv2d out=8 kernel=3 stride=2\n"
                                    "c2: conv2d out=8 kernel=3 stride=2\n" + fc;
        f = auto_fix_dsl(no_pool);
        REQUIRE_MESSAGE(parse_dsl(f.dsl).ok(), f.dsl);
        REQUIRE(f.fixes.size() == 1);
        CHECK(f.fixes[0].find("logits_flatten: flatten c2") != std::string::npos);
        CHECK(analyze(parse_dsl(f.dsl).graph).output_shape.c == 10);
    }
    // both at once, one after the other
    f = auto_fix_dsl("input: input shape=28x28x1\nc1: conv2d out=8 kernel=3 stride=2 in=3\nlogits: fc out=10\n");
    CHECK(parse_dsl(f.dsl).ok());
    CHECK(f.fixes.size() == 2);
    // no obvious fix: left alone
    const std::string unknown = "input: input shape=28x28x1\nc1: conv3d out=8 kernel=3\n";
    f = auto_fix_dsl(unknown);
    CHECK(f.fixes.empty());
    CHECK(f.dsl == unknown);
}

TEST_CASE("llm: the embedded DSL reference is docs/dsl.md, and the prompt's examples are valid") {
    std::ifstream in(std::string(LAMDA_SOURCE_DIR) + "/docs/dsl.md", std::ios::binary);
    REQUIRE(in);
    const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK_MESSAGE(file == llm_dsl_reference(),
                  "llm/llm.hpp's embedded copy of docs/dsl.md is stale: regenerate it (see llm_dsl_reference())");
    const std::string system = llm_system_prompt();
    CHECK(system.find("## Output rules") != std::string::npos);
    for (const std::string& m : extract_dsl_candidates(llm_output_rules())) {
        const ParseResult r = parse_dsl(m, "rules");
        CHECK_MESSAGE(r.ok(), format_diagnostics(r.diagnostics));
    }
    CHECK(llm_device_summary(small_task(1), describe_device(), nullptr).find("CPU: ") == 0);
    // Another board, as its profile's fingerprint describes it: its CPU and kernels, not this machine's.
    DeviceFingerprint board;
    board.cpu_model = "Cortex-A76";
    board.architecture = "aarch64";
    board.xnnpack_isa = xnnpack_isa::neonfma;
    const std::string remote = llm_device_summary(small_task(1), device_info_of(board), nullptr);
    CHECK(remote.rfind("CPU: Cortex-A76 (aarch64, XNNPACK neonfma kernels); latency is", 0) == 0);
    CHECK(llm_device_summary(small_task(1), DeviceInfo{}, nullptr).rfind("CPU: unknown; latency is", 0) == 0);
    // The channel tile of the target's kernels is stated where it is wider than 8, and not for int8.
    DeviceInfo avx2;
    avx2.xnnpack_isa = xnnpack_isa::fma3;
    CHECK(llm_channel_tile_hint(small_task(1), avx2).find("work on 16 channels at a time") != std::string::npos);
    CHECK(llm_channel_tile_hint(small_task(1), device_info_of(board)).empty());
    Task int8 = small_task(1);
    int8.precision = TaskPrecision::Int8;
    CHECK(llm_channel_tile_hint(int8, avx2).empty());
}

TEST_CASE("llm: the API key is redacted from text") {
    CHECK(redact_secret("key sk-abc and sk-abc again", "sk-abc") == "key [redacted] and [redacted] again");
    CHECK(redact_secret("nothing here", "sk-abc") == "nothing here");
    CHECK(redact_secret("no key set", "") == "no key set");
    const LlmError e(LlmErrorKind::Client, "HTTP 401: bad key");
    CHECK(std::string(e.what()) == "client_error: HTTP 401: bad key");
    CHECK_FALSE(e.retryable());
    CHECK(LlmError(LlmErrorKind::RateLimited, "x").retryable());
}

TEST_CASE("llm: base URLs are checked before any request, ports included") {
    auto problem = [](const std::string& url) -> std::string {
        LlmConfig c;
        c.base_url = url;
        c.model = "m";
        try {
            LlmClient client(c);
        } catch (const LlmError& e) {
            return e.kind() == LlmErrorKind::Config ? e.what() : "wrong kind: " + std::string(e.what());
        }
        return "";
    };
    for (const char* good : {"http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:11434", "http://[::1]/v1",
                             "http://host.example:65535/"})
        CHECK_MESSAGE(problem(good).empty(), std::string(good), ": ", problem(good));
    for (const char* bad : {"http://127.0.0.1:/v1", "http://127.0.0.1:0/v1", "http://127.0.0.1:65536", "http://:8080/v1",
                            "http://host:80a/v1", "http://[::1:8080/v1", "http://[::1]x/v1"}) {
        const std::string why = problem(bad);
        CHECK_MESSAGE(why.find("after http://") != std::string::npos, std::string(bad), ": ", why);
    }
}

TEST_CASE("llm: client faults are retried or reported by kind") {
    FakeLlm server;
    LlmConfig c = test_config(server);
    c.max_retries = 2;
    LlmClient client(c);
    std::vector<double> slept;
    client.sleep = [&slept](double s) { slept.push_back(s); };
    const std::vector<ChatMessage> hello{{"user", "hello"}};
    auto kind_of = [&](std::vector<Step> steps) {
        server.script(std::move(steps));
        try {
            client.chat(hello);
        } catch (const LlmError& e) {
            return std::make_pair(e.kind(), std::string(e.what()));
        }
        return std::make_pair(LlmErrorKind::Config, std::string("no error"));
    };

    SUBCASE("429 with Retry-After, then 5xx with backoff, then a reply") {
        server.script({Step{429, R"({"error":{"message":"slow down"}})", "application/json", 0, "1"},
                       Step{503, "overloaded", "text/plain"}, reply("ready")});
        const ChatReply r = client.chat(hello);
        CHECK(r.content == "ready");
        CHECK(r.model == "scripted-model");
        CHECK(r.attempts == 3);
        REQUIRE(slept.size() == 2);
        CHECK(slept[0] == 1.0);                          // Retry-After: 1
        CHECK((slept[1] >= 1.0 && slept[1] <= 2.0));      // base 1 s * 2^1 * [0.5, 1)
    }
    SUBCASE("5xx until the retries are spent") {
        const auto [kind, what] = kind_of({Step{500, R"({"error":"boom"})"}, Step{502, "{}"}, Step{500, R"({"error":"boom"})"}});
        CHECK(kind == LlmErrorKind::Server);
        CHECK(what.find("HTTP 500: boom") != std::string::npos);
        CHECK(what.find("after 3 attempts") != std::string::npos);
        CHECK(server.received().size() == 3);
    }
    SUBCASE("4xx is not retried and carries the server's message") {
        const auto [kind, what] = kind_of({Step{401, R"({"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}})"}});
        CHECK(kind == LlmErrorKind::Client);
        CHECK(what.find("HTTP 401: Incorrect API key provided") != std::string::npos);
        CHECK(server.received().size() == 1);
        CHECK(slept.empty());
    }
    SUBCASE("a reply slower than the timeout") {
        LlmConfig fast = c;
        fast.timeout_s = 0.25;
        fast.max_retries = 0;
        LlmClient impatient(fast);
        server.script({Step{200, chat_json("late"), "application/json", 0.8}});
        try {
            impatient.chat(hello);
            FAIL("no timeout");
        } catch (const LlmError& e) {
            CHECK(e.kind() == LlmErrorKind::Timeout);
            CHECK(e.retryable());
        }
    }
    SUBCASE("truncated bodies") {
        const std::string whole = chat_json(fenced(model_text(8)));
        auto r1 = kind_of({Step{200, whole.substr(0, whole.size() / 2)}});  // JSON cut, HTTP complete
        CHECK(r1.first == LlmErrorKind::Truncated);
        auto r2 = kind_of({Step{200, whole, "application/json", 0, "", whole.size() / 2}});  // connection dropped
        CHECK(r2.first == LlmErrorKind::Truncated);
        CHECK(r2.second.find("of its") != std::string::npos);
    }
    SUBCASE("invalid JSON, no choices, wrong content type, oversized body") {
        CHECK(kind_of({Step{200, "this is not json"}}).first == LlmErrorKind::BadJson);
        CHECK(kind_of({Step{200, R"({"object":"chat.completion","choices":[]})"}}).first == LlmErrorKind::NoChoices);
        CHECK(kind_of({Step{200, R"({"choices":[{"message":{"role":"assistant"}}]})"}}).first == LlmErrorKind::NoChoices);
        const auto ct = kind_of({Step{200, "<html><body>Bad gateway</body></html>", "text/html"}});
        CHECK(ct.first == LlmErrorKind::ContentType);
        CHECK(ct.second.find("text/html") != std::string::npos);
        const auto big = kind_of({Step{200, chat_json(std::string(1 << 20, 'x'))}});
        CHECK(big.first == LlmErrorKind::TooLarge);
        CHECK(server.received().size() == 5);  // none of these is retried
    }
    SUBCASE("nothing listening") {
        // A port that was free a moment ago (bound, then closed: nothing listens there).
        int free_port = 0;
        {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            REQUIRE(fd >= 0);
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            socklen_t len = sizeof addr;
            REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
            REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
            free_port = ntohs(addr.sin_port);
            ::close(fd);
        }
        LlmConfig dead = c;
        dead.base_url = "http://127.0.0.1:" + std::to_string(free_port) + "/v1";
        LlmClient nobody(dead);
        std::vector<double> waits;
        nobody.sleep = [&waits](double s) { waits.push_back(s); };
        try {
            nobody.chat(hello);
            FAIL("connected to nothing");
        } catch (const LlmError& e) {
            CHECK_MESSAGE(e.kind() == LlmErrorKind::Connect, std::string(e.what()));
        }
        CHECK(waits.size() == 2);
    }
    SUBCASE("bad configurations") {
        LlmConfig bad = c;
        bad.base_url = "ftp://example.com";
        CHECK_THROWS_AS(LlmClient{bad}, LlmError);
        bad = c;
        bad.model.clear();
        CHECK_THROWS_AS(LlmClient{bad}, LlmError);
        bad = c;
        bad.context_tokens = bad.max_tokens + 10;
        CHECK_THROWS_AS(LlmClient{bad}, LlmError);
    }
}

TEST_CASE("llm: the loop survives every fault, repairs, and ends with a feasible model, every turn is recorded, failed turns take no slot") {
    FakeLlm server;
    const std::string invalid = "input: input shape=28x28x1\nc1: conv3d out=8 kernel=3\npool: gap\nlogits: fc out=10\n";
    const std::string needs_fix = "input: input shape=28x28x1\nc1: conv2d out=8 kernel=3 stride=2\n"
                                  "c2: conv2d out=16 kernel=3 in=4\npool: gap\nlogits: fc out=10\n";
    server.script({
        reply("Sure, here is a first design.\n\n" + fenced(model_text(8)) + "\nLet me know how it does."),  // turn 1
        reply(fenced(invalid)),                                                                  // turn 2
        Step{429, R"({"error":{"message":"rate limited"}})", "application/json", 0, "1"},         // turn 3 (repair)
        Step{500, R"({"error":{"message":"internal"}})"},                                        //   retry: fails
        Step{200, chat_json("late"), "application/json", 0.7},                                   // turn 4: timeout
        Step{200, chat_json(fenced(model_text(9))).substr(0, 60)},                                //   retry: truncated
        Step{200, chat_json(std::string(200000, 'x'))},                                          // turn 5: too large
        Step{200, "<html>oops</html>", "text/html"},                                             // turn 6: content type
        Step{401, R"({"error":{"message":"invalid key"}})"},                                     // turn 7: 401
        reply("Fixed:\n" + fenced(model_text(10))),                                              // turn 8 (repair of #1)
        reply(fenced(needs_fix) + fenced(model_text(12))),                                       // turn 9
    });
    server.fallback([](int n, const std::string&) { return reply(fenced(model_text(14 + n))); });
    LlmConfig c = test_config(server);
    c.timeout_s = 0.3;
    LlmProposerOptions o;
    o.max_failed_turns = 8;
    LlmProposer proposer(c, o);
    std::vector<double> slept;
    proposer.client().sleep = [&slept](double s) { slept.push_back(s); };
    std::vector<std::string> log;
    proposer.on_log = [&log](const std::string& s) { log.push_back(s); };

    const Task task = small_task(12);
    std::vector<std::string> journal;
    const GenerateResult result = run_generation(task, proposer, synthetic_setup(&journal), {});
    REQUIRE(result.records.size() == 12);
    CHECK(journal.size() == 12);
    CHECK(any_feasible(result.records));
    CHECK(result.stop_reason == "max_candidates");

    // Every turn left a record naming it (a failed turn: in the next candidate's note).
    std::set<int> turns;
    for (const auto& r : result.records) {
        std::size_t at = r.note.find("llm turn ");
        REQUIRE_MESSAGE(at != std::string::npos, r.note);
        for (; at != std::string::npos; at = r.note.find("llm turn ", at + 1)) turns.insert(std::atoi(r.note.c_str() + at + 9));
        CHECK(r.proposer == "llm");
    }
    for (int t = 1; t <= proposer.turns(); ++t) CHECK_MESSAGE(turns.count(t) == 1, "turn ", t);

    const auto& R = result.records;
    CHECK(R[0].verdict == Verdict::Feasible);
    CHECK(R[1].verdict == Verdict::Invalid);
    CHECK(R[1].diagnostics.at(0).find("unknown op 'conv3d'") != std::string::npos);
    // The failed turns 3-7 took no candidate slot; the next candidate's note names each.
    const std::vector<std::string> failed{"llm turn 3 failed: server_error", "llm turn 4 failed: truncated",
                                          "llm turn 5 failed: too_large", "llm turn 6 failed: content_type",
                                          "llm turn 7 failed: client_error: HTTP 401: invalid key"};
    for (const std::string& kind : failed) CHECK_MESSAGE(R[2].note.find(kind) != std::string::npos, R[2].note);
    for (const auto& r : R) CHECK(r.verdict != Verdict::Failed);
    CHECK(R[2].note.find("repair of #1") != std::string::npos);
    CHECK(R[2].verdict == Verdict::Feasible);
    CHECK(R[3].note.find("auto-fixed: line 3: in=4 -> in=8 on 'c2'") != std::string::npos);
    CHECK(R[3].verdict == Verdict::Feasible);
    CHECK(proposer.failed_turns() == 5);
    CHECK(slept.size() == 2);  // the 429 (Retry-After: 1) and the timeout
    CHECK(slept.at(0) == 1.0);

    // The repair turn quoted the diagnostics; the turn after the auto-fix told the model.
    const std::vector<Received> requests = server.received();
    bool repair_sent = false, fix_told = false;
    for (const Received& q : requests) {
        repair_sent = repair_sent || (q.body.find("## Repair #1") != std::string::npos &&
                                      q.body.find("unknown op 'conv3d'") != std::string::npos);
        fix_told = fix_told || q.body.find("lamda auto-fixed it") != std::string::npos;
    }
    CHECK(repair_sent);
    CHECK(fix_told);
    CHECK_FALSE(log.empty());
}

TEST_CASE("llm: a server that answers invalid DSL on 30% of turns still ends with a feasible model") {
    FakeLlm server;
    server.fallback([](int n, const std::string&) {
        // Deterministic "random": 3 turns in 10 are invalid (each differently).
        const int r = static_cast<int>((static_cast<unsigned>(n) * 2654435761u >> 7) % 10);
        if (r < 3)
            return reply("Here:\n" + fenced("input: input shape=28x28x1\nc" + std::to_string(n) +
                                            ": conv2d out=8 kernel=3 stride=2 padding=bogus\npool: gap\nlogits: fc out=10\n"));
        return reply(fenced(model_text(24 + 4 * n)));  // grows: later ones go over the budget
    });
    LlmProposer proposer(test_config(server));
    proposer.client().sleep = [](double) {};
    const Task task = small_task(30, 0.05);
    const GenerateResult result = run_generation(task, proposer, synthetic_setup(), {});
    CHECK(result.records.size() == 30);
    int invalid = 0;
    for (const auto& r : result.records) invalid += r.verdict == Verdict::Invalid;
    CHECK(invalid >= 3);
    REQUIRE(any_feasible(result.records));
    const auto best = best_candidate(result.records, task.objective);
    REQUIRE(best);
    CHECK(*judged_latency_ms(result.records[*best]) <= task.constraints.latency_ms);
}

TEST_CASE("llm: the request stays within the token budget over a 200-turn run") {
    FakeLlm server;
    server.fallback([](int n, const std::string&) {
        // Long models (and chatter) so that the history would overflow any budget.
        return reply("Trying something new.\n" + fenced(model_text(4 + n, 2 + n % 9)));
    });
    LlmConfig c = test_config(server);
    c.context_tokens = 4096;
    c.max_tokens = 512;
    LlmProposer proposer(c);
    proposer.client().sleep = [](double) {};
    const Task task = small_task(200, 0.2);
    const GenerateResult result = run_generation(task, proposer, synthetic_setup(), {});
    CHECK(result.records.size() == 200);
    const std::vector<Received> requests = server.received();
    CHECK(requests.size() >= 200);
    const std::size_t budget_bytes = static_cast<std::size_t>(c.prompt_budget_tokens() * default_chars_per_token);
    std::size_t largest = 0;
    for (const Received& q : requests) largest = std::max(largest, q.body.size());
    CHECK(largest <= budget_bytes);
    CHECK(estimate_tokens(largest) <= static_cast<std::size_t>(c.prompt_budget_tokens()));
    CHECK(largest > budget_bytes * 3 / 4);  // the history does use the budget
    CHECK(proposer.max_request_bytes() == largest);
    const std::string& last = requests.back().body;
    CHECK(last.find("## Best candidates so far") != std::string::npos);
    CHECK(last.find("older candidates not shown") != std::string::npos);
    CHECK(last.find("## Results of your last reply") != std::string::npos);

    // A budget that cannot even hold the DSL reference: each turn fails with a clear reason, and
    // the proposer gives up after max_failed_turns.
    LlmConfig tiny = c;
    tiny.context_tokens = 1024;
    tiny.max_tokens = 256;
    LlmProposer cramped(tiny);
    const GenerateResult r2 = run_generation(small_task(20), cramped, synthetic_setup(), {});
    CHECK(r2.stop_reason == "exhausted");
    REQUIRE(r2.records.size() == 1);  // failed turns take no slot; one record says why the proposer gave up
    CHECK(r2.records[0].verdict == Verdict::Failed);
    CHECK(r2.records[0].reason.find("raise --llm-context-tokens") != std::string::npos);
}

TEST_CASE("llm: the 10% margin holds back history and repairs: fixed parts up to the budget itself are sent, a repair asks for a shorter reply") {
    FakeLlm server;
    const Task task = small_task(10);
    const auto body_with_budget = [&](int budget_tokens) {
        LlmConfig c = test_config(server);
        c.max_tokens = 256;
        c.context_tokens = c.max_tokens + budget_tokens;
        LlmProposer proposer(c);
        return proposer.request_body(task, {});
    };
    const std::size_t fixed = body_with_budget(100000).size();  // no history: the fixed parts
    const auto tokens_for = [&](double share) {  // a budget the fixed parts fill to `share`
        return static_cast<int>(std::ceil(static_cast<double>(fixed) / share / default_chars_per_token));
    };
    // 95% of the budget: past the history's 90%, within the whole (llm_llama, 2026-12-04: a
    // 922-token prompt was refused for a 1024-token budget, every turn)
    CHECK(body_with_budget(tokens_for(0.95)).size() == fixed);
    CHECK(body_with_budget(tokens_for(1.0)).size() == fixed);
    CHECK_THROWS_WITH(body_with_budget(tokens_for(1.05)), doctest::Contains("before any history, over the budget"));

    // A repair keeps the margin: past 90% of the budget it is refused (the turn then proposes
    // anew), within it it is sent.
    CandidateRecord bad;
    bad.index = 0;
    bad.verdict = Verdict::Invalid;
    bad.dsl = "model q\ninput: input shape=28x28x1\nc: conv2d out=Xq7Zrandomidentifier kernel=3\n";
    bad.reason = "unknown value";
    // A repair whose prompt fills `share` of the budget left beside `max_tokens` reply tokens.
    const auto repair_with_budget = [&](int max_tokens, double share) {
        LlmConfig c = test_config(server);
        c.max_tokens = max_tokens;
        c.context_tokens = repair_window(c, {}, task, bad, share);
        LlmProposer proposer(c);
        return proposer.request_body(task, {bad}, 0);
    };
    CHECK(repair_with_budget(256, 0.85).find("## Repair #0") != std::string::npos);
    CHECK_THROWS_WITH(repair_with_budget(256, 0.95), doctest::Contains("over 90% of the budget"));

    // With a proposal's max_tokens of 1,024, a repair that does not fit beside it asks for the
    // reply it needs (256 tokens for one short model) and is sent (llm_llama's 2,048-token window:
    // no repair fitted beside 1,024 reply tokens).
    const std::string shortened = repair_with_budget(1024, 0.95);
    CHECK(shortened.find("## Repair #0") != std::string::npos);
    CHECK(shortened.find("\"max_tokens\":256") != std::string::npos);
    // A repair that fits beside the whole reply keeps it.
    CHECK(repair_with_budget(1024, 0.5).find("\"max_tokens\":1024") != std::string::npos);
    // When the shorter reply frees too little (300 -> 256 tokens), the repair is refused as before.
    CHECK_THROWS_WITH(repair_with_budget(300, 0.95), doctest::Contains("over 90% of the budget"));
}

TEST_CASE("llm: the API key appears only in the Authorization header") {
    const std::string key = "sk-test-Zq8cLamdaSecret0123456789";
    REQUIRE(::setenv("LAMDA_API_KEY", key.c_str(), 1) == 0);
    FakeLlm server;
    // The server echoes the key in its 401 message, as real ones partly do.
    server.script({Step{401, R"({"error":{"message":"Incorrect API key provided: )" + key + R"("}})"}});
    server.fallback([](int n, const std::string&) { return reply(fenced(model_text(8 + n))); });
    LlmConfig c = test_config(server);
    c.api_key = llm_api_key_from_env();
    REQUIRE(c.api_key == key);
    LlmProposer proposer(c);
    std::vector<std::string> log;
    proposer.on_log = [&log](const std::string& s) { log.push_back(s); };

    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                      ("lamda_llm_key_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string journal_path = (dir / "journal.jsonl").string();
    const Task task = small_task(4);
    GenerateResult result;
    {
        JournalHeader h;
        h.task = task;
        h.proposer = "llm";
        JournalWriter journal(journal_path, h);
        GenerateSetup setup = synthetic_setup();
        setup.on_record = [&journal](const CandidateRecord& r) { journal.append(r); };
        result = run_generation(task, proposer, setup, {});
    }
    REQUIRE(result.records.size() == 4);
    CHECK(result.records[0].verdict != Verdict::Failed);  // the failed turn took no slot; its note says it
    CHECK(result.records[0].note.find("Incorrect API key provided: [redacted]") != std::string::npos);

    std::ifstream in(journal_path, std::ios::binary);
    const std::string journal_text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(journal_text.find("[redacted]") != std::string::npos);
    CHECK(journal_text.find(key) == std::string::npos);
    ReportInfo info;
    info.proposer = "llm";
    CHECK(report_json(task, result.records, info).find(key) == std::string::npos);
    CHECK(report_html(task, result.records, info).find(key) == std::string::npos);
    for (const auto& r : result.records) {
        CHECK(r.note.find(key) == std::string::npos);
        CHECK(r.reason.find(key) == std::string::npos);
    }
    for (const auto& l : log) CHECK(l.find(key) == std::string::npos);
    const std::vector<Received> requests = server.received();
    REQUIRE(requests.size() >= 4);
    for (const Received& q : requests) {
        CHECK(q.authorization == "Bearer " + key);
        CHECK(q.body.find(key) == std::string::npos);
    }
    std::filesystem::remove_all(dir);
    ::unsetenv("LAMDA_API_KEY");
}

// ---- the servers people really run (issue 15): each behaviour ends with a valid best model and
// at least 75% of the candidate slots holding a valid candidate ----

namespace {

std::string chat_json_full(const std::string* content, const std::string& reasoning, const std::string& finish,
                           bool tool_call = false, std::int64_t prompt_tokens = -1) {
    JsonWriter j;
    j.begin_object().field("id", "chatcmpl-2").field("object", "chat.completion").field("model", "scripted-model");
    j.key("choices").begin_array().begin_object().field("index", 0);
    j.key("message").begin_object().field("role", "assistant").key("content");
    if (content) j.value(std::string_view(*content));
    else j.null();
    if (!reasoning.empty()) j.field("reasoning_content", std::string_view(reasoning));
    if (tool_call) {
        j.key("tool_calls").begin_array().begin_object().field("id", "call_1").field("type", "function");
        j.key("function").begin_object().field("name", "search").field("arguments", "{}").end_object().end_object().end_array();
    }
    j.end_object().field("finish_reason", std::string_view(finish)).end_object().end_array();
    if (prompt_tokens >= 0)
        j.key("usage").begin_object().field("prompt_tokens", prompt_tokens).field("completion_tokens", 100).end_object();
    j.end_object();
    return j.str();
}

// The reply as server-sent events, a few characters per event.
std::string sse_body(const std::string& content, const std::string& finish = "stop", std::size_t piece = 7,
                     std::int64_t prompt_tokens = -1) {
    std::string out;
    for (std::size_t i = 0; i < content.size(); i += piece) {
        JsonWriter j;
        j.begin_object().field("model", "scripted-model").key("choices").begin_array().begin_object().field("index", 0);
        j.key("delta").begin_object().field("content", std::string_view(content).substr(i, piece)).end_object();
        j.key("finish_reason").null().end_object().end_array().end_object();
        out += "data: " + j.str() + "\n\n";
    }
    out += "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"" + finish + "\"}]}\n\n";
    if (prompt_tokens >= 0)
        out += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":" + std::to_string(prompt_tokens) + ",\"completion_tokens\":50}}\n\n";
    out += "data: [DONE]\n\n";
    return out;
}

double valid_share(const std::vector<CandidateRecord>& records) {
    if (records.empty()) return 0;
    std::size_t valid = 0;
    for (const auto& r : records) valid += r.verdict != Verdict::Invalid && r.verdict != Verdict::Failed;
    return double(valid) / double(records.size());
}

// The issue's bar: a valid best model and >= 75% of the slots valid.
void check_bar(const Task& task, const GenerateResult& result) {
    REQUIRE(!result.records.empty());
    const auto best = best_candidate(result.records, task.objective);
    REQUIRE(best);
    CHECK(parse_dsl(result.records[*best].dsl).ok());
    CHECK_MESSAGE(valid_share(result.records) >= 0.75, "valid share ", valid_share(result.records));
}

GenerateResult run_llm(FakeLlm& server, const Task& task, LlmProposerOptions o = {}, LlmConfig* config = nullptr,
                       std::vector<std::string>* log = nullptr) {
    LlmConfig c = config ? *config : test_config(server);
    LlmProposer proposer(c, o);
    proposer.client().sleep = [](double) {};
    if (log) proposer.on_log = [log](const std::string& s) { log->push_back(s); };
    return run_generation(task, proposer, synthetic_setup(), {});
}

bool any_contains(const std::vector<std::string>& v, const std::string& what) {
    for (const auto& s : v)
        if (s.find(what) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("llm servers: DeepSeek-R1 style </think> without its opening tag: the draft inside is not a candidate") {
    const std::string draft = "input: input shape=28x28x1\nc: conv3d out=8 kernel=3\n";  // invalid, never submitted
    CHECK(extract_dsl_candidates("Let me think.\n" + draft + "</think>\n" + fenced(model_text(8))) ==
          std::vector<std::string>{model_text(8)});
    // cut off while thinking: nothing, and the reason says so
    ChatReply cut;
    cut.content = "<think>\nThe first layer should be\n" + draft;
    cut.finish_reason = "length";
    const ExtractedReply e = extract_reply(cut);
    CHECK(e.models.empty());
    CHECK(e.why_empty.find("cut off at max_tokens while reasoning") != std::string::npos);
    CHECK(e.why_empty.find("raise --llm-max-tokens") != std::string::npos);

    FakeLlm server;
    server.fallback([&draft](int n, const std::string&) {
        return reply("Okay, so the user wants a model.\n" + draft + "Hmm, no.\n</think>\n\nHere:\n" + fenced(model_text(8 + 2 * n)));
    });
    const Task task = small_task(12);
    const GenerateResult result = run_llm(server, task);
    CHECK(result.records.size() == 12);
    for (const auto& r : result.records) CHECK(r.verdict != Verdict::Invalid);
    for (const auto& q : server.received()) CHECK(q.body.find("## Repair") == std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: reasoning longer than max_tokens, content null: the cause is named, no slot is used") {
    FakeLlm server;
    const std::string reasoning(3000, 'r');
    server.script({Step{200, chat_json_full(nullptr, reasoning, "length")},  // Qwen3/R1: all tokens reasoning
                   Step{200, chat_json_full(nullptr, "", "tool_calls", true)}});  // only tool_calls
    server.fallback([](int n, const std::string&) {
        const std::string c = fenced(model_text(8 + 2 * n));
        return Step{200, chat_json_full(&c, "short reasoning", "stop")};
    });
    std::vector<std::string> log;
    const Task task = small_task(12);
    const GenerateResult result = run_llm(server, task, {}, nullptr, &log);
    CHECK(result.records.size() == 12);
    CHECK(any_contains(log, "cut off at max_tokens while reasoning"));
    CHECK(any_contains(log, "raise --llm-max-tokens"));
    CHECK(any_contains(log, "the model called a tool (tool_calls)"));
    CHECK(result.records[0].note.find("cut off at max_tokens while reasoning") != std::string::npos);
    // the next request told the model its reply was cut, not to "use fences"
    const auto q = server.received();
    REQUIRE(q.size() >= 2);
    CHECK(q[1].body.find("cut off at the token limit while you were still reasoning") != std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: a reply cut at max_tokens is not repaired as if meant") {
    FakeLlm server;
    const std::string whole = fenced(model_text(8)) + "```lamda\ninput: input shape=28x28x1\nstem: conv2d out=16 ker";
    server.script({Step{200, chat_json_full(&whole, "", "length")}});
    server.fallback([](int n, const std::string&) { return reply(fenced(model_text(10 + 2 * n))); });
    const Task task = small_task(8);
    const GenerateResult result = run_llm(server, task);
    for (const auto& r : result.records) CHECK(r.verdict != Verdict::Invalid);  // the cut model was not a candidate
    const auto q = server.received();
    REQUIRE(q.size() >= 2);
    CHECK(q[1].body.find("cut off at the token limit in the middle of a model") != std::string::npos);
    for (const auto& x : q) CHECK(x.body.find("## Repair") == std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: chatty prose, bare DSL beside a python fence, a sentence under bare DSL") {
    const std::string a = model_text(8), b = model_text(12);
    auto m = extract_dsl_candidates("Here is the model:\n\n" + a + "\nAnd in PyTorch:\n```python\nimport torch\nx = 1\n```\n");
    REQUIRE(m.size() == 1);
    CHECK(m[0] == a);
    m = extract_dsl_candidates(a + "Note: fc layers are cheap here, and gap keeps it small.\n");
    REQUIRE(m.size() == 1);
    CHECK(m[0] == a);
    m = extract_dsl_candidates("```python\nprint(1)\n```\n" + fenced(b) + "\nA variant:\n" + a);
    CHECK(m.size() == 2);

    FakeLlm server;
    server.fallback([](int n, const std::string&) {
        const std::string x = model_text(8 + 2 * n), y = model_text(9 + 2 * n);
        if (n % 2) return reply("Sure!\n" + x + "\nThe same in PyTorch:\n```python\nimport torch.nn as nn\n```\n");
        return reply(y + "Note: fc layers are cheap, so the head is fine.\n");
    });
    const Task task = small_task(15);
    const GenerateResult result = run_llm(server, task);
    CHECK(result.records.size() == 15);
    for (const auto& r : result.records) CHECK(r.verdict != Verdict::Invalid);
    check_bar(task, result);
}

TEST_CASE("llm servers: near-miss DSL is fixed mechanically, every fix named") {
    const Shape in{28, 28, 1};
    const std::string near = "input: input shape=1\xC3\x97" "28\xC3\x97" "28\n"
                             "stem: Conv2d out=16 kernel=(3,3) stride=2 act=ReLU\n"
                             "dw: dwconv kernel=[5, 5] act=ReLU6 padding=\xE2\x80\x9Csame\xE2\x80\x9D\n"
                             "pool: gap\nlogits: fc out=10\n";
    const AutoFix f = auto_fix_dsl(near, 8, &in);
    const ParseResult r = parse_dsl(f.dsl);
    REQUIRE_MESSAGE(r.ok(), f.dsl);
    CHECK(r.graph.layers[0].shape == in);
    std::string all;
    for (const auto& x : f.fixes) all += x + "\n";
    CHECK_MESSAGE(all.find("U+00D7 multiplication sign) -> 'x' (2 times)") != std::string::npos, all);
    CHECK_MESSAGE(all.find("looks like NCHW") != std::string::npos, all);
    CHECK(all.find("shape=28x28x1") != std::string::npos);
    CHECK(all.find("kernel=(3,3) -> kernel=3") != std::string::npos);
    CHECK(all.find("kernel=[5, 5] -> kernel=5") != std::string::npos);
    CHECK(all.find("act=ReLU -> act=relu") != std::string::npos);
    CHECK(all.find("op 'Conv2d' -> 'conv2d'") != std::string::npos);
    CHECK(all.find("U+201C left double quote") != std::string::npos);
    // every fix of a line at once (the stem line had three)
    std::size_t line2 = 0;
    for (const auto& x : f.fixes) line2 += x.rfind("line 2: ", 0) == 0;
    CHECK(line2 == 3);

    FakeLlm server;
    server.fallback([](int n, const std::string&) {
        const std::string w = std::to_string(8 + 2 * n);
        return reply(fenced("input: input shape=1x28x28\nstem: conv2d out=" + w + " kernel=(3,3) stride=2 act=ReLU\n"
                            "b: conv2d out=" + w + " kernel=3\xC3\x97" "3 stride=2 act=relu\npool: gap\nlogits: fc out=10\n"));
    });
    const Task task = small_task(25);
    const GenerateResult result = run_llm(server, task);
    CHECK(result.records.size() == 25);
    for (const auto& rec : result.records) CHECK_MESSAGE(rec.verdict != Verdict::Invalid, rec.reason);
    CHECK(result.records[0].note.find("auto-fixed") != std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: invalid models of one turn are repaired in one request") {
    FakeLlm server;
    const std::string bad1 = "input: input shape=28x28x1\nc1: conv3d out=8 kernel=3\npool: gap\nlogits: fc out=10\n";
    const std::string bad2 = "input: input shape=28x28x1\nc1: conv2d out=8 kernel=3 wibble=2\npool: gap\nlogits: fc out=10\n";
    server.script({reply(fenced(bad1) + fenced(bad2) + fenced(model_text(8)))});
    server.fallback([](int n, const std::string&) { return reply(fenced(model_text(10 + n)) + fenced(model_text(40 + n))); });
    const Task task = small_task(12);
    const GenerateResult result = run_llm(server, task);
    const auto q = server.received();
    REQUIRE(q.size() >= 2);
    CHECK(q[1].body.find("## Repair #0") != std::string::npos);
    CHECK(q[1].body.find("## Repair #1") != std::string::npos);  // both in one request
    CHECK(result.records.at(3).note.find("repair of #0") != std::string::npos);
    CHECK(result.records.at(4).note.find("repair of #1") != std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: in a small window a repair asks for a short reply, a model that reasons keeps the full one") {
    const std::string bad = "input: input shape=28x28x1\nc1: conv2d out=8 kernel=3 wibble=2\npool: gap\nlogits: fc out=10\n";
    const Task task = small_task(6);
    LlmProposerOptions o;
    o.compact = 0;  // the prompt request_body() sizes
    // A window in which the repair's fixed parts fill 95% of what 1,024 reply tokens leave (as in
    // llm_llama's 2,048-token window): no room for it beside a proposal's max_tokens.
    CandidateRecord invalid;
    invalid.index = 0;
    invalid.verdict = Verdict::Invalid;
    invalid.dsl = bad;
    invalid.reason = "unknown attribute 'wibble'";
    const auto second_request = [&](const std::string& reasoning, std::vector<std::string>* log) {
        FakeLlm server;
        const std::string first = fenced(bad);
        server.script({Step{200, chat_json_full(&first, reasoning, "stop")}});
        server.fallback([](int n, const std::string&) { return reply(fenced(model_text(10 + n))); });
        LlmConfig c = test_config(server);
        c.max_tokens = 1024;
        c.context_tokens = repair_window(c, o, task, invalid, 0.95);
        run_llm(server, task, o, &c, log);
        const auto q = server.received();
        REQUIRE(q.size() >= 2);
        return q[1].body;
    };
    std::vector<std::string> log;
    const std::string plain = second_request("", &log);
    CHECK(plain.find("## Repair #0") != std::string::npos);
    CHECK(plain.find("\"max_tokens\":256") != std::string::npos);
    CHECK_FALSE(any_contains(log, "repairs keep the full max_tokens"));
    log.clear();
    // A reasoning model would spend 256 tokens thinking: its repair keeps 1,024 and, not
    // fitting beside them, gives way to a new proposal.
    const std::string reasoned = second_request("Let me check the channel counts first.", &log);
    CHECK(reasoned.find("## Repair") == std::string::npos);
    CHECK(reasoned.find("\"max_tokens\":1024") != std::string::npos);
    CHECK(any_contains(log, "repairs keep the full max_tokens from now on: the model reasons"));
}

TEST_CASE("llm servers: a proxy that answers SSE although stream is false, streaming with progress and an early stop") {
    FakeLlm server;
    server.fallback([](int n, const std::string& body) {
        return Step{200, sse_body("Here:\n" + fenced(model_text(8 + 2 * n)), "stop", 7, static_cast<std::int64_t>(body.size() / 3)),
                    "text/event-stream"};
    });
    const Task task = small_task(5);
    std::vector<std::string> log;
    const GenerateResult result = run_llm(server, task, {}, nullptr, &log);
    std::string all_log;
    for (const auto& l : log) all_log += l + "\n";
    INFO(all_log);
    CHECK(result.records.size() == 5);
    for (const auto& r : result.records) CHECK_MESSAGE(r.verdict != Verdict::Invalid, r.reason, r.note, r.dsl);
    for (const auto& q : server.received()) CHECK(q.body.find("\"stream\":false") != std::string::npos);
    check_bar(task, result);

    // stream: true; the reply trickles on after three complete models: lamda stops reading.
    FakeLlm slow;
    std::string three;
    for (int i = 0; i < 3; ++i) three += fenced(model_text(8 + i));
    const std::string endless = sse_body(three + std::string(4000, 'z'), "stop", 64);
    slow.script({Step{200, endless, "text/event-stream", 0, "", std::string::npos, 0.0005}});
    LlmConfig c = test_config(slow);
    c.stream = true;
    c.progress_interval_s = 0;
    LlmClient client(c);
    std::vector<std::size_t> progress;
    client.on_progress = [&progress](std::size_t chars, double) { progress.push_back(chars); };
    client.stop_when = [](const std::string& content) { return extract_dsl_candidates(content).size() >= 3 && llm_detail::closed_fences(content) >= 3; };
    const ChatReply r = client.chat({{"user", "hi"}});
    CHECK(r.streamed);
    CHECK(r.stopped_early);
    CHECK(extract_dsl_candidates(r.content).size() == 3);
    CHECK(r.content.find("zzzz") == std::string::npos);
    CHECK(!progress.empty());
    REQUIRE(!slow.received().empty());
    CHECK(slow.received()[0].body.find("\"stream\":true") != std::string::npos);
}

TEST_CASE("llm servers: Ollama: the window is asked (/api/show) and sent through the native API as num_ctx") {
    std::atomic<int> native{0};
    FakeLlm server([&native](httplib::Server& s, FakeLlm& self) {
        s.Post("/api/show", [](const httplib::Request&, httplib::Response& res) {
            res.set_content(R"({"modelfile":"FROM x","parameters":"num_ctx                        2048\nstop \"<|im_end|>\"","model_info":{"qwen2.context_length":32768}})",
                            "application/json");
        });
        s.Post("/api/chat", [&native, &self](const httplib::Request& req, httplib::Response& res) {
            ++native;
            self.handle(req, res);  // the scripted reply, rewritten into Ollama's native shape below
            const ChatReply r = parse_chat_reply(res.body);
            JsonWriter j;
            j.begin_object().field("model", "qwen2.5-coder:7b").key("message").begin_object().field("role", "assistant")
                .field("content", std::string_view(r.content)).end_object().field("done", true).field("done_reason", "stop")
                .field("prompt_eval_count", static_cast<std::int64_t>(req.body.size() / 3)).field("eval_count", 80).end_object();
            res.set_content(j.str(), "application/json");
        });
    });
    server.fallback([](int n, const std::string&) { return reply(fenced(model_text(8 + 2 * n))); });
    LlmConfig c = test_config(server);
    c.context_tokens = 2048;
    c.max_tokens = 2048;  // the default: a 2048 window must still leave room for a reply
    LlmProposerOptions o;
    o.probe_server = true;
    std::vector<std::string> log;
    const Task task = small_task(7);
    const GenerateResult result = run_llm(server, task, o, &c, &log);
    CHECK(native.load() >= 7);
    CHECK(any_contains(log, "server: ollama"));
    const auto q = server.received();
    REQUIRE(!q.empty());
    for (const auto& x : q) {
        CHECK(x.body.find("\"num_ctx\":2048") != std::string::npos);
        CHECK(x.body.find("## The lamda DSL") == std::string::npos);  // the compact prompt
        CHECK(x.body.find("## lamda DSL (short)") != std::string::npos);
        CHECK(x.body.find("channels at a time") == std::string::npos);  // no room for the tile's advice
        // the request (a real tokenizer's ~3 chars per token) and its reply fit the 2048 window
        CHECK(x.body.size() / 3 + 1024 <= 2048);
    }
    check_bar(task, result);
}

TEST_CASE("llm servers: an OpenAI endpoint that cuts the prompt silently is noticed from usage.prompt_tokens") {
    FakeLlm server;
    server.fallback([](int n, const std::string& body) {
        const std::string c = fenced(model_text(8 + 2 * n));
        // Ollama's OpenAI endpoint: the window stays 2048, the prompt's start is cut silently.
        return Step{200, chat_json_full(&c, "", "stop", false, std::min<std::int64_t>(2048, static_cast<std::int64_t>(body.size() / 3)))};
    });
    std::vector<std::string> log;
    const Task task = small_task(7);
    LlmConfig c = test_config(server);
    c.context_tokens = 8192;
    c.max_tokens = 1024;
    const GenerateResult result = run_llm(server, task, {}, &c, &log);
    CHECK(any_contains(log, "it cut the prompt; using a window of 2048 tokens"));
    const auto q = server.received();
    REQUIRE(q.size() >= 2);
    CHECK(q.back().body.size() / 3 <= 2048);
    CHECK(q.back().body.find("## lamda DSL (short)") != std::string::npos);
    check_bar(task, result);
}

TEST_CASE("llm servers: HTTP 400 context_length_exceeded: the server's numbers are read, the request shrinks, never resent") {
    const ContextNumbers n = parse_context_error(
        "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens (3072 in the messages, "
        "2048 in the completion). Please reduce the length of the messages or completion.");
    CHECK(n.window == 4096);
    CHECK(n.requested == 5120);
    CHECK(n.prompt_tokens == 3072);
    const ContextNumbers m = parse_context_error("the request exceeds the available context size (2048 tokens), request (2500 tokens)");
    CHECK(m.window == 2048);

    FakeLlm server;
    server.fallback([](int n2, const std::string& body) {
        const std::int64_t tokens = static_cast<std::int64_t>(body.size() / 3);  // the server's tokenizer
        if (tokens + 2048 > 4096)
            return Step{400, R"({"error":{"message":"This model's maximum context length is 4096 tokens. However, you requested )" +
                                 std::to_string(tokens + 2048) + " tokens (" + std::to_string(tokens) +
                                 R"( in the messages, 2048 in the completion).","type":"invalid_request_error","code":"context_length_exceeded"}})"};
        return reply(fenced(model_text(8 + 2 * n2, n2 % 5)));
    });
    LlmConfig c = test_config(server);
    c.context_tokens = 32768;  // what the user believed
    std::vector<std::string> log;
    const Task task = small_task(7);
    const GenerateResult result = run_llm(server, task, {}, &c, &log);
    CHECK(any_contains(log, "context_length_exceeded: the server's window is 4096 tokens"));
    const auto q = server.received();
    for (std::size_t i = 1; i < q.size(); ++i) CHECK(q[i].body != q[i - 1].body);  // never the same bytes twice
    check_bar(task, result);
}

TEST_CASE("llm servers: a slow first token: the total deadline holds, a timed-out request is retried streaming, max_seconds bounds waits") {
    // 1 byte every 0.1 s: a per-read timeout would wait forever; the total deadline stops it.
    {
        FakeLlm server;
        server.script({Step{200, chat_json(fenced(model_text(8))), "application/json", 0, "", std::string::npos, 0.1}});
        LlmConfig c = test_config(server);
        c.timeout_s = 0.6;
        c.max_retries = 0;
        LlmClient client(c);
        const auto t0 = std::chrono::steady_clock::now();
        try {
            client.chat({{"user", "hi"}});
            FAIL("no timeout");
        } catch (const LlmError& e) {
            CHECK(e.kind() == LlmErrorKind::Timeout);
        }
        CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 3.0);
    }
    // a timeout: the retry is not the same request, it streams
    {
        FakeLlm server;
        server.script({Step{200, chat_json("late"), "application/json", 0.8}});
        server.fallback([](int n, const std::string&) { return Step{200, sse_body(fenced(model_text(8 + 2 * n))), "text/event-stream"}; });
        LlmConfig c = test_config(server);
        c.timeout_s = 0.3;
        const Task task = small_task(5);
        const GenerateResult result = run_llm(server, task, {}, &c);
        const auto q = server.received();
        REQUIRE(q.size() >= 2);
        CHECK(q[0].body.find("\"stream\":false") != std::string::npos);
        CHECK(q[1].body.find("\"stream\":true") != std::string::npos);
        check_bar(task, result);
    }
    // a server that never answers in time: the task's max_seconds ends the run, not 5 x timeout
    {
        FakeLlm server;
        server.fallback([](int, const std::string&) { return Step{200, chat_json("late"), "application/json", 2.5}; });
        LlmConfig c = test_config(server);
        c.timeout_s = 30;
        c.max_retries = 4;
        Task task = small_task(5);
        task.budget.max_seconds = 1;
        const auto t0 = std::chrono::steady_clock::now();
        const GenerateResult result = run_llm(server, task, {}, &c);
        CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 4.0);
        CHECK(result.records.size() <= 1);
    }
}

TEST_CASE("llm servers: reply headers are capped, servers say their window (llama.cpp /props, vLLM /v1/models)") {
    {
        FakeLlm server;
        Step s = reply(fenced(model_text(8)));
        for (int i = 0; i < 300; ++i) s.headers.push_back({"X-Pad-" + std::to_string(i), std::string(64, 'p')});
        server.script({s});
        LlmConfig c = test_config(server);
        LlmClient client(c);
        try {
            client.chat({{"user", "hi"}});
            FAIL("headers accepted");
        } catch (const LlmError& e) {
            CHECK(e.kind() == LlmErrorKind::TooLarge);
            CHECK(std::string(e.what()).find("headers") != std::string::npos);
        }
    }
    {
        FakeLlm server([](httplib::Server& s, FakeLlm&) {
            s.Get("/props", [](const httplib::Request&, httplib::Response& res) {
                res.set_content(R"({"default_generation_settings":{"n_ctx":2048},"model_path":"/m/tiny.gguf"})", "application/json");
            });
        });
        LlmClient client(test_config(server));
        const ServerInfo info = client.probe();
        CHECK(info.kind == "llama.cpp");
        CHECK(info.context_tokens == 2048);
        CHECK(info.grammar);
    }
    {
        FakeLlm server([](httplib::Server& s, FakeLlm&) {
            s.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
                res.set_content(R"({"object":"list","data":[{"id":"scripted-model","object":"model","max_model_len":4096}]})", "application/json");
            });
        });
        LlmClient client(test_config(server));
        const ServerInfo info = client.probe();
        CHECK(info.kind == "vllm");
        CHECK(info.context_tokens == 4096);
        CHECK(info.grammar);
    }
    {
        FakeLlm server;  // says nothing
        LlmClient client(test_config(server));
        const ServerInfo info = client.probe();
        CHECK(info.kind == "openai-compatible");
        CHECK(info.context_tokens == 0);
    }
}

TEST_CASE("llm servers: a server that sends headers without end is cut off at the header cap, not the deadline") {
    // Each connection: header lines until the client goes away (or 64 MiB in all, so a client
    // without a cap ends the test rather than hanging it).
    std::string flood;
    for (int i = 0; i < 4096; ++i) flood += "X-Flood: 1\r\n";
    std::atomic<std::size_t> sent{0};
    std::string message = "(no error)";
    LlmErrorKind kind = LlmErrorKind::Config;
    double seconds = 0;
    {
        HostileServer server([&flood, &sent](int fd, const std::atomic<bool>& stop) {
            if (!HostileServer::send_all(fd, "HTTP/1.1 200 OK\r\n")) return;
            while (sent.load() < (std::size_t{64} << 20) && !stop.load() && HostileServer::send_all(fd, flood))
                sent += flood.size();
        });
        LlmConfig c;
        c.base_url = "http://127.0.0.1:" + std::to_string(server.port) + "/v1";
        c.model = "m";
        c.timeout_s = 20;
        c.max_retries = 0;
        LlmClient client(c);
        const auto t0 = std::chrono::steady_clock::now();
        try {
            client.chat({{"user", "hi"}});
        } catch (const LlmError& e) {
            message = e.what();
            kind = e.kind();
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }  // the server stops
    CAPTURE(message);
    CHECK(kind == LlmErrorKind::TooLarge);
    CHECK(message.find("headers") != std::string::npos);
    CHECK(seconds < 10.0);
    CHECK(sent.load() < (std::size_t{32} << 20));  // the client stopped reading near the cap
}

TEST_CASE("llm servers: structured output ({\"model\": DSL}) is unwrapped") {
    const std::string a = model_text(8);
    JsonWriter j;
    j.begin_object().field("model", std::string_view(a)).end_object();
    CHECK(extract_dsl_candidates(j.str()) == std::vector<std::string>{a});
}

TEST_CASE("llm: constraints go where each server takes them, numbers are printed without exponents") {
    ServerInfo llama;
    llama.kind = "llama.cpp";
    llama.grammar = llama.json_schema = true;
    ServerInfo vllm = llama;
    vllm.kind = "vllm";
    ServerInfo openai;
    openai.json_schema = true;
    const std::string gbnf = "root ::= \"input\"", schema = R"({"type":"object","properties":{"model":{"type":"string"}},"required":["model"]})";
    std::string chosen;
    CHECK(constraint_fields("auto", llama, false, gbnf, schema, &chosen) == R"("grammar":"root ::= \"input\"")");
    CHECK(chosen == "grammar");
    CHECK(constraint_fields("auto", vllm, false, gbnf, schema, &chosen).rfind("\"guided_grammar\":", 0) == 0);
    CHECK(constraint_fields("auto", openai, false, gbnf, schema, &chosen).find("\"response_format\":{\"type\":\"json_schema\"") == 0);
    CHECK(chosen == "json");
    CHECK(constraint_fields("json", openai, true, gbnf, schema, &chosen) == "\"format\":" + schema);
    CHECK(constraint_fields("off", llama, false, gbnf, schema, &chosen).empty());
    CHECK(constraint_fields("auto", ServerInfo{}, false, gbnf, "", &chosen).empty());
    CHECK(chosen == "off");
    CHECK_THROWS_AS(constraint_fields("bogus", llama, false, gbnf, schema), LlmError);
    // the request body carries them
    LlmConfig c;
    c.model = "m";
    c.extra_body = constraint_fields("grammar", llama, false, gbnf, schema);
    const std::string body = chat_request_json(c, {{"user", "hi"}});
    CHECK(body.find(R"(,"grammar":"root ::= \"input\""})") != std::string::npos);
    CHECK(llm_detail::num(7e-05) == "0.00007");
    CHECK(llm_detail::num(0.0123456) == "0.0123");
    CHECK(llm_detail::num(12.345) == "12.3");
    CHECK(llm_detail::num(1234.4) == "1234");
}

namespace {
using namespace lamda;

// A parallel search (search/parallel.hpp) fills its workers from one turn: the LLM is asked for
// several candidates at once, and they are in flight together while the server is not asked again.
class HoldingRunner : public CandidateRunner {
public:
    explicit HoldingRunner(const Task& task) : task_(task) {}
    int slots() const override { return 3; }
    void submit(std::uint64_t ticket, const CandidateRecord& screened) override {
        held.push_back({ticket, screened});
        most = std::max(most, held.size());
    }
    Done wait() override {
        REQUIRE_FALSE(held.empty());
        Done d;
        d.ticket = held.front().first;
        d.record = run_candidate(task_, held.front().second, synthetic_setup(), &d.stage_seconds);
        d.record.evaluated_by = "worker (test)";
        held.pop_front();
        return d;
    }
    std::deque<std::pair<std::uint64_t, CandidateRecord>> held;
    std::size_t most = 0;

private:
    Task task_;
};

TEST_CASE("llm: a parallel search gets three candidates in flight from one turn") {
    FakeLlm server;
    server.script({reply("Three designs:\n" + fenced(model_text(8)) + fenced(model_text(12)) + fenced(model_text(16)))});
    LlmProposerOptions o;
    o.candidates_per_turn = 3;
    LlmProposer proposer(test_config(server), o);
    proposer.client().sleep = [](double) {};
    const Task task = small_task(3);
    HoldingRunner runner(task);
    const GenerateResult r = run_generation_parallel(task, proposer, synthetic_setup(), runner);
    REQUIRE(r.records.size() == 3);
    CHECK(runner.most == 3);                 // all three were out at once
    CHECK(server.received().size() == 1);    // from one request
    CHECK(server.received()[0].body.find("Propose 3") != std::string::npos);
    std::set<std::string> notes;
    for (const auto& c : r.records) {
        CHECK(c.note.rfind("llm turn 1, candidate ", 0) == 0);
        CHECK(c.evaluated_by == "worker (test)");
        notes.insert(c.note.substr(0, c.note.find(';')));
    }
    CHECK(notes.size() == 3);
}

}  // namespace

TEST_CASE("llm: the prompt lists the candidates other workers are still evaluating") {
    const Task task = small_task(12);
    LlmConfig c;
    c.base_url = "http://127.0.0.1:9/v1";  // never contacted: request_body only builds the request
    c.model = "scripted-model";
    LlmProposer proposer(c);
    CandidateRecord r;
    r.dsl = "input: input shape=28x28x1\nc1: conv2d out=24 kernel=3\np: gap\nfc: fc out=10\n";
    r.hash = text_hash(r.dsl);
    r.params = 1234;
    r.predicted_ms = 0.02;
    const std::string without = proposer.request_body(task, {});
    const std::string with = proposer.request_body(task, {}, std::nullopt, {r});
    CHECK(without.find("Being evaluated now") == std::string::npos);
    CHECK(with.find("Being evaluated now") != std::string::npos);
    CHECK(with.find("3 layers (conv2d, gap, fc), widest 24") != std::string::npos);
    CHECK(with.find("1,234 params") != std::string::npos);
    // The pending list is for one request only.
    CHECK(proposer.request_body(task, {}) == without);
    // The full prompt (a window over 4096) carries the channel tile's advice where there is one.
    CHECK((without.find("channels at a time") != std::string::npos) == !llm_channel_tile_hint(task, describe_device()).empty());
}

TEST_CASE("llm: under a total time limit the prompt says how much of each full training fits, and ranks by it") {
    Task task = small_task(12);
    task.objective = Objective::Accuracy;
    task.budget.max_total_seconds = 181;
    LlmConfig c;
    c.base_url = "http://127.0.0.1:9/v1";  // never contacted: request_body only builds the request
    c.model = "scripted-model";
    // Two feasible trained candidates (the numbers of docs/adapt.md's status line): #1 is more
    // accurate but trains slowly, 38% of its full training fits; #2 fits whole.
    std::vector<CandidateRecord> records(2);
    for (int k = 0; k < 2; ++k) {
        CandidateRecord& r = records[static_cast<std::size_t>(k)];
        r.index = k + 1;
        r.dsl = model_text(8 + 8 * k);
        r.hash = text_hash(r.dsl);
        r.verdict = Verdict::Feasible;
        r.measured_ms = 0.03;
        r.params = 1000;
    }
    records[0].accuracy = 0.816, records[0].train_seconds = 2.8;
    records[1].accuracy = 0.801, records[1].train_seconds = 1.1;
    const auto fit = [](const CandidateRecord& r) { return r.train_seconds > 2 ? 0.38 : 1.0; };

    LlmProposer plain(c), timed(c);
    timed.set_final_training_fit(fit);
    const std::string without = plain.request_body(task, records), with = timed.request_body(task, records);
    CHECK(without.find("## Time") == std::string::npos);
    CHECK(without.find("training fits") == std::string::npos);
    CHECK(with.find("## Time") != std::string::npos);
    CHECK(with.find("one limit of 181 s") != std::string::npos);
    CHECK(with.find("accuracy 81.6%, its full training fits 38% of the time kept for it") != std::string::npos);
    CHECK(with.find("accuracy 80.1%, its full training fits") == std::string::npos);  // all of it: not said
    // Best first: by accuracy alone #1, by accuracy less what cannot train #2 (81.6 - 5 x 0.62 < 80.1).
    CHECK(without.find("### #1 ") < without.find("### #2 "));
    CHECK(with.find("### #2 ") < with.find("### #1 "));
}

TEST_CASE("llm: adapting, every request shows the start model to edit") {
    const Task task = small_task(12);
    LlmConfig c;
    c.base_url = "http://127.0.0.1:9/v1";  // never contacted: request_body only builds the request
    c.model = "scripted-model";
    const std::string start = "input: input shape=28x28x1\nstart_conv: conv2d out=24 kernel=3\np: gap\nfc: fc out=10\n";
    LlmProposerOptions o;
    o.start_model = start;
    LlmProposer adapting(c, o);
    LlmProposer plain(c);
    const std::string with = adapting.request_body(task, {});
    CHECK(with.find("## Start model") != std::string::npos);
    CHECK(with.find("start_conv: conv2d out=24 kernel=3") != std::string::npos);
    CHECK(with.find("keeps its trained weights") != std::string::npos);
    CHECK(with.find("`NAME_dw: dwconv kernel=k` reading NAME's input") != std::string::npos);  // factored (inherit.hpp)
    CHECK(plain.request_body(task, {}).find("## Start model") == std::string::npos);
}

TEST_CASE("llm: an int8 task's prompt says the precision, its byte costs and which ops run in float") {
    Task task = small_task(12);
    task.constraints.max_weight_bytes = 30000;
    LlmConfig c;
    c.base_url = "http://127.0.0.1:9/v1";  // never contacted
    c.model = "scripted-model";
    LlmProposer proposer(c);
    const std::string fp32 = proposer.request_body(task, {});
    CHECK(fp32.find("Precision:") == std::string::npos);
    CHECK(fp32.find("30,000 bytes (float32)") != std::string::npos);
    task.precision = TaskPrecision::Int8;
    const std::string int8 = proposer.request_body(task, {});
    CHECK(int8.find("Precision: int8") != std::string::npos);
    CHECK(int8.find("30,000 bytes (int8)") != std::string::npos);
    // The lists come from the executor's rule: hardswish has no int8 kernel, conv2d has one.
    const std::size_t float_list = int8.find("run in float between convert operators");
    REQUIRE(float_list != std::string::npos);
    CHECK(int8.find("hardswish", float_list) != std::string::npos);
    CHECK(int8.find("conv2d") < float_list);
    // A record judged in int8 shows both accuracies.
    CandidateRecord r;
    r.index = 0;
    r.proposer = "llm";
    r.dsl = "input: input shape=28x28x1\nc: conv2d out=8 kernel=3 stride=2 act=relu\np: gap\nfc: fc out=10\n";
    r.hash = text_hash(r.dsl);
    r.verdict = Verdict::Feasible;
    r.precision = "int8";
    r.accuracy = 0.78;
    r.float_accuracy = 0.80;
    const std::string with_record = proposer.request_body(task, {r});
    CHECK(with_record.find("accuracy 78% in int8 (fp32 80%)") != std::string::npos);
}
