// Backbone features of a whole dataset: un-augmented evaluation views made in the loader's worker
// pool, pushed through the backbone in evaluation mode on the compute thread.
import type { Augmentation } from '../augment/pipeline.js';
import { MultiViewLoader } from '../augment/loader.js';
import type { ImageDataset } from '../data/idx.js';
import type { Trainer } from '../train/trainer.js';

export interface DatasetFeatures {
  /** [count, dim] row-major. */
  features: Float32Array;
  labels: Uint8Array;
  dim: number;
}

export async function datasetFeatures(
  trainer: Trainer,
  dataset: ImageDataset,
  pipeline: Augmentation,
  options: { batchSize?: number; workers?: number | undefined; signal?: AbortSignal | undefined } = {},
): Promise<DatasetFeatures> {
  const batchSize = Math.min(options.batchSize ?? 512, dataset.count);
  const dim = trainer.featureDim;
  const features = new Float32Array(dataset.count * dim);
  const loader = new MultiViewLoader({ dataset, batchSize: Math.max(2, batchSize), views: 2, pipelines: [pipeline], workers: options.workers });
  try {
    let row = 0;
    for await (const batch of loader.evaluationBatches()) {
      options.signal?.throwIfAborted();
      features.set(await trainer.features(batch.data, batch.shape), row * dim);
      row += batch.shape[0];
    }
  } finally {
    await loader.close();
  }
  return { features, labels: dataset.labels, dim };
}
