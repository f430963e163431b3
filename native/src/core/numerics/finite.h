// Finding NaN and infinity in a tensor cheaply, and saying where they are: the inputs every native
// entry point refuses before they can poison weights or BatchNorm statistics.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace clamp {

struct ValueScan {
  int64_t first_non_finite = -1;  // flat index, or -1 when every value is finite
  double max_magnitude = 0;       // the largest |value| (meaningful only when all are finite)
};

// One pass over a floating tensor (any device): where its first NaN or infinity is, and its largest
// magnitude, for checks that finite values will not overflow what is computed from them.
ValueScan scan_values(const at::Tensor& values);

// The flat index of the first NaN or infinity in a floating tensor (any device), or -1.
int64_t first_non_finite(const at::Tensor& values);

// "nan at index 123" style description of the value at flat index `index`.
std::string describe_value_at(const at::Tensor& values, int64_t index);

// Throws std::invalid_argument "<name> hold a non-finite value: nan at index i, in <item> k of n; <advice>"
// when `values` (a floating tensor whose first dimension counts items: images, rows) holds one.
void require_finite(const at::Tensor& values, const std::string& name, const std::string& item, const std::string& advice);

}  // namespace clamp
