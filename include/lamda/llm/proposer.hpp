// lamda/llm/proposer.hpp: LlmProposer, a Proposer that asks a language model for candidates,
// feeds the loop's verdicts back to it within the context window, and repairs what it gets wrong.
//
// Contract:
//   - propose() hands the loop one candidate at a time, from replies it asked for; each record's
//     note names the turn. A turn that yields no candidate is retried within its own cap and
//     never holds a candidate slot until the cap is spent.
//   - Every request stays within the context window (the server's, when it says).
// Requires LAMDA_WITH_LLM.
#ifndef LAMDA_LLM_PROPOSER_HPP
#define LAMDA_LLM_PROPOSER_HPP

#if !defined(LAMDA_WITH_LLM)
#error "lamda/llm/proposer.hpp needs LAMDA_WITH_LLM (cpp-httplib and simdjson; CMake: link lamda::llm)"
#else

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../core/analysis.hpp"
#include "../dsl/parser.hpp"
#include "../exec/reference_int8.hpp"
#include "../search/proposers.hpp"
#include "../search/report.hpp"
#include "../search/types.hpp"
#include "client.hpp"
#include "prompt.hpp"
#include "repair.hpp"
#include "reply.hpp"

namespace lamda {

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
    int max_failed_turns_total = 20;  // failed turns in all (they take no candidate slot)
    int max_repairs_per_turn = 4;  // invalid candidates repaired together in one request
    bool probe_server = false;     // ask the server its kind and window first (LlmClient::probe())
    int compact = -1;              // the compact prompt: 1 always, 0 never, -1 when the window <= 4096
    std::string constrain = "off"; // auto | grammar | json | off (constraint_fields(); needs probe_server for auto)
    std::string gbnf;              // llm/grammar.hpp's dsl_gbnf(), for constrain grammar/auto
    std::string json_schema;       // llm/grammar.hpp's dsl_json_schema(), for constrain json/auto
    int max_diagnostics = 12;      // diagnostics quoted per invalid candidate
    bool auto_fix = true;          // apply auto_fix_dsl() before handing a candidate over
    // The target device (llm_device_summary(), llm_channel_tile_hint()); both empty: this
    // machine's CPU and tile, found once.
    std::string device_summary;
    std::string channel_tile_hint;  // the full prompt only
    // Adapting (`--start-from`, search/adapt.hpp's StartModelFirst): the start model's DSL, shown
    // in every request so that candidates are edits of it (and inherit its trained weights).
    std::string start_model;
};

// Asks an LLM for candidates (see the top of this file). Each record's note names the turn
// that produced the candidate ("llm turn 3, candidate 2/3", "llm turn 5, repair of #12 (attempt
// 1/2)", "; auto-fixed: ..."); a turn that yields no candidate is handed to the loop as a failed
// proposal ("llm turn 4 failed: timeout: ..."), so the journal records every turn.
class LlmProposer : public Proposer {
public:
    explicit LlmProposer(LlmConfig config, LlmProposerOptions options = {})
        : client_(fit_window(std::move(config))), options_(std::move(options)) {}

    // A small window (<= 4096 tokens) with max_tokens over half of it: the reply gets half, so
    // that the compact prompt and some history fit (a 2048 window with the default 2048 works).
    static LlmConfig fit_window(LlmConfig c) {
        if (c.context_tokens >= 512 && c.context_tokens <= 4096 && c.max_tokens > c.context_tokens / 2)
            c.max_tokens = std::max(256, c.context_tokens / 2);
        return c;
    }

    std::string name() const override { return "llm"; }

    // Budget::max_total_seconds: the search says once how much of a candidate's full training the
    // time it keeps for it allows. The prompt then says so of every trained candidate, explains
    // the trade, and lists the best as the final training will rank them (rank_feasible_in_time).
    void set_final_training_fit(std::function<double(const CandidateRecord&)> fit) override {
        final_fit_ = std::move(fit);
    }

    LlmClient& client() noexcept { return client_; }
    const LlmProposerOptions& options() const noexcept { return options_; }
    int turns() const noexcept { return turn_; }
    std::size_t last_request_bytes() const noexcept { return last_request_bytes_; }
    std::size_t max_request_bytes() const noexcept { return max_request_bytes_; }
    // Told what each turn did: "turn 3: 2 candidates in 4.1 s (request ~3,210 tokens)".
    std::function<void(const std::string&)> on_log;

    // The request body of the next turn for these records (exposed for tests and inspection).
    std::string request_body(const Task& task, const std::vector<CandidateRecord>& records,
                             std::optional<std::size_t> repair = std::nullopt,
                             const std::vector<CandidateRecord>& pending = {}) {
        task_input_ = task.input;
        const PendingScope scope(pending_, pending);
        return build_body(task, records, repair ? std::vector<std::size_t>{*repair} : std::vector<std::size_t>{});
    }

    // A parallel search: the prompt also lists the candidates other workers are evaluating, so
    // that the model does not propose them again while their verdicts are pending.
    std::optional<Proposal> propose_next(const Task& task, const std::vector<CandidateRecord>& records,
                                         const std::vector<CandidateRecord>& pending) override {
        const PendingScope scope(pending_, pending);
        return propose(task, records);
    }

    std::optional<Proposal> propose(const Task& task, const std::vector<CandidateRecord>& records) override {
        absorb(records);
        task_input_ = task.input;
        if (!started_) {
            started_ = true;
            start_ = LlmClient::Clock::now();
            for (const CandidateRecord& r : records) turn_ = std::max(turn_, turn_of(r.note));
            if (options_.probe_server) probe_server();
            if (options_.constrain != "off") {
                std::string chosen;
                try {
                    client_.mutable_config().extra_body = constraint_fields(options_.constrain, server_ ? *server_ : ServerInfo{},
                                                                            client_.config().ollama_native, options_.gbnf,
                                                                            options_.json_schema, &chosen);
                } catch (const LlmError& e) {
                    gave_up_ = true;
                    return Proposal{"", "llm: cannot start", client_.redact(e.what())};
                }
                log("constrained decoding: " + chosen);
            }
            apply_window(client_.config().context_tokens);
        }
        std::set<std::string> seen = proposer_detail::seen_hashes(records, pending_);
        if (auto p = next_from_queue(records, seen)) return p;
        if (gave_up_) return std::nullopt;
        // Failed turns take no candidate slot: they are retried here, within their own caps.
        for (;;) {
            if (consecutive_failures_ >= options_.max_failed_turns || failed_turns_ >= options_.max_failed_turns_total) {
                gave_up_ = true;
                log("giving up after " + std::to_string(failed_turns_) + " failed turns (" + std::to_string(consecutive_failures_) +
                    " in a row)");
                // One record says why (the journal keeps it); then the proposer is done.
                return Proposal{"", "llm: gave up after " + std::to_string(failed_turns_) + " failed turns", last_failure_};
            }
            const auto deadline = task_deadline(task);
            if (deadline && LlmClient::Clock::now() >= *deadline) {
                log("the task's max_seconds is spent; no more turns");
                return std::nullopt;
            }
            if (auto p = one_turn(task, records, seen, deadline)) return p;
        }
    }

    // What the server told about itself (probe_server option), if asked.
    const std::optional<ServerInfo>& server_info() const noexcept { return server_; }
    // The context window in use (the server's when it said, else the configuration's).
    int context_tokens() const noexcept { return client_.config().context_tokens; }
    // Characters per token, calibrated from the server's usage.prompt_tokens.
    double chars_per_token() const noexcept { return chars_per_token_; }
    int failed_turns() const noexcept { return failed_turns_; }

private:
    using Clock = LlmClient::Clock;

    std::optional<Clock::time_point> task_deadline(const Task& task) const {
        if (!(task.budget.max_seconds > 0)) return std::nullopt;
        return start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(task.budget.max_seconds));
    }

    void probe_server() {
        try {
            server_ = client_.probe();
        } catch (const std::exception& e) {
            log(std::string("could not ask the server about itself: ") + e.what());
            return;
        }
        log("server: " + server_->kind + (server_->model.empty() ? std::string() : ", model " + server_->model) +
            (server_->context_tokens > 0 ? ", window " + std::to_string(server_->context_tokens) + " tokens (" + server_->window_source + ")"
                                         : std::string(", window not reported")));
        LlmConfig& c = client_.mutable_config();
        if (server_->kind == "ollama") {
            // Ollama's OpenAI endpoint ignores num_ctx and cuts the prompt's start silently: use the
            // native API with options.num_ctx = the configured window.
            c.ollama_native = true;
            log("ollama: native /api/chat with num_ctx " + std::to_string(c.context_tokens));
        } else if (server_->context_tokens > 0 && server_->context_tokens < c.context_tokens) {
            c.context_tokens = server_->context_tokens;
        }
    }

    // Uses `window` tokens: a small window gets the compact prompt and a reply of at most half of it.
    void apply_window(int window) {
        LlmConfig& c = client_.mutable_config();
        c.context_tokens = std::max(512, window);
        if (original_max_tokens_ < 0) original_max_tokens_ = c.max_tokens;
        c.max_tokens = std::min(original_max_tokens_, std::max(256, c.context_tokens / 2));
        compact_ = options_.compact == 1 || (options_.compact < 0 && c.context_tokens <= 4096);
    }

    // The bytes of a request body that reach the model's context: the constraint members (a GBNF
    // grammar of several KB, a JSON schema) are not prompt, so they neither use the window nor
    // count in the calibration of characters per token.
    std::size_t prompt_bytes(const std::string& body) const {
        const std::string& extra = client_.config().extra_body;
        const std::size_t n = extra.empty() ? 0 : extra.size() + 1;  // ",<members>"
        return body.size() > n ? body.size() - n : body.size();
    }

    void calibrate(std::size_t body_bytes, std::int64_t prompt_tokens) {
        if (prompt_tokens <= 0 || body_bytes == 0) return;
        const double estimate = static_cast<double>(estimate_tokens(body_bytes, chars_per_token_));
        const double ratio = static_cast<double>(body_bytes) / static_cast<double>(prompt_tokens);
        if (ratio > 4.5 && prompt_tokens >= 1024) {
            // Far fewer tokens than sent: the server cut the prompt (Ollama's OpenAI endpoint does).
            log("the server read only " + std::to_string(prompt_tokens) + " prompt tokens of ~" +
                std::to_string(static_cast<long long>(estimate)) + " sent: it cut the prompt; using a window of " +
                std::to_string(prompt_tokens) + " tokens");
            apply_window(static_cast<int>(std::min<std::int64_t>(prompt_tokens, 1 << 26)));
            return;
        }
        chars_per_token_ = std::clamp(ratio, 1.5, 8.0);
    }

    // One turn: a request and its reply. A candidate, or nothing when the turn failed (counted).
    std::optional<Proposal> one_turn(const Task& task, const std::vector<CandidateRecord>& records,
                                     const std::set<std::string>& seen, std::optional<Clock::time_point> deadline) {
        const int turn = ++turn_;
        std::vector<std::size_t> repair;
        for (std::size_t r : repairs_)
            if (r < records.size() && records[r].verdict == Verdict::Invalid &&
                static_cast<int>(repair.size()) < std::max(1, options_.max_repairs_per_turn))
                repair.push_back(r);
        std::string body;
        try {
            body = build_body(task, records, repair);
        } catch (const LlmError& e) {
            if (repair.empty()) return failed(turn, e.what());
            repairs_.clear();  // the repairs do not fit the budget: a normal turn instead
            repair.clear();
            try {
                body = build_body(task, records, repair);
            } catch (const LlmError& e2) {
                return failed(turn, e2.what());
            }
        }
        ChatReply reply;
        client_.on_progress = [this, turn](std::size_t chars, double s) {
            log("turn " + std::to_string(turn) + ": ~" + llm_detail::group_digits(static_cast<std::int64_t>(estimate_tokens(chars, chars_per_token_))) +
                " tokens, " + llm_detail::num(s, 3) + " s");
        };
        const std::size_t want = repair.empty() ? static_cast<std::size_t>(std::max(1, options_.candidates_per_turn)) : repair.size();
        const std::size_t too_long = static_cast<std::size_t>(std::max(1, client_.config().max_tokens)) * 8;
        client_.stop_when = [want, too_long](const std::string& content) {
            if (content.size() > too_long) return true;
            return extract_dsl_candidates(llm_detail::strip_thinking(content), 16).size() >= want &&
                   llm_detail::closed_fences(content) >= want;
        };
        try {
            try {
                reply = client_.chat_body(body, deadline);
            } catch (const LlmError& e) {
                if (e.kind() != LlmErrorKind::ContextLength) throw;
                // Read the server's numbers, shrink, and retry once with a smaller request.
                const ContextNumbers n = parse_context_error(e.what());
                const std::size_t before = body.size();
                if (n.prompt_tokens > 0)
                    chars_per_token_ = std::clamp(static_cast<double>(prompt_bytes(body)) / n.prompt_tokens, 1.5, 8.0);
                const int window = n.window > 0 ? n.window : client_.config().context_tokens * 3 / 4;
                apply_window(std::min(window, client_.config().context_tokens));
                log("context_length_exceeded: the server's window is " + std::to_string(window) + " tokens" +
                    (n.prompt_tokens > 0 ? ", the request was " + std::to_string(n.prompt_tokens) : std::string()) +
                    "; retrying once with a smaller request");
                body = build_body(task, records, repair);
                if (body.size() >= before) {
                    chars_per_token_ = std::max(1.5, chars_per_token_ * 0.8);
                    body = build_body(task, records, repair);
                }
                if (body.size() >= before) throw;  // never resend the same bytes
                reply = client_.chat_body(body, deadline);
            }
        } catch (const LlmError& e) {
            return failed(turn, e.what());
        }
        client_.on_progress = nullptr;
        client_.stop_when = nullptr;
        last_request_bytes_ = body.size();
        max_request_bytes_ = std::max(max_request_bytes_, body.size());
        calibrate(prompt_bytes(body), reply.prompt_tokens);
        round_.clear();  // delivered
        last_problem_.clear();
        for (std::size_t r : repair) repairs_.erase(std::remove(repairs_.begin(), repairs_.end(), r), repairs_.end());
        const ExtractedReply got = extract_reply(reply, static_cast<std::size_t>(std::max(1, options_.max_models_per_reply)));
        // A model that reasons spends its reply tokens on thinking first, so a repair's short
        // reply would be cut before any model; so would any reply a shortened repair lost.
        const bool shortened_reply_cut = got.cut && reply_tokens_ < client_.config().max_tokens;
        if (short_repairs_ && (!reply.reasoning.empty() || reply.content.find("</think>") != std::string::npos ||
                               shortened_reply_cut)) {
            short_repairs_ = false;
            log(std::string("repairs keep the full max_tokens from now on: ") +
                (shortened_reply_cut ? "a shortened repair's reply was cut" : "the model reasons before it answers"));
        }
        std::string repair_text;
        for (std::size_t r : repair) repair_text += (repair_text.empty() ? ", repair of #" : ", #") + std::to_string(r);
        log("turn " + std::to_string(turn) + ": " + std::to_string(got.models.size()) + " candidate(s) in " +
            llm_detail::fixed2(reply.seconds) + " s" + (reply.attempts > 1 ? " after " + std::to_string(reply.attempts) + " attempts" : "") +
            (reply.streamed ? ", streamed" : "") + (reply.stopped_early ? ", stopped early" : "") + " (request ~" +
            llm_detail::group_digits(static_cast<std::int64_t>(estimate_tokens(prompt_bytes(body), chars_per_token_))) + " tokens" +
            repair_text + ")");
        if (got.cut)
            last_problem_ = got.cut_in_reasoning
                                ? "Your last reply was cut off at the token limit while you were still reasoning. Think briefly and write the models sooner."
                                : "Your last reply was cut off at the token limit" +
                                      std::string(got.dropped_cut_model ? " in the middle of a model (it was not used)" : "") +
                                      ". Write fewer or shorter models per reply.";
        if (got.models.empty()) {
            if (!got.cut) {
                last_problem_ = reply.content.empty() ? "Your last reply had no text answer; answer with ```lamda blocks."
                                                      : "Your last reply held no ```lamda block with a model; put each model in its own ```lamda fence.";
            }
            return failed(turn, got.why_empty);
        }
        for (std::size_t i = 0; i < got.models.size(); ++i) {
            Pending p;
            p.dsl = got.models[i];
            p.turn = turn;
            if (i < repair.size()) {
                p.repair_of = static_cast<int>(repair[i]);
                p.depth = depth_of(repair[i]) + 1;
                p.note = "llm turn " + std::to_string(turn) + ", repair of #" + std::to_string(repair[i]) + " (attempt " +
                         std::to_string(p.depth) + "/" + std::to_string(options_.max_repairs) + ")";
            } else {
                p.note = "llm turn " + std::to_string(turn) + ", candidate " + std::to_string(i + 1) + "/" +
                         std::to_string(got.models.size());
            }
            if (!failure_note_.empty()) {
                p.note += "; " + failure_note_;
                failure_note_.clear();
            }
            queue_.push_back(std::move(p));
        }
        if (auto p = next_from_queue(records, seen)) {
            consecutive_failures_ = 0;
            return p;
        }
        last_problem_ = "Every model in your last reply repeated an earlier candidate; propose different ones.";
        return failed(turn, "every model in the reply repeated an earlier candidate");
    }

    // A failed turn: logged and counted, no candidate slot; the next candidate's note names it.
    std::optional<Proposal> failed(int turn, const std::string& error) {
        ++consecutive_failures_;
        ++failed_turns_;
        const std::string e = client_.redact(error);
        client_.on_progress = nullptr;
        client_.stop_when = nullptr;
        log("turn " + std::to_string(turn) + " failed: " + e);
        last_failure_ = "llm turn " + std::to_string(turn) + " failed: " + e;
        if (failure_note_.size() < 2000)
            failure_note_ += (failure_note_.empty() ? "" : "; ") + ("llm turn " + std::to_string(turn) + " failed: " + llm_detail::snippet(e, 160));
        return std::nullopt;
    }

    std::optional<ServerInfo> server_;
    std::optional<Shape> task_input_;
    Clock::time_point start_{};
    double chars_per_token_ = default_chars_per_token;
    int original_max_tokens_ = -1;
    int reply_tokens_ = 0;       // the max_tokens of the request build_body made last
    bool short_repairs_ = true;  // a repair may ask for fewer reply tokens (build_body); off for reasoning models
    bool compact_ = false;
    bool gave_up_ = false;
    int failed_turns_ = 0;
    std::string last_failure_, failure_note_;

    struct Pending {
        std::string dsl, note;
        int turn = 0;
        int repair_of = -1;  // record index this repairs, -1: none
        int depth = 0;       // repairs so far in this candidate's line
        std::vector<std::string> fixes;
        bool failed = false;  // a failed-turn proposal, not a candidate
        bool cut = false;     // from a reply cut at max_tokens: never repaired as if meant
    };
    struct Outcome {
        std::string label;  // "candidate 2/3 of turn 7"
        int record = -1;    // -1: not recorded
        std::string remark; // "repeats #4; skipped", auto-fixes
    };

    LlmClient client_;
    LlmProposerOptions options_;
    std::function<double(const CandidateRecord&)> final_fit_;  // set_final_training_fit; null: no total limit
    std::deque<Pending> queue_;
    std::vector<CandidateRecord> pending_;  // set by propose_next (and request_body) for one call
    // Holds `pending` in pending_ for one call, and empties it however the call ends.
    struct PendingScope {
        std::vector<CandidateRecord>& held;
        PendingScope(std::vector<CandidateRecord>& member, const std::vector<CandidateRecord>& pending) : held(member) {
            held = pending;
        }
        ~PendingScope() { held.clear(); }
        PendingScope(const PendingScope&) = delete;
        PendingScope& operator=(const PendingScope&) = delete;
    };
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
            if (records[index].verdict == Verdict::Invalid && p.depth < options_.max_repairs && !p.cut) repairs_.push_back(index);
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
                AutoFix f = auto_fix_dsl(p.dsl, 8, task_input_ ? &*task_input_ : nullptr);
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
        return structure_[static_cast<std::size_t>(r.index)] = structure_text(r.dsl);
    }

    // "7 layers (conv2d x3, ...), widest 64"; empty when the text does not parse.
    static std::string structure_text(const std::string& dsl) {
        std::string s;
        const ParseResult parsed = parse_dsl(dsl, "candidate");
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
        return s;
    }

    std::string figures(const CandidateRecord& r, const Task& task) const {
        using llm_detail::num;
        std::string s;
        auto add = [&s](const std::string& x) { s += (s.empty() ? "" : ", ") + x; };
        if (r.predicted_ms) add("predicted " + num(*r.predicted_ms) + " ms");
        if (r.measured_ms) add("measured " + num(*r.measured_ms) + " ms");
        if (const auto ms = judged_latency_ms(r); ms && task.constraints.latency_ms > 0)
            add(llm_detail::percent(*ms / task.constraints.latency_ms) + " of the latency budget");
        if (r.params >= 0) add(llm_detail::group_digits(r.params) + " params");
        if (r.macs >= 0) add(llm_detail::group_digits(r.macs) + " MACs");
        if (r.accuracy)
            add("accuracy " + num(*r.accuracy * 100, 4) + "%" +
                (r.float_accuracy ? " in int8 (fp32 " + num(*r.float_accuracy * 100, 4) + "%)" : std::string()));
        if (final_fit_ && r.accuracy && r.train_seconds > 0) {
            const double fit = final_fit_(r);
            if (fit < 0.995) add("its full training fits " + llm_detail::percent(fit) + " of the time kept for it");
        }
        if (task.precision == TaskPrecision::Any && !r.precision.empty()) add("runs in " + r.precision);
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

    // What the task's precision means for a design (TaskPrecision); "" for fp32. The op lists
    // come from the int8 executor's own rule (exec/reference_int8.hpp's int8_unsupported_reason).
    static std::string precision_text(const Task& task) {
        if (task.precision == TaskPrecision::Fp32) return {};
        std::string int8_ops, float_ops;
        for (OpKind k : all_op_kinds) {
            if (k == OpKind::Input || k == OpKind::Flatten || k == OpKind::Dropout || k == OpKind::BatchNorm) continue;
            Layer l;
            l.op = k;
            l.inputs = {0, 0};  // add: two inputs
            std::string& list = int8_unsupported_reason(l).empty() ? int8_ops : float_ops;
            list += (list.empty() ? "" : ", ") + std::string(op_name(k));
        }
        std::string s = task.precision == TaskPrecision::Int8
                            ? "Precision: int8. Every candidate is quantized to int8 and measured, predicted and sized as "
                              "int8: weights and activations take 1 byte each (plus an int32 bias and a float scale per "
                              "output channel of conv2d, dwconv and fc), and its accuracy is measured after quantization.\n"
                            : "Precision: any. Each candidate runs in fp32 or int8, whichever is measured faster on the "
                              "device; int8 takes a quarter of the weight and activation bytes and its accuracy is "
                              "measured after quantization.\n";
        s += "In int8 these ops run on int8 values: " + int8_ops +
             " (a fused act= only none, relu or relu6; a bn after conv2d, dwconv or fc folds into it). These run in float between convert operators, which costs "
             "time: " + float_ops + ". Prefer relu or relu6, and max pooling or strided convolutions to avoid them.\n";
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
        const std::string bytes_in = task.precision == TaskPrecision::Int8  ? "int8"
                                     : task.precision == TaskPrecision::Any ? "in the precision it runs in"
                                                                            : "float32";
        if (c.max_activation_bytes > 0)
            s += "- RAM for activations (the firmware's arena, input and output included) <= " +
                 group_digits(c.max_activation_bytes) + " bytes (" + bytes_in + ")\n";
        if (c.max_weight_bytes > 0)
            s += "- weights in flash (batch norm folded) <= " + group_digits(c.max_weight_bytes) + " bytes (" + bytes_in + ")\n";
        if (c.min_accuracy && task.objective == Objective::Accuracy)
            s += "- validation accuracy >= " + llm_detail::num(*c.min_accuracy * 100, 4) + "%\n";
        if (c.latency_ms <= 0 && c.max_params <= 0 && c.max_activation_bytes <= 0 && c.max_weight_bytes <= 0 && !c.min_accuracy)
            s += "- none\n";
        s += precision_text(task);
        s += task.objective == Objective::Accuracy
                 ? "Objective: the highest validation accuracy among candidates that meet the constraints.\n"
                 : "Objective: the largest capacity (MACs) that meets the constraints: use the budget, do not leave it idle.\n";
        s += "Candidates so far: " + std::to_string(recorded) + " of at most " + std::to_string(task.budget.max_candidates) + ".\n";
        return s;
    }

    // The reply tokens a repair of these records needs: each quoted model again, corrected (twice
    // its estimated tokens, a small model's text tokenizing worse than calibrated), and room for
    // a fence and a line of prose each; at least 256.
    int repair_reply_tokens(const std::vector<CandidateRecord>& records, const std::vector<std::size_t>& repair) const {
        std::size_t quoted = 0;
        for (std::size_t k : repair) quoted += records[k].dsl.size();
        const std::size_t want = 128 * repair.size() + 2 * estimate_tokens(quoted, chars_per_token_);
        return static_cast<int>(std::clamp<std::size_t>(want, 256, 1 << 24));
    }

    // Builds the request for a turn: the system message, then one user message with the task and
    // as much history as the budget allows. Throws LlmError(Config) when even the fixed parts
    // do not fit.
    std::string build_body(const Task& task, const std::vector<CandidateRecord>& records, const std::vector<std::size_t>& repair) {
        using llm_detail::json_escaped_size;
        LlmConfig cfg = client_.config();  // a copy: a repair may ask for a shorter reply (below)
        // 10% kept free: the characters per token calibrated on one request vary with the next one's
        // content (digit-heavy history lines, a small model's random identifiers quoted back in a
        // repair); llm_llama saw 1028 + 1024 tokens sent to a 2048 window without a margin, and
        // again with 5% (2026-12-03, its ASan run).
        // The margin is the history's: the fixed parts alone are refused only past the budget
        // itself (llm_llama, 2026-12-04: a 922-token prompt for a 1024-token budget was refused
        // as over 90% of it, every turn, and the search gave up).
        std::size_t whole_budget = 0, budget = 0;  // the window's bytes for the prompt, and the history's share
        const auto set_budgets = [&](const LlmConfig& c) {
            whole_budget = static_cast<std::size_t>(static_cast<double>(std::max(0, c.prompt_budget_tokens())) * chars_per_token_);
            budget = static_cast<std::size_t>(static_cast<double>(whole_budget) * 0.90);
        };
        set_budgets(cfg);
        const std::string system = valid_utf8(compact_ ? llm_compact_system_prompt() : llm_system_prompt());
        std::string head = task_text(task, records.size());
        if (options_.device_summary.empty() && options_.channel_tile_hint.empty()) {
            const DeviceInfo here = describe_device();
            options_.device_summary = llm_device_summary(task, here, nullptr);
            options_.channel_tile_hint = llm_channel_tile_hint(task, here);
        }
        head += "\n## Device\n\n" + options_.device_summary + (compact_ ? std::string() : options_.channel_tile_hint) + "\n";
        if (!options_.start_model.empty())
            head += "\n## Start model\n\nAdapt this trained model (candidate #0) to the constraints: edit it (narrower "
                    "layers, fewer blocks, stride 2 earlier, smaller kernels) rather than writing a new model. A layer "
                    "that keeps its name and weight shape keeps its trained weights (a narrowed one keeps its strongest "
                    "channels); renamed, reshaped or new layers start untrained and lose accuracy, except one: a k x k "
                    "conv2d NAME made separable, `NAME_dw: dwconv kernel=k` reading NAME's input then `NAME: conv2d "
                    "kernel=1`, starts from a factoring of NAME's weights.\n```lamda\n" +
                    options_.start_model + (options_.start_model.back() == '\n' ? "" : "\n") + "```\n";
        if (final_fit_ && task.objective == Objective::Accuracy && !compact_)  // a small window has no room
            head += "\n## Time\n\nThe search and the final training share one limit of " +
                    llm_detail::num(task.budget.max_total_seconds, 4) +
                    " s. A candidate whose full training does not fit the time kept for it trains fewer epochs "
                    "and ends less accurate, so the best are ranked by accuracy less what cannot train (\"its full "
                    "training fits N%\"). Training time follows the activations (channels on large maps), not the "
                    "latency: where that share is low, prefer fewer channels before the first stride 2, or stride 2 "
                    "sooner.\n";
        if (!last_problem_.empty()) head += "\nNote: " + last_problem_ + "\n";
        head = valid_utf8(head);
        std::string core, tail;
        if (!repair.empty()) {
            for (std::size_t k : repair) {
                const CandidateRecord& r = records[k];
                core += "\n## Repair #" + std::to_string(r.index) + "\n\nYour candidate #" + std::to_string(r.index) +
                        " is invalid. lamda reported:\n";
                const std::size_t n = std::min(r.diagnostics.size(), static_cast<std::size_t>(std::max(1, options_.max_diagnostics)));
                for (std::size_t i = 0; i < n; ++i) core += "  " + llm_detail::snippet(r.diagnostics[i], 400) + "\n";
                if (r.diagnostics.empty()) core += "  " + llm_detail::snippet(r.reason, 400) + "\n";
                core += "Its text (line numbers count from 1):\n```lamda\n" + r.dsl + (r.dsl.empty() || r.dsl.back() == '\n' ? "" : "\n") + "```\n";
            }
            core = valid_utf8(core);
            tail = repair.size() == 1
                       ? "\nFix every error and reply with the corrected complete model in one ```lamda block.\n"
                       : "\nFix every error of each and reply with the " + std::to_string(repair.size()) +
                             " corrected complete models, each in its own ```lamda block, in the order above.\n";
        } else {
            tail = "\nPropose " + std::to_string(std::max(1, options_.candidates_per_turn)) +
                   " new models, each different from every candidate above, each in its own ```lamda block. Use the "
                   "feedback: over a limit, shrink where the layers cost most; well under the latency budget, grow "
                   "(wider, deeper, larger kernels) where it is cheap.\n";
        }
        auto body_of = [&](const std::string& user) {
            return chat_request_json(cfg, {ChatMessage{"system", system}, ChatMessage{"user", user}});
        };
        std::size_t used = prompt_bytes(body_of(head + core + tail));
        // A repair quotes the invalid reply back: a small model's random identifiers take more
        // tokens per character than the calibration promised (llm_llama, 2026-12-06: a repair of
        // ~1,026 tokens for a 1,024-token budget). It keeps the history's margin. Its reply is the
        // quoted models corrected, far shorter than a proposal's max_tokens allows: when the
        // repair does not fit, it asks for what they need, twice over, and the prompt gets the
        // rest of the window. Past that the turn proposes anew (one_turn).
        if (!repair.empty() && used > budget && short_repairs_) {
            const int reply_tokens = repair_reply_tokens(records, repair);
            if (reply_tokens < cfg.max_tokens) {
                cfg.max_tokens = reply_tokens;
                set_budgets(cfg);
                used = prompt_bytes(body_of(head + core + tail));
            }
        }
        if (!repair.empty() && used > budget)
            throw LlmError(LlmErrorKind::Config, "the repair needs ~" + std::to_string(estimate_tokens(used, chars_per_token_)) +
                                                     " tokens, over 90% of the budget of " +
                                                     std::to_string(cfg.prompt_budget_tokens()));
        if (used > whole_budget)
            throw LlmError(LlmErrorKind::Config,
                           "the request needs ~" + std::to_string(estimate_tokens(used, chars_per_token_)) + " tokens before any history, over the budget of " +
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
            std::vector<std::size_t> order = rank_feasible_in_time(records, task.objective, final_fit_);
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
        // 4. candidates other workers are evaluating now (propose_next): their figures and
        // structure, so that the next proposals differ from them too
        std::string in_flight;
        {
            const std::string heading = "\n## Being evaluated now (verdicts pending: do not propose these again)\n\n";
            for (const CandidateRecord& r : pending_) {
                const std::string st = structure_text(r.dsl);
                const std::string f = figures(r, task);
                const std::string line = valid_utf8("- " + f + (f.empty() || st.empty() ? "" : "; ") + st + "\n");
                if (!fits(json_escaped_size(line) + (in_flight.empty() ? json_escaped_size(heading) : 0))) break;
                in_flight += (in_flight.empty() ? heading : std::string()) + line;
            }
        }
        const std::string body = body_of(head + best + recent + in_flight + results + core + tail);
        if (prompt_bytes(body) > whole_budget)  // cannot happen: every part was counted
            throw LlmError(LlmErrorKind::Config, "internal: the request grew over its budget");
        reply_tokens_ = cfg.max_tokens;
        return body;
    }
};

}  // namespace lamda

#endif  // LAMDA_WITH_LLM
#endif  // LAMDA_LLM_PROPOSER_HPP
