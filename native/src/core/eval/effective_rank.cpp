#include "eval/effective_rank.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace clamp {

double effective_rank(const at::Tensor& embeddings) {
  if (embeddings.dim() != 2 || embeddings.size(0) < 1 || embeddings.size(1) < 1)
    throw std::invalid_argument("effective rank needs embeddings [n, d] with n, d >= 1, got " + std::to_string(embeddings.dim()) + "-D");
  if (!at::isFloatingType(embeddings.scalar_type())) throw std::invalid_argument("effective rank needs floating-point embeddings");
  const at::Tensor z = embeddings.to(at::kDouble);
  if (!at::isfinite(z).all().item<bool>()) throw std::invalid_argument("effective rank: the embeddings hold NaN or infinite values");
  const at::Tensor singular = at::linalg_svdvals(z);
  const double total = singular.sum().item<double>();
  if (total == 0) return 1;  // every embedding zero: a single point, rank-one by convention
  const at::Tensor p = singular / total + 1e-7;
  return std::exp(-(p * p.log()).sum().item<double>());
}

}  // namespace clamp
