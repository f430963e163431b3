// The linear probe from TypeScript: ~100% on a linearly separable set, ~chance with shuffled labels,
// and argument errors. (The native core's own tests cover the same on the C++ side.)
import { describe, expect, it } from 'vitest';
import { linearProbe } from '../lib/eval/linear-probe.js';
import { gaussianSampler } from '../lib/loss/packing-dynamics.js';
import { Random } from '../lib/random.js';

// `classes` Gaussian clusters in `dim` dimensions, centres 8 apart along the axes.
function clusters(n: number, dim: number, classes: number, seed: number) {
  const normal = gaussianSampler(seed);
  const random = new Random(seed);
  const labels = Uint8Array.from({ length: n }, () => Math.floor(random.uniform(0, classes)));
  const features = Float32Array.from({ length: n * dim }, (_, k) => normal() + (k % dim === labels[Math.floor(k / dim)]! ? 8 : 0));
  return { features, labels };
}

const quick = { epochs: 10, batchSize: 64, learningRates: [0.01, 0.1, 1] };

describe('linear probe', () => {
  it('separates separable classes and reports the sweep', async () => {
    const result = await linearProbe(clusters(1000, 6, 5, 1), clusters(500, 6, 5, 2), 6, 5, quick);
    expect(result.top1).toBeGreaterThan(0.99);
    expect(result.top5).toBe(1);
    expect(result.validationAccuracy).toHaveLength(3);
    expect(quick.learningRates).toContain(result.learningRate);
    expect(result.testLogits).toHaveLength(500 * 5);
  });

  it('is at chance when labels carry no information about the features', async () => {
    // Labels shuffled on both sets: whatever the probe learns from the training labels cannot predict
    // the test labels, so top-1 is 1/5 up to sampling noise (sd 0.009 at 2000 test images).
    const random = new Random(9);
    const shuffle = (set: { features: Float32Array; labels: Uint8Array }) => ({
      features: set.features,
      labels: Uint8Array.from(random.permutation(set.labels.length), (k) => set.labels[k]!),
    });
    const result = await linearProbe(shuffle(clusters(1000, 6, 5, 3)), shuffle(clusters(2000, 6, 5, 4)), 6, 5, quick);
    expect(result.top1).toBeGreaterThan(0.16);
    expect(result.top1).toBeLessThan(0.24);
  });

  it('refuses bad arguments with the reason', async () => {
    const set = clusters(20, 4, 2, 5);
    await expect(linearProbe(set, set, 3, 2)).rejects.toThrow(/rows of dim 3/);
    await expect(linearProbe(set, set, 4, 2, { learningRates: [] })).rejects.toThrow(/linearProbe.learningRates/);
    await expect(linearProbe(set, { features: set.features, labels: set.labels.map(() => 7) }, 4, 2)).rejects.toThrow(/\[0, 2\)/);
  });
});
