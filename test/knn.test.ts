// Weighted kNN: the native votes against a brute-force TypeScript reference, top-1/top-5 scoring, and
// argument errors.
import { describe, expect, it } from 'vitest';
import { knnAccuracy, knnVotes, scoreVotes } from '../lib/eval/knn.js';
import { Random } from '../lib/random.js';

function bruteForceVotes(
  train: Float32Array,
  labels: Uint8Array,
  queries: Float32Array,
  dim: number,
  classes: number,
  k: number,
  temperature: number,
): number[][] {
  const rows = (data: Float32Array) =>
    Array.from({ length: data.length / dim }, (_, i) => Array.from(data.subarray(i * dim, (i + 1) * dim)));
  const unit = (v: number[]) => {
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  };
  const bank = rows(train).map(unit);
  return rows(queries)
    .map(unit)
    .map((q) => {
      const similar = bank
        .map((b, j) => ({ s: b.reduce((acc, x, c) => acc + x * q[c]!, 0), j }))
        .sort((a, b) => b.s - a.s)
        .slice(0, k);
      const votes = new Array<number>(classes).fill(0);
      for (const { s, j } of similar) votes[labels[j]!] = votes[labels[j]!]! + Math.exp(s / temperature);
      return votes;
    });
}

describe('kNN', () => {
  it('votes equal a brute-force reference', async () => {
    const random = new Random(4);
    const dim = 6,
      classes = 3,
      n = 80,
      q = 25;
    const train = Float32Array.from({ length: n * dim }, () => random.uniform(-1, 1));
    const queries = Float32Array.from({ length: q * dim }, () => random.uniform(-1, 1));
    const labels = Uint8Array.from({ length: n }, () => Math.floor(random.uniform(0, classes)));
    const votes = await knnVotes({ features: train, labels }, queries, dim, classes, { k: 9, temperature: 0.3 });
    const expected = bruteForceVotes(train, labels, queries, dim, classes, 9, 0.3);
    expected.forEach((row, i) => row.forEach((v, c) => expect(votes[i * classes + c]).toBeCloseTo(v, 4)));
  });

  it('separable clusters score 100%; top-5 counts the label among the five best', async () => {
    const dim = 2,
      classes = 2;
    const train = Float32Array.from([1, 0.1, 1, -0.1, -1, 0.1, -1, -0.1]);
    const labels = Uint8Array.from([0, 0, 1, 1]);
    const result = await knnAccuracy(
      { features: train, labels },
      { features: Float32Array.from([2, 0, -2, 0]), labels: Uint8Array.from([0, 1]) },
      dim,
      classes,
      { k: 2 },
    );
    expect(result.top1).toBe(1);
    expect(Array.from(result.predictions)).toEqual([0, 1]);
    // Seven classes; the label ranks 6th for query 0 and 1st for query 1.
    const votes = Float32Array.from([7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 9]);
    expect(scoreVotes(votes.subarray(0, 14), [5, 6], 7)).toMatchObject({ top1: 0.5, top5: 0.5 });
    expect(scoreVotes(votes.subarray(0, 14), [4, 6], 7)).toMatchObject({ top1: 0.5, top5: 1 });
  });

  it('refuses mismatched inputs', async () => {
    const train = new Float32Array(8),
      labels = new Uint8Array(4);
    await expect(knnVotes({ features: train, labels }, new Float32Array(3), 2, 2)).rejects.toThrow(/multiples of dim 2/);
    await expect(knnVotes({ features: train, labels: new Uint8Array(3) }, new Float32Array(2), 2, 2)).rejects.toThrow(/3 labels/);
    await expect(knnVotes({ features: train, labels: Uint8Array.from([0, 0, 0, 5]) }, Float32Array.from([1, 0]), 2, 2)).rejects.toThrow(
      /\[0, 2\)/,
    );
    await expect(knnVotes({ features: train, labels }, new Float32Array(2), 2, 2, { k: 0 })).rejects.toThrow(/knn.k/);
  });
});
