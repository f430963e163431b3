// Parity of the fused packing loss with the spec: an independent TypeScript float64 forward
// (test/reference.ts), LibTorch autograd over the unfused formula, and finite differences.
import { describe, expect, it } from 'vitest';
import { packingLoss, packingLossReference, type PackingLossOptions } from '../lib/index.js';
import { makeBatch, referencePackingLoss, relativeL2, type ReferenceResult } from './reference.js';

interface Case {
  name: string;
  views: number;
  batch: number;
  dim: number;
  spread: number;
  noise: number;
  seed: number;
  options: PackingLossOptions;
  /** What the case must exercise, checked on the reference so the case cannot silently drift. */
  regime: (reference: ReferenceResult, batch: number) => boolean;
}

const cases: Case[] = [
  {
    name: 'every pair in contact',
    views: 4,
    batch: 6,
    dim: 8,
    spread: 0.3,
    noise: 1,
    seed: 1,
    options: { maxRange: 10 },
    regime: (r, b) => r.contactsPerImage === b - 1 && r.clampedContacts === 0,
  },
  { name: 'no pair in contact', views: 4, batch: 6, dim: 8, spread: 3, noise: 0.01, seed: 2, options: {}, regime: (r) => r.contacts === 0 },
  {
    name: 'maxRange binding on some pairs, not others',
    views: 4,
    batch: 10,
    dim: 6,
    spread: 0.5,
    noise: 0.4,
    seed: 3,
    options: { rs: 1.5, maxRange: 0.8 },
    regime: (r) => r.clampedContacts > 0 && r.clampedContacts < r.contacts,
  },
  {
    name: 'pairs closer than minMargin',
    views: 3,
    batch: 12,
    dim: 4,
    spread: 0.2,
    noise: 0.3,
    seed: 4,
    options: { minMargin: 0.4 },
    regime: (r) => r.belowMarginPairs > 0 && r.contacts > 0,
  },
  { name: 'd < m', views: 8, batch: 8, dim: 3, spread: 0.5, noise: 0.3, seed: 5, options: { rs: 2 }, regime: (r) => r.contacts > 0 },
  { name: 'd > m', views: 2, batch: 8, dim: 16, spread: 0.5, noise: 0.3, seed: 6, options: {}, regime: (r) => r.contacts > 0 },
  {
    name: 'potPow 2.5',
    views: 4,
    batch: 8,
    dim: 6,
    spread: 0.5,
    noise: 0.3,
    seed: 7,
    options: { potPow: 2.5, rs: 4 },
    regime: (r) => r.contacts > 0,
  },
  {
    name: 'lw0 > 0',
    views: 4,
    batch: 8,
    dim: 6,
    spread: 0.5,
    noise: 0.3,
    seed: 8,
    options: { lw0: 0.3, rs: 4 },
    regime: (r) => r.contacts > 0,
  },
  {
    name: 'log off',
    views: 4,
    batch: 8,
    dim: 6,
    spread: 0.5,
    noise: 0.3,
    seed: 9,
    options: { log: false, rs: 4 },
    regime: (r) => r.contacts > 0,
  },
];

const statNames = ['energy', 'meanRadius', 'meanDistance', 'contactsPerImage', 'activity', 'nearestCentreAccuracy'] as const;

function relativeError(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.max(Math.abs(expected), 1e-30);
}

describe.each(cases)('packing loss: $name', (c) => {
  const shape = { views: c.views, batch: c.batch, dim: c.dim };
  const z64 = makeBatch(c.views, c.batch, c.dim, c.spread, c.noise, c.seed);
  const z32 = Float32Array.from(z64);
  const reference64 = referencePackingLoss(z64, c.views, c.batch, c.dim, c.options);
  // The float32 run is compared with float64 math on the same (rounded) values.
  const reference32 = referencePackingLoss(z32, c.views, c.batch, c.dim, c.options);

  it('exercises the regime it is named for', () => {
    expect(c.regime(reference64, c.batch)).toBe(true);
  });

  it('float64: value and every stat match the independent reference', async () => {
    const fused = await packingLoss(z64, { ...shape, ...c.options });
    expect(fused.grad).toBeInstanceOf(Float64Array);
    expect(relativeError(fused.loss, reference64.loss)).toBeLessThan(1e-10);
    for (const stat of statNames) expect(relativeError(fused.stats[stat], reference64[stat]), stat).toBeLessThan(1e-10);
  });

  it('float64: the gradient matches LibTorch autograd on the unfused formula', async () => {
    const [fused, unfused] = await Promise.all([
      packingLoss(z64, { ...shape, ...c.options }),
      packingLossReference(z64, { ...shape, ...c.options }),
    ]);
    expect(relativeError(fused.loss, unfused.loss)).toBeLessThan(1e-12);
    if (reference64.contacts === 0 && !(c.options.lw0 ?? 0)) {
      expect(fused.grad.every((g) => g === 0)).toBe(true); // nothing to push: exactly zero
    } else {
      expect(relativeL2(fused.grad, unfused.grad)).toBeLessThan(1e-10);
    }
  });

  it('float64: the gradient matches central finite differences', async () => {
    const h = 1e-6;
    const analytic = (await packingLoss(z64, { ...shape, ...c.options })).grad;
    const numeric = new Float64Array(z64.length);
    for (let k = 0; k < z64.length; k++) {
      const plus = Float64Array.from(z64),
        minus = Float64Array.from(z64);
      plus[k]! += h;
      minus[k]! -= h;
      const [up, down] = await Promise.all([packingLoss(plus, { ...shape, ...c.options }), packingLoss(minus, { ...shape, ...c.options })]);
      numeric[k] = (up.loss - down.loss) / (2 * h);
    }
    if (reference64.contacts === 0 && !(c.options.lw0 ?? 0)) {
      expect(Math.max(...numeric.map(Math.abs))).toBe(0);
    } else {
      expect(relativeL2(analytic, numeric)).toBeLessThan(1e-6);
    }
  });

  it('float32: loss, stats and gradient within float32 round-off of float64', async () => {
    const [fused, unfused] = await Promise.all([
      packingLoss(z32, { ...shape, ...c.options }),
      packingLossReference(Float64Array.from(z32), { ...shape, ...c.options }),
    ]);
    expect(fused.grad).toBeInstanceOf(Float32Array);
    expect(relativeError(fused.loss, reference32.loss)).toBeLessThanOrEqual(1e-5);
    for (const stat of statNames) expect(relativeError(fused.stats[stat], reference32[stat]), stat).toBeLessThanOrEqual(1e-5);
    if (reference32.contacts === 0 && !(c.options.lw0 ?? 0)) {
      expect(fused.grad.every((g) => g === 0)).toBe(true);
    } else {
      expect(relativeL2(fused.grad, unfused.grad)).toBeLessThanOrEqual(1e-4);
    }
  });
});
