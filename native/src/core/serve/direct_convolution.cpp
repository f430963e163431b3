#include "serve/direct_convolution.h"

#include <cstdlib>
#include <string>

// Only GCC on x86-64 compiles the kernels (its target pragmas give one translation unit AVX-512 and
// AVX2 code beside baseline code); elsewhere instruction_set() is null and callers use LibTorch.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLAMP_DIRECT_KERNELS 1
#else
#define CLAMP_DIRECT_KERNELS 0
#endif

namespace clamp::direct {

#if CLAMP_DIRECT_KERNELS
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,fma")
namespace avx512 {
#define CLAMP_VECTOR_FLOATS 16
#define CLAMP_VECTOR_REGISTERS 32
#include "serve/direct_convolution_kernels.inc"
#undef CLAMP_VECTOR_FLOATS
#undef CLAMP_VECTOR_REGISTERS
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define CLAMP_VECTOR_FLOATS 8
#define CLAMP_VECTOR_REGISTERS 16
#include "serve/direct_convolution_kernels.inc"
#undef CLAMP_VECTOR_FLOATS
#undef CLAMP_VECTOR_REGISTERS
}  // namespace avx2
#pragma GCC pop_options
#endif

namespace {

enum class Kernels { none, avx2, avx512 };

// CLAMP_CPU_KERNELS=avx2 takes the AVX2 kernels on an AVX-512 CPU (how the tests cover both), and
// CLAMP_CPU_KERNELS=libtorch none at all (LibTorch's kernels serve; for comparing them).
Kernels detect() {
#if CLAMP_DIRECT_KERNELS
  const char* wanted = std::getenv("CLAMP_CPU_KERNELS");
  const std::string choice = wanted == nullptr ? "" : wanted;
  if (choice == "libtorch") return Kernels::none;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (choice != "avx2" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return Kernels::avx512;
  if (avx2) return Kernels::avx2;
#endif
  return Kernels::none;
}

Kernels kernels() {
  static const Kernels found = detect();
  return found;
}

}  // namespace

const char* instruction_set() {
  switch (kernels()) {
    case Kernels::avx512:
      return "avx512";
    case Kernels::avx2:
      return "avx2";
    case Kernels::none:
      break;
  }
  return nullptr;
}

void convolve(const Convolution& conv, const Activation& in, const Activation& out, const Activation* residual, bool relu,
              int64_t row_begin, int64_t row_end) {
#if CLAMP_DIRECT_KERNELS
  switch (kernels()) {
    case Kernels::avx512:
      return avx512::rows(conv, in, out, residual, relu, row_begin, row_end);
    case Kernels::avx2:
      return avx2::rows(conv, in, out, residual, relu, row_begin, row_end);
    case Kernels::none:
      break;
  }
#else
  (void)conv, (void)in, (void)out, (void)residual, (void)relu, (void)row_begin, (void)row_end;
#endif
}

void zero_border(const Activation& buffer) {
  if (buffer.pad == 0) return;
  const int64_t row_floats = buffer.row_stride(), side_floats = buffer.pad * buffer.channels;
  for (int64_t n = 0; n < buffer.batch; ++n) {
    float* image = buffer.data + n * buffer.image_stride();
    const auto clear = [](float* p, int64_t count) {
      for (int64_t i = 0; i < count; ++i) p[i] = 0;
    };
    clear(image, buffer.pad * row_floats);                                              // top rows
    clear(image + (buffer.pad + buffer.height) * row_floats, buffer.pad * row_floats);  // bottom rows
    for (int64_t y = 0; y < buffer.height; ++y) {
      float* row = image + (buffer.pad + y) * row_floats;
      clear(row, side_floats);                             // left columns
      clear(row + row_floats - side_floats, side_floats);  // right columns
    }
  }
}

void max_pool_3x3_stride2(const Activation& in, const Activation& out) {
  const int64_t channels = in.channels, offset = in.pad - 1;  // the window's padding of 1, inside in's border
  for (int64_t n = 0; n < out.batch; ++n) {
    for (int64_t y = 0; y < out.height; ++y) {
      float* dst = out.row(n, y);
      for (int64_t x = 0; x < out.width; ++x, dst += channels) {
        const float* window = in.data + n * in.image_stride() + (2 * y + offset) * in.row_stride() + (2 * x + offset) * channels;
        for (int64_t c = 0; c < channels; ++c) dst[c] = 0;  // the inputs are >= 0
        for (int64_t dy = 0; dy < 3; ++dy) {
          for (int64_t dx = 0; dx < 3; ++dx) {
            const float* src = window + dy * in.row_stride() + dx * channels;
            for (int64_t c = 0; c < channels; ++c) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
          }
        }
      }
    }
  }
}

void mean_pool(const Activation& in, int64_t channels, float* out) {
  const double scale = 1.0 / static_cast<double>(in.height * in.width);
  for (int64_t n = 0; n < in.batch; ++n) {
    float* dst = out + n * channels;
    for (int64_t c = 0; c < channels; ++c) dst[c] = 0;
    for (int64_t y = 0; y < in.height; ++y) {
      const float* src = in.row(n, y);
      for (int64_t x = 0; x < in.width; ++x, src += in.channels) {
        for (int64_t c = 0; c < channels; ++c) dst[c] += src[c];
      }
    }
    for (int64_t c = 0; c < channels; ++c) dst[c] = static_cast<float>(dst[c] * scale);
  }
}

}  // namespace clamp::direct
