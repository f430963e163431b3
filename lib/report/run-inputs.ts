// What the report reads from a run folder, read once: metrics.jsonl, the config (config.json, or the
// checkpoint's header where a run has none) and the dataset's class names.
import fs from 'node:fs/promises';
import path from 'node:path';
import { CHECKPOINT_FILE, readCheckpointMetadata } from '../checkpoint/checkpoint.js';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import { CONFIG_FILE, METRICS_FILE, RunFolderError } from '../run-folder/run-folder.js';
import { classNames as classNamesOf } from './class-names.js';
import { readMetrics, type EvaluationLine, type RunMetrics } from './metrics.js';

export interface RunInputs {
  /** The folder as the caller named it (the page shows it resolved). */
  runDir: string;
  metrics: RunMetrics;
  config: TrainConfig;
  /** The config as the run stored it, for the page's Config section (the parsed one has defaults filled in). */
  rawConfig: unknown;
  /** Class names by label; empty when the dataset has none. */
  names: string[];
  /** A class's name, or its label number where `names` has none. */
  className: (c: number) => string;
  /** The last evaluation, which the headline, the per-class figures and the manifolds show; null when the run logged none. */
  final: EvaluationLine | null;
}

const notRunFolder = (runDir: string, why: string) =>
  new RunFolderError(`${runDir} is not a run folder: ${why}; pass the --out folder of a \`clamp-native train\` run`);

async function readConfig(runDir: string): Promise<{ config: TrainConfig; raw: unknown }> {
  const file = path.join(runDir, CONFIG_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new RunFolderError(`${file} could not be read: ${(error as Error).message}`);
    // An older or copied run: the checkpoint's header carries the config too (its weights are not needed).
    const checkpointFile = path.join(runDir, CHECKPOINT_FILE);
    if (!(await fs.stat(checkpointFile).catch(() => null)))
      throw notRunFolder(runDir, `it has no ${CONFIG_FILE} (and no ${CHECKPOINT_FILE} to take the config from)`);
    raw = (await readCheckpointMetadata(checkpointFile)).config;
  }
  return { config: parseTrainConfig(raw, file), raw };
}

/** Throws RunFolderError when `runDir` is missing, is not a folder, or has no metrics.jsonl. */
export async function readRunInputs(runDir: string): Promise<RunInputs> {
  if (!(await fs.stat(runDir).catch(() => null))?.isDirectory()) throw notRunFolder(runDir, 'it does not exist or is not a folder');
  const metricsFile = path.join(runDir, METRICS_FILE);
  if (!(await fs.stat(metricsFile).catch(() => null))?.isFile()) throw notRunFolder(runDir, `it has no ${METRICS_FILE}`);

  const metrics = await readMetrics(metricsFile);
  const { config, raw } = await readConfig(runDir);
  const names = await classNamesOf(config.data);
  const evaluations = metrics.evaluations;
  return {
    runDir,
    metrics,
    config,
    rawConfig: raw,
    names,
    className: (c) => names[c] ?? String(c),
    final: evaluations.length > 0 ? evaluations[evaluations.length - 1]! : null,
  };
}
