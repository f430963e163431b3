// Weighted kNN against a brute-force loop over the definition, and its argument checks.
#include "eval/knn.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "check.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

void test_matches_brute_force() {
  torch::manual_seed(5);
  const int64_t n = 60, q = 17, d = 8, classes = 4, k = 7;
  const at::Tensor train = torch::randn({n, d}), queries = torch::randn({q, d});
  const at::Tensor labels = torch::randint(0, classes, {n}, torch::kLong);
  clamp::KnnOptions options;
  options.k = k;
  options.temperature = 0.2;
  options.classes = classes;
  options.query_chunk = 5;  // several chunks, one ragged
  const at::Tensor votes = clamp::knn_votes(train, labels.to(torch::kInt), queries, options);
  check(votes.sizes() == at::IntArrayRef({q, classes}), "votes are [queries, classes]");

  double worst = 0;
  for (int64_t i = 0; i < q; ++i) {
    std::vector<std::pair<double, int64_t>> similar;
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0, nq = 0, nt = 0;
      for (int64_t c = 0; c < d; ++c) {
        const double a = queries[i][c].item<double>(), b = train[j][c].item<double>();
        dot += a * b, nq += a * a, nt += b * b;
      }
      similar.push_back({dot / std::sqrt(nq * nt), j});
    }
    std::sort(similar.begin(), similar.end(), [](auto& a, auto& b) { return a.first > b.first; });
    std::vector<double> expected(classes, 0.0);
    for (int64_t r = 0; r < k; ++r) expected[labels[similar[r].second].item<int64_t>()] += std::exp(similar[r].first / 0.2);
    for (int64_t c = 0; c < classes; ++c)
      worst = std::max(worst, std::abs(expected[c] - votes[i][c].item<double>()) / std::max(1.0, expected[c]));
  }
  check(worst < 1e-5, "votes equal the brute-force definition (worst relative difference " + std::to_string(worst) + ")");

  options.k = 1000;
  const at::Tensor all = clamp::knn_votes(train, labels, queries, options);
  const at::Tensor unit_train = train / train.norm(2, {1}, true), unit_queries = queries / queries.norm(2, {1}, true);
  const at::Tensor every_vote = (at::mm(unit_queries, unit_train.t()) / 0.2).exp().sum(1);
  check(at::allclose(all.sum(1), every_vote, 1e-5), "k larger than the bank is clamped: every training feature votes");
}

void test_bad_arguments() {
  clamp::KnnOptions options;
  options.classes = 3;
  const at::Tensor train = torch::randn({5, 4}), labels = torch::zeros({5}, torch::kLong);
  check_throws([&] { clamp::knn_votes(train, labels, torch::randn({2, 3}), options); }, "dim 3", "query of another width");
  check_throws([&] { clamp::knn_votes(train, torch::zeros({4}, torch::kLong), torch::randn({2, 4}), options); }, "one label per",
               "too few labels");
  check_throws([&] { clamp::knn_votes(train, torch::full({5}, 3, torch::kLong), torch::randn({2, 4}), options); }, "[0, 3)",
               "label out of range");
  check_throws([&] { clamp::knn_votes(train, torch::zeros({5}), torch::randn({2, 4}), options); }, "integers", "float labels");
}

void test_cosine_top_k() {
  torch::manual_seed(8);
  const at::Tensor bank = torch::randn({30, 5}), queries = torch::randn({4, 5});
  const clamp::CosineTopK nearest = clamp::cosine_top_k(bank, queries, 3, /*query_chunk=*/3);
  const at::Tensor cosine = at::mm(queries / queries.norm(2, {1}, true), (bank / bank.norm(2, {1}, true)).t());
  for (int64_t i = 0; i < 4; ++i) {
    const at::Tensor order = cosine[i].argsort(0, /*descending=*/true);
    for (int64_t j = 0; j < 3; ++j) {
      check(nearest.index[i][j].item<int64_t>() == order[j].item<int64_t>(), "cosine_top_k finds the most similar rows, best first");
      check(std::abs(nearest.similarity[i][j].item<double>() - cosine[i][order[j]].item<double>()) < 1e-5,
            "cosine_top_k reports the similarity");
    }
  }
  check(clamp::cosine_top_k(bank, queries, 100).index.size(1) == 30, "k is clamped to the bank's size");
  check_throws([&] { clamp::cosine_top_k(bank, torch::randn({2, 4}), 3); }, "dim 4", "queries of another width");
  check_throws([&] { clamp::cosine_top_k(bank, queries, 0); }, "k must be at least 1", "k = 0");
}

}  // namespace

int main() {
  test_cosine_top_k();
  test_matches_brute_force();
  test_bad_arguments();
  return clamp::testing::summary();
}
