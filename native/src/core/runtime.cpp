#include "runtime.h"

#include "compat.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>

#include <stdexcept>

namespace clamp {

void set_num_threads(int threads) {
  if (threads < 1) throw std::invalid_argument("threads must be at least 1, got " + std::to_string(threads));
  at::set_num_threads(threads);
}

int num_threads() { return at::get_num_threads(); }

void prepare_worker_thread() { at::init_num_threads(); }

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.torch_version = compat::torch_version();
  info.parallel_info = at::get_parallel_info();
  info.config = at::show_config();
  // The C++ frontend's calls, stable from 1.13 through 2.x.
  info.cuda_available = torch::cuda::is_available();
  info.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  info.num_threads = at::get_num_threads();
  return info;
}

at::Device device_named(const std::string& name) {
  at::Device device(at::kCPU);
  try {
    device = at::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("device must be cpu, cuda or cuda:<index>, got " + name);
  }
  if (device.is_cuda()) {
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) throw std::invalid_argument("device " + name + " was asked for, but this LibTorch sees no CUDA device; use --device cpu, or a CUDA build of LibTorch on a machine with a GPU");
    if (device.has_index() && device.index() >= count)
      throw std::invalid_argument("device " + name + " does not exist: " + std::to_string(count) + " CUDA device(s)");
  } else if (!device.is_cpu()) {
    throw std::invalid_argument("device must be cpu, cuda or cuda:<index>, got " + name);
  }
  return device;
}

}  // namespace clamp
