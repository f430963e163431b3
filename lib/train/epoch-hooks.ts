// What a run does between its epochs and after its last step: evaluations and checkpoints, each on its
// own schedule (in the manner of solo-learn's callbacks), so that the training loop itself only trains.
import { saveCheckpoint, type Checkpoint, type RunPosition } from '../checkpoint/checkpoint.js';
import type { TrainConfig } from '../config/train-config.js';
import type { ImageDataset } from '../data/image-dataset.js';
import { evaluate, type Evaluation } from '../eval/evaluate.js';
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

  /** `monitor`: kNN alone, cheap enough to repeat mid-run. Epoch -1 is before training. */
  async run(epoch: number, step: number, monitor: boolean): Promise<Evaluation | null> {
    const { trainer, trainSet, testSet, config, signal, writer, metrics, emit } = this.o;
    if (!testSet || !writer) return null;
    emit({ kind: 'evaluating', what: monitor || config.eval.linearProbe === false ? 'kNN' : 'kNN and the linear probe' });
    const result = await evaluate(trainer, trainSet, testSet, config, monitor, signal);
    await metrics.write({ kind: 'evaluation', epoch, step, ...result });
    emit({ kind: 'evaluation', epoch, step, evaluation: result });
    return result;
  }
}

/** Whether epoch `epoch` (from 0) ends a period of `every` epochs (0: never) before the run's last epoch, whose own hooks come at the end of the run. */
export function endsPeriodBeforeLast(epoch: number, every: number, epochs: number): boolean {
  return every > 0 && (epoch + 1) % every === 0 && epoch + 1 !== epochs;
}

export class EpochHooks {
  constructor(
    private readonly config: TrainConfig,
    private readonly evaluation: RunEvaluation,
    private readonly checkpoints: RunCheckpoints,
  ) {}

  /** After each whole epoch (`position` is the start of the next one); the last epoch's come with the run's end. */
  async afterEpoch(epoch: number, position: RunPosition, lastLoss: number): Promise<void> {
    const { epochs } = this.config.schedule;
    if (endsPeriodBeforeLast(epoch, this.config.eval.every, epochs)) await this.evaluation.run(epoch, position.step, true);
    if (endsPeriodBeforeLast(epoch, this.config.run.checkpointEvery, epochs)) await this.checkpoints.save(position, lastLoss);
  }

  /**
   * A checkpoint wherever the run ended (stopped or done); then, for a finished run, the final evaluation
   * and the checkpoint again, so that its metadata carries the final accuracy. Returns that evaluation.
   */
  async afterRun(position: RunPosition, lastLoss: number, stopped: boolean): Promise<Evaluation | null> {
    await this.checkpoints.save(position, lastLoss);
    if (stopped || !this.config.eval.atEnd) return null;
    const final = await this.evaluation.run(this.config.schedule.epochs - 1, position.step, false);
    if (final) {
      this.checkpoints.metrics.evaluation = final;
      await this.checkpoints.save(position, lastLoss);
    }
    return final;
  }
}
