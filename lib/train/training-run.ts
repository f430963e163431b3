// A whole training run: dataset, augmentation workers, the native trainer, metrics.jsonl, atomic
// checkpoints, kNN evaluation, and exact resumption. The CLI's `train` is a thin layer over this.
import path from 'node:path';
import { MultiViewLoader, type Batch } from '../augment/loader.js';
import { CHECKPOINT_FILE, readTrainedCheckpoint, type Checkpoint, type RunPosition } from '../checkpoint/checkpoint.js';
import { writeFileAtomically } from '../io/files.js';
import { epochsEntered, parseTrainConfig, scheduledSteps, type TrainConfig, type TrainConfigInput } from '../config/train-config.js';
import { loadDataset } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';
import type { Evaluation, KnnSummary, LinearProbeSummary } from '../eval/evaluate.js';
import {
  claimRunFolder,
  CONFIG_FILE,
  METRICS_FILE,
  missingCheckpointReason,
  removeStaleTemporaries,
  RunFolderError,
} from '../run-folder/run-folder.js';
import type { ComputeSettings } from '../runtime/addon-types.js';
import { setNumThreads } from '../runtime/native.js';
import { EpochAccumulator, type EpochSummary } from './epoch-accumulator.js';
import { EpochHooks, RunCheckpoints, RunEvaluation } from './epoch-hooks.js';
import { trainerFor } from './from-config.js';
import { MetricsLog } from './metrics-log.js';
import { StepTimer } from './step-timer.js';
import {
  distributedOptionsSchema,
  TrainingDivergedError,
  type DistributedOptions,
  type Trainer,
  type TrainingStepResult,
} from './trainer.js';
import { validationError } from '../config/errors.js';

export { CONFIG_FILE, METRICS_FILE };

export type TrainEvent =
  | {
      kind: 'start';
      runDir: string;
      totalSteps: number;
      stepsPerEpoch: number;
      epochs: number;
      resumedAt: RunPosition | null;
      trainImages: number;
      device: string;
      compute: ComputeSettings;
    }
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
  overrides?: {
    run?: Partial<
      Pick<
        TrainConfig['run'],
        'device' | 'precision' | 'memoryFormat' | 'workers' | 'threads' | 'checkpointEvery' | 'logEvery' | 'reportEvery'
      >
    >;
    eval?: Partial<TrainConfig['eval']>;
  };
}

export interface TrainSummary {
  runDir: string;
  checkpoint: string;
  seconds: number;
  /** Epochs completed (a fractional run's cut-short last epoch counts once it ends). */
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
  const { file, checkpoint, config: saved } = await readTrainedCheckpoint(checkpointOrRunDir);
  const config = parseTrainConfig({
    ...saved,
    run: { ...saved.run, ...options.overrides?.run },
    eval: { ...saved.eval, ...options.overrides?.eval },
  });
  return runTraining(config, path.dirname(file), checkpoint, options);
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
  // Rank 0 alone evaluates while the other ranks wait at the next step's collective: a kNN monitor on
  // bounded subsets (eval.monitorImages, seconds) fits inside the collectives' timeout, an unbounded one
  // or a full evaluation before training may not.
  const { monitorImages } = config.eval;
  if (config.eval.every > 0 && (monitorImages.train === undefined || monitorImages.test === undefined)) {
    throw new RangeError(
      'eval.every runs data-parallel only on bounded subsets: set eval.monitorImages.train and .test (rank 0 alone monitors while the others wait), or eval.every to 0',
    );
  }
  if (config.eval.atStart) {
    throw new RangeError('eval.atStart does not run data-parallel yet: set it to false (the final evaluation runs on rank 0)');
  }
  return group;
}

/** What a resumed run that had already finished reports: the checkpoint's own figures, nothing redone. */
function finishedSummary(runDir: string, checkpoint: Checkpoint, seconds: number): TrainSummary {
  const metrics = checkpoint.metrics as { lastLoss?: unknown; loss?: unknown; evaluation?: Partial<Evaluation> };
  const lastLoss = typeof metrics.lastLoss === 'number' ? metrics.lastLoss : typeof metrics.loss === 'number' ? metrics.loss : Number.NaN;
  return {
    runDir,
    checkpoint: path.join(runDir, CHECKPOINT_FILE),
    seconds,
    epochs: checkpoint.position.epoch,
    steps: checkpoint.position.step,
    finalLoss: lastLoss,
    throughput: { viewImagesPerSecond: 0 },
    knn: metrics.evaluation?.knn ?? null,
    linearProbe: metrics.evaluation?.linearProbe ?? null,
    atStart: null,
    stopped: false,
    alreadyFinished: true,
  };
}

/** What a run that trained reports (`final`: the evaluation after its last step, null when there was none). */
function trainedSummary(
  runDir: string,
  checkpointFile: string,
  started: number,
  progress: RunProgress,
  atStart: Evaluation | null,
  final: Evaluation | null,
): TrainSummary {
  const { position, lastLoss, stopped, viewImages, trainingSeconds } = progress;
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

/** The error a diverged step becomes: where it happened, what state is safe, and what to change. */
function divergenceError(
  error: TrainingDivergedError,
  o: { config: TrainConfig; epoch: number; totalSteps: number; checkpointFile: string; lastCheckpoint: RunPosition | null },
): TrainingDivergedError {
  const { baseLr, warmupEpochs } = o.config.schedule;
  const safe = o.lastCheckpoint
    ? `The last good checkpoint, ${o.checkpointFile} (step ${o.lastCheckpoint.step}, epoch ${o.lastCheckpoint.epoch}), is intact; nothing was written after the failure.`
    : 'No checkpoint had been written yet.';
  const message =
    `training diverged at step ${error.step + 1} of ${o.totalSteps} (epoch ${o.epoch + 1}, learning rate ${error.learningRate}): ${error.detail}. ${safe} ` +
    `Train again with a lower learning rate (schedule.baseLr is ${baseLr}; try --set schedule.baseLr=${baseLr / 2}) or a longer warmup (schedule.warmupEpochs is ${warmupEpochs}).`;
  return new TrainingDivergedError(message, error.step, error.learningRate, error.detail);
}

/** The training split, and the test split when some evaluation will need it. */
async function loadSplits(config: TrainConfig): Promise<{ trainSet: ImageDataset; testSet: ImageDataset | null }> {
  const trainSet = await loadDataset(config.data, 'train');
  if (!trainSet) throw new Error('the training split is missing');
  const needsTest = config.eval.atEnd || config.eval.every > 0 || config.eval.atStart;
  const testSet = needsTest ? await loadDataset(config.data, 'test') : null;
  return { trainSet, testSet };
}

/** Whole batches, as the loader yields them (it drops the last partial one): the schedule counts these steps. */
function stepsPerEpochOf(trainImages: number, batchSize: number): number {
  const stepsPerEpoch = Math.floor(trainImages / batchSize);
  if (stepsPerEpoch < 1) throw new RangeError(`run.batchSize ${batchSize} exceeds the ${trainImages} training images`);
  return stepsPerEpoch;
}

/** Rank 0's run folder as training (re)starts: metric lines past the checkpoint dropped, the config written, the log opened. */
async function openRunFolder(runDir: string, config: TrainConfig, resumedAt: RunPosition | null, writer: boolean): Promise<MetricsLog> {
  if (!writer) return MetricsLog.silent();
  const file = path.join(runDir, METRICS_FILE);
  if (resumedAt) await MetricsLog.trimPast(file, resumedAt);
  await writeFileAtomically(path.join(runDir, CONFIG_FILE), [Buffer.from(`${JSON.stringify(config, null, 2)}\n`)]);
  return MetricsLog.open(file);
}

/** What the steps of one run share. */
interface RunContext {
  config: TrainConfig;
  trainer: Trainer;
  loader: MultiViewLoader;
  group: ReturnType<typeof parseDistributed>;
  signal: AbortSignal | undefined;
  emit: (event: TrainEvent) => void;
  metrics: MetricsLog;
  checkpoints: RunCheckpoints;
  timer: StepTimer;
  stepsPerEpoch: number;
  totalSteps: number;
  /** The epochs the run enters: schedule.epochs rounded up, the last one ending at totalSteps. */
  epochs: number;
}

/** Where a run stands; every step moves it on. */
interface RunProgress {
  position: RunPosition;
  lastLoss: number;
  stopped: boolean;
  /** View images and seconds of the epochs' steps alone (no evaluation or checkpoint), for the run's throughput. */
  viewImages: number;
  trainingSeconds: number;
}

/** The epochs from where `progress` stands to the last, or to a stop: each one's steps, then its line and its hooks. */
async function trainEpochs(run: RunContext, progress: RunProgress, hooks: EpochHooks): Promise<void> {
  for (let epoch = progress.position.epoch; epoch < run.epochs && !progress.stopped; epoch++) {
    const sums = await trainEpoch(run, progress, epoch);
    const seconds = sums.elapsedSeconds();
    progress.viewImages += sums.viewImages;
    progress.trainingSeconds += seconds;
    // A stopped epoch's line comes when a resumed run finishes the epoch.
    if (progress.stopped) break;
    progress.position = { epoch: epoch + 1, batch: 0, step: progress.position.step };
    await recordEpoch(run, sums.summary(epoch, seconds));
    await hooks.afterEpoch(epoch, progress.position, progress.lastLoss);
  }
}

/** The steps of one epoch, from where `progress` stands, until its end or a stop. */
async function trainEpoch(run: RunContext, progress: RunProgress, epoch: number): Promise<EpochAccumulator> {
  const sums = new EpochAccumulator();
  run.timer.restart();
  for await (const batch of run.loader.epoch(epoch, progress.position.batch)) {
    const result = await trainStep(run, batch, epoch);
    const seconds = run.timer.lap();
    progress.position = { epoch, batch: progress.position.batch + 1, step: progress.position.step + 1 };
    progress.lastLoss = result.loss;
    // The group's throughput: each rank trains its share of the global batch.
    const viewImages = batch.shape[0] * (run.group?.worldSize ?? 1);
    sums.add(result, viewImages);
    await reportStep(run, progress.position, result, viewImages / seconds);
    // A fractional run's last epoch ends at its last step, part-way through the loader's epoch.
    if (progress.position.step >= run.totalSteps) break;
    if (await stopRequested(run)) {
      progress.stopped = progress.position.step < run.totalSteps;
      break;
    }
  }
  return sums;
}

/** A diverged step is logged, then thrown as the error that says what state is safe and what to change. */
async function trainStep(run: RunContext, batch: Batch, epoch: number): Promise<TrainingStepResult> {
  try {
    return await run.trainer.step(batch.data, batch.shape);
  } catch (error) {
    if (!(error instanceof TrainingDivergedError)) throw error;
    const { config, totalSteps, checkpoints } = run;
    const diverged = divergenceError(error, {
      config,
      epoch,
      totalSteps,
      checkpointFile: checkpoints.file,
      lastCheckpoint: checkpoints.last,
    });
    await run.metrics.write({ kind: 'diverged', epoch, step: error.step, lr: error.learningRate, detail: error.detail });
    throw diverged;
  }
}

/** The step's metrics line (every run.logEvery steps) and progress event; `position` is just after the step. */
async function reportStep(run: RunContext, position: RunPosition, result: TrainingStepResult, viewImagesPerSecond: number): Promise<void> {
  const { epoch } = position;
  if (result.step % run.config.run.logEvery === 0) {
    await run.metrics.write({
      kind: 'step',
      epoch,
      step: result.step,
      loss: result.loss,
      ...result.stats,
      lr: result.learningRate,
      gradNorm: result.gradNorm,
      viewImagesPerSecond,
    });
  }
  const { stepsPerEpoch, totalSteps } = run;
  run.emit({
    kind: 'step',
    epoch,
    batch: position.batch - 1,
    stepsPerEpoch,
    totalSteps,
    result,
    viewImagesPerSecond,
    etaSeconds: run.timer.etaSeconds(totalSteps - position.step),
  });
}

/** Every rank must stop after the same step, or the others would wait in the next one. */
async function stopRequested(run: RunContext): Promise<boolean> {
  const aborted = run.signal?.aborted ?? false;
  return run.group ? run.trainer.anyRank(aborted) : aborted;
}

/** The epoch's metrics line and progress event; the next checkpoint carries its figures. */
async function recordEpoch(run: RunContext, summary: EpochSummary): Promise<void> {
  Object.assign(run.checkpoints.metrics, summary);
  await run.metrics.write(summary);
  run.emit({
    kind: 'epoch',
    epoch: summary.epoch,
    loss: summary.loss,
    viewImagesPerSecond: summary.viewImagesPerSecond,
    seconds: summary.seconds,
  });
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
  const { trainSet, testSet } = await loadSplits(config);
  const stepsPerEpoch = stepsPerEpochOf(trainSet.count, config.run.batchSize);
  const totalSteps = scheduledSteps(config.schedule, stepsPerEpoch);
  const epochs = epochsEntered(totalSteps, stepsPerEpoch);
  if (checkpoint && checkpoint.position.step >= totalSteps)
    return finishedSummary(runDir, checkpoint, (performance.now() - started) / 1000);

  const trainer = await trainerFor(config, trainSet.channels, stepsPerEpoch);
  if (checkpoint) await trainer.loadState(checkpoint.state);
  if (group) await trainer.distribute(group);
  const metrics = await openRunFolder(runDir, config, checkpoint?.position ?? null, writer);
  const checkpoints = new RunCheckpoints(path.join(runDir, CHECKPOINT_FILE), { trainer, config, writer, emit, resumed: checkpoint });
  const evaluation = new RunEvaluation({ trainer, trainSet, testSet, config, signal: options.signal, writer, metrics, emit });
  const hooks = new EpochHooks(config, epochs, evaluation, checkpoints);
  const loader = new MultiViewLoader({
    dataset: trainSet,
    batchSize: config.run.batchSize,
    views: config.run.views,
    pipelines: config.augment,
    seed: config.run.seed,
    workers: config.run.workers,
    shard: group ? { rank: group.rank, count: group.worldSize } : undefined,
  });
  const run: RunContext = {
    config,
    trainer,
    loader,
    group,
    signal: options.signal,
    emit,
    metrics,
    checkpoints,
    timer: new StepTimer(),
    stepsPerEpoch,
    totalSteps,
    epochs,
  };
  const progress: RunProgress = {
    position: checkpoint?.position ?? { epoch: 0, batch: 0, step: 0 },
    lastLoss: Number.NaN,
    stopped: false,
    viewImages: 0,
    trainingSeconds: 0,
  };
  let atStart: Evaluation | null = null;
  let final: Evaluation | null = null;
  try {
    emit({
      kind: 'start',
      runDir,
      totalSteps,
      stepsPerEpoch,
      epochs: config.schedule.epochs,
      resumedAt: checkpoint ? progress.position : null,
      trainImages: trainSet.count,
      device: config.run.device,
      compute: trainer.computeSettings,
    });
    if (config.eval.atStart && !checkpoint) atStart = await evaluation.run(-1, progress.position.step, false);
    await trainEpochs(run, progress, hooks);
    final = await hooks.afterRun(progress.position, progress.lastLoss, progress.stopped);
  } finally {
    trainer.dispose();
    await loader.close();
    await metrics.close();
  }
  return trainedSummary(runDir, checkpoints.file, started, progress, atStart, final);
}
