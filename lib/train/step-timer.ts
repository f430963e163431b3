// Step durations, and the time left that the progress line shows.

export class StepTimer {
  private stepStarted = performance.now();
  /** A running mean, so that the ETA follows the pace without jumping at every slow or fast step. */
  private secondsPerStep = 0;

  /** Starts timing afresh, keeping the mean pace: the gap between two epochs is not a step. */
  restart(): void {
    this.stepStarted = performance.now();
  }

  /** Ends the step under way (and starts the next): its seconds. */
  lap(): number {
    const now = performance.now();
    const seconds = (now - this.stepStarted) / 1000;
    this.stepStarted = now;
    this.secondsPerStep = this.secondsPerStep === 0 ? seconds : 0.9 * this.secondsPerStep + 0.1 * seconds;
    return seconds;
  }

  etaSeconds(stepsLeft: number): number {
    return this.secondsPerStep * stepsLeft;
  }
}
