// lamda/llm/grammar.hpp: the DSL's syntax as a GBNF grammar (llama.cpp's `grammar`, vLLM's
// `guided_grammar`) and as a JSON schema (OpenAI-style `response_format`), generated from the op
// catalog the parser uses, so that a constrained model cannot write hallucinated syntax.
//
//   lamda::DslGrammarOptions o;
//   o.max_layers = 24;                     // a reply ends within max_tokens
//   o.input_shape = lamda::Shape{28, 28, 1};  // the task's input: the input line is fixed
//   std::string gbnf = lamda::dsl_gbnf(o);           // root ::= ...
//   std::string schema = lamda::dsl_json_schema(o);  // {"type":"object","properties":{"model":...
//
// Contract
// - One source of truth with the parser (dsl/parser.hpp): op names come from all_op_kinds and
//   op_name(), each op's attributes from dsl_detail::attributes_of() in canonical order (the order
//   print_dsl writes them), required ones from dsl_detail::required_attributes(), input counts from
//   detail::min_inputs()/max_inputs(), activations from all_activations. The value syntaxes are the
//   parser's: integers, N or HxW sizes, HxWxC shapes, same|valid|N|HxW|TxLxBxR padding,
//   true|false, decimals.
// - Every string the grammar derives is free of syntax errors for parse_dsl: each line is a layer
//   with a known op, only that op's attributes, each at most once, the required ones present,
//   values that parse. Semantics (unknown or duplicate names, channel counts, shapes) are not
//   expressible in a context-free grammar; they still go through validation and repair.
// - Every canonical model (print_dsl) whose layer count, name lengths, add/concat input counts
//   and number sizes are within the options is accepted.
// - The language is finite when max_layers > 0: at most max_layers layer lines (the input
//   included), each of bounded length, so a constrained reply ends within a bounded number of
//   characters (dsl_grammar_max_chars()). max_layers == 0: any number of layers.
// - The GBNF uses only literals, character classes, grouping, `|`, `?`, `*` and rule references
//   (no {m,n}), understood by every llama.cpp grammar parser since 2023.
// - Never throws (beyond std::bad_alloc); options out of range are clamped. Needs no third-party
//   library: it is part of the runtime-free core.
#ifndef LAMDA_LLM_GRAMMAR_HPP
#define LAMDA_LLM_GRAMMAR_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../core/ir.hpp"
#include "../core/validate.hpp"
#include "../dsl/parser.hpp"

namespace lamda {

struct DslGrammarOptions {
    int max_layers = 32;        // layer lines, the input included; 0 = unbounded (clamped to 1000)
    int max_name_length = 32;   // of layer and model names (clamped to 1..Limits::max_name_length)
    int max_inputs = 8;         // of one add or concat (clamped to 2..Limits::max_inputs)
    int max_int_digits = 5;     // of one integer (clamped to 1..9: always below 2^31)
    int max_fraction_digits = 8;  // of a decimal's fraction (eps, rate)
    Shape input_shape{};        // when known(): the input line is exactly `input: input shape=HxWxC`
    bool model_line = true;     // allow an optional `model NAME` first line
    bool fence = false;         // wrap in ```lamda ... ``` (the fence the prompt asks for)
};

namespace grammar_detail {

inline int clamp_int(int v, int lo, int hi) noexcept { return v < lo ? lo : v > hi ? hi : v; }

inline DslGrammarOptions clamped(DslGrammarOptions o) {
    const Limits limits;
    o.max_layers = o.max_layers <= 0 ? 0 : clamp_int(o.max_layers, 2, 1000);
    o.max_name_length = clamp_int(o.max_name_length, 1, limits.max_name_length);
    o.max_inputs = clamp_int(o.max_inputs, 2, limits.max_inputs);
    o.max_int_digits = clamp_int(o.max_int_digits, 1, 9);
    o.max_fraction_digits = clamp_int(o.max_fraction_digits, 1, 17);
    return o;
}

// `item` once, then up to `extra` more, nested so that there is one way to match: "a (a (a)?)?".
inline std::string up_to(const std::string& item, int extra) {
    std::string out = item;
    std::string close;
    for (int i = 0; i < extra; ++i) {
        out += " (" + item;
        close += ")?";
    }
    return out + close;
}

// GBNF string literal.
inline std::string lit(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out + "\"";
}

// The rule name of an op (GBNF names are [a-z0-9-]).
inline std::string op_rule(OpKind op) { return "op-" + std::string(op_name(op)); }

// The value rule of one attribute.
inline std::string value_rule(std::string_view key) {
    if (key == "shape") return "shape";
    if (key == "kernel" || key == "stride" || key == "dilation") return "size";
    if (key == "padding") return "padding";
    if (key == "bias" || key == "ceil") return "bool";
    if (key == "act") return "act";
    if (key == "eps" || key == "rate") return "decimal";
    return "int";  // in, out, groups, multiplier
}

inline bool contains(const std::vector<std::string_view>& v, std::string_view s) {
    for (std::string_view x : v)
        if (x == s) return true;
    return false;
}

}  // namespace grammar_detail

// The most characters one reply constrained by dsl_gbnf(options) can hold (0 when unbounded):
// an upper bound to size max_tokens with (a token is at least one character).
inline std::size_t dsl_grammar_max_chars(const DslGrammarOptions& options) {
    const DslGrammarOptions o = grammar_detail::clamped(options);
    if (o.max_layers == 0) return 0;
    const std::size_t name = static_cast<std::size_t>(o.max_name_length);
    const std::size_t digits = static_cast<std::size_t>(o.max_int_digits);
    const std::size_t decimal = 3 + 1 + static_cast<std::size_t>(o.max_fraction_digits) + 5;
    // The longest line: a name, the op, the inputs and every attribute at its longest.
    const std::size_t inputs = static_cast<std::size_t>(o.max_inputs) * (name + 2);
    const std::size_t attributes = 9 * (12 + 4 * digits + 3) + decimal;  // generous
    const std::size_t line = name + 2 + 12 + 1 + inputs + attributes + 1;
    return 16 + (6 + name + 1) + static_cast<std::size_t>(o.max_layers) * line;
}

// A GBNF grammar (llama.cpp syntax, start rule `root`) of the DSL under `options`.
inline std::string dsl_gbnf(const DslGrammarOptions& options) {
    using grammar_detail::lit;
    using grammar_detail::up_to;
    const DslGrammarOptions o = grammar_detail::clamped(options);
    const Limits limits;
    std::string g;
    g += "# The lamda DSL (docs/dsl.md), generated from the op catalog by lamda::dsl_gbnf.\n";

    // The whole reply.
    std::string body = o.model_line ? "model-line? input-line layers" : "input-line layers";
    if (o.fence) g += "root ::= \"```lamda\\n\" " + body + " \"```\"\n";
    else g += "root ::= " + body + "\n";
    g += "model-line ::= \"model \" name \"\\n\"\n";
    if (o.input_shape.known())
        g += "input-line ::= " + lit("input: input shape=" + to_string(o.input_shape) + "\n") + "\n";
    else
        g += "input-line ::= (name \": \")? \"input shape=\" shape \"\\n\"\n";
    if (o.max_layers == 0) g += "layers ::= layer layer*\n";
    else g += "layers ::= " + up_to("layer", o.max_layers - 2) + "\n";

    // One line per layer: an optional name, an op other than input, its inputs and attributes.
    g += "layer ::= (name \": \")? (";
    bool first = true;
    for (OpKind op : all_op_kinds) {
        if (op == OpKind::Input) continue;
        g += first ? "" : " | ";
        g += grammar_detail::op_rule(op);
        first = false;
    }
    g += ") \"\\n\"\n";

    for (OpKind op : all_op_kinds) {
        if (op == OpKind::Input) continue;
        std::string rule = grammar_detail::op_rule(op) + " ::= " + lit(op_name(op));
        // Inputs: single-input ops may name theirs (else the line above); the others must.
        const int lo = detail::min_inputs(op);
        int hi = detail::max_inputs(op, limits);
        if (hi > o.max_inputs) hi = o.max_inputs;
        if (hi == 1) {
            rule += " (\" \" name)?";
        } else {
            std::string list = "\" \" name";
            for (int i = 1; i < lo; ++i) list += " \", \" name";
            if (hi > lo) list += " " + up_to("\", \" name", hi - lo - 1).insert(0, "(") + ")?";
            rule += " " + list;
        }
        // Attributes in canonical order; required ones always, the others optional.
        const std::vector<std::string_view> required = dsl_detail::required_attributes(op);
        for (std::string_view key : dsl_detail::attributes_of(op)) {
            const std::string attribute =
                lit(" " + std::string(key) + "=") + " " + grammar_detail::value_rule(key);
            rule += grammar_detail::contains(required, key) ? " " + attribute
                                                           : " (" + attribute + ")?";
        }
        g += rule + "\n";
    }

    // Values.
    g += "name ::= [a-zA-Z_] " +
         (o.max_name_length > 1 ? "(" + up_to("[a-zA-Z0-9_]", o.max_name_length - 2) + ")?"
                                : std::string()) +
         "\n";
    g += "int ::= [0-9] " +
         (o.max_int_digits > 1 ? "(" + up_to("[0-9]", o.max_int_digits - 2) + ")?" : std::string()) +
         "\n";
    g += "size ::= int (\"x\" int)?\n";
    g += "shape ::= int \"x\" int \"x\" int\n";
    g += "padding ::= \"same\" | \"valid\" | int (\"x\" int (\"x\" int \"x\" int)?)?\n";
    g += "bool ::= \"true\" | \"false\"\n";
    g += "act ::= ";
    for (std::size_t i = 0; i < all_activations.size(); ++i)
        g += (i ? " | " : "") + lit(activation_name(all_activations[i]));
    g += "\n";
    // Decimals as print_dsl writes them (std::to_chars' shortest form): 0.2, 1e-05, 0.001.
    g += "decimal ::= [0-9] ([0-9] [0-9]?)? (\".\" " + up_to("[0-9]", o.max_fraction_digits - 1) +
         ")? ([eE] [-+]? [0-9] [0-9]?)?\n";
    return g;
}

// A JSON schema (draft 2020-12 subset that OpenAI's structured outputs, vLLM and llama.cpp
// accept) of a reply {"model": "<the DSL text>"}. Without a pattern the DSL inside the string is
// not constrained: the schema only keeps the model from answering prose or code.
inline std::string dsl_json_schema(const DslGrammarOptions& options) {
    const DslGrammarOptions o = grammar_detail::clamped(options);
    std::string description =
        "A lamda DSL model (docs/dsl.md): one layer per line, `NAME: OP [INPUTS] [KEY=VALUE ...]`";
    if (o.input_shape.known())
        description += ", starting with `input: input shape=" + to_string(o.input_shape) + "`";
    if (o.max_layers > 0) description += ", at most " + std::to_string(o.max_layers) + " layers";
    description += ".";
    std::string schema = "{\"type\":\"object\",\"properties\":{\"model\":{\"type\":\"string\",";
    schema += "\"description\":\"" + description + "\"";
    const std::size_t longest = dsl_grammar_max_chars(o);
    if (longest > 0) schema += ",\"maxLength\":" + std::to_string(longest);
    schema += "}},\"required\":[\"model\"],\"additionalProperties\":false}";
    return schema;
}

}  // namespace lamda

#endif  // LAMDA_LLM_GRAMMAR_HPP
