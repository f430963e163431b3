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
export { DEFAULT_FASHION_MNIST, loadIdxDataset, type IdxDatasetOptions, parseIdx, readIdx, type IdxArray } from './data/idx.js';
export { DatasetError } from './data/dataset-files.js';
export type { ImageDataset } from './data/image-dataset.js';
export { loadCifarDataset, type CifarOptions } from './data/cifar.js';
export { loadStl10Dataset, STL10_NO_LABEL } from './data/stl10.js';
export { decodeImage, imageFolderOptionsSchema, loadImageFolder, type ImageFolderOptions } from './data/image-folder.js';
export {
  distributedOptionsSchema,
  Trainer,
  trainerOptionsSchema,
  TrainingDivergedError,
  type DistributedOptions,
  type TrainerOptions,
  type TrainingStepResult,
} from './train/trainer.js';
export { FineTuner, fineTunerOptionsSchema, type FineTunerOptions, type FineTuneStepResult } from './train/fine-tuner.js';
export { fineTune, fineTuneCheckpoint, fineTuneOptionsSchema, type FineTuneOptions, type FineTuneResult } from './train/fine-tune-run.js';
export { balancedLabelSubset, datasetSubset } from './data/label-subset.js';
export { augment, augmentationSchema, multiViewBatch, type Augmentation, type AugmentationOptions } from './augment/pipeline.js';
export * as transforms from './augment/transforms.js';
export { Random } from './random.js';
export { MultiViewLoader, type Batch, type MultiViewLoaderOptions } from './augment/loader.js';
export {
  loadDataset,
  dataSchema,
  datasetImageSide,
  firstImages,
  DATASETS,
  type DataConfig,
  type DataOptions,
  type DatasetName,
} from './data/datasets.js';
export { optimiserSchema, type OptimiserOptions } from './config/optimiser.js';
export {
  mergeConfig,
  parseTrainConfig,
  readConfigFile,
  resolveTrainConfig,
  trainConfigSchema,
  type TrainConfig,
  type TrainConfigInput,
} from './config/train-config.js';
export { PRESETS, type PresetName } from './config/presets.js';
export { resumeTraining, train, type ResumeOptions, type TrainEvent, type TrainOptions, type TrainSummary } from './train/training-run.js';
export { type StateEntry } from './runtime/addon-types.js';
export {
  CHECKPOINT_FILE,
  CHECKPOINT_FORMAT,
  checkpointPath,
  readCheckpoint,
  readCheckpointMetadata,
  saveCheckpoint,
  type Checkpoint,
  type CheckpointMetadata,
  type RunPosition,
} from './checkpoint/checkpoint.js';
export {
  CheckpointError,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type NamedTensorData,
  type TensorDtype,
  type TensorInfo,
} from './checkpoint/safetensors.js';
export { CONFIG_FILE, METRICS_FILE, RunFolderError } from './run-folder/run-folder.js';
export { ConfigError } from './config/errors.js';
export { knnAccuracy, knnOptionsSchema, knnVotes, scoreVotes, type KnnOptions, type KnnResult, type LabelledFeatures } from './eval/knn.js';
export { datasetFeatures, type DatasetFeatures } from './eval/features.js';
export { linearProbe, linearProbeOptionsSchema, type LinearProbeOptions, type LinearProbeResult } from './eval/linear-probe.js';
export {
  evaluate,
  evaluateCheckpoint,
  type CheckpointEvaluation,
  type Evaluation,
  type KnnSummary,
  type LinearProbeSummary,
} from './eval/evaluate.js';
export { argmaxRows, classManifolds, confusionMatrix, perClassAccuracy, topKAccuracy, type ClassManifolds } from './eval/diagnostics.js';
export {
  Encoder,
  EncoderError,
  encoderLoadOptionsSchema,
  type EmbedInput,
  type Embeddings,
  type EncoderLoadOptions,
  type PixelInput,
} from './encode/encoder.js';
export { EmbeddingIndex, type Neighbour } from './encode/embedding-index.js';
export {
  embeddingServerOptionsSchema,
  startEmbeddingServer,
  type EmbeddingServer,
  type EmbeddingServerOptions,
  type EmbeddingServerSettings,
  type ServingEncoder,
} from './serve/server.js';
export {
  exportOnnx,
  OnnxExportError,
  onnxExportOptionsSchema,
  ONNX_EXPORT_FORMAT,
  ONNX_INPUT,
  ONNX_OUTPUT,
  type OnnxExportOptions,
  type OnnxExportResult,
} from './export/onnx.js';
export { effectiveRank } from './eval/diagnostics.js';
export { decodeNpy, encodeNpy, NpyError } from './encode/npy.js';
export { buildReport, DEFAULT_MAP_IMAGES, REPORT_FILE, REPORT_FOLDER, type ReportOptions, type ReportResult } from './report/report.js';
export { pca, type PcaOptions, type PcaResult } from './report/pca.js';
