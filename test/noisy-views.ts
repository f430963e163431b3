// A fixed training batch for the trainer suites (CPU and GPU): the first Fashion-MNIST test images in
// `views` views, each the pixels scaled to [0, 1] plus that view's own fixed Gaussian noise, view-major.
import { DEFAULT_FASHION_MNIST, loadIdxDataset } from '../lib/index.js';
import { gaussianSampler } from '../lib/loss/packing-dynamics.js';

export const SIDE = 28;

export async function noisyViews(views: number, batch: number): Promise<Float32Array> {
  const data = await loadIdxDataset(DEFAULT_FASHION_MNIST, 'test');
  const normal = gaussianSampler(11);
  const pixels = batch * SIDE * SIDE;
  const out = new Float32Array(views * pixels);
  for (let v = 0; v < views; v++) {
    for (let k = 0; k < pixels; k++) out[v * pixels + k] = data.images[k]! / 255 + 0.2 * normal();
  }
  return out;
}
