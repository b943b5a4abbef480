// lamda/exec/device.hpp: facts about the machine that runs the models, and its measured FMA peak.
// The peak (single thread, GFLOP/s) is the denominator of every efficiency figure lamda prints.
// Needs nothing but a C++17 compiler; the FMA kernels use GCC/Clang target attributes so that one
// binary picks the widest vector unit present at run time.
#ifndef LAMDA_EXEC_DEVICE_HPP
#define LAMDA_EXEC_DEVICE_HPP

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "../detail/json_write.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LAMDA_DEVICE_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define LAMDA_DEVICE_ARM64 1
#endif

#if defined(__linux__)
#include <sched.h>
#endif

namespace lamda {

// The f32 kernel families of XNNPACK that describe_device() names in DeviceInfo::xnnpack_isa
// (and profiles keep in their fingerprint).
namespace xnnpack_isa {
inline constexpr const char* avx512f = "avx512f";
inline constexpr const char* fma3 = "fma3";
inline constexpr const char* avx = "avx";
inline constexpr const char* sse2 = "sse2";
inline constexpr const char* neonfma = "neonfma";
inline constexpr const char* scalar = "scalar";
}  // namespace xnnpack_isa

// Channels the f32 kernels of an xnnpack_isa family work on at a time: 16 on x86 with AVX (GEMM
// tiles 5x16 and 7x16, depthwise 16 channels a pass), else 8 (NEON, SSE; "" unknown). A width past
// a multiple pays for the whole tile (docs/benchmarks.md: 24 outputs cost as much as 32).
inline int xnnpack_f32_channel_tile(const std::string& isa) {
    return isa == xnnpack_isa::avx512f || isa == xnnpack_isa::fma3 || isa == xnnpack_isa::avx ? 16 : 8;
}

struct DeviceInfo {
    std::string cpu_model;
    std::string architecture;           // x86_64, aarch64, ...
    std::vector<std::string> isa;       // vector and FMA features present
    std::string xnnpack_isa;            // the f32 kernel family XNNPACK dispatches to here
    int logical_cores = 0;              // cores this process may run on
    std::string fma_kernel;             // the ISA the peak was measured with
    double peak_gflops = 0;             // single thread, measured; 0 until measured
};

namespace device_detail {

inline std::string read_cpuinfo_field(const std::vector<std::string>& keys) {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
        for (const auto& wanted : keys) {
            if (key == wanted) {
                std::string value = line.substr(colon + 1);
                const auto first = value.find_first_not_of(" \t");
                return first == std::string::npos ? std::string() : value.substr(first);
            }
        }
    }
    return {};
}

// Each kernel runs `iterations` rounds over independent accumulators (enough to cover the FMA
// latency on every core we know) and returns the floating-point operations it performed; the
// accumulators feed `sink` so that the compiler cannot drop the work.
// Twelve named accumulators, updated in one statement each, so that both compilers keep them in
// registers; GCC is also told to optimise these few functions in builds that otherwise do not.
#if defined(__GNUC__) && !defined(__clang__)
#define LAMDA_OPTIMIZED __attribute__((optimize("O2")))
#else
#define LAMDA_OPTIMIZED
#endif
#define LAMDA_FMA_ROUND(FMA)                                                                   \
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);          \
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);          \
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c)

#if defined(LAMDA_DEVICE_X86)
__attribute__((target("avx512f"))) LAMDA_OPTIMIZED inline double fma_kernel_avx512(
    std::int64_t iterations, float& sink) {
    __m512 a0 = _mm512_set1_ps(0.50f), a1 = _mm512_set1_ps(0.51f), a2 = _mm512_set1_ps(0.52f),
           a3 = _mm512_set1_ps(0.53f), a4 = _mm512_set1_ps(0.54f), a5 = _mm512_set1_ps(0.55f),
           a6 = _mm512_set1_ps(0.56f), a7 = _mm512_set1_ps(0.57f), a8 = _mm512_set1_ps(0.58f),
           a9 = _mm512_set1_ps(0.59f), a10 = _mm512_set1_ps(0.60f), a11 = _mm512_set1_ps(0.61f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (std::int64_t n = 0; n < iterations; ++n) { LAMDA_FMA_ROUND(_mm512_fmadd_ps); }
    const __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                      _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
        _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    alignas(64) float lanes[16];  // (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized)
    _mm512_store_ps(lanes, s);
    for (float v : lanes) sink += v;
    return static_cast<double>(iterations) * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"))) LAMDA_OPTIMIZED inline double fma_kernel_avx2(
    std::int64_t iterations, float& sink) {
    __m256 a0 = _mm256_set1_ps(0.50f), a1 = _mm256_set1_ps(0.51f), a2 = _mm256_set1_ps(0.52f),
           a3 = _mm256_set1_ps(0.53f), a4 = _mm256_set1_ps(0.54f), a5 = _mm256_set1_ps(0.55f),
           a6 = _mm256_set1_ps(0.56f), a7 = _mm256_set1_ps(0.57f), a8 = _mm256_set1_ps(0.58f),
           a9 = _mm256_set1_ps(0.59f), a10 = _mm256_set1_ps(0.60f), a11 = _mm256_set1_ps(0.61f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (std::int64_t n = 0; n < iterations; ++n) { LAMDA_FMA_ROUND(_mm256_fmadd_ps); }
    const __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                      _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
        _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    for (float v : lanes) sink += v;
    return static_cast<double>(iterations) * 12 * 8 * 2;
}
#elif defined(LAMDA_DEVICE_ARM64)
// vfmaq_f32(c, a, m) = c + a * m; wrapped so the round macro's argument order applies.
inline float32x4_t neon_fma(float32x4_t a, float32x4_t m, float32x4_t c) { return vfmaq_f32(c, a, m); }

LAMDA_OPTIMIZED inline double fma_kernel_neon(std::int64_t iterations, float& sink) {
    float32x4_t a0 = vdupq_n_f32(0.50f), a1 = vdupq_n_f32(0.51f), a2 = vdupq_n_f32(0.52f),
                a3 = vdupq_n_f32(0.53f), a4 = vdupq_n_f32(0.54f), a5 = vdupq_n_f32(0.55f),
                a6 = vdupq_n_f32(0.56f), a7 = vdupq_n_f32(0.57f), a8 = vdupq_n_f32(0.58f),
                a9 = vdupq_n_f32(0.59f), a10 = vdupq_n_f32(0.60f), a11 = vdupq_n_f32(0.61f);
    const float32x4_t m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (std::int64_t n = 0; n < iterations; ++n) { LAMDA_FMA_ROUND(neon_fma); }
    const float32x4_t s = vaddq_f32(
        vaddq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)),
                  vaddq_f32(vaddq_f32(a4, a5), vaddq_f32(a6, a7))),
        vaddq_f32(vaddq_f32(a8, a9), vaddq_f32(a10, a11)));
    sink += vaddvq_f32(s);
    return static_cast<double>(iterations) * 12 * 4 * 2;
}
#endif

// Scalar fallback: still independent chains, so the compiler can at least pipeline them.
LAMDA_OPTIMIZED inline double fma_kernel_scalar(std::int64_t iterations, float& sink) {
    float a[8];
    for (int i = 0; i < 8; ++i) a[i] = 0.5f + 0.01f * static_cast<float>(i);
    for (std::int64_t n = 0; n < iterations; ++n)
        for (float& v : a) v = v * 0.999999f + 1e-7f;
    for (float v : a) sink += v;
    return static_cast<double>(iterations) * 8 * 2;
}

}  // namespace device_detail

// What this machine is, without measuring anything.
inline DeviceInfo describe_device() {
    DeviceInfo info;
    info.cpu_model = device_detail::read_cpuinfo_field({"model name", "Model", "Hardware", "cpu model"});
#if defined(LAMDA_DEVICE_X86)
    info.architecture = "x86_64";
    __builtin_cpu_init();
    const std::pair<const char*, bool> features[] = {
        {"sse2", __builtin_cpu_supports("sse2")},       {"sse4.1", __builtin_cpu_supports("sse4.1")},
        {"avx", __builtin_cpu_supports("avx")},         {"fma", __builtin_cpu_supports("fma")},
        {"avx2", __builtin_cpu_supports("avx2")},       {"avx512f", __builtin_cpu_supports("avx512f")},
        {"avx512bw", __builtin_cpu_supports("avx512bw")}, {"avx512vl", __builtin_cpu_supports("avx512vl")},
        {"avx512dq", __builtin_cpu_supports("avx512dq")}, {"avx512vnni", __builtin_cpu_supports("avx512vnni")}};
    for (const auto& [name, present] : features)
        if (present) info.isa.emplace_back(name);
    // XNNPACK's f32 dispatch (2022 snapshot): AVX-512F microkernels where present, else FMA3
    // (AVX2-era), else AVX, else SSE.
    if (__builtin_cpu_supports("avx512f")) info.xnnpack_isa = xnnpack_isa::avx512f;
    else if (__builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2")) info.xnnpack_isa = xnnpack_isa::fma3;
    else if (__builtin_cpu_supports("avx")) info.xnnpack_isa = xnnpack_isa::avx;
    else info.xnnpack_isa = xnnpack_isa::sse2;
#elif defined(LAMDA_DEVICE_ARM64)
    info.architecture = "aarch64";
    info.isa = {"neon", "fma"};  // both are mandatory on AArch64
    const std::string flags = device_detail::read_cpuinfo_field({"Features"});
    for (const char* extra : {"fphp", "asimdhp", "asimddp", "sve", "i8mm", "bf16"})
        if ((" " + flags + " ").find(std::string(" ") + extra + " ") != std::string::npos)
            info.isa.emplace_back(extra);
    info.xnnpack_isa = xnnpack_isa::neonfma;
#else
    info.architecture = "unknown";
    info.xnnpack_isa = xnnpack_isa::scalar;
#endif
    if (info.cpu_model.empty()) info.cpu_model = "unknown " + info.architecture + " CPU";
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) info.logical_cores = CPU_COUNT(&set);
#endif
    if (info.logical_cores <= 0)
        info.logical_cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return info;
}

// Measures the single-thread FMA peak in GFLOP/s with the widest vector unit present: the best
// of several short trials (the best, because interference only ever slows a trial down).
inline double measure_fma_peak_gflops(DeviceInfo& info, double seconds = 0.3) {
    using clock = std::chrono::steady_clock;
    double (*kernel)(std::int64_t, float&) = device_detail::fma_kernel_scalar;
    info.fma_kernel = "scalar";
#if defined(LAMDA_DEVICE_X86)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        kernel = device_detail::fma_kernel_avx512;
        info.fma_kernel = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        kernel = device_detail::fma_kernel_avx2;
        info.fma_kernel = "avx2+fma";
    }
#elif defined(LAMDA_DEVICE_ARM64)
    kernel = device_detail::fma_kernel_neon;
    info.fma_kernel = "neon";
#endif
    float sink = 0;
    // Calibrate the iteration count to ~1/10 of the budget per trial.
    std::int64_t iterations = 1000;
    for (;;) {
        const auto t0 = clock::now();
        kernel(iterations, sink);
        const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
        if (elapsed > seconds / 20 || iterations > (std::int64_t{1} << 40)) break;
        iterations *= 2;
    }
    double best = 0;
    const auto start = clock::now();
    do {
        const auto t0 = clock::now();
        const double flops = kernel(iterations, sink);
        const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
        if (elapsed > 0) best = std::max(best, flops / elapsed / 1e9);
    } while (std::chrono::duration<double>(clock::now() - start).count() < seconds);
    // The sink is consumed so that the kernels' results stay observable.
    if (sink == 12345.678f) best += 1e-12;
    info.peak_gflops = best;
    return best;
}

// The JSON object `lamda device --json` prints.
inline std::string device_json(const DeviceInfo& info) {
    JsonWriter json;
    json.begin_object().field("cpu_model", info.cpu_model).field("architecture", info.architecture).key("isa").begin_array();
    for (const auto& feature : info.isa) json.value(feature);
    json.end_array()
        .field("xnnpack_isa", info.xnnpack_isa)
        .field("logical_cores", info.logical_cores)
        .field("fma_kernel", info.fma_kernel)
        .field("peak_gflops", info.peak_gflops)
        .field("peak_threads", 1)
        .end_object();
    return json.str();
}

}  // namespace lamda

#endif  // LAMDA_EXEC_DEVICE_HPP
