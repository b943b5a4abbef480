// lamda/exec/qc8_vnni.hpp: lamda's own int8 kernel for 1x1, stride-1, ungrouped convolutions
// (pointwise convolutions: most of a MobileNet's multiply-adds) on x86-64 CPUs with AVX-512 VNNI.
//
//   if (lamda::qc8_vnni::available()) {
//       lamda::Qc8Pointwise conv(ic, oc, input_zp, weights /*oc x ic*/, bias, scales, output_zp,
//                                qmin, qmax);
//       conv.run(input, output, pixels);   // NHWC int8, `pixels` = h * w
//   }
//
// Why it exists: Debian's XNNPACK (2022-02) has no VNNI kernels on x86 (they came in 2023); its
// int8 GEMMs widen to int16 (vpmaddwd), about twice fp32's multiply-adds per instruction, which
// left mobilenet_v2 at 0.85x its fp32 time in int8 (docs/int8.md). vpdpbusd does four times
// fp32's. The executor (exec/xnnpack.hpp) uses this kernel where it applies and the CPU has VNNI
// (in optimised builds: used_by_default), and XNNPACK's qc8 convolution everywhere else.
//
// Arithmetic: exactly core/quant.hpp's qc8 "fp32" requantization, the one XNNPACK and the integer
// reference compute (tests/exec/test_qc8_vnni.cpp checks it value for value):
//   acc[c] = bias[c] + sum_k (x[k] - x_zp) * w[c][k]        (int32, wrapping as XNNPACK's does)
//   y[c]   = clamp(rne((float)acc[c] * scale[c]) + y_zp, qmin, qmax)
// vpdpbusd multiplies unsigned by signed bytes, so x is stored as x + 128 (a byte's top bit
// flipped) and the bias absorbs the difference: bias'[c] = bias[c] - (x_zp + 128) * sum_k w[c][k].
//
// Layout: weights packed per block of 16 output channels and 4 input channels (one zmm register:
// 16 lanes x 4 bytes), blocks of up to 64 channels swept over tiles of 6 to 16 pixels (about 24
// accumulators; more pixels for fewer channels). Channels past oc and inputs past ic are zero weights; the store is masked.
#ifndef LAMDA_EXEC_QC8_VNNI_HPP
#define LAMDA_EXEC_QC8_VNNI_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "../detail/built_optimized.hpp"
#include "../detail/cpu_x86.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LAMDA_QC8_VNNI_X86 1
#include <immintrin.h>
#endif

namespace lamda {

namespace qc8_vnni {

// Whether this CPU (and OS) runs AVX-512F, BW and VNNI: false on other architectures.
inline bool available() noexcept { return detail::cpu_has_avx512_vnni(); }

// Whether this code was compiled with optimisation (-O1 and up). Unoptimised (a Debug build, -O0)
// the kernel keeps every accumulator in memory: a 56x56, 64->64 conv takes 0.57 ms (g++) to 2.3 ms
// (clang), 12 ms under ASan, against 0.04 ms optimised, slower than Debian's prebuilt XNNPACK.
// So the executor picks it by default only in optimised builds (detail/built_optimized.hpp).
inline constexpr bool built_optimized = detail::built_optimized;

// Whether the executor runs pointwise int8 convolutions on this kernel by default
// (XnnOptions::int8_vnni): the CPU has VNNI and the kernel was compiled to be fast. The latency
// profiler asks the same question, so its model describes what the executor runs.
inline bool used_by_default() noexcept { return built_optimized && available(); }

inline constexpr int kLanes = 16;       // output channels per register
inline constexpr int kMaxBlocks = 4;    // registers of output channels per sweep (64 channels)
inline constexpr int kMaxRows = 16;     // pixels per tile, at most (rows_for)
inline constexpr std::size_t kTilePixels = 96;  // a multiple of every tile: split ranges there

#if defined(LAMDA_QC8_VNNI_X86)
LAMDA_INTRINSICS_BEGIN
// One tile: ROWS pixels x BLOCKS*16 output channels, all k4 groups of 4 input channels.
template <int ROWS, int BLOCKS>
__attribute__((target("avx512f,avx512vnni"))) inline void tile(
    const std::uint8_t* x, std::size_t x_stride, const std::int32_t* w, std::size_t k4,
    const std::int32_t* bias, const float* scale, std::int8_t* y, std::size_t y_stride, int valid,
    float lo, float hi, std::int32_t zero_point) {
    __m512i acc[static_cast<std::size_t>(ROWS)][static_cast<std::size_t>(BLOCKS)];
    LAMDA_UNROLL_FULL
    for (int b = 0; b < BLOCKS; ++b) {
        const __m512i vb = _mm512_loadu_si512(bias + b * kLanes);
        LAMDA_UNROLL_FULL
        for (int r = 0; r < ROWS; ++r) acc[r][b] = vb;
    }
    for (std::size_t k = 0; k < k4; ++k) {
        __m512i vw[static_cast<std::size_t>(BLOCKS)];
        LAMDA_UNROLL_FULL
        for (int b = 0; b < BLOCKS; ++b)
            vw[b] = _mm512_loadu_si512(w + (k * BLOCKS + static_cast<std::size_t>(b)) * kLanes);
        LAMDA_UNROLL_FULL
        for (int r = 0; r < ROWS; ++r) {
            std::int32_t four;
            std::memcpy(&four, x + static_cast<std::size_t>(r) * x_stride + 4 * k, sizeof four);
            const __m512i vx = _mm512_set1_epi32(four);
            LAMDA_UNROLL_FULL
            for (int b = 0; b < BLOCKS; ++b) {
#if defined(__clang__)
                acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], vx, vw[b]);
#else
                // GCC 12 copies every accumulator twice per step around the intrinsic (its
                // register allocator does not keep them in place): half the speed of clang.
                __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[r][b]) : "v"(vx), "v"(vw[b]));
#endif
            }
        }
    }
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512i vzp = _mm512_set1_epi32(zero_point);
    LAMDA_UNROLL_FULL
    for (int b = 0; b < BLOCKS; ++b) {
        const __m512 vs = _mm512_loadu_ps(scale + b * kLanes);
        const int left = valid - b * kLanes;  // > 0: the sweep never holds an empty register
        const __mmask16 mask =
            left >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
        LAMDA_UNROLL_FULL
        for (int r = 0; r < ROWS; ++r) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][b]), vs);
            v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);  // clamped first: the conversion stays in range
            const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);  // round to nearest even
            _mm512_mask_cvtepi32_storeu_epi8(y + static_cast<std::size_t>(r) * y_stride + b * kLanes, mask, q);
        }
    }
}

// int8 rows of `ic` bytes to vpdpbusd's unsigned bytes (the top bit flipped), each padded to
// `stride` bytes with 0x80 (a zero input): 64 bytes at a time, masked at the ends.
__attribute__((target("avx512f,avx512bw"))) inline void flip_rows(const std::int8_t* src, std::size_t ic,
                                                                 std::size_t rows, std::size_t stride,
                                                                 std::uint8_t* dst) {
    const __m512i top = _mm512_set1_epi8(static_cast<char>(0x80));
    const auto mask_of = [](std::size_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; };
    if (stride == ic) {  // one run of bytes
        ic *= rows;
        stride = ic;
        rows = 1;
    }
    for (std::size_t r = 0; r < rows; ++r, src += ic, dst += stride)
        for (std::size_t c = 0; c < stride; c += 64) {
            const __mmask64 in = c < ic ? mask_of(ic - c) : __mmask64{0};
            const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(in, src + c), top);
            _mm512_mask_storeu_epi8(dst + c, mask_of(stride - c), v);
        }
}

LAMDA_INTRINSICS_END

using TileFn = void (*)(const std::uint8_t*, std::size_t, const std::int32_t*, std::size_t, const std::int32_t*,
                        const float*, std::int8_t*, std::size_t, int, float, float, std::int32_t);

// Pixels per tile for a sweep of `blocks` registers: about 24 accumulators, more pixels when
// there are few output channels (each broadcast pixel then feeds fewer vpdpbusd).
inline constexpr int rows_for(int blocks) { return blocks == 1 ? 16 : blocks == 2 ? 12 : blocks == 3 ? 8 : 6; }

inline TileFn tile_for(int blocks) {
    switch (blocks) {
    case 1: return &tile<rows_for(1), 1>;
    case 2: return &tile<rows_for(2), 2>;
    case 3: return &tile<rows_for(3), 3>;
    default: return &tile<rows_for(4), 4>;
    }
}
#endif

}  // namespace qc8_vnni

// A pointwise int8 convolution, weights packed at construction. run() and run_range() may be
// called from several threads at once on disjoint pixel ranges (after prepare_input).
class Qc8Pointwise {
public:
    // weights: oc rows of ic int8 values (OHWI of a 1x1 kernel); bias: oc int32 values; scales:
    // oc requantization scales (input_scale * weight_scale[c] / output_scale, conv_requant_scale).
    // Throws std::invalid_argument when the CPU has no VNNI or a size is 0.
    Qc8Pointwise(std::size_t ic, std::size_t oc, std::int32_t input_zero_point, const std::int8_t* weights,
                 const std::int32_t* bias, const float* scales, std::int32_t output_zero_point, std::int32_t qmin,
                 std::int32_t qmax)
        : ic_(ic), oc_(oc), k4_((ic + 3) / 4), lo_(static_cast<float>(qmin - output_zero_point)),
          hi_(static_cast<float>(qmax - output_zero_point)), zero_point_(output_zero_point) {
        if (!qc8_vnni::available()) throw std::invalid_argument("Qc8Pointwise: this CPU has no AVX-512 VNNI");
        if (ic == 0 || oc == 0) throw std::invalid_argument("Qc8Pointwise: no channels");
        const std::size_t lanes = qc8_vnni::kLanes;
        const std::size_t padded = (oc + lanes - 1) / lanes * lanes;
        bias_.assign(padded, 0);
        scale_.assign(padded, 0.0f);
        for (std::size_t c = 0; c < oc; ++c) {
            std::int64_t sum = 0;
            for (std::size_t k = 0; k < ic; ++k) sum += weights[c * ic + k];
            // Wraps modulo 2^32 like XNNPACK's int32 arithmetic (the sum of a row fits easily).
            const std::uint32_t adjusted = static_cast<std::uint32_t>(bias[c]) -
                                           static_cast<std::uint32_t>(static_cast<std::int64_t>(input_zero_point + 128) * sum);
            bias_[c] = static_cast<std::int32_t>(adjusted);
            scale_[c] = scales[c];
        }
        // Sweeps of up to kMaxBlocks registers; inside one: [k4][block][lane][4 bytes].
        for (std::size_t c0 = 0; c0 < padded; c0 += lanes * qc8_vnni::kMaxBlocks) {
            const std::size_t blocks = std::min<std::size_t>(qc8_vnni::kMaxBlocks, (padded - c0) / lanes);
            sweeps_.push_back({c0, static_cast<int>(blocks), packed_.size()});
            packed_.resize(packed_.size() + k4_ * blocks * lanes, 0);
            std::int32_t* dst = packed_.data() + sweeps_.back().offset;
            for (std::size_t k = 0; k < k4_; ++k)
                for (std::size_t b = 0; b < blocks; ++b)
                    for (std::size_t lane = 0; lane < lanes; ++lane) {
                        const std::size_t c = c0 + b * lanes + lane;
                        std::uint8_t four[4] = {0, 0, 0, 0};
                        for (std::size_t j = 0; j < 4; ++j)
                            if (c < oc && 4 * k + j < ic)
                                four[j] = static_cast<std::uint8_t>(weights[c * ic + 4 * k + j]);
                        std::memcpy(&dst[(k * blocks + b) * lanes + lane], four, sizeof four);
                    }
        }
    }

    std::size_t input_channels() const noexcept { return ic_; }
    std::size_t output_channels() const noexcept { return oc_; }
    // Bytes per pixel of the prepared input (ic rounded up to 4).
    std::size_t prepared_stride() const noexcept { return k4_ * 4; }

    // Bytes of the prepared input of `pixels` pixels (with a tile's rows of padding).
    std::size_t prepared_bytes(std::size_t pixels) const noexcept {
        return (pixels + static_cast<std::size_t>(qc8_vnni::kMaxRows)) * prepared_stride();
    }

    // x (pixels x ic int8) -> prepared (prepared_bytes(pixels): pixels x prepared_stride() bytes,
    // top bits flipped, then a tile of zero rows).
    void prepare_input(const std::int8_t* x, std::size_t pixels, std::uint8_t* prepared) const noexcept {
        const std::size_t stride = prepared_stride();
#if defined(LAMDA_QC8_VNNI_X86)
        qc8_vnni::flip_rows(x, ic_, pixels, stride, prepared);
#else
        (void)x;
#endif
        std::memset(prepared + pixels * stride, 0x80, static_cast<std::size_t>(qc8_vnni::kMaxRows) * stride);
    }

    // Output pixels [begin, end) from a prepared input, kTilePixels at a time: each such chunk
    // of the input (at most 96 x ic bytes) stays in cache while every sweep of weights passes
    // over it (sweeps outside, pixels inside, re-read an input larger than L2 once per sweep).
    void run_range(const std::uint8_t* prepared, std::int8_t* y, std::size_t begin, std::size_t end) const {
#if defined(LAMDA_QC8_VNNI_X86)
        const std::size_t stride = prepared_stride();
        for (std::size_t chunk = begin; chunk < end; chunk += qc8_vnni::kTilePixels) {
            const std::size_t chunk_end = std::min(end, chunk + qc8_vnni::kTilePixels);
            for (const Sweep& s : sweeps_) {
                const int valid = static_cast<int>(
                    std::min<std::size_t>(oc_ - s.first, static_cast<std::size_t>(s.blocks * qc8_vnni::kLanes)));
                const auto rows = static_cast<std::size_t>(qc8_vnni::rows_for(s.blocks));
                const qc8_vnni::TileFn tile = qc8_vnni::tile_for(s.blocks);
                std::size_t p = chunk;
                for (; p + rows <= chunk_end; p += rows)
                    tile(prepared + p * stride, stride, packed_.data() + s.offset, k4_, bias_.data() + s.first,
                         scale_.data() + s.first, y + p * oc_ + s.first, oc_, valid, lo_, hi_, zero_point_);
                if (p < chunk_end) {
                    // The last pixels: a whole tile (prepare_input padded the rows), stored aside.
                    std::int8_t part[static_cast<std::size_t>(qc8_vnni::kMaxRows * qc8_vnni::kMaxBlocks *
                                                              qc8_vnni::kLanes)];
                    const auto width = static_cast<std::size_t>(s.blocks * qc8_vnni::kLanes);
                    tile(prepared + p * stride, stride, packed_.data() + s.offset, k4_, bias_.data() + s.first,
                         scale_.data() + s.first, part, width, valid, lo_, hi_, zero_point_);
                    for (std::size_t r = 0; p + r < chunk_end; ++r)
                        std::memcpy(y + (p + r) * oc_ + s.first, part + r * width, static_cast<std::size_t>(valid));
                }
            }
        }
#else
        (void)prepared, (void)y, (void)begin, (void)end;
#endif
    }

    // The whole convolution on one thread; `scratch` is resized to the prepared input.
    void run(const std::int8_t* x, std::int8_t* y, std::size_t pixels, std::vector<std::uint8_t>& scratch) const {
        scratch.resize(prepared_bytes(pixels));
        prepare_input(x, pixels, scratch.data());
        run_range(scratch.data(), y, 0, pixels);
    }

private:
    struct Sweep {
        std::size_t first;   // first output channel
        int blocks;          // registers of 16 channels
        std::size_t offset;  // into packed_
    };
    std::size_t ic_, oc_, k4_;
    float lo_, hi_;
    std::int32_t zero_point_;
    std::vector<std::int32_t> bias_;
    std::vector<float> scale_;
    std::vector<std::int32_t> packed_;
    std::vector<Sweep> sweeps_;
};

}  // namespace lamda

#endif  // LAMDA_EXEC_QC8_VNNI_HPP
