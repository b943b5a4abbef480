// Graph rewrites (core/rewrite.hpp): the pattern is found wherever it stands, the rewritten graph
// computes the same outputs, and values someone else reads are never removed.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <string>

#include "lamda/core/rewrite.hpp"
#include "lamda/data/weights.hpp"
#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/exec/reference.hpp"

namespace {

lamda::Graph graph_of(const std::string& text) { return lamda::parse_dsl_or_throw(text, "rewrite.lamda"); }

lamda::Tensor ramp(const lamda::Shape& s) {
    lamda::Tensor t(s);
    for (std::size_t i = 0; i < t.data.size(); ++i) t.data[i] = -6.0f + 12.0f * static_cast<float>(i % 97) / 96.0f;
    return t;
}

// The rewritten graph parses back from its canonical text and gives the original's outputs.
void check_same_outputs(const lamda::Graph& before, const lamda::Graph& after) {
    const lamda::Graph reparsed = lamda::parse_dsl_or_throw(lamda::print_dsl(after), "rewritten.lamda");
    CHECK(reparsed == after);
    const lamda::Weights w = lamda::random_weights(before, 7);
    const lamda::Tensor x = ramp(before.input().input_shape);
    const lamda::Tensor a = lamda::run_reference(before, w, x);
    const lamda::Tensor b = lamda::run_reference(after, w, x);
    REQUIRE(a.data.size() == b.data.size());
    for (std::size_t i = 0; i < a.data.size(); ++i) CHECK(std::fabs(a.data[i] - b.data[i]) <= 1e-5f * (1 + std::fabs(a.data[i])));
}

}  // namespace

TEST_CASE("rewrite: mul(x, hardsigmoid(x)) becomes hardswish(x), in either operand order") {
    const lamda::Graph before = graph_of(R"(model hs
input: input shape=8x8x3
c1: conv2d out=8 kernel=3
g1: hardsigmoid c1
m1: mul c1, g1
c2: conv2d out=8 kernel=1
g2: hardsigmoid c2
m2: mul g2, c2
pool: gap
logits: fc out=4
)");
    lamda::Graph after = before;
    const lamda::RewriteReport r = lamda::fuse_activation_patterns(after);
    CHECK(r.hardswish == 2);
    REQUIRE(after.layers.size() == before.layers.size() - 2);
    CHECK(after.find("g1") < 0);
    CHECK(after.find("g2") < 0);
    CHECK(after.layers[static_cast<std::size_t>(after.find("m1"))].op == lamda::OpKind::HardSwish);
    CHECK(after.layers[static_cast<std::size_t>(after.find("m2"))].op == lamda::OpKind::HardSwish);
    check_same_outputs(before, after);

    lamda::Graph again = after;
    CHECK(lamda::fuse_activation_patterns(again).total() == 0);  // idempotent
    CHECK(again == after);
}

TEST_CASE("rewrite: a hardsigmoid that someone else reads, or of another value, stays") {
    const lamda::Graph shared = graph_of(R"(model keep
input: input shape=4x4x2
c: conv2d out=4 kernel=1
g: hardsigmoid c
m: mul c, g
s: add m, g
)");
    lamda::Graph after = shared;
    CHECK(lamda::fuse_activation_patterns(after).total() == 0);
    CHECK(after == shared);

    const lamda::Graph squeeze = graph_of(R"(model se
input: input shape=4x4x4
c: conv2d out=4 kernel=1
p: gap c
f: conv2d out=4 kernel=1
g: hardsigmoid f
m: mul c, g
)");
    after = squeeze;
    CHECK(lamda::fuse_activation_patterns(after).total() == 0);  // squeeze-excitation, not hardswish
    CHECK(after == squeeze);
}
