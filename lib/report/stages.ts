// The report's slow stages (charts, features, the grid), each a point where an abort stops the report
// and a progress line with its time, for a CLI's stderr.

export class Stages {
  constructor(
    readonly signal: AbortSignal | undefined,
    /** Also for lines that are no stage's time (a part left out, and why). */
    readonly progress: (message: string) => void,
  ) {}

  async timed<T>(what: string, work: () => Promise<T>): Promise<T> {
    this.signal?.throwIfAborted();
    const started = performance.now();
    const result = await work();
    this.progress(`${what} (${((performance.now() - started) / 1000).toFixed(2)} s)`);
    return result;
  }
}
