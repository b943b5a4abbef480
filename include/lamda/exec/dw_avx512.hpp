// lamda/exec/dw_avx512.hpp: lamda's own fp32 kernel for depthwise convolutions (one filter per
// channel, multiplier 1) on x86-64 CPUs with AVX-512F.
//
//   if (lamda::dw_avx512::available()) {
//       lamda::DepthwiseF32 dw(geometry, weights /*C x kh x kw*/, bias /*C or null*/, lo, hi);
//       dw.run_rows(input, output, 0, dw.output_rows());   // NHWC fp32, batch 1
//   }
//
// Why it exists: Debian's XNNPACK (2022-02) runs a depthwise convolution through an indirection
// buffer (one pointer per tap per output pixel) and a channel tile of 16 lanes that it pays for
// whole; per layer against ONNX Runtime's profiler, mnasnet0_5's 17 depthwise layers took twice
// ORT's time, its first (3x3 at 112x112x16) 3.7x (docs/benchmarks.md, "Per layer kind"). This
// kernel reads the NHWC map directly: for a tile of output pixels of one row and one register
// of 16 channels, every tap is one load of 16 channels and one FMA per pixel, the filter taps
// stay in L1, padding is skipped (rows out of range are not visited, border pixels check their
// columns) and the channels past the last full register are masked, never padded.
//
// Arithmetic: y[c] = clamp(bias[c] + sum over in-range taps of x * w, lo, hi), in fp32 FMAs,
// the taps summed in row-major order (tests/exec/test_dw_avx512.cpp checks it against a plain
// loop in double, and inside the executor against XNNPACK and the reference executor). The executor (exec/xnnpack.hpp) uses it for the multiplier-1 depthwise
// layers where it is the faster (preferred) when the CPU has AVX-512F, in optimised builds
// (used_by_default), and XNNPACK's convolution everywhere else; the latency profiler times what
// the executor runs.
#ifndef LAMDA_EXEC_DW_AVX512_HPP
#define LAMDA_EXEC_DW_AVX512_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "../detail/built_optimized.hpp"
#include "../detail/cpu_x86.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LAMDA_DW_AVX512_X86 1
#include <immintrin.h>
#endif

namespace lamda {

namespace dw_avx512 {

// Whether this CPU (and OS) runs AVX-512F: false on other architectures.
inline bool available() noexcept { return detail::cpu_has_avx512f(); }

// Whether this code was compiled with optimisation: unoptimised, the kernel is slower than
// Debian's prebuilt XNNPACK (detail/built_optimized.hpp).
inline constexpr bool built_optimized = detail::built_optimized;

// Whether the executor runs multiplier-1 depthwise convolutions (those it prefers) on this
// kernel by default (XnnOptions::depthwise_avx512). The profile's fingerprint records it.
inline bool used_by_default() noexcept { return built_optimized && available(); }

inline constexpr int kLanes = 16;  // channels per register

// Whether a depthwise convolution runs faster on this kernel than on XNNPACK's, from timing both
// on one machine, interleaved (docs/benchmarks.md, "lamda's depthwise kernel"): every filter of
// more than 9 taps (5x5: 0.35-0.75x XNNPACK's time; 7x7 and larger go to XNNPACK's generic path,
// 10-20x slower than this), every 3x3 one at stride 1 (0.3-0.9x, 16 to 576 channels), and 3x3
// ones at stride 2 with up to 64 channels (0.7-0.9x). Past that, at stride 2, XNNPACK's
// channel-inner loop is the faster (1.0-1.5x at 80 to 576 channels), so the executor keeps it.
inline bool preferred(int channels, int kh, int kw, int stride_w) noexcept {
    return kh * kw > 9 || stride_w == 1 || channels <= 64;
}

}  // namespace dw_avx512

// A depthwise convolution's shape: the input map, the square or rectangular filter, its stride,
// dilation and padding (top, left, bottom, right), and the output map it gives.
struct DepthwiseGeometry {
    int channels = 0;
    int in_h = 0, in_w = 0;
    int kh = 0, kw = 0;
    int sh = 1, sw = 1;
    int dh = 1, dw = 1;
    std::array<int, 4> pads{0, 0, 0, 0};  // top, left, bottom, right
    int out_h() const noexcept { return (in_h + pads[0] + pads[2] - dh * (kh - 1) - 1) / sh + 1; }
    int out_w() const noexcept { return (in_w + pads[1] + pads[3] - dw * (kw - 1) - 1) / sw + 1; }
};

namespace dw_avx512 {

// What every tile of one output row shares: the filter rows in range (input row pointers at
// column 0, channel 0; the packed filter row of each, block 0), the map's width in channels, the
// filter's width, stride and dilation across, and the clamp.
struct RowArgs {
    const float* const* in_rows;
    const std::ptrdiff_t* w_rows;  // offsets into a block's packed taps
    int nrows;
    std::ptrdiff_t channels;
    int in_w;
    int kw, sw, dw;
    float lo, hi;
};

// One tile: `ix0` the input column of its first output's first tap (negative in the left
// padding), `c_off` its register's first channel, `w` the register's packed taps, `bias` its 16
// biases, `mask` its live channels, `out` its first output.
using TileFn = void (*)(const RowArgs& a, int ix0, std::ptrdiff_t c_off, const float* w, const float* bias,
                        unsigned mask, float* out);

#if defined(LAMDA_DW_AVX512_X86)
LAMDA_INTRINSICS_BEGIN

// The end of every tile: TILE outputs clamped to [lo, hi], `C` floats apart, masked to the
// register's live channels.
template <int TILE>
__attribute__((target("avx512f"))) inline void store_clamped(const __m512 (&acc)[TILE], const RowArgs& a,
                                                             __mmask16 mask, float* out) {
    const __m512 lo = _mm512_set1_ps(a.lo), hi = _mm512_set1_ps(a.hi);
    LAMDA_UNROLL_FULL
    for (int p = 0; p < TILE; ++p)
        _mm512_mask_storeu_ps(out + p * a.channels, mask, _mm512_min_ps(_mm512_max_ps(acc[p], lo), hi));
}

// TILE output pixels with the filter width KW and stride S across fixed (dilation 1): each input
// column the tile reads is loaded once per filter row and feeds every output that uses it, so a
// 3x3 stride-1 tile of 8 loads 10 columns a row, not 24. EDGE: columns in the left or right
// padding are skipped (a separate instance: the check costs the interior 10-20%). For one output
// the taps are summed in row-major order.
template <int KW, int S, int TILE, bool EDGE>
__attribute__((target("avx512f"))) void tile_fixed(const RowArgs& a, int ix0, std::ptrdiff_t c_off, const float* w,
                                                   const float* bias, unsigned mask_bits, float* out) {
    const auto mask = static_cast<__mmask16>(mask_bits);
    const std::ptrdiff_t C = a.channels;
    constexpr int kColumns = (TILE - 1) * S + KW;
    const int i_lo = EDGE ? std::max(0, -ix0) : 0, i_hi = EDGE ? std::min(kColumns, a.in_w - ix0) : kColumns;
    __m512 acc[TILE];
    const __m512 vb = _mm512_loadu_ps(bias);
    LAMDA_UNROLL_FULL
    for (int p = 0; p < TILE; ++p) acc[p] = vb;
    for (int r = 0; r < a.nrows; ++r) {
        const float* row = a.in_rows[r] + c_off;
        const float* wr = w + a.w_rows[r];
        __m512 vw[KW];
        LAMDA_UNROLL_FULL
        for (int x = 0; x < KW; ++x) vw[x] = _mm512_loadu_ps(wr + x * kLanes);
        LAMDA_UNROLL_FULL
        for (int i = 0; i < kColumns; ++i) {
            if (EDGE && (i < i_lo || i >= i_hi)) continue;  // a column in the padding
            const __m512 v = _mm512_maskz_loadu_ps(mask, row + static_cast<std::ptrdiff_t>(ix0 + i) * C);
            LAMDA_UNROLL_FULL
            for (int x = 0; x < KW; ++x) {
                const int q = i - x;  // = p * S for the output p that this tap of column i feeds
                if (q >= 0 && q % S == 0 && q / S < TILE) acc[q / S] = _mm512_fmadd_ps(v, vw[x], acc[q / S]);
            }
        }
    }
    store_clamped<TILE>(acc, a, mask, out);
}

// Any width, stride and dilation across: one load per tap per output. Its columns must all lie
// in the input (the borders run border_pixel).
template <int TILE>
__attribute__((target("avx512f"))) void tile_any(const RowArgs& a, int ix0, std::ptrdiff_t c_off, const float* w,
                                                 const float* bias, unsigned mask_bits, float* out) {
    const auto mask = static_cast<__mmask16>(mask_bits);
    const std::ptrdiff_t C = a.channels, pixel_step = a.sw * C, tap_step = a.dw * C;
    __m512 acc[TILE];
    const __m512 vb = _mm512_loadu_ps(bias);
    LAMDA_UNROLL_FULL
    for (int p = 0; p < TILE; ++p) acc[p] = vb;
    for (int r = 0; r < a.nrows; ++r) {
        const float* row = a.in_rows[r] + c_off + static_cast<std::ptrdiff_t>(ix0) * C;
        const float* wr = w + a.w_rows[r];
        for (int x = 0; x < a.kw; ++x) {
            const __m512 vw = _mm512_loadu_ps(wr + x * kLanes);
            const float* src = row + x * tap_step;
            LAMDA_UNROLL_FULL
            for (int p = 0; p < TILE; ++p)
                acc[p] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, src + p * pixel_step), vw, acc[p]);
        }
    }
    store_clamped<TILE>(acc, a, mask, out);
}

// One output pixel whose taps may fall off the input's left or right edge: `ix0` its first
// input column; each tap's column is checked.
__attribute__((target("avx512f"))) inline void border_pixel(const RowArgs& a, int ix0, std::ptrdiff_t c_off,
                                                            const float* w, const float* bias, unsigned mask_bits,
                                                            float* out) {
    const auto mask = static_cast<__mmask16>(mask_bits);
    __m512 acc[1] = {_mm512_loadu_ps(bias)};
    // The taps whose column lies in the input: x in [x_lo, x_hi).
    const int x_lo = ix0 >= 0 ? 0 : (-ix0 + a.dw - 1) / a.dw;
    const int x_hi = ix0 >= a.in_w                     ? 0
                     : ix0 + (a.kw - 1) * a.dw < a.in_w ? a.kw
                                                         : (a.in_w - 1 - ix0) / a.dw + 1;
    for (int r = 0; r < a.nrows; ++r) {
        const float* row = a.in_rows[r] + c_off + static_cast<std::ptrdiff_t>(ix0) * a.channels;
        const float* wr = w + a.w_rows[r];
        for (int x = x_lo; x < x_hi; ++x)
            acc[0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, row + static_cast<std::ptrdiff_t>(x) * a.dw * a.channels),
                                     _mm512_loadu_ps(wr + x * kLanes), acc[0]);
    }
    store_clamped<1>(acc, a, mask, out);
}

LAMDA_INTRINSICS_END

// The tiles of 1 to 8 pixels (index TILE - 1) for a filter width and stride across at dilation
// 1, interior and EDGE; all null where there are none (tile_any and border_pixel then run).
struct FixedTiles {
    std::array<TileFn, 8> interior{}, edge{};
};
template <int K, int S>
FixedTiles fixed_tiles() {
    return {{&tile_fixed<K, S, 1, false>, &tile_fixed<K, S, 2, false>, &tile_fixed<K, S, 3, false>,
             &tile_fixed<K, S, 4, false>, &tile_fixed<K, S, 5, false>, &tile_fixed<K, S, 6, false>,
             &tile_fixed<K, S, 7, false>, &tile_fixed<K, S, 8, false>},
            {&tile_fixed<K, S, 1, true>, &tile_fixed<K, S, 2, true>, &tile_fixed<K, S, 3, true>,
             &tile_fixed<K, S, 4, true>, &tile_fixed<K, S, 5, true>, &tile_fixed<K, S, 6, true>,
             &tile_fixed<K, S, 7, true>, &tile_fixed<K, S, 8, true>}};
}
inline FixedTiles fixed_tiles_for(int kw, int sw, int dw) {
    if (dw != 1) return {};
    if (kw == 3 && sw == 1) return fixed_tiles<3, 1>();
    if (kw == 3 && sw == 2) return fixed_tiles<3, 2>();
    if (kw == 5 && sw == 1) return fixed_tiles<5, 1>();
    if (kw == 5 && sw == 2) return fixed_tiles<5, 2>();
    if (kw == 7 && sw == 1) return fixed_tiles<7, 1>();
    if (kw == 7 && sw == 2) return fixed_tiles<7, 2>();
    return {};
}
#endif  // LAMDA_DW_AVX512_X86

}  // namespace dw_avx512

class DepthwiseF32 {
public:
    static constexpr int kMaxFilterRows = 64;  // taller filters are refused (XNNPACK runs them)

    // `weights`: channels x kh x kw (OIHW with one input channel: the DSL's and XNNPACK's order);
    // `bias`: channels values or null; outputs clamped to [lo, hi] (the fused activation).
    DepthwiseF32(const DepthwiseGeometry& g, const float* weights, const float* bias, float lo, float hi)
        : g_(g), lo_(lo), hi_(hi) {
        if (g.channels <= 0 || g.in_h <= 0 || g.in_w <= 0 || g.kh <= 0 || g.kw <= 0 || g.sh <= 0 || g.sw <= 0 ||
            g.dh <= 0 || g.dw <= 0 || g.kh > kMaxFilterRows || g.pads[0] < 0 || g.pads[1] < 0 || g.pads[2] < 0 ||
            g.pads[3] < 0 || g.out_h() <= 0 || g.out_w() <= 0)
            throw std::invalid_argument("DepthwiseF32: bad geometry");
        blocks_ = (g.channels + dw_avx512::kLanes - 1) / dw_avx512::kLanes;
        taps_ = static_cast<std::size_t>(g.kh) * static_cast<std::size_t>(g.kw);
        const auto lanes = static_cast<std::size_t>(dw_avx512::kLanes);
        // [block][ky][kx][16], channels past the last zero; bias [block][16].
        packed_.assign(static_cast<std::size_t>(blocks_) * taps_ * lanes, 0.0f);
        bias_.assign(static_cast<std::size_t>(blocks_) * lanes, 0.0f);
        for (std::size_t c = 0; c < static_cast<std::size_t>(g.channels); ++c) {
            const std::size_t b = c / lanes, lane = c % lanes;
            for (std::size_t t = 0; t < taps_; ++t) packed_[(b * taps_ + t) * lanes + lane] = weights[c * taps_ + t];
            if (bias) bias_[b * lanes + lane] = bias[c];
        }
        // The output columns whose every tap lies in the input (no column check needed).
        const int ow = g.out_w();
        x_first_ = std::min(ow, (g.pads[1] + g.sw - 1) / g.sw);
        const int last_start = g.in_w - 1 - g.dw * (g.kw - 1) + g.pads[1];  // largest x * sw
        x_end_ = last_start < 0 ? x_first_ : std::max(x_first_, std::min(ow, last_start / g.sw + 1));
        // A tile of 8 reads (7 sw + (kw - 1) dw + 1) columns of kh rows, 64 bytes per register:
        // registers of channels go in groups whose columns fill about half of a 32 KiB L1.
        const long tile_bytes = (7L * g.sw + (g.kw - 1L) * g.dw + 1L) * g.kh * 64L;
        group_ = static_cast<int>(std::clamp(16384L / tile_bytes, 1L, static_cast<long>(blocks_)));
#if defined(LAMDA_DW_AVX512_X86)
        fixed_ = dw_avx512::fixed_tiles_for(g.kw, g.sw, g.dw);
#endif
    }

    const DepthwiseGeometry& geometry() const noexcept { return g_; }
    int output_rows() const noexcept { return g_.out_h(); }

    // Output rows [y_begin, y_end) of NHWC `in` (in_h x in_w x channels) into `out` (out_h x out_w x
    // channels). Rows are independent: threads may run disjoint ranges at once.
    void run_rows(const float* in, float* out, int y_begin, int y_end) const {
#if defined(LAMDA_DW_AVX512_X86)
        for (int y = y_begin; y < y_end; ++y) run_row(in, out, y);
#else
        (void)in;
        (void)out;
        (void)y_begin;
        (void)y_end;
        throw std::logic_error("DepthwiseF32: built without AVX-512 support");
#endif
    }

private:
#if defined(LAMDA_DW_AVX512_X86)
    void run_row(const float* in, float* out, int y) const {
        using dw_avx512::kLanes;
        const std::ptrdiff_t C = g_.channels;
        const int ow = g_.out_w();
        // The filter rows that fall inside the input for this output row (padding rows skipped).
        const float* in_rows[kMaxFilterRows];
        std::ptrdiff_t w_rows[kMaxFilterRows];
        int nrows = 0;
        for (int ky = 0; ky < g_.kh; ++ky) {
            const int iy = y * g_.sh - g_.pads[0] + ky * g_.dh;
            if (iy < 0 || iy >= g_.in_h) continue;
            in_rows[nrows] = in + static_cast<std::ptrdiff_t>(iy) * g_.in_w * C;
            w_rows[nrows++] = static_cast<std::ptrdiff_t>(ky) * g_.kw * kLanes;
        }
        const dw_avx512::RowArgs a{in_rows, w_rows, nrows, C, g_.in_w, g_.kw, g_.sw, g_.dw, lo_, hi_};
        float* out_row = out + static_cast<std::ptrdiff_t>(y) * ow * C;
        const auto block_taps = static_cast<std::ptrdiff_t>(taps_) * kLanes;
        const auto mask_of = [&](int b) {
            const int left = g_.channels - b * kLanes;
            return left >= kLanes ? 0xFFFFu : (1u << left) - 1u;
        };
        // The row in groups of channel registers whose input columns for one tile fit in L1
        // together (group_): all of a tile's registers in the group before the next tile, so the
        // columns it shares with the next tile are still there.
        for (int b0 = 0; b0 < blocks_; b0 += group_) {
            const int b1 = std::min(blocks_, b0 + group_);
            const auto run_tile = [&](dw_avx512::TileFn fn, int x) {
                for (int b = b0; b < b1; ++b)
                    fn(a, x * g_.sw - g_.pads[1], b * kLanes, packed_.data() + b * block_taps,
                       bias_.data() + b * kLanes, mask_of(b), out_row + x * C + b * kLanes);
            };
            if (fixed_.interior[0]) {
                const auto edge = [&](int from, int to) {
                    for (int x = from; x < to; x += 8)
                        run_tile(fixed_.edge[static_cast<std::size_t>(std::min(8, to - x) - 1)], x);
                };
                // Whole tiles of 8 where they can be: the border columns ride in the first and
                // last tiles (a tile of one pixel at each border costs as much as a tile of 4).
                const int left = std::min(ow, std::max(8, x_first_));
                edge(0, left);
                int x = left;
                for (; x + 8 <= x_end_; x += 8) run_tile(fixed_.interior[7], x);
                edge(x, ow);
                continue;
            }
            for (int x = 0; x < x_first_; ++x) run_tile(&dw_avx512::border_pixel, x);
            int x = x_first_;
            for (; x + 8 <= x_end_; x += 8) run_tile(&dw_avx512::tile_any<8>, x);
            for (; x < x_end_; ++x) run_tile(&dw_avx512::tile_any<1>, x);
            for (x = std::max(x, x_first_); x < ow; ++x) run_tile(&dw_avx512::border_pixel, x);
        }
    }
    dw_avx512::FixedTiles fixed_;  // tiles of 1 to 8 pixels, when the filter has them
#endif

    DepthwiseGeometry g_;
    float lo_, hi_;
    int blocks_ = 0;
    int group_ = 1;  // registers of channels swept together along a row
    std::size_t taps_ = 0;
    int x_first_ = 0, x_end_ = 0;  // output columns [x_first_, x_end_) read no padding
    std::vector<float> packed_;
    std::vector<float> bias_;
};

}  // namespace lamda

#endif  // LAMDA_EXEC_DW_AVX512_HPP
