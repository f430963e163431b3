// The fused packing loss on CUDA (interface and layout: packing_loss_kernels.h). The arithmetic per
// pair and per coordinate is packing_loss_math.h's, the same the CPU path runs; the matrix products
// (Gram matrix, weights x centres) stay in cuBLAS through ATen.
#include "cuda/packing_loss_kernels.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace clamp::cuda {
namespace {

using namespace clamp::loss_math;

constexpr int kThreads = 256;  // per block; a multiple of the warp size

void check_launch(const char* kernel) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess)
    throw std::runtime_error(std::string("CUDA kernel ") + kernel + " failed to launch: " + cudaGetErrorString(error));
}

// Sum over the block, returned to every thread. `scratch` holds one value per warp.
__device__ double block_sum(double value, double* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < int(blockDim.x / 32); ++w) total += scratch[w];  // fixed order: deterministic
  return total;
}

template <typename T>
__global__ void normalise_and_group_kernel(const T* __restrict__ z, const T* __restrict__ mean, int64_t m, int64_t b,
                                           int64_t d, double rs, T* __restrict__ unit, T* __restrict__ norms,
                                           T* __restrict__ centres, T* __restrict__ radii) {
  __shared__ double scratch[32];
  const int64_t i = blockIdx.x;
  for (int64_t v = 0; v < m; ++v) {
    const int64_t row = v * b + i;
    const T* zr = z + row * d;
    T* u = unit + row * d;
    double squared = 0;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
      const T y = zr[c] - mean[c];
      u[c] = y;
      squared += double(y) * double(y);
    }
    const double norm = square_root(block_sum(squared, scratch));
    if (threadIdx.x == 0) norms[row] = static_cast<T>(norm);
    const T inverse = static_cast<T>(1.0 / (norm > kNormFloor ? norm : kNormFloor));
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) u[c] *= inverse;  // each thread its own columns
  }
  // Each thread owns columns c: the centre and the deviations of its columns over the m views.
  double deviations = 0;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    double sum = 0;
    for (int64_t v = 0; v < m; ++v) sum += double(unit[(v * b + i) * d + c]);
    const T centre = static_cast<T>(sum / double(m));
    centres[i * d + c] = centre;
    for (int64_t v = 0; v < m; ++v) {
      const double deviation = double(unit[(v * b + i) * d + c]) - double(centre);
      deviations += deviation * deviation;
    }
  }
  const double total = block_sum(deviations, scratch);
  if (threadIdx.x == 0) radii[i] = static_cast<T>(radius_from_spread(total, m, d, rs));
}

template <typename T>
__global__ void pair_pass_kernel(const T* __restrict__ gram, const T* __restrict__ squared_norms,
                                 const T* __restrict__ radii, int64_t b, PairConstants<T> k, double lw1, double lw0,
                                 T* __restrict__ pair_weights, T* __restrict__ radius_grads,
                                 double* __restrict__ row_totals) {
  __shared__ double scratch[32];
  const int64_t i = blockIdx.x;
  const T* gi = gram + i * b;
  T* wi = pair_weights + i * b;
  const T sqi = squared_norms[i], ri = radii[i];
  double energy = 0, distance_sum = 0, radius_grad = 0, contacts = 0;
  for (int64_t j = threadIdx.x; j < b; j += blockDim.x) {
    if (j == i) {
      wi[j] = T(0);
      continue;
    }
    const T distance = centre_distance(sqi, squared_norms[j], gi[j]);
    distance_sum += double(distance);
    const PairTerm<T> term = pair_term(distance, contact_range(ri, radii[j]), k);
    wi[j] = term.weight;
    energy += term.energy;
    radius_grad += term.radius_grad;
    contacts += term.contact ? 1.0 : 0.0;
  }
  energy = block_sum(energy, scratch);
  distance_sum = block_sum(distance_sum, scratch);
  radius_grad = block_sum(radius_grad, scratch);
  contacts = block_sum(contacts, scratch);
  if (threadIdx.x == 0) {
    row_totals[i] = lw1 * energy;
    row_totals[b + i] = distance_sum;
    row_totals[2 * b + i] = contacts;
    radius_grads[i] = static_cast<T>(radius_grad + lw0);
  }
}

template <typename T>
__global__ void backward_rows_kernel(const T* __restrict__ unit, const T* __restrict__ norms,
                                     const T* __restrict__ centres, const T* __restrict__ grad_centres,
                                     const double* __restrict__ spread_coefficient, int64_t m, int64_t b, int64_t d,
                                     double scale, T* __restrict__ out) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x, i = row % b;
  const T* u = unit + row * d;
  const T* ci = centres + i * d;
  const T* gci = grad_centres + i * d;
  const double coefficient = spread_coefficient[i];
  double radial = 0;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x)
    radial += double(u[c]) * unit_gradient(double(gci[c]), m, coefficient, double(u[c]), double(ci[c]));
  radial = block_sum(radial, scratch);
  const double norm = double(norms[row]);
  if (!(norm > kNormFloor)) radial = 0;  // the floor is a constant: no radial term below it
  const double factor = scale / (norm > kNormFloor ? norm : kNormFloor);
  T* o = out + row * d;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    const double g = unit_gradient(double(gci[c]), m, coefficient, double(u[c]), double(ci[c]));
    o[c] = static_cast<T>((g - double(u[c]) * radial) * factor);
  }
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

template <typename T>
void normalise_and_group(const T* z, const T* mean, int64_t m, int64_t b, int64_t d, double rs, T* unit, T* norms,
                         T* centres, T* radii, void* stream) {
  normalise_and_group_kernel<T><<<dim3(unsigned(b)), kThreads, 0, as_stream(stream)>>>(z, mean, m, b, d, rs, unit, norms,
                                                                                      centres, radii);
  check_launch("normalise_and_group");
}

template <typename T>
void pair_pass(const T* gram, const T* squared_norms, const T* radii, int64_t b, const PairConstants<T>& constants,
               double lw1, double lw0, T* pair_weights, T* radius_grads, double* row_totals, void* stream) {
  pair_pass_kernel<T><<<dim3(unsigned(b)), kThreads, 0, as_stream(stream)>>>(gram, squared_norms, radii, b, constants, lw1,
                                                                            lw0, pair_weights, radius_grads, row_totals);
  check_launch("pair_pass");
}

template <typename T>
void backward_rows(const T* unit, const T* norms, const T* centres, const T* grad_centres,
                   const double* spread_coefficient, int64_t m, int64_t b, int64_t d, double scale, T* out,
                   void* stream) {
  backward_rows_kernel<T><<<dim3(unsigned(m * b)), kThreads, 0, as_stream(stream)>>>(
      unit, norms, centres, grad_centres, spread_coefficient, m, b, d, scale, out);
  check_launch("backward_rows");
}

#define CLAMP_INSTANTIATE(T)                                                                                        \
  template void normalise_and_group<T>(const T*, const T*, int64_t, int64_t, int64_t, double, T*, T*, T*, T*, void*); \
  template void pair_pass<T>(const T*, const T*, const T*, int64_t, const PairConstants<T>&, double, double, T*, T*,   \
                             double*, void*);                                                                        \
  template void backward_rows<T>(const T*, const T*, const T*, const T*, const double*, int64_t, int64_t, int64_t,    \
                                 double, T*, void*);
CLAMP_INSTANTIATE(float)
CLAMP_INSTANTIATE(double)
#undef CLAMP_INSTANTIATE

}  // namespace clamp::cuda
