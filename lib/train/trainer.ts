// The native CLAMP training step from TypeScript: a backbone and projector trained with the fused
// packing loss and LARS, SGD or AdamW under a warmup-cosine schedule. Each step takes a view-major
// batch [views * batch, C, H, W] from a Float32Array without copying and runs on the compute thread.
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { nativeOptimiserOptions, optimiserSchema } from '../config/optimiser.js';
import { packingLossOptionsSchema } from '../config/packing-loss-options.js';
import type { PackingStats } from '../loss/packing-loss.js';
import {
  backboneOptionsShape,
  deviceSchema,
  memoryFormatSchema,
  precisionSchema,
  resolvedStem,
  stagesAgree,
  stagesMismatchMessage,
} from '../model/options.js';
import type { ComputeSettings, NativeTrainer } from '../runtime/addon-types.js';
import { native } from '../runtime/native.js';
import type { StateEntry, TrainingStepResult } from '../runtime/addon-types.js';
import { NativeObject } from '../runtime/native-object.js';

const positiveInteger = z.number().int().positive();

export const scheduleSchema = z
  .object({
    /** Learning rate at the end of warmup (for the trainer, already scaled for the batch: lr x batch / 256). */
    peakLr: z.number().finite().min(0),
    warmupSteps: z.number().int().min(0).default(0),
    totalSteps: positiveInteger,
    startLr: z.number().finite().min(0).default(0),
    finalLr: z.number().finite().min(0).default(0),
  })
  .strict()
  .refine((s) => s.warmupSteps < s.totalSteps, { message: 'warmupSteps must be less than totalSteps', path: ['warmupSteps'] });

/** Checks a [n, C, H, W] float32 batch against its shape and the backbone's input channels. */
export function checkImageBatch(images: Float32Array, shape: readonly [number, number, number, number], inChannels: number): void {
  if (!(images instanceof Float32Array)) throw new TypeError('images must be a Float32Array');
  const [n, c, h, w] = shape;
  if (!shape.every((d) => Number.isInteger(d) && d > 0))
    throw new RangeError(`shape must be four whole numbers > 0, got [${shape.join(', ')}]`);
  if (n * c * h * w !== images.length)
    throw new RangeError(`images.length is ${images.length}, but the shape [${shape.join(', ')}] holds ${n * c * h * w}`);
  if (c !== inChannels) throw new RangeError(`images have ${c} channels; the backbone takes ${inChannels}`);
}

export const trainerOptionsSchema = z
  .object({
    ...backboneOptionsShape,
    projectorHidden: z.array(positiveInteger).default([2048]),
    projectorOut: positiveInteger.default(256),
    views: z.number().int().min(2).default(2),
    loss: packingLossOptionsSchema.prefault({}),
    optimiser: optimiserSchema.prefault({ name: 'lars' }),
    schedule: scheduleSchema,
    /** `cpu`, `cuda` or `cuda:<index>`. */
    device: deviceSchema.default('cpu'),
    /** `auto`: bf16 autocast on Ampere and newer GPUs, float32 elsewhere. The loss computes in float32 always. */
    precision: precisionSchema.default('auto'),
    /** `auto`: channels_last on the CPU (LibTorch 2.x) and wherever bf16 autocast runs on a GPU. */
    memoryFormat: memoryFormatSchema.default('auto'),
    seed: z.number().int().min(0).default(0),
    /** Once distributed: BatchNorm statistics over the whole data-parallel batch (SyncBatchNorm), not each rank's share. */
    syncBatchNorm: z.boolean().default(false),
  })
  .strict()
  .refine(stagesAgree, stagesMismatchMessage);

export type TrainerOptions = z.input<typeof trainerOptionsSchema>;

/** Where and how a rank joins a data-parallel group (torchrun's MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). */
export const distributedOptionsSchema = z
  .object({
    rank: z.number().int().min(0),
    worldSize: z.number().int().min(1),
    masterAddr: z.string().min(1).default('127.0.0.1'),
    masterPort: z.number().int().min(1).max(65535).default(29500),
    /** The rendezvous and every collective give up after this, with an error naming the rank. */
    timeoutMs: z.number().int().positive().default(60_000),
  })
  .strict()
  .refine((o) => o.rank < o.worldSize, { message: 'rank must be less than worldSize', path: ['rank'] });

export type DistributedOptions = z.input<typeof distributedOptionsSchema>;

export type { StateEntry, TrainingStepResult };

/**
 * The run itself diverged: the embeddings, the loss, BatchNorm's statistics or the gradients stopped
 * being finite at `step`. The step was undone (weights, optimiser state, statistics and step count are
 * as they were), so the trainer can be saved or stepped again at a lower learning rate.
 */
export class TrainingDivergedError extends Error {
  readonly code = 'CLAMP_TRAINING_DIVERGED';
  constructor(
    message: string,
    readonly step: number,
    readonly learningRate: number,
    readonly detail: string,
  ) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

/** The native layer's divergence error ("training diverged at step N (learning rate X): what"), typed. */
function typedDivergence(error: unknown): unknown {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== 'CLAMP_TRAINING_DIVERGED') return error;
  const match = /^training diverged at step (\d+) \(learning rate ([^)]+)\): (.*)$/s.exec(error.message);
  return new TrainingDivergedError(
    error.message,
    Number(match?.[1] ?? Number.NaN),
    Number(match?.[2] ?? Number.NaN),
    match?.[3] ?? error.message,
  );
}

export class Trainer extends NativeObject<NativeTrainer> {
  private constructor(
    handle: NativeTrainer,
    readonly options: z.output<typeof trainerOptionsSchema>,
  ) {
    super(handle, 'Trainer');
  }

  /** Builds the networks (weights initialised from `seed`) off the JS thread. */
  static async create(options: TrainerOptions): Promise<Trainer> {
    const parsed = trainerOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw validationError(parsed.error, 'options');
    const resolved = parsed.data;
    return new Trainer(
      await native().createTrainer({ ...resolved, stem: resolvedStem(resolved), optimiser: nativeOptimiserOptions(resolved.optimiser) }),
      resolved,
    );
  }

  /**
   * One optimiser step on a view-major batch: `images` holds [views * batch, C, H, W] float32 values,
   * read in place (leave it unchanged until the promise settles; a SharedArrayBuffer works too). A
   * refused batch (NaN or infinite pixels: RangeError) and a diverged step (TrainingDivergedError)
   * leave no trace: weights, optimiser state, BatchNorm statistics and stepsTaken are unchanged.
   */
  async step(images: Float32Array, shape: readonly [number, number, number, number]): Promise<TrainingStepResult> {
    this.checkImages(images, shape);
    const n = shape[0];
    if (n % this.options.views !== 0 || n / this.options.views < 2) {
      throw new RangeError(`${n} images are not views * batch with views = ${this.options.views} and batch >= 2`);
    }
    return this.handle.step(images, [...shape]).catch((error: unknown) => {
      throw typedDivergence(error);
    });
  }

  /** Backbone features [n, featureDim] of [n, C, H, W] images, in evaluation mode, without gradients. */
  async features(images: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array> {
    this.checkImages(images, shape);
    return this.handle.features(images, [...shape]);
  }

  private checkImages(images: Float32Array, shape: readonly [number, number, number, number]): void {
    checkImageBatch(images, shape, this.options.inChannels);
  }

  /**
   * A snapshot of everything a checkpoint holds: the backbone's parameters and buffers under
   * torchvision's names, `projector.*`, `optimizer.<slot>.<parameter>` and `trainer.steps`.
   */
  async state(): Promise<StateEntry[]> {
    return this.handle.state();
  }

  /** Restores a state() snapshot (same architecture and optimiser); the arrays are read in place. */
  async loadState(entries: readonly StateEntry[]): Promise<void> {
    return this.handle.loadState([...entries]);
  }

  /**
   * Joins a data-parallel group over c10d/Gloo (waits for every rank): rank 0's weights are copied to
   * every rank, and from then on each step() takes this rank's share of the global batch (views x
   * batch / worldSize images per view, view-major), computes the loss on the gathered global batch and
   * sums the gradients over the ranks, so every rank takes the step one process would take on the
   * global batch (BatchNorm statistics stay per rank). A peer that dies or hangs makes the next step
   * reject within timeoutMs.
   */
  async distribute(options: DistributedOptions): Promise<void> {
    const parsed = distributedOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw validationError(parsed.error, 'distributed');
    return this.handle.distribute(parsed.data);
  }

  /** Whether `flag` is true on any rank of the group (this rank's flag alone without one): how ranks agree to stop after the same step. */
  async anyRank(flag: boolean): Promise<boolean> {
    return this.handle.anyRank(flag);
  }

  get stepsTaken(): number {
    return this.handle.stepsTaken;
  }

  /** Width of the backbone's features (what evaluation and serving will use). */
  get featureDim(): number {
    return this.handle.featureDim;
  }

  /** What `precision` and `memoryFormat` resolved to on this trainer's device. */
  get computeSettings(): ComputeSettings {
    return this.handle.computeSettings;
  }
}
