// A training run's report: one self-contained report.html (inline CSS, charts and pictures as PNG data
// URIs, no scripts, nothing fetched) plus the same pictures as report/*.png, from what the run folder
// holds: config.json, metrics.jsonl and checkpoint.safetensors. Training also rewrites report.html at
// each epoch's end with the parts metrics.jsonl alone gives (writeRunningReport), so that a long run can
// be watched; either page replaces the last whole (a temporary file renamed over it), never half of it.
import path from 'node:path';
import { writeFileAtomically } from '../io/files.js';
import { REPORT_FILE, REPORT_FOLDER, RunFolderError } from '../run-folder/run-folder.js';
import { PNG_NAMES, renderFigures } from './figures.js';
import { NO_PNGS, PngFolder } from './png-folder.js';
import type { RunStatus } from './report-state.js';
import { readRunInputs } from './run-inputs.js';
import { reportPage } from './sections.js';
import { Stages } from './stages.js';

export { REPORT_FILE, REPORT_FOLDER, RunFolderError, type RunStatus };
/** Test images the embedding map shows by default. */
export const DEFAULT_MAP_IMAGES = 2000;

export interface ReportOptions {
  /** Test images on the embedding map (default 2,000; 0 leaves the map out). */
  mapImages?: number;
  /** Stops between stages (and during feature extraction) with an AbortError. */
  signal?: AbortSignal;
  /** A line per stage, with its time (for a CLI's stderr). */
  onProgress?: (message: string) => void;
}

export interface ReportResult {
  /** The report.html written. */
  html: string;
  /** The PNGs written under runDir/report. */
  pngs: string[];
}

/**
 * Writes runDir/report.html and runDir/report/*.png for the training run in `runDir`. Throws
 * RunFolderError when runDir is not a run folder (missing, or without metrics.jsonl). Parts that need
 * what the folder or this machine lacks (a checkpoint, the test split, the dataset) are left out, and the
 * report says why.
 */
export async function buildReport(runDir: string, options: ReportOptions = {}): Promise<ReportResult> {
  const { signal } = options;
  const mapImages = options.mapImages ?? DEFAULT_MAP_IMAGES;
  if (!Number.isInteger(mapImages) || mapImages < 0) throw new RangeError(`mapImages must be a whole number >= 0, got ${mapImages}`);
  const inputs = await readRunInputs(runDir);
  const pngs = await PngFolder.create(path.join(runDir, REPORT_FOLDER));
  const figures = await renderFigures(
    inputs,
    { kind: 'full', mapImages },
    { pngs, stages: new Stages(signal, options.onProgress ?? (() => {})) },
  );
  // Stages check for an abort only as they start: one during the last must still leave no new report.
  signal?.throwIfAborted();
  const htmlFile = path.join(runDir, REPORT_FILE);
  await writeFileAtomically(htmlFile, [Buffer.from(reportPage(inputs, figures))]);
  await pngs.removeUnwritten(PNG_NAMES);
  return { html: htmlFile, pngs: pngs.written };
}

/**
 * Rewrites runDir/report.html for a run under way: its charts and tables from metrics.jsonl, `status`'s
 * banner, and a reload every REFRESH_SECONDS unless stopped. It leaves out what needs the checkpoint's
 * features or the dataset (the embedding maps, the augmented views: seconds of work, and the checkpoint may
 * be epochs old), and it writes no report/*.png, which stay the full report's. Returns the file written.
 */
export async function writeRunningReport(runDir: string, status: RunStatus): Promise<string> {
  const inputs = await readRunInputs(runDir);
  const figures = await renderFigures(inputs, { kind: 'cheap' }, { pngs: NO_PNGS, stages: new Stages(undefined, () => {}) });
  const htmlFile = path.join(runDir, REPORT_FILE);
  await writeFileAtomically(htmlFile, [Buffer.from(reportPage(inputs, figures, status))]);
  return htmlFile;
}
