// The caching CPU allocator: a freed large block is handed out again (the same memory, no new malloc),
// small blocks and raw allocations pass through, the cache stays within its limit, and a step's
// results are the same with it as without it.
#include "memory/caching_cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include "check.h"
#include "train/trainer.h"

namespace {

using clamp::testing::check;

clamp::TrainerOptions small_trainer() {
  clamp::TrainerOptions options;
  options.backbone = clamp::ResNetOptions{{1, 1}, {8, 16}, false, clamp::ResNetStem::small}.set_in_channels(1);
  options.projector_hidden = {32};
  options.projector_out = 16;
  options.views = 2;
  options.schedule.peak_lr = 0.1;
  options.schedule.total_steps = 10;
  return options;
}

// Losses of three steps from a fixed seed (the caller decides which allocator is in place).
std::vector<double> three_losses() {
  clamp::Trainer trainer(small_trainer());
  torch::manual_seed(3);
  const at::Tensor images = torch::rand({16, 1, 16, 16});
  std::vector<double> losses;
  for (int k = 0; k < 3; ++k) losses.push_back(trainer.run(images).loss);
  return losses;
}

void test_reuse() {
  check(clamp::cpu_allocator_stats().installed, "installed");
  check(c10::GetCPUAllocator() != c10::GetDefaultCPUAllocator(), "LibTorch's CPU allocator is the caching one");
  const clamp::CpuAllocatorStats before = clamp::cpu_allocator_stats();
  void* first = nullptr;
  {
    at::Tensor big = at::empty({1 << 20});  // 4 MiB
    first = big.data_ptr();
    check(reinterpret_cast<uintptr_t>(first) % 64 == 0, "64-byte aligned");
  }
  const clamp::CpuAllocatorStats freed = clamp::cpu_allocator_stats();
  check(freed.cached_blocks == before.cached_blocks + 1, "the freed 4 MiB block is cached");
  check(freed.cached_bytes >= before.cached_bytes + (4 << 20), "its bytes are counted");
  {
    // A size a few bytes off still lands in the same page-rounded bucket.
    at::Tensor again = at::empty({(1 << 20) - 3});
    check(again.data_ptr() == first, "the same block is handed out again");
    const clamp::CpuAllocatorStats reused = clamp::cpu_allocator_stats();
    check(reused.reused == freed.reused + 1 && reused.allocated == freed.allocated, "served from the cache, not malloc");
    check(reused.cached_blocks == before.cached_blocks, "and taken out of it");
  }
  {
    at::Tensor small = at::empty({16});  // 64 bytes: malloc's business
    small.fill_(1);
  }
  check(clamp::cpu_allocator_stats().cached_blocks == before.cached_blocks + 1, "small blocks are not cached");
  // oneDNN's scratchpad allocates through raw_allocate/raw_deallocate, which need one raw deleter.
  c10::Allocator* allocator = c10::GetCPUAllocator();
  check(allocator->raw_deleter() != nullptr, "a raw deleter");
  void* raw = allocator->raw_allocate(1 << 20);
  check(raw != nullptr, "raw_allocate");
  allocator->raw_deallocate(raw);
  clamp::release_cached_cpu_memory();
  const clamp::CpuAllocatorStats released = clamp::cpu_allocator_stats();
  check(released.cached_blocks == 0 && released.cached_bytes == 0, "release_cached_cpu_memory empties the cache");
  check(released.limit_bytes > 0 && released.limit_bytes <= (int64_t{4} << 30), "a limit of at most 4 GiB");
}

}  // namespace

int main() {
  at::set_num_threads(1);
  const std::vector<double> plain = three_losses();  // c10's default allocator
  clamp::install_caching_cpu_allocator();
  clamp::install_caching_cpu_allocator();  // idempotent
  test_reuse();
  const std::vector<double> cached = three_losses();
  check(cached == plain, "the same losses bit for bit with the caching allocator");
  check(clamp::cpu_allocator_stats().reused > 0, "a training step reuses blocks");
  return clamp::testing::summary();
}
