// The CLAMP packing loss (shared/spec/packing-loss.md), fused: forward and a hand-written backward
// over the b x b pairs of sub-manifold centres, never a [b, b, d] tensor.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace clamp {

// Options in the style of PyTorch's C++ frontend: defaults are the paper's, setters chain.
struct PackingLossOptions {
#define CLAMP_OPTION(type, name, init)         \
  type name = init;                            \
  PackingLossOptions& set_##name(type value) { \
    name = value;                              \
    return *this;                              \
  }
  CLAMP_OPTION(double, rs, 7.0)           // radius scale: 7 for CIFAR-10, 8.5 for ImageNet
  CLAMP_OPTION(double, pot_pow, 2.0)      // exponent of the soft-sphere potential
  CLAMP_OPTION(double, min_margin, 1e-3)  // pairs closer than this are not in contact
  CLAMP_OPTION(double, max_range, 1.5)    // contact range cap; it stops the gradient to r where it binds
  CLAMP_OPTION(double, lw0, 0.0)          // weight of the radius term sum_i r_i
  CLAMP_OPTION(double, lw1, 1.0)          // weight of the pair energy
  CLAMP_OPTION(bool, log, true)           // L = log(E + 1e-6) when true, L = E otherwise
#undef CLAMP_OPTION
};

// Per-batch "jamming" diagnostics, in the centred unit-norm space (spec, Diagnostics).
struct PackingStats {
  double energy = 0;
  double mean_radius = 0;              // mean of r_i / rs
  double mean_distance = 0;            // mean d_ij over ordered pairs i != j
  double contacts_per_image = 0;       // ordered contact pairs / b
  double activity = 0;                 // fraction of images with a contact partner
  double nearest_centre_accuracy = 0;  // fraction of views whose nearest centre is their own
};

// Throws std::invalid_argument naming the problem when z, views or an option is unusable:
// z must be a 2-D floating tensor [views * batch, dim] of finite values, views >= 2, batch >= 2.
// float64 computes in float64; float32, bfloat16 and float16 compute in float32 (the gradient comes back
// in z's dtype). On the CPU or, in a CUDA build, on a GPU (the kernels in cuda/).
void check_packing_loss_arguments(const at::Tensor& z, int64_t views, const PackingLossOptions& options);

// Which diagnostics a call fills in. The pair-pass ones come free with the loss; nearest-centre
// accuracy costs one more [m*b, d] x [d, b] product, four times the loss's own matrix work at m = 4.
enum class Diagnostics { pair_pass, all };

// The loss as an autograd-aware scalar tensor: backpropagating through it runs the fused backward.
// Fills *stats when given; nearest_centre_accuracy only with Diagnostics::all (else it is NaN).
at::Tensor packing_loss(const at::Tensor& z, int64_t views, const PackingLossOptions& options = {}, PackingStats* stats = nullptr,
                        Diagnostics diagnostics = Diagnostics::all);

// The same formula composed from plain ATen ops with autograd and a [b, b, d] difference tensor:
// the unfused yardstick for tests and benchmarks, never used for training.
at::Tensor packing_loss_reference(const at::Tensor& z, int64_t views, const PackingLossOptions& options = {});

namespace testing {
// The GPU path's code on the CPU: the CUDA kernels' block programs (cuda/packing_loss_blocks.h), each
// block's threads emulated one after another (threads_per_block of them), through the same glue as on a
// GPU. For the tests, which check it against packing_loss on machines without a GPU.
at::Tensor packing_loss_emulating_gpu(const at::Tensor& z, int64_t views, const PackingLossOptions& options, PackingStats* stats,
                                      int64_t threads_per_block);
}  // namespace testing

}  // namespace clamp
