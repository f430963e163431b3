// Backbone features of a whole dataset: un-augmented evaluation views made in the loader's worker
// pool, pushed through the backbone in evaluation mode on the compute thread.
import type { Augmentation } from '../augment/pipeline.js';
import { MultiViewLoader } from '../augment/loader.js';
import type { ImageDataset } from '../data/image-dataset.js';

export interface DatasetFeatures {
  /** [count, dim] row-major. */
  features: Float32Array;
  labels: Uint8Array;
  dim: number;
}

/** Anything with a backbone to read features from: a Trainer, a FineTuner. */
export interface FeatureSource {
  readonly featureDim: number;
  features(images: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array>;
}

export interface FeatureOptions {
  batchSize?: number;
  workers?: number | undefined;
  signal?: AbortSignal | undefined;
  /** After each batch: images done of the dataset's count (a dataset of 60,000 takes a while on a CPU). */
  onRows?: ((done: number, total: number) => void) | undefined;
}

/**
 * Every image of the dataset once, as un-augmented evaluation views in batches, through `rows` (a
 * network's features or logits, `width` values per image), gathered into one [count, width] matrix.
 */
export async function evaluationRows(
  dataset: ImageDataset,
  pipeline: Augmentation,
  width: number,
  rows: (images: Float32Array, shape: [number, number, number, number]) => Promise<Float32Array>,
  options: FeatureOptions = {},
): Promise<Float32Array> {
  const out = new Float32Array(dataset.count * width);
  const batchSize = Math.max(2, Math.min(options.batchSize ?? 512, dataset.count));
  const loader = new MultiViewLoader({ dataset, batchSize, views: 1, pipelines: [pipeline], workers: options.workers });
  try {
    let row = 0;
    for await (const batch of loader.evaluationBatches()) {
      options.signal?.throwIfAborted();
      out.set(await rows(batch.data, batch.shape), row * width);
      row += batch.shape[0];
      options.onRows?.(row, dataset.count);
    }
  } finally {
    await loader.close();
  }
  return out;
}

export async function datasetFeatures(
  trainer: FeatureSource,
  dataset: ImageDataset,
  pipeline: Augmentation,
  options: FeatureOptions = {},
): Promise<DatasetFeatures> {
  const dim = trainer.featureDim;
  const features = await evaluationRows(dataset, pipeline, dim, (images, shape) => trainer.features(images, shape), options);
  return { features, labels: dataset.labels, dim };
}
