// tests/llm/gbnf_matcher.hpp: a recogniser and a random deriver for the GBNF subset that
// lamda::dsl_gbnf emits (llm/grammar.hpp), so that the tests can check the grammar without a
// language model.
//
// Subset: `name ::= alternatives` rules (a rule ends where the next `name ::=` starts), string
// literals with \n \t \\ \" escapes, character classes [a-z0-9_] with ranges and a leading ^,
// grouping ( ), alternation |, postfix ? * +, rule references, # comments. Rules must not be
// recursive (the grammar is regular): references are inlined into a Thompson NFA, which matches
// in time linear in the text. Bad grammars come back as an error string, never a crash.
#ifndef LAMDA_TESTS_GBNF_MATCHER_HPP
#define LAMDA_TESTS_GBNF_MATCHER_HPP

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace gbnf {

struct Node {
    enum Kind { Seq, Alt, Lit, Class, Ref, Opt, Star, Plus } kind = Seq;
    std::vector<Node> children;
    std::string text;                 // Lit: the bytes; Ref: the rule name
    std::array<bool, 256> set{};      // Class
};

class Grammar {
public:
    // Parses `text`; false with `error` set on anything outside the subset.
    bool parse(const std::string& text, std::string& error) {
        src_ = text;
        pos_ = 0;
        rules_.clear();
        skip();
        while (pos_ < src_.size()) {
            std::string name;
            if (!read_name(name)) return fail("expected a rule name", error);
            skip();
            if (src_.compare(pos_, 3, "::=") != 0) return fail("expected ::=", error);
            pos_ += 3;
            Node body;
            if (!parse_alt(body, error)) return false;
            if (rules_.count(name)) return fail("rule '" + name + "' defined twice", error);
            rules_[name] = std::move(body);
            skip();
        }
        if (!rules_.count("root")) return fail("no root rule", error);
        for (const auto& r : rules_)
            if (!check_refs(r.second, error)) return false;
        return true;
    }

    const std::map<std::string, Node>& rules() const { return rules_; }

private:
    std::string src_;
    std::size_t pos_ = 0;
    std::map<std::string, Node> rules_;

    bool fail(const std::string& what, std::string& error) {
        error = what + " at offset " + std::to_string(pos_);
        return false;
    }
    void skip() {
        while (pos_ < src_.size()) {
            const char c = src_[pos_];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                ++pos_;
            } else if (c == '#') {
                while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
            } else {
                break;
            }
        }
    }
    static bool name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
    }
    bool read_name(std::string& name) {
        const std::size_t start = pos_;
        while (pos_ < src_.size() && name_char(src_[pos_])) ++pos_;
        name = src_.substr(start, pos_ - start);
        return !name.empty();
    }
    // True when a rule definition `name ::=` starts here (ends the current rule).
    bool at_definition() const {
        std::size_t p = pos_;
        while (p < src_.size() && name_char(src_[p])) ++p;
        if (p == pos_) return false;
        while (p < src_.size() && (src_[p] == ' ' || src_[p] == '\t' || src_[p] == '\n')) ++p;
        return src_.compare(p, 3, "::=") == 0;
    }
    bool escape(char& c, std::string& error) {
        if (pos_ >= src_.size()) return fail("unfinished escape", error);
        const char e = src_[pos_++];
        if (e == 'n') c = '\n';
        else if (e == 't') c = '\t';
        else if (e == 'r') c = '\r';
        else if (e == '\\' || e == '"' || e == ']' || e == '[' || e == '-' || e == '^') c = e;
        else return fail(std::string("unknown escape \\") + e, error);
        return true;
    }
    bool parse_alt(Node& out, std::string& error) {
        out = Node{};
        out.kind = Node::Alt;
        while (true) {
            Node seq;
            if (!parse_seq(seq, error)) return false;
            out.children.push_back(std::move(seq));
            skip();
            if (pos_ < src_.size() && src_[pos_] == '|') {
                ++pos_;
                continue;
            }
            return true;
        }
    }
    bool parse_seq(Node& out, std::string& error) {
        out = Node{};
        out.kind = Node::Seq;
        while (true) {
            skip();
            if (pos_ >= src_.size()) return true;
            const char c = src_[pos_];
            if (c == '|' || c == ')') return true;
            if (at_definition()) return true;
            Node item;
            if (c == '"') {
                ++pos_;
                item.kind = Node::Lit;
                while (true) {
                    if (pos_ >= src_.size()) return fail("unterminated literal", error);
                    char ch = src_[pos_++];
                    if (ch == '"') break;
                    if (ch == '\\' && !escape(ch, error)) return false;
                    item.text += ch;
                }
            } else if (c == '[') {
                ++pos_;
                item.kind = Node::Class;
                bool negate = false;
                if (pos_ < src_.size() && src_[pos_] == '^') negate = true, ++pos_;
                std::array<bool, 256> set{};
                while (true) {
                    if (pos_ >= src_.size()) return fail("unterminated class", error);
                    char lo = src_[pos_++];
                    if (lo == ']') break;
                    if (lo == '\\' && !escape(lo, error)) return false;
                    char hi = lo;
                    if (pos_ + 1 < src_.size() && src_[pos_] == '-' && src_[pos_ + 1] != ']') {
                        ++pos_;
                        hi = src_[pos_++];
                        if (hi == '\\' && !escape(hi, error)) return false;
                    }
                    const auto a = static_cast<unsigned char>(lo), b = static_cast<unsigned char>(hi);
                    if (a > b) return fail("backwards range", error);
                    for (unsigned v = a; v <= b; ++v) set[v] = true;
                }
                for (std::size_t v = 0; v < 256; ++v) item.set[v] = negate ? !set[v] : set[v];
            } else if (c == '(') {
                ++pos_;
                if (!parse_alt(item, error)) return false;
                skip();
                if (pos_ >= src_.size() || src_[pos_] != ')') return fail("expected )", error);
                ++pos_;
            } else if (name_char(c)) {
                item.kind = Node::Ref;
                read_name(item.text);
            } else {
                return fail(std::string("unexpected '") + c + "'", error);
            }
            while (pos_ < src_.size() && (src_[pos_] == '?' || src_[pos_] == '*' || src_[pos_] == '+')) {
                Node wrap;
                wrap.kind = src_[pos_] == '?' ? Node::Opt : src_[pos_] == '*' ? Node::Star : Node::Plus;
                wrap.children.push_back(std::move(item));
                item = std::move(wrap);
                ++pos_;
            }
            out.children.push_back(std::move(item));
        }
    }
    bool check_refs(const Node& n, std::string& error) const {
        if (n.kind == Node::Ref && !rules_.count(n.text)) {
            error = "undefined rule '" + n.text + "'";
            return false;
        }
        for (const Node& c : n.children)
            if (!check_refs(c, error)) return false;
        return true;
    }
};

// A Thompson NFA of a grammar's root.
class Matcher {
public:
    // False with `error` when the grammar is recursive or too large (more than `max_states`).
    bool compile(const Grammar& g, std::string& error, std::size_t max_states = 4000000) {
        grammar_ = &g;
        states_.clear();
        max_states_ = max_states;
        depth_ = 0;
        error_.clear();
        Frag f;
        if (!build(g.rules().at("root"), f)) {
            error = error_;
            return false;
        }
        const int match = add(State{State::Match, {}, -1, -1});
        patch(f, match);
        start_ = f.start;
        return true;
    }

    bool matches(const std::string& text) const {
        std::vector<int> current, next;
        std::vector<std::size_t> mark(states_.size(), 0);
        std::size_t generation = 1;
        add_closure(start_, current, mark, generation);
        for (char ch : text) {
            const auto byte = static_cast<unsigned char>(ch);
            ++generation;
            next.clear();
            for (int s : current)
                if (states_[static_cast<std::size_t>(s)].kind == State::Char &&
                    states_[static_cast<std::size_t>(s)].set[byte])
                    add_closure(states_[static_cast<std::size_t>(s)].out, next, mark, generation);
            current.swap(next);
            if (current.empty()) return false;
        }
        for (int s : current)
            if (states_[static_cast<std::size_t>(s)].kind == State::Match) return true;
        return false;
    }

    std::size_t states() const { return states_.size(); }

private:
    struct State {
        enum Kind { Char, Split, Match } kind;
        std::array<bool, 256> set;
        int out;
        int out2;
    };
    struct Frag {
        int start = -1;
        std::vector<std::pair<int, int>> holes;  // (state, which out)
    };
    const Grammar* grammar_ = nullptr;
    std::vector<State> states_;
    std::size_t max_states_ = 0;
    int start_ = -1;
    int depth_ = 0;
    std::string error_;

    int add(State s) {
        states_.push_back(s);
        return static_cast<int>(states_.size() - 1);
    }
    void patch(const Frag& f, int to) {
        for (const auto& h : f.holes) {
            State& s = states_[static_cast<std::size_t>(h.first)];
            (h.second == 0 ? s.out : s.out2) = to;
        }
    }
    // An epsilon state: a Split with both outs to fill (out2 unused when equal).
    bool build(const Node& n, Frag& f) {
        if (states_.size() > max_states_) {
            error_ = "the NFA has more than " + std::to_string(max_states_) + " states";
            return false;
        }
        switch (n.kind) {
        case Node::Lit: {
            if (n.text.empty()) return epsilon(f);
            int prev = -1;
            for (char c : n.text) {
                State s{State::Char, {}, -1, -1};
                s.set[static_cast<unsigned char>(c)] = true;
                const int id = add(s);
                if (prev < 0) f.start = id;
                else states_[static_cast<std::size_t>(prev)].out = id;
                prev = id;
            }
            f.holes = {{prev, 0}};
            return true;
        }
        case Node::Class: {
            const int id = add(State{State::Char, n.set, -1, -1});
            f.start = id;
            f.holes = {{id, 0}};
            return true;
        }
        case Node::Ref: {
            if (++depth_ > 200) {
                error_ = "rule '" + n.text + "' is recursive (or nested more than 200 deep)";
                return false;
            }
            const bool ok = build(grammar_->rules().at(n.text), f);
            --depth_;
            return ok;
        }
        case Node::Seq: {
            if (n.children.empty()) return epsilon(f);
            Frag acc;
            if (!build(n.children[0], acc)) return false;
            for (std::size_t i = 1; i < n.children.size(); ++i) {
                Frag next;
                if (!build(n.children[i], next)) return false;
                patch(acc, next.start);
                acc.holes = std::move(next.holes);
            }
            f = std::move(acc);
            return true;
        }
        case Node::Alt: {
            if (n.children.size() == 1) return build(n.children[0], f);
            Frag out;
            int prev_split = -1;
            for (std::size_t i = 0; i < n.children.size(); ++i) {
                Frag c;
                if (!build(n.children[i], c)) return false;
                for (auto& h : c.holes) out.holes.push_back(h);
                if (i + 1 < n.children.size()) {
                    const int split = add(State{State::Split, {}, c.start, -1});
                    if (prev_split < 0) out.start = split;
                    else states_[static_cast<std::size_t>(prev_split)].out2 = split;
                    prev_split = split;
                } else {
                    states_[static_cast<std::size_t>(prev_split)].out2 = c.start;
                }
            }
            f = std::move(out);
            return true;
        }
        case Node::Opt: {
            Frag c;
            if (!build(n.children[0], c)) return false;
            const int split = add(State{State::Split, {}, c.start, -1});
            f.start = split;
            f.holes = std::move(c.holes);
            f.holes.push_back({split, 1});
            return true;
        }
        case Node::Star:
        case Node::Plus: {
            Frag c;
            if (!build(n.children[0], c)) return false;
            const int split = add(State{State::Split, {}, c.start, -1});
            patch(c, split);
            f.start = n.kind == Node::Star ? split : c.start;
            f.holes = {{split, 1}};
            return true;
        }
        }
        return false;
    }
    bool epsilon(Frag& f) {
        const int split = add(State{State::Split, {}, -1, -1});
        f.start = split;
        f.holes = {{split, 0}, {split, 1}};
        return true;
    }
    void add_closure(int s, std::vector<int>& set, std::vector<std::size_t>& mark,
                     std::size_t generation) const {
        std::vector<int> stack{s};
        while (!stack.empty()) {
            const int at = stack.back();
            stack.pop_back();
            if (at < 0 || mark[static_cast<std::size_t>(at)] == generation) continue;
            mark[static_cast<std::size_t>(at)] = generation;
            const State& st = states_[static_cast<std::size_t>(at)];
            if (st.kind == State::Split) {
                stack.push_back(st.out2);
                stack.push_back(st.out);
            } else {
                set.push_back(at);
            }
        }
    }
};

// Random derivations of a grammar: alternatives uniformly, `?` taken with probability p_opt,
// `*`/`+` repeated while a coin with probability p_opt says so (at most `max_repeat` times).
class Deriver {
public:
    Deriver(const Grammar& g, double p_opt, int max_repeat = 64) : g_(g), p_(p_opt), max_repeat_(max_repeat) {}

    std::string derive(std::mt19937_64& rng) const {
        std::string out;
        walk(g_.rules().at("root"), rng, out, 0);
        return out;
    }

private:
    const Grammar& g_;
    double p_;
    int max_repeat_;

    bool coin(std::mt19937_64& rng) const { return std::uniform_real_distribution<double>(0, 1)(rng) < p_; }

    void walk(const Node& n, std::mt19937_64& rng, std::string& out, int depth) const {
        if (depth > 400) return;  // recursive grammars are not ours; stay bounded anyway
        switch (n.kind) {
        case Node::Lit: out += n.text; return;
        case Node::Class: {
            std::vector<int> options;
            for (int v = 0; v < 256; ++v)
                if (n.set[static_cast<std::size_t>(v)]) options.push_back(v);
            if (options.empty()) return;
            out += static_cast<char>(
                options[std::uniform_int_distribution<std::size_t>(0, options.size() - 1)(rng)]);
            return;
        }
        case Node::Ref: walk(g_.rules().at(n.text), rng, out, depth + 1); return;
        case Node::Seq:
            for (const Node& c : n.children) walk(c, rng, out, depth + 1);
            return;
        case Node::Alt:
            walk(n.children[std::uniform_int_distribution<std::size_t>(0, n.children.size() - 1)(rng)], rng,
                 out, depth + 1);
            return;
        case Node::Opt:
            if (coin(rng)) walk(n.children[0], rng, out, depth + 1);
            return;
        case Node::Star:
        case Node::Plus: {
            int count = n.kind == Node::Plus ? 1 : 0;
            while (count < max_repeat_ && coin(rng)) ++count;
            for (int i = 0; i < count; ++i) walk(n.children[0], rng, out, depth + 1);
            return;
        }
        }
    }
};

}  // namespace gbnf

#endif  // LAMDA_TESTS_GBNF_MATCHER_HPP
