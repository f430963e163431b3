// metrics.jsonl: the run's step, epoch, evaluation and divergence lines, appended as they happen so
// that a run which dies keeps every line written before it died.
import fs from 'node:fs/promises';
import type { RunPosition } from '../checkpoint/checkpoint.js';
import { writeFileAtomically } from '../io/files.js';

export class MetricsLog {
  private constructor(private readonly handle: fs.FileHandle | null) {}

  /** Appends to `file`, creating it when there is none. */
  static async open(file: string): Promise<MetricsLog> {
    return new MetricsLog(await fs.open(file, 'a'));
  }

  /** A log that writes nothing: a data-parallel rank other than 0 leaves the run folder to rank 0. */
  static silent(): MetricsLog {
    return new MetricsLog(null);
  }

  /** Drops lines past a checkpoint (written by a run that went on after it and then died), so a resumed run does not repeat them. */
  static async trimPast(file: string, position: RunPosition): Promise<void> {
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

  async write(entry: Record<string, unknown>): Promise<void> {
    await this.handle?.write(`${JSON.stringify(entry)}\n`);
  }

  async close(): Promise<void> {
    await this.handle?.close();
  }
}
