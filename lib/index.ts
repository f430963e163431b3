// clamp-native: CLAMP (Contrastive Learning As Manifold Packing) on LibTorch, from TypeScript.
export {
  packingLoss,
  packingLossReference,
  type FloatArray,
  type PackingLossArguments,
  type PackingLossResult,
  type PackingLossShape,
  type PackingStats,
} from './loss/packing-loss.js';
export { runPackingDynamics, type PackingDynamicsOptions, type PackingDynamicsStep } from './loss/packing-dynamics.js';
export { packingLossOptionsSchema, type PackingLossOptions, type ResolvedPackingLossOptions } from './config/packing-loss-options.js';
export { doctor, formatDoctorReport, type BlasInfo, type DoctorReport } from './runtime/doctor.js';
export { getNumThreads, NativeAddonError, setNumThreads } from './runtime/native.js';
export {
  DEFAULT_FASHION_MNIST,
  DatasetError,
  loadIdxDataset,
  parseIdx,
  readIdx,
  type IdxArray,
  type ImageDataset,
} from './data/idx.js';
export { Trainer, trainerOptionsSchema, type TrainerOptions, type TrainingStepResult } from './train/trainer.js';
export { augment, augmentationSchema, multiViewBatch, type Augmentation, type AugmentationOptions } from './augment/pipeline.js';
export * as transforms from './augment/transforms.js';
export { Random } from './random.js';
export { MultiViewLoader, type Batch, type MultiViewLoaderOptions } from './augment/loader.js';
