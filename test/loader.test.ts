// The worker_threads loader: the same batches as the synchronous builder, whatever the worker count,
// epochs that cover the data once, bounded prefetch.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { augmentationSchema, multiViewBatch } from '../lib/augment/pipeline.js';
import { MultiViewLoader, type Batch } from '../lib/augment/loader.js';
import type { ImageDataset } from '../lib/data/image-dataset.js';
import { Random } from '../lib/random.js';

const dataset: ImageDataset = {
  images: Uint8Array.from({ length: 50 * 8 * 8 }, (_, k) => (k * 131) % 256),
  labels: Uint8Array.from({ length: 50 }, (_, k) => k % 10),
  count: 50,
  channels: 1,
  height: 8,
  width: 8,
  classes: 10,
};
const pipelines = [
  augmentationSchema.parse({ size: 6, crop: { scale: [0.3, 1] } }),
  augmentationSchema.parse({ size: 6, solarize: { p: 0.5 } }),
];
const loaders: MultiViewLoader[] = [];
afterAll(async () => Promise.all(loaders.map((l) => l.close())));

async function collect(loader: MultiViewLoader, epoch: number): Promise<Batch[]> {
  const batches = [];
  for await (const batch of loader.epoch(epoch)) batches.push(batch);
  return batches;
}

/** The nice value of each of this process's threads (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceValues(): number[] {
  const values: number[] = [];
  for (const task of fs.readdirSync('/proc/self/task')) {
    try {
      const stat = fs.readFileSync(`/proc/self/task/${task}/stat`, 'utf8');
      values.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return values;
}

describe('MultiViewLoader', () => {
  it.runIf(process.platform === 'linux')(
    'runs its workers at nice 19 by default, at normal priority when asked, with the same batches',
    async () => {
      const before = threadNiceValues().filter((nice) => nice === 19).length;
      const low = new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, seed: 3, workers: 2 });
      const normal = new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, seed: 3, workers: 2, workerPriority: 'normal' });
      loaders.push(low, normal);
      // A whole epoch from each (batches go to the workers in turn) means every worker has started and run its setup.
      const [lowBatches, normalBatches] = await Promise.all([collect(low, 0), collect(normal, 0)]);
      expect(threadNiceValues().filter((nice) => nice === 19).length - before).toBe(2);
      expect(lowBatches.map((b) => Array.from(b.data))).toEqual(normalBatches.map((b) => Array.from(b.data)));
      expect(low.workerCount).toBe(2);
    },
  );

  it('an epoch is floor(N / batch) view-major batches over distinct images, labels attached', async () => {
    const loader = new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, seed: 1, workers: 2 });
    loaders.push(loader);
    const batches = await collect(loader, 0);
    expect(batches).toHaveLength(6);
    const seen = batches.flatMap((b) => b.indices);
    expect(new Set(seen).size).toBe(48);
    for (const batch of batches) {
      expect(batch.shape).toEqual([16, 1, 6, 6]);
      expect(batch.data.length).toBe(16 * 36);
      expect([...batch.labels]).toEqual(batch.indices.map((i) => dataset.labels[i]));
    }
    // prefetch 2: while one batch is awaited, the next two are already being made.
    expect(loader.maxInFlight).toBe(3);
  });

  it('gives the same batches with 1 or 3 workers, and a new order each epoch', async () => {
    const one = new MultiViewLoader({ dataset, batchSize: 10, views: 2, pipelines, seed: 5, workers: 1 });
    const three = new MultiViewLoader({ dataset, batchSize: 10, views: 2, pipelines, seed: 5, workers: 3, prefetch: 3 });
    loaders.push(one, three);
    const [a, b] = [await collect(one, 2), await collect(three, 2)];
    expect(b.map((x) => x.indices)).toEqual(a.map((x) => x.indices));
    b.forEach((batch, k) => expect(batch.data).toEqual(a[k]!.data));
    expect(one.order(3)).not.toEqual(one.order(2));
  });

  it('a worker makes exactly what the synchronous builder makes for the same images', async () => {
    // With augmentations that draw nothing visible, the per-batch seed does not matter: the rows must be
    // the dataset's images, laid out view-major as multiViewBatch lays them.
    const plain = augmentationSchema.parse({
      size: 8,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
    });
    const loader = new MultiViewLoader({ dataset, batchSize: 4, views: 3, pipelines: [plain], seed: 9, workers: 1 });
    loaders.push(loader);
    const [batch] = await collect(loader, 0);
    expect(batch!.data).toEqual(multiViewBatch(dataset, batch!.indices, 3, [plain], new Random(0)).data);
  });

  it("shards split every global batch: the ranks' shares, in rank order, are the unsharded batch's images", async () => {
    const whole = new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, seed: 3, workers: 1 });
    const shares = [0, 1].map(
      (rank) => new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, seed: 3, workers: 1, shard: { rank, count: 2 } }),
    );
    try {
      const all: number[][] = [];
      for await (const batch of whole.epoch(1)) all.push(batch.indices);
      const parts = await Promise.all(
        shares.map(async (loader) => {
          const out: { indices: number[]; shape: number[] }[] = [];
          for await (const batch of loader.epoch(1)) out.push({ indices: batch.indices, shape: batch.shape });
          return out;
        }),
      );
      expect(parts[0]).toHaveLength(all.length);
      all.forEach((indices, k) => {
        expect([...parts[0]![k]!.indices, ...parts[1]![k]!.indices]).toEqual(indices);
        expect(parts[0]![k]!.shape[0]).toBe(2 * 4); // 2 views of 4 images
      });
    } finally {
      await Promise.all([whole, ...shares].map((loader) => loader.close()));
    }
  });

  it('refuses impossible settings', () => {
    expect(() => new MultiViewLoader({ dataset, batchSize: 1, views: 2, pipelines })).toThrow(/batchSize must be a whole number >= 2/);
    expect(() => new MultiViewLoader({ dataset, batchSize: 64, views: 2, pipelines })).toThrow(/exceeds the dataset's 50 images/);
    expect(() => new MultiViewLoader({ dataset, batchSize: 8, views: 0, pipelines })).toThrow(/views must be a whole number >= 1, got 0/);
    expect(() => new MultiViewLoader({ dataset, batchSize: 8, views: 2, pipelines, shard: { rank: 2, count: 2 } })).toThrow(
      /0 <= rank < count/,
    );
    expect(() => new MultiViewLoader({ dataset, batchSize: 9, views: 2, pipelines, shard: { rank: 0, count: 2 } })).toThrow(
      /batch of 9 does not split into 2 shares/,
    );
  });
});
