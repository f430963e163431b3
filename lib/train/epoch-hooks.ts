// What a run does between its epochs and after its last step: evaluations, checkpoints and the rewritten
// report.html, each on its own schedule (in the manner of solo-learn's callbacks), so that the training
// loop itself only trains.
import path from 'node:path';
import { saveCheckpoint, type Checkpoint, type RunPosition } from '../checkpoint/checkpoint.js';
import type { TrainConfig } from '../config/train-config.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { balancedLabelSubset, datasetSubset } from '../data/label-subset.js';
import { evaluate, type Evaluation } from '../eval/evaluate.js';
import { writeRunningReport, type RunStatus } from '../report/report.js';
import type { MetricsLog } from './metrics-log.js';
import type { Trainer } from './trainer.js';
import type { TrainEvent } from './training-run.js';

type Emit = (event: TrainEvent) => void;

/** Rank 0's checkpoint file; the other ranks save nothing, since theirs would be the same weights. */
export class RunCheckpoints {
  /**
   * The figures the next checkpoint carries (the latest epoch line, then the final evaluation). They carry
   * on from the checkpoint resumed, so that the last checkpoint holds the whole run's figures.
   */
  readonly metrics: Record<string, unknown>;
  /** The last checkpoint written or resumed from: a diverged run names it as the state that is safe. */
  last: RunPosition | null;

  constructor(
    readonly file: string,
    private readonly o: { trainer: Trainer; config: TrainConfig; writer: boolean; emit: Emit; resumed: Checkpoint | null },
  ) {
    this.metrics = { ...o.resumed?.metrics };
    this.last = o.resumed?.position ?? null;
  }

  /** Whether this process writes the run folder (rank 0). */
  get writer(): boolean {
    return this.o.writer;
  }

  async save(position: RunPosition, lastLoss: number): Promise<void> {
    if (!this.o.writer) return;
    await saveCheckpoint(this.file, this.o.trainer, { config: this.o.config, position, metrics: { ...this.metrics, lastLoss } });
    this.last = position;
    this.o.emit({ kind: 'checkpoint', file: this.file, position });
  }
}

/** kNN (and the linear probe) on the test split, by rank 0 alone: null without a test split or on another rank. */
export class RunEvaluation {
  constructor(
    private readonly o: {
      trainer: Trainer;
      trainSet: ImageDataset;
      testSet: ImageDataset | null;
      config: TrainConfig;
      signal: AbortSignal | undefined;
      writer: boolean;
      metrics: MetricsLog;
      emit: Emit;
    },
  ) {}

  /** Whether run() evaluates (rank 0 of a run with a test split) rather than returning null. */
  get evaluates(): boolean {
    return this.o.testSet !== null && this.o.writer;
  }

  private monitorSets: { train: ImageDataset; test: ImageDataset } | undefined;

  /** `monitor`: kNN alone, on eval.monitorImages, cheap enough to repeat mid-run. Epoch -1 is before training. */
  async run(epoch: number, step: number, monitor: boolean): Promise<Evaluation | null> {
    const { trainer, trainSet, testSet, config, signal, writer, metrics, emit } = this.o;
    if (!testSet || !writer) return null;
    emit({ kind: 'evaluating', what: monitor || config.eval.linearProbe === false ? 'kNN' : 'kNN and the linear probe' });
    const sets = monitor ? this.monitorDatasets(trainSet, testSet) : { train: trainSet, test: testSet };
    let result: Evaluation;
    try {
      result = await evaluate(trainer, sets.train, sets.test, config, monitor, signal);
    } catch (error) {
      // Ctrl-C or SIGTERM during a monitor drops the monitor, not the run: the loop then stops after
      // its next step and checkpoints, as it does anywhere else.
      if (monitor && signal?.aborted) return null;
      throw error;
    }
    await metrics.write({ kind: 'evaluation', epoch, step, ...result });
    emit({ kind: 'evaluation', epoch, step, evaluation: result });
    return result;
  }

  /** The monitor's subsets, drawn once, so every monitor of the run scores the same images. */
  private monitorDatasets(trainSet: ImageDataset, testSet: ImageDataset): { train: ImageDataset; test: ImageDataset } {
    const { monitorImages } = this.o.config.eval;
    this.monitorSets ??= {
      train: monitorSubset(trainSet, monitorImages.train, this.o.config.run.seed),
      test: monitorSubset(testSet, monitorImages.test, this.o.config.run.seed + 1),
    };
    return this.monitorSets;
  }
}

/** Up to `limit` images of `dataset`, the same share of every class, fixed by the seed (all of it without a limit). */
function monitorSubset(dataset: ImageDataset, limit: number | undefined, seed: number): ImageDataset {
  if (limit === undefined || limit >= dataset.count) return dataset;
  return datasetSubset(dataset, balancedLabelSubset(dataset.labels, dataset.classes, limit / dataset.count, seed));
}

/** Whether epoch `epoch` (from 0) ends a period of `every` epochs (0: never) before the run's last epoch, whose own hooks come at the end of the run. */
export function endsPeriodBeforeLast(epoch: number, every: number, epochs: number): boolean {
  return every > 0 && (epoch + 1) % every === 0 && epoch + 1 !== epochs;
}

/**
 * Rank 0's report.html of the run under way (run.reportEvery; 0: none): its cheap parts only, a second or
 * less, on the training process's thread while the loop waits, as evaluations and checkpoints are. A failure
 * to write it warns once and never fails the run: the page is for watching, the run folder has the rest.
 */
export class RunReport {
  private warned = false;

  constructor(
    readonly runDir: string,
    private readonly o: { config: TrainConfig; writer: boolean },
  ) {}

  get enabled(): boolean {
    return this.o.writer && this.o.config.run.reportEvery > 0;
  }

  async write(status: RunStatus): Promise<void> {
    if (!this.enabled) return;
    try {
      await writeRunningReport(this.runDir, status);
    } catch (error) {
      if (this.warned) return;
      this.warned = true;
      process.emitWarning(`report.html was not rewritten during the run: ${(error as Error).message}`, 'ClampReportWarning');
    }
  }
}

export class EpochHooks {
  private readonly report: RunReport;

  constructor(
    private readonly config: TrainConfig,
    /** The epochs the run enters (schedule.epochs rounded up): the last one's hooks come at the run's end. */
    private readonly epochs: number,
    private readonly evaluation: RunEvaluation,
    private readonly checkpoints: RunCheckpoints,
    report?: RunReport,
  ) {
    this.report = report ?? new RunReport(path.dirname(checkpoints.file), { config, writer: checkpoints.writer });
  }

  /** After each whole epoch (`position` is the start of the next one); the last epoch's come with the run's end. */
  async afterEpoch(epoch: number, position: RunPosition, lastLoss: number): Promise<void> {
    const { epochs } = this;
    if (endsPeriodBeforeLast(epoch, this.config.eval.every, epochs)) await this.evaluation.run(epoch, position.step, true);
    if (endsPeriodBeforeLast(epoch, this.config.run.checkpointEvery, epochs)) await this.checkpoints.save(position, lastLoss);
    // After the monitor, so that the page shows this epoch's accuracy.
    if (endsPeriodBeforeLast(epoch, this.config.run.reportEvery, epochs)) await this.report.write(this.status('training', position));
  }

  /**
   * A checkpoint wherever the run ended (stopped or done); then, for a finished run, the final evaluation
   * and the checkpoint again, so that its metadata carries the final accuracy. Returns that evaluation.
   * The page of the run says where it stands at each of these points.
   */
  async afterRun(position: RunPosition, lastLoss: number, stopped: boolean): Promise<Evaluation | null> {
    await this.checkpoints.save(position, lastLoss);
    if (stopped) {
      await this.report.write(this.status('stopped', position));
      return null;
    }
    if (!this.config.eval.atEnd || !this.evaluation.evaluates) {
      await this.report.write(this.status('trained', position));
      return null;
    }
    await this.report.write(this.status('evaluating', position));
    const final = await this.evaluation.run(this.epochs - 1, position.step, false);
    if (final) {
      this.checkpoints.metrics.evaluation = final;
      await this.checkpoints.save(position, lastLoss);
    }
    await this.report.write(this.status('trained', position));
    return final;
  }

  private status(phase: RunStatus['phase'], position: RunPosition): RunStatus {
    return { phase, epochsDone: position.epoch, epochs: this.config.schedule.epochs, step: position.step };
  }
}
