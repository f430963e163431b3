#pragma once

// The models' hand-written CPU kernels (models/conv3x3.h, models/conv3x3_winograd.h) are AVX2 + FMA code
// behind per-function target attributes: CLAMP_MODELS_AVX2 says this build can compile them (x86-64,
// GCC or Clang), cpu_has_avx2_fma() that the CPU running it can execute them.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CLAMP_MODELS_AVX2 1
#endif

namespace clamp {

inline bool cpu_has_avx2_fma() {
#if defined(CLAMP_MODELS_AVX2)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace clamp
