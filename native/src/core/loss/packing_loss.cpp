#include "loss/packing_loss.h"

#include "numerics/finite.h"
#include "loss/packing_loss_math.h"
#include "runtime.h"

#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include "cuda/packing_loss_blocks.h"

#if defined(CLAMP_WITH_CUDA)  // the ATen glue of the CUDA kernels: only in a CUDA build
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/packing_loss_kernels.h"
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace clamp {
namespace {

using loss_math::kLogEpsilon;
using loss_math::kNormFloor;

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

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

// Items per parallel chunk: about 256k values per task. Smaller tasks measured slower on a 2-vCPU VM,
// where waking the second OpenMP thread costs more than the work it takes over.
int64_t grain_for(int64_t values_per_item) {
  return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, values_per_item));
}

// Steps 1-5 for each image i in one pass over its m views (parallel over images): centre and normalise
// the rows, average them into c_i, and measure their spread around it.
template <typename scalar_t>
void normalise_and_group(const scalar_t* z, const scalar_t* mean, int64_t m, int64_t b, int64_t d, double rs,
                         scalar_t* unit, scalar_t* norms, scalar_t* centres, scalar_t* radii) {
  at::parallel_for(0, b, grain_for(m * d), [&](int64_t begin, int64_t end) {
    std::vector<double> centre(d);
    for (int64_t i = begin; i < end; ++i) {
      std::fill(centre.begin(), centre.end(), 0.0);
      for (int64_t v = 0; v < m; ++v) {
        const scalar_t* zr = z + (v * b + i) * d;
        scalar_t* u = unit + (v * b + i) * d;
        double squared = 0;
        for (int64_t c = 0; c < d; ++c) {
          const scalar_t y = zr[c] - mean[c];
          u[c] = y;
          squared += double(y) * double(y);
        }
        const double norm = std::sqrt(squared);
        norms[v * b + i] = static_cast<scalar_t>(norm);
        const scalar_t inverse = static_cast<scalar_t>(1.0 / std::max(norm, kNormFloor));
        for (int64_t c = 0; c < d; ++c) {
          u[c] *= inverse;
          centre[c] += u[c];
        }
      }
      scalar_t* ci = centres + i * d;
      for (int64_t c = 0; c < d; ++c) ci[c] = static_cast<scalar_t>(centre[c] / double(m));
      double spread = 0;
      for (int64_t v = 0; v < m; ++v) {
        const scalar_t* u = unit + (v * b + i) * d;
        for (int64_t c = 0; c < d; ++c) {
          const double deviation = double(u[c]) - double(ci[c]);
          spread += deviation * deviation;
        }
      }
      radii[i] = static_cast<scalar_t>(loss_math::radius_from_spread(spread, m, d, rs));
    }
  });
}

// Per-pair arithmetic runs in the input's precision (float32 for training); sums are in double.
template <typename scalar_t>
loss_math::PairConstants<scalar_t> pair_constants(const PackingLossOptions& o) {
  return {static_cast<scalar_t>(o.max_range), static_cast<scalar_t>(o.min_margin),
          static_cast<scalar_t>(o.lw1 * o.pot_pow), o.pot_pow, o.pot_pow == 2.0};
}

struct PairPassTotals {
  double pair_energy = 0;  // sum over ordered contact pairs of lw1 * (1 - d/s)^p
  double distance_sum = 0;
  int64_t contacts = 0;
  int64_t active_images = 0;
};

// Steps 6-9 in one pass over the ordered pairs (i, j), i != j, parallel over rows i. Distances come from
// the Gram matrix of the (mean-shifted) centres. Each row writes only its own entries, so no atomics are
// needed and the row totals are summed in a fixed order: the result does not depend on the thread count.
template <typename scalar_t>
void pair_pass(const at::Tensor& gram, const at::Tensor& radii, const PackingLossOptions& o, at::Tensor& pair_weights,
               at::Tensor& radius_grads, at::Tensor& row_totals) {
  const int64_t b = gram.size(0);
  const scalar_t* g = gram.data_ptr<scalar_t>();
  const scalar_t* r = radii.data_ptr<scalar_t>();
  scalar_t* weights = pair_weights.data_ptr<scalar_t>();
  scalar_t* rgrad = radius_grads.data_ptr<scalar_t>();
  std::vector<scalar_t> squared_norms(b);  // the Gram diagonal, contiguous: it is read for every pair
  for (int64_t j = 0; j < b; ++j) squared_norms[j] = g[j * b + j];
  const loss_math::PairConstants<scalar_t> constants = pair_constants<scalar_t>(o);
  double* row_energy = row_totals.data_ptr<double>();
  double* row_distance = row_energy + b;
  double* row_contacts = row_energy + 2 * b;

  at::parallel_for(0, b, grain_for(b), [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> distances(b), ranges(b);
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* gi = g + i * b;
      scalar_t* wi = weights + i * b;
      const scalar_t sqi = squared_norms[i], ri = r[i];
      // Distances and ranges for the whole row first: a branch-free loop the compiler vectorises.
      for (int64_t j = 0; j < b; ++j) {
        distances[j] = loss_math::centre_distance(sqi, squared_norms[j], gi[j]);
        ranges[j] = loss_math::contact_range(ri, r[j]);
      }
      double energy = 0, distance = 0, dr = 0;
      int64_t contacts = 0;
      for (int64_t j = 0; j < b; ++j) {
        wi[j] = 0;
        if (j == i) continue;
        distance += distances[j];
        const loss_math::PairTerm<scalar_t> term = loss_math::pair_term(distances[j], ranges[j], constants);
        if (!term.contact) continue;
        ++contacts;
        energy += term.energy;
        wi[j] = term.weight;
        dr += term.radius_grad;
      }
      row_energy[i] = o.lw1 * energy;
      row_distance[i] = distance;
      row_contacts[i] = double(contacts);
      rgrad[i] = static_cast<scalar_t>(dr + o.lw0);
    }
  });
}

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

// Backward of steps 1-5 for each image in one pass over its views (parallel over images):
//   du_vi = dE/dc_i / m + spread_coefficient_i * (u_vi - c_i)        (through c_i and t_i)
//   dy    = (du - u (u . du)) / max(||y||, floor)                     (through the normalisation)
// scaled by dL/dE. The centring's backward (subtracting the column mean) follows outside.
template <typename scalar_t>
void backward_rows(const scalar_t* unit, const scalar_t* norms, const scalar_t* centres, const scalar_t* grad_centres,
                   const double* spread_coefficient, int64_t m, int64_t b, int64_t d, double scale, scalar_t* out) {
  at::parallel_for(0, b, grain_for(m * d), [&](int64_t begin, int64_t end) {
    std::vector<double> grad_unit(d);
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* ci = centres + i * d;
      const scalar_t* gci = grad_centres + i * d;
      for (int64_t v = 0; v < m; ++v) {
        const int64_t row = v * b + i;
        const scalar_t* u = unit + row * d;
        double radial = 0;
        for (int64_t c = 0; c < d; ++c) {
          grad_unit[c] = loss_math::unit_gradient(double(gci[c]), m, spread_coefficient[i], double(u[c]), double(ci[c]));
          radial += double(u[c]) * grad_unit[c];
        }
        const double norm = norms[row];
        if (!(norm > kNormFloor)) radial = 0;  // the floor is a constant: no radial term below it
        const double factor = scale / std::max(norm, kNormFloor);
        scalar_t* o = out + row * d;
        for (int64_t c = 0; c < d; ++c) o[c] = static_cast<scalar_t>((grad_unit[c] - double(u[c]) * radial) * factor);
      }
    }
  });
}

// The precision the loss computes in: float64 input stays float64; float32, and the bfloat16 or float16
// embeddings of mixed-precision training, run in float32.
at::ScalarType compute_type(at::ScalarType input) { return input == at::kDouble ? at::kDouble : at::kFloat; }

// Shifting every centre by their mean leaves each c_i - c_j unchanged but shrinks the Gram entries,
// which keeps ||c_i||^2 + ||c_j||^2 - 2 c_i.c_j from cancelling badly in float32.
at::Tensor shifted_centres(const at::Tensor& centres) { return centres - centres.mean(0, /*keepdim=*/true); }

// Where the block programs of cuda/packing_loss_blocks.h run: CUDA kernels on the tensors' device, or,
// for the tests, emulated on the CPU (EmulatedLaunch). Both go through the same glue below. CPU training
// keeps the loops above: they share the arithmetic (packing_loss_math.h) but are laid out for the CPU
// (a branch-free distance pass the compiler vectorises), which one emulated thread per block is not.
struct EmulatedLaunch {
  int64_t threads;  // per emulated block

  template <class Program>
  void grid(int64_t blocks, Program program) const {
    // Blocks write disjoint outputs, as on a GPU: they can run in parallel here too.
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      cuda::EmulatedBlock block{threads};
      for (int64_t k = begin; k < end; ++k) program(block, k);
    });
  }
  template <typename T>
  void normalise_and_group(const cuda::NormaliseArgs<T>& a) const {
    grid(a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::normalise_and_group_block(block, a, k); });
  }
  template <typename T>
  void pair_pass(const cuda::PairPassArgs<T>& a) const {
    grid(a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::pair_pass_block(block, a, k); });
  }
  template <typename T>
  void backward_rows(const cuda::BackwardArgs<T>& a) const {
    grid(a.m * a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::backward_rows_block(block, a, k); });
  }
};

#if defined(CLAMP_WITH_CUDA)
struct CudaLaunch {
  void* stream;  // the device's current stream, where ATen's own work on these tensors goes
  explicit CudaLaunch(const at::Tensor& on) : stream(c10::cuda::getCurrentCUDAStream(on.device().index()).stream()) {}
  template <typename T>
  void normalise_and_group(const cuda::NormaliseArgs<T>& a) const { cuda::normalise_and_group(a, stream); }
  template <typename T>
  void pair_pass(const cuda::PairPassArgs<T>& a) const { cuda::pair_pass(a, stream); }
  template <typename T>
  void backward_rows(const cuda::BackwardArgs<T>& a) const { cuda::backward_rows(a, stream); }
};
#else
[[noreturn]] void no_cuda_kernels() {
  throw std::invalid_argument(no_cuda_kernels_message("the packing loss on a CUDA tensor"));
}
#endif

// Steps 1-9 through the block programs: two launches around one matrix product (cuBLAS on a GPU).
// Fills saved and returns the per-row totals, on the tensors' device.
template <class Launch>
at::Tensor block_forward(const Launch& launch, const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o,
                         SavedForward& saved) {
  const int64_t m = saved.views, d = z.size(1), b = z.size(0) / m;
  at::Tensor row_totals = at::empty({3, b}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "clamp_packing_loss_block_forward", [&] {
    launch.normalise_and_group(cuda::NormaliseArgs<scalar_t>{
        z.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), m, b, d, o.rs, saved.unit.data_ptr<scalar_t>(),
        saved.norms.data_ptr<scalar_t>(), saved.centres.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>()});
    const at::Tensor shifted = shifted_centres(saved.centres);
    const at::Tensor gram = shifted.mm(shifted.t()).contiguous();
    const at::Tensor squared_norms = gram.diagonal().contiguous();
    launch.pair_pass(cuda::PairPassArgs<scalar_t>{
        gram.data_ptr<scalar_t>(), squared_norms.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>(), b,
        pair_constants<scalar_t>(o), o.lw1, o.lw0, saved.pair_weights.data_ptr<scalar_t>(),
        saved.radius_grads.data_ptr<scalar_t>(), row_totals.data_ptr<double>()});
  });
  return row_totals;
}

// Backward of steps 2-5 through the block programs, into grad (before the centring's backward).
template <class Launch>
void block_backward_rows(const Launch& launch, const SavedForward& saved, const at::Tensor& grad_centres,
                         const at::Tensor& spread_coefficient, double scale, at::Tensor& grad) {
  const int64_t m = saved.views, b = saved.radii.size(0), d = saved.unit.size(1);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "clamp_packing_loss_block_backward", [&] {
    launch.backward_rows(cuda::BackwardArgs<scalar_t>{
        saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(), saved.centres.data_ptr<scalar_t>(),
        grad_centres.data_ptr<scalar_t>(), spread_coefficient.data_ptr<double>(), m, b, d, scale,
        grad.data_ptr<scalar_t>()});
  });
}

// emulated_threads > 0 runs a CPU tensor through the GPU's block programs, emulated (for the tests).
SavedForward forward(const at::Tensor& z_in, int64_t views, const PackingLossOptions& o, PackingStats* stats,
                     Diagnostics diagnostics, int64_t emulated_threads) {
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
  at::Tensor row_totals;
  if (z.is_cuda()) {
#if defined(CLAMP_WITH_CUDA)
    const c10::cuda::CUDAGuard guard(z.device());
    row_totals = block_forward(CudaLaunch(z), z, mean, o, saved).cpu();
#else
    no_cuda_kernels();
#endif
  } else if (emulated_threads > 0) {
    row_totals = block_forward(EmulatedLaunch{emulated_threads}, z, mean, o, saved);
  } else {
    row_totals = at::empty({3, b}, z.options().dtype(at::kDouble));
    AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "clamp_packing_loss_forward", [&] {
      normalise_and_group<scalar_t>(z.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), m, b, d, o.rs,
                                    saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(),
                                    saved.centres.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>());
      const at::Tensor shifted = shifted_centres(saved.centres);
      const at::Tensor gram = shifted.mm(shifted.t()).contiguous();
      pair_pass<scalar_t>(gram, saved.radii, o, saved.pair_weights, saved.radius_grads, row_totals);
    });
  }
  const PairPassTotals totals = sum_row_totals(row_totals);
  // One read of the radii's sum serves the energy and the diagnostics: on a GPU each read is a sync.
  const double radius_sum = saved.radii.sum(at::kDouble).item<double>();
  saved.energy = 0.5 * totals.pair_energy + o.lw0 * radius_sum;  // step 9
  if (!std::isfinite(saved.energy)) {
    // Finite inputs can still overflow: squares of values past ~1e19 exceed float32's range. Rows are
    // centred and normalised first, so z scaled down by any constant has the same loss.
    throw std::invalid_argument("the packing loss overflowed to " + format_number(saved.energy) +
                                ": z's largest magnitude is " + format_number(z.abs().max().item<double>()) +
                                ", beyond what " + c10::toString(z.scalar_type()) +
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
  const int64_t m = saved.views, b = saved.radii.size(0), d = saved.unit.size(1);
  const double grad_energy = o.log ? grad_loss / (saved.energy + kLogEpsilon) : grad_loss;

  // dE/dc_i = sum_j P_ij (c_i - c_j): one [b, b] x [b, d] product (on shifted centres: differences agree).
  const at::Tensor shifted = shifted_centres(saved.centres);
  const at::Tensor& weights = saved.pair_weights;
  const at::Tensor grad_centres = (weights.sum(1, /*keepdim=*/true) * shifted - weights.mm(shifted)).contiguous();
  // dr_i/dt_i = rs^2 / (2 r_i min(d, m)) and dt_i/du_vi = 2 (u_vi - c_i) / (m - 1); the path through c_i
  // cancels because the deviations of image i sum to zero.
  const at::Tensor spread_coefficient =
      (saved.radius_grads.to(at::kDouble) * (o.rs * o.rs) / (2.0 * double(std::min(d, m))) /
       saved.radii.to(at::kDouble) * (2.0 / double(m - 1))).contiguous();
  at::Tensor grad = at::empty_like(saved.unit);
  if (grad.is_cuda()) {
#if defined(CLAMP_WITH_CUDA)
    const c10::cuda::CUDAGuard guard(grad.device());
    block_backward_rows(CudaLaunch(grad), saved, grad_centres, spread_coefficient, grad_energy, grad);
#else
    no_cuda_kernels();
#endif
  } else if (emulated_threads > 0) {
    block_backward_rows(EmulatedLaunch{emulated_threads}, saved, grad_centres, spread_coefficient, grad_energy, grad);
  } else {
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "clamp_packing_loss_backward", [&] {
      backward_rows<scalar_t>(saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(),
                              saved.centres.data_ptr<scalar_t>(), grad_centres.data_ptr<scalar_t>(),
                              spread_coefficient.data_ptr<double>(), m, b, d, grad_energy, grad.data_ptr<scalar_t>());
    });
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
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z, int64_t views,
                            const PackingLossOptions& options, PackingStats* stats, Diagnostics diagnostics,
                            int64_t emulated_threads) {
    const NoAutocast no_autocast;
    const SavedForward saved = clamp::forward(z, views, options, stats, diagnostics, emulated_threads);
    ctx->save_for_backward({saved.unit, saved.norms, saved.centres, saved.radii, saved.pair_weights,
                            saved.radius_grads});
    ctx->saved_data["energy"] = saved.energy;
    ctx->saved_data["views"] = views;
    ctx->saved_data["rs"] = options.rs;
    ctx->saved_data["log"] = options.log;
    ctx->saved_data["input_type"] = static_cast<int64_t>(z.scalar_type());
    ctx->saved_data["emulated_threads"] = emulated_threads;
    const double loss = options.log ? std::log(saved.energy + kLogEpsilon) : saved.energy;
    return at::scalar_tensor(loss, z.options().dtype(saved.unit.scalar_type()));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const NoAutocast no_autocast;
    const auto tensors = ctx->get_saved_variables();
    SavedForward saved{tensors[0], tensors[1], tensors[2], tensors[3], tensors[4], tensors[5],
                       ctx->saved_data["energy"].toDouble(), ctx->saved_data["views"].toInt()};
    PackingLossOptions options;
    options.rs = ctx->saved_data["rs"].toDouble();
    options.log = ctx->saved_data["log"].toBool();
    const double upstream = grad_outputs[0].defined() ? grad_outputs[0].item<double>() : 0.0;
    const auto input_type = static_cast<at::ScalarType>(ctx->saved_data["input_type"].toInt());
    const int64_t emulated_threads = ctx->saved_data["emulated_threads"].toInt();
    return {clamp::backward(saved, upstream, options, emulated_threads).to(input_type), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void check_packing_loss_arguments(const at::Tensor& z, int64_t views, const PackingLossOptions& o) {
  auto fail = [](const std::string& message) { throw std::invalid_argument(message); };
  if (!z.defined()) fail("z is an undefined tensor");
  if (z.dim() != 2) fail("z must be 2-D [views * batch, dim], got " + std::to_string(z.dim()) + " dimensions");
  const at::ScalarType type = z.scalar_type();
  if (type != at::kFloat && type != at::kDouble && type != at::kBFloat16 && type != at::kHalf)
    fail(std::string("z must be float32, float64, bfloat16 or float16, got ") + c10::toString(type));
  if (views < 2) fail("views must be at least 2 (a sub-manifold needs two views), got " + std::to_string(views));
  if (z.size(0) % views != 0)
    fail("z has " + std::to_string(z.size(0)) + " rows, not a multiple of views = " + std::to_string(views));
  if (z.size(0) / views < 2) fail("batch must be at least 2 (the loss is over pairs of images), got " +
                                  std::to_string(z.size(0) / views));
  if (z.size(1) < 1) fail("dim must be at least 1");
  auto require = [&](bool ok, const char* name, double value, const char* rule) {
    if (!ok) fail(std::string(name) + " must be " + rule + ", got " + format_number(value));
  };
  require(std::isfinite(o.rs) && o.rs > 0, "rs", o.rs, "a finite number > 0");
  require(std::isfinite(o.pot_pow) && o.pot_pow >= 1, "potPow", o.pot_pow, "a finite number >= 1");
  require(std::isfinite(o.min_margin) && o.min_margin >= 0, "minMargin", o.min_margin, "a finite number >= 0");
  require(std::isfinite(o.max_range) && o.max_range > 0, "maxRange", o.max_range, "a finite number > 0");
  require(std::isfinite(o.lw0), "lw0", o.lw0, "finite");
  require(std::isfinite(o.lw1), "lw1", o.lw1, "finite");
  const ValueScan scan = scan_values(z);
  if (scan.first_non_finite >= 0) {
    fail("z holds a non-finite value (" + format_number(z.flatten()[scan.first_non_finite].item<double>()) + ") at index " +
         std::to_string(scan.first_non_finite) + ", in row " + std::to_string(scan.first_non_finite / z.size(1)));
  }
  // A row's squared norm after centring sums dim squares of values up to twice the largest: past this,
  // it overflows the compute precision and the normalised rows, hence the loss, are silently wrong.
  const double largest_representable = type == at::kDouble ? std::numeric_limits<double>::max() : std::numeric_limits<float>::max();
  const double safe_magnitude = std::sqrt(largest_representable / (4.0 * double(z.size(1))));
  if (scan.max_magnitude > safe_magnitude) {
    fail("z's largest magnitude, " + format_number(scan.max_magnitude) + ", overflows the loss's " +
         (type == at::kDouble ? "float64" : "float32") + " arithmetic (its squared norms exceed the type's range above " +
         format_number(safe_magnitude) + " for dim " + std::to_string(z.size(1)) +
         "); the loss normalises z's rows, so divide z by a constant (e.g. its largest magnitude) for the same loss");
  }
}

at::Tensor packing_loss(const at::Tensor& z, int64_t views, const PackingLossOptions& options, PackingStats* stats,
                        Diagnostics diagnostics) {
  check_packing_loss_arguments(z, views, options);
  return PackingLossFunction::apply(z, views, options, stats, diagnostics, int64_t(0));
}

namespace testing {

at::Tensor packing_loss_emulating_gpu(const at::Tensor& z, int64_t views, const PackingLossOptions& options,
                                      PackingStats* stats, int64_t threads_per_block) {
  check_packing_loss_arguments(z, views, options);
  if (!z.device().is_cpu()) throw std::invalid_argument("the emulated GPU path takes a CPU tensor");
  if (threads_per_block < 1) throw std::invalid_argument("threads_per_block must be at least 1");
  return PackingLossFunction::apply(z, views, options, stats, Diagnostics::all, threads_per_block);
}

}  // namespace testing

}  // namespace clamp
