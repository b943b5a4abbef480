// lamda/dsl/parser.hpp: the text format (docs/dsl.md) -> IR graph, and the canonical printer.
// The parser never throws on bad input: it returns every independent error it finds, each naming
// FILE:LINE:COL, so that a person or the generator can fix them all in one go. That holds within
// a line too: every stray character (a run of non-ASCII bytes is one character, named by its code
// point), every bad attribute and every missing one is reported, and the parser resynchronises at
// the next KEY=VALUE after a stray character instead of reporting what follows from it. An unknown
// op with a confident guess (a known alias, or the same name in other letter case) has its
// attributes checked against the guessed op.
#ifndef LAMDA_DSL_PARSER_HPP
#define LAMDA_DSL_PARSER_HPP

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/diagnostics.hpp"
#include "../detail/hash.hpp"
#include "../core/ir.hpp"
#include "../core/validate.hpp"

namespace lamda {

struct ParseResult {
    Graph graph;  // complete and shape-inferred when ok(); partial otherwise
    std::vector<Diagnostic> diagnostics;
    bool ok() const noexcept { return diagnostics.empty(); }
};

namespace dsl_detail {

enum class TokenKind { Word, Colon, Equals, Comma, Bad };  // Bad: a stray character, reported

struct Token {
    TokenKind kind;
    std::string_view text;
    int column;  // 1-based
};

inline bool is_word_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '+' || c == '-';
}

inline bool is_identifier(std::string_view s) noexcept {
    if (s.empty()) return false;
    const char first = s.front();
    if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '_'))
        return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    return true;
}

// The attributes each op accepts, in canonical printing order.
inline std::vector<std::string_view> attributes_of(OpKind op) {
    switch (op) {
    case OpKind::Input: return {"shape"};
    case OpKind::Conv2d:
        return {"in", "out", "kernel", "stride", "padding", "dilation", "groups", "bias", "act"};
    case OpKind::DepthwiseConv2d:
        return {"in", "kernel", "stride", "padding", "dilation", "multiplier", "bias", "act"};
    case OpKind::FullyConnected: return {"in", "out", "bias", "act"};
    case OpKind::BatchNorm: return {"eps"};
    case OpKind::MaxPool:
    case OpKind::AvgPool: return {"kernel", "stride", "padding", "ceil"};
    case OpKind::Add: return {"act"};
    case OpKind::Dropout: return {"rate"};
    default: return {};
    }
}

inline std::vector<std::string_view> required_attributes(OpKind op) {
    switch (op) {
    case OpKind::Input: return {"shape"};
    case OpKind::Conv2d: return {"out", "kernel"};
    case OpKind::DepthwiseConv2d:
    case OpKind::MaxPool:
    case OpKind::AvgPool: return {"kernel"};
    case OpKind::FullyConnected: return {"out"};
    default: return {};
    }
}

inline const char* example_of(OpKind op) {
    switch (op) {
    case OpKind::Input: return "input: input shape=28x28x1";
    case OpKind::Conv2d: return "conv1: conv2d out=32 kernel=3 stride=1 act=relu";
    case OpKind::DepthwiseConv2d: return "dw1: dwconv kernel=3 stride=2 act=relu6";
    case OpKind::FullyConnected: return "logits: fc out=10";
    case OpKind::MaxPool: return "pool1: maxpool kernel=2";
    case OpKind::AvgPool: return "pool1: avgpool kernel=2";
    default: return "";
    }
}

// Words people and LLMs write for our ops; they get a pointed hint instead of a guess.
inline std::string_view known_alias(std::string_view word) {
    static const std::array<std::pair<std::string_view, std::string_view>, 24> aliases{{
        {"conv", "conv2d"},          {"convolution", "conv2d"},   {"conv2d_depthwise", "dwconv"},
        {"depthwise", "dwconv"},     {"dwconv2d", "dwconv"},      {"depthwise_conv2d", "dwconv"},
        {"linear", "fc"},            {"dense", "fc"},             {"gemm", "fc"},
        {"bn", "batchnorm"},         {"batch_norm", "batchnorm"}, {"batchnorm2d", "batchnorm"},
        {"globalavgpool", "gap"},    {"global_avg_pool", "gap"},  {"adaptiveavgpool", "gap"},
        {"maxpool2d", "maxpool"},    {"avgpool2d", "avgpool"},    {"cat", "concat"},
        {"concatenate", "concat"},   {"multiply", "mul"},         {"sum", "add"},
        {"hard_swish", "hardswish"}, {"hswish", "hardswish"},     {"reshape", "flatten"},
    }};
    for (const auto& [alias, op] : aliases)
        if (word == alias) return op;
    return {};
}

inline bool lookup_op(std::string_view word, OpKind& op) noexcept {
    for (OpKind k : all_op_kinds)
        if (op_name(k) == word) {
            op = k;
            return true;
        }
    return false;
}

inline std::array<std::string_view, all_op_kinds.size()> op_names() {
    std::array<std::string_view, all_op_kinds.size()> names{};
    for (std::size_t i = 0; i < all_op_kinds.size(); ++i) names[i] = op_name(all_op_kinds[i]);
    return names;
}

// Positive decimal integer without sign, at most 2^31-1; false on anything else.
inline bool parse_int(std::string_view s, int& value) noexcept {
    if (s.empty() || s.size() > 10) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    std::int64_t v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    if (v > 2147483647) return false;
    value = static_cast<int>(v);
    return true;
}

// "AxBx..." into exactly `count` integers (or fewer, when `allowed` lists the accepted counts).
inline bool parse_dims(std::string_view s, std::vector<int>& out, std::size_t max_parts) {
    out.clear();
    std::size_t start = 0;
    while (true) {
        const std::size_t x = s.find('x', start);
        int v = 0;
        if (!parse_int(s.substr(start, x == std::string_view::npos ? s.npos : x - start), v))
            return false;
        out.push_back(v);
        if (out.size() > max_parts) return false;
        if (x == std::string_view::npos) return true;
        start = x + 1;
    }
}

inline std::string format_double(double v) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, v);
    return std::string(buffer, result.ptr);
}

class Parser {
public:
    Parser(std::string_view text, std::string_view file, const Limits& limits)
        : text_(text), file_(file), limits_(limits) {}

    ParseResult run() {
        if (text_.size() > limits_.max_file_bytes) {
            error(0, 0,
                  "the file is " + std::to_string(text_.size()) + " bytes, more than the limit of " +
                      std::to_string(limits_.max_file_bytes),
                  "a model is a few hundred lines of text");
            return std::move(result_);
        }
        std::size_t pos = 0;
        int line_number = 0;
        while (pos <= text_.size() && !stopped_) {
            const std::size_t end = text_.find('\n', pos);
            const std::size_t stop = end == std::string_view::npos ? text_.size() : end;
            ++line_number;
            parse_line(text_.substr(pos, stop - pos), line_number);
            if (end == std::string_view::npos) break;
            pos = end + 1;
        }
        if (!stopped_) resolve_and_infer();
        return std::move(result_);
    }

private:
    struct PendingInput {
        std::string_view name;
        int column;
    };

    std::string_view text_;
    std::string file_;
    const Limits& limits_;
    ParseResult result_;
    bool stopped_ = false;
    bool saw_model_ = false;
    std::vector<std::vector<PendingInput>> pending_;  // parallel to layers
    std::vector<char> broken_;                        // the line had errors: skip inference
    detail::NameIndex index_of_;  // name -> layer

    void error(int line, int column, std::string message, std::string hint = {}) {
        if (stopped_) return;
        if (result_.diagnostics.size() + 1 >= static_cast<std::size_t>(limits_.max_errors)) {
            result_.diagnostics.push_back(
                Diagnostic{file_, line, column, "too many errors; stopping here", {}});
            stopped_ = true;
            return;
        }
        result_.diagnostics.push_back(
            Diagnostic{file_, line, column, std::move(message), std::move(hint)});
    }

    // Splits a line into tokens. Each character that has no place here is reported and becomes a
    // Bad token (a run of non-ASCII bytes is one, named by its code point when it is UTF-8).
    void tokenize(std::string_view line, int line_number, std::vector<Token>& tokens) {
        tokens.clear();
        std::size_t i = 0;
        while (i < line.size()) {
            const char c = line[i];
            const int column = static_cast<int>(i) + 1;
            if (c == ' ' || c == '\t' || c == '\r') {
                ++i;
            } else if (c == '#') {
                break;
            } else if (c == ':' || c == '=' || c == ',') {
                tokens.push_back(Token{c == ':'   ? TokenKind::Colon
                                       : c == '=' ? TokenKind::Equals
                                                  : TokenKind::Comma,
                                       line.substr(i, 1), column});
                ++i;
            } else if (is_word_char(c)) {
                std::size_t j = i;
                while (j < line.size() && is_word_char(line[j])) ++j;
                tokens.push_back(Token{TokenKind::Word, line.substr(i, j - i), column});
                i = j;
            } else {
                const auto byte = static_cast<unsigned char>(c);
                std::size_t j = i + 1;
                std::string shown;
                if (byte >= 0x20 && byte < 0x7f) {
                    shown = std::string("'") + c + "'";
                } else if (byte < 0x80) {
                    shown = "byte " + hex_byte(byte);
                } else {
                    j = utf8_end(line, i);
                    shown = describe_non_ascii(line.substr(i, j - i));
                }
                error(line_number, column, "unexpected character " + shown,
                      byte >= 0x80 ? "the DSL is ASCII only: sizes are written 3x3, with no quotes or brackets"
                                   : "a line is `NAME: OP INPUTS KEY=VALUE ...`; comments start with '#'");
                if (stopped_) return;
                tokens.push_back(Token{TokenKind::Bad, line.substr(i, j - i), column});
                i = j;
            }
        }
    }

    static std::string hex_byte(unsigned char byte) {
        static const char* hex = "0123456789abcdef";
        return std::string("0x") + hex[byte >> 4] + hex[byte & 15];
    }

    // The end of the run of non-ASCII bytes at `i` that forms one UTF-8 character (at least one
    // byte; a byte that starts no valid sequence stands alone).
    static std::size_t utf8_end(std::string_view line, std::size_t i) {
        const auto lead = static_cast<unsigned char>(line[i]);
        const std::size_t n = lead >= 0xf0 && lead < 0xf5 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 && lead < 0xe0 ? 2 : 1;
        if (n == 1 || i + n > line.size()) return i + 1;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(line[i + k]) & 0xc0) != 0x80) return i + 1;
        return i + n;
    }

    // "U+00D7 'x'" for a whole UTF-8 character, "byte 0xNN" for a stray byte.
    static std::string describe_non_ascii(std::string_view ch) {
        const auto lead = static_cast<unsigned char>(ch[0]);
        if (ch.size() == 1) return "byte " + hex_byte(lead);
        std::uint32_t cp = lead & (ch.size() == 2 ? 0x1fu : ch.size() == 3 ? 0x0fu : 0x07u);
        for (std::size_t k = 1; k < ch.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(ch[k]) & 0x3fu);
        static const char* hex = "0123456789ABCDEF";
        std::string u = "U+";
        const int digits = cp > 0xffff ? 6 : 4;
        for (int d = digits - 1; d >= 0; --d) u += hex[(cp >> (4 * d)) & 15];
        return u + " '" + std::string(ch) + "'";
    }

    // From tokens[at], the index of the next `KEY =` (the start of an attribute), or the end.
    static std::size_t next_attribute(const std::vector<Token>& tokens, std::size_t at) {
        while (at < tokens.size() &&
               !(tokens[at].kind == TokenKind::Word && at + 1 < tokens.size() && tokens[at + 1].kind == TokenKind::Equals))
            ++at;
        return at;
    }

    static std::string lower_ascii(std::string_view word) {
        std::string lower(word);
        for (char& ch : lower)
            if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
        return lower;
    }

    // A confident guess for an unknown op word: a known alias or an op name, in any letter case.
    static std::string_view confident_guess(std::string_view word) {
        const std::string lower = lower_ascii(word);
        const std::string_view alias = known_alias(lower);
        if (!alias.empty()) return alias;
        for (OpKind k : all_op_kinds)
            if (op_name(k) == lower) return op_name(k);
        return {};
    }

    // Sorts the diagnostics a line added by column when it is done (tokenize() reports stray
    // characters before the op and attributes around them are checked).
    struct ByColumn {
        std::vector<Diagnostic>& diagnostics;
        std::size_t from;
        const bool& stopped;
        ~ByColumn() {
            if (stopped || diagnostics.size() <= from + 1) return;
            std::stable_sort(diagnostics.begin() + static_cast<std::ptrdiff_t>(from), diagnostics.end(),
                             [](const Diagnostic& x, const Diagnostic& y) { return x.column < y.column; });
        }
    };

    void parse_line(std::string_view line, int line_number) {
        const ByColumn by_column{result_.diagnostics, result_.diagnostics.size(), stopped_};
        if (line.size() > limits_.max_line_length) {
            error(line_number, 1,
                  "the line is " + std::to_string(line.size()) + " characters, more than the limit of " +
                      std::to_string(limits_.max_line_length),
                  "one layer per line");
            return;
        }
        std::vector<Token> tokens;
        tokenize(line, line_number, tokens);
        if (stopped_ || tokens.empty()) return;
        bool stray = false;  // a stray character was reported: the layer is not built
        for (const Token& t : tokens) stray = stray || t.kind == TokenKind::Bad;

        // `model NAME`
        if (tokens[0].kind == TokenKind::Word && tokens[0].text == "model" &&
            (tokens.size() < 2 || tokens[1].kind != TokenKind::Colon)) {
            parse_model_line(tokens, line_number);
            return;
        }

        if (result_.graph.layers.size() >= static_cast<std::size_t>(limits_.max_layers)) {
            error(line_number, tokens[0].column,
                  "more than " + std::to_string(limits_.max_layers) + " layers",
                  "a model may have at most " + std::to_string(limits_.max_layers) + " layers");
            stopped_ = true;
            return;
        }

        Layer layer;
        layer.loc = SourceLoc{line_number, tokens[0].column};
        bool broken = stray;
        std::size_t at = 0;
        std::string_view written_name;
        if (tokens[0].kind == TokenKind::Bad) {
            // A stray character before the name (a bullet, a quote): the rest may still be a layer.
            std::size_t first = 0;
            while (first < tokens.size() && tokens[first].kind == TokenKind::Bad) ++first;
            tokens.erase(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(first));
            if (tokens.empty()) return;
            broken = true;
        }
        if (tokens.size() >= 2 && tokens[1].kind == TokenKind::Colon) {
            if (tokens[0].kind != TokenKind::Word || !is_identifier(tokens[0].text) ||
                tokens[0].text.size() > static_cast<std::size_t>(limits_.max_name_length)) {
                error(line_number, tokens[0].column,
                      "invalid layer name '" + std::string(tokens[0].text) + "'",
                      "names are letters, digits and '_', start with a letter or '_', at most " +
                          std::to_string(limits_.max_name_length) + " characters");
                broken = true;
            }
            written_name = tokens[0].text;
            at = 2;
        }
        if (at >= tokens.size() || tokens[at].kind != TokenKind::Word) {
            if (at >= tokens.size() || tokens[at].kind != TokenKind::Bad)  // else reported already
                error(line_number, at < tokens.size() ? tokens[at].column : tokens.back().column,
                      "expected an op name", "e.g. `conv1: conv2d out=16 kernel=3`");
            return;  // nothing to build a layer from
        }
        const Token& op_token = tokens[at++];
        if (!lookup_op(op_token.text, layer.op)) {
            std::string hint;
            const std::string_view alias = confident_guess(op_token.text);
            const std::string guess = alias.empty() ? closest_match(op_token.text, op_names())
                                                    : std::string(alias);
            if (!guess.empty()) hint = "did you mean '" + guess + "'?";
            else hint = "ops are: " + join_op_names();
            error(line_number, op_token.column,
                  "unknown op '" + std::string(op_token.text) + "'", hint);
            // With a confident guess, the rest of the line is checked as that op (the layer stays
            // broken); otherwise there is nothing to check its attributes against.
            if (alias.empty() || !lookup_op(alias, layer.op)) return;
            broken = true;
        }
        apply_defaults(layer);

        const std::size_t index = result_.graph.layers.size();
        layer.name = written_name.empty()
                         ? std::string(op_name(layer.op)) + "_" + std::to_string(index)
                         : std::string(written_name);

        std::vector<PendingInput> inputs;
        std::vector<std::string_view> seen_keys;
        bool stride_given = false;
        while (at < tokens.size()) {
            const Token& t = tokens[at];
            if (t.kind == TokenKind::Comma) {
                ++at;
                continue;
            }
            if (t.kind == TokenKind::Bad) {  // reported by tokenize(): go on at the next KEY=VALUE
                broken = true;
                at = next_attribute(tokens, at + 1);
                continue;
            }
            if (t.kind != TokenKind::Word) {
                error(line_number, t.column, "unexpected '" + std::string(t.text) + "'",
                      t.kind == TokenKind::Colon ? "only the layer name is followed by ':'"
                                                 : "attributes are written KEY=VALUE");
                broken = true;
                at = next_attribute(tokens, at + 1);
                continue;
            }
            const bool is_attribute =
                at + 1 < tokens.size() && tokens[at + 1].kind == TokenKind::Equals;
            if (!is_attribute) {
                if (!is_identifier(t.text)) {
                    error(line_number, t.column, "'" + std::string(t.text) + "' is not a layer name",
                          "inputs are names of earlier layers; attributes are KEY=VALUE");
                    broken = true;
                } else {
                    inputs.push_back(PendingInput{t.text, t.column});
                }
                ++at;
                continue;
            }
            if (at + 2 >= tokens.size() || tokens[at + 2].kind != TokenKind::Word) {
                // `kernel=(3,3)`: the stray '(' is reported; the key counts as given.
                if (at + 2 < tokens.size() && tokens[at + 2].kind == TokenKind::Bad) seen_keys.push_back(t.text);
                else
                    error(line_number, tokens[at + 1].column,
                          "attribute '" + std::string(t.text) + "' has no value",
                          "write KEY=VALUE with no spaces, e.g. kernel=3");
                broken = true;
                at = next_attribute(tokens, at + 2);
                continue;
            }
            const Token& value = tokens[at + 2];
            at += 3;
            if (at < tokens.size() && tokens[at].kind == TokenKind::Bad) {
                // `kernel=3<U+00D7>3`, `act=<U+2018>relu<U+2019>`: the value is cut by a stray character (reported)
                seen_keys.push_back(t.text);
                broken = true;
                at = next_attribute(tokens, at);
                continue;
            }
            bool duplicate = false;
            for (std::string_view k : seen_keys) duplicate = duplicate || k == t.text;
            if (duplicate) {
                error(line_number, t.column, "attribute '" + std::string(t.text) + "' is given twice");
                broken = true;
                continue;
            }
            seen_keys.push_back(t.text);
            if (t.text == "stride") stride_given = true;
            if (!set_attribute(layer, t, value, line_number)) broken = true;
        }
        for (std::string_view required : required_attributes(layer.op)) {
            bool given = false;
            for (std::string_view k : seen_keys) given = given || k == required;
            if (!given) {
                error(line_number, op_token.column,
                      std::string(op_name(layer.op)) + " '" + layer.name + "' needs '" +
                          std::string(required) + "'",
                      std::string("e.g. `") + example_of(layer.op) + "`");
                broken = true;
            }
        }
        if ((layer.op == OpKind::MaxPool || layer.op == OpKind::AvgPool) && !stride_given) {
            layer.stride_h = layer.kernel_h;  // pools step by their window unless told otherwise
            layer.stride_w = layer.kernel_w;
        }

        const std::size_t existing = index_of_.find(layer.name);
        if (existing != detail::NameIndex::npos) {
            error(line_number, layer.loc.column,
                  "layer name '" + layer.name + "' is already used on line " +
                      std::to_string(result_.graph.layers[existing].loc.line),
                  "every layer needs a unique name");
            broken = true;
        }
        result_.graph.layers.push_back(std::move(layer));
        pending_.push_back(std::move(inputs));
        broken_.push_back(broken ? 1 : 0);
        if (existing == detail::NameIndex::npos) index_of_.insert(result_.graph.layers.back().name, index);
    }

    void parse_model_line(const std::vector<Token>& tokens, int line_number) {
        if (tokens.size() != 2 || tokens[1].kind != TokenKind::Word ||
            !is_identifier(tokens[1].text) ||
            tokens[1].text.size() > static_cast<std::size_t>(limits_.max_name_length)) {
            error(line_number, tokens[0].column, "expected `model NAME`",
                  "NAME is letters, digits and '_', e.g. `model tiny_net`");
            return;
        }
        if (saw_model_ || !result_.graph.layers.empty()) {
            error(line_number, tokens[0].column,
                  saw_model_ ? "the model is named twice"
                             : "`model NAME` must come before the first layer");
            return;
        }
        saw_model_ = true;
        result_.graph.name = std::string(tokens[1].text);
    }

    static void apply_defaults(Layer& layer) {
        if (layer.op == OpKind::MaxPool || layer.op == OpKind::AvgPool)
            layer.padding.mode = PaddingMode::Valid;
    }

    static std::string join_op_names() {
        std::string all;
        for (OpKind k : all_op_kinds) {
            if (!all.empty()) all += ", ";
            all += op_name(k);
        }
        return all;
    }

    bool bad_value(const Token& key, const Token& value, int line_number, const std::string& expected) {
        error(line_number, value.column,
              "invalid value '" + std::string(value.text) + "' for '" + std::string(key.text) + "'",
              "expected " + expected);
        return false;
    }

    bool set_attribute(Layer& layer, const Token& key, const Token& value, int line_number) {
        const auto allowed = attributes_of(layer.op);
        bool known = false;
        for (std::string_view a : allowed) known = known || a == key.text;
        if (!known) {
            std::string hint;
            const std::string guess = closest_match(key.text, allowed);
            if (!guess.empty()) {
                hint = "did you mean '" + guess + "'?";
            } else if (allowed.empty()) {
                hint = std::string(op_name(layer.op)) + " takes no attributes";
            } else {
                hint = std::string(op_name(layer.op)) + " takes: ";
                for (std::size_t i = 0; i < allowed.size(); ++i)
                    hint += (i ? ", " : "") + std::string(allowed[i]);
            }
            error(line_number, key.column,
                  "unknown attribute '" + std::string(key.text) + "' for " +
                      std::string(op_name(layer.op)),
                  hint);
            return false;
        }
        const std::string_view k = key.text, v = value.text;
        std::vector<int> dims;
        int number = 0;
        if (k == "shape") {
            if (!parse_dims(v, dims, 3) || dims.size() != 3)
                return bad_value(key, value, line_number, "HxWxC, e.g. 28x28x1");
            layer.input_shape = Shape{dims[0], dims[1], dims[2]};
        } else if (k == "in" || k == "out" || k == "groups" || k == "multiplier") {
            if (!parse_int(v, number)) return bad_value(key, value, line_number, "a positive integer");
            if (k == "in") layer.expected_in_channels = number;
            if (k == "out") layer.out_channels = number;
            if (k == "groups") layer.groups = number;
            if (k == "multiplier") layer.multiplier = number;
        } else if (k == "kernel" || k == "stride" || k == "dilation") {
            if (!parse_dims(v, dims, 2))
                return bad_value(key, value, line_number, "N or HxW, e.g. 3 or 1x7");
            const int h = dims[0], w = dims.size() == 2 ? dims[1] : dims[0];
            if (k == "kernel") layer.kernel_h = h, layer.kernel_w = w;
            if (k == "stride") layer.stride_h = h, layer.stride_w = w;
            if (k == "dilation") layer.dilation_h = h, layer.dilation_w = w;
        } else if (k == "padding") {
            if (v == "same") {
                layer.padding = Padding{PaddingMode::Same, {0, 0, 0, 0}};
            } else if (v == "valid") {
                layer.padding = Padding{PaddingMode::Valid, {0, 0, 0, 0}};
            } else {
                if (!parse_dims(v, dims, 4) || dims.size() == 3)
                    return bad_value(key, value, line_number, "same, valid, N, HxW or TxLxBxR");
                Padding p{PaddingMode::Explicit, {dims[0], dims[0], dims[0], dims[0]}};
                if (dims.size() == 2) p.amounts = {dims[0], dims[1], dims[0], dims[1]};
                if (dims.size() == 4) p.amounts = {dims[0], dims[1], dims[2], dims[3]};
                layer.padding = p;
            }
        } else if (k == "bias" || k == "ceil") {
            if (v != "true" && v != "false") return bad_value(key, value, line_number, "true or false");
            (k == "bias" ? layer.bias : layer.ceil_mode) = v == "true";
        } else if (k == "act") {
            bool found = false;
            for (Activation a : all_activations)
                if (activation_name(a) == v) layer.act = a, found = true;
            if (!found) {
                std::vector<std::string> names;
                for (Activation a : all_activations) names.emplace_back(activation_name(a));
                const std::string lower = lower_ascii(v);
                std::string guess;
                for (const std::string& n : names)
                    if (n == lower) guess = n;  // ReLU, ReLU6, Sigmoid: lamda writes them in lower case
                if (guess.empty()) guess = closest_match(v, names);
                return bad_value(key, value, line_number,
                                 guess.empty() ? "none, relu, relu6, hardswish, hardsigmoid or sigmoid"
                                               : "an activation; did you mean '" + guess + "'?");
            }
        } else if (k == "eps" || k == "rate") {
            double d = 0;
            const auto r = std::from_chars(v.data(), v.data() + v.size(), d);
            if (r.ec != std::errc() || r.ptr != v.data() + v.size() || !__builtin_isfinite(d))
                return bad_value(key, value, line_number, "a decimal number, e.g. 0.2 or 1e-05");
            (k == "eps" ? layer.eps : layer.rate) = d;
        }
        return true;
    }

    void resolve_and_infer() {
        Graph& graph = result_.graph;
        for (std::size_t i = 0; i < graph.layers.size() && !stopped_; ++i) {
            Layer& layer = graph.layers[i];
            bool broken = broken_[i] != 0;
            if (pending_[i].empty()) {
                // A plain chain: single-input ops read the line above.
                if (i > 0 && detail::min_inputs(layer.op) == 1)
                    layer.inputs.push_back(static_cast<int>(i - 1));
            }
            for (const PendingInput& input : pending_[i]) {
                const std::size_t found = index_of_.find(input.name);
                if (found != detail::NameIndex::npos && found < i) {
                    layer.inputs.push_back(static_cast<int>(found));
                    continue;
                }
                broken = true;
                if (found != detail::NameIndex::npos) {
                    error(layer.loc.line, input.column,
                          "'" + std::string(input.name) + "' is defined later, on line " +
                              std::to_string(graph.layers[found].loc.line),
                          found == i ? "a layer cannot read its own output"
                                             : "a layer can only read layers above it");
                } else {
                    std::vector<std::string_view> earlier;
                    for (std::size_t j = 0; j < i; ++j) earlier.push_back(graph.layers[j].name);
                    const std::string guess = closest_match(input.name, earlier);
                    error(layer.loc.line, input.column,
                          "unknown value '" + std::string(input.name) + "'",
                          guess.empty() ? "inputs must name earlier layers"
                                        : "did you mean '" + guess + "'?");
                }
            }
            if (!broken) infer_layer(graph, i, result_.diagnostics, file_, limits_);
            if (result_.diagnostics.size() >= static_cast<std::size_t>(limits_.max_errors)) {
                error(0, 0, "too many errors");
                stopped_ = true;
            }
        }
        if (result_.diagnostics.empty()) check_graph(graph, result_.diagnostics, file_, limits_);
    }
};

inline std::string dims_attribute(int h, int w) {
    return h == w ? std::to_string(h) : std::to_string(h) + "x" + std::to_string(w);
}

inline std::string padding_attribute(const Padding& p) {
    if (p.mode == PaddingMode::Same) return "same";
    if (p.mode == PaddingMode::Valid) return "valid";
    const auto& a = p.amounts;
    if (a[0] == a[1] && a[1] == a[2] && a[2] == a[3]) return std::to_string(a[0]);
    if (a[0] == a[2] && a[1] == a[3]) return std::to_string(a[0]) + "x" + std::to_string(a[1]);
    return std::to_string(a[0]) + "x" + std::to_string(a[1]) + "x" + std::to_string(a[2]) + "x" +
           std::to_string(a[3]);
}

}  // namespace dsl_detail

// Parses DSL text into a shape-inferred graph. `file` only labels diagnostics.
inline ParseResult parse_dsl(std::string_view text, std::string_view file = "<input>",
                             const Limits& limits = {}) {
    return dsl_detail::Parser(text, file, limits).run();
}

// The canonical text of a graph: every layer named, attributes in a fixed order and only where
// they differ from the default, inputs written only where the line above is not the input.
// parse_dsl(print_dsl(g)) == g for every valid graph.
inline std::string print_dsl(const Graph& graph) {
    using dsl_detail::dims_attribute;
    std::string out;
    if (!graph.name.empty()) out += "model " + graph.name + "\n";
    for (std::size_t i = 0; i < graph.layers.size(); ++i) {
        const Layer& l = graph.layers[i];
        out += l.name + ": " + std::string(op_name(l.op));
        const bool chained = detail::max_inputs(l.op, Limits{}) == 1 && l.inputs.size() == 1 &&
                             l.inputs[0] == static_cast<int>(i) - 1;
        if (!chained) {
            for (std::size_t k = 0; k < l.inputs.size(); ++k) {
                const int input = l.inputs[k];
                const bool valid = input >= 0 && static_cast<std::size_t>(input) < graph.layers.size();
                out += k == 0 ? " " : ", ";
                out += valid ? graph.layers[static_cast<std::size_t>(input)].name : "?";
            }
        }
        auto attr = [&out](std::string_view key, const std::string& value) {
            out += " ";
            out += key;
            out += "=";
            out += value;
        };
        const bool pool = l.op == OpKind::MaxPool || l.op == OpKind::AvgPool;
        for (std::string_view key : dsl_detail::attributes_of(l.op)) {
            if (key == "shape") attr(key, to_string(l.input_shape));
            if (key == "in" && l.expected_in_channels != 0)
                attr(key, std::to_string(l.expected_in_channels));
            if (key == "out") attr(key, std::to_string(l.out_channels));
            if (key == "kernel") attr(key, dims_attribute(l.kernel_h, l.kernel_w));
            if (key == "stride" && (pool ? (l.stride_h != l.kernel_h || l.stride_w != l.kernel_w)
                                         : (l.stride_h != 1 || l.stride_w != 1)))
                attr(key, dims_attribute(l.stride_h, l.stride_w));
            if (key == "padding" &&
                l.padding.mode != (pool ? PaddingMode::Valid : PaddingMode::Same))
                attr(key, dsl_detail::padding_attribute(l.padding));
            if (key == "dilation" && (l.dilation_h != 1 || l.dilation_w != 1))
                attr(key, dims_attribute(l.dilation_h, l.dilation_w));
            if (key == "groups" && l.groups != 1) attr(key, std::to_string(l.groups));
            if (key == "multiplier" && l.multiplier != 1) attr(key, std::to_string(l.multiplier));
            if (key == "bias" && !l.bias) attr(key, "false");
            if (key == "ceil" && l.ceil_mode) attr(key, "true");
            if (key == "act" && l.act != Activation::None)
                attr(key, std::string(activation_name(l.act)));
            if (key == "eps" && l.eps != 1e-5) attr(key, dsl_detail::format_double(l.eps));
            if (key == "rate" && l.rate != 0.5) attr(key, dsl_detail::format_double(l.rate));
        }
        out += "\n";
    }
    return out;
}

}  // namespace lamda

#endif  // LAMDA_DSL_PARSER_HPP
