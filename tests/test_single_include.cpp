// The generated single header (single_include/lamda/lamda.hpp) is self-contained and works.
// This file is built into a program of its own, which does not see include/.
#include "../single_include/lamda/lamda.hpp"

#include <doctest/doctest.h>

TEST_CASE("the single header parses and analyses a model") {
    const lamda::ParseResult result = lamda::parse_dsl(
        "model single\n"
        "input: input shape=8x8x3\n"
        "conv: conv2d out=4 kernel=3 act=relu\n"
        "pool: gap\n"
        "logits: fc out=2\n",
        "single.lamda");
    REQUIRE(result.ok());
    CHECK(result.graph.name == "single");
    REQUIRE(result.graph.layers.size() == 4);
    CHECK(result.graph.output().shape == lamda::Shape{1, 1, 2});

    const lamda::ModelStats stats = lamda::analyze(result.graph);
    CHECK(stats.params == (4 * 3 * 3 * 3 + 4) + (4 * 2 + 2));
    CHECK(stats.macs == 8 * 8 * 4 * 27 + 4 * 2);
}

TEST_CASE("the single header reports errors with their location") {
    const lamda::ParseResult result =
        lamda::parse_dsl("input: input shape=8x8x3\nconv: conv3d out=4 kernel=3\n", "bad.lamda");
    CHECK_FALSE(result.ok());
    REQUIRE_FALSE(result.diagnostics.empty());
    CHECK(lamda::format_diagnostics(result.diagnostics).find("bad.lamda:2:") != std::string::npos);
}
