// lamda/exec/wino_avx512.hpp: lamda's own fp32 kernel for 3x3 convolutions at stride 1 (one
// group, no dilation) on x86-64 CPUs with AVX-512F, by Winograd's F(2x2, 3x3).
//
//   if (lamda::wino_avx512::available()) {
//       lamda::WinogradGeometry geo{in_channels, out_channels, in_h, in_w, pad_top, pad_left, out_h, out_w};
//       lamda::Winograd3x3F32 conv(geo, weights /*OHWI*/, bias /*or null*/, lo, hi);
//       conv.run(input, output);   // NHWC fp32
//   }
//
// Why it exists: XNNPACK's 3x3 convolution already runs at ~90% of this CPU's FMA peak
// (resnet18's 3x3 layers, docs/benchmarks.md), so only fewer multiplications make it faster.
// F(2x2, 3x3) computes each 2x2 block of outputs from a 4x4 block of inputs with 16 products per
// input-output channel pair instead of 36: 2.25x fewer. Per block of up to 60 output tiles:
//   V[xi][t][c] = (B^T d B)[xi]    the input transform of each tile's 4x4 inputs (zeros outside)
//   M[xi][t][o] = sum_c V[xi][t][c] U[xi][c][o]    16 GEMMs on exec/pw_avx512.hpp's tile
//   y[2x2] = clamp(bias + A^T M A, lo, hi)        the output transform
// with U = G g G^T the filter's transform (made once, in double). B^T, G and A^T are Lavin and
// Gray's (2016) for F(2, 3): points 0, 1, -1 and infinity, so every transform is adds and
// halves and the rounding error stays near the direct method's (tests/exec/test_wino_avx512.cpp
// bounds it against a loop in double; on resnet18's shapes it is below XNNPACK's own).
// The executor (exec/xnnpack.hpp) uses it where it is the faster (preferred) when the CPU has
// AVX-512F, in optimised builds (used_by_default); the latency profiler times what the executor
// runs and the latency features count its GEMMs as the pointwise kernel's work.
#ifndef LAMDA_EXEC_WINO_AVX512_HPP
#define LAMDA_EXEC_WINO_AVX512_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "pw_avx512.hpp"

namespace lamda {

namespace wino_avx512 {

inline bool available() noexcept { return detail::cpu_has_avx512f(); }
inline bool used_by_default() noexcept { return detail::built_optimized && available(); }

// Whether a 3x3 stride-1 convolution runs faster on this kernel than on XNNPACK's, from timing
// both on one machine, interleaved (docs/benchmarks.md, "lamda's Winograd kernel"): 0.39-0.74x
// XNNPACK's time on resnet18's, squeezenet1_1's and Fashion-MNIST's shapes (16 to 512 inputs);
// with fewer than 16 inputs or 16 outputs the transforms outweigh the products saved (2x
// slower at 8 -> 16).
inline bool preferred(int in_channels, int out_channels) noexcept { return in_channels >= 16 && out_channels > 16; }

// Whether the executor runs a convolution of this shape on the kernel (on a CPU where it is
// used): a 3x3 filter at stride 1, no dilation, one group, and preferred. The latency features
// ask the same (latency/features.hpp: runs_on_own_winograd).
inline bool takes(int kh, int kw, int sh, int sw, int dh, int dw, int groups, int in_channels,
                  int out_channels) noexcept {
    return kh == 3 && kw == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && groups == 1 &&
           preferred(in_channels, out_channels);
}

inline constexpr int kPoints = 16;      // 4x4 transformed values per tile
inline constexpr int kBlockTiles = 60;  // tiles per unit of work: the pointwise kernel's chunk

// Output tiles (2x2 outputs each) of an out_h x out_w map.
inline std::size_t tiles(int out_h, int out_w) noexcept {
    return static_cast<std::size_t>((out_h + 1) / 2) * static_cast<std::size_t>((out_w + 1) / 2);
}

// Multiply-adds of the 16 GEMMs as the pointwise kernel runs them (output channels in 16-lane
// registers): the latency features' measure of this kernel's work.
inline double gemm_work(int out_h, int out_w, int in_channels, int out_channels) noexcept {
    return double(kPoints) * double(tiles(out_h, out_w)) * double(in_channels) *
           double((out_channels + pw_avx512::kLanes - 1) / pw_avx512::kLanes * pw_avx512::kLanes);
}

}  // namespace wino_avx512

// A stride-1 3x3 convolution's shape: the output pixel (y, x) reads inputs (y - pad_top + i,
// x - pad_left + j) for i, j in 0..2, zero outside the input.
struct WinogradGeometry {
    int in_channels = 0, out_channels = 0;
    int in_h = 0, in_w = 0;
    int pad_top = 0, pad_left = 0;
    int out_h = 0, out_w = 0;
};

class Winograd3x3F32 {
public:
    // `weights`: out_channels x 3 x 3 x in_channels (OHWI, XNNPACK's order); `bias`: out_channels
    // values or null; outputs clamped to [lo, hi] (the fused activation).
    Winograd3x3F32(const WinogradGeometry& geo, const float* weights, const float* bias, float lo, float hi)
        : geo_(geo), lo_(lo), hi_(hi) {
        const int ic = geo.in_channels, oc = geo.out_channels;
        if (ic <= 0 || oc <= 0 || geo.in_h <= 0 || geo.in_w <= 0 || geo.out_h <= 0 || geo.out_w <= 0 ||
            geo.pad_top < 0 || geo.pad_left < 0 || !weights)
            throw std::invalid_argument("Winograd3x3F32: bad shape or no weights");
        bias_.assign(static_cast<std::size_t>(oc), 0.0f);
        if (bias) std::copy(bias, bias + oc, bias_.begin());
        // U[xi] = G g G^T per (output, input) channel, as out x in matrices for the GEMMs.
        static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
        const auto IC = static_cast<std::size_t>(ic), OC = static_cast<std::size_t>(oc);
        std::vector<float> u(wino_avx512::kPoints * OC * IC);
        for (std::size_t o = 0; o < OC; ++o)
            for (std::size_t c = 0; c < IC; ++c) {
                double gt[4][3];  // G g
                for (int i = 0; i < 4; ++i)
                    for (int x = 0; x < 3; ++x) {
                        gt[i][x] = 0;
                        for (int y = 0; y < 3; ++y)
                            gt[i][x] += G[i][y] * double(weights[(o * 9 + static_cast<std::size_t>(y * 3 + x)) * IC + c]);
                    }
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 4; ++j) {
                        double s = 0;
                        for (int x = 0; x < 3; ++x) s += gt[i][x] * G[j][x];
                        u[(static_cast<std::size_t>(i * 4 + j) * OC + o) * IC + c] = static_cast<float>(s);
                    }
            }
        const float inf = std::numeric_limits<float>::infinity();
        for (std::size_t xi = 0; xi < wino_avx512::kPoints; ++xi)
            gemm_.push_back(std::make_unique<const PointwiseF32>(ic, oc, u.data() + xi * OC * IC, nullptr, -inf, inf));
    }

    const WinogradGeometry& geometry() const noexcept { return geo_; }
    std::size_t tiles() const noexcept { return wino_avx512::tiles(geo_.out_h, geo_.out_w); }
    // Units of work: blocks of up to `block_tiles` output tiles, each whole or split into
    // `groups` of the output channels' panels of 64 (at most panels() of them).
    std::size_t blocks(std::size_t block_tiles = wino_avx512::kBlockTiles) const noexcept {
        return (tiles() + block_tiles - 1) / block_tiles;
    }
    int panels() const noexcept { return gemm_.front()->panels(); }

    // The whole output: `in` in_h x in_w x in_channels, `out` out_h x out_w x out_channels.
    void run(const float* in, float* out) const {
        for (std::size_t b = 0; b < blocks(); ++b) run_unit(in, out, b);
    }

    // Block `block` of tiles (row-major over the output's 2x2 tiles), `block_tiles` per block,
    // and of its output channels the panels of group `group` of `groups`. Units are independent:
    // threads may run different ones at once (each thread transforms into scratch of its own,
    // kept for its next unit). Groups split a map of few tiles (7x7: 16) over threads by output
    // channels, so that each streams only its share of the transformed filters; each group
    // transforms the block's inputs again (cheap beside the GEMMs at such widths).
    void run_unit(const float* in, float* out, std::size_t block,
                  std::size_t block_tiles = wino_avx512::kBlockTiles, int group = 0, int groups = 1) const {
#if defined(LAMDA_PW_AVX512_X86)
        const std::size_t t0 = block * block_tiles, t1 = std::min(tiles(), t0 + block_tiles);
        if (t0 >= t1 || groups < 1 || group < 0 || group >= groups) return;
        const int panel_begin = panels() * group / groups, panel_end = panels() * (group + 1) / groups;
        if (panel_begin >= panel_end) return;
        const std::size_t T = t1 - t0;
        static thread_local std::vector<float> scratch;
        const std::size_t v_size = wino_avx512::kPoints * T * static_cast<std::size_t>(geo_.in_channels);
        const std::size_t m_size = wino_avx512::kPoints * T * static_cast<std::size_t>(geo_.out_channels);
        if (scratch.size() < v_size + m_size) scratch.resize(v_size + m_size);
        float* V = scratch.data();
        float* M = V + v_size;
        transform_input(in, t0, t1, V);
        for (std::size_t xi = 0; xi < wino_avx512::kPoints; ++xi)
            for (int panel = panel_begin; panel < panel_end; ++panel)
                for (std::size_t chunk = 0; chunk < PointwiseF32::chunks(T); ++chunk)
                    gemm_[xi]->run_unit(V + xi * T * static_cast<std::size_t>(geo_.in_channels),
                                        M + xi * T * static_cast<std::size_t>(geo_.out_channels), T, panel, chunk);
        const int per_panel = pw_avx512::kMaxRegisters * pw_avx512::kLanes;
        transform_output(M, t0, t1, panel_begin * per_panel, std::min(geo_.out_channels, panel_end * per_panel), out);
#else
        (void)in;
        (void)out;
        (void)block;
        (void)block_tiles;
        (void)group;
        (void)groups;
        throw std::logic_error("Winograd3x3F32: built without AVX-512 support");
#endif
    }

private:
#if defined(LAMDA_PW_AVX512_X86)
    LAMDA_INTRINSICS_BEGIN
    static __mmask16 lanes(int left) noexcept {
        return static_cast<__mmask16>(left >= pw_avx512::kLanes ? 0xFFFFu : (1u << left) - 1u);
    }

    // V[xi][t - t0][c] = (B^T d B)[xi] for tiles t0..t1, d the tile's 4x4 inputs (zero outside).
    __attribute__((target("avx512f"))) void transform_input(const float* in, std::size_t t0, std::size_t t1,
                                                            float* V) const {
        const int ic = geo_.in_channels, tw = (geo_.out_w + 1) / 2;
        const std::size_t T = t1 - t0, IC = static_cast<std::size_t>(ic);
        const __m512 zero = _mm512_setzero_ps();
        for (std::size_t t = t0; t < t1; ++t) {
            const int y0 = 2 * static_cast<int>(t / static_cast<std::size_t>(tw)) - geo_.pad_top;
            const int x0 = 2 * static_cast<int>(t % static_cast<std::size_t>(tw)) - geo_.pad_left;
            const float* row[4];
            bool col_in[4];
            for (int i = 0; i < 4; ++i) {
                const int y = y0 + i;
                row[i] = y >= 0 && y < geo_.in_h ? in + static_cast<std::size_t>(y) * static_cast<std::size_t>(geo_.in_w) * IC
                                                 : nullptr;
                col_in[i] = x0 + i >= 0 && x0 + i < geo_.in_w;
            }
            float* v = V + (t - t0) * IC;
            for (int c = 0; c < ic; c += pw_avx512::kLanes) {
                const __mmask16 m = lanes(ic - c);
                __m512 d[4][4];
                LAMDA_UNROLL_FULL
                for (int i = 0; i < 4; ++i)
                    LAMDA_UNROLL_FULL
                    for (int j = 0; j < 4; ++j)
                        d[i][j] = row[i] && col_in[j]
                                      ? _mm512_maskz_loadu_ps(m, row[i] + static_cast<std::ptrdiff_t>(x0 + j) * ic + c)
                                      : zero;
                __m512 e[4][4];  // B^T d
                LAMDA_UNROLL_FULL
                for (int j = 0; j < 4; ++j) {
                    e[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                    e[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                    e[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                    e[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
                }
                LAMDA_UNROLL_FULL
                for (int i = 0; i < 4; ++i) {  // (B^T d) B
                    const __m512 r[4] = {_mm512_sub_ps(e[i][0], e[i][2]), _mm512_add_ps(e[i][1], e[i][2]),
                                         _mm512_sub_ps(e[i][2], e[i][1]), _mm512_sub_ps(e[i][1], e[i][3])};
                    LAMDA_UNROLL_FULL
                    for (int j = 0; j < 4; ++j)
                        _mm512_mask_storeu_ps(v + static_cast<std::size_t>(i * 4 + j) * T * IC + static_cast<std::size_t>(c), m,
                                              r[j]);
                }
            }
        }
    }

    // out[2x2 block of tile t] = clamp(bias + A^T M A, lo, hi) for output channels c_begin to
    // c_end, the block cut at the map's edge.
    __attribute__((target("avx512f"))) void transform_output(const float* M, std::size_t t0, std::size_t t1,
                                                             int c_begin, int c_end, float* out) const {
        const int oc = geo_.out_channels, tw = (geo_.out_w + 1) / 2;
        const std::size_t T = t1 - t0, OC = static_cast<std::size_t>(oc);
        const __m512 vlo = _mm512_set1_ps(lo_), vhi = _mm512_set1_ps(hi_);
        for (std::size_t t = t0; t < t1; ++t) {
            const int y0 = 2 * static_cast<int>(t / static_cast<std::size_t>(tw));
            const int x0 = 2 * static_cast<int>(t % static_cast<std::size_t>(tw));
            const int rows = std::min(2, geo_.out_h - y0), cols = std::min(2, geo_.out_w - x0);
            const float* mt = M + (t - t0) * OC;
            for (int c = c_begin; c < c_end; c += pw_avx512::kLanes) {
                const __mmask16 m = lanes(c_end - c);
                __m512 a[4][4];
                LAMDA_UNROLL_FULL
                for (int xi = 0; xi < 16; ++xi)
                    a[xi / 4][xi % 4] = _mm512_maskz_loadu_ps(m, mt + static_cast<std::size_t>(xi) * T * OC + static_cast<std::size_t>(c));
                __m512 r[2][4];  // A^T M
                LAMDA_UNROLL_FULL
                for (int j = 0; j < 4; ++j) {
                    r[0][j] = _mm512_add_ps(_mm512_add_ps(a[0][j], a[1][j]), a[2][j]);
                    r[1][j] = _mm512_sub_ps(_mm512_sub_ps(a[1][j], a[2][j]), a[3][j]);
                }
                const __m512 b = _mm512_maskz_loadu_ps(m, bias_.data() + c);
                for (int i = 0; i < rows; ++i) {  // (A^T M) A
                    const __m512 y[2] = {_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2]), b),
                                         _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3]), b)};
                    float* o = out + (static_cast<std::size_t>(y0 + i) * static_cast<std::size_t>(geo_.out_w) +
                                      static_cast<std::size_t>(x0)) * OC + static_cast<std::size_t>(c);
                    for (int j = 0; j < cols; ++j)
                        _mm512_mask_storeu_ps(o + static_cast<std::size_t>(j) * OC, m,
                                              _mm512_min_ps(_mm512_max_ps(y[j], vlo), vhi));
                }
            }
        }
    }
    LAMDA_INTRINSICS_END
#endif

    WinogradGeometry geo_;
    float lo_, hi_;
    std::vector<float> bias_;
    std::vector<std::unique_ptr<const PointwiseF32>> gemm_;  // one per transformed point
};

}  // namespace lamda

#endif  // LAMDA_EXEC_WINO_AVX512_HPP
