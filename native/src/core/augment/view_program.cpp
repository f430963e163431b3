#include "augment/view_program.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace clamp::augment {

namespace {

std::string number(double x) {
  std::string text = std::to_string(x);
  if (std::floor(x) == x && std::abs(x) < 1e15) text = std::to_string(static_cast<int64_t>(x));
  return text;
}

// Reads the program one op at a time, checking each parameter as it goes.
class ProgramReader {
 public:
  ProgramReader(const double* program, size_t count) : program_(program), count_(count) {}

  bool done() const { return at_ == count_; }
  // The next value without taking it (NaN at the end).
  double peek() const { return at_ < count_ ? program_[at_] : std::numeric_limits<double>::quiet_NaN(); }
  size_t position() const { return at_; }

  double next(const char* op, const char* what) {
    if (at_ >= count_) throw std::invalid_argument(std::string("view program: ") + op + " ends before its " + what);
    return program_[at_++];
  }
  const double* take(const char* op, const char* what, int64_t n) {
    if (n < 0 || static_cast<size_t>(n) > count_ - at_)
      throw std::invalid_argument(std::string("view program: ") + op + " ends before its " + std::to_string(n) + " " + what);
    const double* from = program_ + at_;
    at_ += static_cast<size_t>(n);
    return from;
  }
  double finite(const char* op, const char* what) {
    const double x = next(op, what);
    if (!std::isfinite(x))
      throw std::invalid_argument(std::string("view program: ") + op + "'s " + what + " must be a finite number, got " + number(x));
    return x;
  }
  int64_t whole(const char* op, const char* what, int64_t low, int64_t high) {
    const double x = next(op, what);
    if (!(std::floor(x) == x && x >= static_cast<double>(low) && x <= static_cast<double>(high)))
      throw std::invalid_argument(std::string("view program: ") + op + "'s " + what + " must be a whole number in [" + std::to_string(low) +
                                  ", " + std::to_string(high) + "], got " + number(x));
    return static_cast<int64_t>(x);
  }

 private:
  const double* program_;
  size_t count_;
  size_t at_ = 0;
};

// The largest side a view may ask for: enough for any real image, and small enough that
// channels * height * width stays far from overflowing.
constexpr int64_t kMaxSide = 1 << 15;

struct Scratch {
  std::vector<float> image[2];
  std::vector<float> plane;
};

// Where the ops of one run read and write. The image starts as the source itself: a crop reads its
// pixels directly (uint8 through the table of bytes / 255), any other first op reads them converted.
// Each op writes to the other scratch buffer, the last one straight to the destination.
class Runner {
 public:
  Runner(Scratch& scratch, const ViewSource& source, float* out) : scratch_(scratch), source_(source), out_(out) {}

  bool at_source() const { return current_ < 0; }
  const ViewSource& source() const { return source_; }

  // The current image as float32 values.
  const float* input() {
    if (current_ >= 0) return scratch_.image[current_].data();
    if (source_.values) return source_.values;
    std::vector<float>& first = scratch_.image[0];
    if (static_cast<int64_t>(first.size()) < source_.shape.values()) first.resize(source_.shape.values());
    from_bytes(source_.bytes, source_.shape.values(), first.data());
    current_ = 0;
    return first.data();
  }
  // Where an op writes an image of `values`: the destination for the program's last op.
  float* output(int64_t values, bool last) {
    if (last) return out_;
    std::vector<float>& to = scratch_.image[current_ == 0 ? 1 : 0];
    if (static_cast<int64_t>(to.size()) < values) to.resize(values);
    return to.data();
  }
  // After the op that wrote output(values, last).
  void wrote(bool last) {
    if (last)
      in_destination_ = true;
    else
      current_ = current_ == 0 ? 1 : 0;
  }
  // Runs one op from the current image to where it writes an image of `values`: kernel(from, to).
  template <typename Kernel>
  void apply(int64_t values, bool last, Kernel&& kernel) {
    const float* from = input();
    kernel(from, output(values, last));
    wrote(last);
  }
  float* plane(int64_t n) {
    if (static_cast<int64_t>(scratch_.plane.size()) < n) scratch_.plane.resize(n);
    return scratch_.plane.data();
  }
  // Copies the image to the destination unless the last op wrote it there (a program without ops, or
  // ending in an op with nothing to do).
  void finish(const ImageShape& shape) {
    if (!in_destination_) std::memcpy(out_, input(), sizeof(float) * shape.values());
  }

 private:
  Scratch& scratch_;
  const ViewSource& source_;
  float* out_;
  int current_ = -1;  // the scratch buffer that holds the image; -1 while it is the source
  bool in_destination_ = false;
};

// Walks the program: checks every op against the current shape and, given a runner, runs it. Returns
// the final shape.
ImageShape walk(const ImageShape& input, const double* program, size_t count, Runner* run) {
  ProgramReader reader(program, count);
  ImageShape shape = input;
  while (!reader.done()) {
    const size_t at = reader.position();
    const double code = reader.next("the program", "op");
    const int op = std::floor(code) == code && code >= 1 && code <= 10 ? static_cast<int>(code) : 0;
    switch (static_cast<ViewOp>(op)) {
      case ViewOp::crop: {
        CropBox box;
        box.top = reader.whole("crop", "top", 0, shape.height - 1);
        box.left = reader.whole("crop", "left", 0, shape.width - 1);
        box.height = reader.whole("crop", "height", 1, shape.height - box.top);
        box.width = reader.whole("crop", "width", 1, shape.width - box.left);
        const int64_t out_height = reader.whole("crop", "output height", 1, kMaxSide);
        const int64_t out_width = reader.whole("crop", "output width", 1, kMaxSide);
        // A flip right after the crop is the crop's own columns in mirrored order: one pass for both.
        const bool mirrored = reader.peek() == static_cast<double>(ViewOp::flip);
        if (mirrored) reader.next("the program", "op");
        const ImageShape out_shape{shape.channels, out_height, out_width};
        if (run) {
          const bool last = reader.done();
          float* to = run->output(out_shape.values(), last);
          if (run->at_source() && run->source().bytes)
            crop_and_resize(run->source().bytes, shape, box, out_height, out_width, mirrored, to);
          else
            crop_and_resize(run->input(), shape, box, out_height, out_width, mirrored, to);
          run->wrote(last);
        }
        shape = out_shape;
        break;
      }
      case ViewOp::flip:
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { horizontal_flip(from, shape, to); });
        }
        break;
      case ViewOp::brightness: {
        const double factor = reader.finite("brightness", "factor");
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { blend_constant(from, shape, 0, factor, to); });
        }
        break;
      }
      case ViewOp::contrast: {
        const double factor = reader.finite("contrast", "factor");
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) {
            float* gray = run->plane(shape.plane());
            luma(from, shape, gray);
            blend_constant(from, shape, mean_luma(gray, shape.plane()), factor, to);
          });
        }
        break;
      }
      case ViewOp::saturation: {
        const double factor = reader.finite("saturation", "factor");
        if (run && shape.channels >= 3) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) {
            float* gray = run->plane(shape.plane());
            luma(from, shape, gray);
            blend_plane(from, shape, gray, factor, to);
          });
        }
        break;
      }
      case ViewOp::hue: {
        const double shift = reader.finite("hue", "shift");
        if (run && shape.channels >= 3) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { rotate_hue(from, shape, shift, to); });
        }
        break;
      }
      case ViewOp::grayscale:
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) {
            luma(from, shape, to);
            for (int64_t c = 1; c < shape.channels; ++c) std::memcpy(to + c * shape.plane(), to, sizeof(float) * shape.plane());
          });
        }
        break;
      case ViewOp::blur: {
        const int64_t taps = reader.whole("blur", "taps", 1, 4 * kMaxSide + 1);
        if (taps % 2 == 0)
          throw std::invalid_argument("view program: blur's taps must be odd (2 * radius + 1), got " + std::to_string(taps));
        const double* weights = reader.take("blur", "weights", taps);
        for (int64_t j = 0; j < taps; ++j)
          if (!std::isfinite(weights[j]))
            throw std::invalid_argument("view program: blur's weight " + std::to_string(j) + " is not a finite number");
        if (!symmetric_kernel(weights, taps))
          throw std::invalid_argument(
              "view program: blur's weights must be symmetric (weight j equal to weight taps - 1 - j), as a Gaussian's are");
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { separable_blur(from, shape, weights, taps, to); });
        }
        break;
      }
      case ViewOp::solarize: {
        const double threshold = reader.next("solarize", "threshold");
        if (std::isnan(threshold)) throw std::invalid_argument("view program: solarize's threshold is not a number");
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { solarize(from, shape, threshold, to); });
        }
        break;
      }
      case ViewOp::normalize: {
        const int64_t channels = reader.whole("normalize", "channel count", shape.channels, shape.channels);
        const double* mean = reader.take("normalize", "means", channels);
        const double* std = reader.take("normalize", "standard deviations", channels);
        for (int64_t c = 0; c < channels; ++c) {
          if (!std::isfinite(mean[c]) || !(std[c] > 0) || !std::isfinite(std[c]))
            throw std::invalid_argument("view program: normalize's channel " + std::to_string(c) +
                                        " needs a finite mean and a positive finite standard deviation, got " + number(mean[c]) + " and " +
                                        number(std[c]));
        }
        if (run) {
          run->apply(shape.values(), reader.done(), [&](const float* from, float* to) { normalize(from, shape, mean, std, to); });
        }
        break;
      }
      default:
        throw std::invalid_argument("view program: no op " + number(code) + " at position " + std::to_string(at) + " (ops are 1 to 10)");
    }
  }
  return shape;
}

void check_input(const ImageShape& input) {
  if (input.channels < 1 || input.height < 1 || input.width < 1 || input.height > kMaxSide || input.width > kMaxSide || input.channels > 64)
    throw std::invalid_argument("view program: the image must be 1 to 64 channels of 1 to " + std::to_string(kMaxSide) +
                                " pixels a side, got " + std::to_string(input.channels) + "x" + std::to_string(input.height) + "x" +
                                std::to_string(input.width));
}

}  // namespace

ImageShape view_program_shape(const ImageShape& input, const double* program, size_t count) {
  check_input(input);
  return walk(input, program, count, nullptr);
}

ImageShape run_view_program(const ViewSource& source, const double* program, size_t count, float* out, int64_t out_capacity) {
  const ImageShape shape = view_program_shape(source.shape, program, count);  // every check before any work
  if (shape.values() > out_capacity)
    throw std::invalid_argument("view program: its output is " + std::to_string(shape.values()) + " values, and the destination holds " +
                                std::to_string(out_capacity));
  if ((source.bytes == nullptr) == (source.values == nullptr))
    throw std::invalid_argument("view program: give the source as bytes or as values");
  thread_local Scratch scratch;
  Runner run(scratch, source, out);
  walk(source.shape, program, count, &run);
  run.finish(shape);
  return shape;
}

}  // namespace clamp::augment
