// The linear-probe protocol on frozen features, run natively on the compute thread: features
// standardised with the training set's statistics, a linear classifier trained by SGD with momentum
// and a cosine schedule, a learning-rate sweep judged on a held-out slice of the training set, the
// chosen rate retrained on the whole training set, and every test image scored once.
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { native } from '../runtime/native.js';
import type { LabelledFeatures } from './knn.js';

export const linearProbeOptionsSchema = z
  .object({
    epochs: z.number().int().positive().default(100),
    batchSize: z.number().int().positive().default(256),
    learningRates: z.array(z.number().finite().positive()).min(1).default([0.01, 0.03, 0.1, 0.3, 1, 3]),
    momentum: z.number().min(0).lt(1).default(0.9),
    weightDecay: z.number().finite().min(0).default(0),
    /** The share of the training features held out to choose the learning rate. */
    validationFraction: z.number().gt(0).lt(1).default(0.1),
    seed: z.number().int().min(0).default(0),
    /**
     * Epochs of a second probe trained through random crops and flips of the training images (features
     * recomputed every batch, the backbone frozen) at the learning rate the sweep chose; 0 skips it.
     */
    augmentEpochs: z.number().int().min(0).default(0),
  })
  .strict();

export type LinearProbeOptions = z.input<typeof linearProbeOptionsSchema>;

export interface LinearProbeResult {
  top1: number;
  top5: number;
  /** The learning rate the held-out slice chose. */
  learningRate: number;
  /** Held-out accuracy of each learning rate of the sweep, in order. */
  validationAccuracy: number[];
  /** [test, classes] logits of the final classifier. */
  testLogits: Float32Array;
}

export async function linearProbe(
  train: LabelledFeatures,
  test: LabelledFeatures,
  dim: number,
  classes: number,
  options: LinearProbeOptions = {},
): Promise<LinearProbeResult> {
  const parsed = linearProbeOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'linearProbe');
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dim must be a whole number >= 1, got ${dim}`);
  for (const [name, set] of [
    ['train', train],
    ['test', test],
  ] as const) {
    if (set.features.length !== set.labels.length * dim) {
      throw new RangeError(
        `${name}.features holds ${set.features.length / dim} rows of dim ${dim}, but there are ${set.labels.length} labels`,
      );
    }
  }
  const { augmentEpochs: _augmented, ...probe } = parsed.data; // run by lib/eval/augmented-probe.ts, not natively here
  return native().linearProbe(train.features, train.labels, test.features, test.labels, dim, { ...probe, classes });
}
