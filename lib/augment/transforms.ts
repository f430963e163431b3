// Image augmentations of SSL (SimCLR/BYOL/solo-learn), one at a time: an image is CHW float32 in [0, 1]
// until normalisation, and each function returns a new one. The pixel work is the addon's
// (lib/augment/view-program.ts says what each computes); the random draws are here, from a seeded Random.
// The training pipeline (pipeline.ts) records a whole view's ops into one program instead, which
// allocates nothing per op.
import type { Random } from '../random.js';
import { gaussianKernel, ViewProgram } from './view-program.js';

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

/** Runs a program recorded for `image` into a new image of the given size. */
function apply(image: Image, program: ViewProgram, outHeight = image.height, outWidth = image.width): Image {
  const data = new Float32Array(image.channels * outHeight * outWidth);
  const shape = program.run(image.data, image, data);
  return { data, ...shape };
}

/** Bilinear resize of a box of `image` to outHeight x outWidth (half-pixel centres, like align_corners=False, no antialiasing). */
export function cropAndResize(image: Image, box: CropBox, outHeight: number, outWidth: number): Image {
  return apply(image, new ViewProgram().crop(box.top, box.left, box.height, box.width, outHeight, outWidth), outHeight, outWidth);
}

export const horizontalFlip = (image: Image): Image => apply(image, new ViewProgram().flip());

/** Every channel set to the image's ITU-R 601 luma. */
export const grayscale = (image: Image): Image => apply(image, new ViewProgram().grayscale());

export const adjustBrightness = (image: Image, factor: number): Image => apply(image, new ViewProgram().brightness(factor));

/** Blends towards the image's mean luma. */
export const adjustContrast = (image: Image, factor: number): Image => apply(image, new ViewProgram().contrast(factor));

/** Blends towards each pixel's luma; one-channel images are unchanged. */
export const adjustSaturation = (image: Image, factor: number): Image => apply(image, new ViewProgram().saturation(factor));

/** Rotates the hue by `shift` of a full turn (in [-0.5, 0.5]); one-channel images are unchanged. */
export const adjustHue = (image: Image, shift: number): Image => apply(image, new ViewProgram().hue(shift));

export interface ColorJitterOptions {
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

/**
 * torchvision's ColorJitter, recorded into `program`: the four adjustments in a random order, each
 * factor drawn around 1 (hue around 0); an adjustment whose strength is 0 draws nothing.
 */
export function drawColorJitter(program: ViewProgram, o: ColorJitterOptions, random: Random): ViewProgram {
  for (const which of random.permutation(4)) {
    if (which === 0 && o.brightness > 0) program.brightness(random.uniform(Math.max(0, 1 - o.brightness), 1 + o.brightness));
    if (which === 1 && o.contrast > 0) program.contrast(random.uniform(Math.max(0, 1 - o.contrast), 1 + o.contrast));
    if (which === 2 && o.saturation > 0) program.saturation(random.uniform(Math.max(0, 1 - o.saturation), 1 + o.saturation));
    if (which === 3 && o.hue > 0) program.hue(random.uniform(-o.hue, o.hue));
  }
  return program;
}

export const colorJitter = (image: Image, o: ColorJitterOptions, random: Random): Image =>
  apply(image, drawColorJitter(new ViewProgram(), o, random));

/**
 * Separable Gaussian blur of 2 * floor(kernelSize / 2) + 1 taps, mirrored at the borders without repeating
 * the edge (OpenCV's BORDER_REFLECT_101), again as often as a tap needs when the kernel is wider than the image.
 */
export const gaussianBlur = (image: Image, kernelSize: number, sigma: number): Image =>
  apply(image, new ViewProgram().blur(gaussianKernel(kernelSize, sigma)));

/** Inverts every value at or above the threshold. */
export const solarize = (image: Image, threshold: number): Image => apply(image, new ViewProgram().solarize(threshold));

/** (x - mean[c]) / std[c] in channel c (the arrays repeat when shorter than the channels). */
export const normalize = (image: Image, mean: readonly number[], std: readonly number[]): Image =>
  apply(image, new ViewProgram().normalize(image.channels, mean, std));
