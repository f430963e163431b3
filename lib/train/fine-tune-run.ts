// Semi-supervised fine-tuning (SimCLR's protocol): a pretrained backbone and a new linear head trained
// together with cross-entropy on a class-balanced 1% or 10% of the training labels, with random crops
// and flips, the backbone at a fraction of the head's learning rate; the whole test set scored once.
// The same loop, with the backbone frozen, is the linear probe trained through augmented images.
import { z } from 'zod';
import { MultiViewLoader } from '../augment/loader.js';
import type { Augmentation } from '../augment/pipeline.js';
import { validationError } from '../config/errors.js';
import type { TrainConfig } from '../config/train-config.js';
import { balancedLabelSubset, datasetSubset } from '../data/label-subset.js';
import type { DataOptions } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { argmaxRows, confusionMatrix, perClassAccuracy, topKAccuracy } from '../eval/diagnostics.js';
import { datasetFeatures, evaluationRows } from '../eval/features.js';
import { FineTuner, type FineTunerOptions } from './fine-tuner.js';
import { loadRun } from './saved-run.js';
import { deviceSchema } from '../model/options.js';
import type { StateEntry } from './trainer.js';

/** The crop area range of classifier training views (fine-tuning and the augmented probe). */
export const DEFAULT_CROP_SCALE: readonly [number, number] = [0.5, 1];

const range = z
  .tuple([z.number().gt(0).max(1), z.number().gt(0).max(1)])
  .refine(([low, high]) => low <= high, 'range must be [low, high] with low <= high');

export const fineTuneOptionsSchema = z
  .object({
    /** The share of every class's training labels used (0.01 and 0.1 are the literature's 1% and 10%). */
    labels: z.number().gt(0).max(1).default(0.1),
    /** Epochs over the labelled subset; by default SimCLR's: 60 below 10% of the labels, 30 from 10% up. */
    epochs: z.number().int().positive().optional(),
    batchSize: z.number().int().min(2).default(128),
    /** The head's peak learning rate (cosine-decayed to 0 over the run). */
    lr: z.number().finite().positive().default(0.3),
    /** The backbone's learning rate as a fraction of the head's (0 freezes it). */
    backboneLrScale: z.number().finite().min(0).default(0.1),
    weightDecay: z.number().finite().min(0).default(0),
    warmupEpochs: z.number().finite().min(0).default(0),
    /** Random-resized-crop area range and flip probability of the training views. */
    cropScale: range.default([DEFAULT_CROP_SCALE[0], DEFAULT_CROP_SCALE[1]]),
    flip: z.number().min(0).max(1).default(0.5),
    /** Skip the pretrained weights: the supervised-only baseline on the same labels. */
    fromScratch: z.boolean().default(false),
    /** The labelled subset, the batch order and the augmentations. */
    seed: z.number().int().min(0).default(0),
    /** Default: the run's. */
    device: deviceSchema.optional(),
    workers: z.number().int().positive().optional(),
  })
  .strict();

export type FineTuneOptions = z.input<typeof fineTuneOptionsSchema>;

export interface ClassifierEpoch {
  /** 1-based, of `epochs`. */
  epoch: number;
  epochs: number;
  /** Means over the epoch's batches, before each update. */
  loss: number;
  accuracy: number;
}

export interface ClassifierScore {
  top1: number;
  top5: number;
  perClass: number[];
  /** [true class][predicted class] counts. */
  confusion: number[][];
}

export interface FineTuneResult extends ClassifierScore {
  /** The labelled share asked for, and the images it came to. */
  labels: number;
  labelledImages: number;
  epochs: number;
  steps: number;
  fromScratch: boolean;
  history: ClassifierEpoch[];
  seconds: number;
}

/** The training view of classifier training: the evaluation pipeline's size and normalisation, a random crop and a flip, nothing else. */
export function cropAndFlip(pipeline: Augmentation, cropScale: readonly [number, number], flip: number): Augmentation {
  return {
    ...pipeline,
    crop: { ...pipeline.crop, scale: [cropScale[0], cropScale[1]] },
    flip,
    colorJitter: { ...pipeline.colorJitter, p: 0 },
    grayscale: 0,
    blur: { ...pipeline.blur, p: 0 },
    solarize: { ...pipeline.solarize, p: 0 },
  };
}

export interface ClassifierTraining {
  epochs: number;
  batchSize: number;
  seed: number;
  workers?: number | undefined;
  signal?: AbortSignal | undefined;
  onEpoch?: ((epoch: ClassifierEpoch) => void) | undefined;
}

/** Batches of one augmented view per labelled image, full batches only, a new order every epoch. */
export function classifierLoader(
  labelled: ImageDataset,
  pipeline: Augmentation,
  options: Pick<ClassifierTraining, 'batchSize' | 'seed' | 'workers'>,
): MultiViewLoader {
  return new MultiViewLoader({
    dataset: labelled,
    batchSize: Math.min(options.batchSize, labelled.count),
    views: 1,
    pipelines: [pipeline],
    seed: options.seed,
    workers: options.workers,
  });
}

/** Trains the fine-tuner's head (and backbone, unless frozen) for the epochs; the loader's batches feed it. */
export async function trainClassifier(
  fineTuner: FineTuner,
  loader: MultiViewLoader,
  options: ClassifierTraining,
): Promise<ClassifierEpoch[]> {
  const history: ClassifierEpoch[] = [];
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    let loss = 0,
      accuracy = 0,
      batches = 0;
    for await (const batch of loader.epoch(epoch)) {
      options.signal?.throwIfAborted();
      const result = await fineTuner.step(batch.data, batch.shape, batch.labels);
      loss += result.loss;
      accuracy += result.accuracy;
      batches++;
    }
    const summary = { epoch: epoch + 1, epochs: options.epochs, loss: loss / batches, accuracy: accuracy / batches };
    history.push(summary);
    options.onEpoch?.(summary);
  }
  return history;
}

/** Scores every test image once, un-augmented. */
export async function scoreClassifier(
  fineTuner: FineTuner,
  test: ImageDataset,
  pipeline: Augmentation,
  classes: number,
  options: { workers?: number | undefined; signal?: AbortSignal | undefined } = {},
): Promise<ClassifierScore> {
  const logits = await evaluationRows(test, pipeline, classes, (images, shape) => fineTuner.logits(images, shape), options);
  const predictions = argmaxRows(logits, classes);
  return {
    top1: topKAccuracy(logits, test.labels, classes, 1),
    top5: topKAccuracy(logits, test.labels, classes, 5),
    perClass: perClassAccuracy(predictions, test.labels, classes),
    confusion: confusionMatrix(predictions, test.labels, classes),
  };
}

/** The fine-tuner a run's config describes, with the given head schedule and optimiser. */
export async function fineTunerFor(
  config: TrainConfig,
  channels: number,
  classes: number,
  options: Omit<FineTunerOptions, 'backbone' | 'stem' | 'widths' | 'blocks' | 'inChannels' | 'classes'>,
): Promise<FineTuner> {
  return FineTuner.create({
    backbone: config.model.backbone,
    stem: config.model.stem,
    widths: config.model.widths,
    blocks: config.model.blocks,
    inChannels: channels,
    classes,
    seed: config.run.seed,
    device: config.run.device,
    ...options,
  });
}

/** Sets the head's standardisation from the labelled images' features (evaluation views). */
export async function standardiseHead(
  fineTuner: FineTuner,
  labelled: ImageDataset,
  pipeline: Augmentation,
  workers: number | undefined,
): Promise<void> {
  const { features } = await datasetFeatures(fineTuner, labelled, pipeline, { workers });
  await fineTuner.standardise(features);
}

/**
 * Fine-tunes a run's backbone (or, with fromScratch, a fresh one of the same architecture) on a
 * class-balanced share of its training labels and scores the test set.
 */
export async function fineTune(
  pretrained: StateEntry[] | null,
  config: TrainConfig,
  train: ImageDataset,
  test: ImageDataset,
  options: FineTuneOptions = {},
  hooks: { signal?: AbortSignal; onEpoch?: (epoch: ClassifierEpoch) => void } = {},
): Promise<FineTuneResult> {
  const parsed = fineTuneOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'finetune');
  const o = parsed.data;
  const started = performance.now();
  const classes = Math.max(train.classes, test.classes);
  const labelled = datasetSubset(train, balancedLabelSubset(train.labels, classes, o.labels, o.seed));
  const epochs = o.epochs ?? (o.labels < 0.1 ? 60 : 30);
  const evaluation = config.augment[0]!;
  const workers = o.workers ?? config.run.workers;
  const loader = classifierLoader(labelled, cropAndFlip(evaluation, o.cropScale, o.flip), {
    batchSize: o.batchSize,
    seed: o.seed,
    workers,
  });
  let fineTuner: FineTuner | undefined;
  try {
    const totalSteps = epochs * loader.batchesPerEpoch;
    fineTuner = await fineTunerFor(config, train.channels, classes, {
      optimiser: { name: 'sgd', nesterov: true, momentum: 0.9, weightDecay: o.weightDecay },
      schedule: { peakLr: o.lr, totalSteps, warmupSteps: Math.min(totalSteps - 1, Math.round(o.warmupEpochs * loader.batchesPerEpoch)) },
      backboneLrScale: o.backboneLrScale,
      ...(o.device ? { device: o.device } : {}),
    });
    if (!o.fromScratch) {
      if (!pretrained) throw new RangeError('fine-tuning needs the pretrained state (or fromScratch: true)');
      await fineTuner.loadBackbone(pretrained);
      // Only pretrained features are worth standardising: a fresh backbone's evaluation-mode features
      // (BatchNorm's initial running statistics) say nothing about the scale training will give them.
      await standardiseHead(fineTuner, labelled, evaluation, workers);
    }
    const history = await trainClassifier(fineTuner, loader, {
      epochs,
      batchSize: o.batchSize,
      seed: o.seed,
      workers,
      signal: hooks.signal,
      onEpoch: hooks.onEpoch,
    });
    const score = await scoreClassifier(fineTuner, test, evaluation, classes, { workers, signal: hooks.signal });
    return {
      ...score,
      labels: o.labels,
      labelledImages: labelled.count,
      epochs,
      steps: fineTuner.stepsTaken,
      fromScratch: o.fromScratch,
      history,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    fineTuner?.dispose();
    await loader.close();
  }
}

/** fineTune on a saved run (a checkpoint file or its folder), its dataset or `data` overrides of it. */
export async function fineTuneCheckpoint(
  checkpointOrRunDir: string,
  options: FineTuneOptions = {},
  hooks: { data?: DataOptions; signal?: AbortSignal; onEpoch?: (epoch: ClassifierEpoch) => void } = {},
): Promise<FineTuneResult & { checkpoint: string; dataset: string }> {
  const { file, checkpoint, config, train, test } = await loadRun(checkpointOrRunDir, hooks.data);
  const result = await fineTune(checkpoint.state, config, train, test, options, hooks);
  return { ...result, checkpoint: file, dataset: config.data.dataset };
}
