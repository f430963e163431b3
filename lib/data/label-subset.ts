// The labelled subsets of semi-supervised evaluation (SimCLR's 1% / 10% protocol): the same share of
// every class, drawn by a seed, so a run's figures can be reproduced and compared across encoders.
import { Random } from '../random.js';
import type { ImageDataset } from './image-dataset.js';

/**
 * Indices (ascending) of round(fraction x count) images of every class, at least one each, drawn
 * without replacement by `seed`. The same (labels, fraction, seed) always gives the same subset, and a
 * larger fraction's subset contains a smaller one's.
 */
export function balancedLabelSubset(labels: ArrayLike<number>, classes: number, fraction: number, seed: number): number[] {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`the labelled fraction must lie in (0, 1], got ${fraction}`);
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (!Number.isInteger(label) || label < 0 || label >= classes)
      throw new RangeError(`label ${label} of image ${i} is outside [0, ${classes})`);
    byClass[label]!.push(i);
  }
  const chosen: number[] = [];
  byClass.forEach((members, c) => {
    if (members.length === 0) return;
    // One permutation per class, drawn from (seed, class): a larger fraction takes a longer prefix of it.
    const order = new Random((seed * 1_000_003 + c) >>> 0).permutation(members.length);
    const take = Math.min(members.length, Math.max(1, Math.round(fraction * members.length)));
    for (let k = 0; k < take; k++) chosen.push(members[order[k]!]!);
  });
  return chosen.sort((a, b) => a - b);
}

/** A dataset of dataset[indices] in that order (the images copied). */
export function datasetSubset(dataset: ImageDataset, indices: readonly number[]): ImageDataset {
  const pixels = dataset.channels * dataset.height * dataset.width;
  const images = new Uint8Array(indices.length * pixels);
  const labels = new Uint8Array(indices.length);
  indices.forEach((index, k) => {
    if (!Number.isInteger(index) || index < 0 || index >= dataset.count)
      throw new RangeError(`image index ${index} is outside the dataset (0..${dataset.count - 1})`);
    images.set(dataset.images.subarray(index * pixels, (index + 1) * pixels), k * pixels);
    labels[k] = dataset.labels[index]!;
  });
  return { ...dataset, images, labels, count: indices.length };
}
