// Each augmentation checked by what it must do, seeded determinism, and the view-major batch layout.
import { describe, expect, it } from 'vitest';
import { augmentationSchema, multiViewBatch } from '../lib/augment/pipeline.js';
import {
  adjustHue,
  colorJitter,
  cropAndResize,
  gaussianBlur,
  grayscale,
  horizontalFlip,
  normalize,
  sampleCropBox,
  solarize,
  type Image,
} from '../lib/augment/transforms.js';
import type { ImageDataset } from '../lib/data/image-dataset.js';
import { Random } from '../lib/random.js';
import { ViewProgram } from '../lib/augment/view-program.js';

function randomImage(channels: number, height: number, width: number, seed: number): Image {
  const random = new Random(seed);
  return { data: Float32Array.from({ length: channels * height * width }, () => random.next()), channels, height, width };
}

describe('RandomResizedCrop box', () => {
  it('stays inside the image with area fraction and aspect ratio in range (up to rounding)', () => {
    const random = new Random(1);
    const [H, W] = [28, 28];
    for (let k = 0; k < 2000; k++) {
      const box = sampleCropBox(H, W, [0.2, 1], [3 / 4, 4 / 3], random);
      expect(box.top).toBeGreaterThanOrEqual(0);
      expect(box.left).toBeGreaterThanOrEqual(0);
      expect(box.top + box.height).toBeLessThanOrEqual(H);
      expect(box.left + box.width).toBeLessThanOrEqual(W);
      // Rounding each side to whole pixels moves area and ratio by at most about one pixel per side.
      const area = (box.height * box.width) / (H * W);
      expect(area).toBeGreaterThan(0.2 * (1 - 2 / Math.sqrt(0.2 * H * W)) - 1e-9);
      const aspect = box.width / box.height;
      expect(aspect).toBeGreaterThan((3 / 4) * (1 - 2 / box.height) - 1e-9);
      expect(aspect).toBeLessThan((4 / 3) * (1 + 2 / box.height) + 1e-9);
    }
  });

  it('falls back to a centred crop when no box fits', () => {
    const box = sampleCropBox(10, 40, [1, 1], [1, 1], new Random(2)); // a square of the full area cannot fit
    expect(box).toEqual({ top: 0, left: 15, height: 10, width: 10 });
  });
});

describe('transforms', () => {
  it('horizontal flip mirrors each row, and twice is the identity', () => {
    const image = randomImage(3, 5, 7, 3);
    const flipped = horizontalFlip(image);
    expect(flipped.data[0]).toBe(image.data[6]);
    expect(flipped.data[2 * 35 + 4 * 7 + 6]).toBe(image.data[2 * 35 + 4 * 7]);
    expect(horizontalFlip(flipped).data).toEqual(image.data);
  });

  it('grayscale gives three equal channels', () => {
    const gray = grayscale(randomImage(3, 4, 4, 4));
    expect(gray.data.subarray(0, 16)).toEqual(gray.data.subarray(16, 32));
    expect(gray.data.subarray(16, 32)).toEqual(gray.data.subarray(32, 48));
  });

  it('colour jitter keeps every value in [0, 1]', () => {
    const random = new Random(5);
    for (let k = 0; k < 20; k++) {
      const out = colorJitter(randomImage(3, 6, 6, k), { brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.5 }, random);
      expect(out.data.every((x) => x >= 0 && x <= 1)).toBe(true);
    }
  });

  it('hue: no shift is the identity; a third of a turn takes red to green', () => {
    const image = randomImage(3, 3, 3, 6);
    adjustHue(image, 0).data.forEach((x, k) => expect(x).toBeCloseTo(image.data[k]!, 6));
    const red: Image = { data: Float32Array.from([1, 0, 0]), channels: 3, height: 1, width: 1 };
    expect([...adjustHue(red, 1 / 3).data].map((x) => Math.round(x * 1e6) / 1e6)).toEqual([0, 1, 0]);
  });

  it('Gaussian blur keeps a constant image constant and smooths an impulse symmetrically', () => {
    const flat: Image = { data: new Float32Array(49).fill(0.5), channels: 1, height: 7, width: 7 };
    gaussianBlur(flat, 5, 1.2).data.forEach((x) => expect(x).toBeCloseTo(0.5, 6));
    const impulse: Image = { data: new Float32Array(49), channels: 1, height: 7, width: 7 };
    impulse.data[24] = 1;
    const blurred = gaussianBlur(impulse, 5, 1).data;
    expect(blurred[24]).toBeLessThan(1);
    expect(blurred[23]).toBeCloseTo(blurred[25]!, 7);
    expect(blurred[17]).toBeCloseTo(blurred[31]!, 7);
    expect(blurred.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
  });

  it('Gaussian blur wider than the image mirrors again at each border: finite, and a constant image stays constant', () => {
    // 23 taps on 4x5: taps reach 11 pixels past each edge (a single mirror read outside the row: NaN).
    const flat: Image = { data: new Float32Array(3 * 20).fill(0.25), channels: 3, height: 4, width: 5 };
    gaussianBlur(flat, 23, 2).data.forEach((x) => expect(x).toBeCloseTo(0.25, 6));
    const noisy = randomImage(1, 3, 2, 7);
    const blurred = gaussianBlur(noisy, 23, 1.5).data;
    blurred.forEach((x) => expect(Number.isFinite(x)).toBe(true));
    // Mirroring a 2-pixel row without repeating its edge alternates a, b, a, b, ...: every tap lands in it.
    const rowSums = [0, 1, 2].map((y) => blurred[2 * y]! + blurred[2 * y + 1]!);
    rowSums.forEach((sum) => expect(sum).toBeGreaterThan(0));
  });

  it('names a bad transform and what it must be, as a RangeError', () => {
    const image = randomImage(3, 6, 6, 8);
    expect(() => cropAndResize(image, { top: 2, left: 0, height: 5, width: 3 }, 4, 4)).toThrow(
      /crop's height must be a whole number in \[1, 4\], got 5/,
    );
    expect(() => cropAndResize(image, { top: 0, left: 0, height: 2.5, width: 3 }, 4, 4)).toThrow(RangeError);
    expect(() => adjustHue(image, Number.NaN)).toThrow(/hue's shift must be a finite number/);
    expect(() => normalize(image, [0.5], [0])).toThrow(/positive finite standard deviation/);
    const out = new Float32Array(image.data.length);
    expect(() => new ViewProgram().blur([0.2, 0.5, 0.3]).run(image.data, image, out)).toThrow(/blur's weights must be symmetric/);
  });

  it('solarize inverts values at or above the threshold; normalize uses per-channel mean and std', () => {
    const image: Image = { data: Float32Array.from([0.2, 0.5, 0.9]), channels: 1, height: 1, width: 3 };
    expect([...solarize(image, 0.5).data].map((x) => Math.round(x * 1e6) / 1e6)).toEqual([0.2, 0.5, 0.1]);
    const two: Image = { data: Float32Array.from([1, 3]), channels: 2, height: 1, width: 1 };
    expect([...normalize(two, [1, 1], [1, 2]).data]).toEqual([0, 1]);
  });
});

describe('multi-view batches', () => {
  const dataset: ImageDataset = {
    images: Uint8Array.from({ length: 4 * 2 * 3 * 3 }, (_, k) => (k * 37) % 256),
    labels: Uint8Array.from([0, 1, 0, 1]),
    count: 4,
    channels: 2,
    height: 3,
    width: 3,
    classes: 2,
  };

  it('is view-major: row v * batch + i is view v of image i', () => {
    const identity = augmentationSchema.parse({
      size: 3,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
    });
    const { data, shape } = multiViewBatch(dataset, [2, 0], 3, [identity], new Random(7));
    expect(shape).toEqual([6, 2, 3, 3]);
    for (let v = 0; v < 3; v++) {
      [2, 0].forEach((index, i) => {
        const row = data.subarray((v * 2 + i) * 18, (v * 2 + i + 1) * 18);
        expect([...row].map((x) => Math.round(x * 255))).toEqual([...dataset.images.subarray(index * 18, (index + 1) * 18)]);
      });
    }
  });

  it('cycles pipelines over the views, and a seed reproduces the batch', () => {
    const plain = augmentationSchema.parse({
      size: 3,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
    });
    const solarized = augmentationSchema.parse({ ...plain, solarize: { p: 1, threshold: 0 } });
    const { data } = multiViewBatch(dataset, [1], 2, [plain, solarized], new Random(8));
    data.subarray(18, 36).forEach((x, k) => expect(x).toBeCloseTo(1 - data[k]!, 6)); // view 1 = 1 - view 0
    const strong = augmentationSchema.parse({ size: 3 });
    const a = multiViewBatch(dataset, [0, 1, 2], 2, [strong], new Random(9)).data;
    expect(multiViewBatch(dataset, [0, 1, 2], 2, [strong], new Random(9)).data).toEqual(a);
    expect(multiViewBatch(dataset, [0, 1, 2], 2, [strong], new Random(10)).data).not.toEqual(a);
  });

  it('refuses indices outside the dataset and bad options', () => {
    const plain = augmentationSchema.parse({ size: 3 });
    expect(() => multiViewBatch(dataset, [4], 2, [plain], new Random(1))).toThrow(/index 4 is outside the dataset/);
    expect(augmentationSchema.safeParse({ size: 3, flip: 2 }).success).toBe(false);
    expect(augmentationSchema.safeParse({ size: 3, crop: { scale: [1, 0.5] } }).success).toBe(false);
  });
});
