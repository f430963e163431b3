// Evaluation of a backbone on a dataset's test split: kNN and the linear probe on features of
// un-augmented images, computed once for both. `train` runs it at the end of a run; `evaluateCheckpoint`
// (the `eval` command) on a saved run.
import type { TrainConfig } from '../config/train-config.js';
import type { DataOptions } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { trainerFor } from '../train/from-config.js';
import { loadRun } from '../train/saved-run.js';
import type { Trainer } from '../train/trainer.js';
import { augmentedLinearProbe, type AugmentedProbeSummary } from './augmented-probe.js';
import { argmaxRows, classManifolds, confusionMatrix, effectiveRank, perClassAccuracy } from './diagnostics.js';
import { datasetFeatures } from './features.js';
import { knnAccuracy } from './knn.js';
import { linearProbe } from './linear-probe.js';

export interface KnnSummary {
  top1: number;
  top5: number;
  k: number;
}

export interface LinearProbeSummary {
  top1: number;
  top5: number;
  /** Chosen on a held-out slice of the training set. */
  learningRate: number;
  /** The probe trained through crops and flips (eval.linearProbe.augmentEpochs > 0), else absent. */
  augmented?: AugmentedProbeSummary;
}

export interface Evaluation {
  knn: KnnSummary;
  linearProbe: LinearProbeSummary | null;
  /** Accuracy within each test class, for kNN and (when run) the linear probe. */
  perClass: { knn: number[]; linearProbe: number[] | null };
  /** [true class][predicted class] counts over the test set, for kNN and (when run) the linear probe. */
  confusion: { knn: number[][]; linearProbe: number[][] | null };
  /** The test classes' manifolds in backbone-feature space (see lib/eval/diagnostics.ts). */
  manifolds: { meanRadius: number; meanCentreDistance: number; overlap: number; radius: number[] };
  /** Effective rank (RankMe) of the test set's backbone features: 1 is total collapse, the feature dimension the most. */
  rankMe: number;
  /** The images scored: the whole splits, or a monitor's subsets (eval.monitorImages). */
  images: { train: number; test: number };
  /** Wall-clock seconds of each part. */
  timings: EvaluationTimings;
}

export interface EvaluationTimings {
  /** Backbone features of the training split (the kNN bank and the probe's inputs), then of the test split. */
  trainFeatures: number;
  testFeatures: number;
  knn: number;
  /** The lr-swept probe on cached features; null when it did not run. */
  linearProbe: number | null;
  /** The probe trained through crops and flips; null when it did not run. */
  augmentedProbe: number | null;
  /** Per-class accuracy, confusion, class manifolds and RankMe. */
  diagnostics: number;
  total: number;
}

/** Seconds since `start` (a performance.now() reading). */
const since = (start: number) => (performance.now() - start) / 1000;

/**
 * What evaluation is doing, as it goes (a run of a minute or more on a CPU): a step begun, or how far a
 * counted step has got. `what` is a phrase to print as it is.
 */
export type EvaluationProgress =
  { kind: 'step'; what: string } | { kind: 'count'; what: string; done: number; total: number; unit: 'images' | 'epochs' };

export type EvaluationProgressListener = (progress: EvaluationProgress) => void;

/** kNN (and, unless `monitor` or eval.linearProbe is false, the linear probe) of test-split features against training-split features. */
export async function evaluate(
  trainer: Trainer,
  train: ImageDataset,
  test: ImageDataset,
  config: TrainConfig,
  monitor: boolean,
  signal?: AbortSignal,
  onProgress?: EvaluationProgressListener,
): Promise<Evaluation> {
  const pipeline = config.augment[0]!;
  const workers = config.run.workers;
  const counted = (what: string) => (done: number, total: number) => onProgress?.({ kind: 'count', what, done, total, unit: 'images' });
  const start = performance.now();
  let partStart = start;
  const bank = await datasetFeatures(trainer, train, pipeline, {
    workers,
    signal,
    onRows: counted(`features of the ${train.count} training images`),
  });
  const trainFeatures = since(partStart);
  partStart = performance.now();
  const queries = await datasetFeatures(trainer, test, pipeline, {
    workers,
    signal,
    onRows: counted(`features of the ${test.count} test images`),
  });
  const testFeatures = since(partStart);
  const classes = Math.max(train.classes, test.classes);
  onProgress?.({ kind: 'step', what: `kNN (k=${config.eval.knn.k}) of ${test.count} test images against ${train.count} training images` });
  partStart = performance.now();
  const knn = await knnAccuracy(bank, queries, bank.dim, classes, config.eval.knn);
  const knnSeconds = since(partStart);
  let probe: LinearProbeSummary | null = null;
  let probePredictions: Int32Array | null = null;
  let probeSeconds: number | null = null;
  let augmentedSeconds: number | null = null;
  if (!monitor && config.eval.linearProbe !== false) {
    const options = config.eval.linearProbe;
    onProgress?.({ kind: 'step', what: linearProbePlan(options, train.count) });
    partStart = performance.now();
    const result = await linearProbe(bank, queries, bank.dim, classes, options);
    probeSeconds = since(partStart);
    probe = { top1: result.top1, top5: result.top5, learningRate: result.learningRate };
    if (options.augmentEpochs > 0) {
      partStart = performance.now();
      const what = `the probe with crops and flips (lr ${result.learningRate})`;
      const { top1, top5, epochs, learningRate } = await augmentedLinearProbe(await trainer.state(), config, train, test, {
        ...options,
        learningRate: result.learningRate,
        epochs: options.augmentEpochs,
        trainFeatures: bank.features,
        workers,
        signal,
        onEpoch: (e) => onProgress?.({ kind: 'count', what, done: e.epoch, total: e.epochs, unit: 'epochs' }),
      });
      probe.augmented = { top1, top5, epochs, learningRate };
      augmentedSeconds = since(partStart);
    }
    probePredictions = argmaxRows(result.testLogits, classes);
  }
  onProgress?.({ kind: 'step', what: 'class manifolds and effective rank (RankMe) of the test features' });
  partStart = performance.now();
  const { meanRadius, meanCentreDistance, overlap, radius } = classManifolds(queries.features, queries.labels, queries.dim, classes);
  const perClass = {
    knn: perClassAccuracy(knn.predictions, queries.labels, classes),
    linearProbe: probePredictions && perClassAccuracy(probePredictions, queries.labels, classes),
  };
  const confusion = {
    knn: confusionMatrix(knn.predictions, queries.labels, classes),
    linearProbe: probePredictions && confusionMatrix(probePredictions, queries.labels, classes),
  };
  const rankMe = await effectiveRank(queries.features, queries.dim);
  const timings: EvaluationTimings = {
    trainFeatures,
    testFeatures,
    knn: knnSeconds,
    linearProbe: probeSeconds,
    augmentedProbe: augmentedSeconds,
    diagnostics: since(partStart),
    total: since(start),
  };
  return {
    knn: { top1: knn.top1, top5: knn.top5, k: config.eval.knn.k },
    linearProbe: probe,
    perClass,
    confusion,
    manifolds: { meanRadius, meanCentreDistance, overlap, radius },
    rankMe,
    images: { train: train.count, test: test.count },
    timings,
  };
}

/**
 * The linear probe's work, said before it starts: it runs in one native call (no progress of its own
 * until it returns), the longest step of an evaluation.
 */
function linearProbePlan(options: Exclude<TrainConfig['eval']['linearProbe'], false>, trainImages: number): string {
  // As native/src/core/eval/linear_probe.cpp holds them out.
  const held = Math.max(1, Math.min(trainImages - 1, Math.round(options.validationFraction * trainImages)));
  return `linear probe: ${options.learningRates.length} learning rates x ${options.epochs} epochs on ${trainImages - held} training features (${held} held out), then ${options.epochs} epochs on all ${trainImages}`;
}

export interface CheckpointEvaluation extends Evaluation {
  checkpoint: string;
  /** The training run's config (the data section as overridden for this evaluation). */
  config: TrainConfig;
  trainImages: number;
  testImages: number;
}

/**
 * Evaluates the backbone of a clamp-native checkpoint (a file, or the run folder holding it) on the run's dataset, or on `data` overrides (another
 * folder, limits), with the run's evaluation settings.
 */
export async function evaluateCheckpoint(
  checkpointOrRunDir: string,
  options: {
    data?: DataOptions;
    signal?: AbortSignal;
    /** Overrides eval.linearProbe.augmentEpochs. */
    augmentEpochs?: number;
    onProgress?: EvaluationProgressListener;
  } = {},
): Promise<CheckpointEvaluation> {
  const { onProgress } = options;
  onProgress?.({ kind: 'step', what: 'reading the checkpoint and its dataset' });
  const run = await loadRun(checkpointOrRunDir, options.data);
  const { file, checkpoint, train, test } = run;
  const saved = run.config.eval.linearProbe;
  const config =
    options.augmentEpochs === undefined || saved === false
      ? run.config
      : { ...run.config, eval: { ...run.config.eval, linearProbe: { ...saved, augmentEpochs: options.augmentEpochs } } };
  const trainer = await trainerFor(config, train.channels, Math.max(1, Math.floor(train.count / config.run.batchSize)));
  try {
    await trainer.loadState(checkpoint.state);
    const evaluation = await evaluate(trainer, train, test, config, false, options.signal, onProgress);
    return { ...evaluation, checkpoint: file, config, trainImages: train.count, testImages: test.count };
  } finally {
    trainer.dispose();
  }
}
