// The fused packing loss on CUDA: kernels that run the block programs of packing_loss_blocks.h with one
// CUDA thread per thread index. The arithmetic per pair and per coordinate is packing_loss_math.h's,
// the same the CPU path runs; the matrix products (Gram matrix, weights x centres) stay in cuBLAS
// through ATen.
#include "cuda/packing_loss_kernels.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace clamp::cuda {
namespace {

constexpr int kThreads = 256;  // per block; a multiple of the warp size

void check_launch(const char* kernel) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess)
    throw std::runtime_error(std::string("CUDA kernel ") + kernel + " failed to launch: " + cudaGetErrorString(error));
}

// The block's total of every thread's value, returned to every thread. `scratch` holds one value per
// warp; warps are added in a fixed order, so the result does not vary from run to run.
__device__ double block_total(double value, double* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < int(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

template <int N>
__device__ Totals<N> block_total(Totals<N> values, double* scratch) {
  for (int k = 0; k < N; ++k) values.value[k] = block_total(values.value[k], scratch);
  return values;
}

// The Block of packing_loss_blocks.h on a GPU. Its members are __host__ __device__ only so that the
// block programs (themselves __host__ __device__) may call them; they run on the device alone.
struct DeviceBlock {
  double* scratch;
  template <class F>
  __host__ __device__ void each(F f) {
#if defined(__CUDA_ARCH__)
    f(int64_t(threadIdx.x), int64_t(blockDim.x));
    __syncthreads();
#endif
  }
  template <class F>
  __host__ __device__ auto sum(F f) {
#if defined(__CUDA_ARCH__)
    return block_total(f(int64_t(threadIdx.x), int64_t(blockDim.x)), scratch);
#else
    return decltype(f(int64_t(0), int64_t(1))){};
#endif
  }
  template <class F>
  __host__ __device__ void once(F f) {
#if defined(__CUDA_ARCH__)
    if (threadIdx.x == 0) f();
#endif
  }
};

template <typename T>
__global__ void normalise_and_group_kernel(const NormaliseArgs<T> args) {
  __shared__ double scratch[32];
  DeviceBlock block{scratch};
  normalise_and_group_block(block, args, int64_t(blockIdx.x));
}

template <typename T>
__global__ void pair_pass_kernel(const PairPassArgs<T> args) {
  __shared__ double scratch[32];
  DeviceBlock block{scratch};
  pair_pass_block(block, args, int64_t(blockIdx.x));
}

template <typename T>
__global__ void backward_rows_kernel(const BackwardArgs<T> args) {
  __shared__ double scratch[32];
  DeviceBlock block{scratch};
  backward_rows_block(block, args, int64_t(blockIdx.x));
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

template <typename T>
void normalise_and_group(const NormaliseArgs<T>& args, void* stream) {
  normalise_and_group_kernel<T><<<dim3(unsigned(args.b)), kThreads, 0, as_stream(stream)>>>(args);
  check_launch("normalise_and_group");
}

template <typename T>
void pair_pass(const PairPassArgs<T>& args, void* stream) {
  pair_pass_kernel<T><<<dim3(unsigned(args.b)), kThreads, 0, as_stream(stream)>>>(args);
  check_launch("pair_pass");
}

template <typename T>
void backward_rows(const BackwardArgs<T>& args, void* stream) {
  backward_rows_kernel<T><<<dim3(unsigned(args.m * args.b)), kThreads, 0, as_stream(stream)>>>(args);
  check_launch("backward_rows");
}

#define CLAMP_INSTANTIATE(T)                                            \
  template void normalise_and_group<T>(const NormaliseArgs<T>&, void*); \
  template void pair_pass<T>(const PairPassArgs<T>&, void*);            \
  template void backward_rows<T>(const BackwardArgs<T>&, void*);
CLAMP_INSTANTIATE(float)
CLAMP_INSTANTIATE(double)
#undef CLAMP_INSTANTIATE

}  // namespace clamp::cuda
