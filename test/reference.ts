// An independent float64 implementation of the spec's forward pass (shared/spec/packing-loss.md),
// written with plain loops, plus counts that tell which regime a test case exercises.
import { gaussianSampler } from '../lib/loss/packing-dynamics.js';
import type { ResolvedPackingLossOptions } from '../lib/config/packing-loss-options.js';
import { packingLossOptionsSchema, type PackingLossOptions, type PackingStats } from '../lib/index.js';

export interface ReferenceResult extends PackingStats {
  loss: number;
  /** Unordered contact pairs whose range is capped by maxRange. */
  clampedContacts: number;
  /** Unordered pairs closer than minMargin that would otherwise be in contact. */
  belowMarginPairs: number;
  /** Unordered contact pairs. */
  contacts: number;
}

export function referencePackingLoss(
  zIn: ArrayLike<number>,
  views: number,
  batch: number,
  dim: number,
  options: PackingLossOptions = {},
): ReferenceResult {
  const o: ResolvedPackingLossOptions = packingLossOptionsSchema.parse(options);
  const rows = views * batch;
  const z = Array.from({ length: rows }, (_, k) => Array.from({ length: dim }, (_, c) => Number(zIn[k * dim + c])));
  const mean = Array.from({ length: dim }, (_, c) => z.reduce((sum, row) => sum + row[c]!, 0) / rows);
  const unit = z.map((row) => {
    const centred = row.map((x, c) => x - mean[c]!);
    const norm = Math.max(Math.hypot(...centred), 1e-12);
    return centred.map((x) => x / norm);
  });
  const at = (v: number, i: number) => unit[v * batch + i]!;
  const centres = Array.from({ length: batch }, (_, i) =>
    Array.from({ length: dim }, (_, c) => {
      let sum = 0;
      for (let v = 0; v < views; v++) sum += at(v, i)[c]!;
      return sum / views;
    }),
  );
  const radii = centres.map((centre, i) => {
    let spread = 0;
    for (let v = 0; v < views; v++) for (let c = 0; c < dim; c++) spread += (at(v, i)[c]! - centre[c]!) ** 2;
    spread /= views - 1;
    return o.rs * Math.sqrt(spread / Math.min(dim, views) + 1e-12);
  });
  let pairEnergy = 0,
    distanceSum = 0,
    orderedContacts = 0,
    clampedContacts = 0,
    belowMarginPairs = 0;
  const partners = new Array<number>(batch).fill(0);
  for (let i = 0; i < batch; i++) {
    for (let j = 0; j < batch; j++) {
      if (i === j) continue;
      let squared = 0;
      for (let c = 0; c < dim; c++) squared += (centres[i]![c]! - centres[j]![c]!) ** 2;
      const d = Math.sqrt(squared + 1e-12);
      distanceSum += d;
      const unclamped = radii[i]! + radii[j]! + 1e-6;
      const s = Math.min(unclamped, o.maxRange);
      if (d <= o.minMargin && d < s && i < j) belowMarginPairs++;
      if (d > o.minMargin && d < s) {
        pairEnergy += o.lw1 * (1 - d / s) ** o.potPow;
        orderedContacts++;
        partners[i]!++;
        if (i < j && unclamped > o.maxRange) clampedContacts++;
      }
    }
  }
  const energy = 0.5 * pairEnergy + o.lw0 * radii.reduce((a, b) => a + b, 0);
  let nearestOwn = 0;
  for (let v = 0; v < views; v++) {
    for (let i = 0; i < batch; i++) {
      let best = -1,
        bestDistance = Infinity;
      centres.forEach((centre, j) => {
        let squared = 0;
        for (let c = 0; c < dim; c++) squared += (at(v, i)[c]! - centre[c]!) ** 2;
        if (squared < bestDistance) [best, bestDistance] = [j, squared];
      });
      if (best === i) nearestOwn++;
    }
  }
  return {
    loss: o.log ? Math.log(energy + 1e-6) : energy,
    energy,
    meanRadius: radii.reduce((a, b) => a + b, 0) / batch / o.rs,
    meanDistance: distanceSum / (batch * (batch - 1)),
    contactsPerImage: orderedContacts / batch,
    activity: partners.filter((n) => n > 0).length / batch,
    nearestCentreAccuracy: nearestOwn / rows,
    clampedContacts,
    belowMarginPairs,
    contacts: orderedContacts / 2,
  };
}

/** Views around random centres: `spread` scales the centres, `noise` each image's cloud; seeded. */
export function makeBatch(views: number, batch: number, dim: number, spread: number, noise: number, seed: number): Float64Array {
  const normal = gaussianSampler(seed);
  const centres = Array.from({ length: batch * dim }, () => spread * normal());
  const z = new Float64Array(views * batch * dim);
  for (let v = 0; v < views; v++) for (let k = 0; k < batch * dim; k++) z[v * batch * dim + k] = centres[k]! + noise * normal();
  return z;
}

export function relativeL2(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let difference = 0,
    norm = 0;
  for (let k = 0; k < expected.length; k++) {
    difference += (Number(actual[k]) - Number(expected[k])) ** 2;
    norm += Number(expected[k]) ** 2;
  }
  return Math.sqrt(difference) / Math.max(Math.sqrt(norm), 1e-300);
}
