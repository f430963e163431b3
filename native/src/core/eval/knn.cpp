#include "eval/knn.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace clamp {

at::Tensor knn_votes(const at::Tensor& train, const at::Tensor& labels, const at::Tensor& queries, const KnnOptions& options) {
  if (train.dim() != 2 || queries.dim() != 2) throw std::invalid_argument("kNN features must be 2-D [n, dim]");
  if (!at::isFloatingType(train.scalar_type()) || !at::isFloatingType(queries.scalar_type()))
    throw std::invalid_argument("kNN features must be floating point");
  if (queries.size(1) != train.size(1))
    throw std::invalid_argument("kNN query features have dim " + std::to_string(queries.size(1)) + ", the training features " + std::to_string(train.size(1)));
  if (labels.dim() != 1 || labels.size(0) != train.size(0))
    throw std::invalid_argument("kNN needs one label per training feature: " + std::to_string(train.size(0)) + " features, labels of " + std::to_string(labels.numel()));
  if (at::isFloatingType(labels.scalar_type())) throw std::invalid_argument("kNN labels must be integers");
  if (train.size(0) == 0) throw std::invalid_argument("kNN needs at least one training feature");
  if (options.k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(options.k));
  if (!(options.temperature > 0)) throw std::invalid_argument("the kNN temperature must be > 0");
  if (options.classes < 1) throw std::invalid_argument("kNN needs classes >= 1");
  const at::Tensor label_index = labels.to(at::kLong);
  if (label_index.min().item<int64_t>() < 0 || label_index.max().item<int64_t>() >= options.classes)
    throw std::invalid_argument("kNN labels must lie in [0, " + std::to_string(options.classes) + ")");

  at::NoGradGuard no_grad;  // features may come from a module with requires_grad
  const auto unit_rows = [](const at::Tensor& x) {
    const at::Tensor rows = x.to(at::kFloat);
    return rows / rows.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  const at::Tensor bank = unit_rows(train), query = unit_rows(queries);
  const int64_t k = std::min(options.k, train.size(0));
  at::Tensor votes = at::zeros({queries.size(0), options.classes}, at::kFloat);
  for (int64_t start = 0; start < queries.size(0); start += options.query_chunk) {
    const int64_t end = std::min(start + options.query_chunk, queries.size(0));
    const at::Tensor similarity = at::mm(query.slice(0, start, end), bank.t());
    const auto [top_similarity, top_index] = similarity.topk(k, 1);
    const at::Tensor weights = (top_similarity / options.temperature).exp();
    votes.slice(0, start, end).scatter_add_(1, label_index.index_select(0, top_index.reshape({-1})).reshape(top_index.sizes()), weights);
  }
  return votes;
}

}  // namespace clamp
