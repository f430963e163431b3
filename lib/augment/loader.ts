// Multi-view batches for training (one view for fine-tuning), made in a worker_threads pool and prefetched ahead of the training
// step, so augmentation never runs on the JS thread. Deterministic: the epoch order and every batch's
// augmentations follow from (seed, epoch, batch index), whatever the number of workers.
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ImageDataset } from '../data/image-dataset.js';
import { Random } from '../random.js';
import type { Augmentation } from './pipeline.js';
import type { BatchReply, BatchRequest, LoaderWorkerData } from './worker.js';

export type WorkerPriority = 'low' | 'normal';

export interface MultiViewLoaderOptions {
  dataset: ImageDataset;
  batchSize: number;
  views: number;
  pipelines: Augmentation[];
  seed?: number;
  /** Worker threads (default: the available cores, at most 4). */
  workers?: number | undefined;
  /** Batches made ahead of the consumer (default 2). */
  prefetch?: number;
  /**
   * The workers' scheduling priority. 'low' (the default) runs them at nice 19, so that on a machine
   * whose cores LibTorch's threads fill they make batches in the time those threads leave idle rather
   * than taking a core from a running step: a preempted OpenMP thread stalls its whole team at the next
   * barrier (bench/loader-overhead.mjs measures both). 'normal' leaves them at the process's priority.
   */
  workerPriority?: WorkerPriority | undefined;
  /**
   * Data-parallel training: this rank's share of every global batch of batchSize images (images
   * [rank x batchSize / count, (rank + 1) x batchSize / count) of it), so the ranks together cover the
   * batch one process would take. batchSize must divide evenly.
   */
  shard?: { rank: number; count: number } | undefined;
}

export interface Batch {
  data: Float32Array;
  shape: [number, number, number, number];
  /** Dataset indices of the batch's images, in row order within each view. */
  indices: number[];
  labels: Uint8Array;
}

/** The compiled worker: next to this file in dist/, or in dist/ when this module runs from TypeScript sources (tests). */
function workerUrl(): URL {
  return import.meta.url.endsWith('.ts')
    ? new URL('../../dist/augment/worker.js', import.meta.url)
    : new URL('./worker.js', import.meta.url);
}

function shared(bytes: Uint8Array): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(bytes.byteLength);
  new Uint8Array(buffer).set(bytes);
  return buffer;
}

/** Mixes seed, epoch and batch index into one 32-bit seed. */
function batchSeed(seed: number, epoch: number, batch: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const part of [epoch, batch]) h = Math.imul(h ^ (part + 0x7f4a7c15), 0x85ebca6b) >>> 0;
  return h;
}

export class MultiViewLoader {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: (b: BatchReply) => void }>();
  private nextId = 0;
  private nextWorker = 0;
  /** The most batches ever in flight at once (for tests and tuning). */
  maxInFlight = 0;

  constructor(private readonly options: MultiViewLoaderOptions) {
    const { dataset, batchSize, views } = options;
    if (!Number.isInteger(batchSize) || batchSize < 2) throw new RangeError(`batchSize must be a whole number >= 2, got ${batchSize}`);
    if (batchSize > dataset.count) throw new RangeError(`batchSize ${batchSize} exceeds the dataset's ${dataset.count} images`);
    if (!Number.isInteger(views) || views < 1) throw new RangeError(`views must be a whole number >= 1, got ${views}`);
    const shard = options.shard;
    if (
      shard &&
      (!Number.isInteger(shard.count) || shard.count < 1 || !Number.isInteger(shard.rank) || shard.rank < 0 || shard.rank >= shard.count)
    ) {
      throw new RangeError(`shard must be { rank, count } with 0 <= rank < count, got ${JSON.stringify(shard)}`);
    }
    if (shard && (batchSize % shard.count !== 0 || batchSize / shard.count < 2)) {
      throw new RangeError(`the global batch of ${batchSize} does not split into ${shard.count} shares of at least 2 images`);
    }
    const count = options.workers ?? Math.min(4, os.availableParallelism());
    const { images, labels, ...meta } = dataset;
    const workerData: LoaderWorkerData = {
      images: shared(images),
      labels: shared(labels),
      meta,
      views,
      pipelines: options.pipelines,
      lowPriority: (options.workerPriority ?? 'low') === 'low',
    };
    this.workers = Array.from({ length: count }, () => {
      const worker = new Worker(workerUrl(), { workerData });
      worker.on('message', (reply: BatchReply) => {
        const waiter = this.pending.get(reply.id);
        this.pending.delete(reply.id);
        waiter?.resolve(reply);
      });
      worker.on('error', (error) => {
        for (const [id, waiter] of this.pending) waiter.resolve({ id, error: `augmentation worker failed: ${error.message}` });
        this.pending.clear();
      });
      return worker;
    });
  }

  /** The worker threads making batches. */
  get workerCount(): number {
    return this.workers.length;
  }

  /** Full batches per epoch (the last partial batch is dropped, as in training). */
  get batchesPerEpoch(): number {
    return Math.floor(this.options.dataset.count / this.options.batchSize);
  }

  /** The epoch's image order: a permutation seeded by (seed, epoch). */
  order(epoch: number): number[] {
    return new Random(batchSeed(this.options.seed ?? 0, epoch, -1)).permutation(this.options.dataset.count);
  }

  private request(indices: number[], seed: number, evaluation = false): Promise<BatchReply> {
    const id = this.nextId++;
    const worker = this.workers[this.nextWorker++ % this.workers.length]!;
    const reply = new Promise<BatchReply>((resolve) => this.pending.set(id, { resolve }));
    this.maxInFlight = Math.max(this.maxInFlight, this.pending.size);
    worker.postMessage({ id, indices, seed, evaluation } satisfies BatchRequest);
    return reply;
  }

  /**
   * The batches of one epoch, each made while the consumer works on earlier ones. `fromBatch` skips
   * the first batches (a resumed run): the rest are exactly those an uninterrupted epoch yields.
   */
  async *epoch(epoch: number, fromBatch = 0): AsyncGenerator<Batch> {
    const order = this.order(epoch);
    const { batchSize } = this.options;
    yield* this.prefetched(this.batchesPerEpoch - fromBatch, (k) => {
      const index = fromBatch + k;
      let indices = order.slice(index * batchSize, (index + 1) * batchSize);
      let seed = batchSeed(this.options.seed ?? 0, epoch, index);
      const shard = this.options.shard;
      if (shard && shard.count > 1) {
        const share = batchSize / shard.count;
        indices = indices.slice(shard.rank * share, (shard.rank + 1) * share);
        seed = batchSeed(seed, shard.rank, -2); // each rank's augmentations its own
      }
      return { indices, reply: this.request(indices, seed) };
    });
  }

  /**
   * Every image once, in dataset order, as un-augmented evaluation views [n, C, size, size] (the first
   * pipeline's size and normalisation), in batches of batchSize with a final partial one.
   */
  async *evaluationBatches(): AsyncGenerator<Batch> {
    const { batchSize, dataset } = this.options;
    yield* this.prefetched(Math.ceil(dataset.count / batchSize), (k) => {
      const indices = Array.from({ length: Math.min(batchSize, dataset.count - k * batchSize) }, (_, i) => k * batchSize + i);
      return { indices, reply: this.request(indices, 0, true) };
    });
  }

  private async *prefetched(count: number, make: (k: number) => { indices: number[]; reply: Promise<BatchReply> }): AsyncGenerator<Batch> {
    const prefetch = Math.max(1, this.options.prefetch ?? 2);
    const queue: { indices: number[]; reply: Promise<BatchReply> }[] = [];
    let next = 0;
    const enqueue = () => {
      if (next >= count) return;
      queue.push(make(next));
      next++;
    };
    while (queue.length < prefetch) {
      const before = queue.length;
      enqueue();
      if (queue.length === before) break;
    }
    while (queue.length > 0) {
      const { indices, reply } = queue.shift()!;
      enqueue();
      const answer = await reply;
      if ('error' in answer) throw new Error(answer.error);
      yield { data: answer.data, shape: answer.shape, indices, labels: Uint8Array.from(indices, (i) => this.options.dataset.labels[i]!) };
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
