// The CLAMP packing loss for TypeScript callers: value, gradient and the paper's jamming diagnostics
// from the fused native operation (shared/spec/packing-loss.md), computed off the JS thread.
import { validationError } from '../config/errors.js';
import { packingLossOptionsSchema, type PackingLossOptions, type ResolvedPackingLossOptions } from '../config/packing-loss-options.js';
import { native } from '../runtime/native.js';
import type { PackingStats } from '../runtime/addon-types.js';

export type FloatArray = Float32Array | Float64Array;

/** The layout of z: `views` blocks of `batch` rows of `dim` values (row v*batch + i is view v of image i). */
export interface PackingLossShape {
  views: number;
  batch: number;
  dim: number;
}

export type PackingLossArguments = PackingLossShape & PackingLossOptions;

/** Per-batch diagnostics, in the centred unit-norm space (spec, "Diagnostics"). */
export type { PackingStats };

export interface PackingLossResult<T extends FloatArray> {
  loss: number;
  /** dL/dz, same layout and precision as z. */
  grad: T;
  stats: PackingStats;
}

function checkShapeField(name: keyof PackingLossShape, value: unknown, minimum: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < minimum) throw new RangeError(`${name} must be a whole number >= ${minimum}, got ${value}`);
  return value;
}

/** Validates z and the arguments; throws TypeError/RangeError naming the offending value. */
export function parsePackingLossArguments(
  z: unknown,
  args: PackingLossArguments,
): { shape: PackingLossShape; options: ResolvedPackingLossOptions } {
  if (!(z instanceof Float32Array) && !(z instanceof Float64Array)) {
    const got = z === null ? 'null' : typeof z === 'object' ? (z.constructor?.name ?? 'an object') : typeof z;
    throw new TypeError(`z must be a Float32Array or Float64Array, got ${got}`);
  }
  if (typeof args !== 'object' || args === null) throw new TypeError('the second argument must be { views, batch, dim, ...options }');
  const { views, batch, dim, ...rest } = args;
  const shape = {
    views: checkShapeField('views', views, 2),
    batch: checkShapeField('batch', batch, 2),
    dim: checkShapeField('dim', dim, 1),
  };
  const expected = shape.views * shape.batch * shape.dim;
  if (z.length !== expected) {
    throw new RangeError(`z.length is ${z.length}, but views * batch * dim = ${shape.views} * ${shape.batch} * ${shape.dim} = ${expected}`);
  }
  const parsed = packingLossOptionsSchema.safeParse(rest, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'options');
  return { shape, options: parsed.data };
}

/**
 * The packing loss of a batch of embeddings, its gradient and its diagnostics.
 *
 * `z` is read in place (no copy) on a worker thread: leave it unchanged until the promise settles.
 * Float64Array input computes in float64 (for gradient checks); Float32Array in float32.
 */
export async function packingLoss<T extends FloatArray>(z: T, args: PackingLossArguments): Promise<PackingLossResult<T>> {
  const { shape, options } = parsePackingLossArguments(z, args);
  const result = await native().packingLoss(z, shape.views, shape.dim, options, 'fused');
  if (result.stats === null) throw new Error('the native packing loss returned no diagnostics');
  return { loss: result.loss, grad: result.grad, stats: result.stats };
}

/**
 * The same loss from the spec's formula composed of plain LibTorch operations with autograd, including a
 * [batch, batch, dim] tensor of centre differences. Slow and memory-hungry: a yardstick for tests and
 * benchmarks, not for training.
 */
export async function packingLossReference<T extends FloatArray>(z: T, args: PackingLossArguments): Promise<{ loss: number; grad: T }> {
  const { shape, options } = parsePackingLossArguments(z, args);
  const result = await native().packingLoss(z, shape.views, shape.dim, options, 'unfused');
  return { loss: result.loss, grad: result.grad };
}
