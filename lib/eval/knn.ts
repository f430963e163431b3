// Weighted kNN classification of embeddings (the SSL literature's monitor, as solo-learn and lightly
// report it): cosine similarity, the k nearest training embeddings vote with weight exp(sim / T).
// The similarity products and top-k run natively on the compute thread.
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { native } from '../runtime/native.js';

export const knnOptionsSchema = z
  .object({
    k: z.number().int().positive().default(200),
    temperature: z.number().finite().positive().default(0.1),
  })
  .strict();

export type KnnOptions = z.input<typeof knnOptionsSchema>;

export interface LabelledFeatures {
  /** [count, dim] row-major. */
  features: Float32Array;
  labels: Uint8Array | Int32Array;
}

export interface KnnResult {
  top1: number;
  top5: number;
  /** The winning class of each query. */
  predictions: Int32Array;
}

/** Vote totals [queries, classes]. */
export async function knnVotes(
  train: LabelledFeatures,
  queries: Float32Array,
  dim: number,
  classes: number,
  options: KnnOptions = {},
): Promise<Float32Array> {
  const parsed = knnOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'knn');
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dim must be a whole number >= 1, got ${dim}`);
  if (train.features.length !== train.labels.length * dim) {
    throw new RangeError(
      `train.features holds ${train.features.length / dim} rows of dim ${dim}, but there are ${train.labels.length} labels`,
    );
  }
  return native().knnVotes(train.features, train.labels, queries, dim, { ...parsed.data, classes });
}

/** Top-1 and top-5 accuracy of weighted kNN on labelled queries. */
export async function knnAccuracy(
  train: LabelledFeatures,
  test: LabelledFeatures,
  dim: number,
  classes: number,
  options: KnnOptions = {},
): Promise<KnnResult> {
  const votes = await knnVotes(train, test.features, dim, classes, options);
  return scoreVotes(votes, test.labels, classes);
}

/** Top-1 / top-5 accuracy of [n, classes] scores against labels (ties go to the lower class). */
export function scoreVotes(votes: Float32Array, labels: ArrayLike<number>, classes: number): KnnResult {
  const n = labels.length;
  const predictions = new Int32Array(n);
  let top1 = 0,
    top5 = 0;
  for (let i = 0; i < n; i++) {
    const row = votes.subarray(i * classes, (i + 1) * classes);
    const label = labels[i]!;
    let best = 0,
      above = 0;
    for (let c = 0; c < classes; c++) {
      if (row[c]! > row[best]!) best = c;
      if (row[c]! > row[label]! || (row[c] === row[label] && c < label)) above++;
    }
    predictions[i] = best;
    if (best === label) top1++;
    if (above < 5) top5++;
  }
  return { top1: top1 / n, top5: top5 / n, predictions };
}
