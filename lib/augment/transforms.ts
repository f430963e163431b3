// Image augmentations of SSL (SimCLR/BYOL/solo-learn), written over typed arrays. An image is CHW
// float32 in [0, 1] until normalisation; every random choice comes from a seeded Random.
//
// The loops are written for speed (no closures or small arrays per element, tables computed once per call),
// but every value is computed by the same float64 operations in the same order as the plain formulas they
// replace, and rounded to float32 only where it is stored: the outputs are pinned bit for bit by
// test/augment-golden.test.ts.
import type { Random } from '../random.js';

export interface Image {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

export function imageFromBytes(bytes: Uint8Array, channels: number, height: number, width: number): Image {
  const data = new Float32Array(channels * height * width);
  for (let k = 0; k < data.length; k++) data[k] = bytes[k]! / 255;
  return { data, channels, height, width };
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** torchvision's RandomResizedCrop box: 10 tries at a random area fraction and log-uniform aspect ratio, then a centre crop. */
export function sampleCropBox(
  height: number,
  width: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  random: Random,
): CropBox {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * random.uniform(scale[0], scale[1]);
    const aspect = Math.exp(random.uniform(logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(targetArea * aspect));
    const h = Math.round(Math.sqrt(targetArea / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { top: random.integer(0, height - h), left: random.integer(0, width - w), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width,
    h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** Bilinear resize of a box of `image` to outHeight x outWidth (half-pixel centres, like align_corners=False). */
export function cropAndResize(image: Image, box: CropBox, outHeight: number, outWidth: number): Image {
  const { channels, height, width, data } = image;
  const out = new Float32Array(channels * outHeight * outWidth);
  // Output (y, x) is top * (1 - fy) + bottom * fy, where top and bottom are the source rows y0 and y1
  // interpolated at column x: at(row, x0) * (1 - fx) + at(row, x1) * fx. The columns and weights are the same
  // for every row and channel, and an interpolated row (float64, so exact) serves every output row that
  // reads it: both are computed once. Float64Array keeps each table value exactly what its formula gives.
  const { x0: x0s, x1: x1s, f: fxs, g: gxs } = bilinearTaps(outWidth, box.width);
  const { x0: y0s, x1: y1s, f: fys, g: gys } = bilinearTaps(outHeight, box.height);
  let topRow = new Float64Array(tableLength(outWidth)),
    bottomRow = new Float64Array(tableLength(outWidth));
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    // The source index is plane + (box.top + row) * width + box.left + column, summed in that order.
    const rowStart = (row: number) => plane + (box.top + row) * width + box.left;
    let topOf = NaN, // the source row each holds (NaN: none yet)
      bottomOf = NaN;
    for (let y = 0; y < outHeight; y++) {
      const y0 = y0s[y]!,
        y1 = y1s[y]!;
      if (topOf !== y0) {
        if (bottomOf === y0) {
          // the previous output row's bottom row is this one's top row
          const row = topRow;
          topRow = bottomRow;
          bottomRow = row;
          bottomOf = NaN;
        } else interpolateRow(topRow, data, rowStart(y0), x0s, x1s, fxs, gxs);
        topOf = y0;
      }
      if (bottomOf !== y1) {
        interpolateRow(bottomRow, data, rowStart(y1), x0s, x1s, fxs, gxs);
        bottomOf = y1;
      }
      const fy = fys[y]!,
        gy = gys[y]!,
        outRow = (c * outHeight + y) * outWidth;
      for (let x = 0; x < outWidth; x++) out[outRow + x] = topRow[x]! * gy + bottomRow[x]! * fy;
    }
  }
  return { data: out, channels, height: outHeight, width: outWidth };
}

/** into[x] = data[start + x0[x]] * g[x] + data[start + x1[x]] * f[x]: one source row interpolated at every output column. */
function interpolateRow(
  into: Float64Array,
  data: Float32Array,
  start: number,
  x0: Float64Array,
  x1: Float64Array,
  f: Float64Array,
  g: Float64Array,
): void {
  for (let x = 0; x < into.length; x++) into[x] = data[start + x0[x]!]! * g[x]! + data[start + x1[x]!]! * f[x]!;
}

/** The length of a table with an entry for each whole i < n (rounded up, so that a fractional n, no real size, still has one). */
const tableLength = (n: number) => Math.max(0, Math.ceil(n));

/** For each of n outputs along a side of `size` source pixels: its two source pixels, f and 1 - f. */
function bilinearTaps(n: number, size: number) {
  const scale = size / n;
  const count = tableLength(n);
  const x0s = new Float64Array(count),
    x1s = new Float64Array(count),
    fs = new Float64Array(count),
    gs = new Float64Array(count);
  for (let i = 0; i < n; i++) {
    const s = Math.min(Math.max((i + 0.5) * scale - 0.5, 0), size - 1);
    const x0 = Math.floor(s),
      f = s - x0;
    x0s[i] = x0;
    x1s[i] = Math.min(x0 + 1, size - 1);
    fs[i] = f;
    gs[i] = 1 - f;
  }
  return { x0: x0s, x1: x1s, f: fs, g: gs };
}

export function horizontalFlip(image: Image): Image {
  const { channels, height, width, data } = image;
  const out = new Float32Array(data.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * height + y) * width;
      for (let x = 0; x < width; x++) out[row + x] = data[row + width - 1 - x]!;
    }
  }
  return { ...image, data: out };
}

/** ITU-R 601 luma per pixel (the channel itself for one-channel images). */
function luma(image: Image): Float32Array {
  const { data } = image;
  const plane = image.height * image.width;
  if (image.channels < 3) return data.slice(0, plane);
  const out = new Float32Array(plane);
  for (let k = 0; k < plane; k++) out[k] = 0.299 * data[k]! + 0.587 * data[plane + k]! + 0.114 * data[2 * plane + k]!;
  return out;
}

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

/** Every channel set to the image's luma. */
export function grayscale(image: Image): Image {
  const gray = luma(image);
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < image.channels; c++) out.set(gray, c * gray.length);
  return { ...image, data: out };
}

/** clamp01(factor * x + (1 - factor) * other) for every value x, with `other` one number for the whole image. */
function blendConstant(image: Image, other: number, factor: number): Image {
  const { data } = image;
  const n = image.channels * image.height * image.width;
  const out = new Float32Array(data.length);
  for (let k = 0; k < n; k++) out[k] = clamp01(factor * data[k]! + (1 - factor) * other);
  return { ...image, data: out };
}

/** clamp01(factor * x + (1 - factor) * other[k]) for every value x at pixel k of its channel. */
function blendPlane(image: Image, other: Float32Array, factor: number): Image {
  const { data } = image;
  const plane = image.height * image.width;
  const out = new Float32Array(data.length);
  const inverse = 1 - factor;
  for (let c = 0; c < image.channels; c++) {
    const base = c * plane;
    for (let k = 0; k < plane; k++) out[base + k] = clamp01(factor * data[base + k]! + inverse * other[k]!);
  }
  return { ...image, data: out };
}

export const adjustBrightness = (image: Image, factor: number) => blendConstant(image, 0, factor);

export function adjustContrast(image: Image, factor: number): Image {
  const gray = luma(image);
  let sum = 0; // in pixel order, like gray.reduce((a, b) => a + b, 0)
  for (let k = 0; k < gray.length; k++) sum += gray[k]!;
  return blendConstant(image, sum / gray.length, factor);
}

export function adjustSaturation(image: Image, factor: number): Image {
  if (image.channels < 3) return image; // no colour to saturate
  return blendPlane(image, luma(image), factor);
}

// x % 6 and x % 1 for the hue. `%` on doubles is a call to fmod in V8, several per pixel; these give exactly
// its result (the same number, the sign of a zero included) without the call where it is plain: x itself
// when |x| is below the divisor, x - 1 (exact) for x in [1, 2). Any other x still takes `%`.
const remainder6 = (x: number) => (x > -6 && x < 6 ? x : x % 6);
const remainder1 = (x: number) => (x > -1 && x < 1 ? x : x >= 1 && x < 2 ? x - 1 : x % 1);

/** Rotates the hue by `shift` of a full turn (in [-0.5, 0.5]); one-channel images are unchanged. */
export function adjustHue(image: Image, shift: number): Image {
  if (image.channels < 3) return image;
  const { data } = image;
  const plane = image.height * image.width;
  const out = new Float32Array(data.length);
  for (let k = 0; k < plane; k++) {
    const r = data[k]!,
      g = data[plane + k]!,
      b = data[2 * plane + k]!;
    const max = Math.max(r, g, b),
      min = Math.min(r, g, b),
      delta = max - min;
    let h = 0;
    if (delta > 0) h = max === r ? remainder6((g - b) / delta) : max === g ? (b - r) / delta + 2 : (r - g) / delta + 4;
    h = remainder1(remainder1(h / 6 + shift) + 1);
    const s = max === 0 ? 0 : delta / max,
      v = max;
    const sector = Math.floor(h * 6),
      f = h * 6 - sector;
    const p = v * (1 - s),
      q = v * (1 - f * s),
      t = v * (1 - (1 - f) * s);
    // (r, g, b) by sector, as in the table [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]]
    let rr: number, gg: number, bb: number;
    switch (sector % 6) {
      case 0:
        rr = v;
        gg = t;
        bb = p;
        break;
      case 1:
        rr = q;
        gg = v;
        bb = p;
        break;
      case 2:
        rr = p;
        gg = v;
        bb = t;
        break;
      case 3:
        rr = p;
        gg = q;
        bb = v;
        break;
      case 4:
        rr = t;
        gg = p;
        bb = v;
        break;
      case 5:
        rr = v;
        gg = p;
        bb = q;
        break;
      default: // a hue that is not a number (a shift or a pixel that is not finite)
        throw new TypeError(`adjustHue: no hue sector for pixel ${k} (shift ${shift})`);
    }
    out[k] = rr;
    out[plane + k] = gg;
    out[2 * plane + k] = bb;
  }
  return { ...image, data: out };
}

export interface ColorJitterOptions {
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

/** torchvision's ColorJitter: the four adjustments in a random order, each factor drawn around 1 (hue around 0). */
export function colorJitter(image: Image, o: ColorJitterOptions, random: Random): Image {
  let out = image;
  for (const which of random.permutation(4)) {
    if (which === 0 && o.brightness > 0) out = adjustBrightness(out, random.uniform(Math.max(0, 1 - o.brightness), 1 + o.brightness));
    if (which === 1 && o.contrast > 0) out = adjustContrast(out, random.uniform(Math.max(0, 1 - o.contrast), 1 + o.contrast));
    if (which === 2 && o.saturation > 0) out = adjustSaturation(out, random.uniform(Math.max(0, 1 - o.saturation), 1 + o.saturation));
    if (which === 3 && o.hue > 0) out = adjustHue(out, random.uniform(-o.hue, o.hue));
  }
  return out;
}

/** Separable Gaussian blur with reflected borders. */
export function gaussianBlur(image: Image, kernelSize: number, sigma: number): Image {
  const radius = Math.floor(kernelSize / 2);
  const taps = 2 * radius + 1;
  const { channels, height, width, data } = image;
  if (!(taps > 0)) return { ...image, data: new Float32Array(data.length) }; // no taps: every sum is 0
  const weights = Array.from({ length: taps }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = weights.reduce((a, b) => a + b, 0);
  const kernel = Float64Array.from(weights, (w) => w / total);
  // Tap j of position i reads the input at reflect(i + j - radius, n): mirrored at the edges without
  // repeating them (OpenCV's BORDER_REFLECT_101). As tables computed once per call: the column each slot of
  // a padded row copies (the row with `radius` reflected values on each side), and each tap's row offset
  // (row * width) for each output row.
  const reflect = (i: number, n: number) => (n === 1 ? 0 : i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);
  const padded = new Float64Array(width + 2 * radius),
    sources = new Int32Array(padded.length),
    rows = new Int32Array(height * taps);
  for (let i = 0; i < padded.length; i++) sources[i] = reflect(i - radius, width);
  for (let y = 0; y < height; y++) for (let j = 0; j < taps; j++) rows[y * taps + j] = reflect(y + j - radius, height) * width;
  // Every output is a float64 sum that starts at 0 and adds kernel[j] * input in tap order j = 0, 1, ...,
  // rounded to float32 where it is stored. Neighbouring outputs are summed side by side (each in its own
  // order) so that the CPU overlaps their additions instead of waiting on one chain.
  const horizontal = new Float32Array(data.length);
  const out = new Float32Array(data.length);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    for (let y = 0; y < height; y++) {
      const row = plane + y * width;
      // The same reads as data[row + reflect(x + j - radius, width)], exact in float64.
      for (let i = 0; i < padded.length; i++) padded[i] = data[row + sources[i]!]!;
      let x = 0;
      for (; x + 3 < width; x += 4) {
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0;
        // a sliding window: d0..d3 = padded[x + j .. x + j + 3]
        let d0 = padded[x]!,
          d1 = padded[x + 1]!,
          d2 = padded[x + 2]!;
        for (let j = 0; j < taps; j++) {
          const w = kernel[j]!,
            d3 = padded[x + j + 3]!;
          s0 += w * d0;
          s1 += w * d1;
          s2 += w * d2;
          s3 += w * d3;
          d0 = d1;
          d1 = d2;
          d2 = d3;
        }
        horizontal[row + x] = s0;
        horizontal[row + x + 1] = s1;
        horizontal[row + x + 2] = s2;
        horizontal[row + x + 3] = s3;
      }
      for (; x < width; x++) {
        let sum = 0;
        for (let j = 0; j < taps; j++) sum += kernel[j]! * padded[x + j]!;
        horizontal[row + x] = sum;
      }
    }
    // Vertical: the same reads as horizontal[plane + reflect(y + j - radius, height) * width + x].
    for (let y = 0; y < height; y++) {
      const table = y * taps,
        row = plane + y * width;
      let x = 0;
      for (; x + 7 < width; x += 8) {
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0,
          s4 = 0,
          s5 = 0,
          s6 = 0,
          s7 = 0;
        for (let j = 0; j < taps; j++) {
          const w = kernel[j]!,
            at = plane + rows[table + j]! + x;
          s0 += w * horizontal[at]!;
          s1 += w * horizontal[at + 1]!;
          s2 += w * horizontal[at + 2]!;
          s3 += w * horizontal[at + 3]!;
          s4 += w * horizontal[at + 4]!;
          s5 += w * horizontal[at + 5]!;
          s6 += w * horizontal[at + 6]!;
          s7 += w * horizontal[at + 7]!;
        }
        out[row + x] = s0;
        out[row + x + 1] = s1;
        out[row + x + 2] = s2;
        out[row + x + 3] = s3;
        out[row + x + 4] = s4;
        out[row + x + 5] = s5;
        out[row + x + 6] = s6;
        out[row + x + 7] = s7;
      }
      for (; x < width; x++) {
        let sum = 0;
        for (let j = 0; j < taps; j++) sum += kernel[j]! * horizontal[plane + rows[table + j]! + x]!;
        out[row + x] = sum;
      }
    }
  }
  return { ...image, data: out };
}

/** Inverts every value at or above the threshold. */
export function solarize(image: Image, threshold: number): Image {
  const { data } = image;
  const out = new Float32Array(data.length);
  for (let k = 0; k < data.length; k++) {
    const x = data[k]!;
    out[k] = x >= threshold ? 1 - x : x;
  }
  return { ...image, data: out };
}

export function normalize(image: Image, mean: readonly number[], std: readonly number[]): Image {
  const { data } = image;
  const plane = image.height * image.width;
  const out = new Float32Array(data.length);
  for (let c = 0; c < image.channels; c++) {
    const m = mean[c % mean.length]!,
      s = std[c % std.length]!,
      base = c * plane;
    for (let k = 0; k < plane; k++) out[base + k] = (data[base + k]! - m) / s;
  }
  return { ...image, data: out };
}
