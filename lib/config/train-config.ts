// Everything a training run is, in one schema: data, augmentation, model, loss, optimiser, schedule,
// run and evaluation. Read from JSON or YAML, on top of a preset, under command-line overrides.
import fs from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { augmentationSchema } from '../augment/pipeline.js';
import { dataSchema } from '../data/datasets.js';
import { knnOptionsSchema } from '../eval/knn.js';
import { linearProbeOptionsSchema } from '../eval/linear-probe.js';
import { deviceSchema, memoryFormatSchema, precisionSchema } from '../model/options.js';
import { ConfigError, validationError } from './errors.js';
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
        /**
         * Passes over the training split; fractions allowed: 2.5 trains two epochs and half of a third, the
         * learning-rate schedule laid out over exactly those steps (see scheduledSteps).
         */
        epochs: z.number().finite().positive(),
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
        /** `auto` is channels_last on the CPU (LibTorch 2.x) and wherever bf16 autocast runs on a GPU. */
        memoryFormat: memoryFormatSchema.default('auto'),
        /** Write a checkpoint every this many epochs (and always at the end and when stopped). */
        checkpointEvery: positiveInteger.default(10),
        /** Append a step line to metrics.jsonl every this many steps. */
        logEvery: positiveInteger.default(1),
        /**
         * Rewrite report.html (its cheap parts: charts and tables from metrics.jsonl) every this many epochs
         * and when the run ends, so that a long run can be watched in a browser; 0: never during the run.
         */
        reportEvery: z.number().int().min(0).default(1),
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
        /**
         * The monitor's images (each absent: the whole split): a class-balanced, fixed subset of each
         * split, so that a monitor every epoch stays cheap. The final evaluation always uses every image.
         */
        monitorImages: z.object({ train: positiveInteger.optional(), test: positiveInteger.optional() }).strict().prefault({}),
        /** The same evaluation before the first step: the random-initialisation baseline of the same architecture. */
        atStart: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, context) => {
    if (config.schedule.warmupEpochs >= config.schedule.epochs) {
      context.addIssue({
        code: 'custom',
        path: ['schedule', 'warmupEpochs'],
        message: `warmupEpochs must be less than epochs (${config.schedule.epochs})`,
      });
    }
  });

export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type TrainConfig = z.output<typeof trainConfigSchema>;

/**
 * The steps a run takes and its schedule is laid out over: schedule.epochs x stepsPerEpoch, to the nearest
 * whole step and at least one. A fractional run ends part-way through its last epoch.
 */
export function scheduledSteps(schedule: Pick<TrainConfig['schedule'], 'epochs'>, stepsPerEpoch: number): number {
  return Math.max(1, Math.round(schedule.epochs * stepsPerEpoch));
}

/** The epochs a run of `totalSteps` steps enters, the last one perhaps cut short: epoch hooks count these. */
export function epochsEntered(totalSteps: number, stepsPerEpoch: number): number {
  return Math.ceil(totalSteps / stepsPerEpoch);
}

/** A partial config: what a file or flags may say on top of a preset. */
export type ConfigOverrides = { preset?: PresetName } & { [K in keyof TrainConfigInput]?: unknown };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Keys no config field has that JavaScript objects treat specially: merging `__proto__` would set the
 * merged object's prototype and vanish before validation could refuse it as it refuses other unknown keys.
 */
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * What in `value` no config can hold, as a phrase naming its dotted path: a reserved key, or a value
 * that contains itself (a YAML alias inside its own anchor), which no setting can be. Null when none.
 */
function unusableSetting(value: unknown, at = '', ancestors: object[] = []): string | null {
  if (typeof value !== 'object' || value === null) return null;
  if (ancestors.includes(value)) return `${at} contains itself (a YAML alias inside its own anchor)`;
  for (const [key, inner] of Object.entries(value)) {
    const here = Array.isArray(value) ? `${at}[${key}]` : at ? `${at}.${key}` : key;
    if (!Array.isArray(value) && RESERVED_KEYS.has(key)) return `${here} is not a config field`;
    const found = unusableSetting(inner, here, [...ancestors, value]);
    if (found !== null) return found;
  }
  return null;
}

/** Objects merge key by key; arrays and everything else are replaced. Reserved keys (`__proto__`, ...) are refused. */
export function mergeConfig<T>(base: T, override: unknown): T {
  const unusable = unusableSetting(override);
  if (unusable !== null) throw new ConfigError(unusable);
  return mergeChecked(base, override);
}

function mergeChecked<T>(base: T, override: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(override)) return (override === undefined ? base : override) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = mergeChecked(out[key], value);
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
    throw new ConfigError(`cannot read the config file ${file}: ${whyUnreadable(error)}`);
  });
  const language = /\.ya?ml$/i.test(file) ? 'YAML' : 'JSON';
  let value: unknown;
  try {
    value = language === 'YAML' ? parseYamlText(text) : JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`the config file ${file} is not valid ${language}: ${(error as Error).message}`);
  }
  if (!isPlainObject(value))
    throw new ConfigError(
      `the config file ${file} must hold an object of settings, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`}`,
    );
  const unusable = unusableSetting(value);
  if (unusable !== null) throw new ConfigError(`the config file ${file} is refused: ${unusable}`);
  return value as ConfigOverrides;
}

/**
 * Plain YAML only. Explicit tags such as !!set or !!omap would give a Set or a Map, which validation
 * takes for an empty object, so they are left unresolved, and any warning (an unresolved tag
 * among them) is an error: a setting the reader did not understand must not pass as another one.
 */
function parseYamlText(text: string): unknown {
  const document = parseDocument(text, { resolveKnownTags: false, logLevel: 'error' });
  const problem = document.errors[0] ?? document.warnings[0];
  if (problem) throw problem;
  return document.toJS();
}

function whyUnreadable(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return 'it does not exist';
    case 'ENOTDIR':
      return 'it does not exist (a folder on its path is a file)';
    case 'EISDIR':
      return 'it is a folder; pass a .json, .yaml or .yml file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return error.code ?? error.message;
  }
}

/**
 * The config of a run: the preset (named by `preset`, else by the file's own `preset` key, else
 * fashion-mnist), then the file, then `overrides`, validated as a whole.
 */
export function resolveTrainConfig(
  parts: { preset?: string; file?: ConfigOverrides; overrides?: unknown },
  source = 'config',
): TrainConfig {
  const { preset: filePreset, ...file } = parts.file ?? {};
  const name = parts.preset ?? filePreset ?? 'fashion-mnist';
  // hasOwn, not `in`: "constructor" or "__proto__" are in every object, and are no presets.
  if (typeof name !== 'string' || !Object.hasOwn(PRESETS, name))
    throw new RangeError(`${source}.preset: unknown preset ${JSON.stringify(name)}; the presets are ${Object.keys(PRESETS).join(', ')}`);
  return parseTrainConfig(mergeConfig(mergeConfig(PRESETS[name as PresetName], file), parts.overrides ?? {}), source);
}
