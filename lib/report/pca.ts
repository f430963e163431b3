// Exact principal component analysis of a small feature matrix, in plain TypeScript: centre the rows,
// form the d x d covariance, then the top eigenvectors by power iteration with deflation. Sized for
// the report's map (a few thousand rows of backbone features, d <= 2048).
import { Random } from '../random.js';

export interface PcaResult {
  /** The principal axes, unit length, largest variance first; each is sign-fixed so that its largest-magnitude entry is positive. */
  components: Float64Array[];
  /** The variance along each axis (eigenvalues of the covariance, divisor n - 1). */
  variances: number[];
  /** variances / the covariance's trace. */
  explained: number[];
  /** The column means subtracted before projecting. */
  mean: Float64Array;
  /** The rows projected on the axes: [n, components] row-major. */
  projections: Float64Array;
}

export interface PcaOptions {
  /** How many axes (default 2). */
  components?: number;
  /** Power-iteration limit per axis (default 1,000). */
  maxIterations?: number;
  /** Stop when no entry of the eigenvector moves more than this between iterations (default 1e-9). */
  tolerance?: number;
  /** Seeds the starting vectors (default 1). */
  seed?: number;
}

/** Covariance [d, d] of the centred rows of `data` ([n, d] row-major), divisor n - 1. */
export function covariance(data: ArrayLike<number>, n: number, d: number): { covariance: Float64Array; mean: Float64Array } {
  if (!Number.isInteger(n) || !Number.isInteger(d) || n < 1 || d < 1)
    throw new RangeError(`covariance needs n >= 1 rows and d >= 1 columns, got n=${n}, d=${d}`);
  if (data.length !== n * d) throw new RangeError(`data holds ${data.length} values, not n * d = ${n} * ${d}`);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) mean[k]! += data[i * d + k]!;
  for (let k = 0; k < d; k++) mean[k]! /= n;
  // Rows in blocks of BLOCK, stored transposed ([d, BLOCK]): each pass over the upper triangle then adds
  // BLOCK rows' products at once, so the d x d matrix streams through memory n / BLOCK times, not n.
  const BLOCK = 32;
  const cov = new Float64Array(d * d);
  const block = new Float64Array(d * BLOCK);
  for (let start = 0; start < n; start += BLOCK) {
    const rows = Math.min(BLOCK, n - start);
    if (rows < BLOCK) block.fill(0);
    for (let r = 0; r < rows; r++) {
      const offset = (start + r) * d;
      for (let k = 0; k < d; k++) block[k * BLOCK + r] = data[offset + k]! - mean[k]!;
    }
    for (let a = 0; a < d; a++) {
      const aOffset = a * BLOCK,
        covOffset = a * d;
      let b = a;
      // Four columns at a time: each of row a's values is loaded once for four products.
      for (; b + 3 < d; b += 4) {
        const b0 = b * BLOCK,
          b1 = b0 + BLOCK,
          b2 = b1 + BLOCK,
          b3 = b2 + BLOCK;
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0;
        for (let r = 0; r < BLOCK; r++) {
          const x = block[aOffset + r]!;
          s0 += x * block[b0 + r]!;
          s1 += x * block[b1 + r]!;
          s2 += x * block[b2 + r]!;
          s3 += x * block[b3 + r]!;
        }
        cov[covOffset + b]! += s0;
        cov[covOffset + b + 1]! += s1;
        cov[covOffset + b + 2]! += s2;
        cov[covOffset + b + 3]! += s3;
      }
      for (; b < d; b++) {
        const bOffset = b * BLOCK;
        let sum = 0;
        for (let r = 0; r < BLOCK; r++) sum += block[aOffset + r]! * block[bOffset + r]!;
        cov[covOffset + b]! += sum;
      }
    }
  }
  const divisor = Math.max(1, n - 1);
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const value = cov[a * d + b]! / divisor;
      cov[a * d + b] = value;
      cov[b * d + a] = value;
    }
  }
  return { covariance: cov, mean };
}

function multiply(matrix: Float64Array, d: number, v: Float64Array, out: Float64Array): void {
  let a = 0;
  // Four rows at a time: each of v's values is loaded once for four products.
  for (; a + 3 < d; a += 4) {
    const o0 = a * d,
      o1 = o0 + d,
      o2 = o1 + d,
      o3 = o2 + d;
    let s0 = 0,
      s1 = 0,
      s2 = 0,
      s3 = 0;
    for (let b = 0; b < d; b++) {
      const x = v[b]!;
      s0 += matrix[o0 + b]! * x;
      s1 += matrix[o1 + b]! * x;
      s2 += matrix[o2 + b]! * x;
      s3 += matrix[o3 + b]! * x;
    }
    out[a] = s0;
    out[a + 1] = s1;
    out[a + 2] = s2;
    out[a + 3] = s3;
  }
  for (; a < d; a++) {
    let sum = 0;
    const offset = a * d;
    for (let b = 0; b < d; b++) sum += matrix[offset + b]! * v[b]!;
    out[a] = sum;
  }
}

function normalise(v: Float64Array): number {
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let k = 0; k < v.length; k++) v[k]! /= norm;
  return norm;
}

/**
 * The top `count` eigenpairs of the symmetric positive semi-definite matrix `matrix` ([d, d]) by power
 * iteration, deflating each found pair out before the next. The matrix is modified.
 */
export function topEigenvectors(
  matrix: Float64Array,
  d: number,
  count: number,
  options: Omit<PcaOptions, 'components'> = {},
): { vectors: Float64Array[]; values: number[] } {
  const maxIterations = options.maxIterations ?? 1000;
  const tolerance = options.tolerance ?? 1e-9;
  const random = new Random(options.seed ?? 1);
  const vectors: Float64Array[] = [];
  const values: number[] = [];
  let next = new Float64Array(d);
  for (let c = 0; c < Math.min(count, d); c++) {
    let v = Float64Array.from({ length: d }, () => random.normal());
    // Start orthogonal to the axes already found (they are the deflated matrix's null space).
    for (const u of vectors) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += u[k]! * v[k]!;
      for (let k = 0; k < d; k++) v[k]! -= dot * u[k]!;
    }
    normalise(v);
    let value = 0;
    for (let iteration = 0; iteration < maxIterations; iteration++) {
      multiply(matrix, d, v, next);
      // Keep the iterate orthogonal to the found axes: rounding would otherwise let them creep back.
      for (const u of vectors) {
        let dot = 0;
        for (let k = 0; k < d; k++) dot += u[k]! * next[k]!;
        for (let k = 0; k < d; k++) next[k]! -= dot * u[k]!;
      }
      value = normalise(next);
      if (value === 0) break; // the remaining variance is zero: any orthogonal direction will do
      let change = 0;
      for (let k = 0; k < d; k++) change = Math.max(change, Math.abs(next[k]! - v[k]!));
      [v, next] = [next, v];
      if (change < tolerance) break;
    }
    // The Rayleigh quotient is the eigenvalue, whatever the convergence.
    multiply(matrix, d, v, next);
    value = 0;
    for (let k = 0; k < d; k++) value += v[k]! * next[k]!;
    // A deterministic sign: the largest-magnitude entry positive.
    let largest = 0;
    for (let k = 1; k < d; k++) if (Math.abs(v[k]!) > Math.abs(v[largest]!)) largest = k;
    if (v[largest]! < 0) for (let k = 0; k < d; k++) v[k] = -v[k]!;
    vectors.push(Float64Array.from(v));
    values.push(Math.max(0, value));
    // Deflate: matrix -= value v v^T.
    for (let a = 0; a < d; a++) {
      const offset = a * d;
      const scaled = value * v[a]!;
      for (let b = 0; b < d; b++) matrix[offset + b]! -= scaled * v[b]!;
    }
  }
  return { vectors, values };
}

/** PCA of `data` ([n, d] row-major): the top axes, their variances, and the rows projected on them. */
export function pca(data: ArrayLike<number>, n: number, d: number, options: PcaOptions = {}): PcaResult {
  const count = options.components ?? 2;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`components must be a whole number >= 1, got ${count}`);
  const { covariance: cov, mean } = covariance(data, n, d);
  let trace = 0;
  for (let k = 0; k < d; k++) trace += cov[k * d + k]!;
  const { vectors, values } = topEigenvectors(cov, d, count, options);
  const k = vectors.length;
  const projections = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      const axis = vectors[c]!;
      let sum = 0;
      for (let j = 0; j < d; j++) sum += (data[i * d + j]! - mean[j]!) * axis[j]!;
      projections[i * k + c] = sum;
    }
  }
  return { components: vectors, variances: values, explained: values.map((v) => (trace > 0 ? v / trace : 0)), mean, projections };
}
