// lamda/detail/checked.hpp: checked arithmetic for sizes that come from outside (a model file's
// dimensions, a safetensors shape, an IDX header, a JSON number, an ONNX attribute list).
//
//   std::int64_t n = 0;
//   if (!lamda::detail::checked_mul(a, b, n)) ...               // overflow
//   auto count = lamda::detail::checked_elements(dims, limit);   // nullopt: negative or > limit
//   if (!lamda::detail::arity_ok(pads.size(), 4)) ...             // an attribute of the wrong length
//
// Contract: header-only, C++17 standard library only, never throws, never overflows (every
// product is checked before it is formed), so the core and the readers outside it can share it.
// A dimension of 0 makes an element count 0 whatever the other dimensions are (a zero-element
// tensor is valid), but every dimension must still be >= 0 and each one <= `limit`.
#ifndef LAMDA_DETAIL_CHECKED_HPP
#define LAMDA_DETAIL_CHECKED_HPP

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

namespace lamda::detail {

// a * b into `out` when both are >= 0 and the product fits in int64; false otherwise (out unset).
inline bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t& out) noexcept {
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > std::numeric_limits<std::int64_t>::max() / a) return false;
    out = a * b;
    return true;
}

// a + b into `out` when both are >= 0 and the sum fits in int64.
inline bool checked_add(std::int64_t a, std::int64_t b, std::int64_t& out) noexcept {
    if (a < 0 || b < 0) return false;
    if (a > std::numeric_limits<std::int64_t>::max() - b) return false;
    out = a + b;
    return true;
}

// Unsigned versions (file offsets, byte counts).
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
    out = a * b;
    return true;
}
inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
    if (a > std::numeric_limits<std::uint64_t>::max() - b) return false;
    out = a + b;
    return true;
}

// The number of elements of a tensor with dimensions `dims` (any range of integers), or nullopt
// when a dimension is negative or above `limit`, or when the product is above `limit`. A zero
// dimension gives 0 (checked first, so [huge, huge, 0] is 0, not an overflow).
template <class Range>
std::optional<std::int64_t> checked_elements(const Range& dims,
                                             std::int64_t limit = std::numeric_limits<std::int64_t>::max()) noexcept {
    bool zero = false;
    for (const auto d : dims) {
        if (d < 0 || static_cast<std::uint64_t>(d) > static_cast<std::uint64_t>(limit)) return std::nullopt;
        if (d == 0) zero = true;
    }
    if (zero) return std::int64_t{0};
    std::int64_t n = 1;
    for (const auto d : dims) {
        if (!checked_mul(n, static_cast<std::int64_t>(d), n) || n > limit) return std::nullopt;
    }
    return n;
}

// Elements times the size of one element, in bytes, or nullopt past `limit` bytes.
template <class Range>
std::optional<std::int64_t> checked_bytes(const Range& dims, std::int64_t item_bytes,
                                          std::int64_t limit = std::numeric_limits<std::int64_t>::max()) noexcept {
    const std::optional<std::int64_t> n = checked_elements(dims, limit);
    std::int64_t bytes = 0;
    if (!n || !checked_mul(*n, item_bytes, bytes) || bytes > limit) return std::nullopt;
    return bytes;
}

// Whether an attribute list of `size` entries has the `expected` number (ONNX `pads` 4, `strides`
// 2, ...); a check before indexing, so that a short list is an error, not an over-read.
inline constexpr bool arity_ok(std::size_t size, std::size_t expected) noexcept { return size == expected; }

// `v` as an int when it lies in lo..hi.
inline std::optional<int> checked_int(std::int64_t v, int lo = std::numeric_limits<int>::min(),
                                      int hi = std::numeric_limits<int>::max()) noexcept {
    if (v < lo || v > hi) return std::nullopt;
    return static_cast<int>(v);
}

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_CHECKED_HPP
