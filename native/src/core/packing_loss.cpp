#include "packing_loss.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace clamp {
namespace {

constexpr double kNormFloor = 1e-12;    // spec step 2
constexpr double kSqrtEpsilon = 1e-12;  // spec steps 5 and 6
constexpr double kRangeEpsilon = 1e-6;  // spec step 7
constexpr double kLogEpsilon = 1e-6;    // spec step 10

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Everything the backward needs, kept from the forward: O(b^2 + m*b*d).
struct SavedForward {
  at::Tensor unit;          // [m*b, d] centred, unit-norm rows
  at::Tensor norms;         // [m*b, 1] row norms before the floor
  at::Tensor centres;       // [b, d]  c_i, shifted by their mean (distances do not change)
  at::Tensor deviations;    // [m, b, d] unit rows minus their centre
  at::Tensor radii;         // [b]
  at::Tensor pair_weights;  // [b, b] P_ij = dE/dd_ij / d_ij on contact pairs, 0 elsewhere
  at::Tensor radius_grads;  // [b] dE/dr_i
  double energy = 0;
  int64_t views = 0;
};

struct PairPassTotals {
  double pair_energy = 0;  // sum over ordered contact pairs of lw1 * (1 - d/s)^p
  double distance_sum = 0;
  int64_t contacts = 0;
  int64_t active_images = 0;
};

// One pass over the ordered pairs (i, j), i != j, parallel over rows i. Distances come from the Gram
// matrix of the (mean-shifted) centres. Each row writes only its own entries, so no atomics are needed
// and the row totals are summed in a fixed order: the result does not depend on the thread count.
template <typename scalar_t>
PairPassTotals pair_pass(const at::Tensor& gram, const at::Tensor& radii, const PackingLossOptions& o,
                         at::Tensor& pair_weights, at::Tensor& radius_grads) {
  const int64_t b = gram.size(0);
  const scalar_t* g = gram.data_ptr<scalar_t>();
  const scalar_t* r = radii.data_ptr<scalar_t>();
  scalar_t* weights = pair_weights.data_ptr<scalar_t>();
  scalar_t* rgrad = radius_grads.data_ptr<scalar_t>();
  std::vector<double> row_energy(b, 0.0), row_distance(b, 0.0);
  std::vector<int64_t> row_contacts(b, 0);
  const double p = o.pot_pow;

  at::parallel_for(0, b, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const double gii = g[i * b + i];
      const double ri = r[i];
      double energy = 0, distance = 0, dr = 0;
      int64_t contacts = 0;
      for (int64_t j = 0; j < b; ++j) {
        scalar_t& weight = weights[i * b + j];
        weight = 0;
        if (j == i) continue;
        const double squared = std::max(gii + double(g[j * b + j]) - 2.0 * double(g[i * b + j]), 0.0);
        const double dij = std::sqrt(squared + kSqrtEpsilon);
        distance += dij;
        const double unclamped = ri + double(r[j]) + kRangeEpsilon;
        const bool clamped = unclamped > o.max_range;  // at equality the gradient flows, as torch.clamp
        const double s = clamped ? o.max_range : unclamped;
        if (!(dij > o.min_margin && dij < s)) continue;
        ++contacts;
        const double x = 1.0 - dij / s;
        const double x_pow_minus_1 = std::pow(x, p - 1.0);
        energy += o.lw1 * x * x_pow_minus_1;
        // Unordered pair energy lw1 x^p: dE/dd = -w / s, dE/ds = w d / s^2, with w = lw1 p x^(p-1).
        const double w = o.lw1 * p * x_pow_minus_1;
        weight = static_cast<scalar_t>(-w / (s * dij));
        if (!clamped) dr += w * dij / (s * s);
      }
      row_energy[i] = energy;
      row_distance[i] = distance;
      row_contacts[i] = contacts;
      rgrad[i] = static_cast<scalar_t>(dr + o.lw0);
    }
  });

  PairPassTotals totals;
  for (int64_t i = 0; i < b; ++i) {
    totals.pair_energy += row_energy[i];
    totals.distance_sum += row_distance[i];
    totals.contacts += row_contacts[i];
    totals.active_images += row_contacts[i] > 0 ? 1 : 0;
  }
  return totals;
}

SavedForward forward(const at::Tensor& z_in, int64_t views, const PackingLossOptions& o, PackingStats* stats) {
  const at::Tensor z = z_in.contiguous();
  const int64_t m = views, rows = z.size(0), d = z.size(1), b = rows / m;
  SavedForward saved;
  saved.views = m;

  const at::Tensor centred = z - z.mean(0, /*keepdim=*/true);                     // step 1
  saved.norms = centred.norm(2, 1, /*keepdim=*/true);
  saved.unit = centred / saved.norms.clamp_min(kNormFloor);                        // step 2
  const at::Tensor unit3 = saved.unit.view({m, b, d});
  const at::Tensor centres = unit3.mean(0);                                        // step 3
  saved.deviations = unit3 - centres;
  const at::Tensor spread = saved.deviations.pow(2).sum(std::vector<int64_t>{0, 2}) / double(m - 1);   // step 4
  saved.radii = (spread / double(std::min(d, m)) + kSqrtEpsilon).sqrt() * o.rs;    // step 5
  // Shifting every centre by their mean leaves each c_i - c_j unchanged but makes the Gram entries
  // smaller, which keeps ||c_i||^2 + ||c_j||^2 - 2 c_i.c_j from cancelling badly in float32.
  saved.centres = centres - centres.mean(0, /*keepdim=*/true);
  const at::Tensor gram = saved.centres.mm(saved.centres.t()).contiguous();       // step 6, via Gram

  saved.pair_weights = at::empty({b, b}, z.options());
  saved.radius_grads = at::empty({b}, z.options());
  const at::Tensor radii = saved.radii.contiguous();
  PairPassTotals totals;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "clamp_packing_pair_pass", [&] {
    totals = pair_pass<scalar_t>(gram, radii, o, saved.pair_weights, saved.radius_grads);
  });
  saved.energy = 0.5 * totals.pair_energy + o.lw0 * radii.sum().item<double>();   // step 9

  if (stats != nullptr) {
    stats->energy = saved.energy;
    stats->mean_radius = radii.mean().item<double>() / o.rs;
    stats->mean_distance = totals.distance_sum / double(b * (b - 1));
    stats->contacts_per_image = double(totals.contacts) / double(b);
    stats->activity = double(totals.active_images) / double(b);
    // argmin_j ||u - c_j||^2 = argmax_j (2 u.c_j - ||c_j||^2): one [m*b, d] x [d, b] product.
    const at::Tensor scores = saved.unit.mm(centres.t()) * 2.0 - centres.pow(2).sum(1).unsqueeze(0);
    const at::Tensor own = at::arange(b, z.options().dtype(at::kLong)).repeat({m});
    stats->nearest_centre_accuracy = scores.argmax(1).eq(own).to(at::kDouble).mean().item<double>();
  }
  return saved;
}

// dL/dz for the scalar upstream gradient grad_loss; see forward() for the steps it reverses.
at::Tensor backward(const SavedForward& saved, double grad_loss, const PackingLossOptions& o) {
  const int64_t m = saved.views, b = saved.radii.size(0), d = saved.unit.size(1);
  const double grad_energy = o.log ? grad_loss / (saved.energy + kLogEpsilon) : grad_loss;

  // dE/dc_i = sum_j P_ij (c_i - c_j): one [b, b] x [b, d] product.
  const at::Tensor& weights = saved.pair_weights;
  const at::Tensor grad_centres = weights.sum(1, /*keepdim=*/true) * saved.centres - weights.mm(saved.centres);
  // dr_i/dt_i = rs^2 / (2 r_i min(d, m)); dt_i/du_vi = 2 (u_vi - c_i) / (m - 1) (the path through c_i
  // cancels because the deviations of image i sum to zero).
  const at::Tensor grad_spread = saved.radius_grads * (o.rs * o.rs) / (2.0 * double(std::min(d, m))) / saved.radii;
  const at::Tensor grad_unit =
      (grad_centres.unsqueeze(0) / double(m) + saved.deviations * (grad_spread * (2.0 / double(m - 1))).view({1, b, 1}))
          .view({m * b, d});
  // Through u = y / max(||y||, floor): project out the radial part where the norm is above the floor.
  const at::Tensor above_floor = saved.norms > kNormFloor;
  const at::Tensor radial = at::where(above_floor, (saved.unit * grad_unit).sum(1, /*keepdim=*/true),
                                      at::zeros_like(saved.norms));
  const at::Tensor grad_centred = (grad_unit - saved.unit * radial) / saved.norms.clamp_min(kNormFloor);
  // Through the global centring.
  return (grad_centred - grad_centred.mean(0, /*keepdim=*/true)) * grad_energy;
}

class PackingLossFunction : public torch::autograd::Function<PackingLossFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z, int64_t views,
                            const PackingLossOptions& options, PackingStats* stats) {
    const SavedForward saved = clamp::forward(z, views, options, stats);
    ctx->save_for_backward({saved.unit, saved.norms, saved.centres, saved.deviations, saved.radii,
                            saved.pair_weights, saved.radius_grads});
    ctx->saved_data["energy"] = saved.energy;
    ctx->saved_data["views"] = views;
    ctx->saved_data["rs"] = options.rs;
    ctx->saved_data["log"] = options.log;
    const double loss = options.log ? std::log(saved.energy + kLogEpsilon) : saved.energy;
    return at::scalar_tensor(loss, z.options());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto tensors = ctx->get_saved_variables();
    SavedForward saved{tensors[0], tensors[1], tensors[2], tensors[3], tensors[4], tensors[5], tensors[6],
                       ctx->saved_data["energy"].toDouble(), ctx->saved_data["views"].toInt()};
    PackingLossOptions options;
    options.rs = ctx->saved_data["rs"].toDouble();
    options.log = ctx->saved_data["log"].toBool();
    const double upstream = grad_outputs[0].defined() ? grad_outputs[0].item<double>() : 0.0;
    return {clamp::backward(saved, upstream, options), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void check_packing_loss_arguments(const at::Tensor& z, int64_t views, const PackingLossOptions& o) {
  auto fail = [](const std::string& message) { throw std::invalid_argument(message); };
  if (!z.defined()) fail("z is an undefined tensor");
  if (z.dim() != 2) fail("z must be 2-D [views * batch, dim], got " + std::to_string(z.dim()) + " dimensions");
  if (z.scalar_type() != at::kFloat && z.scalar_type() != at::kDouble)
    fail(std::string("z must be float32 or float64, got ") + c10::toString(z.scalar_type()));
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
  const at::Tensor finite = at::isfinite(z).flatten();
  if (!finite.all().item<bool>()) {
    const int64_t index = finite.logical_not().nonzero()[0][0].item<int64_t>();
    fail("z holds a non-finite value (" + format_number(z.flatten()[index].item<double>()) + ") at index " +
         std::to_string(index));
  }
}

at::Tensor packing_loss(const at::Tensor& z, int64_t views, const PackingLossOptions& options, PackingStats* stats) {
  check_packing_loss_arguments(z, views, options);
  return PackingLossFunction::apply(z, views, options, stats);
}

}  // namespace clamp
