// lamda/detail/cpu_x86.hpp: what lamda's own x86-64 kernels (exec/dw_avx512.hpp,
// exec/pw_avx512.hpp, exec/wino_avx512.hpp, exec/qc8_vnni.hpp) share: which vector extensions this CPU (and OS) runs,
// asked once (false on other architectures), and how their intrinsics are compiled.
#ifndef LAMDA_DETAIL_CPU_X86_HPP
#define LAMDA_DETAIL_CPU_X86_HPP

namespace lamda::detail {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
inline bool cpu_has_avx512f() noexcept {
    static const bool yes = __builtin_cpu_supports("avx512f");
    return yes;
}
inline bool cpu_has_avx512_vnni() noexcept {
    static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vnni");
    return yes;
}
#else
inline bool cpu_has_avx512f() noexcept { return false; }
inline bool cpu_has_avx512_vnni() noexcept { return false; }
#endif

}  // namespace lamda::detail

// Loops over a tile's registers are unrolled whole, so that its accumulators stay in registers.
#if defined(__clang__)
#define LAMDA_UNROLL_FULL _Pragma("clang loop unroll(full)")
#else
#define LAMDA_UNROLL_FULL _Pragma("GCC unroll 64")
#endif

// Around a kernel's intrinsics: GCC 12's AVX-512 intrinsics initialise their "undefined" operand
// from itself (GCC bug 105593), which -Werror would refuse.
#if defined(__GNUC__) && !defined(__clang__)
#define LAMDA_INTRINSICS_BEGIN                                 \
    _Pragma("GCC diagnostic push")                             \
    _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")     \
    _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define LAMDA_INTRINSICS_END _Pragma("GCC diagnostic pop")
#else
#define LAMDA_INTRINSICS_BEGIN
#define LAMDA_INTRINSICS_END
#endif

#endif  // LAMDA_DETAIL_CPU_X86_HPP
