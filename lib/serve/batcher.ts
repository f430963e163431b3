// Dynamic batching across HTTP requests. The Encoder already coalesces calls that queue while a
// forward pass runs, but it starts the first call at once and does not say how big its batches were.
// The server batches on its own, in front of it: requests (each already decoded to uint8 pixels)
// wait until maxBatch images are queued or the oldest has waited maxDelayMs, whichever comes first,
// then go to the Encoder as one call, and one forward pass runs at a time, so every batch the metrics
// count is one forward pass. While a pass runs the next batch fills; when it ends, a batch that is
// full or whose oldest request has waited maxDelayMs goes at once. maxDelayMs 0 is the Encoder's own
// behaviour: batch only what queued during the previous pass.
import type { Embeddings, PixelInput } from '../encode/encoder.js';

/** The part of the Encoder the batcher uses. */
export interface BatchEncoder {
  readonly dim: number;
  embed(input: PixelInput): Promise<Embeddings>;
}

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  /** The shape of one image, [H, W, C]. */
  imageShape: readonly [number, number, number];
  /** Told the size and duration of every forward pass. */
  onBatch?: (images: number, seconds: number) => void;
}

interface Waiting {
  pixels: Uint8Array;
  images: number;
  arrived: number;
  resolve: (embeddings: Embeddings) => void;
  reject: (error: unknown) => void;
}

export class EmbeddingBatcher {
  private readonly waiting: Waiting[] = [];
  private queued = 0;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly whenIdle: (() => void)[] = [];
  private flushing = false;

  constructor(
    private readonly encoder: BatchEncoder,
    private readonly options: BatcherOptions,
  ) {
    if (!Number.isInteger(options.maxBatch) || options.maxBatch < 1)
      throw new RangeError(`maxBatch must be a whole number >= 1, got ${options.maxBatch}`);
    if (!(options.maxDelayMs >= 0)) throw new RangeError(`maxDelayMs must be a number >= 0, got ${options.maxDelayMs}`);
  }

  /** Images decoded and waiting for a forward pass. */
  get queuedImages(): number {
    return this.queued;
  }

  /** Embeddings of `images` images (uint8 [images, H, W, C]); at most maxBatch, so that a request is never split. */
  embed(pixels: Uint8Array, images: number): Promise<Embeddings> {
    if (images < 1 || images > this.options.maxBatch)
      return Promise.reject(
        new RangeError(`a request of ${images} images cannot be batched: 1 to ${this.options.maxBatch} (maxBatch) per request`),
      );
    return new Promise<Embeddings>((resolve, reject) => {
      this.waiting.push({ pixels, images, arrived: performance.now(), resolve, reject });
      this.queued += images;
      this.pump();
    });
  }

  /** From now on batches go as soon as the encoder is free, without waiting for others to join: for shutdown. */
  flush(): void {
    this.flushing = true;
    this.pump();
  }

  /** Resolves once nothing waits and no forward pass runs. */
  idle(): Promise<void> {
    if (this.isIdle) return Promise.resolve();
    return new Promise<void>((resolve) => this.whenIdle.push(resolve));
  }

  private get isIdle(): boolean {
    return this.running === null && this.waiting.length === 0;
  }

  /** Starts a batch when one is due, or sets the timer for when the oldest request's wait runs out. */
  private pump(): void {
    if (this.isIdle) for (const resolve of this.whenIdle.splice(0)) resolve();
    if (this.running !== null || this.waiting.length === 0) return;
    const waited = performance.now() - this.waiting[0]!.arrived;
    if (this.flushing || this.queued >= this.options.maxBatch || waited >= this.options.maxDelayMs) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.running = this.run(this.takeBatch()).finally(() => {
        this.running = null;
        this.pump();
      });
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, this.options.maxDelayMs - waited);
    }
  }

  /** The oldest requests, in order, while they fit in maxBatch images. */
  private takeBatch(): Waiting[] {
    const batch: Waiting[] = [];
    let images = 0;
    while (this.waiting.length > 0 && images + this.waiting[0]!.images <= this.options.maxBatch) {
      const next = this.waiting.shift()!;
      batch.push(next);
      images += next.images;
    }
    this.queued -= images;
    return batch;
  }

  /** One forward pass over the batch's requests; each gets its own rows back (views of one result buffer). */
  private async run(batch: Waiting[]): Promise<void> {
    const images = batch.reduce((sum, w) => sum + w.images, 0);
    const data = batch.length === 1 ? batch[0]!.pixels : joined(batch.map((w) => w.pixels));
    const started = performance.now();
    let embeddings: Embeddings;
    try {
      embeddings = await this.encoder.embed({ data, shape: [images, ...this.options.imageShape] });
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
      return;
    }
    this.options.onBatch?.(images, (performance.now() - started) / 1000);
    const dim = this.encoder.dim;
    let row = 0;
    for (const waiting of batch) {
      waiting.resolve({ data: embeddings.data.subarray(row * dim, (row + waiting.images) * dim), shape: [waiting.images, dim] });
      row += waiting.images;
    }
  }
}

function joined(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
