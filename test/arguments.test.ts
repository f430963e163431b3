// Bad input to packingLoss: an error that names the problem, never a crash.
import { describe, expect, it } from 'vitest';
import { packingLoss, packingLossReference } from '../lib/index.js';

const good = () => new Float32Array(2 * 3 * 4).map((_, k) => Math.sin(k));
const shape = { views: 2, batch: 3, dim: 4 };

describe('packingLoss argument errors', () => {
  it.each([
    ['a plain array', [1, 2, 3], TypeError, /Float32Array or Float64Array, got Array/],
    ['an Int32Array', new Int32Array(24), TypeError, /got Int32Array/],
    ['null', null, TypeError, /got null/],
  ])('z as %s is a TypeError', async (_, z, type, message) => {
    await expect(packingLoss(z as unknown as Float32Array, shape)).rejects.toThrow(type);
    await expect(packingLoss(z as unknown as Float32Array, shape)).rejects.toThrow(message);
  });

  it('a wrong length names both lengths', async () => {
    await expect(packingLoss(new Float32Array(23), shape)).rejects.toThrow(/z.length is 23, but views \* batch \* dim = 2 \* 3 \* 4 = 24/);
  });

  it.each([
    [{ ...shape, views: 1, batch: 6 }, /views must be a whole number >= 2, got 1/],
    [{ ...shape, views: 6, batch: 1 }, /batch must be a whole number >= 2, got 1/],
    [{ ...shape, dim: 0, batch: 12 }, /dim must be a whole number >= 1, got 0/],
    [{ ...shape, views: 2.5 }, /views must be a whole number >= 2, got 2.5/],
  ])('shape %o is a RangeError', async (args, message) => {
    await expect(packingLoss(good(), args)).rejects.toThrow(RangeError);
    await expect(packingLoss(good(), args)).rejects.toThrow(message);
  });

  it.each([
    [{ rs: -1 }, RangeError, /options.rs: .* \(got -1\)/],
    [{ rs: Number.NaN }, RangeError, /options.rs/],
    [{ rs: '7' }, TypeError, /options.rs: .* \(got "7"\)/],
    [{ potPow: 0.5 }, RangeError, /options.potPow: .* \(got 0.5\)/],
    [{ maxRange: 0 }, RangeError, /options.maxRange/],
    [{ minMargin: -0.1 }, RangeError, /options.minMargin/],
    [{ lw1: Number.POSITIVE_INFINITY }, RangeError, /options.lw1/],
    [{ log: 'yes' }, TypeError, /options.log: .* \(got "yes"\)/],
    [{ radius: 3 }, TypeError, /radius/],
  ])('option %o is rejected', async (options, type, message) => {
    const args = { ...shape, ...options } as Parameters<typeof packingLoss>[1];
    await expect(packingLoss(good(), args)).rejects.toThrow(type);
    await expect(packingLoss(good(), args)).rejects.toThrow(message);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])('a %d in z names its index', async (bad) => {
    const z = good();
    z[17] = bad;
    await expect(packingLoss(z, shape)).rejects.toThrow(RangeError);
    await expect(packingLoss(z, shape)).rejects.toThrow(/non-finite value .* at index 17/);
    await expect(packingLossReference(z, shape)).rejects.toThrow(/at index 17/);
  });

  it('identical views (all rows equal) are fine: the norm floor keeps them finite', async () => {
    const { loss, grad } = await packingLoss(new Float32Array(24).fill(0.5), shape);
    expect(Number.isFinite(loss)).toBe(true);
    expect(grad.every(Number.isFinite)).toBe(true);
  });
});
