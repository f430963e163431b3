// The packing loss's CPU loops (the forward's steps 1-9 and the backward's steps 2-5): the path CPU
// tensors take. They share their per-image and per-pair arithmetic with the CUDA kernels
// (packing_loss_math.h) but are laid out for the CPU, parallel over images or rows.
#include "loss/packing_loss_internal.h"

#include "loss/packing_loss_math.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace clamp::packing_loss_detail {
namespace {

using loss_math::kNormFloor;

// Items per parallel chunk: about 256k values per task. Smaller tasks measured slower on a 2-vCPU VM,
// where waking the second OpenMP thread costs more than the work it takes over.
int64_t grain_for(int64_t values_per_item) { return std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, values_per_item)); }

// Steps 1-5 for each image i in one pass over its m views (parallel over images): centre and normalise
// the rows, average them into c_i, and measure their spread around it.
template <typename scalar_t>
void normalise_and_group(const scalar_t* z, const scalar_t* mean, int64_t m, int64_t b, int64_t d, double rs, scalar_t* unit,
                         scalar_t* norms, scalar_t* centres, scalar_t* radii) {
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

}  // namespace

at::Tensor cpu_forward(const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o, SavedForward& saved) {
  const int64_t m = saved.views, d = z.size(1), b = z.size(0) / m;
  at::Tensor row_totals = at::empty({3, b}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "clamp_packing_loss_forward", [&] {
    normalise_and_group<scalar_t>(z.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), m, b, d, o.rs, saved.unit.data_ptr<scalar_t>(),
                                  saved.norms.data_ptr<scalar_t>(), saved.centres.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>());
    const at::Tensor shifted = shifted_centres(saved.centres);
    const at::Tensor gram = shifted.mm(shifted.t()).contiguous();
    pair_pass<scalar_t>(gram, saved.radii, o, saved.pair_weights, saved.radius_grads, row_totals);
  });
  return row_totals;
}

void cpu_backward_rows(const SavedForward& saved, const at::Tensor& grad_centres, const at::Tensor& spread_coefficient, double scale,
                       at::Tensor& grad) {
  const int64_t m = saved.views, b = saved.radii.size(0), d = saved.unit.size(1);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "clamp_packing_loss_backward", [&] {
    backward_rows<scalar_t>(saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(), saved.centres.data_ptr<scalar_t>(),
                            grad_centres.data_ptr<scalar_t>(), spread_coefficient.data_ptr<double>(), m, b, d, scale,
                            grad.data_ptr<scalar_t>());
  });
}

}  // namespace clamp::packing_loss_detail
