// The ATen glue of the GPU's block programs (cuda/packing_loss_blocks.h): the same glue launches them
// as CUDA kernels on the tensors' device (cuda/packing_loss_kernels.cu, in a CUDA build) or, for the
// tests, emulates them on the CPU (EmulatedLaunch), so the CPU tests check the code a GPU runs.
#include "loss/packing_loss_internal.h"

#include "runtime.h"

#include <ATen/Parallel.h>

#include "cuda/packing_loss_blocks.h"

#if defined(CLAMP_WITH_CUDA)  // the ATen glue of the CUDA kernels: only in a CUDA build
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/packing_loss_kernels.h"
#endif

#include <stdexcept>

namespace clamp::packing_loss_detail {
namespace {

// Where the block programs of cuda/packing_loss_blocks.h run: CUDA kernels on the tensors' device, or,
// for the tests, emulated on the CPU (EmulatedLaunch). Both go through the same glue below. CPU training
// keeps the loops of packing_loss_cpu_kernels.cpp: they share the arithmetic (packing_loss_math.h) but
// are laid out for the CPU (a branch-free distance pass the compiler vectorises), which one emulated
// thread per block is not.
struct EmulatedLaunch {
  int64_t threads;  // per emulated block

  template <class Program>
  void grid(int64_t blocks, Program program) const {
    // Blocks write disjoint outputs, as on a GPU: they can run in parallel here too.
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      cuda::EmulatedBlock block{threads};
      for (int64_t k = begin; k < end; ++k) program(block, k);
    });
  }
  template <typename T>
  void normalise_and_group(const cuda::NormaliseArgs<T>& a) const {
    grid(a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::normalise_and_group_block(block, a, k); });
  }
  template <typename T>
  void pair_pass(const cuda::PairPassArgs<T>& a) const {
    grid(a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::pair_pass_block(block, a, k); });
  }
  template <typename T>
  void backward_rows(const cuda::BackwardArgs<T>& a) const {
    grid(a.m * a.b, [&](cuda::EmulatedBlock& block, int64_t k) { cuda::backward_rows_block(block, a, k); });
  }
};

#if defined(CLAMP_WITH_CUDA)
struct CudaLaunch {
  void* stream;  // the device's current stream, where ATen's own work on these tensors goes
  explicit CudaLaunch(const at::Tensor& on) : stream(c10::cuda::getCurrentCUDAStream(on.device().index()).stream()) {}
  template <typename T>
  void normalise_and_group(const cuda::NormaliseArgs<T>& a) const {
    cuda::normalise_and_group(a, stream);
  }
  template <typename T>
  void pair_pass(const cuda::PairPassArgs<T>& a) const {
    cuda::pair_pass(a, stream);
  }
  template <typename T>
  void backward_rows(const cuda::BackwardArgs<T>& a) const {
    cuda::backward_rows(a, stream);
  }
};
#else
[[noreturn]] void no_cuda_kernels() { throw std::invalid_argument(no_cuda_kernels_message("the packing loss on a CUDA tensor")); }
#endif

// Steps 1-9 through the block programs: two launches around one matrix product (cuBLAS on a GPU).
// Fills saved and returns the per-row totals, on the tensors' device.
template <class Launch>
at::Tensor block_forward(const Launch& launch, const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o,
                         SavedForward& saved) {
  const int64_t m = saved.views, d = z.size(1), b = z.size(0) / m;
  at::Tensor row_totals = at::empty({3, b}, z.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "clamp_packing_loss_block_forward", [&] {
    launch.normalise_and_group(cuda::NormaliseArgs<scalar_t>{z.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), m, b, d, o.rs,
                                                             saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(),
                                                             saved.centres.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>()});
    const at::Tensor shifted = shifted_centres(saved.centres);
    const at::Tensor gram = shifted.mm(shifted.t()).contiguous();
    const at::Tensor squared_norms = gram.diagonal().contiguous();
    launch.pair_pass(cuda::PairPassArgs<scalar_t>{
        gram.data_ptr<scalar_t>(), squared_norms.data_ptr<scalar_t>(), saved.radii.data_ptr<scalar_t>(), b, pair_constants<scalar_t>(o),
        o.lw1, o.lw0, saved.pair_weights.data_ptr<scalar_t>(), saved.radius_grads.data_ptr<scalar_t>(), row_totals.data_ptr<double>()});
  });
  return row_totals;
}

// Backward of steps 2-5 through the block programs, into grad (before the centring's backward).
template <class Launch>
void block_backward_rows(const Launch& launch, const SavedForward& saved, const at::Tensor& grad_centres,
                         const at::Tensor& spread_coefficient, double scale, at::Tensor& grad) {
  const int64_t m = saved.views, b = saved.radii.size(0), d = saved.unit.size(1);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "clamp_packing_loss_block_backward", [&] {
    launch.backward_rows(cuda::BackwardArgs<scalar_t>{saved.unit.data_ptr<scalar_t>(), saved.norms.data_ptr<scalar_t>(),
                                                      saved.centres.data_ptr<scalar_t>(), grad_centres.data_ptr<scalar_t>(),
                                                      spread_coefficient.data_ptr<double>(), m, b, d, scale, grad.data_ptr<scalar_t>()});
  });
}

}  // namespace

// A CUDA tensor takes the CUDA kernels (in a build without them, the error saying so); a CPU tensor, the
// emulation. The forward's totals come back to the CPU, where the forward sums them.
at::Tensor block_programs_forward(const at::Tensor& z, const at::Tensor& mean, const PackingLossOptions& o, SavedForward& saved,
                                  int64_t emulated_threads) {
  if (z.is_cuda()) {
#if defined(CLAMP_WITH_CUDA)
    const c10::cuda::CUDAGuard guard(z.device());
    return block_forward(CudaLaunch(z), z, mean, o, saved).cpu();
#else
    no_cuda_kernels();
#endif
  }
  return block_forward(EmulatedLaunch{emulated_threads}, z, mean, o, saved);
}

void block_programs_backward_rows(const SavedForward& saved, const at::Tensor& grad_centres, const at::Tensor& spread_coefficient,
                                  double scale, at::Tensor& grad, int64_t emulated_threads) {
  if (grad.is_cuda()) {
#if defined(CLAMP_WITH_CUDA)
    const c10::cuda::CUDAGuard guard(grad.device());
    block_backward_rows(CudaLaunch(grad), saved, grad_centres, spread_coefficient, scale, grad);
    return;
#else
    no_cuda_kernels();
#endif
  }
  block_backward_rows(EmulatedLaunch{emulated_threads}, saved, grad_centres, spread_coefficient, scale, grad);
}

}  // namespace clamp::packing_loss_detail
