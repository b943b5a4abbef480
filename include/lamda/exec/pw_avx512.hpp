// lamda/exec/pw_avx512.hpp: lamda's own fp32 kernel for pointwise convolutions (1x1, stride 1,
// no padding, one group) on x86-64 CPUs with AVX-512F.
//
//   if (lamda::pw_avx512::available()) {
//       lamda::PointwiseF32 pw(in_channels, out_channels, weights /*out x in*/, bias /*or null*/, lo, hi);
//       pw.run(input, output, pixels);   // NHWC fp32: pixels x in_channels -> pixels x out_channels
//   }
//
// Why it exists: a pointwise convolution is the GEMM out[pixels x N] = in[pixels x K] W[K x N].
// Debian's XNNPACK (2022-02) runs it on a tile of 7 pixels x 16 output channels, one broadcast
// load per pixel for one FMA: on a CPU that issues two 512-bit FMAs per cycle (Zen 5 here) that
// tile is bound by its loads (8 per 7 FMAs), and an output count past a multiple of 16 (24, 40)
// pays for a whole extra tile. On mobilenet_v2 these layers were 3.8 of lamda's 5.0 ms and 0.3 ms
// behind ONNX Runtime's (docs/benchmarks.md, "lamda's pointwise kernel"). This kernel's tiles are
// up to 64 output channels wide (4 registers) by 5 to 12 pixels, so one broadcast feeds up to 4
// FMAs; the output channels go in panels of 64 and the last panel takes only the registers it
// needs (24 channels: 2, the second masked).
//
// Arithmetic: y[p][n] = clamp(bias[n] + sum over k in order of x[p][k] * w[n][k], lo, hi), in
// fp32 FMAs (tests/exec/test_pw_avx512.cpp checks it against a plain loop in double, and inside
// the executor against XNNPACK and the reference executor). The executor (exec/xnnpack.hpp) uses
// it where it is the faster (preferred) when the CPU has AVX-512F, in optimised builds
// (used_by_default), and XNNPACK's convolution everywhere else; the latency profiler times what
// the executor runs.
#ifndef LAMDA_EXEC_PW_AVX512_HPP
#define LAMDA_EXEC_PW_AVX512_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "../detail/built_optimized.hpp"
#include "../detail/cpu_x86.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LAMDA_PW_AVX512_X86 1
#include <immintrin.h>
#endif

namespace lamda {

namespace pw_avx512 {

// Whether this CPU runs the kernel, and whether the executor does by default
// (XnnOptions::pointwise_avx512): only in optimised builds, where it is the faster
// (detail/built_optimized.hpp). The profile's fingerprint records it.
inline bool available() noexcept { return detail::cpu_has_avx512f(); }
inline bool used_by_default() noexcept { return detail::built_optimized && available(); }

// Whether a pointwise convolution runs faster on this kernel than on XNNPACK's, from timing both
// on one machine, interleaved (docs/benchmarks.md, "lamda's pointwise kernel"): 0.77-0.90x
// XNNPACK's time from 24 output channels up, on 7x7 to 112x112 maps and 16 to 960 inputs. With
// 16 or fewer outputs both tiles are one register wide and bound by the same broadcasts
// (1.00x), so the executor keeps XNNPACK's.
inline bool preferred(int out_channels) noexcept { return out_channels > 16; }

// Whether the executor runs a convolution of this shape on the kernel (on a CPU where it is used):
// a filter of 1x1 at stride 1 without padding, one group, and preferred. The latency features ask
// the same (latency/features.hpp: runs_on_own_pointwise).
inline bool takes(int kh, int kw, int sh, int sw, bool padded, int groups, int out_channels) noexcept {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && !padded && groups == 1 && preferred(out_channels);
}

inline constexpr int kLanes = 16;          // output channels per register
inline constexpr int kMaxRegisters = 4;    // registers per panel: 64 output channels
inline constexpr int kChunkPixels = 60;    // pixels per unit of work: a multiple of every tile's
// Pixels per tile for a panel of 1 to 4 registers (index - 1): as many as keep the accumulators
// and the panel's weights within the 32 registers.
inline constexpr std::array<int, kMaxRegisters> kTilePixels{12, 6, 6, 5};

#if defined(LAMDA_PW_AVX512_X86)
LAMDA_INTRINSICS_BEGIN

// MR pixels (`rows` of them real: the rest repeat the last and are not stored) by NV registers
// of output channels. `w`: the panel, NV x 16 biases then K rows of NV x 16 weights; `in`: the
// first pixel's K inputs; `out`: its first output in this panel, N floats per pixel; `last`: the
// live channels of the last register.
template <int MR, int NV>
__attribute__((target("avx512f"))) void tile(const float* in, std::ptrdiff_t K, const float* w, float* out,
                                             std::ptrdiff_t N, int rows, unsigned last, float lo, float hi) {
    __m512 acc[MR][NV];
    LAMDA_UNROLL_FULL
    for (int v = 0; v < NV; ++v) {
        const __m512 b = _mm512_loadu_ps(w + v * kLanes);
        LAMDA_UNROLL_FULL
        for (int r = 0; r < MR; ++r) acc[r][v] = b;
    }
    w += NV * kLanes;
    const float* x[MR];
    LAMDA_UNROLL_FULL
    for (int r = 0; r < MR; ++r) x[r] = in + std::min(r, rows - 1) * K;
    for (std::ptrdiff_t k = 0; k < K; ++k, w += NV * kLanes) {
        __m512 wv[NV];
        LAMDA_UNROLL_FULL
        for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(w + v * kLanes);
        LAMDA_UNROLL_FULL
        for (int r = 0; r < MR; ++r) {
            const __m512 xv = _mm512_set1_ps(x[r][k]);
            LAMDA_UNROLL_FULL
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(xv, wv[v], acc[r][v]);
        }
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    LAMDA_UNROLL_FULL
    for (int r = 0; r < MR; ++r) {
        if (r >= rows) break;
        LAMDA_UNROLL_FULL
        for (int v = 0; v < NV; ++v)
            _mm512_mask_storeu_ps(out + r * N + v * kLanes, static_cast<__mmask16>(v + 1 == NV ? last : 0xFFFFu),
                                  _mm512_min_ps(_mm512_max_ps(acc[r][v], vlo), vhi));
    }
}

LAMDA_INTRINSICS_END

using TileFn = void (*)(const float*, std::ptrdiff_t, const float*, float*, std::ptrdiff_t, int, unsigned, float,
                        float);
inline constexpr std::array<TileFn, kMaxRegisters> kTiles{
    &tile<kTilePixels[0], 1>, &tile<kTilePixels[1], 2>, &tile<kTilePixels[2], 3>, &tile<kTilePixels[3], 4>};
#endif  // LAMDA_PW_AVX512_X86

}  // namespace pw_avx512

class PointwiseF32 {
public:
    // `weights`: out_channels x in_channels (OIHW with a 1x1 filter: the DSL's and XNNPACK's
    // order); `bias`: out_channels values or null; outputs clamped to [lo, hi] (the fused
    // activation).
    PointwiseF32(int in_channels, int out_channels, const float* weights, const float* bias, float lo, float hi)
        : k_(in_channels), n_(out_channels), lo_(lo), hi_(hi) {
        using pw_avx512::kLanes;
        if (in_channels <= 0 || out_channels <= 0 || !weights)
            throw std::invalid_argument("PointwiseF32: bad shape or no weights");
        const auto K = static_cast<std::size_t>(in_channels);
        std::size_t offset = 0;
        for (int n0 = 0; n0 < out_channels;) {
            const int cols = std::min(pw_avx512::kMaxRegisters * kLanes, out_channels - n0);
            const int registers = (cols + kLanes - 1) / kLanes;
            panels_.push_back(Panel{n0, registers, cols, offset});
            offset += (K + 1) * static_cast<std::size_t>(registers * kLanes);
            n0 += cols;
        }
        // Per panel: its biases, then K rows of its columns, zero past the last channel.
        packed_.assign(offset, 0.0f);
        for (const Panel& p : panels_) {
            const auto width = static_cast<std::size_t>(p.registers * kLanes);
            for (std::size_t j = 0; j < static_cast<std::size_t>(p.cols); ++j) {
                const std::size_t n = static_cast<std::size_t>(p.n0) + j;
                if (bias) packed_[p.offset + j] = bias[n];
                for (std::size_t k = 0; k < K; ++k) packed_[p.offset + (k + 1) * width + j] = weights[n * K + k];
            }
        }
    }

    int in_channels() const noexcept { return k_; }
    int out_channels() const noexcept { return n_; }
    // Units of work: panels of up to 64 output channels, each over chunks of kChunkPixels pixels.
    int panels() const noexcept { return static_cast<int>(panels_.size()); }
    static std::size_t chunks(std::size_t pixels) noexcept {
        return (pixels + pw_avx512::kChunkPixels - 1) / pw_avx512::kChunkPixels;
    }

    // Every output of `pixels` NHWC pixels: `in` pixels x in_channels, `out` pixels x out_channels.
    void run(const float* in, float* out, std::size_t pixels) const {
        for (int p = 0; p < panels(); ++p)
            for (std::size_t c = 0; c < chunks(pixels); ++c) run_unit(in, out, pixels, p, c);
    }

    // One panel's output channels for one chunk of pixels. Units are independent: threads may
    // run different ones at once.
    void run_unit(const float* in, float* out, std::size_t pixels, int panel, std::size_t chunk) const {
#if defined(LAMDA_PW_AVX512_X86)
        using pw_avx512::kLanes;
        const Panel& p = panels_[static_cast<std::size_t>(panel)];
        const int tile_pixels = pw_avx512::kTilePixels[static_cast<std::size_t>(p.registers - 1)];
        const pw_avx512::TileFn fn = pw_avx512::kTiles[static_cast<std::size_t>(p.registers - 1)];
        const int tail = p.cols - (p.registers - 1) * kLanes;
        const unsigned last = tail >= kLanes ? 0xFFFFu : (1u << tail) - 1u;
        const std::size_t begin = chunk * pw_avx512::kChunkPixels;
        const std::size_t end = std::min(pixels, begin + pw_avx512::kChunkPixels);
        const auto K = static_cast<std::ptrdiff_t>(k_), N = static_cast<std::ptrdiff_t>(n_);
        for (std::size_t m = begin; m < end; m += static_cast<std::size_t>(tile_pixels))
            fn(in + static_cast<std::ptrdiff_t>(m) * K, K, packed_.data() + p.offset,
               out + static_cast<std::ptrdiff_t>(m) * N + p.n0, N,
               static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(tile_pixels), end - m)), last, lo_, hi_);
#else
        (void)in;
        (void)out;
        (void)pixels;
        (void)panel;
        (void)chunk;
        throw std::logic_error("PointwiseF32: built without AVX-512 support");
#endif
    }

private:
    struct Panel {
        int n0;             // first output channel
        int registers;      // 1 to kMaxRegisters
        int cols;           // output channels in it
        std::size_t offset; // into packed_
    };
    int k_, n_;
    float lo_, hi_;
    std::vector<Panel> panels_;
    std::vector<float> packed_;
};

}  // namespace lamda

#endif  // LAMDA_EXEC_PW_AVX512_HPP
