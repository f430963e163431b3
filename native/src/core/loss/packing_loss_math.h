// The per-image and per-pair arithmetic of the packing loss (shared/spec/packing-loss.md), written once
// for both implementations: the CPU loops in packing_loss_cpu_kernels.cpp and the CUDA kernels in
// cuda/packing_loss_kernels.cu include this header, so the CPU tests check the same formulas the GPU runs.
// Plain C++ (no ATen, no CUDA headers): under nvcc the functions are __host__ __device__.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define CLAMP_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CLAMP_HOST_DEVICE inline
#endif

namespace clamp::loss_math {

constexpr double kNormFloor = 1e-12;    // spec step 2
constexpr double kSqrtEpsilon = 1e-12;  // spec steps 5 and 6
constexpr double kRangeEpsilon = 1e-6;  // spec step 7
constexpr double kLogEpsilon = 1e-6;    // spec step 10

template <typename T>
CLAMP_HOST_DEVICE T square_root(T x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);  // CUDA's float and double overloads
#else
  return std::sqrt(x);
#endif
}

CLAMP_HOST_DEVICE double power(double x, double p) {
#if defined(__CUDA_ARCH__)
  return pow(x, p);
#else
  return std::pow(x, p);
#endif
}

// Spec step 5 from the summed squared deviations of one image's m views around their centre.
CLAMP_HOST_DEVICE double radius_from_spread(double squared_deviations, int64_t m, int64_t d, double rs) {
  const double spread = squared_deviations / double(m - 1);  // step 4
  const double radius_dims = double(d < m ? d : m);
  return rs * square_root(spread / radius_dims + kSqrtEpsilon);
}

// Spec step 6 from the Gram matrix: ||c_i||^2 + ||c_j||^2 - 2 c_i.c_j, clamped at 0 (a NaN stays NaN,
// as with std::max(x, 0)).
template <typename T>
CLAMP_HOST_DEVICE T centre_distance(T squared_norm_i, T squared_norm_j, T gram_ij) {
  const T squared = squared_norm_i + squared_norm_j - T(2) * gram_ij;
  return square_root((squared < T(0) ? T(0) : squared) + T(kSqrtEpsilon));
}

// Spec step 7 before the clamp.
template <typename T>
CLAMP_HOST_DEVICE T contact_range(T radius_i, T radius_j) {
  return radius_i + radius_j + T(kRangeEpsilon);
}

// The pair options in the precision the pair arithmetic runs in (the input's, float32 for training).
template <typename T>
struct PairConstants {
  T max_range, min_margin;
  T lw1_p;  // lw1 * pot_pow
  double pot_pow;
  bool square_potential;  // pot_pow == 2, the paper's default: no pow() per pair
};

// One ordered pair (i, j), i != j: steps 7-9 and their derivatives.
template <typename T>
struct PairTerm {
  bool contact = false;
  T weight = T(0);         // P_ij = (dE/dd_ij) / d_ij, 0 outside the contact set
  double energy = 0;       // (1 - d/s)^p, before lw1
  double radius_grad = 0;  // dE/dr_i through s_ij, 0 where the max_range clamp binds
};

template <typename T>
CLAMP_HOST_DEVICE PairTerm<T> pair_term(T distance, T range, const PairConstants<T>& k) {
  PairTerm<T> term;
  const bool clamped = range > k.max_range;  // at equality the gradient flows, as with torch.clamp
  const T s = clamped ? k.max_range : range;
  if (!(distance > k.min_margin && distance < s)) return term;
  term.contact = true;
  const T inverse_s = T(1) / s;
  const T x = T(1) - distance * inverse_s;
  const T x_pow_minus_1 = k.square_potential ? x : static_cast<T>(power(double(x), k.pot_pow - 1.0));
  term.energy = double(x) * double(x_pow_minus_1);
  // Unordered pair energy lw1 x^p: dE/dd = -w / s, dE/ds = w d / s^2, with w = lw1 p x^(p-1).
  const T w = k.lw1_p * x_pow_minus_1;
  term.weight = -w * inverse_s / distance;
  if (!clamped) term.radius_grad = double(w * distance * inverse_s * inverse_s);
  return term;
}

// Backward of steps 3-4 for one coordinate of one view: dE/du_vi = dE/dc_i / m + k_i (u_vi - c_i),
// where k_i is the spread coefficient (the path through c_i in t_i cancels: deviations sum to zero).
CLAMP_HOST_DEVICE double unit_gradient(double grad_centre, int64_t m, double spread_coefficient, double unit, double centre) {
  return grad_centre / double(m) + spread_coefficient * (unit - centre);
}

}  // namespace clamp::loss_math
