// A run's checkpoint: the trainer's whole state (backbone under torchvision's names, projector,
// optimiser, step count) as safetensors, with the config, the position in the data and the latest
// metrics as JSON strings in the header's metadata.
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import type { StateEntry } from '../runtime/addon-types.js';
import { CheckpointError, readSafetensors, readSafetensorsHeader, writeSafetensors, type NamedTensorData } from './safetensors.js';

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

/** What a checkpoint's header says about its run. */
export interface CheckpointMetadata {
  config: unknown;
  position: RunPosition;
  metrics: Record<string, unknown>;
}

export interface Checkpoint extends CheckpointMetadata {
  state: StateEntry[];
}

/**
 * Writes the trainer's state atomically. A state holding NaN or infinity (an optimiser step that
 * overflowed the weights) is refused before anything is written, so the previous checkpoint stays.
 */
export async function saveCheckpoint(
  file: string,
  trainer: { state(): Promise<StateEntry[]> },
  content: { config: TrainConfig; position: RunPosition; metrics: Record<string, unknown> },
): Promise<void> {
  const state = await trainer.state();
  for (const entry of state) {
    const index = entry.dtype === 'float32' ? firstNonFinite(entry.data as Float32Array) : -1;
    if (index >= 0) {
      throw new CheckpointError(
        `training diverged before step ${content.position.step}: ${entry.name} holds ${entry.data[index]} at index ${index}, so no checkpoint was written ` +
          `(${file} is as it was). Train again with a lower learning rate (schedule.baseLr) or a longer warmup (schedule.warmupEpochs).`,
      );
    }
  }
  await writeSafetensors(file, state, {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(content.config),
    position: JSON.stringify(content.position),
    metrics: JSON.stringify(content.metrics),
  });
}

/** The config, position and metrics of a checkpoint, from its header alone: the weights are not read. */
export async function readCheckpointMetadata(file: string): Promise<CheckpointMetadata> {
  return parseCheckpointMetadata(file, (await readSafetensorsHeader(file)).metadata);
}

/** Reads a checkpoint clamp-native wrote; the config is returned unvalidated (the caller parses it). */
export async function readCheckpoint(file: string): Promise<Checkpoint> {
  const { tensors, metadata } = await readSafetensors(file);
  const content = parseCheckpointMetadata(file, metadata);
  const state = tensors.map((t) => {
    if (t.dtype !== 'float32' && t.dtype !== 'int64')
      throw new CheckpointError(`${file}: tensor ${t.name} is ${t.dtype}; clamp-native checkpoints hold float32 and int64`);
    if (t.dtype === 'float32') refuseNonFinite(file, t);
    return t as StateEntry;
  });
  return { ...content, state };
}

/** A checkpoint with its run's config validated: what evaluation, fine-tuning, serving and export start from. */
export interface TrainedCheckpoint {
  file: string;
  checkpoint: Checkpoint;
  config: TrainConfig;
}

/** Reads a checkpoint (a file, or the run folder holding it) and validates the config it was trained under. */
export async function readTrainedCheckpoint(checkpointOrRunDir: string): Promise<TrainedCheckpoint> {
  const file = await checkpointPath(checkpointOrRunDir);
  const checkpoint = await readCheckpoint(file);
  return { file, checkpoint, config: parseTrainConfig(checkpoint.config, `${file} config`) };
}

/** The channels the checkpoint's backbone takes (its first convolution's input), or an error saying the file holds no backbone. */
export function backboneInputChannels({ file, checkpoint }: TrainedCheckpoint): number {
  const conv1 = checkpoint.state.find((t) => t.name === 'conv1.weight');
  if (conv1?.shape.length !== 4)
    throw new CheckpointError(`${file} has no backbone (conv1.weight is missing); it is not a clamp-native training checkpoint`);
  return conv1.shape[1]!;
}

function parseCheckpointMetadata(file: string, metadata: Record<string, string>): CheckpointMetadata {
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(
      `${file} is a safetensors file but not a clamp-native checkpoint (its metadata has no format '${CHECKPOINT_FORMAT}')`,
    );
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
  const metrics = json('metrics');
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) {
    throw new CheckpointError(`${file}: the checkpoint's metrics metadata is not a JSON object; the file is corrupt`);
  }
  return { config: json('config'), position, metrics: metrics as Record<string, unknown> };
}

/**
 * A NaN or infinite weight poisons every output computed from it, and training never writes one unless
 * it diverged, so such a checkpoint is refused rather than served.
 */
function refuseNonFinite(file: string, tensor: NamedTensorData): void {
  const { data } = tensor as { data: Float32Array };
  const index = firstNonFinite(data);
  if (index >= 0) {
    throw new CheckpointError(
      `${file}: tensor ${tensor.name} holds ${data[index]} at index ${index} (of ${data.length}): the run diverged before this ` +
        'checkpoint was written. Use an earlier checkpoint of the run, or train again with a lower learning rate.',
    );
  }
}

/** The index of the first NaN or ±Infinity, or -1. */
function firstNonFinite(data: Float32Array): number {
  for (let index = 0; index < data.length; index++) {
    const value = data[index]!;
    // x - x is 0 for every finite x and NaN for NaN and ±Infinity: one subtraction, no call.
    if (value - value !== 0) return index;
  }
  return -1;
}
