// The loss runs on a worker thread: the event loop keeps turning, and concurrent calls stay separate.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { packingLoss } from '../lib/index.js';
import { scatteredViews } from '../lib/loss/packing-dynamics.js';

describe('packingLoss off the JS thread', () => {
  it('timers fire while a large loss is computed', async () => {
    const [views, batch, dim] = [4, 2048, 128];
    const z = scatteredViews(views, batch, dim, 1, 3);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    // Were the work done on this thread, the promise would already be settled when the interval is
    // armed, and `await` would resume before any timer could run.
    const result = await packingLoss(z, { views, batch, dim });
    clearInterval(timer);
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(ticks).toBeGreaterThan(0);
  });

  it("leaves libuv's thread pool free for Node (fs) while losses queue up", async () => {
    const [views, batch, dim] = [4, 1024, 256];
    const z = scatteredViews(views, batch, dim, 1, 4);
    const order: string[] = [];
    // Six long jobs: on libuv's pool of four they would hold every pool thread; on the compute thread
    // they queue there, and a file read still gets a pool thread at once.
    const losses = Array.from({ length: 6 }, (_, k) => packingLoss(z, { views, batch, dim }).then(() => order.push(`loss ${k}`)));
    const read = fs.promises.readFile(new URL(import.meta.url)).then(() => order.push('read'));
    await Promise.all([...losses, read]);
    expect(order[0]).toBe('read');
    expect(order.slice(1)).toEqual(['loss 0', 'loss 1', 'loss 2', 'loss 3', 'loss 4', 'loss 5']);
  });

  it('40 concurrent calls each get their own result', async () => {
    const shape = { views: 3, batch: 16, dim: 8 };
    const inputs = Array.from({ length: 40 }, (_, k) => scatteredViews(shape.views, shape.batch, shape.dim, 0.5 + k / 40, k + 1));
    const sequential: { loss: number; grad: Float32Array }[] = [];
    for (const z of inputs) sequential.push(await packingLoss(z, shape));
    const concurrent = await Promise.all(inputs.map((z) => packingLoss(z, shape)));
    concurrent.forEach((result, k) => {
      expect(result.loss).toBe(sequential[k]!.loss);
      expect(result.grad).toEqual(sequential[k]!.grad);
    });
    expect(new Set(concurrent.map((r) => r.loss)).size).toBe(40);
  });

  it('the same input gives bitwise the same loss and gradient every time', async () => {
    const shape = { views: 4, batch: 256, dim: 32 };
    const z = scatteredViews(shape.views, shape.batch, shape.dim, 1, 9);
    const [a, b] = [await packingLoss(z, shape), await packingLoss(z, shape)];
    expect(a.loss).toBe(b.loss);
    expect(a.grad).toEqual(b.grad);
  });
});
