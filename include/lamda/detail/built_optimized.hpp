// lamda/detail/built_optimized.hpp: whether this translation unit was compiled with optimisation
// (-O1 and up). lamda's own kernels (exec/dw_avx512.hpp, exec/pw_avx512.hpp, exec/wino_avx512.hpp,
// exec/qc8_vnni.hpp) are slower than Debian's prebuilt XNNPACK when unoptimised (every accumulator in memory), so the
// executor picks them by default only in optimised builds. The value is fixed per translation unit: a program
// should compile every file that includes lamda alike.
#ifndef LAMDA_DETAIL_BUILT_OPTIMIZED_HPP
#define LAMDA_DETAIL_BUILT_OPTIMIZED_HPP

namespace lamda::detail {

#if defined(__OPTIMIZE__)
inline constexpr bool built_optimized = true;
#else
inline constexpr bool built_optimized = false;
#endif

}  // namespace lamda::detail

#endif  // LAMDA_DETAIL_BUILT_OPTIMIZED_HPP
