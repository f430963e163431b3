// The augmentation kernels against direct formulas, the blur's borders when the kernel is wider than
// the image, and the view program's checks. Bit-for-bit parity with the TypeScript reference draws
// lives in test/augment-golden.test.ts (it needs the addon).
#include "augment/view_program.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "check.h"

namespace {

using clamp::augment::ImageShape;
using clamp::augment::run_view_program;
using clamp::augment::ViewSource;
using clamp::testing::check;
using clamp::testing::check_throws;

std::vector<uint8_t> pattern(const ImageShape& shape, uint32_t seed) {
  std::vector<uint8_t> bytes(shape.values());
  uint32_t state = seed;
  for (auto& b : bytes) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(state >> 24);
  }
  return bytes;
}

std::vector<float> run(const std::vector<uint8_t>& bytes, const ImageShape& shape, const std::vector<double>& program,
                       ImageShape* out_shape = nullptr) {
  ViewSource source;
  source.bytes = bytes.data();
  source.shape = shape;
  std::vector<float> out(1 << 20);
  const ImageShape result = run_view_program(source, program.data(), program.size(), out.data(), static_cast<int64_t>(out.size()));
  out.resize(result.values());
  if (out_shape) *out_shape = result;
  return out;
}

void test_reflect() {
  using clamp::augment::reflect_101;
  check(reflect_101(-1, 5) == 1 && reflect_101(-4, 5) == 4 && reflect_101(5, 5) == 3 && reflect_101(2, 5) == 2,
        "mirrors without repeating the edge");
  // Wider than the image: mirrored again, inside every time (a single mirror gave -i >= n, out of the row).
  check(reflect_101(-5, 5) == 3 && reflect_101(-9, 5) == 1 && reflect_101(13, 5) == 3, "mirrors repeatedly for taps far outside");
  check(reflect_101(-7, 1) == 0 && reflect_101(3, 2) == 1 && reflect_101(-3, 2) == 1, "one- and two-pixel sides");
  bool inside = true;
  for (int64_t n = 1; n < 9; ++n)
    for (int64_t i = -40; i < 40; ++i) inside = inside && reflect_101(i, n) >= 0 && reflect_101(i, n) < n;
  check(inside, "every tap lands inside the side");
}

void test_crop_identity_and_flip() {
  const ImageShape shape{3, 7, 9};
  const auto bytes = pattern(shape, 1);
  const auto same = run(bytes, shape, {1, 0, 0, 7, 9, 7, 9});
  bool exact = true;
  for (size_t k = 0; k < same.size(); ++k) exact = exact && same[k] == static_cast<float>(bytes[k] / 255.0);
  check(exact, "cropping the whole image to its own size copies it");
  const auto twice = run(bytes, shape, {2, 2});
  bool back = true;
  for (size_t k = 0; k < twice.size(); ++k) back = back && twice[k] == same[k];
  check(back, "two flips give the image back");
  const auto flipped = run(bytes, shape, {2});
  check(flipped[0] == same[8] && flipped[9 + 3] == same[9 + 5], "a flip mirrors each row");
}

void test_crop_values() {
  const ImageShape shape{1, 4, 4};
  const auto bytes = pattern(shape, 2);
  ImageShape out_shape;
  // The 2x2 box at (1, 1) up to 4x4: output (y, x) samples source (1 + clamp((y + 0.5) / 2 - 0.5, 0, 1), ...).
  const auto out = run(bytes, shape, {1, 1, 1, 2, 2, 4, 4}, &out_shape);
  check(out_shape.channels == 1 && out_shape.height == 4 && out_shape.width == 4, "the crop's output shape");
  double worst = 0;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const double sy = std::min(std::max((y + 0.5) / 2 - 0.5, 0.0), 1.0), sx = std::min(std::max((x + 0.5) / 2 - 0.5, 0.0), 1.0);
      const auto at = [&](int r, int c) { return bytes[(1 + r) * 4 + 1 + c] / 255.0; };
      const int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx), y1 = std::min(y0 + 1, 1), x1 = std::min(x0 + 1, 1);
      const double fy = sy - y0, fx = sx - x0;
      const double want = (at(y0, x0) * (1 - fx) + at(y0, x1) * fx) * (1 - fy) + (at(y1, x0) * (1 - fx) + at(y1, x1) * fx) * fy;
      worst = std::max(worst, std::abs(want - out[y * 4 + x]));
    }
  check(worst < 1e-6, "bilinear values match the formula (worst " + std::to_string(worst) + ")");
}

void test_colour() {
  const ImageShape shape{3, 5, 6};
  const auto bytes = pattern(shape, 3);
  const auto original = run(bytes, shape, {});
  const auto turned = run(bytes, shape, {6, 0});
  double worst = 0;
  for (size_t k = 0; k < turned.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(turned[k] - original[k])));
  check(worst < 1e-6, "a hue shift of 0 keeps the colours (worst " + std::to_string(worst) + ")");
  // A third of a turn sends red to green, green to blue and blue to red.
  const auto third = run(bytes, shape, {6, 1.0 / 3});
  const int64_t plane = shape.plane();
  double moved = 0;
  for (int64_t k = 0; k < plane; ++k) {
    moved = std::max(moved, static_cast<double>(std::abs(third[plane + k] - original[k])));
    moved = std::max(moved, static_cast<double>(std::abs(third[2 * plane + k] - original[plane + k])));
    moved = std::max(moved, static_cast<double>(std::abs(third[k] - original[2 * plane + k])));
  }
  check(moved < 1e-5, "a third of a turn rotates the channels (worst " + std::to_string(moved) + ")");
  const auto gray = run(bytes, shape, {7});
  const double want = 0.299 * original[0] + 0.587 * original[plane] + 0.114 * original[2 * plane];
  check(gray[0] == static_cast<float>(want) && gray[plane] == gray[0] && gray[2 * plane] == gray[0],
        "grayscale puts the luma in every channel");
  const auto dark = run(bytes, shape, {3, 0.5});
  check(dark[4] == static_cast<float>(0.5 * original[4]), "brightness scales");
  const auto bright = run(bytes, shape, {3, 100});
  check(bright[4] == 1 || original[4] == 0, "brightness clamps at 1");
  const auto flat = run(bytes, shape, {4, 0});
  check(std::abs(flat[0] - flat[plane + 3]) == 0, "contrast 0 leaves the mean luma everywhere");
  const auto solar = run(bytes, shape, {9, 0.5});
  check(solar[2] == static_cast<float>(original[2] >= 0.5 ? 1 - static_cast<double>(original[2]) : original[2]),
        "solarize inverts above the threshold");
  const auto normal = run(bytes, shape, {10, 3, 0.1, 0.2, 0.3, 2, 4, 8});
  check(normal[plane + 1] == static_cast<float>((static_cast<double>(original[plane + 1]) - 0.2) / 4), "normalize per channel");
  // One channel: saturation and hue have no colour to change.
  const ImageShape mono{1, 4, 4};
  const auto mono_bytes = pattern(mono, 4);
  const auto kept = run(mono_bytes, mono, {5, 0.3, 6, 0.2});
  check(kept[5] == static_cast<float>(mono_bytes[5] / 255.0), "saturation and hue leave one channel alone");
}

// The blur against a direct 2D sum with OpenCV's BORDER_REFLECT_101 applied as often as needed.
void test_blur(int64_t height, int64_t width, int64_t taps) {
  const ImageShape shape{2, height, width};
  const auto bytes = pattern(shape, 5 + static_cast<uint32_t>(taps));
  std::vector<double> program = {8, static_cast<double>(taps)};
  std::vector<double> kernel(taps);
  double total = 0;
  for (int64_t j = 0; j < taps; ++j) total += kernel[j] = std::exp(-std::pow(j - taps / 2, 2) / 2.0);
  for (auto w : kernel) program.push_back(w / total);
  const auto out = run(bytes, shape, program);
  const auto reflect = [](int64_t i, int64_t n) {
    if (n == 1) return int64_t{0};
    const int64_t period = 2 * n - 2;
    i = ((i % period) + period) % period;
    return i < n ? i : period - i;
  };
  double worst = 0;
  bool finite = true;
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        double want = 0;
        for (int64_t i = 0; i < taps; ++i)
          for (int64_t j = 0; j < taps; ++j)
            want += program[2 + i] * program[2 + j] *
                    bytes[(c * height + reflect(y + i - taps / 2, height)) * width + reflect(x + j - taps / 2, width)] / 255.0;
        const float got = out[(c * height + y) * width + x];
        finite = finite && std::isfinite(got);
        worst = std::max(worst, std::abs(want - got));
      }
  const std::string what = std::to_string(height) + "x" + std::to_string(width) + " with " + std::to_string(taps) + " taps";
  check(finite, "blur " + what + ": every value finite");
  check(worst < 1e-5, "blur " + what + " matches the direct sum (worst " + std::to_string(worst) + ")");
}

void test_program_checks() {
  const ImageShape shape{3, 8, 8};
  const auto bytes = pattern(shape, 6);
  check_throws([&] { run(bytes, shape, {11}); }, "no op 11", "an unknown op");
  check_throws([&] { run(bytes, shape, {1, 2, 2, 7, 3, 4, 4}); }, "crop's height must be a whole number in [1, 6]",
               "a box past the bottom");
  check_throws([&] { run(bytes, shape, {1, 0, 0, 2.5, 3, 4, 4}); }, "crop's height", "a fractional box");
  check_throws([&] { run(bytes, shape, {10, 1, 0.5, 0.5}); }, "normalize's channel count must be a whole number in [3, 3]",
               "a normalisation for one channel");
  check_throws([&] { run(bytes, shape, {10, 3, 0, 0, 0, 1, 0, 1}); }, "positive finite standard deviation", "a zero std");
  check_throws([&] { run(bytes, shape, {8, 4, 0.25, 0.25, 0.25, 0.25}); }, "taps must be odd", "an even blur");
  check_throws([&] { run(bytes, shape, {8, 3, 0.2, 0.5, 0.3}); }, "weights must be symmetric", "a lopsided kernel");
  check_throws([&] { run(bytes, shape, {8, 5, 0.2}); }, "ends before its 5 weights", "a short kernel");
  check_throws([&] { run(bytes, shape, {3}); }, "brightness ends before its factor", "a missing factor");
  check_throws([&] { run(bytes, shape, {6, NAN}); }, "hue's shift must be a finite number", "a NaN shift");
  ViewSource source;
  source.bytes = bytes.data();
  source.shape = shape;
  std::vector<float> small(10);
  const std::vector<double> program = {2};
  check_throws([&] { run_view_program(source, program.data(), program.size(), small.data(), 10); }, "the destination holds 10",
               "a short destination");
  source.shape = {0, 8, 8};
  check_throws([&] { run_view_program(source, program.data(), program.size(), small.data(), 10); }, "1 to 64 channels", "an empty image");
}

}  // namespace

int main() {
  test_reflect();
  test_crop_identity_and_flip();
  test_crop_values();
  test_colour();
  test_blur(6, 7, 3);
  test_blur(5, 6, 23);  // the kernel wider than the image: reflected again and again
  test_blur(1, 9, 5);
  test_blur(11, 45, 23);  // rows of 45: a strip of 32, one of 8 and 5 single outputs
  test_program_checks();
  return clamp::testing::summary();
}
