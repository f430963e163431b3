#include "augment/image_kernels.h"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "numerics/vector_clones.h"

// A fused multiply-add rounds once where the formulas round twice: keep every product and sum apart,
// whatever the target's default (GCC contracts by default in GNU mode where FMA is baseline, aarch64).
// No trapping math: GCC then turns the blends' clamps into vector selects (it would not otherwise
// evaluate a comparison that might trap); no value changes, only whether a floating-point flag could.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

namespace clamp::augment {

namespace {

// JavaScript's Math.max and Math.min of two numbers: NaN wins, and +0 is above -0 (std::max and
// std::min return their first argument for equal values, the sign of a zero included).
inline double js_max(double a, double b) {
  if (a > b) return a;
  if (b > a) return b;
  if (a != a || b != b) return std::numeric_limits<double>::quiet_NaN();
  return std::signbit(a) ? b : a;
}
inline double js_min(double a, double b) {
  if (a < b) return a;
  if (b < a) return b;
  if (a != a || b != b) return std::numeric_limits<double>::quiet_NaN();
  return std::signbit(a) ? a : b;
}

inline double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

// fmod for the hue, without the call where the answer is plain: x itself below the divisor, x - 1
// (exact) for x in [1, 2). These are the same numbers fmod gives, the sign of a zero included.
inline double remainder6(double x) { return x > -6 && x < 6 ? x : std::fmod(x, 6.0); }
inline double remainder1(double x) { return x > -1 && x < 1 ? x : x >= 1 && x < 2 ? x - 1 : std::fmod(x, 1.0); }

struct Taps {
  std::vector<int64_t> first, second;  // the two source pixels of each output
  std::vector<double> f, g;            // their weights: g for the first, f = 1 - g for the second
};

// For each of n outputs along a side of `size` source pixels (half-pixel centres, clamped to the side);
// mirrored, output i takes output n - 1 - i's taps, which is the crop followed by a horizontal flip.
Taps bilinear_taps(int64_t n, int64_t size, bool mirrored = false) {
  Taps taps;
  taps.first.resize(n), taps.second.resize(n), taps.f.resize(n), taps.g.resize(n);
  const double scale = static_cast<double>(size) / static_cast<double>(n);
  const double last = static_cast<double>(size - 1);
  for (int64_t i = 0; i < n; ++i) {
    const double s = js_min(js_max((static_cast<double>(i) + 0.5) * scale - 0.5, 0.0), last);
    const double x0 = std::floor(s), f = s - x0;
    const int64_t at = mirrored ? n - 1 - i : i;
    taps.first[at] = static_cast<int64_t>(x0);
    taps.second[at] = static_cast<int64_t>(js_min(x0 + 1, last));
    taps.f[at] = f;
    taps.g[at] = 1 - f;
  }
  return taps;
}

// The 256 values of bytes / 255 (as from_bytes stores them): a load where there was a division.
const std::array<float, 256>& byte_values() {
  static const auto table = [] {
    std::array<float, 256> values{};
    for (int b = 0; b < 256; ++b) values[b] = static_cast<float>(static_cast<double>(b) / 255);
    return values;
  }();
  return table;
}

// into[x] = row[first[x]] * g[x] + row[second[x]] * f[x]. Kept out of
// line, with its pointers promised apart: inlined into the crop's loop, its table pointers were spilled
// and reloaded at every element.
__attribute__((noinline)) void interpolate_row(double* __restrict into, const float* __restrict row, const int64_t* __restrict first,
                                               const int64_t* __restrict second, const double* __restrict f, const double* __restrict g,
                                               int64_t n) {
  for (int64_t x = 0; x < n; ++x) into[x] = static_cast<double>(row[first[x]]) * g[x] + static_cast<double>(row[second[x]]) * f[x];
}

inline void interpolate_row(double* into, const float* row, const Taps& taps, int64_t n, int64_t, float*) {
  interpolate_row(into, row, taps.first.data(), taps.second.data(), taps.f.data(), taps.g.data(), n);
}

// From uint8 pixels: the box's part of the row converted first into `values` (as from_bytes would), then as above.
inline void interpolate_row(double* into, const uint8_t* row, const Taps& taps, int64_t n, int64_t box_width, float* values) {
  const std::array<float, 256>& table = byte_values();
  for (int64_t x = 0; x < box_width; ++x) values[x] = table[row[x]];
  interpolate_row(into, values, taps, n, box_width, nullptr);
}

CLAMP_VECTOR_CLONES
void blend_rows(float* out, const double* top, const double* bottom, double gy, double fy, int64_t n) {
  for (int64_t x = 0; x < n; ++x) out[x] = static_cast<float>(top[x] * gy + bottom[x] * fy);
}

CLAMP_VECTOR_CLONES
void blend_constant_values(const float* in, int64_t n, double other, double factor, float* out) {
  for (int64_t k = 0; k < n; ++k) out[k] = static_cast<float>(clamp01(factor * static_cast<double>(in[k]) + (1 - factor) * other));
}

CLAMP_VECTOR_CLONES
void blend_plane_values(const float* in, const float* other, int64_t n, double factor, double inverse, float* out) {
  for (int64_t k = 0; k < n; ++k)
    out[k] = static_cast<float>(clamp01(factor * static_cast<double>(in[k]) + inverse * static_cast<double>(other[k])));
}

// One blur pass over a symmetric kernel of 2 * radius + 1 weights (float32): out[x] = centre * row(0)[x]
// + sum over k = 1 .. radius of kernel[radius - k] * (row(-k)[x] + row(+k)[x]), in float32, summed in
// that order, where row(t) is the row tap t reads: row + t along a padded row, rows[radius + t] down the
// columns. The symmetry halves the multiplications (OpenCV's float kernels pair the taps the same way).
// A strip of outputs is summed side by side, one tap pair at a time, in float32 lanes (GCC's and
// Clang's vector extension: each lane an IEEE operation of its own, so the same bits as one output at a
// time, on any vector width); 32 outputs in four vectors hide the latency of an addition.
typedef float Lanes __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8, kBlurStrip = 4 * kLanes;

inline Lanes load_lanes(const float* from) {
  Lanes v;
  std::memcpy(&v, from, sizeof v);
  return v;
}
inline void store_lanes(float* to, const Lanes& v) { std::memcpy(to, &v, sizeof v); }

template <typename RowOf>
inline void blur_pass(float* out, int64_t n, const float* kernel, int64_t radius, RowOf row_of) {
  const float centre = kernel[radius];
  int64_t x = 0;
  for (; x + kBlurStrip <= n; x += kBlurStrip) {
    const float* middle = row_of(0) + x;
    Lanes a0 = centre * load_lanes(middle), a1 = centre * load_lanes(middle + kLanes), a2 = centre * load_lanes(middle + 2 * kLanes),
          a3 = centre * load_lanes(middle + 3 * kLanes);
    for (int64_t k = 1; k <= radius; ++k) {
      const float w = kernel[radius - k];
      const float *low = row_of(-k) + x, *high = row_of(k) + x;
      a0 += w * (load_lanes(low) + load_lanes(high));
      a1 += w * (load_lanes(low + kLanes) + load_lanes(high + kLanes));
      a2 += w * (load_lanes(low + 2 * kLanes) + load_lanes(high + 2 * kLanes));
      a3 += w * (load_lanes(low + 3 * kLanes) + load_lanes(high + 3 * kLanes));
    }
    store_lanes(out + x, a0);
    store_lanes(out + x + kLanes, a1);
    store_lanes(out + x + 2 * kLanes, a2);
    store_lanes(out + x + 3 * kLanes, a3);
  }
  for (; x + kLanes <= n; x += kLanes) {
    Lanes a = centre * load_lanes(row_of(0) + x);
    for (int64_t k = 1; k <= radius; ++k) a += kernel[radius - k] * (load_lanes(row_of(-k) + x) + load_lanes(row_of(k) + x));
    store_lanes(out + x, a);
  }
  for (; x < n; ++x) {
    float sum = centre * row_of(0)[x];
    for (int64_t k = 1; k <= radius; ++k) sum += kernel[radius - k] * (row_of(-k)[x] + row_of(k)[x]);
    out[x] = sum;
  }
}

CLAMP_VECTOR_CLONES
void blur_row(float* out, const float* padded, int64_t n, const float* kernel, int64_t radius) {
  const float* centre = padded + radius;
  blur_pass(out, n, kernel, radius, [centre](int64_t t) { return centre + t; });
}

CLAMP_VECTOR_CLONES
void blur_column(float* out, const float* const* rows, int64_t n, const float* kernel, int64_t radius) {
  const float* const* centre = rows + radius;
  blur_pass(out, n, kernel, radius, [centre](int64_t t) { return centre[t]; });
}

}  // namespace

void from_bytes(const uint8_t* bytes, int64_t count, float* out) {
  const std::array<float, 256>& table = byte_values();
  for (int64_t k = 0; k < count; ++k) out[k] = table[bytes[k]];
}

namespace {

template <typename Pixel>
void crop_pixels(const Pixel* in, const ImageShape& shape, const CropBox& box, int64_t out_height, int64_t out_width, bool mirrored,
                 float* out) {
  const Taps columns = bilinear_taps(out_width, box.width, mirrored), rows = bilinear_taps(out_height, box.height);
  // An interpolated source row (float64, so exact) serves every output row that reads it: the top and
  // bottom rows of one output row are often the bottom and top of the next.
  thread_local std::vector<double> first, second;
  thread_local std::vector<float> row_values;  // a uint8 source's box row as float32 values
  first.resize(out_width), second.resize(out_width), row_values.resize(box.width);
  double* top = first.data();
  double* bottom = second.data();
  for (int64_t c = 0; c < shape.channels; ++c) {
    const Pixel* plane = in + c * shape.plane();
    const auto row_start = [&](int64_t row) { return plane + (box.top + row) * shape.width + box.left; };
    int64_t top_of = -1, bottom_of = -1;  // the source row each holds (-1: none yet)
    for (int64_t y = 0; y < out_height; ++y) {
      const int64_t y0 = rows.first[y], y1 = rows.second[y];
      if (top_of != y0) {
        if (bottom_of == y0) {
          std::swap(top, bottom);
          bottom_of = -1;
        } else {
          interpolate_row(top, row_start(y0), columns, out_width, box.width, row_values.data());
        }
        top_of = y0;
      }
      if (bottom_of != y1) {
        interpolate_row(bottom, row_start(y1), columns, out_width, box.width, row_values.data());
        bottom_of = y1;
      }
      blend_rows(out + (c * out_height + y) * out_width, top, bottom, rows.g[y], rows.f[y], out_width);
    }
  }
}

}  // namespace

void crop_and_resize(const float* in, const ImageShape& shape, const CropBox& box, int64_t out_height, int64_t out_width, bool mirrored,
                     float* out) {
  crop_pixels(in, shape, box, out_height, out_width, mirrored, out);
}

void crop_and_resize(const uint8_t* in, const ImageShape& shape, const CropBox& box, int64_t out_height, int64_t out_width, bool mirrored,
                     float* out) {
  crop_pixels(in, shape, box, out_height, out_width, mirrored, out);
}

void horizontal_flip(const float* in, const ImageShape& shape, float* out) {
  const int64_t w = shape.width;
  for (int64_t row = 0; row < shape.channels * shape.height; ++row) {
    const float* from = in + row * w;
    float* to = out + row * w;
    for (int64_t x = 0; x < w; ++x) to[x] = from[w - 1 - x];
  }
}

CLAMP_VECTOR_CLONES
void luma(const float* in, const ImageShape& shape, float* out) {
  const int64_t plane = shape.plane();
  if (shape.channels < 3) {
    for (int64_t k = 0; k < plane; ++k) out[k] = in[k];
    return;
  }
  const float *r = in, *g = in + plane, *b = in + 2 * plane;
  for (int64_t k = 0; k < plane; ++k)
    out[k] = static_cast<float>(0.299 * static_cast<double>(r[k]) + 0.587 * static_cast<double>(g[k]) + 0.114 * static_cast<double>(b[k]));
}

void blend_constant(const float* in, const ImageShape& shape, double other, double factor, float* out) {
  blend_constant_values(in, shape.values(), other, factor, out);
}

void blend_plane(const float* in, const ImageShape& shape, const float* other, double factor, float* out) {
  const int64_t plane = shape.plane();
  const double inverse = 1 - factor;
  for (int64_t c = 0; c < shape.channels; ++c) blend_plane_values(in + c * plane, other, plane, factor, inverse, out + c * plane);
}

double mean_luma(const float* luma_plane, int64_t count) {
  double sum = 0;  // in pixel order: the reference sums the same way
  for (int64_t k = 0; k < count; ++k) sum += static_cast<double>(luma_plane[k]);
  return sum / static_cast<double>(count);
}

namespace {

// Whether every value is finite and none is -0: then plain comparisons give what Math.max and Math.min
// give, and the hue's fast loop below computes exactly what the general one does.
CLAMP_VECTOR_CLONES
bool plain_values(const float* in, int64_t n) {
  uint32_t bad = 0;
  for (int64_t k = 0; k < n; ++k) {
    uint32_t bits;
    std::memcpy(&bits, in + k, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u) | static_cast<uint32_t>(bits == 0x80000000u);
  }
  return bad == 0;
}

// The hue rotation for plain values and |shift| <= 1/2, written as selects so that it vectorises. Why it
// is the same number as the general loop's, step by step: max and min are plain maxima (no NaN, no -0);
// |g - b| <= delta, so remainder6 of (g - b) / delta is that quotient itself; h lies in [-1, 5], so
// h / 6 + shift lies in (-1, 4 / 3) and each remainder1 is the value or the value - 1; the +0 added in
// red's case can only turn a -0 into +0, and the + 1 that follows makes both 1; h * 6 < 6 for h < 1,
// so the sector is 0 to 5.
// Six streams, none overlapping another (__restrict): without that promise the compiler would check
// them against each other at run time, more checks than it is willing to make, and not vectorise.
CLAMP_VECTOR_CLONES
void rotate_plain_hue(const float* __restrict red, const float* __restrict green, const float* __restrict blue, int64_t plane, double shift,
                      float* __restrict out_red, float* __restrict out_green, float* __restrict out_blue) {
  for (int64_t k = 0; k < plane; ++k) {
    const double r = red[k], g = green[k], b = blue[k];
    const double rg_max = r > g ? r : g, rg_min = r < g ? r : g;
    const double max = rg_max > b ? rg_max : b, min = rg_min < b ? rg_min : b, delta = max - min;
    const double numerator = max == r ? g - b : max == g ? b - r : r - g;
    const double offset = max == r ? 0.0 : max == g ? 2.0 : 4.0;
    // Divisions by a safe divisor, then the choice: a division under a branch would stop the loop
    // from vectorising.
    const double quotient = numerator / (delta > 0 ? delta : 1.0);
    double h = delta > 0 ? quotient + offset : 0.0;
    h = h / 6 + shift;
    h = h < 1 ? h : h - 1;
    h = h + 1;
    h = h < 1 ? h : h - 1;
    const double saturation = delta / (max == 0 ? 1.0 : max);
    const double s = max == 0 ? 0.0 : saturation, v = max;
    const double sector = std::floor(h * 6), f = h * 6 - sector;
    const double p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
    // By sector: red v q p p t v, green t v v q p p, blue p p t v v q; one select at a time, which
    // the compiler turns into blends (nested conditionals it left as branches).
    double rr = p, gg = v, bb = v;
    rr = sector == 1 ? q : rr;
    rr = sector == 4 ? t : rr;
    rr = sector == 0 ? v : rr;
    rr = sector == 5 ? v : rr;
    gg = sector == 0 ? t : gg;
    gg = sector == 3 ? q : gg;
    gg = sector >= 4 ? p : gg;
    bb = sector <= 1 ? p : bb;
    bb = sector == 2 ? t : bb;
    bb = sector == 5 ? q : bb;
    out_red[k] = static_cast<float>(rr);
    out_green[k] = static_cast<float>(gg);
    out_blue[k] = static_cast<float>(bb);
  }
}

}  // namespace

void rotate_hue(const float* in, const ImageShape& shape, double shift, float* out) {
  const int64_t plane = shape.plane();
  if (shift >= -0.5 && shift <= 0.5 && plain_values(in, 3 * plane)) {
    rotate_plain_hue(in, in + plane, in + 2 * plane, plane, shift, out, out + plane, out + 2 * plane);
    return;
  }
  // The general loop: any value and shift, JavaScript's Math.max and Math.min, fmod where needed.
  // (r, g, b) by sector, as indices into {v, p, q, t}: [[v, t, p], [q, v, p], [p, v, t], [p, q, v],
  // [t, p, v], [v, p, q]].
  static constexpr int red[6] = {0, 2, 1, 1, 3, 0}, green[6] = {3, 0, 0, 2, 1, 1}, blue[6] = {1, 1, 3, 0, 0, 2};
  for (int64_t k = 0; k < plane; ++k) {
    const double r = in[k], g = in[plane + k], b = in[2 * plane + k];
    const double max = js_max(js_max(r, g), b), min = js_min(js_min(r, g), b), delta = max - min;
    double h = 0;
    if (delta > 0) h = max == r ? remainder6((g - b) / delta) : max == g ? (b - r) / delta + 2 : (r - g) / delta + 4;
    h = remainder1(remainder1(h / 6 + shift) + 1);
    const double s = max == 0 ? 0 : delta / max, v = max;
    const double sector = std::floor(h * 6), f = h * 6 - sector;
    // JavaScript's sector % 6, without fmod's call for the sectors h in [0, 1) gives.
    const double which = sector >= 0 && sector <= 5 ? sector : std::fmod(sector, 6.0);
    if (!(which >= 0 && which <= 5)) {
      throw std::invalid_argument("hue rotation: no hue sector for pixel " + std::to_string(k) + " (shift " + std::to_string(shift) +
                                  "): a value or the shift is not a finite number");
    }
    const double values[4] = {v, v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)};
    const int index = static_cast<int>(which);
    out[k] = static_cast<float>(values[red[index]]);
    out[plane + k] = static_cast<float>(values[green[index]]);
    out[2 * plane + k] = static_cast<float>(values[blue[index]]);
  }
}

int64_t reflect_101(int64_t i, int64_t n) {
  if (n == 1) return 0;
  // Each mirror brings i nearer: at most |i| / (n - 1) of them.
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

bool symmetric_kernel(const double* kernel, int64_t taps) {
  for (int64_t j = 0; j < taps / 2; ++j)
    if (kernel[j] != kernel[taps - 1 - j]) return false;
  return true;
}

void separable_blur(const float* in, const ImageShape& shape, const double* kernel, int64_t taps, float* out) {
  const int64_t radius = taps / 2, width = shape.width, height = shape.height;
  // In float32, as OpenCV blurs float images: first along rows into `horizontal`, then down its
  // columns, each output summed as blur_pass says. The buffers are the thread's, kept.
  thread_local std::vector<float> weights, padded, horizontal;
  thread_local std::vector<int64_t> sources;
  thread_local std::vector<const float*> rows;
  weights.assign(kernel, kernel + taps);
  padded.resize(width + 2 * radius);
  sources.resize(padded.size());
  horizontal.resize(shape.plane());
  rows.resize(taps);
  for (int64_t i = 0; i < static_cast<int64_t>(padded.size()); ++i) sources[i] = reflect_101(i - radius, width);
  for (int64_t c = 0; c < shape.channels; ++c) {
    const int64_t plane = c * shape.plane();
    for (int64_t y = 0; y < height; ++y) {
      const float* row = in + plane + y * width;
      // The row itself in the middle, its mirrored ends around it.
      std::memcpy(padded.data() + radius, row, sizeof(float) * width);
      for (int64_t i = 0; i < radius; ++i) {
        padded[i] = row[sources[i]];
        padded[radius + width + i] = row[sources[radius + width + i]];
      }
      blur_row(horizontal.data() + y * width, padded.data(), width, weights.data(), radius);
    }
    for (int64_t y = 0; y < height; ++y) {
      for (int64_t j = 0; j < taps; ++j) rows[j] = horizontal.data() + reflect_101(y + j - radius, height) * width;
      blur_column(out + plane + y * width, rows.data(), width, weights.data(), radius);
    }
  }
}

CLAMP_VECTOR_CLONES
void solarize(const float* in, const ImageShape& shape, double threshold, float* out) {
  const int64_t n = shape.values();
  for (int64_t k = 0; k < n; ++k) {
    const double x = in[k];
    out[k] = static_cast<float>(x >= threshold ? 1 - x : x);
  }
}

CLAMP_VECTOR_CLONES
void normalize(const float* in, const ImageShape& shape, const double* mean, const double* std, float* out) {
  const int64_t plane = shape.plane();
  for (int64_t c = 0; c < shape.channels; ++c) {
    const double m = mean[c], s = std[c];
    const float* from = in + c * plane;
    float* to = out + c * plane;
    for (int64_t k = 0; k < plane; ++k) to[k] = static_cast<float>((static_cast<double>(from[k]) - m) / s);
  }
}

}  // namespace clamp::augment
