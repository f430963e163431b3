// What the packing loss's translation units share, not part of its API (that is packing_loss.h):
//   packing_loss.cpp              the autograd Function: forward and backward, whichever path runs them
//   packing_loss_cpu_kernels.cpp  the CPU loops (CPU training)
//   packing_loss_block_launch.cpp the GPU's block programs (cuda/packing_loss_blocks.h), launched as CUDA
//                                 kernels or emulated on the CPU for the tests
//   packing_loss_checks.cpp       the argument checks
// The two paths fill the same SavedForward and return their per-row totals in the same layout, so the
// Function's forward and backward do not depend on which one ran.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "loss/packing_loss.h"
#include "loss/packing_loss_math.h"

namespace clamp::packing_loss_detail {

// Everything the backward needs, kept from the forward: O(b^2 + m*b*d).
struct SavedForward {
  at::Tensor unit;          // [m*b, d] centred, unit-norm rows (steps 1-2)
  at::Tensor norms;         // [m*b] row norms before the floor
  at::Tensor centres;       // [b, d] c_i (step 3)
  at::Tensor radii;         // [b] r_i (step 5)
  at::Tensor pair_weights;  // [b, b] P_ij = (dE/dd_ij) / d_ij on contact pairs, 0 elsewhere
  at::Tensor radius_grads;  // [b] dE/dr_i
  double energy = 0;
  int64_t views = 0;
};

// Per-pair arithmetic runs in the input's precision (float32 for training); sums are in double.
template <typename scalar_t>
loss_math::PairConstants<scalar_t> pair_constants(const PackingLossOptions& o) {
  return {static_cast<scalar_t>(o.max_range), static_cast<scalar_t>(o.min_margin), static_cast<scalar_t>(o.lw1 * o.pot_pow), o.pot_pow,
          o.pot_pow == 2.0};
}

// Shifting every centre by their mean leaves each c_i - c_j unchanged but shrinks the Gram entries,
// which keeps ||c_i||^2 + ||c_j||^2 - 2 c_i.c_j from cancelling badly in float32.
inline at::Tensor shifted_centres(const at::Tensor& centres) { return centres - centres.mean(0, /*keepdim=*/true); }

// Each path behind the same two functions:
//   *_forward        steps 1-9 from z (contiguous, in the compute precision) and its column mean, into
//                    saved (its tensors allocated, views set); returns the per-row totals, [3, b] float64
//                    on the CPU (energy, distance sum, contacts of each row), which the forward sums in
//                    row order
//   *_backward_rows  the backward of steps 2-5 into grad (before the centring's backward), scaled by
//                    `scale` (dL/dE)

// packing_loss_cpu_kernels.cpp: the CPU loops, for CPU tensors.
at::Tensor cpu_forward(const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o, SavedForward& saved);
void cpu_backward_rows(const SavedForward& saved, const at::Tensor& grad_centres, const at::Tensor& spread_coefficient, double scale,
                       at::Tensor& grad);

// packing_loss_block_launch.cpp: the block programs, as CUDA kernels on a CUDA tensor's device (which
// throws std::invalid_argument in a build without the kernels), else emulated on the CPU with
// emulated_threads threads per block.
at::Tensor block_programs_forward(const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o, SavedForward& saved,
                                  int64_t emulated_threads);
void block_programs_backward_rows(const SavedForward& saved, const at::Tensor& grad_centres, const at::Tensor& spread_coefficient,
                                  double scale, at::Tensor& grad, int64_t emulated_threads);

// packing_loss_checks.cpp: a number as the loss's error messages write it.
std::string format_number(double value);

}  // namespace clamp::packing_loss_detail
