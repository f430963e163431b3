#include "distributed/sync_batch_norm.h"

#include <torch/torch.h>

#include <cstdint>

namespace clamp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor channel_view(const at::Tensor& t) { return t.view({1, -1, 1, 1}); }

// Per-channel sums in float64 (a large global batch of float32 squares loses digits otherwise).
at::Tensor channel_sum(const at::Tensor& t) { return t.sum({0, 2, 3}, /*keepdim=*/false, at::kDouble); }

struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            at::Tensor running_mean, at::Tensor running_var, double eps, double momentum, int64_t collective_address) {
    auto& collective = *reinterpret_cast<Collective*>(collective_address);
    const int64_t channels = x.size(1);
    at::Tensor sums = at::cat({channel_sum(x), channel_sum(x * x), at::full({1}, double(x.numel() / channels), at::kDouble)});
    collective.sum_in_place(sums);
    const double count = sums[2 * channels].item<double>();
    const at::Tensor mean = sums.slice(0, 0, channels) / count;
    const at::Tensor var = (sums.slice(0, channels, 2 * channels) / count - mean * mean).clamp_min(0);
    const at::Tensor invstd = (var + eps).rsqrt();
    {
      c10::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((var * (count / std::max(1.0, count - 1))).to(running_var.scalar_type()), momentum);
    }
    const at::Tensor mean_f = mean.to(x.scalar_type()), invstd_f = invstd.to(x.scalar_type());
    ctx->save_for_backward({x, weight, mean_f, invstd_f});
    ctx->saved_data["collective"] = collective_address;
    ctx->saved_data["count"] = count;
    return (x - channel_view(mean_f)) * channel_view(invstd_f * weight) + channel_view(bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto& collective = *reinterpret_cast<Collective*>(ctx->saved_data["collective"].toInt());
    const double count = ctx->saved_data["count"].toDouble();
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const at::Tensor dy = grad_outputs[0].contiguous();
    const int64_t channels = x.size(1);
    const at::Tensor xmu = x - channel_view(mean);
    const at::Tensor sum_dy = channel_sum(dy), sum_dy_xmu = channel_sum(dy * xmu);
    // This rank's part of the weight and bias gradients; the step's gradient all-reduce adds the rest.
    const at::Tensor grad_weight = (sum_dy_xmu * invstd.to(at::kDouble)).to(weight.scalar_type());
    const at::Tensor grad_bias = sum_dy.to(weight.scalar_type());
    at::Tensor global = at::cat({sum_dy, sum_dy_xmu});
    collective.sum_in_place(global);
    const at::Tensor mean_dy = (global.slice(0, 0, channels) / count).to(x.scalar_type());
    const at::Tensor mean_dy_xmu = (global.slice(0, channels, 2 * channels) / count).to(x.scalar_type());
    const at::Tensor grad_x =
        (dy - channel_view(mean_dy) - xmu * channel_view(invstd * invstd * mean_dy_xmu)) * channel_view(invstd * weight);
    return {grad_x, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor sync_batch_norm(const at::Tensor& x, torch::nn::BatchNorm2dImpl& bn, Collective& collective) {
  const auto& o = bn.options;
  double momentum = o.momentum().value_or(0.1);
  if (o.track_running_stats()) {
    bn.num_batches_tracked.add_(1);
    if (!o.momentum().has_value()) momentum = 1.0 / bn.num_batches_tracked.item<double>();  // a cumulative average, as BatchNorm's
  }
  return SyncBatchNormFunction::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, o.eps(), momentum,
                                      reinterpret_cast<int64_t>(&collective));
}

}  // namespace clamp
