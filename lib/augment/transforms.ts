// Image augmentations of SSL (SimCLR/BYOL/solo-learn), written over typed arrays. An image is CHW
// float32 in [0, 1] until normalisation; every random choice comes from a seeded Random.
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
  const { channels, width } = image;
  const out = new Float32Array(channels * outHeight * outWidth);
  const scaleY = box.height / outHeight,
    scaleX = box.width / outWidth;
  for (let y = 0; y < outHeight; y++) {
    const sy = Math.min(Math.max((y + 0.5) * scaleY - 0.5, 0), box.height - 1);
    const y0 = Math.floor(sy),
      y1 = Math.min(y0 + 1, box.height - 1),
      fy = sy - y0;
    for (let x = 0; x < outWidth; x++) {
      const sx = Math.min(Math.max((x + 0.5) * scaleX - 0.5, 0), box.width - 1);
      const x0 = Math.floor(sx),
        x1 = Math.min(x0 + 1, box.width - 1),
        fx = sx - x0;
      for (let c = 0; c < channels; c++) {
        const plane = c * image.height * width;
        const at = (yy: number, xx: number) => image.data[plane + (box.top + yy) * width + box.left + xx]!;
        const top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx;
        const bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx;
        out[(c * outHeight + y) * outWidth + x] = top * (1 - fy) + bottom * fy;
      }
    }
  }
  return { data: out, channels, height: outHeight, width: outWidth };
}

export function horizontalFlip(image: Image): Image {
  const { channels, height, width } = image;
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < height; y++) {
      const row = (c * height + y) * width;
      for (let x = 0; x < width; x++) out[row + x] = image.data[row + width - 1 - x]!;
    }
  }
  return { ...image, data: out };
}

/** ITU-R 601 luma per pixel (the channel itself for one-channel images). */
function luma(image: Image): Float32Array {
  const plane = image.height * image.width;
  if (image.channels < 3) return image.data.slice(0, plane);
  const out = new Float32Array(plane);
  for (let k = 0; k < plane; k++) out[k] = 0.299 * image.data[k]! + 0.587 * image.data[plane + k]! + 0.114 * image.data[2 * plane + k]!;
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

function blend(image: Image, other: (c: number, k: number) => number, factor: number): Image {
  const plane = image.height * image.width;
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < image.channels; c++) {
    for (let k = 0; k < plane; k++) out[c * plane + k] = clamp01(factor * image.data[c * plane + k]! + (1 - factor) * other(c, k));
  }
  return { ...image, data: out };
}

export const adjustBrightness = (image: Image, factor: number) => blend(image, () => 0, factor);

export function adjustContrast(image: Image, factor: number): Image {
  const gray = luma(image);
  const mean = gray.reduce((a, b) => a + b, 0) / gray.length;
  return blend(image, () => mean, factor);
}

export function adjustSaturation(image: Image, factor: number): Image {
  if (image.channels < 3) return image; // no colour to saturate
  const gray = luma(image);
  return blend(image, (_, k) => gray[k]!, factor);
}

/** Rotates the hue by `shift` of a full turn (in [-0.5, 0.5]); one-channel images are unchanged. */
export function adjustHue(image: Image, shift: number): Image {
  if (image.channels < 3) return image;
  const plane = image.height * image.width;
  const out = new Float32Array(image.data.length);
  for (let k = 0; k < plane; k++) {
    const r = image.data[k]!,
      g = image.data[plane + k]!,
      b = image.data[2 * plane + k]!;
    const max = Math.max(r, g, b),
      min = Math.min(r, g, b),
      delta = max - min;
    let h = 0;
    if (delta > 0) h = max === r ? ((g - b) / delta) % 6 : max === g ? (b - r) / delta + 2 : (r - g) / delta + 4;
    h = (((h / 6 + shift) % 1) + 1) % 1;
    const s = max === 0 ? 0 : delta / max,
      v = max;
    const sector = Math.floor(h * 6),
      f = h * 6 - sector;
    const p = v * (1 - s),
      q = v * (1 - f * s),
      t = v * (1 - (1 - f) * s);
    const [rr, gg, bb] = [
      [v, t, p],
      [q, v, p],
      [p, v, t],
      [p, q, v],
      [t, p, v],
      [v, p, q],
    ][sector % 6]!;
    out[k] = rr!;
    out[plane + k] = gg!;
    out[2 * plane + k] = bb!;
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
  const weights = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = weights.reduce((a, b) => a + b, 0);
  const kernel = weights.map((w) => w / total);
  const reflect = (i: number, n: number) => (n === 1 ? 0 : i < 0 ? -i : i >= n ? 2 * n - 2 - i : i);
  const { channels, height, width } = image;
  const horizontal = new Float32Array(image.data.length);
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) sum += kernel[k + radius]! * image.data[plane + y * width + reflect(x + k, width)]!;
        horizontal[plane + y * width + x] = sum;
      }
    }
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) sum += kernel[k + radius]! * horizontal[plane + reflect(y + k, height) * width + x]!;
        out[plane + y * width + x] = sum;
      }
    }
  }
  return { ...image, data: out };
}

/** Inverts every value at or above the threshold. */
export function solarize(image: Image, threshold: number): Image {
  return { ...image, data: image.data.map((x) => (x >= threshold ? 1 - x : x)) };
}

export function normalize(image: Image, mean: readonly number[], std: readonly number[]): Image {
  const plane = image.height * image.width;
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < image.channels; c++) {
    const m = mean[c % mean.length]!,
      s = std[c % std.length]!;
    for (let k = 0; k < plane; k++) out[c * plane + k] = (image.data[c * plane + k]! - m) / s;
  }
  return { ...image, data: out };
}
