// libFuzzer target for the DSL parser: any bytes must give diagnostics or a valid graph, never a
// crash, a hang or unbounded memory; a valid graph must survive the canonical round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <lamda/core/analysis.hpp>
#include <lamda/dsl/parser.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const lamda::ParseResult parsed = lamda::parse_dsl(text, "fuzz.lamda");
    if (!parsed.ok()) {
        if (parsed.diagnostics.empty()) std::abort();
        return 0;
    }
    const lamda::ModelStats stats = lamda::analyze(parsed.graph);
    if (stats.params < 0 || stats.macs < 0 || stats.peak_activation_bytes <= 0) std::abort();
    const lamda::ParseResult again = lamda::parse_dsl(lamda::print_dsl(parsed.graph), "printed.lamda");
    if (!again.ok() || !(again.graph == parsed.graph)) std::abort();
    return 0;
}
