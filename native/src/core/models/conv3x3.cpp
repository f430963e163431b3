#include "models/conv3x3.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/avx2.h"
#include "models/conv3x3_winograd.h"

namespace clamp {

namespace {

std::atomic<int64_t> weight_gradients_computed{0};

// Activations in channels_last are rows of channels, one row per (image, y, x). Each task sums the
// products of `kGroupPositions` or more positions (whole images) per pass over its accumulators, and a
// partial sum covers `kBlockPositions` or more positions (a fixed number of whole images, from the
// shape alone), so that the grouping, and with it every bit of the result, is the same at any thread count.
constexpr int64_t kGroupPositions = 128;
constexpr int64_t kBlockPositions = 2048;
// Output channels a task owns: tasks are (block, chunk of output channels).
constexpr int64_t kChunkChannels = 16;

// x [images, height, width, in_channels] and dy [images, out_height, out_width, out_channels], both rows
// of channels; the convolution's stride is 1 or 2.
struct Layout {
  int64_t images, height, width, in_channels, out_channels, stride, out_height, out_width;
  int64_t out_plane() const { return out_height * out_width; }
  int64_t group_images() const { return std::max<int64_t>(1, (kGroupPositions + out_plane() - 1) / out_plane()); }
  int64_t block_images() const {
    const int64_t group = group_images();
    return group * std::max<int64_t>(1, kBlockPositions / (group * out_plane()));
  }
  int64_t blocks() const { return (images + block_images() - 1) / block_images(); }
  // One partial sum: [out_channels][9 taps][in_channels], the weight's channels_last order.
  int64_t partial_size() const { return out_channels * 9 * in_channels; }
};

// Outputs 0 <= o < out whose tap at stride * o + t - 1 reads inside [0, size): [first, end).
struct Span {
  int64_t first, end;
};
Span inside(int64_t t, int64_t size, int64_t stride, int64_t out) {
  const int64_t last = size - t;  // stride * o <= last
  return {t == 0 ? 1 : 0, last < 0 ? 0 : std::min(out, last / stride + 1)};
}

#if defined(CLAMP_MODELS_AVX2)

// Adds to `partial` (this block's, for output channels [k_begin, k_end)) the products of images
// [n_begin, n_end): for each tap and each tile of 4 output x 16 input channels, 8 accumulators in
// registers over the group's output positions, where the tap reads inside the image.
__attribute__((target("avx2,fma"))) void accumulate(const float* x, const float* dy, const Layout& l, int64_t n_begin, int64_t n_end,
                                                    int64_t k_begin, int64_t k_end, float* partial) {
  const int64_t H = l.height, W = l.width, C = l.in_channels, K = l.out_channels, group = l.group_images();
  const int64_t S = l.stride, Ho = l.out_height, Wo = l.out_width;
  for (int64_t n0 = n_begin; n0 < n_end; n0 += group) {
    const int64_t n1 = std::min(n_end, n0 + group);
    for (int64_t i = 0; i < 3; ++i) {
      const Span rows = inside(i, H, S, Ho);
      for (int64_t j = 0; j < 3; ++j) {
        const Span columns = inside(j, W, S, Wo);
        const int64_t tap = i * 3 + j;
        for (int64_t k = k_begin; k < k_end; k += 4) {
          for (int64_t c = 0; c < C; c += 16) {
            float* at[4];
            for (int64_t t = 0; t < 4; ++t) at[t] = partial + ((k + t) * 9 + tap) * C + c;
            __m256 a0 = _mm256_loadu_ps(at[0]), b0 = _mm256_loadu_ps(at[0] + 8);
            __m256 a1 = _mm256_loadu_ps(at[1]), b1 = _mm256_loadu_ps(at[1] + 8);
            __m256 a2 = _mm256_loadu_ps(at[2]), b2 = _mm256_loadu_ps(at[2] + 8);
            __m256 a3 = _mm256_loadu_ps(at[3]), b3 = _mm256_loadu_ps(at[3] + 8);
            for (int64_t n = n0; n < n1; ++n) {
              for (int64_t y = rows.first; y < rows.end; ++y) {
                const float* g = dy + ((n * Ho + y) * Wo) * K + k;
                const float* row = x + (n * H + S * y + i - 1) * W * C + c;
                for (int64_t p = columns.first; p < columns.end; ++p) {
                  const float* v = row + (S * p + j - 1) * C;
                  const __m256 lo = _mm256_loadu_ps(v), hi = _mm256_loadu_ps(v + 8);
                  const float* gp = g + p * K;
                  __m256 s = _mm256_broadcast_ss(gp);
                  a0 = _mm256_fmadd_ps(s, lo, a0);
                  b0 = _mm256_fmadd_ps(s, hi, b0);
                  s = _mm256_broadcast_ss(gp + 1);
                  a1 = _mm256_fmadd_ps(s, lo, a1);
                  b1 = _mm256_fmadd_ps(s, hi, b1);
                  s = _mm256_broadcast_ss(gp + 2);
                  a2 = _mm256_fmadd_ps(s, lo, a2);
                  b2 = _mm256_fmadd_ps(s, hi, b2);
                  s = _mm256_broadcast_ss(gp + 3);
                  a3 = _mm256_fmadd_ps(s, lo, a3);
                  b3 = _mm256_fmadd_ps(s, hi, b3);
                }
              }
            }
            _mm256_storeu_ps(at[0], a0), _mm256_storeu_ps(at[0] + 8, b0);
            _mm256_storeu_ps(at[1], a1), _mm256_storeu_ps(at[1] + 8, b1);
            _mm256_storeu_ps(at[2], a2), _mm256_storeu_ps(at[2] + 8, b2);
            _mm256_storeu_ps(at[3], a3), _mm256_storeu_ps(at[3] + 8, b3);
          }
        }
      }
    }
  }
}

#endif

struct Conv3x3Function : torch::autograd::Function<Conv3x3Function> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight, int64_t stride,
                               bool winograd) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["winograd"] = winograd;
    if (stride == 1 && winograd && conv3x3_winograd_serves(x, weight)) return conv3x3_winograd(x, weight);
    return at::conv2d(x, weight, {}, stride, 1);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &weight = saved[1];
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const bool winograd = ctx->saved_data["winograd"].toBool();
    const torch::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    torch::Tensor dx, dweight;
    if (ctx->needs_input_grad(0)) {
      // A stride-1 layer's input gradient is the convolution of dy with the weight transposed
      // (in and out channels swapped) and turned 180 degrees.
      const torch::Tensor turned = stride == 1 && winograd ? weight.transpose(0, 1).flip({2, 3}) : torch::Tensor();
      if (turned.defined() && conv3x3_winograd_serves(dy, turned)) {
        dx = conv3x3_winograd(dy, turned);
      } else {
        dx = std::get<0>(at::convolution_backward(dy, x, weight, c10::nullopt, {stride, stride}, {1, 1}, {1, 1}, false, {0, 0}, 1,
                                                  {true, false, false}));
      }
    }
    if (ctx->needs_input_grad(1)) dweight = conv3x3_weight_gradient(x, dy, stride);
    return {dx, dweight, torch::Tensor(), torch::Tensor()};
  }
};

bool cpu_float_channels_last(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 4 &&
         t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace

bool conv3x3_serves(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride) {
  if (stride != 1 && stride != 2) return false;
  if (!torch::GradMode::is_enabled() || !cpu_has_avx2_fma() || !cpu_float_channels_last(x) || !weight.defined() || !weight.requires_grad())
    return false;
  if (!weight.device().is_cpu() || weight.scalar_type() != torch::kFloat32 || weight.dim() != 4) return false;
  const int64_t channels = x.size(1);
  return weight.size(1) == channels && weight.size(2) == 3 && weight.size(3) == 3 && channels % 16 == 0 && weight.size(0) % 4 == 0 &&
         x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0;
}

torch::Tensor conv3x3(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride, bool winograd) {
  return Conv3x3Function::apply(x, weight, stride, winograd);
}

int64_t conv3x3_weight_gradients_computed() { return weight_gradients_computed.load(std::memory_order_relaxed); }

torch::Tensor conv3x3_weight_gradient(const torch::Tensor& x, const torch::Tensor& dy, int64_t stride) {
  if (!cpu_has_avx2_fma()) throw std::invalid_argument("conv3x3_weight_gradient needs an x86-64 CPU with AVX2 and FMA");
  if (stride != 1 && stride != 2) throw std::invalid_argument("conv3x3_weight_gradient takes stride 1 or 2, got " + std::to_string(stride));
  // The output of a 3x3 convolution with padding 1: (size - 1) / stride + 1 a side.
  const auto out_side = [&](int64_t size) { return (size - 1) / stride + 1; };
  if (!cpu_float_channels_last(x) || !cpu_float_channels_last(dy) || x.size(0) != dy.size(0) || dy.size(2) != out_side(x.size(2)) ||
      dy.size(3) != out_side(x.size(3)) || x.size(1) % 16 != 0 || dy.size(1) % 4 != 0)
    throw std::invalid_argument(
        "conv3x3_weight_gradient takes float32 channels_last x [N, C, H, W] and dy [N, K, (H - 1) / stride + 1, (W - 1) / stride + 1], "
        "C a multiple of 16 and K of 4");
  const Layout l{x.size(0), x.size(2), x.size(3), x.size(1), dy.size(1), stride, dy.size(2), dy.size(3)};
  weight_gradients_computed.fetch_add(1, std::memory_order_relaxed);
  torch::Tensor dweight = torch::empty({l.out_channels, l.in_channels, 3, 3}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
#if defined(CLAMP_MODELS_AVX2)
  const int64_t blocks = l.blocks(), chunk = std::min(kChunkChannels, l.out_channels);
  const int64_t chunks = (l.out_channels + chunk - 1) / chunk;
  std::vector<float> partial(blocks * l.partial_size(), 0.0f);
  const float *from = x.data_ptr<float>(), *g = dy.data_ptr<float>();
  at::parallel_for(0, blocks * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task / chunks, k_begin = (task % chunks) * chunk;
      const int64_t n_begin = block * l.block_images(), n_end = std::min(l.images, n_begin + l.block_images());
      accumulate(from, g, l, n_begin, n_end, k_begin, std::min(l.out_channels, k_begin + chunk), partial.data() + block * l.partial_size());
    }
  });
  // The blocks' sums in float64, in block order.
  float* out = dweight.data_ptr<float>();
  at::parallel_for(0, l.partial_size(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      double sum = 0;
      for (int64_t block = 0; block < blocks; ++block) sum += partial[block * l.partial_size() + e];
      out[e] = static_cast<float>(sum);
    }
  });
#endif
  return dweight;
}

}  // namespace clamp
