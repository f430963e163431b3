// RankMe: exactly r for r equal singular values, near 1 for collapsed embeddings, refusals.
#include "eval/effective_rank.h"

#include <torch/torch.h>

#include <cmath>

#include "check.h"

namespace {

using clamp::testing::check;
using clamp::testing::check_throws;

void test_values() {
  torch::manual_seed(1);
  // Orthonormal columns scaled equally: r equal singular values, entropy log r.
  const at::Tensor q = std::get<0>(at::linalg_qr(torch::randn({50, 6}, torch::kDouble)));
  const double six = clamp::effective_rank(q * 3.0);
  check(std::abs(six - 6) < 1e-3, "six equal singular values give rank 6, got " + std::to_string(six));
  // Every embedding a multiple of one vector: rank one.
  const at::Tensor line = torch::randn({40, 1}) * torch::randn({1, 16});
  const double one = clamp::effective_rank(line);
  check(std::abs(one - 1) < 1e-2, "collinear embeddings give rank ~1, got " + std::to_string(one));
  // Isotropic Gaussian noise: close to full rank, below it.
  const double full = clamp::effective_rank(torch::randn({2000, 32}));
  check(full > 30 && full <= 32, "isotropic embeddings give nearly full rank, got " + std::to_string(full));
  check(clamp::effective_rank(torch::zeros({4, 3})) == 1, "all-zero embeddings count as rank one");
}

void test_refusals() {
  check_throws([] { clamp::effective_rank(torch::zeros({5})); }, "[n, d]", "a 1-D tensor");
  check_throws([] { clamp::effective_rank(torch::zeros({5, 2}, torch::kLong)); }, "floating-point", "integer embeddings");
  check_throws([] { clamp::effective_rank(torch::full({2, 2}, NAN)); }, "NaN", "NaN embeddings");
}

}  // namespace

int main() {
  test_values();
  test_refusals();
  return clamp::testing::summary();
}
