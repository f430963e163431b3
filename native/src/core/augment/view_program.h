// A view's augmentation as a program: the ops and parameters that lib/augment/view-program.ts records
// while it draws the random choices (the draws stay in TypeScript, in their order), run here over
// scratch buffers with no allocation per op. Encoding, a flat list of float64: each op's code, then
// its parameters:
//   1 crop        top, left, height, width, out height, out width (whole numbers, the box inside the image)
//   2 flip
//   3 brightness  factor              4 contrast    factor              5 saturation  factor
//   6 hue         shift (of a turn)   7 grayscale
//   8 blur        taps (odd), then that many weights
//   9 solarize    threshold
//  10 normalize   channels, then that many means, then that many standard deviations
// Saturation and hue leave an image of fewer than 3 channels as it is.
#pragma once

#include <cstddef>
#include <cstdint>

#include "augment/image_kernels.h"

namespace clamp::augment {

enum class ViewOp : int {
  crop = 1,
  flip = 2,
  brightness = 3,
  contrast = 4,
  saturation = 5,
  hue = 6,
  grayscale = 7,
  blur = 8,
  solarize = 9,
  normalize = 10,
};

// CHW pixels: uint8 (scaled by 1/255, as imageFromBytes does) or float32 values, exactly one of them.
struct ViewSource {
  const uint8_t* bytes = nullptr;
  const float* values = nullptr;
  ImageShape shape;
};

// The shape `program` produces from `input`, checking every op and parameter without running any.
// Throws std::invalid_argument naming the op, the parameter and what it must be.
ImageShape view_program_shape(const ImageShape& input, const double* program, size_t count);

// Runs `program` on `source` and writes its output (view_program_shape of it) to out[0 ..), which must
// hold out_capacity >= that many values. Scratch memory is the calling thread's, kept between calls.
ImageShape run_view_program(const ViewSource& source, const double* program, size_t count, float* out, int64_t out_capacity);

}  // namespace clamp::augment
