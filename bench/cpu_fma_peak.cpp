// The CPU's fused multiply-add peak in float32, the ceiling for the training step's convolution kernels:
// twelve independent chains of FMAs per thread (enough to cover the FMA latency of every x86-64 core
// we have met), in 256-bit (AVX2) and, where the CPU has it, 512-bit (AVX-512F) registers, on 1 to N
// OpenMP threads. Built and run by bench/cpu-peak.mjs; prints one JSON line per (threads, width).
#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr int kChains = 12;

__attribute__((target("avx2,fma"))) float chains256(long rounds) {
  __m256 a[kChains];
  const __m256 b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < kChains; ++i) a[i] = _mm256_set1_ps(static_cast<float>(i));
  for (long r = 0; r < rounds; ++r)
    for (int i = 0; i < kChains; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  float sum = 0;
  for (int i = 0; i < kChains; ++i) sum += _mm256_cvtss_f32(a[i]);
  return sum;
}

__attribute__((target("avx512f"))) float chains512(long rounds) {
  __m512 a[kChains];
  const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  for (long r = 0; r < rounds; ++r)
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  float sum = 0;
  for (int i = 0; i < kChains; ++i) sum += _mm512_cvtss_f32(a[i]);
  return sum;
}

// GFLOP/s of `threads` threads each running `rounds` rounds of `lanes`-wide chains (2 flops a lane).
template <typename Chains>
double gflops(int threads, long rounds, int lanes, Chains chains) {
  omp_set_num_threads(threads);
  float sink = 0;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
  sink += chains(rounds);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (sink == 1.2345f) std::printf("#\n");  // keeps the chains' results live
  return static_cast<double>(threads) * rounds * kChains * lanes * 2 / seconds / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : omp_get_num_procs();
  const long rounds = 50000000;
  const bool avx512 = __builtin_cpu_supports("avx512f");
  for (int threads = 1; threads <= max_threads; ++threads) {
    // Best of three: a VM's neighbours can steal a run's cycles, never add to them.
    double best256 = 0, best512 = 0;
    for (int run = 0; run < 3; ++run) {
      const double g256 = gflops(threads, rounds, 8, chains256);
      best256 = g256 > best256 ? g256 : best256;
      if (avx512) {
        const double g512 = gflops(threads, rounds, 16, chains512);
        best512 = g512 > best512 ? g512 : best512;
      }
    }
    if (avx512)
      std::printf("{\"threads\": %d, \"avx2\": %.1f, \"avx512\": %.1f}\n", threads, best256, best512);
    else
      std::printf("{\"threads\": %d, \"avx2\": %.1f, \"avx512\": null}\n", threads, best256);
  }
  return 0;
}
