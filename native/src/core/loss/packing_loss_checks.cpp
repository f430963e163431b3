// The packing loss's argument checks (packing_loss.h, check_packing_loss_arguments): every entry point
// runs them first, so an unusable input fails with a message naming it rather than giving a wrong loss.
#include "loss/packing_loss.h"

#include "loss/packing_loss_internal.h"
#include "numerics/finite.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace clamp {
namespace packing_loss_detail {

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace packing_loss_detail

using packing_loss_detail::format_number;

void check_packing_loss_arguments(const at::Tensor& z, int64_t views, const PackingLossOptions& o) {
  auto fail = [](const std::string& message) { throw std::invalid_argument(message); };
  if (!z.defined()) fail("z is an undefined tensor");
  if (z.dim() != 2) fail("z must be 2-D [views * batch, dim], got " + std::to_string(z.dim()) + " dimensions");
  const at::ScalarType type = z.scalar_type();
  if (type != at::kFloat && type != at::kDouble && type != at::kBFloat16 && type != at::kHalf)
    fail(std::string("z must be float32, float64, bfloat16 or float16, got ") + c10::toString(type));
  if (views < 2) fail("views must be at least 2 (a sub-manifold needs two views), got " + std::to_string(views));
  if (z.size(0) % views != 0) fail("z has " + std::to_string(z.size(0)) + " rows, not a multiple of views = " + std::to_string(views));
  if (z.size(0) / views < 2) fail("batch must be at least 2 (the loss is over pairs of images), got " + std::to_string(z.size(0) / views));
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

}  // namespace clamp
