#pragma once

// Loops that vectorise get AVX-512 and AVX2 copies beside the baseline one, the best the CPU runs chosen
// when the library loads. Neither target enables FMA (and the files that use this keep floating-point
// contraction off): the same operations on more lanes, so the same bits on every x86-64 CPU.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLAMP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLAMP_VECTOR_CLONES
#endif
