// Everything that differs between the LibTorch versions we support (1.13 through 2.x) lives here,
// so the rest of the core is written once against a single API.
#pragma once

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <string>

#define CLAMP_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace clamp::compat {

// The LibTorch version the core was compiled against ("1.13.0", "2.11.0", ...).
inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// c10::Error::what() carries a C++ backtrace that means nothing to a TypeScript caller; the message
// without it is spelled the same in 1.13 and 2.x, but 2.x can also hold an empty message with only
// context, so fall back to what() then.
inline std::string error_message(const c10::Error& error) {
  std::string message = error.what_without_backtrace();
  return message.empty() ? std::string(error.what()) : message;
}

}  // namespace clamp::compat
