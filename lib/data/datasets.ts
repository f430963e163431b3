// One entry point for every dataset the trainer reads: the config's `data` section, its schema, the
// default locations, and a `limit` that keeps the first images only (quick runs, tests).
import { z } from 'zod';
import { loadCifarDataset } from './cifar.js';
import { DatasetError } from './dataset-files.js';
import { DEFAULT_FASHION_MNIST, loadIdxDataset } from './idx.js';
import type { ImageDataset } from './image-dataset.js';
import { loadImageFolder } from './image-folder.js';
import { loadStl10Dataset } from './stl10.js';

export const DATASETS = ['fashion-mnist', 'mnist', 'cifar10', 'cifar100', 'stl10', 'image-folder'] as const;
export type DatasetName = (typeof DATASETS)[number];

const positiveInteger = z.number().int().positive();

export const dataSchema = z
  .object({
    dataset: z.enum(DATASETS).default('fashion-mnist'),
    /** The dataset's folder; fashion-mnist defaults to Debian's dataset-fashion-mnist, the others need it. */
    path: z.string().min(1).optional(),
    /** image-folder only: the folder evaluation reads (same layout); without it there is no evaluation. */
    testPath: z.string().min(1).optional(),
    /** Keep the first `limit` training images. */
    limit: positiveInteger.optional(),
    /** Keep the first `testLimit` test images. */
    testLimit: positiveInteger.optional(),
    /** STL-10: also train on the 100,000 unlabeled images (the self-supervised convention). */
    unlabeled: z.boolean().default(false),
    /** image-folder: decoded to imageSize x imageSize with this many channels. */
    imageSize: positiveInteger.default(96),
    channels: z.union([z.literal(1), z.literal(3)]).default(3),
  })
  .strict();

export type DataOptions = z.input<typeof dataSchema>;
export type DataConfig = z.output<typeof dataSchema>;

/** The side of the dataset's square images: fixed by the format, or data.imageSize for an image folder. */
export function datasetImageSide(data: DataConfig): number {
  switch (data.dataset) {
    case 'fashion-mnist':
    case 'mnist':
      return 28;
    case 'cifar10':
    case 'cifar100':
      return 32;
    case 'stl10':
      return 96;
    case 'image-folder':
      return data.imageSize;
  }
}

function requirePath(data: DataConfig): string {
  if (data.path) return data.path;
  throw new DatasetError(
    `the ${data.dataset} dataset has no default location: pass --data with its folder (or set data.path in the config)`,
  );
}

/** The first `limit` images of a dataset, sharing its memory. */
export function firstImages(dataset: ImageDataset, limit: number | undefined): ImageDataset {
  if (limit === undefined || limit >= dataset.count) return dataset;
  const pixels = dataset.channels * dataset.height * dataset.width;
  return { ...dataset, count: limit, images: dataset.images.subarray(0, limit * pixels), labels: dataset.labels.subarray(0, limit) };
}

function concatenate(a: ImageDataset, b: ImageDataset): ImageDataset {
  const images = new Uint8Array(a.images.length + b.images.length);
  images.set(a.images);
  images.set(b.images, a.images.length);
  const labels = new Uint8Array(a.count + b.count);
  labels.set(a.labels);
  labels.set(b.labels, a.count);
  return { ...a, images, labels, count: a.count + b.count };
}

/** MNIST and Fashion-MNIST: 10 classes each. Labels are checked against this, never inferred from the largest one. */
const MNIST_CLASSES = 10;

/** The config's model is built for 28x28 images, so an IDX folder holding another size is refused here. */
async function loadMnistLayout(data: DataConfig, split: 'train' | 'test'): Promise<ImageDataset> {
  const folder = data.dataset === 'fashion-mnist' ? (data.path ?? DEFAULT_FASHION_MNIST) : requirePath(data);
  const dataset = await loadIdxDataset(folder, split, { classes: MNIST_CLASSES });
  const side = datasetImageSide(data);
  if (dataset.height !== side || dataset.width !== side) {
    throw new DatasetError(
      `${folder} holds ${dataset.height}x${dataset.width} images, but ${data.dataset} images are ${side}x${side}: it is another dataset's folder, or its files are damaged`,
    );
  }
  return dataset;
}

/** The split `split` of the configured dataset; null for 'test' when the dataset has none (an image folder without testPath). */
export async function loadDataset(data: DataConfig, split: 'train' | 'test'): Promise<ImageDataset | null> {
  const limit = split === 'train' ? data.limit : data.testLimit;
  let dataset: ImageDataset;
  switch (data.dataset) {
    case 'fashion-mnist':
    case 'mnist':
      dataset = await loadMnistLayout(data, split);
      break;
    case 'cifar10':
    case 'cifar100':
      dataset = await loadCifarDataset(requirePath(data), split, data.dataset);
      break;
    case 'stl10':
      dataset = await loadStl10Dataset(requirePath(data), split);
      if (split === 'train' && data.unlabeled) dataset = concatenate(dataset, await loadStl10Dataset(requirePath(data), 'unlabeled'));
      break;
    case 'image-folder': {
      const folder = split === 'train' ? requirePath(data) : data.testPath;
      if (!folder) return null;
      dataset = await loadImageFolder(folder, { size: data.imageSize, channels: data.channels });
      break;
    }
  }
  return firstImages(dataset, limit);
}
