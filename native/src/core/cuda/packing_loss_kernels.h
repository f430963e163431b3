// CUDA kernels of the fused packing loss behind a plain C++ interface: no CUDA and no ATen headers here,
// so the ATen glue (packing_loss.cpp, under CLAMP_WITH_CUDA) and nvcc's translation unit stay apart.
// Every pointer is device memory; `stream` is a cudaStream_t. Launch failures throw std::runtime_error.
// Scalars are float or double; reductions accumulate in double whatever the scalar type.
#pragma once

#include <cstdint>
#include <string>

#include "packing_loss_math.h"

namespace clamp::cuda {

// Steps 1-5, one block per image: centred unit rows, row norms (before the floor), centres, radii.
template <typename T>
void normalise_and_group(const T* z, const T* mean, int64_t m, int64_t b, int64_t d, double rs, T* unit, T* norms,
                         T* centres, T* radii, void* stream);

// Steps 6-9, one block per row i of the b x b pairs, from the Gram matrix of the centres and its
// diagonal. Writes pair_weights [b, b], radius_grads [b] (dE/dr_i + lw0), and per-row totals
// row_totals [3, b]: pair energy (times lw1), summed distances, contact count. No [b, b, d] tensor.
template <typename T>
void pair_pass(const T* gram, const T* squared_norms, const T* radii, int64_t b,
               const loss_math::PairConstants<T>& constants, double lw1, double lw0, T* pair_weights,
               T* radius_grads, double* row_totals, void* stream);

// Backward of steps 2-5, one block per row of z: dL/dy before the centring's backward, scaled by `scale`.
template <typename T>
void backward_rows(const T* unit, const T* norms, const T* centres, const T* grad_centres,
                   const double* spread_coefficient, int64_t m, int64_t b, int64_t d, double scale, T* out,
                   void* stream);

}  // namespace clamp::cuda
