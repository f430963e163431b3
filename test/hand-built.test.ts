// Sub-manifolds small enough to work out on paper. Every view is already centred and of unit norm,
// so steps 1-2 of the spec leave them unchanged and each quantity has a closed form.
import { describe, expect, it } from 'vitest';
import { packingLoss } from '../lib/index.js';

describe('two images in the plane, two views each', () => {
  // Image 0: (cos a, +-sin a); image 1: (-cos a, +-sin a). Mean 0, norms 1.
  // c_0 = (cos a, 0), c_1 = (-cos a, 0); t_i = 2 sin^2 a / (m - 1) = 2 sin^2 a; min(d, m) = 2;
  // r_i = rs sqrt(sin^2 a + 1e-12); d_01 = sqrt(4 cos^2 a + 1e-12).
  // E = 0.5 * 2 ordered pairs * (1 - d/s)^p + lw0 (r_0 + r_1) = (1 - d/s)^p + 2 lw0 r.
  const views = (cos: number, sin: number) => new Float64Array([cos, sin, -cos, sin, cos, -sin, -cos, -sin]);
  const shape = { views: 2, batch: 2, dim: 2 };

  it('cos a = 0.6, rs = 7: the range is capped at maxRange = 1.5 and d = 1.2 is in contact', async () => {
    const { loss, stats } = await packingLoss(views(0.6, 0.8), { ...shape, rs: 7 });
    const d = Math.sqrt(4 * 0.36 + 1e-12);
    const energy = (1 - d / 1.5) ** 2; // = 0.04
    expect(energy).toBeCloseTo(0.04, 9);
    expect(stats.energy).toBeCloseTo(energy, 12);
    expect(loss).toBeCloseTo(Math.log(energy + 1e-6), 12);
    expect(stats.meanRadius).toBeCloseTo(Math.sqrt(0.64 + 1e-12), 12);
    expect(stats.meanDistance).toBeCloseTo(d, 12);
    expect(stats.contactsPerImage).toBe(1);
    expect(stats.activity).toBe(1);
    expect(stats.nearestCentreAccuracy).toBe(1);
  });

  it('the same with potPow 2.5, lw0 0.1 and the log off', async () => {
    const { loss } = await packingLoss(views(0.6, 0.8), { ...shape, rs: 7, potPow: 2.5, lw0: 0.1, log: false });
    const r = 7 * Math.sqrt(0.64 + 1e-12);
    expect(loss).toBeCloseTo((1 - Math.sqrt(1.44 + 1e-12) / 1.5) ** 2.5 + 0.1 * 2 * r, 12);
  });

  it('sin a = 0.1, rs = 7: s = 1.4 < d = 1.99, no contact, loss = log(1e-6), zero gradient', async () => {
    const sin = 0.1,
      cos = Math.sqrt(1 - sin * sin);
    const { loss, grad, stats } = await packingLoss(views(cos, sin), { ...shape, rs: 7 });
    expect(stats.energy).toBe(0);
    expect(loss).toBeCloseTo(Math.log(1e-6), 12);
    expect(stats.contactsPerImage).toBe(0);
    expect(stats.activity).toBe(0);
    expect(grad.every((g) => g === 0)).toBe(true);
  });
});

describe('three images at 120 degrees in 3-D, two views each', () => {
  // View +-: cos p * e_k +- sin p * e_z with e_k three unit vectors at 120 degrees in the xy plane.
  // Mean 0, norms 1. c_k = cos p e_k; r = rs sqrt(sin^2 p + 1e-12); d_kl = sqrt(3 cos^2 p + 1e-12).
  // Six ordered pairs: E = 3 (1 - d/s)^p.
  const cos = 0.8,
    sin = 0.6;
  const directions = [0, 1, 2].map((k) => [Math.cos((2 * Math.PI * k) / 3), Math.sin((2 * Math.PI * k) / 3)] as const);
  const z = new Float64Array([+1, -1].flatMap((sign) => directions.flatMap(([x, y]) => [cos * x, cos * y, sign * sin])));
  const shape = { views: 2, batch: 3, dim: 3 };
  const d = Math.sqrt(3 * cos * cos + 1e-12);
  const r = (rs: number) => rs * Math.sqrt(sin * sin + 1e-12);

  it('rs = 2 (2r = 2.4 capped at 1.5 > d = 1.386): every pair in contact', async () => {
    const { stats } = await packingLoss(z, { ...shape, rs: 2 });
    expect(stats.energy).toBeCloseTo(3 * (1 - d / 1.5) ** 2, 12);
    expect(stats.contactsPerImage).toBe(2);
    expect(stats.meanDistance).toBeCloseTo(d, 12);
  });

  it('rs = 2, maxRange 3 (s = 2r + 1e-6 unclamped), potPow 2.5', async () => {
    const { stats } = await packingLoss(z, { ...shape, rs: 2, maxRange: 3, potPow: 2.5 });
    expect(stats.energy).toBeCloseTo(3 * (1 - d / (2 * r(2) + 1e-6)) ** 2.5, 12);
  });

  it('rs = 1 (s = 1.2 < d): no contact', async () => {
    const { stats } = await packingLoss(z, { ...shape, rs: 1 });
    expect(stats.energy).toBe(0);
    expect(stats.meanRadius).toBeCloseTo(r(1), 12);
  });

  it('minMargin above d removes every contact', async () => {
    const { stats } = await packingLoss(z, { ...shape, rs: 2, minMargin: 1.4 });
    expect(stats.contactsPerImage).toBe(0);
  });
});
