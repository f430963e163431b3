// The augmentations' outputs pinned bit for bit: the sha256 of the float32 bytes of fixed pipelines and
// transforms on fixed images and seeds, with the next random draw after each (so the number of draws is
// pinned too). The hashes were made by the plain per-element implementation before its loops were
// optimised (every float64 operation in its order, rounded to float32 only where it stores), so any change
// to an output bit fails here. A change of the arithmetic that is meant, and checked, regenerates them:
// PRINT_AUGMENT_HASHES=1 npx vitest run test/augment-golden.test.ts. The seven cases with a blur were
// regenerated on 2026-12-03, when the blur moved to float32 with paired symmetric taps (as OpenCV's);
// native/test/test_augment.cpp checks it against a direct 2D sum.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { augmentationSchema, evaluationBatch, multiViewBatch, type AugmentationOptions } from '../lib/augment/pipeline.js';
import {
  adjustBrightness,
  adjustContrast,
  adjustHue,
  adjustSaturation,
  cropAndResize,
  gaussianBlur,
  type Image,
} from '../lib/augment/transforms.js';
import type { ImageDataset } from '../lib/data/image-dataset.js';
import { Random } from '../lib/random.js';

/** Photo-like uint8 images (waves at a few scales, noise, some pixels clipped to 0 and 255), from a seed. */
function dataset(count: number, channels: number, side: number, seed: number): ImageDataset {
  const random = new Random(seed);
  const images = new Uint8Array(count * channels * side * side);
  for (let n = 0; n < count; n++) {
    const fx = random.uniform(-0.4, 0.4),
      fy = random.uniform(-0.4, 0.4);
    for (let c = 0; c < channels; c++) {
      const base = random.uniform(40, 215),
        phase = random.uniform(0, 2 * Math.PI);
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          const v = base + 90 * Math.sin(fx * x + fy * y + phase) + 30 * Math.sin(0.9 * x - 0.7 * y) + random.uniform(-20, 20);
          images[((n * channels + c) * side + y) * side + x] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
  }
  return { images, labels: new Uint8Array(count), count, channels, height: side, width: side, classes: 2 };
}

/** A small RGB image with exact 0s and 1s, grey pixels (r = g = b) and ties between two channels. */
function edgeImage(height: number, width: number): Image {
  const random = new Random(99);
  const plane = height * width;
  const data = new Float32Array(3 * plane);
  for (let k = 0; k < plane; k++) {
    const kind = k % 6;
    const r = random.integer(0, 255) / 255;
    const g = kind === 0 ? r : random.integer(0, 255) / 255;
    const b = kind <= 1 ? g : random.integer(0, 255) / 255;
    [data[k], data[plane + k], data[2 * plane + k]] = kind === 3 ? [1, 1, 0] : kind === 4 ? [0, 0, 0] : [r, g, b];
  }
  return { data, channels: 3, height, width };
}

const imagenetNormalize = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const strong: AugmentationOptions = {
  size: 96,
  colorJitter: { p: 1, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.2 },
  grayscale: 0.2,
  blur: { p: 1, kernelSize: 23, sigma: [0.1, 2] },
  solarize: { p: 0.2 },
  normalize: imagenetNormalize,
};
const pairB: AugmentationOptions = { ...strong, blur: { p: 0.1, kernelSize: 23, sigma: [0.1, 2] } };
const hueOnly: AugmentationOptions = {
  size: 96,
  crop: { scale: [0.02, 0.1] }, // small boxes, upscaled
  colorJitter: { p: 1, brightness: 0, contrast: 0, saturation: 0, hue: 0.5 },
  grayscale: 0,
};
const grey: AugmentationOptions = {
  size: 28,
  crop: { scale: [0.3, 1] },
  colorJitter: { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0, hue: 0 },
  grayscale: 0,
  normalize: { mean: [0.286], std: [0.353] },
};
const greyBlur: AugmentationOptions = { ...grey, blur: { p: 1, kernelSize: 5, sigma: [0.1, 2] }, solarize: { p: 0.5 } };
const small: AugmentationOptions = { size: 12, blur: { p: 1, kernelSize: 23, sigma: [0.5, 2] }, colorJitter: { p: 1 } };

const rgb96 = dataset(3, 3, 96, 1);
const grey28 = dataset(4, 1, 28, 2);
const rgb32 = dataset(3, 3, 32, 3);

const batch = (data: ImageDataset, views: number, pipelines: AugmentationOptions[], seed: number) => () => {
  const random = new Random(seed);
  const indices = Array.from({ length: data.count }, (_, k) => k);
  const out = multiViewBatch(
    data,
    indices,
    views,
    pipelines.map((p) => augmentationSchema.parse(p)),
    random,
  ).data;
  return { data: out, next: random.next() };
};

const cases: Record<string, () => { data: Float32Array; next?: number }> = {
  'rgb96 crop, flip, jitter (hue, saturation), grayscale, blur 23, solarize, normalize': batch(rgb96, 2, [strong], 1),
  'rgb96 asymmetric pair, 4 views': batch(rgb96, 4, [strong, pairB], 2),
  'rgb96 hue only, upscaled small crops': batch(rgb96, 2, [hueOnly], 3),
  'grey28 crop, flip, brightness, contrast, normalize': batch(grey28, 4, [grey], 4),
  'grey28 with blur 5 and solarize': batch(grey28, 2, [greyBlur], 5),
  'rgb32 to 12 with blur 23': batch(rgb32, 2, [small], 6),
  'rgb96 evaluation view at 64': () => ({ data: evaluationBatch(rgb96, [0, 1, 2], augmentationSchema.parse({ size: 64 })).data }),
};
const edge = edgeImage(9, 11);
for (const shift of [-0.5, -0.37, 0.1, 0.5]) cases[`hue ${shift}`] = () => adjustHue(edge, shift);
for (const factor of [0, 0.55, 1.7]) {
  cases[`brightness ${factor}`] = () => adjustBrightness(edge, factor);
  cases[`contrast ${factor}`] = () => adjustContrast(edge, factor);
  cases[`saturation ${factor}`] = () => adjustSaturation(edge, factor);
}
for (const [height, kernel] of [
  [1, 5],
  [2, 3],
  [9, 17],
] as const)
  cases[`blur ${kernel} of ${height}x11`] = () => gaussianBlur({ ...edge, height, data: edge.data.slice(0, 3 * height * 11) }, kernel, 0.8);
cases['crop 1-pixel-wide box to 7x5'] = () => cropAndResize(edge, { top: 2, left: 4, height: 6, width: 1 }, 7, 5);
cases['crop 1-pixel-high box to 3x13'] = () => cropAndResize(edge, { top: 8, left: 0, height: 1, width: 11 }, 3, 13);

function sha256(output: { data: Float32Array; next?: number }): string {
  const hash = createHash('sha256').update(new Uint8Array(output.data.buffer, output.data.byteOffset, output.data.byteLength));
  if (output.next !== undefined) hash.update(new Uint8Array(Float64Array.of(output.next).buffer));
  return hash.digest('hex');
}

// Made by the implementation before the optimisation, the blur's cases by its float32 form (see the top).
const pinned: Record<string, string> = {
  'rgb96 crop, flip, jitter (hue, saturation), grayscale, blur 23, solarize, normalize':
    'ca2ac9d36c927241586ee4ad5b728927cb738a74ab066a08dc07371c25e3619f',
  'rgb96 asymmetric pair, 4 views': '1bba0119cbeb3746a20931ff4025be22d9e3017b43b1df90c7b0d5525e2bfa5e',
  'rgb96 hue only, upscaled small crops': 'ebcbcad54f407b90365b1e1108babdfb2b5120823f9a1e89d6465738a96eb658',
  'grey28 crop, flip, brightness, contrast, normalize': '845ceb688829f4ff45570edc93fd0b16974065cbd81b89457663093d75447262',
  'grey28 with blur 5 and solarize': 'a6e227caa3223ba25923f3196eade71ab73ce6123a973480aace01d1a001e330',
  'rgb32 to 12 with blur 23': 'b7566a328695b27bec302bdf86187ba070fd77a0b0c9d7b677d249d4c5708704',
  'rgb96 evaluation view at 64': '54978b2ec2245fd30eaf9c7deba484b3a822ac9c0a00cac5bae58b02018493e2',
  'hue -0.5': '7148e7fcbfeb17b229d36e6a34d9b26f5720292dbe05bd1e010928d39aa3fea9',
  'hue -0.37': 'b4d49d362368c8f010f0ee6684d0746d368bd62ca94e5e0ba6f05981f12c221a',
  'hue 0.1': '3dd625721d272f2365222c727fe4ec405fb96afc94f0db6eaa133a6066b1f171',
  'hue 0.5': '22cb054ece23a47b709c69b104a9c21c14eb88e215a286f8a91479e8175a15a7',
  'brightness 0': 'c17a21a56099ec806ee334dd5c0cca7e225e90b3bd861c705dc448fc8ac518b9',
  'contrast 0': '21e34fe1f299fdd9ebef2f70403d06f77bdbdec92f2e700d1aa391074159003f',
  'saturation 0': 'e4d476fbb751b879b7463f21a06266389ba75c92dbb6cc89d5c5392ac3a08174',
  'brightness 0.55': '28072482b936cc6678c9477a88b8bf3905a80a1d71c803d63baf217a381a1825',
  'contrast 0.55': '7ebadf8f0ba659aff22de4e64540dc84f02636e5d3e8bac9d812ef2fc1156d3e',
  'saturation 0.55': '1be2f543830b6bf80e4e690039ef2911b9c839d8f409291cd2cdfeced38a1e76',
  'brightness 1.7': '5c580bb44a0dcd99f87449fca6a60344126f6d09a0356fd41462ef039cd6f90f',
  'contrast 1.7': 'd7538c4d2f2db89293a4f890ec77d35ab2e729fbb2b3793316c2e70b692b67fa',
  'saturation 1.7': 'a96b75bb526c1338ba47222f354ec999854718c5abca6ef7a111299762c2117f',
  'blur 5 of 1x11': '2373a0034be78487b660bd4545c6d4867cdeba61277705b104d4e692be9bb74f',
  'blur 3 of 2x11': '818ffd871b0eb08b1253babbb4d2f3d25526cfdee3690a79cd52219d870e5eab',
  'blur 17 of 9x11': '7a9001b1bc3ee45122804e9359cea323bbf0445f0b2262e98b8759a1f30091c3',
  'crop 1-pixel-wide box to 7x5': '7f0be7e5e5d4095d46b2be52433bdde72a1ad811367dbd5d272f801b62b07534',
  'crop 1-pixel-high box to 3x13': '719c323d3b080c4e22058c4e840cb5876ea4c2894416e8832601f7e78b09f20e',
};

describe('augmentation outputs, bit for bit', () => {
  const actual = Object.fromEntries(Object.entries(cases).map(([name, run]) => [name, sha256(run())]));
  if (process.env.PRINT_AUGMENT_HASHES) console.log(JSON.stringify(actual, null, 2));
  it.each(Object.keys(cases))('%s', (name) => expect(actual[name]).toBe(pinned[name]));
});
