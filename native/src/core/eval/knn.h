// Weighted k-nearest-neighbour classification of embeddings, the SSL literature's monitor (Wu et al.,
// 2018; as solo-learn and lightly report it): cosine similarity, the k most similar training
// embeddings vote for their class with weight exp(similarity / temperature).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace clamp {

struct KnnOptions {
  int64_t k = 200;
  double temperature = 0.1;
  int64_t classes = 0;         // labels lie in [0, classes)
  int64_t query_chunk = 1024;  // queries per similarity product: memory O(query_chunk * n_train)
};

struct CosineTopK {
  at::Tensor similarity;  // float32 [q, k], most similar first
  at::Tensor index;       // int64 [q, k], rows of the bank
};

// The k rows of bank [n, d] most cosine-similar to each query [q, d] (k clamped to n), by one matrix
// product per chunk of queries: the exact search behind kNN evaluation and Encoder.index(). Throws
// std::invalid_argument naming the problem for mismatched shapes or dtypes.
CosineTopK cosine_top_k(const at::Tensor& bank, const at::Tensor& queries, int64_t k, int64_t query_chunk = 1024);

// train: float [n, d]; labels: integer [n]; queries: float [q, d]. Returns float32 [q, classes] vote
// totals (argmax = prediction; the top five give top-5 accuracy). k is clamped to n. Throws
// std::invalid_argument naming the problem for mismatched shapes, dtypes or labels out of range.
at::Tensor knn_votes(const at::Tensor& train, const at::Tensor& labels, const at::Tensor& queries, const KnnOptions& options);

}  // namespace clamp
