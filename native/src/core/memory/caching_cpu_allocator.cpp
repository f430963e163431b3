#include "memory/caching_cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace clamp {
namespace {

// Blocks smaller than this come from malloc's bins, which reuse them without returning pages to the OS.
constexpr size_t kSmallestCached = 64 * 1024;
// c10's default CPU allocator aligns to 64 bytes (one cache line, an AVX-512 vector); so do we.
constexpr size_t kAlignment = 64;
// Cached sizes are whole pages, so that buffers a few bytes apart share a bucket.
constexpr size_t kPage = 4096;

size_t rounded(size_t n) { return (n + kPage - 1) / kPage * kPage; }

// A quarter of physical memory, at most 4 GiB: a training step's working set is far below it on the
// machines this runs on, and a process that holds more idle memory than that would starve its neighbours.
int64_t default_limit() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  const int64_t physical = pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size : (int64_t{4} << 30);
  return std::min<int64_t>(physical / 4, int64_t{4} << 30);
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  // LibTorch 1.13 declares allocate() const, 2.x not: one of the two overrides its pure virtual, the
  // other is an unused overload (neither says `override`, so both compile on either).
  c10::DataPtr allocate(size_t n) const { return instance().allocate_block(n); }
  c10::DataPtr allocate(size_t n) { return allocate_block(n); }

  // One deleter for every block, so raw_allocate/raw_deallocate work (oneDNN's scratchpad uses them).
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  // Pure virtual from LibTorch 2.x on (not marked override: LibTorch 1.13's Allocator lacks it).
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }

  void release_all() {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [size, list] : free_) blocks.insert(blocks.end(), list.begin(), list.end());
      free_.clear();
      stats_.cached_bytes = 0;
      stats_.cached_blocks = 0;
    }
    for (void* block : blocks) std::free(block);
  }

  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  static CachingCpuAllocator& instance() {
    // Never destroyed: tensors are still freed during static destruction at process exit.
    static auto* allocator = new CachingCpuAllocator();
    return *allocator;
  }

 private:
  CachingCpuAllocator() { stats_.limit_bytes = default_limit(); }

  c10::DataPtr allocate_block(size_t n) {
    void* data = n < kSmallestCached ? allocate_uncached(n) : allocate_cached(n);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  static void* aligned(size_t n) {
    void* data = nullptr;
    if (posix_memalign(&data, kAlignment, std::max<size_t>(n, 1)) != 0) return nullptr;
    return data;
  }

  static void* allocate_uncached(size_t n) {
    if (n == 0) return nullptr;
    void* data = aligned(n);
    TORCH_CHECK(data != nullptr, "not enough memory: allocating ", n, " bytes for a CPU tensor failed");
    return data;
  }

  void* allocate_cached(size_t n) {
    const size_t size = rounded(n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = free_.find(size);
      if (found != free_.end() && !found->second.empty()) {
        void* data = found->second.back();
        found->second.pop_back();
        stats_.cached_bytes -= static_cast<int64_t>(size);
        --stats_.cached_blocks;
        ++stats_.reused;
        sizes_[data] = size;
        return data;
      }
    }
    void* data = aligned(size);
    if (data == nullptr) {
      // What the cache holds may be what malloc lacks: give it back and try once more.
      release_all();
      data = aligned(size);
    }
    TORCH_CHECK(data != nullptr, "not enough memory: allocating ", n, " bytes for a CPU tensor failed");
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.allocated;
    sizes_[data] = size;
    return data;
  }

  static void release(void* data) { instance().keep(data); }

  // A block the cache handed out goes back to its bucket while the cache has room; any other block
  // (a small one, or one beyond the limit) goes back to malloc.
  void keep(void* data) {
    if (data == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto live = sizes_.find(data);
      const size_t size = live == sizes_.end() ? 0 : live->second;
      if (size != 0) sizes_.erase(live);
      if (size != 0 && stats_.cached_bytes + static_cast<int64_t>(size) <= stats_.limit_bytes) {
        free_[size].push_back(data);
        stats_.cached_bytes += static_cast<int64_t>(size);
        ++stats_.cached_blocks;
        return;
      }
    }
    std::free(data);
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // rounded size -> blocks ready for reuse
  std::unordered_map<void*, size_t> sizes_;              // block in use -> its rounded size
  CpuAllocatorStats stats_;
};

std::once_flag installed;
bool installed_flag = false;

}  // namespace

void install_caching_cpu_allocator() {
  std::call_once(installed, [] {
    // Priority above the default allocator's (0), so a later plain SetCPUAllocator does not displace it.
    c10::SetCPUAllocator(&CachingCpuAllocator::instance(), /*priority=*/1);
    installed_flag = true;
  });
}

void release_cached_cpu_memory() { CachingCpuAllocator::instance().release_all(); }

CpuAllocatorStats cpu_allocator_stats() {
  CpuAllocatorStats stats = CachingCpuAllocator::instance().stats();
  stats.installed = installed_flag;
  return stats;
}

}  // namespace clamp
