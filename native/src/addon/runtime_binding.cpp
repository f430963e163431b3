// runtimeInfo(), setNumThreads(n), numThreads(): what `doctor` reports and the thread setting;
// cpuMemory(), releaseCachedCpuMemory(): the caching CPU allocator (core/memory/caching_cpu_allocator.h).
#include "addon/bindings.h"
#include "addon/compute_thread.h"
#include "addon/errors.h"
#include "core/distributed/collective.h"
#include "core/memory/caching_cpu_allocator.h"
#include "core/runtime.h"

#ifndef CLAMP_BUILD_SYSTEM
#define CLAMP_BUILD_SYSTEM "unknown"
#endif
#ifndef CLAMP_CXX_COMPILER
#define CLAMP_CXX_COMPILER "unknown"
#endif
#ifndef CLAMP_BUILD_TYPE
#define CLAMP_BUILD_TYPE "unknown"
#endif

namespace clamp::addon {
namespace {

Napi::Value runtime_info_binding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const RuntimeInfo runtime = runtime_info();
  Napi::Object result = Napi::Object::New(env);
  result.Set("torchVersion", runtime.torch_version);
  result.Set("parallelInfo", runtime.parallel_info);
  result.Set("torchConfig", runtime.config);
  result.Set("cudaAvailable", runtime.cuda_available);
  result.Set("cudaDeviceCount", runtime.cuda_device_count);
  result.Set("numThreads", runtime.num_threads);
  Napi::Array devices = Napi::Array::New(env, runtime.cuda_devices.size());
  for (size_t k = 0; k < runtime.cuda_devices.size(); ++k) {
    const CudaDevice& device = runtime.cuda_devices[k];
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("index", device.index);
    entry.Set("name", device.name);
    entry.Set("computeCapability", std::to_string(device.major) + "." + std::to_string(device.minor));
    entry.Set("memoryBytes", static_cast<double>(device.total_memory));
    entry.Set("multiprocessors", device.multiprocessors);
    devices[k] = entry;
  }
  result.Set("cudaDevices", devices);
  Napi::Object build = Napi::Object::New(env);
  build.Set("buildSystem", CLAMP_BUILD_SYSTEM);
  build.Set("compiler", CLAMP_CXX_COMPILER);
  build.Set("buildType", CLAMP_BUILD_TYPE);
  build.Set("cxxStandard", static_cast<double>(__cplusplus));
#ifdef _GLIBCXX_USE_CXX11_ABI
  build.Set("cxx11Abi", _GLIBCXX_USE_CXX11_ABI == 1);
#else
  build.Set("cxx11Abi", env.Null());  // not libstdc++: the question does not apply
#endif
  build.Set("napiVersion", NAPI_VERSION);
  build.Set("distributed", clamp::distributed_available() ? "gloo" : "none");
  build.Set("cudaKernels", runtime.cuda_kernels);
  result.Set("build", build);
  return result;
}

Napi::Value cpu_memory_binding(const Napi::CallbackInfo& info) {
  const CpuAllocatorStats stats = cpu_allocator_stats();
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("cachingAllocator", stats.installed);
  result.Set("cachedBytes", static_cast<double>(stats.cached_bytes));
  result.Set("cachedBlocks", static_cast<double>(stats.cached_blocks));
  result.Set("limitBytes", static_cast<double>(stats.limit_bytes));
  result.Set("reused", static_cast<double>(stats.reused));
  result.Set("allocated", static_cast<double>(stats.allocated));
  return result;
}

Napi::Value release_cached_cpu_memory_binding(const Napi::CallbackInfo& info) {
  release_cached_cpu_memory();
  return info.Env().Undefined();
}

Napi::Value set_num_threads_binding(const Napi::CallbackInfo& info) {
  if (info.Length() != 1 || !info[0].IsNumber()) throw_type_error(info.Env(), "setNumThreads(threads: number)");
  const double threads = info[0].As<Napi::Number>().DoubleValue();
  if (!(threads >= 1) || threads != static_cast<int>(threads))
    throw Napi::RangeError::New(info.Env(), "threads must be a whole number >= 1, got " + std::to_string(threads));
  set_num_threads(static_cast<int>(threads));
  return info.Env().Undefined();
}

Napi::Value num_threads_binding(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

Napi::Value stop_compute_thread_binding(const Napi::CallbackInfo& info) {
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw_type_error(info.Env(), "stopComputeThread(waitMs: number, exitCode: number)");
  stop_compute_thread(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace

void register_runtime(Napi::Env env, Napi::Object exports) {
  exports.Set("runtimeInfo", guarded<runtime_info_binding>(env));
  exports.Set("setNumThreads", guarded<set_num_threads_binding>(env));
  exports.Set("numThreads", guarded<num_threads_binding>(env));
  exports.Set("stopComputeThread", guarded<stop_compute_thread_binding>(env));
  exports.Set("cpuMemory", guarded<cpu_memory_binding>(env));
  exports.Set("releaseCachedCpuMemory", guarded<release_cached_cpu_memory_binding>(env));
}

}  // namespace clamp::addon
