// A caching allocator for LibTorch's CPU tensors, installed once per process.
//
// Why: a training step frees and re-allocates the same activation buffers (megabytes each) every step.
// glibc's malloc serves blocks that size with mmap, or trims them off the heap when they are freed, so
// every step the kernel hands the pages back zero-filled and each first touch is a page fault: measured
// on the default preset's step (2 cores), 15% of the step went to faulting in memory that the previous
// step had just released. Keeping freed blocks by size and handing them out again removes that, as
// PyTorch's own caching allocator does for CUDA memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace clamp {

struct CpuAllocatorStats {
  int64_t cached_bytes = 0;  // held for reuse, not in any tensor
  int64_t cached_blocks = 0;
  int64_t limit_bytes = 0;  // most it keeps for reuse; a block freed beyond it goes back to malloc
  int64_t reused = 0;       // allocations served from the cache
  int64_t allocated = 0;    // allocations that went to malloc
  bool installed = false;
};

// Makes the caching allocator LibTorch's CPU allocator (c10::SetCPUAllocator) from now on. Idempotent.
// Tensors allocated before keep their own deleters. Blocks under 64 KiB are left to malloc, which
// serves them from its bins without faults.
void install_caching_cpu_allocator();

// Returns every cached block to malloc (tensors in use are untouched).
void release_cached_cpu_memory();

CpuAllocatorStats cpu_allocator_stats();

}  // namespace clamp
