// Writes the fuzzers' seed corpora, valid files made by lamda itself (scripts/test.sh and
// scripts/fuzz-long.sh run it; nothing is committed but the crash corpus):
//   lamda_fuzz_seeds DIR   -> DIR/safetensors/, DIR/task_json/, DIR/profile_json/, DIR/journal_line/,
//                             DIR/agent_request/, DIR/url/
// ONNX seeds come from tests/hostile/onnx_hostile.py --seeds DIR/onnx (python3-onnx).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <lamda/core/analysis.hpp>
#include <lamda/data/weights.hpp>
#include <lamda/detail/json_write.hpp>
#include <lamda/dsl/parser.hpp>
#include <lamda/latency/model.hpp>
#include <lamda/search/journal.hpp>
#include <lamda/search/task.hpp>

namespace fs = std::filesystem;

static void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary) << bytes;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: lamda_fuzz_seeds DIR\n";
        return 2;
    }
    const fs::path out = argv[1];
    const char* models[] = {
        "model a\ninput: input shape=8x8x1\nc: conv2d out=4 kernel=3 act=relu\ng: gap\n",
        "model b\ninput: input shape=8x8x2\nc: conv2d out=4 kernel=3\nb: batchnorm\nd: dwconv kernel=3\n"
        "p: maxpool kernel=2 stride=2\nf: flatten\no: fc out=4\n",
    };
    const lamda::Task task = lamda::parse_task(
        R"({"name":"t","input":[8,8,1],"classes":4,"constraints":{"latency_ms":1,"max_params":100000},"objective":"capacity"})",
        "seed_task.json");
    lamda::JournalHeader header;
    header.task = task;
    header.proposer = "offline";
    header.seed = 1;
    std::string journal = lamda::journal_header_json(header) + "\n";
    int index = 0, n = 0;
    for (const char* text : models) {
        const lamda::ParseResult p = lamda::parse_dsl(text);
        if (!p.ok()) return 1;
        const lamda::Weights w = lamda::random_weights(p.graph, 1);
        put(out / "safetensors", "seed" + std::to_string(n) + ".safetensors", lamda::to_safetensors(w, {{"format", "pt"}}));
        lamda::CandidateRecord r;
        r.index = index++;
        r.proposer = "offline";
        r.dsl = lamda::print_dsl(p.graph);
        r.hash = lamda::journal_detail::hash16(r.dsl);
        const lamda::ModelStats s = lamda::analyze(p.graph);
        r.params = s.params;
        r.macs = s.macs;
        r.peak_activation_bytes = s.peak_activation_bytes;
        r.verdict = n == 0 ? lamda::Verdict::Feasible : lamda::Verdict::WrongTask;
        r.reason = "seed";
        r.predicted_ms = 0.25;
        journal += lamda::candidate_json(r) + "\n";
        ++n;
    }
    put(out / "journal_line", "journal.jsonl", journal);
    put(out / "task_json", "task.json", lamda::task_json(task));
    for (const auto& entry : fs::directory_iterator(fs::path(LAMDA_SOURCE_DIR) / "examples" / "tasks"))
        fs::copy_file(entry.path(), out / "task_json" / entry.path().filename(), fs::copy_options::overwrite_existing);
    put(out / "profile_json", "empty_profile.json", lamda::latency_profile_json(lamda::LatencyProfile{}));
    // The agent's requests (fuzz_agent_request's server takes the token "fuzz-token").
    auto request = [](const std::string& method, const std::string& path, const std::string& body, bool token) {
        std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        if (token) r += "Authorization: Bearer fuzz-token\r\n";
        if (method == "POST") r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
        return r + "\r\n" + body;
    };
    std::string small_model;
    lamda::append_json_string(small_model, models[0]);
    put(out / "agent_request", "device", request("GET", "/v1/device", "", true));
    put(out / "agent_request", "device_no_token", request("GET", "/v1/device", "", false));
    put(out / "agent_request", "bench", request("POST", "/v1/bench", "{\"dsl\":" + small_model + ",\"runs\":2,\"warmup\":0}", true));
    put(out / "agent_request", "measure", request("POST", "/v1/measure", "{\"dsl\":" + small_model + ",\"runs\":2,\"max_seconds\":0.5}", true));
    put(out / "agent_request", "profile", request("POST", "/v1/profile", "{\"budget_s\":0.05,\"calibration_models\":0}", true));
    put(out / "agent_request", "profile_status", request("GET", "/v1/profile/0123456789abcdef", "", true));
    put(out / "agent_request", "chunked",
        "POST /v1/bench HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fuzz-token\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{}  \r\n0\r\n\r\n");
    // Server URLs (detail/url.hpp), good ones of every shape.
    int url_index = 0;
    for (const char* url : {"http://127.0.0.1:8080/v1", "https://api.example.com/v1/", "http://[::1]:11434",
                            "http://board:7070", "HTTP://localhost"})
        put(out / "url", "url" + std::to_string(url_index++), url);
    std::cout << "seeds written to " << out.string() << "\n";
    return 0;
}
