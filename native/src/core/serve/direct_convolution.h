// Direct convolutions for CPU inference: float32 NHWC activations in zero-bordered buffers, weights
// packed once as [kernel][kernel][input channels][output channels], and the bias, the residual add and
// the ReLU applied by the kernel as it stores each tile. Each tile keeps a few output pixels of one row
// times up to 64 output channels in vector registers while it walks the kernel's taps and the input
// channels, so a layer makes one pass over its output and none over an im2col copy.
// Why not LibTorch's at::conv2d or oneDNN's fused operators: the small network's layers (14x14x16 to
// 4x4x64) are too small for them. Measured on the 2-core AMD EPYC VM (AVX-512, one thread), a
// 16->16 3x3 convolution on 14x14 took 37 us through at::conv2d (12 GMAC/s) and 10 us here (44 GMAC/s);
// ResNet-18's 64->64 on 32x32 881 us (43 GMAC/s) against 686 us (55 GMAC/s).
// The kernels are compiled for AVX-512 and for AVX2 in one translation unit (GCC's target pragmas) and
// chosen at run time by what the CPU supports. Only the kernels themselves sit under those pragmas, and
// no header is included there: no inline library function compiled for AVX-512 can be picked by the
// linker for code that runs on other CPUs.
#pragma once

#include <cstdint>

namespace clamp::direct {

// The kernels this build and this CPU can run: "avx512", "avx2" (with FMA), or nullptr (another CPU or
// compiler: callers keep LibTorch's kernels).
const char* instruction_set();

// Output channel counts are padded to a multiple of this in packed weights and in buffers (zero weights
// and biases: the padded channels hold zeros through every layer).
constexpr int64_t kChannelAlign = 16;

// A batch of images in a buffer [batch][height + 2 pad][width + 2 pad][channels], the border zero.
// channels is the buffer's channel stride (the count rounded up to kChannelAlign, except for the
// network's input image).
struct Activation {
  float* data = nullptr;
  int64_t batch = 0, height = 0, width = 0, channels = 0, pad = 0;

  int64_t row_stride() const { return (width + 2 * pad) * channels; }
  int64_t image_stride() const { return (height + 2 * pad) * row_stride(); }
  int64_t floats() const { return batch * image_stride(); }
  // The first interior value of row y of image n.
  float* row(int64_t n, int64_t y) const { return data + n * image_stride() + (y + pad) * row_stride() + pad * channels; }
};

struct Convolution {
  const float* weight = nullptr;  // [kernel][kernel][input's channel stride][out_channels]
  const float* bias = nullptr;    // [out_channels]
  int64_t kernel = 1, stride = 1, padding = 0;
  int64_t out_channels = 0;  // a multiple of kChannelAlign
};

// out = conv(in) [+ residual], ReLU'd when relu, for output rows [row_begin, row_end) of the flattened
// batch * out.height (split the rows between threads). residual may be out itself (accumulated in
// place) or null. Needs in.pad >= padding, out.channels == out_channels, out's size the convolution's,
// and instruction_set() non-null.
void convolve(const Convolution& conv, const Activation& in, const Activation& out, const Activation* residual, bool relu,
              int64_t row_begin, int64_t row_end);

// Zeroes the buffer's border (what convolve reads as padding); the interior is left as it is.
void zero_border(const Activation& buffer);

// 3x3 max-pool, stride 2, padding 1 (the ImageNet stem's), of values >= 0 (a ReLU's outputs), so the
// zero border stands in for minus infinity.
void max_pool_3x3_stride2(const Activation& in, const Activation& out);

// The mean over each image's pixels of its first `channels` channels: out [batch][channels].
void mean_pool(const Activation& in, int64_t channels, float* out);

}  // namespace clamp::direct
