// lamda/detail/format.hpp: number and string formatting shared by reports, logs and generated
// code. Contract: never throws (beyond std::bad_alloc), never emits uninitialised bytes, and
// every function gives a valid result for every double (NaN -> "nan", infinities -> "inf" /
// "-inf"; values too large for fixed notation fall back to exponent notation).
#ifndef LAMDA_DETAIL_FORMAT_HPP
#define LAMDA_DETAIL_FORMAT_HPP

#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>

namespace lamda::detail {

inline bool format_special(double v, std::string& out) {
    if (v != v) {
        out = "nan";
        return true;
    }
    if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
        out = v > 0 ? "inf" : "-inf";
        return true;
    }
    return false;
}

// The shortest text that reads back as the same double ("0.1", "1e+20").
inline std::string format_shortest(double v) {
    std::string out;
    if (format_special(v, out)) return out;
    char buffer[32];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, v);
    if (r.ec != std::errc()) return "nan";  // cannot happen: 32 bytes hold any shortest double
    return std::string(buffer, r.ptr);
}

// Fixed notation with `decimals` digits after the point (clamped to 0..17); a value whose fixed
// form would be longer than 40 characters is written in exponent notation instead.
inline std::string format_fixed(double v, int decimals) {
    std::string out;
    if (format_special(v, out)) return out;
    if (decimals < 0) decimals = 0;
    if (decimals > 17) decimals = 17;
    char buffer[64];
    auto r = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::fixed, decimals);
    if (r.ec == std::errc() && r.ptr - buffer <= 40) return std::string(buffer, r.ptr);
    r = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::scientific, decimals);
    if (r.ec == std::errc()) return std::string(buffer, r.ptr);
    return format_shortest(v);
}

// `digits` significant digits (1..17) without exponent for human-sized values: 7.0e-05 ms is
// "0.000070", 1234.5 is "1234.5" (digits=5). Outside 1e-6..1e15 it uses exponent notation.
inline std::string format_significant(double v, int digits) {
    std::string out;
    if (format_special(v, out)) return out;
    if (digits < 1) digits = 1;
    if (digits > 17) digits = 17;
    const double a = v < 0 ? -v : v;
    if (a == 0) return "0";
    if (a < 1e-6 || a >= 1e15) {
        char buffer[64];
        const auto r = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::scientific, digits - 1);
        return r.ec == std::errc() ? std::string(buffer, r.ptr) : format_shortest(v);
    }
    int magnitude = 0;  // floor(log10(a)) without <cmath>
    for (double p = 1; p * 10 <= a; p *= 10) ++magnitude;
    for (double p = 1; p > a; p /= 10) --magnitude;
    const int decimals = digits - 1 - magnitude;
    return format_fixed(v, decimals < 0 ? 0 : decimals);
}

// Leading and trailing ASCII white space removed.
inline std::string_view trim(std::string_view s) noexcept {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_FORMAT_HPP
