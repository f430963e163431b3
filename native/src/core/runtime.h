// Process-wide LibTorch settings and facts the addon and `doctor` report.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace clamp {

// Intra-op threads for LibTorch (Debian's build starts with one). Applies to every thread that calls
// prepare_worker_thread() afterwards.
void set_num_threads(int threads);
int num_threads();

// LibTorch's OpenMP backend keeps the thread count per OS thread: a worker thread (libuv's pool, our
// own threads) must adopt the process-wide setting before it runs ATen work.
void prepare_worker_thread();

struct RuntimeInfo {
  std::string torch_version;   // compiled against
  std::string parallel_info;   // at::get_parallel_info()
  std::string config;          // at::show_config(): BLAS, LAPACK, CPU capability, build flags of LibTorch
  bool cuda_available = false;
  int cuda_device_count = 0;
  int num_threads = 0;
};
RuntimeInfo runtime_info();

// "cpu", "cuda" or "cuda:<index>", checked against the devices this LibTorch sees; throws
// std::invalid_argument saying what to use instead.
at::Device device_named(const std::string& name);

}  // namespace clamp
