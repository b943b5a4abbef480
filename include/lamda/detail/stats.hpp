// lamda/detail/stats.hpp: order statistics for timings (median, percentiles) without surprises.
#ifndef LAMDA_DETAIL_STATS_HPP
#define LAMDA_DETAIL_STATS_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

namespace lamda {

// The q-quantile (q in [0, 1]) with linear interpolation between order statistics (the
// definition numpy uses by default). Throws on an empty sample.
inline double quantile(std::vector<double> sample, double q) {
    if (sample.empty()) throw std::invalid_argument("quantile of an empty sample");
    q = std::clamp(q, 0.0, 1.0);
    std::sort(sample.begin(), sample.end());
    const double position = q * static_cast<double>(sample.size() - 1);
    const auto below = static_cast<std::size_t>(std::floor(position));
    const std::size_t above = std::min(below + 1, sample.size() - 1);
    const double fraction = position - static_cast<double>(below);
    return sample[below] + (sample[above] - sample[below]) * fraction;
}

inline double median(std::vector<double> sample) { return quantile(std::move(sample), 0.5); }

}  // namespace lamda

#endif  // LAMDA_DETAIL_STATS_HPP
