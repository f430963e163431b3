// A view's augmentation pipeline (crop, flip, colour jitter, grayscale, blur, solarize, normalise) and
// the multi-view batch the training step takes: view-major [views * batch, C, size, size], with
// several pipelines cycling over the views (the paper's asymmetric ImageNet setup).
import { z } from 'zod';
import type { ImageDataset } from '../data/image-dataset.js';
import { Random } from '../random.js';
import { drawColorJitter, sampleCropBox, type Image } from './transforms.js';
import { gaussianKernel, ViewProgram, type ImageShape } from './view-program.js';

const probability = z.number().min(0).max(1);
const range = z
  .tuple([z.number().finite(), z.number().finite()])
  .refine(([low, high]) => low <= high, 'range must be [low, high] with low <= high');

export const augmentationSchema = z
  .object({
    size: z.number().int().positive(),
    crop: z
      .object({ scale: range.default([0.08, 1]), ratio: range.default([3 / 4, 4 / 3]) })
      .strict()
      .prefault({}),
    flip: probability.default(0.5),
    colorJitter: z
      .object({
        p: probability.default(0.8),
        brightness: z.number().min(0).default(0.4),
        contrast: z.number().min(0).default(0.4),
        saturation: z.number().min(0).default(0.2),
        hue: z.number().min(0).max(0.5).default(0.1),
      })
      .strict()
      .prefault({}),
    grayscale: probability.default(0.2),
    blur: z
      .object({ p: probability.default(0), kernelSize: z.number().int().positive().default(23), sigma: range.default([0.1, 2]) })
      .strict()
      .prefault({}),
    solarize: z
      .object({ p: probability.default(0), threshold: z.number().default(0.5) })
      .strict()
      .prefault({}),
    normalize: z
      .object({ mean: z.array(z.number()).min(1), std: z.array(z.number().positive()).min(1) })
      .strict()
      .optional(),
  })
  .strict();

export type AugmentationOptions = z.input<typeof augmentationSchema>;
export type Augmentation = z.output<typeof augmentationSchema>;

/**
 * Records one augmented view of an image of `shape` into `program`: every random draw, in the pipeline's
 * order (crop box, flip, jitter and its factors, grayscale, blur and its sigma, solarize).
 */
export function drawView(program: ViewProgram, shape: ImageShape, a: Augmentation, random: Random): ViewProgram {
  const box = sampleCropBox(shape.height, shape.width, a.crop.scale, a.crop.ratio, random);
  program.crop(box.top, box.left, box.height, box.width, a.size, a.size);
  if (random.chance(a.flip)) program.flip();
  if (random.chance(a.colorJitter.p)) drawColorJitter(program, a.colorJitter, random);
  if (random.chance(a.grayscale)) program.grayscale();
  if (random.chance(a.blur.p)) program.blur(gaussianKernel(a.blur.kernelSize, random.uniform(a.blur.sigma[0], a.blur.sigma[1])));
  if (random.chance(a.solarize.p)) program.solarize(a.solarize.threshold);
  if (a.normalize) program.normalize(shape.channels, a.normalize.mean, a.normalize.std);
  return program;
}

/** One augmented view of `image`. */
export function augment(image: Image, a: Augmentation, random: Random): Image {
  const program = drawView(new ViewProgram(), image, a, random);
  const data = new Float32Array(image.channels * a.size * a.size);
  return { data, ...program.run(image.data, image, data) };
}

/** The view evaluation and serving see: the whole image resized to the pipeline's size (no crop, flip or colour change), then its normalisation. */
function drawEvaluationView(program: ViewProgram, shape: ImageShape, a: Augmentation): ViewProgram {
  if (shape.height !== a.size || shape.width !== a.size) program.crop(0, 0, shape.height, shape.width, a.size, a.size);
  if (a.normalize) program.normalize(shape.channels, a.normalize.mean, a.normalize.std);
  return program;
}

export function evaluationView(image: Image, a: Augmentation): Image {
  const data = new Float32Array(image.channels * a.size * a.size);
  return { data, ...drawEvaluationView(new ViewProgram(), image, a).run(image.data, image, data) };
}

/** The uint8 CHW pixels of dataset[index], in place. */
function imageBytes(dataset: ImageDataset, index: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= dataset.count)
    throw new RangeError(`image index ${index} is outside the dataset (0..${dataset.count - 1})`);
  const pixels = dataset.channels * dataset.height * dataset.width;
  return dataset.images.subarray(index * pixels, (index + 1) * pixels);
}

/** Evaluation views of dataset[indices] as one [n, C, size, size] batch. */
export function evaluationBatch(
  dataset: ImageDataset,
  indices: readonly number[],
  pipeline: Augmentation,
): { data: Float32Array; shape: [number, number, number, number] } {
  const { channels } = dataset;
  const viewValues = channels * pipeline.size * pipeline.size;
  const data = new Float32Array(indices.length * viewValues);
  const program = drawEvaluationView(new ViewProgram(), dataset, pipeline); // the same for every image
  indices.forEach((index, i) => program.run(imageBytes(dataset, index), dataset, data, i * viewValues));
  return { data, shape: [indices.length, channels, pipeline.size, pipeline.size] };
}

/**
 * The batch for one step: row v * indices.length + i is view v of image indices[i], made by
 * pipelines[v % pipelines.length]. Returns the Float32Array and its [n, C, size, size] shape.
 */
export function multiViewBatch(
  dataset: ImageDataset,
  indices: readonly number[],
  views: number,
  pipelines: readonly Augmentation[],
  random: Random,
): { data: Float32Array; shape: [number, number, number, number] } {
  if (pipelines.length === 0) throw new RangeError('at least one augmentation pipeline is needed');
  const size = pipelines[0]!.size;
  if (pipelines.some((p) => p.size !== size)) throw new RangeError('every pipeline must produce the same size');
  const { channels } = dataset;
  const viewValues = channels * size * size;
  const data = new Float32Array(views * indices.length * viewValues);
  const program = new ViewProgram();
  indices.forEach((index, i) => {
    const pixels = imageBytes(dataset, index);
    for (let v = 0; v < views; v++) {
      // Written straight into its slot: the same size for every pipeline, checked above.
      drawView(program.reset(), dataset, pipelines[v % pipelines.length]!, random).run(
        pixels,
        dataset,
        data,
        (v * indices.length + i) * viewValues,
      );
    }
  });
  return { data, shape: [views * indices.length, channels, size, size] };
}
