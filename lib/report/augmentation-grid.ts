// A picture of what the network trains on: a few training images (rows), each as itself and then as
// several augmented views made by the run's pipelines (cycling over them like multiViewBatch), with
// the pipelines' normalisation undone for display.
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { augment, type Augmentation } from '../augment/pipeline.js';
import { cropAndResize, imageFromBytes, type Image } from '../augment/transforms.js';
import { loadDataset, type DataConfig } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { decodeImage } from '../data/image-folder.js';
import { Random } from '../random.js';

export interface AugmentationGridOptions {
  /** Training images shown (default 8). */
  rows?: number;
  /** Augmented views per image (default 6). */
  views?: number;
  /** Seeds the views (default 0). */
  seed?: number;
  /** Smallest tile side in pixels; smaller images are scaled up by whole factors, nearest neighbour (default 64). */
  minTile?: number;
  /** White pixels between tiles (default 2). */
  gap?: number;
}

export interface AugmentationGrid {
  png: Buffer;
  width: number;
  height: number;
  rows: number;
  views: number;
  /** The pipeline (index into the run's augment list) of each view column. */
  pipelineOfView: number[];
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

/**
 * The first `count` training images without reading the whole split where that would be slow: an image
 * folder decodes only the files it shows (one per class in turn, as an ImageNet folder would otherwise
 * decode a million images), STL-10 leaves out its unlabeled part.
 */
export async function firstTrainingImages(data: DataConfig, count: number): Promise<ImageDataset> {
  if (data.dataset !== 'image-folder') {
    const dataset = await loadDataset({ ...data, unlabeled: false, limit: Math.min(count, data.limit ?? count) }, 'train');
    if (!dataset) throw new Error('the training split is missing');
    return dataset;
  }
  const folder = data.path;
  if (!folder) throw new Error('the image-folder dataset has no data.path');
  const entries = await fs.readdir(folder, { withFileTypes: true });
  const classes: string[] = [];
  for (const entry of entries) {
    if (!entry.name.startsWith('.') && (await fs.stat(path.join(folder, entry.name)).catch(() => null))?.isDirectory())
      classes.push(entry.name);
  }
  classes.sort();
  const perClass = await Promise.all(
    classes.slice(0, count).map(async (name) =>
      (await fs.readdir(path.join(folder, name), { withFileTypes: true }))
        .filter(
          (entry) => !entry.isDirectory() && !entry.name.startsWith('.') && IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase()),
        )
        .map((entry) => entry.name)
        .sort()
        .map((file) => path.join(folder, name, file)),
    ),
  );
  const chosen: { file: string; label: number }[] = [];
  for (let round = 0; chosen.length < count && perClass.some((files) => files.length > round); round++) {
    perClass.forEach((files, label) => {
      if (chosen.length < count && files[round] !== undefined) chosen.push({ file: files[round]!, label });
    });
  }
  if (chosen.length === 0) throw new Error(`the image folder ${folder} holds no images`);
  const { imageSize: size, channels } = data;
  const pixels = size * size;
  const images = new Uint8Array(chosen.length * channels * pixels);
  await Promise.all(
    chosen.map(async ({ file }, index) => {
      const interleaved = await decodeImage(file, size, channels);
      for (let c = 0; c < channels; c++)
        for (let k = 0; k < pixels; k++) images[(index * channels + c) * pixels + k] = interleaved[k * channels + c]!;
    }),
  );
  return {
    images,
    labels: Uint8Array.from(chosen, (x) => x.label),
    count: chosen.length,
    channels,
    height: size,
    width: size,
    classes: classes.length,
  };
}

/** Image values for display: the pipeline's normalisation undone, in [0, 1]. */
function denormalise(image: Image, pipeline: Augmentation | null): Image {
  const plane = image.height * image.width;
  const out = new Float32Array(image.data.length);
  for (let c = 0; c < image.channels; c++) {
    const mean = pipeline?.normalize ? pipeline.normalize.mean[c % pipeline.normalize.mean.length]! : 0;
    const std = pipeline?.normalize ? pipeline.normalize.std[c % pipeline.normalize.std.length]! : 1;
    for (let k = 0; k < plane; k++) {
      const value = image.data[c * plane + k]! * std + mean;
      out[c * plane + k] = value < 0 ? 0 : value > 1 ? 1 : value;
    }
  }
  return { ...image, data: out };
}

/** The grid as a PNG: column 0 the image (resized to the views' size), then `views` augmented views. */
export async function augmentationGrid(
  dataset: ImageDataset,
  pipelines: readonly Augmentation[],
  options: AugmentationGridOptions = {},
): Promise<AugmentationGrid> {
  if (pipelines.length === 0) throw new RangeError('at least one augmentation pipeline is needed');
  const rows = Math.min(options.rows ?? 8, dataset.count);
  const views = options.views ?? 6;
  const gap = options.gap ?? 2;
  if (rows < 1) throw new RangeError('the dataset holds no images');
  const size = pipelines[0]!.size;
  const scale = Math.max(1, Math.ceil((options.minTile ?? 64) / size));
  const tile = size * scale;
  const columns = views + 1;
  const width = columns * tile + (columns + 1) * gap;
  const height = rows * tile + (rows + 1) * gap;
  const rgb = Buffer.alloc(width * height * 3, 255);
  const random = new Random(options.seed ?? 0);
  const { channels, height: h, width: w } = dataset;
  const pixels = channels * h * w;
  const pipelineOfView = Array.from({ length: views }, (_, v) => v % pipelines.length);

  const paint = (image: Image, row: number, column: number) => {
    const plane = image.height * image.width;
    const top = gap + row * (tile + gap),
      left = gap + column * (tile + gap);
    for (let y = 0; y < tile; y++) {
      const sy = Math.floor(y / scale);
      for (let x = 0; x < tile; x++) {
        const source = sy * image.width + Math.floor(x / scale);
        const target = ((top + y) * width + left + x) * 3;
        for (let c = 0; c < 3; c++) {
          const value = image.data[(image.channels >= 3 ? c : 0) * plane + source]!;
          rgb[target + c] = Math.round(value * 255);
        }
      }
    }
  };

  for (let row = 0; row < rows; row++) {
    const image = imageFromBytes(dataset.images.subarray(row * pixels, (row + 1) * pixels), channels, h, w);
    const original = h === size && w === size ? image : cropAndResize(image, { top: 0, left: 0, height: h, width: w }, size, size);
    paint(original, row, 0);
    for (let v = 0; v < views; v++) {
      const pipeline = pipelines[pipelineOfView[v]!]!;
      paint(denormalise(augment(image, pipeline, random), pipeline), row, v + 1);
    }
  }
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  return { png, width, height, rows, views, pipelineOfView };
}
