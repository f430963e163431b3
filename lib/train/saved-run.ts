// A saved run, ready to evaluate or fine-tune: its checkpoint, its config, and both splits of its
// dataset (or of another folder, with the data section overridden).
import { readTrainedCheckpoint, type Checkpoint } from '../checkpoint/checkpoint.js';
import { validationError } from '../config/errors.js';
import type { TrainConfig } from '../config/train-config.js';
import { dataSchema, loadDataset, type DataOptions } from '../data/datasets.js';
import type { ImageDataset } from '../data/image-dataset.js';

/** A saved run: its checkpoint, its config (data section overridden), and both splits of its dataset. */
export interface LoadedRun {
  file: string;
  checkpoint: Checkpoint;
  config: TrainConfig;
  train: ImageDataset;
  test: ImageDataset;
}

/** Reads a checkpoint (a file, or the run folder holding it) and loads its run's dataset, or `data` overrides of it. */
export async function loadRun(checkpointOrRunDir: string, data: DataOptions = {}): Promise<LoadedRun> {
  const { file, checkpoint, config: saved } = await readTrainedCheckpoint(checkpointOrRunDir);
  const parsed = dataSchema.safeParse({ ...saved.data, ...data }, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'data');
  const config = { ...saved, data: parsed.data };
  const [train, test] = await Promise.all([loadDataset(config.data, 'train'), loadDataset(config.data, 'test')]);
  if (!train || !test) throw new RangeError(`evaluation needs a test split: set data.testPath for an image folder`);
  return { file, checkpoint, config, train, test };
}
