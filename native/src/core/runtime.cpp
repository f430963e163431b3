#include "runtime.h"

#include <torch/version.h>

#include "compat.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>

#include <stdexcept>

#if defined(CLAMP_WITH_CUDA)
#include "cuda/device_query.h"
#endif

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
#if defined(CLAMP_WITH_CUDA)
  info.cuda_kernels = cuda_kernels_built();
  for (int index = 0; index < cuda::device_count(); ++index) {
    const cuda::DeviceInfo device = cuda::device_info(index);
    info.cuda_devices.push_back({device.index, device.name, device.major, device.minor, device.total_memory, device.multiprocessors});
  }
#endif
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
    if (count == 0)
      throw std::invalid_argument(
          "device " + name +
          " was asked for, but this LibTorch sees no CUDA device; use --device cpu, or a CUDA build of LibTorch on a machine with a GPU");
    if (device.has_index() && device.index() >= count)
      throw std::invalid_argument("device " + name + " does not exist: " + std::to_string(count) + " CUDA device(s)");
  } else if (!device.is_cpu()) {
    throw std::invalid_argument("device must be cpu, cuda or cuda:<index>, got " + name);
  }
  return device;
}

bool cuda_kernels_built() {
#if defined(CLAMP_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

std::string no_cuda_kernels_message(const std::string& what) {
  return what +
         " needs clamp-native's CUDA kernels, and this build has none (it was built without a CUDA "
         "compiler, or with -DCLAMP_CUDA=OFF): rebuild with nvcc available (CUDACXX=/path/to/nvcc npx clamp-native "
         "build), or use --device cpu";
}

ComputeSettings resolve_compute_settings(const at::Device& device, const std::string& precision, const std::string& memory_format) {
  if (precision != "auto" && precision != "bf16" && precision != "fp32")
    throw std::invalid_argument("precision must be auto, bf16 or fp32, got " + precision);
  if (memory_format != "auto" && memory_format != "channels_last" && memory_format != "contiguous")
    throw std::invalid_argument("memoryFormat must be auto, channels_last or contiguous, got " + memory_format);
  bool bf16_hardware = false;  // without the CUDA part of the build the capability is not read: float32
#if defined(CLAMP_WITH_CUDA)
  if (device.is_cuda()) bf16_hardware = cuda::device_info(device.has_index() ? device.index() : 0).major >= 8;
#endif
  ComputeSettings settings;
  settings.bf16_autocast = precision == "bf16" || (precision == "auto" && bf16_hardware);
  // On the CPU, LibTorch 2.x's oneDNN convolutions run NHWC natively and reorder NCHW tensors on every
  // call: the default preset's step ran 1.15x faster in channels_last (2 cores, LibTorch 2.13).
  // LibTorch 1.x was not measured, so it keeps NCHW.
  const bool cpu_nhwc = device.is_cpu() && TORCH_VERSION_MAJOR >= 2;
  settings.channels_last =
      memory_format == "channels_last" || (memory_format == "auto" && ((settings.bf16_autocast && device.is_cuda()) || cpu_nhwc));
  return settings;
}

}  // namespace clamp
