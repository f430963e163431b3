#include "numerics/finite.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace clamp {

// On the CPU one parallel pass with no temporaries (at::isfinite would allocate and fill a mask the
// size of the input first); on a GPU the mask is cheap and the index is read back only when something
// is wrong.
ValueScan scan_values(const at::Tensor& values_in) {
  if (!values_in.is_cpu()) {
    const at::Tensor finite = at::isfinite(values_in);
    if (!finite.all().item<bool>()) return {at::logical_not(finite).flatten().nonzero()[0][0].item<int64_t>(), 0.0};
    return {-1, values_in.numel() == 0 ? 0.0 : values_in.abs().max().item<double>()};
  }
  const at::Tensor values = values_in.scalar_type() == at::kDouble ? values_in.contiguous() : values_in.to(at::kFloat).contiguous();
  const int64_t n = values.numel();
  std::atomic<int64_t> first{n};
  std::mutex largest_lock;
  double largest = 0;
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "clamp_scan_values", [&] {
    const scalar_t* data = values.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
      bool finite = true;
      scalar_t chunk_largest = 0;
      for (int64_t k = begin; k < end; ++k) {
        finite &= (data[k] - data[k]) == scalar_t(0);  // false for NaN, inf
        chunk_largest = std::max(chunk_largest, std::abs(data[k]));
      }
      if (finite) {
        const std::lock_guard<std::mutex> guard(largest_lock);
        largest = std::max(largest, double(chunk_largest));
        return;
      }
      for (int64_t k = begin; k < end; ++k) {
        if (!std::isfinite(data[k])) {
          int64_t seen = first.load();
          while (k < seen && !first.compare_exchange_weak(seen, k)) {
          }
          return;
        }
      }
    });
  });
  return {first.load() == n ? -1 : first.load(), largest};
}

int64_t first_non_finite(const at::Tensor& values) { return scan_values(values).first_non_finite; }

std::string describe_value_at(const at::Tensor& values, int64_t index) {
  std::ostringstream out;
  out << values.flatten()[index].item<double>() << " at index " << index;
  return out.str();
}

void require_finite(const at::Tensor& values, const std::string& name, const std::string& item, const std::string& advice) {
  const int64_t index = first_non_finite(values);
  if (index < 0) return;
  std::string where;
  if (values.dim() > 1) {
    const int64_t per_item = values.numel() / values.size(0);
    where = ", in " + item + " " + std::to_string(index / per_item) + " of " + std::to_string(values.size(0));
  }
  throw std::invalid_argument(name + " hold a non-finite value: " + describe_value_at(values, index) + where +
                              (advice.empty() ? "" : "; " + advice));
}

}  // namespace clamp
