#include "distributed/collective.h"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>
#include <string>

#ifdef CLAMP_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace clamp {

#ifdef CLAMP_WITH_GLOO

struct Collective::Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

bool distributed_available() { return true; }

namespace {

// Runs one collective to completion; a peer that died, hung or left turns into an error naming the
// operation and this rank rather than a hang or an abort.
template <class Start>
void complete(const char* what, const CollectiveOptions& o, Start start) {
  try {
    start()->wait(std::chrono::milliseconds(o.timeout_ms));
  } catch (const std::exception& error) {
    throw std::runtime_error(std::string("rank ") + std::to_string(o.rank) + " of " + std::to_string(o.world_size) + ": " + what +
                             " failed (a peer died, hung past " + std::to_string(o.timeout_ms) + " ms or left): " + error.what());
  }
}

at::Tensor flat_copy(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return at::cat(flat);
}

void copy_back(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

Collective::Collective(const CollectiveOptions& o) : options_(o), group_(std::make_unique<Group>()) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw std::invalid_argument("rank must lie in [0, world_size), got rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size));
  if (o.master_port < 1 || o.master_port > 65535) throw std::invalid_argument("master_port must lie in [1, 65535], got " + std::to_string(o.master_port));
  if (o.timeout_ms < 1) throw std::invalid_argument("timeout_ms must be at least 1");
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    c10d::TCPStoreOptions store;
    store.port = static_cast<std::uint16_t>(o.master_port);
    store.isServer = o.rank == 0;
    store.numWorkers = static_cast<std::size_t>(o.world_size);
    store.waitWorkers = true;
    store.timeout = timeout;
    group_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Gloo binds this rank's own interface: loopback when the group lives on this machine, else the
    // address this machine's hostname resolves to (binding the master's address would fail on every
    // other machine).
    const bool local = o.master_addr == "localhost" || o.master_addr.rfind("127.", 0) == 0;
    options->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1") : c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 2;
    group_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, static_cast<int>(o.rank), static_cast<int>(o.world_size), options);
  } catch (const std::exception& error) {
    throw std::runtime_error("rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) + " could not join the group at " + where +
                             " within " + std::to_string(o.timeout_ms) + " ms (is every rank started, with the same master address and port?): " + error.what());
  }
}

Collective::~Collective() = default;

at::Tensor Collective::gather_views(const at::Tensor& local, int64_t views) {
  if (local.dim() != 2 || views < 1 || local.size(0) % views != 0) throw std::invalid_argument("gather_views needs [views * b, d] rows");
  const int64_t world = options_.world_size;
  if (world == 1) return local;
  const int64_t b = local.size(0) / views, d = local.size(1);
  // Every rank must hold the same batch: all-gathering tensors of different sizes would corrupt memory.
  const double batches = sum(double(b));
  if (batches != double(b * world)) throw std::invalid_argument("every rank needs the same batch size; rank " + std::to_string(options_.rank) + " has " + std::to_string(b));
  std::vector<at::Tensor> input{local.detach().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < world; ++r) output[0].push_back(at::empty_like(input[0]));
  complete("the all-gather of embeddings", options_, [&] { return group_->group->allgather(output, input); });
  std::vector<at::Tensor> pieces;
  for (int64_t r = 0; r < world; ++r) pieces.push_back((r == options_.rank ? local : output[0][r]).view({views, b, d}));
  return at::cat(pieces, 1).view({views * world * b, d});
}

void Collective::sum_gradients(const std::vector<at::Tensor>& parameters) {
  if (options_.world_size == 1 || parameters.empty()) return;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  std::vector<at::Tensor> flat{flat_copy(grads)};
  complete("the all-reduce of gradients", options_, [&] { return group_->group->allreduce(flat); });
  c10::NoGradGuard no_grad;
  copy_back(flat[0], grads);
}

void Collective::broadcast_from_first(const std::vector<at::Tensor>& tensors) {
  if (options_.world_size == 1) return;
  // One flat buffer per dtype (parameters are float, BatchNorm's counters int64).
  for (const auto dtype : {at::kFloat, at::kDouble, at::kLong}) {
    std::vector<at::Tensor> same;
    for (const auto& t : tensors) {
      if (t.scalar_type() == dtype) same.push_back(t);
    }
    if (same.empty()) continue;
    std::vector<at::Tensor> flat{flat_copy(same)};
    complete("the broadcast of rank 0's weights", options_, [&] { return group_->group->broadcast(flat); });
    c10::NoGradGuard no_grad;
    copy_back(flat[0], same);
  }
}

double Collective::sum(double value) {
  at::Tensor one = at::full({1}, value, at::kDouble);
  sum_in_place(one);
  return one.item<double>();
}

void Collective::sum_in_place(at::Tensor& values) {
  if (options_.world_size == 1) return;
  std::vector<at::Tensor> tensors{values};
  complete("an all-reduce", options_, [&] { return group_->group->allreduce(tensors); });
}

#else  // no Gloo in this build

struct Collective::Group {};

bool distributed_available() { return false; }

Collective::Collective(const CollectiveOptions& o) : options_(o) {
  throw std::runtime_error(
      "this build of clamp-native has no distributed support: its LibTorch lacks c10d's Gloo headers. On Debian install libgloo-dev, "
      "then rebuild with `npx clamp-native build` (the node-gyp build never has it)");
}
Collective::~Collective() = default;
at::Tensor Collective::gather_views(const at::Tensor& local, int64_t) { return local; }
void Collective::sum_gradients(const std::vector<at::Tensor>&) {}
void Collective::broadcast_from_first(const std::vector<at::Tensor>&) {}
double Collective::sum(double value) { return value; }
void Collective::sum_in_place(at::Tensor&) {}

#endif

}  // namespace clamp
