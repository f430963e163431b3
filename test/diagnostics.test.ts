// Class-manifold diagnostics and per-class scores on hand-built embeddings whose answers are known.
import { describe, expect, it } from 'vitest';
import { argmaxRows, classManifolds, confusionMatrix, effectiveRank, perClassAccuracy } from '../lib/eval/diagnostics.js';

describe('class manifolds', () => {
  it('radius, centre distance and overlap of hand-built classes', () => {
    // Unit vectors in 2-D. Class 0: angles +-a around 0; class 1: +-a around 90 degrees; class 2: the
    // single vector at 180 degrees (radius 0). Centre of class 0 = (cos a, 0), radius = sin a.
    const a = 0.3;
    const rows = [
      [Math.cos(a), Math.sin(a)],
      [Math.cos(a), -Math.sin(a)],
      [Math.sin(a), Math.cos(a)],
      [-Math.sin(a), Math.cos(a)],
      [-2, 0], // not unit: normalised first
    ];
    const features = Float32Array.from(rows.flat());
    const result = classManifolds(features, [0, 0, 1, 1, 2], 2, 3);
    expect(result.radius[0]).toBeCloseTo(Math.sin(a), 6);
    expect(result.radius[1]).toBeCloseTo(Math.sin(a), 6);
    expect(result.radius[2]).toBeCloseTo(0, 6);
    expect(result.centreDistance[0]![1]).toBeCloseTo(Math.SQRT2 * Math.cos(a), 6);
    expect(result.centreDistance[0]![2]).toBeCloseTo(1 + Math.cos(a), 6);
    expect(result.overlap).toBe(0); // 2 sin 0.3 = 0.59 < 1.35
    // Wide classes (a = 1.2): radius sin 1.2 = 0.93 each, centres sqrt2 cos 1.2 = 0.51 apart: they overlap.
    const wide = Float32Array.from(
      [
        [Math.cos(1.2), Math.sin(1.2)],
        [Math.cos(1.2), -Math.sin(1.2)],
        [Math.sin(1.2), Math.cos(1.2)],
        [-Math.sin(1.2), Math.cos(1.2)],
      ].flat(),
    );
    const overlapping = classManifolds(wide, [0, 0, 1, 1], 2, 2);
    expect(overlapping.overlap).toBe(1);
    expect(overlapping.meanRadius).toBeCloseTo(Math.sin(1.2), 6);
  });

  it('a class with no members is NaN and left out of the means; bad labels are refused', () => {
    const result = classManifolds(Float32Array.from([1, 0, 0, 1]), [0, 2], 2, 3);
    expect(result.radius[1]).toBeNaN();
    expect(result.meanRadius).toBe(0);
    expect(result.meanCentreDistance).toBeCloseTo(Math.SQRT2, 6);
    expect(() => classManifolds(Float32Array.from([1, 0]), [3], 2, 3)).toThrow(/outside \[0, 3\)/);
    expect(() => classManifolds(Float32Array.from([1, 0, 1]), [0], 2, 3)).toThrow(/rows of dim 2/);
  });
});

describe('per-class scores', () => {
  it('per-class accuracy, the confusion matrix and row argmax', () => {
    const labels = [0, 0, 1, 1, 1, 2];
    const predictions = [0, 1, 1, 1, 0, 2];
    expect(perClassAccuracy(predictions, labels, 4)).toEqual([0.5, 2 / 3, 1, Number.NaN]);
    expect(confusionMatrix(predictions, labels, 3)).toEqual([
      [1, 1, 0],
      [1, 2, 0],
      [0, 0, 1],
    ]);
    expect(Array.from(argmaxRows(Float32Array.from([0.1, 0.9, 0.5, 0.7, 0.2, 0.1]), 3))).toEqual([1, 0]);
  });
});

describe('effective rank (RankMe)', () => {
  it('is r for r orthogonal rows of equal length, near 1 for collinear rows, and refuses a ragged array', async () => {
    // Rows e0, 2e1, e0 + ... : three orthogonal directions with equal singular values 2.
    const orthogonal = Float32Array.from([2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0]);
    expect(await effectiveRank(orthogonal, 4)).toBeCloseTo(3, 4);
    const collinear = Float32Array.from([1, 2, 3, 2, 4, 6, -1, -2, -3]);
    expect(await effectiveRank(collinear, 3)).toBeCloseTo(1, 3);
    await expect(effectiveRank(Float32Array.from([1, 2, 3]), 2)).rejects.toThrow(/whole number .* rows of dim 2/);
  });
});
