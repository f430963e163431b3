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

}  // namespace clamp
