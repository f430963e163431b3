// A view's augmentation as a program for the addon (native/src/core/augment/view_program.h holds the
// encoding and the kernels): TypeScript draws every random choice, in its order, and records the ops;
// C++ runs them over scratch buffers, with no array allocated per op, and writes the view straight into
// its slot of the batch.
//
// The kernels compute these formulas in float64 in the order written, rounding to float32 only where they
// store, except the blur (test/augment-golden.test.ts pins the outputs bit for bit):
// - crop: bilinear, half-pixel centres, source s = clamp((i + 0.5) * box / out - 0.5, 0, box - 1),
//   value row[x0] * (1 - f) + row[x1] * f along x, then the two rows alike along y;
// - brightness / contrast: clamp01(factor * x + (1 - factor) * other), other 0 / the mean ITU-R 601 luma;
// - saturation: the same towards each pixel's luma (float32); grayscale: the luma in every channel;
// - hue: RGB -> HSV, h rotated by the shift (a fraction of a turn), -> RGB;
// - blur: separable, rows then columns, in float32 as OpenCV blurs float images: a symmetric kernel's
//   centre weight times the centre tap, plus each outer weight times its pair of taps summed, inner pairs
//   first; OpenCV's BORDER_REFLECT_101, repeated while a tap lies outside;
// - solarize: 1 - x for x >= threshold; normalize: (x - mean) / std.
import { native } from '../runtime/native.js';

/** Op codes: the numbers of view_program.h's ViewOp. */
const OP = {
  crop: 1,
  flip: 2,
  brightness: 3,
  contrast: 4,
  saturation: 5,
  hue: 6,
  grayscale: 7,
  blur: 8,
  solarize: 9,
  normalize: 10,
} as const;

export interface ImageShape {
  channels: number;
  height: number;
  width: number;
}

/** The ops of one view, recorded in order; reusable after reset(). */
export class ViewProgram {
  private ops: number[] = [];

  reset(): this {
    this.ops.length = 0;
    return this;
  }
  crop(top: number, left: number, height: number, width: number, outHeight: number, outWidth: number): this {
    this.ops.push(OP.crop, top, left, height, width, outHeight, outWidth);
    return this;
  }
  flip(): this {
    this.ops.push(OP.flip);
    return this;
  }
  brightness(factor: number): this {
    this.ops.push(OP.brightness, factor);
    return this;
  }
  contrast(factor: number): this {
    this.ops.push(OP.contrast, factor);
    return this;
  }
  saturation(factor: number): this {
    this.ops.push(OP.saturation, factor);
    return this;
  }
  hue(shift: number): this {
    this.ops.push(OP.hue, shift);
    return this;
  }
  grayscale(): this {
    this.ops.push(OP.grayscale);
    return this;
  }
  /** An odd number of weights, symmetric about the centre one (as a Gaussian's), rounded to float32. */
  blur(kernel: ArrayLike<number>): this {
    this.ops.push(OP.blur, kernel.length);
    for (let j = 0; j < kernel.length; j++) this.ops.push(kernel[j]!);
    return this;
  }
  solarize(threshold: number): this {
    this.ops.push(OP.solarize, threshold);
    return this;
  }
  /** Channel c takes mean[c % mean.length] and std[c % std.length]. */
  normalize(channels: number, mean: readonly number[], std: readonly number[]): this {
    this.ops.push(OP.normalize, channels);
    for (let c = 0; c < channels; c++) this.ops.push(mean[c % mean.length]!);
    for (let c = 0; c < channels; c++) this.ops.push(std[c % std.length]!);
    return this;
  }
  encode(): Float64Array {
    return Float64Array.from(this.ops);
  }

  /**
   * Runs the program on a CHW image (uint8 pixels, scaled by 1/255, or float32 values) and writes the
   * view to out[offset ..). Returns the view's shape. Throws a RangeError naming a bad op or parameter.
   */
  run(source: Uint8Array | Float32Array, shape: ImageShape, out: Float32Array, offset = 0): ImageShape {
    const [channels, height, width] = native().runViewProgram(
      source,
      shape.channels,
      shape.height,
      shape.width,
      this.encode(),
      out,
      offset,
    );
    return { channels, height, width };
  }
}

/** The normalised Gaussian of 2 * floor(kernelSize / 2) + 1 taps. */
export function gaussianKernel(kernelSize: number, sigma: number): Float64Array {
  const radius = Math.floor(kernelSize / 2);
  const taps = 2 * radius + 1;
  const weights = Array.from({ length: taps }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = weights.reduce((a, b) => a + b, 0);
  return Float64Array.from(weights, (w) => w / total);
}
