// The DSL's grammar (llm/grammar.hpp), one source of truth with the parser: every sampled and zoo
// model is in the grammar's language, and every string the grammar derives is free of syntax
// errors for the parser. Checked with a GBNF recogniser of our own (gbnf_matcher.hpp).
#include <doctest/doctest.h>

#include <lamda/dsl/parser.hpp>
#include <lamda/llm/grammar.hpp>
#include <lamda/search/sampler.hpp>

#include "gbnf_matcher.hpp"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Compiled {
    gbnf::Grammar grammar;
    gbnf::Matcher matcher;
};

void compile(const lamda::DslGrammarOptions& options, Compiled& c) {
    const std::string text = lamda::dsl_gbnf(options);
    std::string error;
    REQUIRE_MESSAGE(c.grammar.parse(text, error), error << "\n" << text);
    REQUIRE_MESSAGE(c.matcher.compile(c.grammar, error), error);
}

// Messages of the parser's line-level (syntax) checks, dsl/parser.hpp: a derived string must
// raise none of them. Unknown/duplicate names, channels and shapes are semantics.
bool is_syntax_error(const lamda::Diagnostic& d) {
    static const char* const syntax[] = {
        "unexpected character", "invalid layer name", "expected an op name", "unknown op",
        "unexpected '",         "is not a layer name", "has no value",       "is given twice",
        "unknown attribute",    "invalid value",       "expected `model NAME`",
        "the model is named twice", "must come before the first layer", "the line is",
        "the file is",          "layers",  // "more than N layers"
    };
    for (const char* s : syntax) {
        if (std::string(s) == "layers") {
            if (d.message.rfind("more than ", 0) == 0 &&
                d.message.find(" layers") != std::string::npos)
                return true;
            continue;
        }
        if (d.message.find(s) != std::string::npos) return true;
    }
    // "conv2d 'x' needs 'out'": a required attribute left out.
    return d.message.find(" needs '") != std::string::npos;
}

std::vector<std::string> zoo_texts() {
    std::vector<std::string> out;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(LAMDA_SOURCE_DIR) + "/examples/models")) {
        if (entry.path().extension() != ".lamda") continue;
        std::ifstream in(entry.path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        out.push_back(ss.str());
    }
    return out;
}

int count_lines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

}  // namespace

TEST_CASE("grammar: the GBNF names every op and every op's attributes from the catalog") {
    const std::string g = lamda::dsl_gbnf({});
    for (lamda::OpKind op : lamda::all_op_kinds) {
        CHECK(g.find("\"" + std::string(lamda::op_name(op))) != std::string::npos);
        for (std::string_view key : lamda::dsl_detail::attributes_of(op))
            CHECK(g.find((op == lamda::OpKind::Input ? "" : " ") + std::string(key) + "=") !=
                  std::string::npos);
    }
    for (lamda::Activation a : lamda::all_activations)
        CHECK(g.find("\"" + std::string(lamda::activation_name(a)) + "\"") != std::string::npos);
    // Only the subset every llama.cpp grammar parser reads: no {m,n} repetition.
    CHECK(g.find('{') == std::string::npos);
    Compiled c;
    compile({}, c);
}

TEST_CASE("grammar: 10,000 sampled models and every zoo model are in the language") {
    lamda::DslGrammarOptions options;
    options.max_layers = 0;  // any number of layers
    options.max_name_length = 64;
    options.max_inputs = 64;
    Compiled c;
    compile(options, c);

    const lamda::SampleSpace space;
    int accepted = 0;
    for (int i = 0; i < 10000; ++i) {
        std::mt19937_64 rng(lamda::sample_seed(2026, static_cast<std::uint64_t>(i)));
        const lamda::ModelFamily family = lamda::sample_family(rng, space);
        const std::string text = lamda::sample_model_text(rng, space, family);
        const bool ok = c.matcher.matches(text);
        if (!ok) FAIL_CHECK("sampled model " << i << " is not in the grammar:\n" << text);
        accepted += ok;
    }
    CHECK(accepted == 10000);

    const std::vector<std::string> zoo = zoo_texts();
    CHECK(zoo.size() >= 7);
    for (const std::string& source : zoo) {
        const lamda::ParseResult parsed = lamda::parse_dsl(source, "zoo.lamda");
        REQUIRE_MESSAGE(parsed.ok(), lamda::format_diagnostics(parsed.diagnostics));
        const std::string canonical = lamda::print_dsl(parsed.graph);
        CHECK_MESSAGE(c.matcher.matches(canonical), canonical);
        // In a fence, too, with the input line fixed to the model's shape.
        lamda::DslGrammarOptions fenced = options;
        fenced.fence = true;
        fenced.input_shape = parsed.graph.input().input_shape;
        Compiled f;
        compile(fenced, f);
        if (parsed.graph.input().name == "input")
            CHECK_MESSAGE(f.matcher.matches("```lamda\n" + canonical + "```"), canonical);
    }
}

TEST_CASE("grammar: the parser accepts every string the grammar derives") {
    lamda::DslGrammarOptions options;
    options.max_layers = 12;
    options.max_name_length = 8;
    int walks = 0, fully_valid = 0;
    for (double p : {0.2, 0.5, 0.8, 0.95}) {
        for (bool fixed_input : {false, true}) {
            lamda::DslGrammarOptions o = options;
            if (fixed_input) o.input_shape = lamda::Shape{28, 28, 1};
            Compiled c;
            compile(o, c);
            const gbnf::Deriver deriver(c.grammar, p);
            std::mt19937_64 rng(static_cast<std::uint64_t>(p * 1000) + (fixed_input ? 1 : 0));
            for (int i = 0; i < 500; ++i, ++walks) {
                const std::string text = deriver.derive(rng);
                REQUIRE(c.matcher.matches(text));  // the recogniser and the deriver agree
                CHECK(text.size() <= lamda::dsl_grammar_max_chars(o));
                const lamda::ParseResult r = lamda::parse_dsl(text, "derived.lamda");
                for (const lamda::Diagnostic& d : r.diagnostics)
                    if (is_syntax_error(d))
                        FAIL_CHECK(lamda::format_diagnostic(d) << "\nin\n" << text);
                // Every line became a layer (the model line aside), at most max_layers of them.
                const int lines = count_lines(text) - (text.rfind("model ", 0) == 0 ? 1 : 0);
                CHECK(static_cast<int>(r.graph.layers.size()) == lines);
                CHECK(lines <= o.max_layers);
                fully_valid += r.ok();
            }
        }
    }
    CHECK(walks == 4000);
    MESSAGE("derived strings that are also semantically valid: " << fully_valid << " / " << walks);
}

TEST_CASE("grammar: bounds, fences and the JSON schema") {
    lamda::DslGrammarOptions o;
    o.max_layers = 3;
    o.input_shape = lamda::Shape{28, 28, 1};
    Compiled c;
    compile(o, c);
    const std::string head = "input: input shape=28x28x1\n";
    CHECK(c.matcher.matches(head + "c: conv2d out=8 kernel=3 act=relu\nfc: fc out=10\n"));
    CHECK(c.matcher.matches("model m\n" + head + "gap\nfc out=10\n"));
    CHECK_FALSE(c.matcher.matches(head));  // at least one layer
    CHECK_FALSE(c.matcher.matches(head + "gap\nflatten\nfc out=10\n"));  // 4 layers > 3
    CHECK_FALSE(c.matcher.matches("input: input shape=32x32x3\ngap\n"));  // not the task's input
    CHECK_FALSE(c.matcher.matches(head + "c: conv2d kernel=3\n"));        // out is required
    CHECK_FALSE(c.matcher.matches(head + "c: conv2d out=8 kernel=3 out=8\n"));
    CHECK_FALSE(c.matcher.matches(head + "c: conv3d out=8 kernel=3\n"));
    CHECK_FALSE(c.matcher.matches(head + "c: conv2d out=8 kernel=(3,3)\n"));
    CHECK_FALSE(c.matcher.matches(head + "c: conv2d out=8 kernel=3 act=ReLU\n"));
    CHECK_FALSE(c.matcher.matches(head + "a: add c\n"));   // add needs two inputs
    CHECK(c.matcher.matches(head + "a: add x, y act=relu\n"));
    CHECK(c.matcher.matches(head + "p: maxpool kernel=3 stride=2 padding=1x1x0x0 ceil=true\n"));
    CHECK(c.matcher.matches(head + "bn: batchnorm eps=0.001\nd: dropout rate=0.2\n"));
    CHECK(c.matcher.matches(head + "bn: batchnorm eps=1e-05\n"));

    // Name length is bounded.
    o.max_name_length = 4;
    Compiled short_names;
    compile(o, short_names);
    CHECK(short_names.matcher.matches(head + "abcd: gap\n"));
    CHECK_FALSE(short_names.matcher.matches(head + "abcde: gap\n"));

    // Fenced.
    o.fence = true;
    Compiled fenced;
    compile(o, fenced);
    CHECK(fenced.matcher.matches("```lamda\n" + head + "gap\n```"));
    CHECK_FALSE(fenced.matcher.matches(head + "gap\n"));

    // The schema: an object whose "model" string holds the DSL, bounded by the grammar's length.
    const std::string schema = lamda::dsl_json_schema(o);
    CHECK(schema.find("\"required\":[\"model\"]") != std::string::npos);
    CHECK(schema.find("\"maxLength\":" + std::to_string(lamda::dsl_grammar_max_chars(o))) !=
          std::string::npos);
    CHECK(schema.find("input: input shape=28x28x1") != std::string::npos);
    o.max_layers = 0;
    CHECK(lamda::dsl_grammar_max_chars(o) == 0);
    CHECK(lamda::dsl_json_schema(o).find("maxLength") == std::string::npos);
}
