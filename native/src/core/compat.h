// Everything that differs between the LibTorch versions we support (1.13 through 2.x) lives here,
// so the rest of the core is written once against a single API.
#pragma once

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <string>

#define CLAMP_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace clamp::compat {

// The LibTorch version the core was compiled against ("1.13.0", "2.11.0", ...).
inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH);
}

// c10::Error::what() carries a C++ backtrace that means nothing to a TypeScript caller; the message
// without it is spelled the same in 1.13 and 2.x, but 2.x can also hold an empty message with only
// context, so fall back to what() then.
inline std::string error_message(const c10::Error& error) {
  std::string message = error.what_without_backtrace();
  return message.empty() ? std::string(error.what()) : message;
}

// Autocast to `dtype` on one device type for the guard's lifetime (autocast state is thread-local), then
// the previous state back and, leaving the outermost guard, the cast-weight cache cleared, as PyTorch's
// `with torch.autocast(...)` does. LibTorch 2.4 replaced the per-device functions with device-typed ones.
class AutocastGuard {
 public:
  AutocastGuard(at::DeviceType device_type, at::ScalarType dtype) : device_type_(device_type) {
#if CLAMP_TORCH_VERSION_AT_LEAST(2, 4)
    previous_enabled_ = at::autocast::is_autocast_enabled(device_type);
    previous_dtype_ = at::autocast::get_autocast_dtype(device_type);
    at::autocast::set_autocast_enabled(device_type, true);
    at::autocast::set_autocast_dtype(device_type, dtype);
#else
    if (device_type == at::kCUDA) {
      previous_enabled_ = at::autocast::is_enabled();
      previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      previous_enabled_ = at::autocast::is_cpu_enabled();
      previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if CLAMP_TORCH_VERSION_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(device_type_, previous_enabled_);
    at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
#else
    if (device_type_ == at::kCUDA) {
      at::autocast::set_enabled(previous_enabled_);
      at::autocast::set_autocast_gpu_dtype(previous_dtype_);
    } else {
      at::autocast::set_cpu_enabled(previous_enabled_);
      at::autocast::set_autocast_cpu_dtype(previous_dtype_);
    }
#endif
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  at::DeviceType device_type_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace clamp::compat
