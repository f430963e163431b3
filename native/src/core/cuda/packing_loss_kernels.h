// CUDA launches of the fused packing loss's block programs (packing_loss_blocks.h) behind a plain C++
// interface: no CUDA and no ATen headers here, so the ATen glue (loss/packing_loss_block_launch.cpp,
// under CLAMP_WITH_CUDA) and nvcc's translation unit stay apart. Every pointer in the arguments is device
// memory; `stream` is a cudaStream_t. Launch failures throw std::runtime_error. T is float or double;
// reductions accumulate in double whatever T is.
#pragma once

#include <cstdint>

#include "cuda/packing_loss_blocks.h"

namespace clamp::cuda {

// One block per image (b blocks).
template <typename T>
void normalise_and_group(const NormaliseArgs<T>& args, void* stream);

// One block per row of the b x b pairs (b blocks).
template <typename T>
void pair_pass(const PairPassArgs<T>& args, void* stream);

// One block per row of z (m * b blocks).
template <typename T>
void backward_rows(const BackwardArgs<T>& args, void* stream);

}  // namespace clamp::cuda
