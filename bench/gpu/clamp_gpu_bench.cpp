// clamp-native's side of the GPU benchmarks that scripts/gpu-check.sh runs against eager PyTorch and
// torch.compile (bench/gpu_loss_peer.py, bench/training_step_eager.py) in the same run. Built with the
// core in a CUDA build (CLAMP_WITH_CUDA and CLAMP_BUILD_TESTS); prints one JSON line per measurement,
// with the peers' field names.
//
//   clamp_gpu_bench loss --batches 512,4096,8192 --views 4 --dim 512 --seed 0 --reps 20 --warmup 3
//       the fused loss, forward + backward: median ms, and peak CUDA memory above what was held before
//   clamp_gpu_bench step --views 16 --batch 128 --reps 10 --warmup 3 --precision auto
//       a ResNet-18 (CIFAR stem) CLAMP training step on 32x32 images: projector 512-2048-256, LARS
#include "loss/packing_loss.h"
#include "runtime.h"
#include "train/trainer.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::map<std::string, std::string> parse_flags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int k = 2; k + 1 < argc; k += 2) flags[std::string(argv[k]).substr(2)] = argv[k + 1];
  return flags;
}

std::string flag(const std::map<std::string, std::string>& flags, const std::string& name, const std::string& fallback) {
  const auto found = flags.find(name);
  return found == flags.end() ? fallback : found->second;
}

std::vector<int64_t> integers(const std::string& list) {
  std::vector<int64_t> out;
  std::stringstream stream(list);
  for (std::string item; std::getline(stream, item, ',');) out.push_back(std::stoll(item));
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// The allocator's aggregate statistics (index 0 of its StatArray in LibTorch 1.13 and 2.x alike).
double allocated_mib(bool peak) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  const auto& bytes = stats.allocated_bytes[0];
  return double(peak ? bytes.peak : bytes.current) / (1024.0 * 1024.0);
}

bool out_of_memory(const std::exception& error) { return std::string(error.what()).find("out of memory") != std::string::npos; }

// The peers' input exactly: torch.manual_seed(seed); centre = randn(b, d); noise = randn(m*b, d), on the CPU.
at::Tensor peer_input(int64_t m, int64_t b, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor centre = torch::randn({b, d});
  const at::Tensor noise = torch::randn({m * b, d});
  return 0.5 * centre.repeat({m, 1}) + 0.5 * noise;
}

int bench_loss(const std::map<std::string, std::string>& flags) {
  const int64_t m = std::stoll(flag(flags, "views", "4")), d = std::stoll(flag(flags, "dim", "512"));
  const int reps = std::stoi(flag(flags, "reps", "20")), warmup = std::stoi(flag(flags, "warmup", "3"));
  const uint64_t seed = std::stoull(flag(flags, "seed", "0"));
  for (const int64_t b : integers(flag(flags, "batches", "512,4096,8192"))) {
    std::cout << "{\"impl\": \"fused\", \"batch\": " << b << ", \"views\": " << m << ", \"dim\": " << d;
    try {
      const at::Tensor z = peer_input(m, b, d, seed).to(at::kCUDA).requires_grad_(true);
      double loss = 0;
      auto once = [&] {
        z.mutable_grad() = at::Tensor();
        const at::Tensor value = clamp::packing_loss(z, m, {}, nullptr, clamp::Diagnostics::pair_pass);
        value.backward();
        loss = value.item<double>();
      };
      for (int k = 0; k < warmup; ++k) once();
      z.mutable_grad() = at::Tensor();
      torch::cuda::synchronize();
      const double base = allocated_mib(false);
      c10::cuda::CUDACachingAllocator::resetPeakStats(0);
      std::vector<double> times;
      for (int k = 0; k < reps; ++k) {
        torch::cuda::synchronize();
        const auto start = std::chrono::steady_clock::now();
        once();
        torch::cuda::synchronize();
        times.push_back(seconds_since(start) * 1e3);
      }
      std::cout << ", \"reps\": " << reps << ", \"medianMs\": " << median(times)
                << ", \"minMs\": " << *std::min_element(times.begin(), times.end()) << ", \"peakMiB\": " << allocated_mib(true) - base
                << ", \"baseMiB\": " << base << ", \"loss\": " << loss << "}" << std::endl;
    } catch (const std::exception& error) {
      c10::cuda::CUDACachingAllocator::emptyCache();
      std::cout << (out_of_memory(error) ? ", \"oom\": true" : ", \"error\": \"see stderr\"") << "}" << std::endl;
      std::cerr << "fused loss at b = " << b << ": " << error.what() << "\n";
    }
  }
  return 0;
}

int bench_step(const std::map<std::string, std::string>& flags) {
  clamp::TrainerOptions options;
  options.backbone = clamp::ResNetOptions::resnet18().set_stem(clamp::ResNetStem::cifar);
  options.projector_hidden = {2048};
  options.projector_out = 256;
  options.views = std::stoll(flag(flags, "views", "16"));
  options.loss.rs = 7.0;
  options.optimiser.lr = 0.3;
  options.schedule = clamp::WarmupCosineSchedule{0.3, 0, 1000};
  options.device = "cuda";
  options.precision = flag(flags, "precision", "auto");
  options.memory_format = flag(flags, "memory-format", "auto");
  const int64_t batch = std::stoll(flag(flags, "batch", "128"));
  const int reps = std::stoi(flag(flags, "reps", "10")), warmup = std::stoi(flag(flags, "warmup", "3"));
  clamp::Trainer trainer(options);
  torch::manual_seed(0);
  // Images arrive on the CPU, as from the data loader: each step pays its copy to the GPU.
  const at::Tensor images = torch::randn({options.views * batch, 3, 32, 32});
  double loss = 0;
  for (int k = 0; k < warmup; ++k) loss = trainer.run(images).loss;
  // The median step, as the eager peer reports (run() reads the loss back, so each step has finished).
  std::vector<double> times;
  for (int k = 0; k < reps; ++k) {
    torch::cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    loss = trainer.run(images).loss;
    times.push_back(seconds_since(start));
  }
  const double per_step = median(times);
  std::cout << "{\"impl\": \"clamp-native\", \"views\": " << options.views << ", \"batch\": " << batch
            << ", \"secondsPerStep\": " << per_step << ", \"imagesPerSecond\": " << double(options.views * batch) / per_step
            << ", \"loss\": " << loss << ", \"bf16\": " << (trainer.compute_settings().bf16_autocast ? "true" : "false")
            << ", \"channelsLast\": " << (trainer.compute_settings().channels_last ? "true" : "false") << "}" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (!torch::cuda::is_available()) {
      std::cerr << "clamp_gpu_bench: no CUDA device\n";
      return 2;
    }
    const auto flags = parse_flags(argc, argv);
    if (command == "loss") return bench_loss(flags);
    if (command == "step") return bench_step(flags);
  } catch (const std::exception& error) {
    std::cerr << "clamp_gpu_bench " << command << ": " << error.what() << "\n";
    return 1;
  }
  std::cerr << "usage: clamp_gpu_bench loss|step [--flag value ...] (see the header of bench/gpu/clamp_gpu_bench.cpp)\n";
  return 2;
}
