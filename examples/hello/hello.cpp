// hello: parse a model written in the lamda DSL and print what it costs. Needs only the
// runtime-free core, so it also builds with -fno-exceptions -fno-rtti (the core_hello_* ctests).
#include <cstdio>
#include <lamda/core.hpp>

int main() {
    const char* text = R"(model hello
input: input shape=32x32x3
conv: conv2d out=16 kernel=3 stride=2 act=relu
pool: gap
logits: fc out=10
)";
    lamda::ParseResult result = lamda::parse_dsl(text, "hello.lamda");
    if (!result.ok()) {
        std::fputs(lamda::format_diagnostics(result.diagnostics).c_str(), stderr);
        return 1;
    }
    const lamda::ModelStats stats = lamda::analyze(result.graph);
    std::printf("%s: %lld params, %lld MACs\n", result.graph.name.c_str(),
                static_cast<long long>(stats.params), static_cast<long long>(stats.macs));
}
