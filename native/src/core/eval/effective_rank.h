// RankMe (Garrido et al., ICML 2023): the effective rank of a set of embeddings, exp of the entropy of
// their normalised singular values. It runs from 1 (every embedding on one line: dimensional collapse)
// to min(n, d) (variance spread evenly over every direction), needs no labels, and tracks downstream
// accuracy across self-supervised methods.
#pragma once

#include <ATen/ATen.h>

namespace clamp {

// embeddings: float [n, d], n >= 1. Singular values are taken in float64; p_k = s_k / sum(s) + 1e-7 as
// in the paper. Throws std::invalid_argument for a wrong shape or dtype, or non-finite values.
double effective_rank(const at::Tensor& embeddings);

}  // namespace clamp
