// What the generation-loop tests (test_generate.cpp, test_llm.cpp) share: a deterministic
// stand-in for measuring latency, so that results are exact and the tests are fast.
#ifndef LAMDA_TESTS_GENERATE_TEST_SUPPORT_HPP
#define LAMDA_TESTS_GENERATE_TEST_SUPPORT_HPP

#include <lamda/search/loop.hpp>

namespace lamda_test {

// 40 GMAC/s plus 1 microsecond per layer: exact, deterministic and monotone in size.
inline lamda::Measurement synthetic_measure(const lamda::Graph& g) {
    const lamda::ModelStats s = lamda::analyze(g);
    lamda::Measurement m;
    for (std::size_t i = 0; i < g.layers.size(); ++i) {
        const double ms = 0.001 + double(s.layers[i].macs) / 40e6;
        m.per_layer.push_back({g.layers[i].name, ms, 0});
        m.median_ms += ms;
    }
    for (auto& l : m.per_layer) l.share = l.ms / m.median_ms;
    return m;
}

}  // namespace lamda_test

#endif  // LAMDA_TESTS_GENERATE_TEST_SUPPORT_HPP
