// Everything a training run is, in one schema: data, augmentation, model, loss, optimiser, schedule,
// run and evaluation. Read from JSON or YAML, on top of a preset, under command-line overrides.
import fs from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { augmentationSchema } from '../augment/pipeline.js';
import { dataSchema } from '../data/datasets.js';
import { knnOptionsSchema } from '../eval/knn.js';
import { linearProbeOptionsSchema } from '../eval/linear-probe.js';
import { deviceSchema, memoryFormatSchema, precisionSchema } from '../train/trainer.js';
import { validationError } from './errors.js';
import { optimiserSchema } from './optimiser.js';
import { packingLossOptionsSchema } from './packing-loss-options.js';
import { PRESETS, type PresetName } from './presets.js';

const positiveInteger = z.number().int().positive();

export const trainConfigSchema = z
  .object({
    data: dataSchema.prefault({}),
    /** One pipeline, or several that cycle over the views (view v uses pipelines[v % length]). */
    augment: z.preprocess((value) => (Array.isArray(value) ? value : [value]), z.array(augmentationSchema).min(1)),
    model: z
      .object({
        backbone: z.enum(['small', 'resnet18', 'resnet34', 'resnet50']).default('small'),
        /** Defaults to the backbone's own (`small` for small, `imagenet` for the ResNets). */
        stem: z.enum(['imagenet', 'cifar', 'small']).optional(),
        /** Channels and residual blocks per stage, overriding the backbone's own. */
        widths: z.array(positiveInteger).min(1).optional(),
        blocks: z.array(positiveInteger).min(1).optional(),
        projectorHidden: z.array(positiveInteger).default([2048]),
        projectorOut: positiveInteger.default(256),
      })
      .strict()
      .prefault({}),
    loss: packingLossOptionsSchema.prefault({}),
    optimiser: optimiserSchema.prefault({ name: 'lars' }),
    schedule: z
      .object({
        epochs: positiveInteger,
        /** Linear warmup length in epochs (fractions allowed). */
        warmupEpochs: z.number().finite().min(0).default(10),
        /** Learning rate per 256 images: the peak is baseLr x batchSize / 256 (the linear scaling rule). */
        baseLr: z.number().finite().positive(),
        startLr: z.number().finite().min(0).default(0),
        finalLr: z.number().finite().min(0).default(0),
      })
      .strict(),
    run: z
      .object({
        batchSize: z.number().int().min(2),
        views: z.number().int().min(2),
        seed: z.number().int().min(0).default(0),
        device: deviceSchema.default('cpu'),
        /** The network's arithmetic: `auto` is bf16 autocast on Ampere and newer GPUs, float32 elsewhere (the loss is float32 always). */
        precision: precisionSchema.default('auto'),
        /** `auto` is channels_last wherever bf16 autocast runs on a GPU. */
        memoryFormat: memoryFormatSchema.default('auto'),
        /** Write a checkpoint every this many epochs (and always at the end and when stopped). */
        checkpointEvery: positiveInteger.default(10),
        /** Append a step line to metrics.jsonl every this many steps. */
        logEvery: positiveInteger.default(1),
        /** Augmentation worker threads (default: the available cores, at most 4). */
        workers: positiveInteger.optional(),
        /** LibTorch intra-op threads (default: CLAMP_NUM_THREADS or the available cores). */
        threads: positiveInteger.optional(),
        /** Data-parallel runs: BatchNorm over the whole global batch (SyncBatchNorm, the paper's) instead of each process's share. */
        syncBatchNorm: z.boolean().default(false),
      })
      .strict(),
    eval: z
      .object({
        knn: knnOptionsSchema.prefault({}),
        /** The linear probe's options, or false to skip it. */
        linearProbe: z.union([z.literal(false), linearProbeOptionsSchema]).prefault({}),
        /** kNN and the linear probe on the test split at the end of training. */
        atEnd: z.boolean().default(true),
        /** A kNN monitor every this many epochs (0: never during training). */
        every: z.number().int().min(0).default(0),
        /** The same evaluation before the first step: the random-initialisation baseline of the same architecture. */
        atStart: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, context) => {
    if (config.schedule.warmupEpochs >= config.schedule.epochs) {
      context.addIssue({ code: 'custom', path: ['schedule', 'warmupEpochs'], message: `warmupEpochs must be less than epochs (${config.schedule.epochs})` });
    }
  });

export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type TrainConfig = z.output<typeof trainConfigSchema>;

/** A partial config: what a file or flags may say on top of a preset. */
export type ConfigOverrides = { preset?: PresetName } & { [K in keyof TrainConfigInput]?: unknown };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects merge key by key; arrays and everything else are replaced. */
export function mergeConfig<T>(base: T, override: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(override)) return (override === undefined ? base : override) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = mergeConfig(out[key], value);
  return out as T;
}

/** Validates a config, with zod's issues named field by field. */
export function parseTrainConfig(input: unknown, source = 'config'): TrainConfig {
  const parsed = trainConfigSchema.safeParse(input, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, source);
  return parsed.data;
}

/** Reads a JSON or YAML config file (by extension; .yml/.yaml are YAML, anything else JSON). */
export async function readConfigFile(file: string): Promise<ConfigOverrides> {
  const text = await fs.readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`cannot read the config file ${file}: ${error.code === 'ENOENT' ? 'it does not exist' : error.message}`);
  });
  let value: unknown;
  try {
    value = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(`the config file ${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(error as Error).message}`);
  }
  if (!isPlainObject(value)) throw new TypeError(`the config file ${file} must hold an object`);
  return value as ConfigOverrides;
}

/**
 * The config of a run: the preset (named by `preset`, else by the file's own `preset` key, else
 * fashion-mnist), then the file, then `overrides`, validated as a whole.
 */
export function resolveTrainConfig(parts: { preset?: string; file?: ConfigOverrides; overrides?: unknown }, source = 'config'): TrainConfig {
  const { preset: filePreset, ...file } = parts.file ?? {};
  const name = parts.preset ?? filePreset ?? 'fashion-mnist';
  if (!(name in PRESETS)) throw new RangeError(`${source}.preset: unknown preset ${JSON.stringify(name)}; the presets are ${Object.keys(PRESETS).join(', ')}`);
  return parseTrainConfig(mergeConfig(mergeConfig(PRESETS[name as PresetName], file), parts.overrides ?? {}), source);
}
