// The report's 2-D map of the test split: backbone features of up to N test images (computed as
// evaluation computes them: the un-augmented evaluation view of the run's first pipeline), L2-normalised
// (the geometry kNN and the class-manifold diagnostics use), projected on their first two principal axes;
// the same features go on to the UMAP map (umap.ts).
import fs from 'node:fs/promises';
import { loadDataset } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { Encoder } from '../encode/encoder.js';
import { unitRow } from '../eval/diagnostics.js';
import type { MapPoint } from './charts.js';
import { pca } from './pca.js';

export type EmbeddingMap =
  | {
      points: MapPoint[];
      /** The L2-normalised features the points project ([images, dim] row-major), for the UMAP layout of the same images. */
      features: Float64Array;
      explained: [number, number];
      dim: number;
      images: number;
      testImages: number;
      seconds: { features: number; pca: number };
    }
  | { skipped: string };

/** `count` images spread evenly over the dataset (an image folder lists its test images class by class, so the first N would be a few classes only). */
export function spreadSubset(dataset: ImageDataset, count: number): ImageDataset {
  if (count >= dataset.count) return dataset;
  const pixels = dataset.channels * dataset.height * dataset.width;
  const images = new Uint8Array(count * pixels);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const source = Math.floor((i * dataset.count) / count);
    images.set(dataset.images.subarray(source * pixels, (source + 1) * pixels), i * pixels);
    labels[i] = dataset.labels[source]!;
  }
  return { ...dataset, images, labels, count };
}

/** Rows of `features` ([n, dim]) scaled to unit length (zero rows stay zero). */
export function normaliseRows(features: Float32Array, dim: number): Float64Array {
  const out = new Float64Array(features.length);
  for (let i = 0; i < features.length / dim; i++) unitRow(features, dim, i, out.subarray(i * dim, (i + 1) * dim));
  return out;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** The map, or why there is none (no checkpoint, no test split, a dataset or device missing on this machine). */
export async function embeddingMap(checkpointFile: string, maxImages: number, signal?: AbortSignal): Promise<EmbeddingMap> {
  if (!(await fs.stat(checkpointFile).catch(() => null))?.isFile())
    return { skipped: `the run folder has no checkpoint (${checkpointFile})` };
  // The serving encoder computes what evaluation computes (its preprocessing is the evaluation view),
  // without building the projector and optimiser state a trainer carries, and on this machine's CPU
  // whatever device the run trained on.
  let encoder: Encoder;
  try {
    encoder = await Encoder.load(checkpointFile);
  } catch (error) {
    return { skipped: `the checkpoint could not be loaded: ${message(error)}` };
  }
  try {
    let test: ImageDataset | null;
    try {
      test = await loadDataset(encoder.config.data, 'test');
    } catch (error) {
      return { skipped: `the test split could not be read: ${message(error)}` };
    }
    if (!test || test.count === 0) return { skipped: 'the run has no test split (an image folder needs data.testPath)' };
    const subset = spreadSubset(test, Math.min(maxImages, test.count));
    signal?.throwIfAborted();
    const featuresStarted = performance.now();
    // Datasets hold channel-planar bytes: as [0, 1] floats they are the encoder's NCHW input.
    const {
      data: features,
      shape: [, dim],
    } = await encoder.embed({
      data: Float32Array.from(subset.images, (x) => x / 255),
      shape: [subset.count, subset.channels, subset.height, subset.width],
    });
    signal?.throwIfAborted();
    const pcaStarted = performance.now();
    const normalised = normaliseRows(features, dim);
    const result = pca(normalised, subset.count, dim, { components: 2 });
    const points: MapPoint[] = Array.from({ length: subset.count }, (_, i) => ({
      x: result.projections[2 * i] ?? 0,
      y: result.projections[2 * i + 1] ?? 0,
      label: subset.labels[i]!,
    }));
    return {
      points,
      features: normalised,
      explained: [result.explained[0] ?? 0, result.explained[1] ?? 0],
      dim,
      images: subset.count,
      testImages: test.count,
      seconds: { features: (pcaStarted - featuresStarted) / 1000, pca: (performance.now() - pcaStarted) / 1000 },
    };
  } finally {
    encoder.dispose();
  }
}
