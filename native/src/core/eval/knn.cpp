#include "eval/knn.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace clamp {

CosineTopK cosine_top_k(const at::Tensor& bank, const at::Tensor& queries, int64_t k, int64_t query_chunk) {
  if (bank.dim() != 2 || queries.dim() != 2) throw std::invalid_argument("features must be 2-D [n, dim]");
  if (!at::isFloatingType(bank.scalar_type()) || !at::isFloatingType(queries.scalar_type()))
    throw std::invalid_argument("features must be floating point");
  if (queries.size(1) != bank.size(1))
    throw std::invalid_argument("query features have dim " + std::to_string(queries.size(1)) + ", the searched features " +
                                std::to_string(bank.size(1)));
  if (bank.size(0) == 0) throw std::invalid_argument("there must be at least one feature to search");
  if (k < 1) throw std::invalid_argument("k must be at least 1, got " + std::to_string(k));
  if (query_chunk < 1) throw std::invalid_argument("query_chunk must be at least 1");

  c10::NoGradGuard no_grad;  // features may come from a module with requires_grad
  const auto unit_rows = [](const at::Tensor& x) {
    const at::Tensor rows = x.to(at::kFloat);
    return rows / rows.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  const at::Tensor unit_bank = unit_rows(bank), unit_queries = unit_rows(queries);
  k = std::min(k, bank.size(0));
  CosineTopK out{at::empty({queries.size(0), k}, at::kFloat), at::empty({queries.size(0), k}, at::kLong)};
  for (int64_t start = 0; start < queries.size(0); start += query_chunk) {
    const int64_t end = std::min(start + query_chunk, queries.size(0));
    const auto [similarity, index] = at::mm(unit_queries.slice(0, start, end), unit_bank.t()).topk(k, 1);
    out.similarity.slice(0, start, end).copy_(similarity);
    out.index.slice(0, start, end).copy_(index);
  }
  return out;
}

at::Tensor knn_votes(const at::Tensor& train, const at::Tensor& labels, const at::Tensor& queries, const KnnOptions& options) {
  if (labels.dim() != 1 || labels.size(0) != train.size(0))
    throw std::invalid_argument("kNN needs one label per training feature: " + std::to_string(train.size(0)) + " features, labels of " +
                                std::to_string(labels.numel()));
  if (at::isFloatingType(labels.scalar_type())) throw std::invalid_argument("kNN labels must be integers");
  if (!(options.temperature > 0)) throw std::invalid_argument("the kNN temperature must be > 0");
  if (options.classes < 1) throw std::invalid_argument("kNN needs classes >= 1");
  if (train.size(0) > 0) {
    const at::Tensor range_check = labels.to(at::kLong);
    if (range_check.min().item<int64_t>() < 0 || range_check.max().item<int64_t>() >= options.classes)
      throw std::invalid_argument("kNN labels must lie in [0, " + std::to_string(options.classes) + ")");
  }
  const CosineTopK nearest = cosine_top_k(train, queries, options.k, options.query_chunk);
  const at::Tensor weights = (nearest.similarity / options.temperature).exp();
  const at::Tensor neighbour_labels = labels.to(at::kLong).index_select(0, nearest.index.reshape({-1})).reshape(nearest.index.sizes());
  return at::zeros({queries.size(0), options.classes}, at::kFloat).scatter_add_(1, neighbour_labels, weights);
}

}  // namespace clamp
