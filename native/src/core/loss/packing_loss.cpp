// The packing loss's public entry points and the autograd Function behind them: the forward and the
// backward around the CPU loops (packing_loss_cpu_kernels.cpp) or the GPU's block programs
// (packing_loss_block_launch.cpp), the totals, the energy and the diagnostics. The argument checks are
// in packing_loss_checks.cpp.
#include "loss/packing_loss.h"

#include "loss/packing_loss_internal.h"
#include "loss/packing_loss_math.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace clamp {
namespace {

using loss_math::kLogEpsilon;
using packing_loss_detail::format_number;
using packing_loss_detail::SavedForward;
using packing_loss_detail::shifted_centres;

struct PairPassTotals {
  double pair_energy = 0;  // sum over ordered contact pairs of lw1 * (1 - d/s)^p
  double distance_sum = 0;
  int64_t contacts = 0;
  int64_t active_images = 0;
};

// The pair pass's per-row totals ([3, b] float64 on the CPU: energy, distance sum, contacts) summed in
// row order, the same on every device and for every thread count.
PairPassTotals sum_row_totals(const at::Tensor& row_totals) {
  const int64_t b = row_totals.size(1);
  const double* energy = row_totals.data_ptr<double>();
  PairPassTotals totals;
  for (int64_t i = 0; i < b; ++i) {
    totals.pair_energy += energy[i];
    totals.distance_sum += energy[b + i];
    const auto contacts = static_cast<int64_t>(energy[2 * b + i]);
    totals.contacts += contacts;
    totals.active_images += contacts > 0 ? 1 : 0;
  }
  return totals;
}

// The precision the loss computes in: float64 input stays float64; float32, and the bfloat16 or float16
// embeddings of mixed-precision training, run in float32.
at::ScalarType compute_type(at::ScalarType input) { return input == at::kDouble ? at::kDouble : at::kFloat; }

// emulated_threads > 0 runs a CPU tensor through the GPU's block programs, emulated (for the tests).
SavedForward forward(const at::Tensor& z_in, int64_t views, const PackingLossOptions& o, PackingStats* stats, Diagnostics diagnostics,
                     int64_t emulated_threads) {
  const at::Tensor z = z_in.to(compute_type(z_in.scalar_type())).contiguous();
  const int64_t m = views, rows = z.size(0), d = z.size(1), b = rows / m;
  SavedForward saved;
  saved.views = m;
  saved.unit = at::empty({rows, d}, z.options());
  saved.norms = at::empty({rows}, z.options());
  saved.centres = at::empty({b, d}, z.options());
  saved.radii = at::empty({b}, z.options());
  saved.pair_weights = at::empty({b, b}, z.options());
  saved.radius_grads = at::empty({b}, z.options());
  const at::Tensor mean = z.mean(0).contiguous();  // step 1's d-vector
  // A GPU tensor, or a CPU one when emulating the GPU, takes the block programs; a CPU tensor the CPU loops.
  const at::Tensor row_totals = z.is_cuda() || emulated_threads > 0
                                    ? packing_loss_detail::block_programs_forward(z, mean, o, saved, emulated_threads)
                                    : packing_loss_detail::cpu_forward(z, mean, o, saved);
  const PairPassTotals totals = sum_row_totals(row_totals);
  // One read of the radii's sum serves the energy and the diagnostics: on a GPU each read is a sync.
  const double radius_sum = saved.radii.sum(at::kDouble).item<double>();
  saved.energy = 0.5 * totals.pair_energy + o.lw0 * radius_sum;  // step 9
  if (!std::isfinite(saved.energy)) {
    // Finite inputs can still overflow: squares of values past ~1e19 exceed float32's range. Rows are
    // centred and normalised first, so z scaled down by any constant has the same loss.
    throw std::invalid_argument("the packing loss overflowed to " + format_number(saved.energy) + ": z's largest magnitude is " +
                                format_number(z.abs().max().item<double>()) + ", beyond what " + c10::toString(z.scalar_type()) +
                                " can square and sum; the loss normalises z's rows, so divide z by a constant "
                                "(e.g. its largest magnitude) for the same loss");
  }

  if (stats != nullptr) {
    stats->energy = saved.energy;
    stats->mean_radius = radius_sum / double(b) / o.rs;
    stats->mean_distance = totals.distance_sum / double(b * (b - 1));
    stats->contacts_per_image = double(totals.contacts) / double(b);
    stats->activity = double(totals.active_images) / double(b);
    stats->nearest_centre_accuracy = std::nan("");
  }
  if (stats != nullptr && diagnostics == Diagnostics::all) {
    // argmin_j ||u - c_j||^2 = argmax_j (2 u.c_j - ||c_j||^2): one [m*b, d] x [d, b] product.
    const at::Tensor scores = saved.unit.mm(saved.centres.t()) * 2.0 - saved.centres.pow(2).sum(1).unsqueeze(0);
    const at::Tensor own = at::arange(b, z.options().dtype(at::kLong)).repeat({m});
    stats->nearest_centre_accuracy = scores.argmax(1).eq(own).to(at::kDouble).mean().item<double>();
  }
  return saved;
}

// dL/dz for the scalar upstream gradient grad_loss, in the compute precision.
at::Tensor backward(const SavedForward& saved, double grad_loss, const PackingLossOptions& o, int64_t emulated_threads) {
  const int64_t m = saved.views, d = saved.unit.size(1);
  const double grad_energy = o.log ? grad_loss / (saved.energy + kLogEpsilon) : grad_loss;

  // dE/dc_i = sum_j P_ij (c_i - c_j): one [b, b] x [b, d] product (on shifted centres: differences agree).
  const at::Tensor shifted = shifted_centres(saved.centres);
  const at::Tensor& weights = saved.pair_weights;
  const at::Tensor grad_centres = (weights.sum(1, /*keepdim=*/true) * shifted - weights.mm(shifted)).contiguous();
  // dr_i/dt_i = rs^2 / (2 r_i min(d, m)) and dt_i/du_vi = 2 (u_vi - c_i) / (m - 1); the path through c_i
  // cancels because the deviations of image i sum to zero.
  const at::Tensor spread_coefficient = (saved.radius_grads.to(at::kDouble) * (o.rs * o.rs) / (2.0 * double(std::min(d, m))) /
                                         saved.radii.to(at::kDouble) * (2.0 / double(m - 1)))
                                            .contiguous();
  at::Tensor grad = at::empty_like(saved.unit);
  if (grad.is_cuda() || emulated_threads > 0) {
    packing_loss_detail::block_programs_backward_rows(saved, grad_centres, spread_coefficient, grad_energy, grad, emulated_threads);
  } else {
    packing_loss_detail::cpu_backward_rows(saved, grad_centres, spread_coefficient, grad_energy, grad);
  }
  return grad.sub_(grad.mean(0, /*keepdim=*/true));  // through the global centring
}

// The loss's own matrix products stay in its compute precision when the caller runs under autocast
// (mixed-precision training would otherwise turn the Gram matrix into bfloat16).
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

class PackingLossFunction : public torch::autograd::Function<PackingLossFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z, int64_t views, const PackingLossOptions& options,
                            PackingStats* stats, Diagnostics diagnostics, int64_t emulated_threads) {
    const NoAutocast no_autocast;
    const SavedForward saved = clamp::forward(z, views, options, stats, diagnostics, emulated_threads);
    ctx->save_for_backward({saved.unit, saved.norms, saved.centres, saved.radii, saved.pair_weights, saved.radius_grads});
    ctx->saved_data["energy"] = saved.energy;
    ctx->saved_data["views"] = views;
    ctx->saved_data["rs"] = options.rs;
    ctx->saved_data["log"] = options.log;
    ctx->saved_data["input_type"] = static_cast<int64_t>(z.scalar_type());
    ctx->saved_data["emulated_threads"] = emulated_threads;
    const double loss = options.log ? std::log(saved.energy + kLogEpsilon) : saved.energy;
    return at::scalar_tensor(loss, z.options().dtype(saved.unit.scalar_type()));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grad_outputs) {
    const NoAutocast no_autocast;
    const auto tensors = ctx->get_saved_variables();
    SavedForward saved{tensors[0],
                       tensors[1],
                       tensors[2],
                       tensors[3],
                       tensors[4],
                       tensors[5],
                       ctx->saved_data["energy"].toDouble(),
                       ctx->saved_data["views"].toInt()};
    PackingLossOptions options;
    options.rs = ctx->saved_data["rs"].toDouble();
    options.log = ctx->saved_data["log"].toBool();
    const double upstream = grad_outputs[0].defined() ? grad_outputs[0].item<double>() : 0.0;
    const auto input_type = static_cast<at::ScalarType>(ctx->saved_data["input_type"].toInt());
    const int64_t emulated_threads = ctx->saved_data["emulated_threads"].toInt();
    return {clamp::backward(saved, upstream, options, emulated_threads).to(input_type),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor packing_loss(const at::Tensor& z, int64_t views, const PackingLossOptions& options, PackingStats* stats,
                        Diagnostics diagnostics) {
  check_packing_loss_arguments(z, views, options);
  return PackingLossFunction::apply(z, views, options, stats, diagnostics, int64_t(0));
}

namespace testing {

at::Tensor packing_loss_emulating_gpu(const at::Tensor& z, int64_t views, const PackingLossOptions& options, PackingStats* stats,
                                      int64_t threads_per_block) {
  check_packing_loss_arguments(z, views, options);
  if (!z.device().is_cpu()) throw std::invalid_argument("the emulated GPU path takes a CPU tensor");
  if (threads_per_block < 1) throw std::invalid_argument("threads_per_block must be at least 1");
  return PackingLossFunction::apply(z, views, options, stats, Diagnostics::all, threads_per_block);
}

}  // namespace testing

}  // namespace clamp
