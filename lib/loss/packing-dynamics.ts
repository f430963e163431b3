// Packing dynamics without a network: free embeddings (views scattered around random centres) moved
// by gradient descent on the packing loss. Overlapping sub-manifolds push apart and shrink until the
// packing unjams (energy and contacts fall to zero) — the picture behind CLAMP, in a few seconds.
import { packingLoss, type PackingStats } from './packing-loss.js';
import type { PackingLossOptions } from '../config/packing-loss-options.js';
import { Random } from '../random.js';

export interface PackingDynamicsOptions {
  views?: number;
  batch?: number;
  dim?: number;
  steps?: number;
  /** Gradient-descent step on the embeddings (default 1, for the energy; the log loss needs smaller). */
  learningRate?: number;
  /** Width of each image's cloud of views relative to the spread of the centres. */
  noise?: number;
  seed?: number;
  /** Loss options; by default the dynamics descend the energy E itself (log: false), as a jamming
   *  simulation would: the log loss has the same gradient direction, scaled by 1/E. */
  loss?: PackingLossOptions;
}

export interface PackingDynamicsStep extends PackingStats {
  step: number;
  loss: number;
}

/** Deterministic normal samples, so a seed reproduces a run. */
export function gaussianSampler(seed: number): () => number {
  const random = new Random(seed);
  return () => random.normal();
}

/** View-major embeddings: view v of image i is centre_i + noise * N(0, I). */
export function scatteredViews(views: number, batch: number, dim: number, noise: number, seed: number): Float32Array {
  const normal = gaussianSampler(seed);
  const centres = Float32Array.from({ length: batch * dim }, normal);
  const z = new Float32Array(views * batch * dim);
  for (let v = 0; v < views; v++) {
    for (let k = 0; k < batch * dim; k++) z[v * batch * dim + k] = centres[k]! + noise * normal();
  }
  return z;
}

export async function runPackingDynamics(
  options: PackingDynamicsOptions = {},
  onStep: (step: PackingDynamicsStep) => void = () => {},
): Promise<PackingDynamicsStep[]> {
  const { views = 4, batch = 64, dim = 16, steps = 100, learningRate = 1, noise = 1.5, seed = 1 } = options;
  const loss: PackingLossOptions = { log: false, ...options.loss };
  const z = scatteredViews(views, batch, dim, noise, seed);
  const history: PackingDynamicsStep[] = [];
  for (let step = 0; step <= steps; step++) {
    const result = await packingLoss(z, { views, batch, dim, ...loss });
    const record = { step, loss: result.loss, ...result.stats };
    history.push(record);
    onStep(record);
    if (step === steps) break;
    for (let k = 0; k < z.length; k++) z[k] = z[k]! - learningRate * result.grad[k]!;
  }
  return history;
}
