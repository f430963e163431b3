// The whole TypeScript face of the addon (clamp_native.node): every function, object, option and
// result the binding (native/src/addon/) defines, typed here once. The domain modules import these
// types; this file imports none of them, so a field renamed on either side fails to compile instead of
// failing at run time. Keep it in step with native/src/addon/arguments.h and the *_binding.cpp files,
// which read the option objects' fields by these names.

export interface PackingStats {
  /** E, the packing energy before the log. */
  energy: number;
  /** Mean over images of r_i / rs. */
  meanRadius: number;
  /** Mean centre distance d_ij over ordered pairs i != j. */
  meanDistance: number;
  /** Ordered contact pairs divided by the batch size. */
  contactsPerImage: number;
  /** Fraction of images with at least one contact partner. */
  activity: number;
  /** Fraction of views whose nearest sub-manifold centre is their own image's. */
  nearestCentreAccuracy: number;
}

export interface TrainingStepResult {
  step: number;
  loss: number;
  learningRate: number;
  gradNorm: number;
  /** The pair-pass diagnostics (nearest-centre accuracy is not computed per step). */
  stats: Omit<PackingStats, 'nearestCentreAccuracy'>;
}

/** One named tensor of a trainer's state, in row-major order. */
export interface StateEntry {
  name: string;
  dtype: 'float32' | 'int64';
  shape: number[];
  data: Float32Array | BigInt64Array;
}

export interface FineTuneStepResult {
  step: number;
  /** Mean cross-entropy of the batch, before the update. */
  loss: number;
  /** The head's; the backbone's is this times backboneLrScale. */
  learningRate: number;
  /** Top-1 on the batch, before the update. */
  accuracy: number;
}

/** The backbone fields every network-building call reads (arguments.h read_backbone_options). */
export interface NativeBackboneOptions {
  backbone: string;
  stem: 'imagenet' | 'cifar' | 'small';
  inChannels: number;
  /** Overrides of the named backbone's stages. */
  widths?: number[] | undefined;
  blocks?: number[] | undefined;
}

/** The optimiser as lib/config/optimiser.ts's nativeOptimiserOptions flattens it: every field present. */
export interface NativeOptimiserOptions {
  name: string;
  weightDecay: number;
  momentum: number;
  eta: number;
  nesterov: boolean;
  beta1: number;
  beta2: number;
  eps: number;
}

/** A warmup-cosine schedule (arguments.h read_schedule). */
export interface NativeSchedule {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  startLr: number;
  finalLr: number;
}

/** createTrainer's options (trainer_binding.cpp read_training_options). */
export interface NativeTrainerOptions extends NativeBackboneOptions {
  projectorHidden: number[];
  projectorOut: number;
  views: number;
  seed: number;
  loss: NativePackingLossOptions;
  optimiser: NativeOptimiserOptions;
  schedule: NativeSchedule;
  device: string;
  precision: string;
  memoryFormat: string;
  syncBatchNorm: boolean;
}

/** createFineTuner's options (fine_tuner_binding.cpp read_fine_tune_options). */
export interface NativeFineTunerOptions extends NativeBackboneOptions {
  classes: number;
  optimiser: NativeOptimiserOptions;
  schedule: NativeSchedule;
  backboneLrScale: number;
  device: string;
  seed: number;
}

/** createEncoder's options (encoder_binding.cpp read_encoder_options). */
export interface NativeEncoderOptions extends NativeBackboneOptions {
  imageSize: number;
  mean: number[];
  std: number[];
  device: string;
  precision: string;
  maxBatch: number;
}

/** linearProbe's options (eval_binding.cpp). */
export interface NativeLinearProbeOptions {
  classes: number;
  epochs: number;
  batchSize: number;
  learningRates: number[];
  momentum: number;
  weightDecay: number;
  validationFraction: number;
  seed: number;
}

/** The caching CPU allocator's state (native/src/core/memory/caching_cpu_allocator.h). */
export interface NativeCpuMemory {
  /** Whether LibTorch's CPU tensors come from it (installed when the addon loads). */
  cachingAllocator: boolean;
  /** Freed blocks held for reuse, in no tensor. */
  cachedBytes: number;
  cachedBlocks: number;
  /** The most it holds for reuse (a quarter of physical memory, at most 4 GiB). */
  limitBytes: number;
  /** Allocations served from the cache, and those that went to malloc. */
  reused: number;
  allocated: number;
}

export interface NativeRuntimeInfo {
  torchVersion: string;
  parallelInfo: string;
  torchConfig: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  /** Described only by a build with the CUDA kernels (build.cudaKernels). */
  cudaDevices: CudaDeviceInfo[];
  numThreads: number;
  build: {
    buildSystem: string;
    compiler: string;
    buildType: string;
    cxxStandard: number;
    /** libstdc++'s dual ABI; null with another standard library. */
    cxx11Abi: boolean | null;
    napiVersion: number;
    /** Data-parallel training: 'gloo' when the build has c10d's Gloo process group. */
    distributed: 'gloo' | 'none';
    /** Built with the fused loss's CUDA kernels (a LibTorch with CUDA and nvcc at build time). */
    cudaKernels: boolean;
  };
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** "8.0" Ampere, "9.0" Hopper: bf16 autocast is the default from 8.0. */
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
}

/** How a trainer computes, resolved from its precision and memoryFormat options on its device. */
export interface ComputeSettings {
  bf16Autocast: boolean;
  channelsLast: boolean;
}

export interface NativePackingLossOptions {
  rs: number;
  potPow: number;
  minMargin: number;
  maxRange: number;
  lw0: number;
  lw1: number;
  log: boolean;
}

/**
 * 'fused': every diagnostic; 'fused-pair-pass': the diagnostics that come free with the loss (no
 * nearest-centre accuracy, which costs a [m*b, d] x [d, b] product); 'unfused': the autograd yardstick.
 */
export type PackingLossMode = 'fused' | 'fused-pair-pass' | 'unfused';

/** A trainer the addon built (see lib/train/trainer.ts for the checked API over it). */
export interface NativeTrainer {
  step(images: Float32Array, shape: number[]): Promise<TrainingStepResult>;
  features(images: Float32Array, shape: number[]): Promise<Float32Array>;
  state(): Promise<StateEntry[]>;
  loadState(entries: StateEntry[]): Promise<void>;
  distribute(options: { rank: number; worldSize: number; masterAddr: string; masterPort: number; timeoutMs: number }): Promise<void>;
  anyRank(flag: boolean): Promise<boolean>;
  /** Lets go of the trainer now, or when the calls already queued have run; later calls throw. */
  dispose(): void;
  readonly stepsTaken: number;
  readonly featureDim: number;
  readonly computeSettings: ComputeSettings;
}

/** A fine-tuner the addon built (see lib/train/fine-tuner.ts for the checked API over it). */
export interface NativeFineTuner {
  loadBackbone(entries: StateEntry[]): Promise<void>;
  features(images: Float32Array, shape: number[]): Promise<Float32Array>;
  standardise(features: Float32Array, dim: number): Promise<void>;
  step(images: Float32Array, shape: number[], labels: Uint8Array | Int32Array): Promise<FineTuneStepResult>;
  logits(images: Float32Array, shape: number[]): Promise<Float32Array>;
  state(): Promise<StateEntry[]>;
  /** Lets go of the fine-tuner now, or when the calls already queued have run; later calls throw. */
  dispose(): void;
  readonly stepsTaken: number;
  readonly featureDim: number;
}

/** A serving encoder the addon built (see lib/encode/encoder.ts for the checked API over it). */
export interface NativeEncoder {
  /** uint8 [n, H, W, C] or float32 [n, C, H, W] in [0, 1] -> features [n, featureDim], over the result's own memory. */
  embed(images: Uint8Array | Float32Array, shape: number[]): Promise<Float32Array>;
  /** Frees the network now, or when the embeddings already queued have run; later calls throw. */
  dispose(): void;
  readonly featureDim: number;
}

/** The addon's surface: argument checks happen again in C++, but lib/ validates first. */
export interface NativeAddon {
  runtimeInfo(): NativeRuntimeInfo;
  setNumThreads(threads: number): void;
  /**
   * Before the process exits: waits up to waitMs for the running native job, then starts no other. A job
   * still running then would crash under exit()'s destructors: the process ends at once with exitCode.
   */
  stopComputeThread(waitMs: number, exitCode: number): void;
  numThreads(): number;
  cpuMemory(): NativeCpuMemory;
  /** Hands every cached CPU block back to malloc; tensors in use are untouched. */
  releaseCachedCpuMemory(): void;
  packingLoss<T extends Float32Array | Float64Array>(
    z: T,
    views: number,
    dim: number,
    options: NativePackingLossOptions,
    mode: PackingLossMode,
  ): Promise<{ loss: number; grad: T; stats: PackingStats | null }>;
  /** Options as trainerOptionsSchema resolves them, with the stem filled in and the optimiser flattened. */
  createTrainer(options: NativeTrainerOptions): Promise<NativeTrainer>;
  /** Options as fineTunerOptionsSchema resolves them, with the stem filled in and the optimiser flattened. */
  createFineTuner(options: NativeFineTunerOptions): Promise<NativeFineTuner>;
  /** lib/eval/linear-probe.ts's protocol, options resolved. */
  linearProbe(
    train: Float32Array,
    trainLabels: Uint8Array | Int32Array,
    test: Float32Array,
    testLabels: Uint8Array | Int32Array,
    dim: number,
    options: NativeLinearProbeOptions,
  ): Promise<{ learningRate: number; validationAccuracy: number[]; top1: number; top5: number; testLogits: Float32Array }>;
  /** Options as lib/encode/encoder.ts resolves them from a checkpoint's config; state as the checkpoint holds it. */
  createEncoder(options: NativeEncoderOptions, state: StateEntry[]): Promise<NativeEncoder>;
  /** The k most cosine-similar bank rows of each query, best first: similarity and row index [queries, k]. */
  cosineTopK(
    bank: Float32Array,
    queries: Float32Array,
    dim: number,
    k: number,
  ): Promise<{ similarity: Float32Array; index: Int32Array; k: number }>;
  /** RankMe of [n, dim] features. */
  effectiveRank(features: Float32Array, dim: number): Promise<number>;
  /** Vote totals [queries, classes] of weighted kNN (lib/eval/knn.ts). */
  knnVotes(
    train: Float32Array,
    labels: Uint8Array | Int32Array,
    queries: Float32Array,
    dim: number,
    options: { k: number; temperature: number; classes: number },
  ): Promise<Float32Array>;
  /**
   * One augmented view, synchronously: `program` (lib/augment/view-program.ts's encoding) run on a CHW
   * image (uint8 pixels, or float32 values in [0, 1]) and written to out[offset ..). Returns the view's
   * [channels, height, width]. For loader workers and tests: it runs on the calling thread.
   */
  runViewProgram(
    source: Uint8Array | Float32Array,
    channels: number,
    height: number,
    width: number,
    program: Float64Array,
    out: Float32Array,
    offset: number,
  ): [number, number, number];
}
