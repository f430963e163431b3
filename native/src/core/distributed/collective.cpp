#include "distributed/collective.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <regex>
#include <stdexcept>
#include <string>

#include "compat.h"

#ifdef CLAMP_WITH_GLOO
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace clamp {

#ifdef CLAMP_WITH_GLOO

struct Collective::Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  // Every rank's address, exchanged when the group forms: a failed collective can no longer ask the
  // store (the network may be what failed), yet its error must say which machine to look at.
  std::vector<std::string> addresses;
};

bool distributed_available() { return true; }

namespace {

// A failure's own words: without c10's C++ backtrace and without Gloo's source locations
// ("[/__w/pytorch/.../unbound_buffer.cc:81] "), which mean nothing to whoever runs `train`.
std::string reason(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string message = c10_error ? compat::error_message(*c10_error) : std::string(error.what());
  static const std::regex location(R"(\[[^\] ]+:[0-9]+\] ?)");
  return std::regex_replace(message, location, "");
}

// The peers of a failed collective, by rank and, when they are on other machines, by address: with two
// ranks that is the one to look at; with more, Gloo does not say which one stopped answering.
std::string peers(const CollectiveOptions& o, const std::vector<std::string>& addresses) {
  const auto own = addresses.size() == size_t(o.world_size) ? addresses[o.rank] : std::string();
  std::string list;
  int64_t named = 0;
  for (int64_t r = 0; r < o.world_size; ++r) {
    if (r == o.rank) continue;
    if (named == 8) {
      list += ", ...";
      break;
    }
    list += (named++ ? ", " : "") + std::to_string(r);
    if (addresses.size() == size_t(o.world_size) && addresses[r] != own) list += " (at " + addresses[r] + ")";
  }
  return (o.world_size == 2 ? "rank " : "one of ranks ") + list;
}

// Runs one collective to completion; a peer that died, hung or left, or a network that went down,
// turns into an error naming the operation, this rank and its peers rather than a hang or an abort.
template <class Start>
void complete(const char* what, const CollectiveOptions& o, const std::vector<std::string>& addresses, Start start) {
  try {
    start()->wait(std::chrono::milliseconds(o.timeout_ms));
  } catch (const std::exception& error) {
    throw std::runtime_error(
        "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) + ": " + what + " failed: " + peers(o, addresses) +
        " died, hung past the " + std::to_string(o.timeout_ms) + " ms timeout, or the network to it went down (" + reason(error) +
        "). Check that process and the link between the machines, then continue from the last checkpoint with `train --resume`");
  }
}

// The address of this machine's interface on the route to host (what a UDP socket connected there
// would send from; connecting a UDP socket sends nothing). Empty when host does not resolve or no
// route leads there.
std::string address_towards(const std::string& host, int64_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return "";
  std::string address;
  for (addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
    const int fd = ::socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    char text[NI_MAXHOST];
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&local), length, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) == 0) {
      address = text;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return address;
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
    throw std::invalid_argument("rank must lie in [0, world_size), got rank " + std::to_string(o.rank) + " of " +
                                std::to_string(o.world_size));
  if (o.master_port < 1 || o.master_port > 65535)
    throw std::invalid_argument("master_port must lie in [1, 65535], got " + std::to_string(o.master_port));
  if (o.timeout_ms < 1) throw std::invalid_argument("timeout_ms must be at least 1");
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  const std::string who = "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
  // Gloo binds this rank's own interface and tells the others, through the store, where to reach it.
  // On one machine that is loopback. Across machines it is the interface this machine reaches the
  // master through, which is on the network the machines share. (Gloo's default, whatever the hostname
  // resolves to, is often 127.0.0.1, 127.0.1.1 or an address of another network, and the others then
  // wait for a connection that never comes.) GLOO_SOCKET_IFNAME names interfaces instead, as in PyTorch.
  const bool local = o.master_addr == "localhost" || o.master_addr.rfind("127.", 0) == 0;
  const char* interfaces = std::getenv("GLOO_SOCKET_IFNAME");
  const std::string address = local ? "127.0.0.1" : address_towards(o.master_addr, o.master_port);
  if (!local && address.empty() && !(interfaces && *interfaces)) {
    throw std::runtime_error(who + " has no route to the master address " + o.master_addr +
                             " (it does not resolve, or no interface of this machine reaches it): pass --master-addr an address of rank "
                             "0's machine that this one can reach");
  }
  try {
    c10d::TCPStoreOptions store;
    store.port = static_cast<std::uint16_t>(o.master_port);
    store.isServer = o.rank == 0;
    store.numWorkers = static_cast<std::size_t>(o.world_size);
    store.waitWorkers = true;
    store.timeout = timeout;
    group_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store);
  } catch (const std::exception& error) {
    throw std::runtime_error(
        who + " could not join the group at " + where + " within " + std::to_string(o.timeout_ms) +
        " ms (is every rank started, with the same master address and port, and does this machine reach that address?): " + reason(error));
  }
  try {
    const std::string key = "clamp/address/" + std::to_string(o.rank);
    group_->store->set(key, std::vector<uint8_t>(address.begin(), address.end()));
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (interfaces && *interfaces) {
      const std::string names = interfaces;
      for (size_t start = 0; start <= names.size();) {
        const size_t comma = std::min(names.find(',', start), names.size());
        if (comma > start) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, comma - start)));
        start = comma + 1;
      }
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(address));
    }
    options->threads = 2;
    group_->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, static_cast<int>(o.rank), static_cast<int>(o.world_size), options);
    // Every rank set its key before it could form the group, so these return at once.
    for (int64_t r = 0; r < o.world_size; ++r) {
      const auto bytes = group_->store->get("clamp/address/" + std::to_string(r));
      group_->addresses.emplace_back(bytes.begin(), bytes.end());
    }
  } catch (const std::exception& error) {
    throw std::runtime_error(
        who + " reached the store at " + where + " but could not connect to every rank from " +
        (interfaces && *interfaces ? "interfaces " + std::string(interfaces) : address) + " within " + std::to_string(o.timeout_ms) +
        " ms (are the other machines' firewalls open to them? set GLOO_SOCKET_IFNAME to the interface the machines share): " +
        reason(error));
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
  if (batches != double(b * world))
    throw std::invalid_argument("every rank needs the same batch size; rank " + std::to_string(options_.rank) + " has " +
                                std::to_string(b));
  std::vector<at::Tensor> input{local.detach().contiguous()};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int64_t r = 0; r < world; ++r) output[0].push_back(at::empty_like(input[0]));
  complete("the all-gather of embeddings", options_, group_->addresses, [&] { return group_->group->allgather(output, input); });
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
  complete("the all-reduce of gradients", options_, group_->addresses, [&] { return group_->group->allreduce(flat); });
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
    complete("the broadcast of rank 0's weights", options_, group_->addresses, [&] { return group_->group->broadcast(flat); });
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
  complete("an all-reduce", options_, group_->addresses, [&] { return group_->group->allreduce(tensors); });
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
