// Helpers shared by the executor tests (XNNPACK and libtorch against the reference executor).
#ifndef LAMDA_TESTS_EXECUTOR_TEST_SUPPORT_HPP
#define LAMDA_TESTS_EXECUTOR_TEST_SUPPORT_HPP

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lamda/dsl/file.hpp"
#include "lamda/dsl/parser.hpp"
#include "lamda/data/tensor.hpp"
#include "lamda/core/validate.hpp"
#include "lamda/data/weights.hpp"
#include "lamda/exec/reference.hpp"

namespace lamda_test {

// Every executor must match the reference within this fraction of max(1, max |reference|).
constexpr double tolerance = 1e-4;

inline lamda::Graph graph_of(const std::string& text) {
    return lamda::parse_dsl_or_throw(text, "test.lamda");
}

// A zoo model (examples/models/NAME.lamda) with its input replaced by `input` when that is a
// known shape, re-inferred. Throws (a test failure) when the file is missing or invalid.
inline lamda::Graph zoo_model(const std::string& source_dir, const std::string& name,
                              const lamda::Shape& input) {
    const std::string path = source_dir + "/examples/models/" + name + ".lamda";
    lamda::ParseResult parsed = lamda::parse_dsl_file(path);
    if (!parsed.ok()) throw std::runtime_error(lamda::format_diagnostics(parsed.diagnostics));
    lamda::Graph g = std::move(parsed.graph);
    if (input.known()) {
        g.layers.front().input_shape = input;
        std::vector<lamda::Diagnostic> diags;
        if (!lamda::infer_shapes(g, diags, path))
            throw std::runtime_error(lamda::format_diagnostics(diags));
    }
    return g;
}

inline lamda::Tensor random_input(const lamda::Shape& s, std::uint64_t seed) {
    lamda::Tensor t(s);
    lamda::detail::SplitMix64 rng{seed};
    for (float& v : t.data) v = rng.uniform(-1.0f, 1.0f);
    return t;
}

// max |a - b| over n values (NaN counts as huge); `scale` gets max(1, max |b|) and `worst` the
// index of the largest error.
inline double max_error(const float* a, const float* b, std::size_t n, double& scale,
                        std::size_t& worst) {
    scale = 1.0;
    double err = 0.0;
    worst = 0;
    for (std::size_t k = 0; k < n; ++k) {
        scale = std::max(scale, static_cast<double>(std::fabs(b[k])));
        const double e = std::fabs(static_cast<double>(a[k]) - b[k]);
        if (!(e <= err)) {
            err = std::isnan(e) ? 1e30 : e;
            worst = k;
        }
    }
    return err;
}

inline double max_error(const std::vector<float>& a, const std::vector<float>& b, double& scale) {
    std::size_t worst = 0;
    if (a.size() != b.size()) {
        scale = 1.0;
        return 1e30;
    }
    return max_error(a.data(), b.data(), a.size(), scale, worst);
}

// Runs an executor (input(), run(), output()) on `input`: its largest error against `want`, as a
// fraction of max(1, max |want|).
template <class Executor>
double relative_error(Executor& e, const lamda::Tensor& input, const lamda::Tensor& want) {
    std::copy(input.data.begin(), input.data.end(), e.input());
    e.run();
    double scale = 1.0;
    std::size_t worst = 0;
    const double err = max_error(e.output(), want.data.data(), want.data.size(), scale, worst);
    return err / scale;
}

// For 1 and 2 threads: `g` on two Executors, one built with Options' `flag` on and one with it
// off (a kernel of lamda's own against the library's), both against the reference executor on
// one random input; `check(with, without)` asks which layers each took.
template <class Executor, class Options, class Check>
void with_and_without(const lamda::Graph& g, bool Options::*flag, Check check) {
    const lamda::Weights weights = lamda::random_weights(g, 5);
    const lamda::Tensor input = random_input(g.layers.front().shape, 9);
    const lamda::Tensor want = lamda::run_reference(g, weights, input);
    for (int threads : {1, 2}) {
        INFO("threads " << threads);
        Options on, off;
        on.threads = off.threads = threads;
        on.*flag = true;
        off.*flag = false;
        Executor with(g, weights, on), without(g, weights, off);
        check(with, without);
        for (Executor* e : {&with, &without}) CHECK(relative_error(*e, input, want) <= tolerance);
    }
}

}  // namespace lamda_test

#endif  // LAMDA_TESTS_EXECUTOR_TEST_SUPPORT_HPP
