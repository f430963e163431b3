// Data-parallel training over PyTorch's own distributed engine (c10d): a TCPStore rendezvous hosted by
// rank 0 and a Gloo process group. What the training step needs of it: the views of every rank gathered
// into the global batch (only this rank's rows keep their gradient), gradients summed over the ranks
// (so they add up to the single-process gradient on the global batch: no 1/world_size factor), and
// rank 0's weights copied to every rank at the start.
//
// c10d's headers stay inside collective.cpp: builds whose LibTorch lacks Gloo (node-gyp, or a LibTorch
// without its distributed headers) compile without it, and constructing a Collective then says so.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace clamp {

struct CollectiveOptions {
  std::string master_addr = "127.0.0.1";  // where rank 0 hosts the rendezvous store
  int64_t master_port = 29500;
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t timeout_ms = 60000;  // the rendezvous and every collective give up after this
};

// Whether this build has c10d's Gloo process group.
bool distributed_available();

class Collective {
 public:
  // Joins the group: blocks until all world_size ranks have arrived, or throws std::runtime_error
  // naming the rendezvous after timeout_ms. Throws std::invalid_argument for bad options.
  explicit Collective(const CollectiveOptions& options);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  int64_t rank() const { return options_.rank; }
  int64_t world_size() const { return options_.world_size; }

  // local: this rank's [views * b, d] view-major rows (every rank the same b). Returns the global
  // [views * world_size * b, d] batch, view-major, the ranks' images in rank order within each view:
  // exactly the batch one process would hold. Gradients flow back to `local` only.
  at::Tensor gather_views(const at::Tensor& local, int64_t views);
  // Replaces every tensor's gradient by its sum over the ranks (one flat all-reduce). A tensor without
  // a gradient contributes zeros.
  void sum_gradients(const std::vector<at::Tensor>& parameters);
  // Copies rank 0's values into every rank's tensors (one flat broadcast per dtype).
  void broadcast_from_first(const std::vector<at::Tensor>& tensors);
  // The sum over the ranks of one number per rank.
  double sum(double value);
  // Replaces the values of a contiguous CPU tensor by their sums over the ranks.
  void sum_in_place(at::Tensor& values);

 private:
  struct Group;
  CollectiveOptions options_;
  std::unique_ptr<Group> group_;
};

}  // namespace clamp
