// The report's PNG folder (runDir/report): the pictures this report writes, and the ones an earlier
// report left there that this one did not write.
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomically } from '../io/files.js';

/** Where the report's pictures go besides the page: the PNG folder, or nowhere (a page rewritten mid-run, report-state.ts). */
export interface PngSink {
  save(name: string, png: Buffer): Promise<void>;
}

/** Keeps no files: a page rewritten at each epoch's end carries its pictures inline and leaves report/ to the full report. */
export const NO_PNGS: PngSink = { save: async () => {} };

export class PngFolder implements PngSink {
  /** The files written so far, in the order written (the report returns them). */
  readonly written: string[] = [];

  private constructor(readonly folder: string) {}

  static async create(folder: string): Promise<PngFolder> {
    await fs.mkdir(folder, { recursive: true });
    return new PngFolder(folder);
  }

  async save(name: string, png: Buffer): Promise<void> {
    const file = this.file(name);
    await writeFileAtomically(file, [png]);
    this.written.push(file);
  }

  async removeUnwritten(names: readonly string[]): Promise<void> {
    // PNGs an earlier report wrote that this one did not (a map that is now skipped, say) would mislead.
    await Promise.all(
      names
        .map((name) => this.file(name))
        .filter((file) => !this.written.includes(file))
        .map((file) => fs.rm(file, { force: true })),
    );
  }

  private file(name: string): string {
    return path.join(this.folder, `${name}.png`);
  }
}
