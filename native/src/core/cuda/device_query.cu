// The CUDA devices this process sees, from the CUDA runtime (interface: device_query.h).
#include "cuda/device_query.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace clamp::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error: no driver or no device means zero devices
    return 0;
  }
  return count;
}

DeviceInfo device_info(int index) {
  cudaDeviceProp properties{};
  const cudaError_t error = cudaGetDeviceProperties(&properties, index);
  if (error != cudaSuccess) throw std::runtime_error("cannot read CUDA device " + std::to_string(index) + ": " + cudaGetErrorString(error));
  DeviceInfo info;
  info.index = index;
  info.name = properties.name;
  info.major = properties.major;
  info.minor = properties.minor;
  info.total_memory = static_cast<int64_t>(properties.totalGlobalMem);
  info.multiprocessors = properties.multiProcessorCount;
  return info;
}

}  // namespace clamp::cuda
