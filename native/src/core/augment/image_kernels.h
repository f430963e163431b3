// The augmentations' pixel work on CHW float32 images: each kernel reads `in` and writes a new image
// to `out` (never the same memory). Every value is computed in float64 by the same operations in the
// same order as the reference formulas (lib/augment/view-program.ts says which), and rounded to float32
// only where it is stored, so the outputs do not depend on the compiler's vector width; the build keeps
// floating-point contraction off for this reason (an FMA rounds once where a multiply and an add round twice).
#pragma once

#include <cstdint>

namespace clamp::augment {

struct ImageShape {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t values() const { return channels * height * width; }
  int64_t plane() const { return height * width; }
};

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// bytes[k] / 255 for every value.
void from_bytes(const uint8_t* bytes, int64_t count, float* out);

// Bilinear resize of `box` to out_height x out_width, half-pixel centres (align_corners = false), no
// antialiasing; mirrored, then flipped horizontally (the same values, in one pass). From float32 values
// or from uint8 pixels (each read as from_bytes stores it, without converting the whole image).
void crop_and_resize(const float* in, const ImageShape& shape, const CropBox& box, int64_t out_height, int64_t out_width, bool mirrored,
                     float* out);
void crop_and_resize(const uint8_t* in, const ImageShape& shape, const CropBox& box, int64_t out_height, int64_t out_width, bool mirrored,
                     float* out);

void horizontal_flip(const float* in, const ImageShape& shape, float* out);

// ITU-R 601 luma of each pixel, stored as float32 (the channel itself for fewer than 3 channels).
void luma(const float* in, const ImageShape& shape, float* out);

// clamp01(factor * x + (1 - factor) * other) with one `other` for the whole image.
void blend_constant(const float* in, const ImageShape& shape, double other, double factor, float* out);

// clamp01(factor * x + (1 - factor) * other[k]) at pixel k of every channel.
void blend_plane(const float* in, const ImageShape& shape, const float* other, double factor, float* out);

// The mean of the float32 luma, summed in pixel order.
double mean_luma(const float* luma_plane, int64_t count);

// Rotates the hue by `shift` of a turn (3 channels). Throws std::invalid_argument for a pixel with no hue
// sector (a value or shift that is not finite).
void rotate_hue(const float* in, const ImageShape& shape, double shift, float* out);

// Whether weight j equals weight taps - 1 - j for every j (what separable_blur requires).
bool symmetric_kernel(const double* kernel, int64_t taps);

// Separable blur in float32 with a symmetric kernel of `taps` weights (odd; rounded to float32), mirrored
// borders without repeating the edge (OpenCV's BORDER_REFLECT_101), reflected again for as long as a tap
// lies outside (a kernel wider than the image). The caller checks the kernel (the view program does, once
// per program, with symmetric_kernel); only the taps up to the centre are read.
void separable_blur(const float* in, const ImageShape& shape, const double* kernel, int64_t taps, float* out);

// 1 - x for every x >= threshold.
void solarize(const float* in, const ImageShape& shape, double threshold, float* out);

// (x - mean[c]) / std[c] in channel c.
void normalize(const float* in, const ImageShape& shape, const double* mean, const double* std, float* out);

// Where a tap at i (possibly outside [0, n)) reads: mirrored at both ends, repeatedly.
int64_t reflect_101(int64_t i, int64_t n);

}  // namespace clamp::augment
