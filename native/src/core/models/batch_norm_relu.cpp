#include "models/batch_norm_relu.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "numerics/vector_clones.h"

// Every product and sum kept apart (no fused multiply-add), so the AVX-512, AVX2 and baseline copies of
// each loop give the same bits; no trapping math, so the ReLU's and the mask's comparisons become selects.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

namespace clamp {

namespace {

// Channels_last activations are rows of C channels, one row per (image, y, x). Sums run over blocks of
// this many rows, each block's in float32 from zero, the blocks' combined in float64 in block order:
// the same numbers for any thread count.
constexpr int64_t kBlockRows = 256;

int64_t block_count(int64_t rows) { return (rows + kBlockRows - 1) / kBlockRows; }

// Runs body(first_row, row_count, block) for every block, spread over ATen's threads.
template <typename Body>
void for_each_block(int64_t rows, const Body& body) {
  at::parallel_for(0, block_count(rows), 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * kBlockRows;
      body(first, std::min(kBlockRows, rows - first), block);
    }
  });
}

CLAMP_VECTOR_CLONES
void column_sums(const float* __restrict x, int64_t rows, int64_t channels, float* __restrict sums) {
  for (int64_t c = 0; c < channels; ++c) sums[c] = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) sums[c] += x[r * channels + c];
}

CLAMP_VECTOR_CLONES
void column_squared_deviations(const float* __restrict x, int64_t rows, int64_t channels, const float* __restrict mean,
                               float* __restrict sums) {
  for (int64_t c = 0; c < channels; ++c) sums[c] = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const float d = x[r * channels + c] - mean[c];
      sums[c] += d * d;
    }
}

// y = relu(x * scale + shift (+ skip)). `v < 0 ? 0 : v` keeps a NaN a NaN, as ATen's relu does, so a
// diverged step still shows in the loss.
CLAMP_VECTOR_CLONES
void scale_shift_relu(const float* __restrict x, const float* __restrict skip, int64_t rows, int64_t channels,
                      const float* __restrict scale, const float* __restrict shift, float* __restrict y) {
  if (skip == nullptr) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        const float v = x[r * channels + c] * scale[c] + shift[c];
        y[r * channels + c] = v < 0 ? 0.0f : v;
      }
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t i = r * channels + c;
        const float v = x[i] * scale[c] + shift[c] + skip[i];
        y[i] = v < 0 ? 0.0f : v;
      }
  }
}

// Where the ReLU passed its input: recomputed from x as the forward computed it (no skip), or read off
// the output y (with a skip, whose values the backward does not keep).
struct Mask {
  const float* x;
  const float* y;
  const float* scale;
  const float* shift;
};

template <bool kFromOutput>
inline bool passed(const Mask& mask, int64_t i, int64_t c) {
  return kFromOutput ? mask.y[i] > 0 : mask.x[i] * mask.scale[c] + mask.shift[c] > 0;
}

template <bool kFromOutput>
inline void gradient_sums_of(const float* __restrict dy, const Mask& mask, int64_t first, int64_t rows, int64_t channels,
                             const float* __restrict mean, float* __restrict sum_dz, float* __restrict sum_dz_centred) {
  for (int64_t c = 0; c < channels; ++c) sum_dz[c] = sum_dz_centred[c] = 0;
  for (int64_t r = first; r < first + rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      const float dz = passed<kFromOutput>(mask, i, c) ? dy[i] : 0.0f;
      sum_dz[c] += dz;
      sum_dz_centred[c] += dz * (mask.x[i] - mean[c]);
    }
}

// sum_dz[c] = sum of dz, sum_dz_centred[c] = sum of dz * (x - mean), dz = dy where the ReLU passed.
CLAMP_VECTOR_CLONES
void gradient_sums(const float* dy, const Mask& mask, int64_t first, int64_t rows, int64_t channels, const float* mean, float* sum_dz,
                   float* sum_dz_centred) {
  if (mask.y != nullptr) {
    gradient_sums_of<true>(dy, mask, first, rows, channels, mean, sum_dz, sum_dz_centred);
  } else {
    gradient_sums_of<false>(dy, mask, first, rows, channels, mean, sum_dz, sum_dz_centred);
  }
}

template <bool kFromOutput>
inline void input_gradient_of(const float* __restrict dy, const Mask& mask, int64_t first, int64_t rows, int64_t channels,
                              const float* __restrict mean, const float* __restrict gain, const float* __restrict mean_dz,
                              const float* __restrict slope, float* __restrict dx, float* __restrict dskip) {
  for (int64_t r = first; r < first + rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      const float dz = passed<kFromOutput>(mask, i, c) ? dy[i] : 0.0f;
      dx[i] = gain[c] * (dz - mean_dz[c] - (mask.x[i] - mean[c]) * slope[c]);
      if (kFromOutput) dskip[i] = dz;
    }
}

// dx = gain * (dz - mean_dz - (x - mean) * slope), and dskip = dz where there is a skip (the mask read
// off the output then).
CLAMP_VECTOR_CLONES
void input_gradient(const float* dy, const Mask& mask, int64_t first, int64_t rows, int64_t channels, const float* mean, const float* gain,
                    const float* mean_dz, const float* slope, float* dx, float* dskip) {
  if (mask.y != nullptr) {
    input_gradient_of<true>(dy, mask, first, rows, channels, mean, gain, mean_dz, slope, dx, dskip);
  } else {
    input_gradient_of<false>(dy, mask, first, rows, channels, mean, gain, mean_dz, slope, dx, dskip);
  }
}

// Adds up the blocks' partial sums [blocks, channels] in block order, in float64.
std::vector<double> combine(const std::vector<float>& partial, int64_t channels) {
  std::vector<double> total(channels, 0.0);
  for (size_t k = 0; k < partial.size(); ++k) total[k % channels] += partial[k];
  return total;
}

struct BatchStatistics {
  torch::Tensor mean, invstd;    // float32 [C]: what the normalisation and the backward use
  std::vector<double> variance;  // biased, float64, for the running variance
};

BatchStatistics batch_statistics(const float* x, int64_t rows, int64_t channels, double eps) {
  std::vector<float> partial(block_count(rows) * channels);
  for_each_block(rows, [&](int64_t first, int64_t count, int64_t block) {
    column_sums(x + first * channels, count, channels, partial.data() + block * channels);
  });
  std::vector<double> sum = combine(partial, channels);
  BatchStatistics stats;
  stats.mean = torch::empty({channels}, torch::kFloat32);
  float* mean = stats.mean.data_ptr<float>();
  for (int64_t c = 0; c < channels; ++c) mean[c] = static_cast<float>(sum[c] / static_cast<double>(rows));
  // The variance around the float32 mean in a second pass, not E[x^2] - E[x]^2, which cancels.
  for_each_block(rows, [&](int64_t first, int64_t count, int64_t block) {
    column_squared_deviations(x + first * channels, count, channels, mean, partial.data() + block * channels);
  });
  stats.variance = combine(partial, channels);
  stats.invstd = torch::empty({channels}, torch::kFloat32);
  float* invstd = stats.invstd.data_ptr<float>();
  for (int64_t c = 0; c < channels; ++c) {
    stats.variance[c] /= static_cast<double>(rows);
    invstd[c] = static_cast<float>(1.0 / std::sqrt(stats.variance[c] + eps));
  }
  return stats;
}

// torch's BatchNorm2d in training: num_batches_tracked + 1, then running = (1 - m) * running + m * batch
// with the unbiased batch variance; m the momentum, or 1 / num_batches_tracked without one.
void update_running_statistics(torch::nn::BatchNorm2dImpl& bn, const BatchStatistics& stats, int64_t rows) {
  torch::NoGradGuard no_grad;
  double momentum = bn.options.momentum().value_or(0.0);
  if (bn.num_batches_tracked.defined()) {
    bn.num_batches_tracked += 1;
    if (!bn.options.momentum().has_value()) momentum = 1.0 / static_cast<double>(bn.num_batches_tracked.item<int64_t>());
  }
  const int64_t channels = stats.mean.numel();
  torch::Tensor running_mean = bn.running_mean.contiguous(), running_var = bn.running_var.contiguous();
  float* rm = running_mean.data_ptr<float>();
  float* rv = running_var.data_ptr<float>();
  const float* mean = stats.mean.data_ptr<float>();
  const double unbias = static_cast<double>(rows) / static_cast<double>(rows - 1);
  for (int64_t c = 0; c < channels; ++c) {
    rm[c] = static_cast<float>(momentum * mean[c] + (1 - momentum) * rm[c]);
    rv[c] = static_cast<float>(momentum * stats.variance[c] * unbias + (1 - momentum) * rv[c]);
  }
  if (!running_mean.is_same(bn.running_mean)) bn.running_mean.copy_(running_mean);
  if (!running_var.is_same(bn.running_var)) bn.running_var.copy_(running_var);
}

// The normalise-add-ReLU and its backward; mean and invstd are the batch's (from x, outside the graph:
// the backward differentiates through them itself).
struct BatchNormReLUFunction : torch::autograd::Function<BatchNormReLUFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& mean, const torch::Tensor& invstd,
                               const c10::optional<torch::Tensor>& skip_or_none) {
    // An optional (not an undefined tensor) so that autograd registers no input where there is no skip.
    const torch::Tensor skip = skip_or_none.has_value() ? *skip_or_none : torch::Tensor();
    const int64_t channels = x.size(1), rows = x.numel() / channels;
    // Per channel: y = relu(x * scale + shift (+ skip)), scale = weight * invstd, shift = bias - mean * scale.
    torch::Tensor scale = (weight.detach() * invstd).contiguous(), shift = (bias.detach() - mean * scale).contiguous();
    torch::Tensor y = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
    const float *from = x.data_ptr<float>(), *with = skip.defined() ? skip.data_ptr<float>() : nullptr;
    float* to = y.data_ptr<float>();
    const float *a = scale.data_ptr<float>(), *b = shift.data_ptr<float>();
    for_each_block(rows, [&](int64_t first, int64_t count, int64_t) {
      const int64_t offset = first * channels;
      scale_shift_relu(from + offset, with == nullptr ? nullptr : with + offset, count, channels, a, b, to + offset);
    });
    ctx->saved_data["skip"] = skip.defined();
    // With a skip the mask is read off y; without, recomputed from x, scale and shift.
    ctx->save_for_backward({x, weight, mean, invstd, scale, shift, skip.defined() ? y : torch::Tensor()});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1], &mean_t = saved[2], &invstd_t = saved[3], &scale = saved[4], &shift = saved[5],
                        &y = saved[6];
    const bool has_skip = ctx->saved_data["skip"].toBool();
    const torch::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t channels = x.size(1), rows = x.numel() / channels;
    const Mask mask{x.data_ptr<float>(), y.defined() ? y.data_ptr<float>() : nullptr, scale.data_ptr<float>(), shift.data_ptr<float>()};
    const float *g = dy.data_ptr<float>(), *mean = mean_t.data_ptr<float>(), *invstd = invstd_t.data_ptr<float>();

    std::vector<float> partial_dz(block_count(rows) * channels), partial_centred(partial_dz.size());
    for_each_block(rows, [&](int64_t first, int64_t count, int64_t block) {
      gradient_sums(g, mask, first, count, channels, mean, partial_dz.data() + block * channels, partial_centred.data() + block * channels);
    });
    const std::vector<double> sum_dz = combine(partial_dz, channels), sum_centred = combine(partial_centred, channels);

    // dweight = sum dz * xhat, dbias = sum dz; dx = w * invstd * (dz - mean(dz) - xhat * mean(dz * xhat)).
    torch::Tensor dweight = torch::empty({channels}, torch::kFloat32), dbias = torch::empty({channels}, torch::kFloat32);
    std::vector<float> gain(channels), mean_dz(channels), slope(channels);
    const torch::Tensor w = weight.detach().contiguous();
    for (int64_t c = 0; c < channels; ++c) {
      const double s = invstd[c];
      dweight.data_ptr<float>()[c] = static_cast<float>(sum_centred[c] * s);
      dbias.data_ptr<float>()[c] = static_cast<float>(sum_dz[c]);
      gain[c] = static_cast<float>(w.data_ptr<float>()[c] * s);
      mean_dz[c] = static_cast<float>(sum_dz[c] / static_cast<double>(rows));
      slope[c] = static_cast<float>(sum_centred[c] * s * s / static_cast<double>(rows));
    }
    torch::Tensor dx = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
    torch::Tensor dskip = has_skip ? torch::empty_like(x, at::MemoryFormat::ChannelsLast) : torch::Tensor();
    float *out = dx.data_ptr<float>(), *out_skip = has_skip ? dskip.data_ptr<float>() : nullptr;
    for_each_block(rows, [&](int64_t first, int64_t count, int64_t) {
      input_gradient(g, mask, first, count, channels, mean, gain.data(), mean_dz.data(), slope.data(), out, out_skip);
    });
    return {dx, dweight, dbias, torch::Tensor(), torch::Tensor(), dskip};
  }
};

}  // namespace

bool fused_batch_norm_relu_serves(const torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& skip) {
  if (bn.is_empty() || !bn->is_training() || !bn->options.affine() || !bn->options.track_running_stats()) return false;
  const auto cpu_float_channels_last = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 4 && t.is_contiguous(at::MemoryFormat::ChannelsLast);
  };
  if (!cpu_float_channels_last(x) || x.size(1) != bn->options.num_features() || x.numel() / x.size(1) < 2) return false;
  if (!skip.defined()) return true;
  return cpu_float_channels_last(skip) && skip.sizes() == x.sizes();
}

torch::Tensor fused_batch_norm_relu(torch::nn::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& skip) {
  const int64_t channels = x.size(1), rows = x.numel() / channels;
  const BatchStatistics stats = batch_statistics(x.data_ptr<float>(), rows, channels, bn->options.eps());
  update_running_statistics(*bn, stats, rows);
  const c10::optional<torch::Tensor> skip_or_none = skip.defined() ? c10::optional<torch::Tensor>(skip) : c10::nullopt;
  return BatchNormReLUFunction::apply(x, bn->weight, bn->bias, stats.mean, stats.invstd, skip_or_none);
}

}  // namespace clamp
