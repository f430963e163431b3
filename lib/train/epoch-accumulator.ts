// One epoch's running sums, from which its metrics.jsonl line is made: means of the per-step figures
// rather than the last step's, which one odd batch would skew.
import type { TrainingStepResult } from './trainer.js';

/** The per-step figures the epoch line averages, in the order it lists them. */
export type EpochMeans = {
  loss: number;
  energy: number;
  meanRadius: number;
  meanDistance: number;
  contactsPerImage: number;
  activity: number;
  gradNorm: number;
};

/** An epoch's line in metrics.jsonl (also the latest figures a checkpoint carries). */
export type EpochSummary = { kind: 'epoch'; epoch: number } & EpochMeans & {
    lr: number;
    steps: number;
    viewImagesPerSecond: number;
    seconds: number;
  };

export class EpochAccumulator {
  private readonly started = performance.now();
  private readonly sums: EpochMeans = { loss: 0, energy: 0, meanRadius: 0, meanDistance: 0, contactsPerImage: 0, activity: 0, gradNorm: 0 };
  private lastLearningRate = 0;
  steps = 0;
  /** View images of the whole group (every rank's share of each global batch). */
  viewImages = 0;

  add(result: TrainingStepResult, viewImages: number): void {
    for (const key of ['energy', 'meanRadius', 'meanDistance', 'contactsPerImage', 'activity'] as const)
      this.sums[key] += result.stats[key];
    this.sums.loss += result.loss;
    this.sums.gradNorm += result.gradNorm;
    this.lastLearningRate = result.learningRate;
    this.steps++;
    this.viewImages += viewImages;
  }

  /** Seconds since the epoch began. */
  elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** `seconds` is passed in, not measured here, so that the line and the run's throughput count the same time. */
  summary(epoch: number, seconds: number): EpochSummary {
    const means = Object.fromEntries(Object.entries(this.sums).map(([key, sum]) => [key, sum / Math.max(1, this.steps)])) as EpochMeans;
    return {
      kind: 'epoch',
      epoch,
      ...means,
      lr: this.lastLearningRate,
      steps: this.steps,
      viewImagesPerSecond: this.viewImages / seconds,
      seconds,
    };
  }
}
