// A run folder: what training writes (config.json, metrics.jsonl, checkpoint.safetensors) and what
// reads it back (resume, eval, the report, serving). Training refuses to write over another run
// unless asked, and clears the temporaries a killed process leaves behind.
import fs from 'node:fs/promises';
import path from 'node:path';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';

export const METRICS_FILE = 'metrics.jsonl';
export const CONFIG_FILE = 'config.json';
export const REPORT_FILE = 'report.html';
/** The report's images and data, beside report.html. */
export const REPORT_FOLDER = 'report';

/** The files that make a folder a run: any one of them means another run lives there. */
const RUN_FILES = [CHECKPOINT_FILE, METRICS_FILE, CONFIG_FILE] as const;

/** writeFileAtomically's temporary names: `<file>.tmp-<pid>-<8 hex digits>`. */
const TEMPORARY = /\.tmp-\d+-[0-9a-f]{8}$/;

/** A folder that is not the run it should be (none there, or one that must not be overwritten); the message says what to pass. */
export class RunFolderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunFolderError';
  }
}

async function entries(runDir: string): Promise<string[] | null> {
  try {
    return await fs.readdir(runDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ENOTDIR') throw new RunFolderError(`${runDir} is a file, not a run folder; choose another --out`);
    throw new RunFolderError(`cannot read the run folder ${runDir}: ${(error as Error).message}`);
  }
}

/** The run files `runDir` already holds (empty when the folder is new, empty, or holds something else). */
export async function existingRunFiles(runDir: string): Promise<string[]> {
  const names = new Set(await entries(runDir));
  return RUN_FILES.filter((name) => names.has(name));
}

/**
 * Refuses to start a new run in a folder that holds one, unless `overwrite`: then that run's files
 * (and its report) are removed first, so a crash of the new run cannot leave the old checkpoint beside
 * the new config.
 */
export async function claimRunFolder(runDir: string, overwrite: boolean): Promise<void> {
  const found = await existingRunFiles(runDir);
  if (found.length > 0 && !overwrite) {
    throw new RunFolderError(
      `${runDir} already holds a run (${found.join(', ')}): continue it with --resume ${runDir}, ` +
        `choose another --out, or pass --overwrite to replace it (its files are deleted)`,
    );
  }
  for (const name of [...found, REPORT_FILE, REPORT_FOLDER]) await fs.rm(path.join(runDir, name), { recursive: true, force: true });
  await fs.mkdir(runDir, { recursive: true });
}

/**
 * Removes the temporary files a killed writer left (a kill -9 between writing and renaming): nothing
 * else writes `*.tmp-<pid>-<hex>` names, and a live writer of this run would be this process.
 */
export async function removeStaleTemporaries(runDir: string): Promise<string[]> {
  const stale = ((await entries(runDir)) ?? []).filter((name) => TEMPORARY.test(name));
  for (const name of stale) await fs.rm(path.join(runDir, name), { force: true });
  return stale;
}

/** Why `checkpointOrRunDir` cannot be resumed, when it is a folder without a checkpoint; null when it has one or is a file. */
export async function missingCheckpointReason(checkpointOrRunDir: string): Promise<string | null> {
  const names = await entries(checkpointOrRunDir).catch(() => null);
  if (names === null) {
    const exists = await fs.stat(checkpointOrRunDir).then(
      () => true,
      () => false,
    );
    return exists ? null : `there is no run folder or checkpoint at ${checkpointOrRunDir}`;
  }
  if (names.includes(CHECKPOINT_FILE)) return null;
  const started = names.includes(CONFIG_FILE) || names.includes(METRICS_FILE);
  return started
    ? `${checkpointOrRunDir} holds no checkpoint yet: the run stopped before writing its first one (checkpoints are written every run.checkpointEvery epochs, on Ctrl-C and SIGTERM, and at the end). Start it afresh with: clamp-native train --out ${checkpointOrRunDir} --overwrite (with the same options)`
    : `${checkpointOrRunDir} is not a run folder (no ${CHECKPOINT_FILE}); pass the folder that training wrote, or a checkpoint file`;
}
