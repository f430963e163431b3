// A whole training run: dataset, augmentation workers, the native trainer, metrics.jsonl, atomic
// checkpoints, kNN evaluation, and exact resumption. The CLI's `train` is a thin layer over this.
import fs from 'node:fs/promises';
import path from 'node:path';
import { MultiViewLoader } from '../augment/loader.js';
import { CHECKPOINT_FILE, checkpointPath, readCheckpoint, saveCheckpoint, type Checkpoint, type RunPosition } from '../checkpoint/checkpoint.js';
import { writeFileAtomically } from '../io/files.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../config/train-config.js';
import { loadDataset } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { evaluate, type Evaluation, type KnnSummary, type LinearProbeSummary } from '../eval/evaluate.js';
import { claimRunFolder, CONFIG_FILE, METRICS_FILE, missingCheckpointReason, removeStaleTemporaries, RunFolderError } from '../run-folder/run-folder.js';
import type { ComputeSettings } from '../runtime/addon-types.js';
import { setNumThreads } from '../runtime/native.js';
import { trainerFor } from './from-config.js';
import { distributedOptionsSchema, TrainingDivergedError, type DistributedOptions, type TrainingStepResult } from './trainer.js';
import { validationError } from '../config/errors.js';

export { CONFIG_FILE, METRICS_FILE };

export type TrainEvent =
  | { kind: 'start'; runDir: string; totalSteps: number; stepsPerEpoch: number; epochs: number; resumedAt: RunPosition | null; trainImages: number; device: string; compute: ComputeSettings }
  | {
      kind: 'step';
      epoch: number;
      batch: number;
      stepsPerEpoch: number;
      totalSteps: number;
      result: TrainingStepResult;
      viewImagesPerSecond: number;
      etaSeconds: number;
    }
  | { kind: 'epoch'; epoch: number; loss: number; viewImagesPerSecond: number; seconds: number }
  /** epoch -1: before training (eval.atStart). */
  | { kind: 'evaluation'; epoch: number; step: number; evaluation: Evaluation }
  | { kind: 'checkpoint'; file: string; position: RunPosition }
  | { kind: 'evaluating'; what: string };

export interface TrainOptions {
  /** Progress: every step, epoch, evaluation and checkpoint. */
  onProgress?: ((event: TrainEvent) => void) | undefined;
  /** Stops after the current step, writes a checkpoint, and resolves with `stopped: true`. */
  signal?: AbortSignal;
  /** The run folder (default runs/<dataset>-<date>-<time>). One that already holds a run is refused unless `overwrite`. */
  runDir?: string;
  /** Replace the run a runDir already holds (its checkpoint, metrics, config and report are deleted first). */
  overwrite?: boolean;
  /**
   * Data-parallel training: this process is one rank of a group (see Trainer.distribute). Every rank
   * runs train() with the same config; each takes its share of every global batch of run.batchSize;
   * only rank 0 writes the run folder (config, metrics, checkpoints) and evaluates.
   */
  distributed?: DistributedOptions | undefined;
}

export interface ResumeOptions extends Omit<TrainOptions, 'runDir' | 'overwrite'> {
  /** Settings that do not change the run's mathematics (up to rounding): device, precision, memory format, workers, threads, logging, evaluation. */
  overrides?: { run?: Partial<Pick<TrainConfig['run'], 'device' | 'precision' | 'memoryFormat' | 'workers' | 'threads' | 'checkpointEvery' | 'logEvery'>>; eval?: Partial<TrainConfig['eval']> };
}

export interface TrainSummary {
  runDir: string;
  checkpoint: string;
  seconds: number;
  /** Whole epochs completed. */
  epochs: number;
  steps: number;
  finalLoss: number;
  throughput: { viewImagesPerSecond: number };
  /** kNN on the test split after training (null when eval.atEnd is off or there is no test split). */
  knn: KnnSummary | null;
  /** The linear probe after training (null when off, like knn). */
  linearProbe: LinearProbeSummary | null;
  /** The same evaluation of the untrained network (eval.atStart). */
  atStart: Evaluation | null;
  /** True when the signal stopped the run before its last step. */
  stopped: boolean;
  /** True when a resumed run had already taken its last step: nothing was trained, evaluated or written. */
  alreadyFinished: boolean;
}

function defaultRunDir(config: TrainConfig): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return path.join('runs', `${config.data.dataset}-${stamp}`);
}

/** Trains from scratch under `config` (a preset-resolved or hand-written config, validated here). */
export async function train(config: TrainConfigInput | TrainConfig, options: TrainOptions = {}): Promise<TrainSummary> {
  const resolved = parseTrainConfig(config);
  return runTraining(resolved, options.runDir ?? defaultRunDir(resolved), null, options);
}

/** Continues the run of a checkpoint (a file, or the run folder holding checkpoint.safetensors) exactly where it stopped. */
export async function resumeTraining(checkpointOrRunDir: string, options: ResumeOptions = {}): Promise<TrainSummary> {
  const missing = await missingCheckpointReason(checkpointOrRunDir);
  if (missing) throw new RunFolderError(missing);
  const file = await checkpointPath(checkpointOrRunDir);
  const checkpoint = await readCheckpoint(file);
  const saved = parseTrainConfig(checkpoint.config, `${file} config`);
  const config = parseTrainConfig({ ...saved, run: { ...saved.run, ...options.overrides?.run }, eval: { ...saved.eval, ...options.overrides?.eval } });
  return runTraining(config, path.dirname(file), checkpoint, options);
}

/** Drops metric lines past the checkpoint (written by a run that went on after it and then died). */
async function trimMetrics(file: string, position: RunPosition): Promise<void> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  const kept = text.split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      const entry = JSON.parse(line) as { kind?: string; step?: number; epoch?: number };
      if (entry.kind === 'epoch') return (entry.epoch ?? 0) < position.epoch;
      return (entry.step ?? 0) < position.step;
    } catch {
      return false; // a half-written last line
    }
  });
  await writeFileAtomically(file, [Buffer.from(kept.map((line) => `${line}\n`).join(''))]);
}

/** The validated group of a data-parallel run (null for one process), with what it cannot do yet refused. */
function parseDistributed(options: DistributedOptions | undefined, config: TrainConfig) {
  if (!options) return null;
  const parsed = distributedOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'distributed');
  const group = parsed.data;
  if (group.worldSize === 1) return null;
  if (config.run.batchSize % group.worldSize !== 0) {
    throw new RangeError(`run.batchSize ${config.run.batchSize} must split evenly over ${group.worldSize} processes`);
  }
  // Rank 0 alone evaluates: mid-run, the other ranks would wait for it past the collectives' timeout.
  if (config.eval.every > 0 || config.eval.atStart) {
    throw new RangeError('eval.every and eval.atStart do not run data-parallel yet: set them to 0 / false (the final evaluation runs on rank 0)');
  }
  return group;
}

/** What a resumed run that had already finished reports: the checkpoint's own figures, nothing redone. */
function finishedSummary(runDir: string, checkpoint: Checkpoint, seconds: number): TrainSummary {
  const metrics = checkpoint.metrics as { lastLoss?: unknown; loss?: unknown; evaluation?: Partial<Evaluation> };
  const lastLoss = typeof metrics.lastLoss === 'number' ? metrics.lastLoss : typeof metrics.loss === 'number' ? metrics.loss : Number.NaN;
  return {
    runDir, checkpoint: path.join(runDir, CHECKPOINT_FILE), seconds, epochs: checkpoint.position.epoch, steps: checkpoint.position.step,
    finalLoss: lastLoss, throughput: { viewImagesPerSecond: 0 }, knn: metrics.evaluation?.knn ?? null,
    linearProbe: metrics.evaluation?.linearProbe ?? null, atStart: null, stopped: false, alreadyFinished: true,
  };
}

/** The error a diverged step becomes: where it happened, what state is safe, and what to change. */
function divergenceError(error: TrainingDivergedError, o: { config: TrainConfig; epoch: number; totalSteps: number; checkpointFile: string; lastCheckpoint: RunPosition | null }): TrainingDivergedError {
  const { baseLr, warmupEpochs } = o.config.schedule;
  const safe = o.lastCheckpoint
    ? `The last good checkpoint, ${o.checkpointFile} (step ${o.lastCheckpoint.step}, epoch ${o.lastCheckpoint.epoch}), is intact; nothing was written after the failure.`
    : 'No checkpoint had been written yet.';
  const message =
    `training diverged at step ${error.step + 1} of ${o.totalSteps} (epoch ${o.epoch + 1}, learning rate ${error.learningRate}): ${error.detail}. ${safe} ` +
    `Train again with a lower learning rate (schedule.baseLr is ${baseLr}; try --set schedule.baseLr=${baseLr / 2}) or a longer warmup (schedule.warmupEpochs is ${warmupEpochs}).`;
  return new TrainingDivergedError(message, error.step, error.learningRate, error.detail);
}

async function runTraining(
  config: TrainConfig,
  runDir: string,
  checkpoint: Checkpoint | null,
  options: TrainOptions,
): Promise<TrainSummary> {
  const started = performance.now();
  const emit = options.onProgress ?? (() => {});
  const group = parseDistributed(options.distributed, config);
  // Rank 0 writes the run folder and evaluates; the other ranks only train.
  const writer = !group || group.rank === 0;
  // Before any slow work: a run folder that is taken fails now, not after the dataset has loaded.
  if (writer && !checkpoint) await claimRunFolder(runDir, options.overwrite ?? false);
  if (writer) await removeStaleTemporaries(runDir);
  if (config.run.threads) setNumThreads(config.run.threads);
  const trainSet = await loadDataset(config.data, 'train');
  if (!trainSet) throw new Error('the training split is missing');
  const needsTest = config.eval.atEnd || config.eval.every > 0 || config.eval.atStart;
  const testSet = needsTest ? await loadDataset(config.data, 'test') : null;
  const pipelineChannels = trainSet.channels;
  const { batchSize, views } = config.run;
  const stepsPerEpoch = Math.floor(trainSet.count / batchSize);
  if (stepsPerEpoch < 1) throw new RangeError(`run.batchSize ${batchSize} exceeds the ${trainSet.count} training images`);
  const totalSteps = config.schedule.epochs * stepsPerEpoch;
  if (checkpoint && checkpoint.position.step >= totalSteps) return finishedSummary(runDir, checkpoint, (performance.now() - started) / 1000);

  const trainer = await trainerFor(config, pipelineChannels, stepsPerEpoch);
  let position: RunPosition = { epoch: 0, batch: 0, step: 0 };
  const metricsFile = path.join(runDir, METRICS_FILE);
  const checkpointFile = path.join(runDir, CHECKPOINT_FILE);
  if (checkpoint) {
    await trainer.loadState(checkpoint.state);
    position = checkpoint.position;
  }
  if (group) await trainer.distribute(group);
  let metrics: fs.FileHandle | null = null;
  if (writer) {
    if (checkpoint) await trimMetrics(metricsFile, position);
    await writeFileAtomically(path.join(runDir, CONFIG_FILE), [Buffer.from(`${JSON.stringify(config, null, 2)}\n`)]);
    metrics = await fs.open(metricsFile, 'a');
  }
  const log = async (entry: Record<string, unknown>) => {
    await metrics?.write(`${JSON.stringify(entry)}\n`);
  };

  let lastLoss = Number.NaN;
  let final: Evaluation | null = null;
  let atStart: Evaluation | null = null;
  let viewImages = 0, trainingSeconds = 0;
  // The checkpoint's metadata carries on from the one resumed, so the last one holds the whole run's figures.
  const latest: Record<string, unknown> = { ...checkpoint?.metrics };
  let lastCheckpoint: RunPosition | null = checkpoint?.position ?? null;
  const writeCheckpoint = async () => {
    if (!writer) return;
    await saveCheckpoint(checkpointFile, trainer, { config, position, metrics: { ...latest, lastLoss } });
    lastCheckpoint = position;
    emit({ kind: 'checkpoint', file: checkpointFile, position });
  };
  const runEvaluation = async (epoch: number, monitor: boolean) => {
    if (!testSet || !writer) return null;
    emit({ kind: 'evaluating', what: monitor || config.eval.linearProbe === false ? 'kNN' : 'kNN and the linear probe' });
    const result = await evaluate(trainer, trainSet, testSet, config, monitor, options.signal);
    await log({ kind: 'evaluation', epoch, step: position.step, ...result });
    emit({ kind: 'evaluation', epoch, step: position.step, evaluation: result });
    return result;
  };

  const loader = new MultiViewLoader({
    dataset: trainSet, batchSize, views, pipelines: config.augment, seed: config.run.seed, workers: config.run.workers,
    shard: group ? { rank: group.rank, count: group.worldSize } : undefined,
  });
  let stopped = false;
  try {
    emit({ kind: 'start', runDir, totalSteps, stepsPerEpoch, epochs: config.schedule.epochs, resumedAt: checkpoint ? position : null, trainImages: trainSet.count, device: config.run.device, compute: trainer.computeSettings });
    if (config.eval.atStart && !checkpoint) atStart = await runEvaluation(-1, false);
    let secondsPerStep = 0;
    for (let epoch = position.epoch; epoch < config.schedule.epochs && !stopped; epoch++) {
      const epochStarted = performance.now();
      let epochSteps = 0, epochViewImages = 0, lastLearningRate = 0;
      // Sums of the per-step figures, for the epoch line's means.
      const sums = { loss: 0, energy: 0, meanRadius: 0, meanDistance: 0, contactsPerImage: 0, activity: 0, gradNorm: 0 };
      let stepStarted = performance.now();
      for await (const batch of loader.epoch(epoch, position.batch)) {
        let result: TrainingStepResult;
        try {
          result = await trainer.step(batch.data, batch.shape);
        } catch (error) {
          if (!(error instanceof TrainingDivergedError)) throw error;
          const diverged = divergenceError(error, { config, epoch, totalSteps, checkpointFile, lastCheckpoint });
          await log({ kind: 'diverged', epoch, step: error.step, lr: error.learningRate, detail: error.detail });
          throw diverged;
        }
        const now = performance.now();
        const seconds = (now - stepStarted) / 1000;
        stepStarted = now;
        secondsPerStep = secondsPerStep === 0 ? seconds : 0.9 * secondsPerStep + 0.1 * seconds;
        position = { epoch, batch: position.batch + 1, step: position.step + 1 };
        lastLoss = result.loss;
        for (const key of ['energy', 'meanRadius', 'meanDistance', 'contactsPerImage', 'activity'] as const) sums[key] += result.stats[key];
        sums.loss += result.loss;
        sums.gradNorm += result.gradNorm;
        lastLearningRate = result.learningRate;
        epochSteps++;
        const globalViewImages = batch.shape[0] * (group?.worldSize ?? 1);
        epochViewImages += globalViewImages;
        const viewImagesPerSecond = globalViewImages / seconds;
        if (result.step % config.run.logEvery === 0) {
          await log({ kind: 'step', epoch, step: result.step, loss: result.loss, ...result.stats, lr: result.learningRate, gradNorm: result.gradNorm, viewImagesPerSecond });
        }
        emit({ kind: 'step', epoch, batch: position.batch - 1, stepsPerEpoch, totalSteps, result, viewImagesPerSecond, etaSeconds: secondsPerStep * (totalSteps - position.step) });
        // Every rank must stop after the same step, or the others would wait in the next one.
        const stopping = group ? await trainer.anyRank(options.signal?.aborted ?? false) : options.signal?.aborted;
        if (stopping) {
          stopped = position.step < totalSteps;
          break;
        }
      }
      const epochSeconds = (performance.now() - epochStarted) / 1000;
      viewImages += epochViewImages;
      trainingSeconds += epochSeconds;
      if (stopped) break;
      position = { epoch: epoch + 1, batch: 0, step: position.step };
      const means = Object.fromEntries(Object.entries(sums).map(([key, sum]) => [key, sum / Math.max(1, epochSteps)])) as typeof sums;
      const summary = { kind: 'epoch', epoch, ...means, lr: lastLearningRate, steps: epochSteps, viewImagesPerSecond: epochViewImages / epochSeconds, seconds: epochSeconds };
      Object.assign(latest, summary);
      await log(summary);
      emit({ kind: 'epoch', epoch, loss: summary.loss, viewImagesPerSecond: summary.viewImagesPerSecond, seconds: epochSeconds });
      const last = epoch + 1 === config.schedule.epochs;
      if (config.eval.every > 0 && (epoch + 1) % config.eval.every === 0 && !last) await runEvaluation(epoch, true);
      if ((epoch + 1) % config.run.checkpointEvery === 0 && !last) await writeCheckpoint();
    }
    await writeCheckpoint();
    if (!stopped && config.eval.atEnd) {
      final = await runEvaluation(config.schedule.epochs - 1, false);
      if (final) {
        latest.evaluation = final;
        await writeCheckpoint(); // the final checkpoint carries the final accuracy in its metadata
      }
    }
  } finally {
    trainer.dispose();
    await loader.close();
    await metrics?.close();
  }
  return {
    runDir,
    checkpoint: checkpointFile,
    seconds: (performance.now() - started) / 1000,
    epochs: position.epoch,
    steps: position.step,
    finalLoss: lastLoss,
    throughput: { viewImagesPerSecond: trainingSeconds > 0 ? viewImages / trainingSeconds : 0 },
    knn: final?.knn ?? null,
    linearProbe: final?.linearProbe ?? null,
    atStart,
    stopped,
    alreadyFinished: false,
  };
}
