#include "models/conv3x3_winograd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "models/avx2.h"

namespace clamp {

namespace {

std::atomic<int64_t> calls{0};

// Rows of a tile block that one register tile of the products covers (6 rows x 16 output channels: 12
// accumulators, two weight vectors and a broadcast in AVX2's 16 registers).
constexpr int64_t kRows = 6;
// The widest layer it takes, in and out (see conv3x3_winograd_serves).
constexpr int64_t kMaxChannels = 256;

// The transformed weight, [16 positions][C][K]: U = G g G^T for each (k, c), with
// G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], computed in float64.
std::vector<float> transformed_weight(const torch::Tensor& weight) {
  const torch::Tensor w = weight.to(torch::kFloat64).contiguous();
  const int64_t K = w.size(0), C = w.size(1);
  const double* g = w.data_ptr<double>();
  std::vector<float> u(16 * C * K);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      const double* f = g + (k * C + c) * 9;
      double t[4][3];
      for (int j = 0; j < 3; ++j) {
        const double a = f[j], b = f[3 + j], d = f[6 + j];
        t[0][j] = a, t[1][j] = 0.5 * (a + b + d), t[2][j] = 0.5 * (a - b + d), t[3][j] = d;
      }
      for (int i = 0; i < 4; ++i) {
        const double a = t[i][0], b = t[i][1], d = t[i][2];
        const double r[4] = {a, 0.5 * (a + b + d), 0.5 * (a - b + d), d};
        for (int j = 0; j < 4; ++j) u[((i * 4 + j) * C + c) * K + k] = static_cast<float>(r[j]);
      }
    }
  }
  return u;
}

// x [images, H, W, C] and y [images, H, W, K] as rows of channels; tiles of 2x2 outputs, row-major
// within each image, numbered across images.
struct Shape {
  int64_t height, width, in_channels, out_channels, tile_rows, tile_columns, tiles;
  int64_t tile_plane() const { return tile_rows * tile_columns; }
};

#if defined(CLAMP_MODELS_AVX2)

// V = B^T d B for the 4x4 input patch of each tile in [first, first + count) (zeros outside the image),
// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]; v [block rows][16][C]. Rows past
// `count` (the last block's) are zeroed.
__attribute__((target("avx2,fma"))) void input_transform(const float* x, const Shape& s, int64_t first, int64_t count, int64_t rows,
                                                         float* v) {
  const int64_t H = s.height, W = s.width, C = s.in_channels;
  for (int64_t t = 0; t < rows; ++t) {
    float* out = v + t * 16 * C;
    if (t >= count) {
      std::memset(out, 0, sizeof(float) * 16 * C);
      continue;
    }
    const int64_t id = first + t, n = id / s.tile_plane(), ty = (id % s.tile_plane()) / s.tile_columns, tx = id % s.tile_columns;
    const float* image = x + n * H * W * C;
    const int64_t r0 = 2 * ty - 1, c0 = 2 * tx - 1;
    bool inside[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) inside[i][j] = r0 + i >= 0 && r0 + i < H && c0 + j >= 0 && c0 + j < W;
    for (int64_t c = 0; c < C; c += 8) {
      __m256 d[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) d[i][j] = inside[i][j] ? _mm256_loadu_ps(image + ((r0 + i) * W + c0 + j) * C + c) : _mm256_setzero_ps();
      __m256 q[4][4];
      for (int j = 0; j < 4; ++j) {
        q[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
        q[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
        q[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
        q[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
      }
      for (int i = 0; i < 4; ++i) {
        float* row = out + i * 4 * C + c;
        _mm256_storeu_ps(row, _mm256_sub_ps(q[i][0], q[i][2]));
        _mm256_storeu_ps(row + C, _mm256_add_ps(q[i][1], q[i][2]));
        _mm256_storeu_ps(row + 2 * C, _mm256_sub_ps(q[i][2], q[i][1]));
        _mm256_storeu_ps(row + 3 * C, _mm256_sub_ps(q[i][1], q[i][3]));
      }
    }
  }
}

// For each of the 16 positions p, m[., p, .] [rows x K] = v[., p, .] [rows x C] * u[p] [C x K], in
// register tiles of kRows rows x 16 output channels summed over C in order.
__attribute__((target("avx2,fma"))) void products(const float* v, const float* u, const Shape& s, int64_t rows, float* m) {
  const int64_t C = s.in_channels, K = s.out_channels, row_v = 16 * C, row_m = 16 * K;
  for (int p = 0; p < 16; ++p) {
    const float* up = u + p * C * K;
    for (int64_t t = 0; t < rows; t += kRows) {
      const float* vt = v + t * row_v + p * C;
      for (int64_t k = 0; k < K; k += 16) {
        __m256 lo[kRows], hi[kRows];
        for (int r = 0; r < kRows; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
        for (int64_t c = 0; c < C; ++c) {
          const __m256 a = _mm256_loadu_ps(up + c * K + k), b = _mm256_loadu_ps(up + c * K + k + 8);
          for (int r = 0; r < kRows; ++r) {
            const __m256 e = _mm256_broadcast_ss(vt + r * row_v + c);
            lo[r] = _mm256_fmadd_ps(e, a, lo[r]);
            hi[r] = _mm256_fmadd_ps(e, b, hi[r]);
          }
        }
        float* mt = m + t * row_m + p * K + k;
        for (int r = 0; r < kRows; ++r) {
          _mm256_storeu_ps(mt + r * row_m, lo[r]);
          _mm256_storeu_ps(mt + r * row_m + 8, hi[r]);
        }
      }
    }
  }
}

// Y = A^T M A, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], written where the 2x2 block lies inside the image.
__attribute__((target("avx2,fma"))) void output_transform(const float* m, const Shape& s, int64_t first, int64_t count, float* y) {
  const int64_t H = s.height, W = s.width, K = s.out_channels;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t id = first + t, n = id / s.tile_plane(), ty = (id % s.tile_plane()) / s.tile_columns, tx = id % s.tile_columns;
    float* image = y + n * H * W * K;
    const float* mt = m + t * 16 * K;
    const bool second_column = 2 * tx + 1 < W;
    for (int64_t k = 0; k < K; k += 8) {
      __m256 e[16];
      for (int p = 0; p < 16; ++p) e[p] = _mm256_loadu_ps(mt + p * K + k);
      __m256 r[2][4];
      for (int j = 0; j < 4; ++j) {
        r[0][j] = _mm256_add_ps(_mm256_add_ps(e[j], e[4 + j]), e[8 + j]);
        r[1][j] = _mm256_sub_ps(_mm256_sub_ps(e[4 + j], e[8 + j]), e[12 + j]);
      }
      for (int a = 0; a < 2 && 2 * ty + a < H; ++a) {
        float* out = image + ((2 * ty + a) * W + 2 * tx) * K + k;
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(r[a][0], r[a][1]), r[a][2]));
        if (second_column) _mm256_storeu_ps(out + K, _mm256_sub_ps(_mm256_sub_ps(r[a][1], r[a][2]), r[a][3]));
      }
    }
  }
}

#endif

}  // namespace

bool conv3x3_winograd_serves(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!cpu_has_avx2_fma() || !x.defined() || !weight.defined()) return false;
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat32 || x.dim() != 4 || !x.is_contiguous(at::MemoryFormat::ChannelsLast))
    return false;
  if (!weight.device().is_cpu() || weight.scalar_type() != torch::kFloat32 || weight.dim() != 4) return false;
  const int64_t C = x.size(1), K = weight.size(0);
  // Each block of tiles reads the whole transformed weight (16 C K floats): past 256 channels it outgrows
  // the caches and the products wait on memory (512 -> 512 at 4x4 ran 3x slower than oneDNN; 256 level).
  return weight.size(1) == C && weight.size(2) == 3 && weight.size(3) == 3 && C % 8 == 0 && K % 16 == 0 && C <= kMaxChannels &&
         K <= kMaxChannels && x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0;
}

int64_t conv3x3_winograd_calls() { return calls.load(std::memory_order_relaxed); }

torch::Tensor conv3x3_winograd(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!conv3x3_winograd_serves(x, weight))
    throw std::invalid_argument(
        "conv3x3_winograd takes float32 channels_last x [N, C, H, W] on an AVX2 CPU and weight [K, C, 3, 3], C a multiple of 8 and K of "
        "16, both "
        "at most 256");
  calls.fetch_add(1, std::memory_order_relaxed);
  const int64_t H = x.size(2), W = x.size(3), C = x.size(1), K = weight.size(0);
  const Shape s{H, W, C, K, (H + 1) / 2, (W + 1) / 2, x.size(0) * ((H + 1) / 2) * ((W + 1) / 2)};
  torch::Tensor y = torch::empty({x.size(0), K, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
#if defined(CLAMP_MODELS_AVX2)
  const std::vector<float> u = transformed_weight(weight);
  // A block's transformed inputs and products, 16 x rows x (C + K) floats, sized to stay in L2 (256 KiB).
  const int64_t rows = std::clamp<int64_t>(65536 / 16 / (C + K), 2 * kRows, 20 * kRows) / kRows * kRows;
  const int64_t blocks = (s.tiles + rows - 1) / rows;
  const float* from = x.data_ptr<float>();
  float* to = y.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> v(16 * rows * C), m(16 * rows * K);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * rows, count = std::min(rows, s.tiles - first);
      input_transform(from, s, first, count, rows, v.data());
      products(v.data(), u.data(), s, rows, m.data());
      output_transform(m.data(), s, first, count, to);
    }
  });
#endif
  return y;
}

}  // namespace clamp
