// The Encoder for services: a trained backbone loaded from a checkpoint, embedding images off the JS
// thread. Raw pixels, [0, 1] float tensors, encoded images and file paths all reach the network through
// evaluation's preprocessing (the native encoder resizes and normalises exactly as lib/augment's
// evaluation view does), so a service gets the vectors `eval` scored. Concurrent embed() calls are
// coalesced into batches of up to maxBatch images while the previous batch runs, and every caller gets
// a view of the batch's one result buffer back.
import { z } from 'zod';
import { backboneInputChannels, readTrainedCheckpoint, type TrainedCheckpoint } from '../checkpoint/checkpoint.js';
import { CheckpointError } from '../checkpoint/safetensors.js';
import { validationError } from '../config/errors.js';
import type { TrainConfig } from '../config/train-config.js';
import { decodeImage } from '../data/image-folder.js';
import os from 'node:os';
import type { NativeEncoder } from '../runtime/addon-types.js';
import { native, numThreadsSource, setNumThreads } from '../runtime/native.js';
import { deviceSchema, precisionSchema, resolvedStem } from '../model/options.js';
import { evaluationPreprocessing, type Preprocessing } from '../model/preprocessing.js';
import { EmbeddingIndex } from './embedding-index.js';

export const encoderLoadOptionsSchema = z
  .object({
    /** `cpu`, `cuda` or `cuda:<index>`. */
    device: deviceSchema.default('cpu'),
    /** `auto`: bfloat16 weights and activations (channels_last) on Ampere and newer GPUs, float32 elsewhere. Embeddings are float32 either way. */
    precision: precisionSchema.default('auto'),
    /**
     * LibTorch intra-op threads. A process-wide setting: it applies to every encoder and trainer. When
     * neither this, CLAMP_NUM_THREADS nor setNumThreads() chose a count, load() sets the measured
     * default of defaultEncoderThreads() (1 for the small backbone, half the cores for the ResNets),
     * which a trainer later made in the same process also gets: pass `threads` to keep another count.
     */
    threads: z.number().int().positive().optional(),
    /** The most images one forward pass takes: concurrent calls are coalesced up to it, larger calls split. */
    maxBatch: z.number().int().positive().default(128),
  })
  .strict();

export type EncoderLoadOptions = z.input<typeof encoderLoadOptionsSchema>;

/** Raw pixels: Uint8Array [H, W, C] or [n, H, W, C] (0..255), or Float32Array [C, H, W] or [n, C, H, W] (0..1). */
export interface PixelInput {
  data: Uint8Array | Float32Array;
  shape: readonly number[];
}

/** What embed() takes: raw pixels, encoded images (JPEG, PNG, WebP, ... as Buffers), or image file paths. */
export type EmbedInput = PixelInput | Buffer | readonly Buffer[] | string | readonly string[];

/** Features [n, dim], row-major. */
export interface Embeddings {
  data: Float32Array;
  shape: [number, number];
}

export class EncoderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EncoderError';
  }
}

/** A batch in the native encoder's layouts: uint8 [n, H, W, C] or float32 [n, C, H, W]. */
interface PixelBatch {
  data: Uint8Array | Float32Array;
  shape: [number, number, number, number];
}

interface PendingEmbed {
  batch: PixelBatch;
  resolve: (embeddings: Embeddings) => void;
  reject: (error: unknown) => void;
}

/** The native encoder's network and preprocessing, from a checkpoint and its config. */
function encoderSettings(trained: TrainedCheckpoint, { imageSize, mean, std }: Preprocessing) {
  const { config } = trained;
  const inChannels = backboneInputChannels(trained);
  return {
    backbone: config.model.backbone,
    stem: resolvedStem(config.model),
    inChannels,
    ...(config.model.widths ? { widths: config.model.widths } : {}),
    ...(config.model.blocks ? { blocks: config.model.blocks } : {}),
    imageSize,
    mean,
    std,
  };
}

/**
 * NaN or infinite pixels come out of the network as NaN embeddings, which look like any other vector
 * to an index or a database: refused, naming the image. One pass over the values on the JS thread
 * (12 ms for 64 images of 3x224x224 on a 2-core VM), made before the batch is queued: the index is then
 * the caller's own image, not a row of a batch coalesced with other callers', and one caller's bad
 * input never fails the others' embeddings in the same batch.
 */
function refuseNonFinite(data: Float32Array, [, channels, height, width]: [number, number, number, number]): void {
  for (let i = 0; i < data.length; i++) {
    const value = data[i]!;
    // value - value is 0 for every finite value and NaN for NaN and both infinities.
    if (value - value !== 0) {
      const image = Math.floor(i / (channels * height * width));
      const within = i % (channels * height * width);
      const [c, y, x] = [Math.floor(within / (height * width)), Math.floor(within / width) % height, within % width];
      throw new RangeError(
        `image ${image} of the input holds ${value} (first at channel ${c}, row ${y}, column ${x}); float pixels must be finite values in [0, 1]: check how they were decoded and scaled`,
      );
    }
  }
}

/**
 * The Encoder's intra-op threads when nobody chose a count, by measurement. On 2 cores shared with
 * other work (`node --expose-gc bench/embed.mjs --encoder-only --threads N --seconds 3 --batches 1,64`,
 * 5 runs of each count, best run, images/s, 1 thread against 2):
 *   small ResNet 16-32-64, 28x28x1:  batch 1: 1,679 vs 1,397; batch 64: 7,661 vs 7,425
 *   ResNet-18 (CIFAR stem), 32x32x3: batch 1: 52 vs 61;       batch 64: 91 vs 105
 * and in 4 of the 5 runs 2 threads collapsed while another process held a core (ResNet-18 batch 1 at
 * 2 to 13 images/s, the small ResNet's at 69 to 521; 1 thread never fell below 31 and 985): an OpenMP
 * team waits for its slowest thread. The small backbone's convolutions are too small to split,
 * so it takes 1 thread; the ResNets gain at most ~15% from a second thread and lose several times over
 * when a neighbour runs, so they take half the cores, leaving the rest to the JS thread, image decoding
 * and neighbours (on 2 cores: 1). Above 2 cores the half is a rule of thumb, not a measurement.
 */
export function defaultEncoderThreads(backbone: TrainConfig['model']['backbone'], cores = os.availableParallelism()): number {
  return backbone === 'small' ? 1 : Math.max(1, Math.floor(cores / 2));
}

const isWholePositive = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 1;

export class Encoder {
  private readonly queue: PendingEmbed[] = [];
  private running = false;
  private disposed = false;

  private constructor(
    private readonly handle: NativeEncoder,
    /** Feature dimension. */
    readonly dim: number,
    /** Channels the network takes (1: greyscale, 3: RGB). */
    readonly channels: number,
    /** The side the backbone sees; other sizes are resized (whole image, bilinear) to it. */
    readonly imageSize: number,
    /** The side encoded images and files are decoded to (cropped to fill the square), as the training data was. */
    readonly decodeSize: number,
    readonly maxBatch: number,
    /** The training run's config. */
    readonly config: TrainConfig,
  ) {}

  /** Loads the backbone of a clamp-native checkpoint (a file, or the run folder holding it), off the JS thread. */
  static async load(checkpointOrRunDir: string, options: EncoderLoadOptions = {}): Promise<Encoder> {
    const parsed = encoderLoadOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw validationError(parsed.error, 'options');
    const { device, precision, threads, maxBatch } = parsed.data;
    const addon = native(); // first: a missing build says so before the checkpoint is read
    const trained = await readTrainedCheckpoint(checkpointOrRunDir);
    const { file, checkpoint, config } = trained;
    const preprocessing = evaluationPreprocessing(config);
    const settings = encoderSettings(trained, preprocessing);
    if (threads !== undefined) setNumThreads(threads);
    else if (numThreadsSource() === 'available cores') setNumThreads(defaultEncoderThreads(config.model.backbone));
    let handle: NativeEncoder;
    try {
      handle = await addon.createEncoder({ ...settings, device, precision, maxBatch }, checkpoint.state);
    } catch (error) {
      const message = (error as Error).message;
      throw new CheckpointError(
        message.includes('does not fit')
          ? `${file}: its tensors do not match the ${config.model.backbone} backbone its config describes (${message})`
          : `${file}: ${message}`,
      );
    }
    const channels = settings.inChannels;
    return new Encoder(handle, handle.featureDim, channels, settings.imageSize, preprocessing.decodeSize, maxBatch, config);
  }

  /**
   * Backbone features of one or more images, computed off the JS thread. `data` is a view of a native
   * buffer shared with the other calls coalesced into the same batch (no copy); copy it with
   * `data.slice()` to keep a few rows of a large batch without holding the whole buffer.
   */
  async embed(input: EmbedInput): Promise<Embeddings> {
    this.checkNotDisposed();
    const batch = await this.pixelBatch(input);
    this.checkNotDisposed();
    return new Promise<Embeddings>((resolve, reject) => {
      this.queue.push({ batch, resolve, reject });
      this.runNext();
    });
  }

  /** An exact cosine-similarity index over embeddings (this encoder's, dim `dim`) with optional labels. */
  index<L = number>(embeddings: Embeddings, labels?: readonly L[] | ArrayLike<L>): EmbeddingIndex<L> {
    if (embeddings.shape[1] !== this.dim)
      throw new RangeError(`the embeddings have dim ${embeddings.shape[1]}; this encoder's are ${this.dim}`);
    return new EmbeddingIndex(embeddings, labels);
  }

  /** Frees the network's memory now (or when the batch already running ends); queued calls reject. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.handle.dispose();
    for (const pending of this.queue.splice(0)) pending.reject(new EncoderError('the Encoder was disposed before this embed() ran'));
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private checkNotDisposed(): void {
    if (this.disposed) throw new EncoderError('this Encoder was disposed; load another with Encoder.load()');
  }

  /** Takes the oldest waiting call and every later one of the same layout and size that fits in maxBatch. */
  private runNext(): void {
    if (this.running || this.disposed || this.queue.length === 0) return;
    const first = this.queue.shift()!;
    const group = [first];
    let rows = first.batch.shape[0];
    const kind = (b: PixelBatch) => `${b.data.constructor.name}:${b.shape.slice(1).join('x')}`;
    const firstKind = kind(first.batch);
    for (let i = 0; i < this.queue.length && rows < this.maxBatch;) {
      const next = this.queue[i]!;
      if (kind(next.batch) === firstKind && rows + next.batch.shape[0] <= this.maxBatch) {
        group.push(next);
        rows += next.batch.shape[0];
        this.queue.splice(i, 1);
      } else {
        i++;
      }
    }
    this.running = true;
    void this.runGroup(group, rows).finally(() => {
      this.running = false;
      this.runNext();
    });
  }

  private async runGroup(group: PendingEmbed[], rows: number): Promise<void> {
    const [, a, b, c] = group[0]!.batch.shape;
    let data = group[0]!.batch.data;
    if (group.length > 1) {
      const joined = data instanceof Uint8Array ? new Uint8Array(rows * a * b * c) : new Float32Array(rows * a * b * c);
      let offset = 0;
      for (const pending of group) {
        joined.set(pending.batch.data as never, offset);
        offset += pending.batch.data.length;
      }
      data = joined;
    }
    try {
      const features = await this.handle.embed(data, [rows, a, b, c]);
      let row = 0;
      for (const pending of group) {
        const n = pending.batch.shape[0];
        pending.resolve({ data: features.subarray(row * this.dim, (row + n) * this.dim), shape: [n, this.dim] });
        row += n;
      }
    } catch (error) {
      for (const pending of group) pending.reject(error);
    }
  }

  private async pixelBatch(input: EmbedInput): Promise<PixelBatch> {
    if (typeof input === 'string' || Buffer.isBuffer(input)) return this.decoded([input]);
    if (Array.isArray(input)) {
      if (input.length === 0) throw new TypeError('embed() got an empty array: pass at least one file path or encoded image');
      if (input.every((x) => typeof x === 'string') || input.every((x) => Buffer.isBuffer(x)))
        return this.decoded(input as readonly (string | Buffer)[]);
      throw new TypeError('embed() takes an array of file paths or an array of Buffers of encoded images, not a mix or other values');
    }
    if (typeof input === 'object' && input !== null && 'data' in input && 'shape' in input) return this.pixels(input as PixelInput);
    throw new TypeError(
      'embed() takes { data: Uint8Array, shape: [n, H, W, C] } raw pixels, { data: Float32Array, shape: [n, C, H, W] } values in [0, 1], ' +
        'a Buffer (or Buffer[]) of encoded images, or a file path (or paths)',
    );
  }

  private pixels(input: PixelInput): PixelBatch {
    const { data } = input;
    const shape = Array.from(input.shape);
    const bytes = data instanceof Uint8Array;
    if (!bytes && !(data instanceof Float32Array)) {
      throw new TypeError(
        `raw pixels must be a Uint8Array [n, H, W, C] (0..255) or a Float32Array [n, C, H, W] (0..1), got ${Object.prototype.toString.call(data)}`,
      );
    }
    const layout = bytes ? '[n, H, W, C] (or [H, W, C])' : '[n, C, H, W] (or [C, H, W])';
    if (shape.length === 3) shape.unshift(1);
    if (shape.length !== 4 || !shape.every(isWholePositive))
      throw new RangeError(`shape must be ${layout} with whole numbers >= 1, got [${input.shape.join(', ')}]`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new RangeError(`shape [${input.shape.join(', ')}] needs ${count} values; data holds ${data.length}`);
    const channels = bytes ? shape[3]! : shape[1]!;
    if (channels !== this.channels) {
      throw new RangeError(
        `the images have ${channels} channel(s) (${bytes ? 'the last axis' : 'the second axis'} of ${layout}); this encoder takes ${this.channels} ` +
          `(${this.channels === 1 ? 'greyscale' : 'RGB'}). Convert them, or pass encoded images or file paths, which are converted for you.`,
      );
    }
    if (!bytes) refuseNonFinite(data as Float32Array, shape as [number, number, number, number]);
    return { data, shape: shape as [number, number, number, number] };
  }

  private async decoded(sources: readonly (string | Buffer)[]): Promise<PixelBatch> {
    const side = this.decodeSize,
      channels = this.channels as 1 | 3;
    const images = await Promise.all(
      sources.map((source, k) => decodeImage(source, side, channels, typeof source === 'string' ? source : `encoded image ${k}`)),
    );
    const data = new Uint8Array(images.length * side * side * channels);
    images.forEach((image, k) => data.set(image, k * image.length));
    return { data, shape: [images.length, side, side, channels] };
  }
}
