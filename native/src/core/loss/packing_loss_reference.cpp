// The spec's formula written the obvious way, with autograd and a [b, b, d] tensor of centre
// differences. It exists so the fused operation has an independent yardstick.
#include "loss/packing_loss.h"

namespace clamp {

at::Tensor packing_loss_reference(const at::Tensor& z, int64_t views, const PackingLossOptions& o) {
  check_packing_loss_arguments(z, views, o);
  const int64_t m = views, d = z.size(1), b = z.size(0) / m;
  const at::Tensor centred = z - z.mean(0, true);
  const at::Tensor unit = centred / centred.norm(2, 1, true).clamp_min(1e-12);
  const at::Tensor unit3 = unit.view({m, b, d});
  const at::Tensor centres = unit3.mean(0);
  const at::Tensor spread = (unit3 - centres).pow(2).sum(std::vector<int64_t>{0, 2}) / double(m - 1);
  const at::Tensor radii = (spread / double(std::min(d, m)) + 1e-12).sqrt() * o.rs;
  const at::Tensor differences = centres.unsqueeze(1) - centres.unsqueeze(0);  // [b, b, d]
  const at::Tensor distances = (differences.pow(2).sum(-1) + 1e-12).sqrt();
  const at::Tensor range = (radii.unsqueeze(1) + radii.unsqueeze(0) + 1e-6).clamp_max(o.max_range);
  const at::Tensor off_diagonal = at::eye(b, z.options().dtype(at::kBool)).logical_not();
  const at::Tensor contact = (distances > o.min_margin).logical_and(distances < range).logical_and(off_diagonal);
  // Select before the power so that no NaN from a negative base reaches the backward.
  const at::Tensor overlap = at::where(contact, 1.0 - distances / range, at::zeros_like(distances));
  const at::Tensor energy = 0.5 * overlap.pow(o.pot_pow).sum() * o.lw1 + o.lw0 * radii.sum();
  return o.log ? (energy + 1e-6).log() : energy;
}

}  // namespace clamp
