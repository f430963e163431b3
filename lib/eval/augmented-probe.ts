// The linear probe with the paper's simple augmentation: the backbone frozen (evaluation mode), a
// linear head trained through a random crop and flip of every training image, features recomputed
// every batch, at the learning rate the feature probe's sweep chose; every test image scored once,
// un-augmented. Slower than the feature probe by the epochs of backbone passes it adds.
import type { TrainConfig } from '../config/train-config.js';
import type { ImageDataset } from '../data/image-dataset.js';
import {
  classifierLoader,
  cropAndFlip,
  DEFAULT_CROP_SCALE,
  fineTunerFor,
  scoreClassifier,
  trainClassifier,
  type ClassifierEpoch,
  type ClassifierScore,
} from '../train/fine-tune-run.js';
import type { StateEntry } from '../runtime/addon-types.js';
import type { FineTuner } from '../train/fine-tuner.js';

export interface AugmentedProbeSummary {
  top1: number;
  top5: number;
  epochs: number;
  learningRate: number;
}

export interface AugmentedProbeOptions {
  learningRate: number;
  epochs: number;
  batchSize: number;
  momentum: number;
  weightDecay: number;
  seed: number;
  /** Backbone features [train.count, dim] of the un-augmented training images: the head's standardisation. */
  trainFeatures: Float32Array;
  workers?: number | undefined;
  signal?: AbortSignal | undefined;
  /** After each epoch of the head's training. */
  onEpoch?: ((epoch: ClassifierEpoch) => void) | undefined;
}

export async function augmentedLinearProbe(
  backbone: StateEntry[],
  config: TrainConfig,
  train: ImageDataset,
  test: ImageDataset,
  options: AugmentedProbeOptions,
): Promise<AugmentedProbeSummary & ClassifierScore> {
  const classes = Math.max(train.classes, test.classes);
  const evaluation = config.augment[0]!;
  const loader = classifierLoader(train, cropAndFlip(evaluation, DEFAULT_CROP_SCALE, 0.5), options);
  let fineTuner: FineTuner | undefined;
  try {
    fineTuner = await fineTunerFor(config, train.channels, classes, {
      // The feature probe's optimiser: SGD with plain momentum, decay on the weights only.
      optimiser: { name: 'sgd', momentum: options.momentum, nesterov: false, weightDecay: options.weightDecay },
      schedule: { peakLr: options.learningRate, totalSteps: options.epochs * loader.batchesPerEpoch },
      backboneLrScale: 0,
    });
    await fineTuner.loadBackbone(backbone);
    await fineTuner.standardise(options.trainFeatures);
    await trainClassifier(fineTuner, loader, options);
    const score = await scoreClassifier(fineTuner, test, evaluation, classes, options);
    return { ...score, epochs: options.epochs, learningRate: options.learningRate };
  } finally {
    fineTuner?.dispose();
    await loader.close();
  }
}
