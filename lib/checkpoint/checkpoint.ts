// A run's checkpoint: the trainer's whole state (backbone under torchvision's names, projector,
// optimiser, step count) as safetensors, with the config, the position in the data and the latest
// metrics as JSON strings in the header's metadata.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import type { StateEntry, Trainer } from '../train/trainer.js';
import { CheckpointError, readSafetensors, writeSafetensors } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'clamp-native/1';
/** The checkpoint's name inside a run folder. */
export const CHECKPOINT_FILE = 'checkpoint.safetensors';

/** A checkpoint file given as itself or as the run folder that holds it. */
export async function checkpointPath(checkpointOrRunDir: string): Promise<string> {
  const isFolder = (await fs.stat(checkpointOrRunDir).catch(() => null))?.isDirectory() ?? false;
  return isFolder ? path.join(checkpointOrRunDir, CHECKPOINT_FILE) : checkpointOrRunDir;
}

/** Where training stands: the next batch to train on is batch `batch` of epoch `epoch` (0-based). */
export interface RunPosition {
  epoch: number;
  batch: number;
  step: number;
}

export interface Checkpoint {
  config: unknown;
  position: RunPosition;
  metrics: Record<string, unknown>;
  state: StateEntry[];
}

export async function saveCheckpoint(file: string, trainer: Trainer, content: { config: TrainConfig; position: RunPosition; metrics: Record<string, unknown> }): Promise<void> {
  const state = await trainer.state();
  await writeSafetensors(file, state, {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(content.config),
    position: JSON.stringify(content.position),
    metrics: JSON.stringify(content.metrics),
  });
}

/** Reads a checkpoint clamp-native wrote; the config is returned unvalidated (the caller parses it). */
export async function readCheckpoint(file: string): Promise<Checkpoint> {
  const { tensors, metadata } = await readSafetensors(file);
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(`${file} is a safetensors file but not a clamp-native checkpoint (its metadata has no format '${CHECKPOINT_FORMAT}')`);
  }
  const json = (key: string) => {
    try {
      return JSON.parse(metadata[key] ?? '') as unknown;
    } catch {
      throw new CheckpointError(`${file}: the checkpoint's ${key} metadata is missing or not JSON; the file is corrupt`);
    }
  };
  const position = json('position') as RunPosition;
  if (![position?.epoch, position?.batch, position?.step].every((n) => Number.isInteger(n) && n >= 0)) {
    throw new CheckpointError(`${file}: the checkpoint's position metadata is malformed`);
  }
  const state = tensors.map((t) => {
    if (t.dtype !== 'float32' && t.dtype !== 'int64') throw new CheckpointError(`${file}: tensor ${t.name} is ${t.dtype}; clamp-native checkpoints hold float32 and int64`);
    return t as StateEntry;
  });
  return { config: json('config'), position, metrics: json('metrics') as Record<string, unknown>, state };
}
