// Class-level diagnostics of embeddings, in the paper's "neural manifold" terms: each class's test
// embeddings (L2-normalised, as the packing loss sees its views) form a manifold with a centre and a
// radius; class manifolds that overlap (centre distance below the sum of radii) are the ones a linear
// read-out struggles to separate. Plus the embeddings' effective rank (RankMe) and per-class accuracy
// and confusion of any classifier's predictions.
import { native } from '../runtime/native.js';

export interface ClassManifolds {
  /** Root-mean-square distance of a class's unit embeddings from their centre, per class. */
  radius: number[];
  /** Distance between class centres, [classes][classes]. */
  centreDistance: number[][];
  /** Share of class pairs whose manifolds overlap: centre distance < radius_i + radius_j. */
  overlap: number;
  meanRadius: number;
  meanCentreDistance: number;
}

/** Row i of [n, dim] features scaled to unit length, written into `out` (a zero row stays zero). */
export function unitRow(features: Float32Array, dim: number, i: number, out: Float64Array): void {
  let norm = 0;
  for (let k = 0; k < dim; k++) norm += features[i * dim + k]! ** 2;
  norm = Math.sqrt(norm) || 1;
  for (let k = 0; k < dim; k++) out[k] = features[i * dim + k]! / norm;
}

/** features: [n, dim] row-major; classes without members get radius NaN and are left out of the means. */
export function classManifolds(features: Float32Array, labels: ArrayLike<number>, dim: number, classes: number): ClassManifolds {
  const n = labels.length;
  if (features.length !== n * dim)
    throw new RangeError(`features hold ${features.length / dim} rows of dim ${dim}, but there are ${n} labels`);
  const centres = Array.from({ length: classes }, () => new Float64Array(dim));
  const counts = new Float64Array(classes);
  const unit = new Float64Array(dim);
  const normalise = (i: number) => unitRow(features, dim, i, unit);
  const classOf = (i: number) => {
    const label = labels[i]!;
    if (!Number.isInteger(label) || label < 0 || label >= classes)
      throw new RangeError(`label ${label} of row ${i} is outside [0, ${classes})`);
    return label;
  };
  for (let i = 0; i < n; i++) {
    normalise(i);
    const centre = centres[classOf(i)]!;
    counts[classOf(i)]!++;
    for (let k = 0; k < dim; k++) centre[k]! += unit[k]!;
  }
  centres.forEach((centre, c) => centre.forEach((_, k) => (centre[k] = centre[k]! / (counts[c]! || 1))));
  const squared = new Float64Array(classes);
  for (let i = 0; i < n; i++) {
    normalise(i);
    const c = classOf(i);
    for (let k = 0; k < dim; k++) squared[c]! += (unit[k]! - centres[c]![k]!) ** 2;
  }
  const radius = Array.from(squared, (s, c) => (counts[c]! > 0 ? Math.sqrt(s / counts[c]!) : Number.NaN));
  const centreDistance = centres.map((a) => centres.map((b) => Math.sqrt(a.reduce((sum, x, k) => sum + (x - b[k]!) ** 2, 0))));
  let pairs = 0,
    overlapping = 0,
    distanceSum = 0;
  for (let i = 0; i < classes; i++) {
    for (let j = i + 1; j < classes; j++) {
      if (!(counts[i]! > 0 && counts[j]! > 0)) continue;
      pairs++;
      distanceSum += centreDistance[i]![j]!;
      if (centreDistance[i]![j]! < radius[i]! + radius[j]!) overlapping++;
    }
  }
  const present = radius.filter((r) => !Number.isNaN(r));
  return {
    radius,
    centreDistance,
    overlap: pairs > 0 ? overlapping / pairs : 0,
    meanRadius: present.reduce((a, b) => a + b, 0) / Math.max(1, present.length),
    meanCentreDistance: pairs > 0 ? distanceSum / pairs : 0,
  };
}

/** Accuracy of `predictions` within each true class (NaN for a class with no examples). */
export function perClassAccuracy(predictions: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number[] {
  const right = new Float64Array(classes),
    total = new Float64Array(classes);
  for (let i = 0; i < labels.length; i++) {
    total[labels[i]!]!++;
    if (predictions[i] === labels[i]) right[labels[i]!]!++;
  }
  return Array.from(total, (t, c) => (t > 0 ? right[c]! / t : Number.NaN));
}

/** [true class][predicted class] counts. */
export function confusionMatrix(predictions: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number[][] {
  const matrix = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) matrix[labels[i]!]![predictions[i]!]!++;
  return matrix;
}

/** The argmax of each row of [n, classes] scores. */
export function argmaxRows(scores: Float32Array, classes: number): Int32Array {
  const n = scores.length / classes;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (scores[i * classes + c]! > scores[i * classes + best]!) best = c;
    out[i] = best;
  }
  return out;
}

/**
 * RankMe (Garrido et al., 2023): exp of the entropy of the normalised singular values of [n, dim]
 * features, from 1 (collapsed onto a line) to min(n, dim) (spread evenly). Computed natively in float64.
 */
export async function effectiveRank(features: Float32Array, dim: number): Promise<number> {
  if (!Number.isInteger(dim) || dim < 1 || features.length === 0 || features.length % dim !== 0) {
    throw new RangeError(`features must hold a whole number (>= 1) of rows of dim ${dim}, got ${features.length} values`);
  }
  return native().effectiveRank(features, dim);
}

/** The share of rows of [n, classes] scores whose true label is among the k highest (ties counted in the label's favour). */
export function topKAccuracy(scores: Float32Array, labels: ArrayLike<number>, classes: number, k: number): number {
  let right = 0;
  for (let i = 0; i < labels.length; i++) {
    const own = scores[i * classes + labels[i]!]!;
    let higher = 0;
    for (let c = 0; c < classes; c++) if (scores[i * classes + c]! > own) higher++;
    if (higher < k) right++;
  }
  return labels.length > 0 ? right / labels.length : Number.NaN;
}
