// The CUDA devices this process sees, behind a plain C++ interface (no CUDA headers): compiled by nvcc
// with the kernels, linked only in a CUDA build (CLAMP_WITH_CUDA).
#pragma once

#include <cstdint>
#include <string>

namespace clamp::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int64_t total_memory = 0;  // bytes
  int multiprocessors = 0;
};

// 0 when there is no driver or no device.
int device_count();
// Throws std::runtime_error naming the device when the runtime cannot describe it.
DeviceInfo device_info(int index);

}  // namespace clamp::cuda
