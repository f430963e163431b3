// Process-wide LibTorch settings and facts the addon and `doctor` report.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace clamp {

// Intra-op threads for LibTorch (Debian's build starts with one). Applies to every thread that calls
// prepare_worker_thread() afterwards.
void set_num_threads(int threads);
int num_threads();

// LibTorch's OpenMP backend keeps the thread count per OS thread: a worker thread (libuv's pool, our
// own threads) must adopt the process-wide setting before it runs ATen work.
void prepare_worker_thread();

struct CudaDevice {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability: 8.x Ampere, 9.0 Hopper
  int64_t total_memory = 0;  // bytes
  int multiprocessors = 0;
};

struct RuntimeInfo {
  std::string torch_version;  // compiled against
  std::string parallel_info;  // at::get_parallel_info()
  std::string config;         // at::show_config(): BLAS, LAPACK, CPU capability, build flags of LibTorch
  bool cuda_available = false;
  int cuda_device_count = 0;
  int num_threads = 0;
  bool cuda_kernels = false;             // built with the fused loss's CUDA kernels (CLAMP_WITH_CUDA)
  std::vector<CudaDevice> cuda_devices;  // described only in a build with the kernels
};
RuntimeInfo runtime_info();

// "cpu", "cuda" or "cuda:<index>", checked against the devices this LibTorch sees; throws
// std::invalid_argument saying what to use instead.
at::Device device_named(const std::string& name);

// Whether this build has the fused loss's CUDA kernels (CLAMP_WITH_CUDA).
bool cuda_kernels_built();

// The error text for CUDA work asked of a build without the CUDA kernels: what was asked, and the fix.
std::string no_cuda_kernels_message(const std::string& what);

// How a training step computes on a device, from the user's "auto" | "bf16" | "fp32" precision and
// "auto" | "channels_last" | "contiguous" memory format. "auto" means bfloat16 autocast and channels_last
// on a CUDA device of compute capability 8.0 or newer (Ampere, Hopper: bf16 tensor cores, NHWC
// convolutions); float32 and channels_last on the CPU with LibTorch 2.x (oneDNN's native layout);
// float32 and contiguous everywhere else (and on every GPU in a build without the CUDA part, which
// cannot read the capability). Throws std::invalid_argument for other names.
struct ComputeSettings {
  bool bf16_autocast = false;
  bool channels_last = false;
};
ComputeSettings resolve_compute_settings(const at::Device& device, const std::string& precision, const std::string& memory_format);

}  // namespace clamp
