// `exportOnnx`: a trained encoder (the backbone, optionally the projector) as an ONNX model, written
// from TypeScript. The graph is the network the Encoder serves, built from the checkpoint's config as
// native/src/core/models/resnet.cpp builds it (torchvision's blocks and names, the three stems), with
// the Encoder's normalisation inside it, so a service feeds the same [0, 1] float32 NCHW pixels it
// would pass to Encoder.embed and gets the same vectors. Resizing stays outside: the input's spatial
// size is fixed at the checkpoint's image size (runtimes plan a static shape better), and the metadata
// says how to resize as the Encoder does.
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { backboneInputChannels, readTrainedCheckpoint } from '../checkpoint/checkpoint.js';
import { CheckpointError } from '../checkpoint/safetensors.js';
import { unwritableOutputReason, writeFailureReason, writeFileAtomically } from '../io/files.js';
import { validationError } from '../config/errors.js';
import type { TrainConfig } from '../config/train-config.js';
import { packageRoot } from '../runtime/native.js';
import { resolvedStem } from '../model/options.js';
import { evaluationPreprocessing } from '../model/preprocessing.js';
import type { StateEntry } from '../runtime/addon-types.js';
import { IR_VERSION_OF_OPSET, OnnxGraph, type Dimension } from './onnx-graph.js';

/** The graph's input: float32 [N, C, size, size], values in [0, 1]. */
export const ONNX_INPUT = 'images';
/** The graph's output: float32 [N, dim], the Encoder's embeddings (or the projector's output). */
export const ONNX_OUTPUT = 'embeddings';
/** metadata_props `format`: the version of what this file's graph and metadata promise. */
export const ONNX_EXPORT_FORMAT = 'clamp-native-onnx/1';
/** The batch dimension's name: any number of images per run. */
const BATCH = 'N';
/** LibTorch's BatchNorm2d default, which the ResNet's BatchNorms keep (native/src/core/models/resnet.cpp). */
const BATCH_NORM_EPS = 1e-5;

export const onnxExportOptionsSchema = z
  .object({
    /** Fold each BatchNorm into the convolution before it (in float64): fewer nodes; off keeps BatchNormalization nodes. */
    foldBatchNorm: z.boolean().default(true),
    /** Append the projection head: the output is the projector's, not the backbone's features. */
    projector: z.boolean().default(false),
    /** ONNX opset of the default domain; the IR version follows it. */
    opset: z
      .number()
      .int()
      .refine((opset) => IR_VERSION_OF_OPSET.has(opset), `opset must be one of ${[...IR_VERSION_OF_OPSET.keys()].join(', ')}`)
      .default(17),
  })
  .strict();

export type OnnxExportOptions = z.input<typeof onnxExportOptionsSchema>;

/** What was written. */
export interface OnnxExportResult {
  file: string;
  bytes: number;
  opset: number;
  irVersion: number;
  input: { name: string; shape: Dimension[] };
  output: { name: string; shape: Dimension[] };
  foldBatchNorm: boolean;
  projector: boolean;
  /** The model's metadata_props. */
  metadata: Record<string, string>;
}

export class OnnxExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxExportError';
  }
}

/** ResNetOptions::named (native/src/core/models/resnet.h): blocks and widths per stage, and the block kind. */
const BACKBONES = {
  small: { blocks: [2, 2, 2], widths: [32, 64, 128], bottleneck: false },
  resnet18: { blocks: [2, 2, 2, 2], widths: [64, 128, 256, 512], bottleneck: false },
  resnet34: { blocks: [3, 4, 6, 3], widths: [64, 128, 256, 512], bottleneck: false },
  resnet50: { blocks: [3, 4, 6, 3], widths: [64, 128, 256, 512], bottleneck: true },
} as const;

/** Tensors that are not the backbone's: the projector (taken only when asked for), optimiser state, counters. */
const NOT_BACKBONE = ['projector.', 'optimizer.', 'trainer.'];

/**
 * The checkpoint's float32 tensors by name, each checked against the shape the config's network gives
 * it, and a record of which were taken: a backbone tensor left over means the checkpoint holds a
 * network other than the one its config describes.
 */
class CheckpointWeights {
  private readonly byName: Map<string, StateEntry>;
  private readonly taken = new Set<string>();

  constructor(
    state: readonly StateEntry[],
    private readonly mismatch: (detail: string) => CheckpointError,
  ) {
    this.byName = new Map(state.map((t) => [t.name, t]));
  }

  take(name: string, shape: readonly number[]): Float32Array {
    const tensor = this.byName.get(name);
    if (tensor === undefined) throw this.mismatch(`${name} is missing`);
    if (tensor.dtype !== 'float32' || tensor.shape.length !== shape.length || tensor.shape.some((d, k) => d !== shape[k])) {
      throw this.mismatch(`${name} is ${tensor.dtype} [${tensor.shape.join(', ')}], the network needs float32 [${shape.join(', ')}]`);
    }
    this.taken.add(name);
    return tensor.data as Float32Array;
  }

  /** Backbone tensors nothing took (BatchNorm's num_batches_tracked aside: evaluation never reads it). */
  leftOver(): string[] {
    return [...this.byName.keys()].filter(
      (name) => !this.taken.has(name) && !NOT_BACKBONE.some((p) => name.startsWith(p)) && !name.endsWith('.num_batches_tracked'),
    );
  }
}

/** A convolution (no bias, padding kernel / 2 as in resnet.cpp) and the BatchNorm after it. */
interface ConvBn {
  conv: string;
  bn: string;
  in: number;
  out: number;
  kernel: number;
  stride: number;
}

/** Builds the network's nodes into one graph, taking each tensor from the checkpoint as it goes. */
class EncoderGraphBuilder {
  constructor(
    readonly graph: OnnxGraph,
    private readonly weights: CheckpointWeights,
    private readonly foldBatchNorm: boolean,
  ) {}

  /** (x - mean) / std per channel, in float32 as the Encoder's preprocess(); x itself when the config has no normalize step. */
  normalize(x: string, mean: readonly number[], std: readonly number[]): string {
    if (mean.length === 0) return x;
    const dims = [1, mean.length, 1, 1];
    const sub = this.graph.node('Sub', [x, this.graph.initializer('normalize.mean', dims, Float32Array.from(mean))], 'normalize.sub');
    return this.graph.node('Div', [sub, this.graph.initializer('normalize.std', dims, Float32Array.from(std))], 'normalize');
  }

  /** Conv then BatchNorm: one Conv with the BatchNorm folded in, or Conv + BatchNormalization. */
  convBn(x: string, spec: ConvBn): string {
    const weight = this.weights.take(`${spec.conv}.weight`, [spec.out, spec.in, spec.kernel, spec.kernel]);
    const stats = {
      gamma: this.weights.take(`${spec.bn}.weight`, [spec.out]),
      beta: this.weights.take(`${spec.bn}.bias`, [spec.out]),
      mean: this.weights.take(`${spec.bn}.running_mean`, [spec.out]),
      variance: this.weights.take(`${spec.bn}.running_var`, [spec.out]),
    };
    const pad = Math.floor(spec.kernel / 2);
    const attributes = {
      kernel_shape: { ints: [spec.kernel, spec.kernel] },
      strides: { ints: [spec.stride, spec.stride] },
      pads: { ints: [pad, pad, pad, pad] },
    };
    const dims = [spec.out, spec.in, spec.kernel, spec.kernel];
    if (this.foldBatchNorm) {
      const folded = foldedConv(weight, stats, spec.out);
      const inputs = [
        x,
        this.graph.initializer(`${spec.conv}.folded_weight`, dims, folded.weight),
        this.graph.initializer(`${spec.conv}.folded_bias`, [spec.out], folded.bias),
      ];
      return this.graph.node('Conv', inputs, spec.conv, attributes);
    }
    const y = this.graph.node('Conv', [x, this.graph.initializer(`${spec.conv}.weight`, dims, weight)], spec.conv, attributes);
    // BatchNormalization's inputs in ONNX's order: scale, B, input_mean, input_var.
    const parameters = (
      [
        ['weight', stats.gamma],
        ['bias', stats.beta],
        ['running_mean', stats.mean],
        ['running_var', stats.variance],
      ] as const
    ).map(([suffix, values]) => this.graph.initializer(`${spec.bn}.${suffix}`, [spec.out], values));
    return this.graph.node('BatchNormalization', [y, ...parameters], spec.bn, { epsilon: { float: BATCH_NORM_EPS } });
  }

  relu(x: string, name: string): string {
    return this.graph.node('Relu', [x], name);
  }

  /** conv1, bn1, ReLU, and for the imagenet stem the 3x3 stride-2 max-pool (PyTorch pads it with -inf, as ONNX's MaxPool does). */
  stem(x: string, stem: 'imagenet' | 'cifar' | 'small', inChannels: number, width: number): string {
    const kernel = stem === 'imagenet' ? 7 : 3;
    const y = this.relu(
      this.convBn(x, { conv: 'conv1', bn: 'bn1', in: inChannels, out: width, kernel, stride: stem === 'cifar' ? 1 : 2 }),
      'relu',
    );
    if (stem !== 'imagenet') return y;
    return this.graph.node('MaxPool', [y], 'maxpool', {
      kernel_shape: { ints: [3, 3] },
      strides: { ints: [2, 2] },
      pads: { ints: [1, 1, 1, 1] },
    });
  }

  /**
   * torchvision's BasicBlock (3x3, 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1 to 4x the width),
   * plus the identity or a strided 1x1 downsample when the shape changes, then Add and ReLU.
   */
  block(
    x: string,
    prefix: string,
    spec: { in: number; width: number; stride: number; bottleneck: boolean },
  ): { value: string; out: number } {
    const { in: inChannels, width, stride, bottleneck } = spec;
    const out = bottleneck ? width * 4 : width;
    const conv = (n: number, from: number, to: number, kernel: number, s: number) => ({
      conv: `${prefix}conv${n}`,
      bn: `${prefix}bn${n}`,
      in: from,
      out: to,
      kernel,
      stride: s,
    });
    let y: string;
    if (bottleneck) {
      y = this.relu(this.convBn(x, conv(1, inChannels, width, 1, 1)), `${prefix}relu1`);
      y = this.relu(this.convBn(y, conv(2, width, width, 3, stride)), `${prefix}relu2`);
      y = this.convBn(y, conv(3, width, out, 1, 1));
    } else {
      y = this.relu(this.convBn(x, conv(1, inChannels, width, 3, stride)), `${prefix}relu1`);
      y = this.convBn(y, conv(2, width, out, 3, 1));
    }
    const shortcut =
      stride !== 1 || inChannels !== out
        ? this.convBn(x, { conv: `${prefix}downsample.0`, bn: `${prefix}downsample.1`, in: inChannels, out, kernel: 1, stride })
        : x;
    return { value: this.relu(this.graph.node('Add', [y, shortcut], `${prefix}add`), `${prefix}relu`), out };
  }

  /** Global average pooling to [N, C]: the backbone's features, as ResNetImpl::forward's mean over H and W. */
  pool(x: string, output: string): string {
    return this.graph.node('Flatten', [this.graph.node('GlobalAveragePool', [x], 'avgpool')], output, { axis: { int: 1 } });
  }

  /** The projector's Linear layers (projector.layers.0, .2, ...) as Gemm with ReLU between them; the last writes `output`. */
  projector(x: string, inFeatures: number, widths: readonly number[], output: string): string {
    let value = x;
    let width = inFeatures;
    widths.forEach((out, k) => {
      const name = `projector.layers.${2 * k}`;
      const weight = this.graph.initializer(`${name}.weight`, [out, width], this.weights.take(`${name}.weight`, [out, width]));
      const bias = this.graph.initializer(`${name}.bias`, [out], this.weights.take(`${name}.bias`, [out]));
      const last = k === widths.length - 1;
      // Gemm with transB: y = x W^T + b, torch's Linear with its [out, in] weight as stored.
      value = this.graph.node('Gemm', [value, weight, bias], last ? output : name, { transB: { int: 1 } });
      if (!last) value = this.relu(value, `projector.layers.${2 * k + 1}`);
      width = out;
    });
    return value;
  }
}

/** conv'(x) = gamma (conv(x) - mean) / sqrt(var + eps) + beta, computed in float64 as FoldedResNet does. */
function foldedConv(
  weight: Float32Array,
  { gamma, beta, mean, variance }: { gamma: Float32Array; beta: Float32Array; mean: Float32Array; variance: Float32Array },
  out: number,
): { weight: Float32Array; bias: Float32Array } {
  const perChannel = weight.length / out;
  const folded = new Float32Array(weight.length);
  const bias = new Float32Array(out);
  for (let c = 0; c < out; c++) {
    const scale = gamma[c]! / Math.sqrt(variance[c]! + BATCH_NORM_EPS);
    for (let k = c * perChannel; k < (c + 1) * perChannel; k++) folded[k] = weight[k]! * scale;
    bias[c] = beta[c]! - mean[c]! * scale;
  }
  return { weight: folded, bias };
}

/**
 * The Encoder's preprocessing (lib/model/preprocessing.ts), with mean and std repeated over the
 * channels as the native encoder (native/src/core/serve/encoder.cpp) repeats them: the graph needs one
 * constant per channel.
 */
function encoderPreprocessing(config: TrainConfig, channels: number, file: string) {
  const { imageSize, mean, std, decodeSize } = evaluationPreprocessing(config);
  if (mean.length !== std.length)
    throw new CheckpointError(
      `${file}: its config's normalize step has ${mean.length} mean and ${std.length} std entries; they must pair up`,
    );
  if (std.some((s) => !(s > 0)))
    throw new CheckpointError(`${file}: its config's normalize std [${std.join(', ')}] has an entry that is not positive`);
  const perChannel = (values: readonly number[]) =>
    Array.from({ length: values.length === 0 ? 0 : channels }, (_, c) => values[c % values.length]!);
  return { imageSize, mean: perChannel(mean), std: perChannel(std), decodeSize };
}

/** The network's layout: the backbone's stages (config overrides over its defaults) and the stem. */
function backboneLayout(config: TrainConfig, file: string) {
  const base = BACKBONES[config.model.backbone];
  const blocks = config.model.blocks ?? base.blocks;
  const widths = config.model.widths ?? base.widths;
  if (blocks.length !== widths.length) {
    throw new CheckpointError(
      `${file}: its config gives ${blocks.length} stages of blocks (model.blocks) and ${widths.length} widths (model.widths); a ResNet needs one width per stage`,
    );
  }
  return { backbone: config.model.backbone, stem: resolvedStem(config.model), blocks, widths, bottleneck: base.bottleneck };
}

/**
 * Refuses an output path that cannot be written before the checkpoint is read and the graph built,
 * naming the user's path (writeFileAtomically's errors name its temporary file).
 */
async function checkWritable(file: string): Promise<void> {
  const reason = await unwritableOutputReason(file, 'encoder.onnx');
  if (reason) throw new OnnxExportError(`cannot write ${file}: ${reason}`);
}

/** Writes the model atomically; a failure names the user's path and the reason, not the temporary file's. */
async function writeModel(file: string, bytes: Uint8Array): Promise<void> {
  try {
    await writeFileAtomically(file, [bytes]);
  } catch (error) {
    throw new OnnxExportError(`could not write ${file}: ${writeFailureReason(file, error)}`);
  }
}

/** The package's version, for the model's producer_version. */
async function packageVersion(): Promise<string> {
  return (JSON.parse(await fs.readFile(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** What the export needs from a checkpoint: its network's layout, preprocessing and tensors. */
interface ExportSource {
  file: string;
  config: TrainConfig;
  layout: ReturnType<typeof backboneLayout>;
  channels: number;
  preprocessing: ReturnType<typeof encoderPreprocessing>;
  weights: CheckpointWeights;
  step: number;
}

async function readExportSource(checkpointOrRunDir: string): Promise<ExportSource> {
  const trained = await readTrainedCheckpoint(checkpointOrRunDir);
  const { file, checkpoint, config } = trained;
  const layout = backboneLayout(config, file);
  const channels = backboneInputChannels(trained);
  const weights = new CheckpointWeights(
    checkpoint.state,
    (detail) => new CheckpointError(`${file}: ${detail}: its tensors do not match the ${layout.backbone} backbone its config describes`),
  );
  return {
    file,
    config,
    layout,
    channels,
    preprocessing: encoderPreprocessing(config, channels, file),
    weights,
    step: checkpoint.position.step,
  };
}

/**
 * The whole network into `graph`: normalisation, stem, every block, pooling, optionally the projector,
 * the last node writing ONNX_OUTPUT. Returns the output's width. Refuses a checkpoint holding backbone
 * tensors the config's network has no place for.
 */
function buildEncoderGraph(
  graph: OnnxGraph,
  source: ExportSource,
  options: { foldBatchNorm: boolean; projector: boolean },
): { featureDim: number; outputDim: number } {
  const { layout, preprocessing, weights, config } = source;
  const builder = new EncoderGraphBuilder(graph, weights, options.foldBatchNorm);
  let x = builder.stem(
    builder.normalize(ONNX_INPUT, preprocessing.mean, preprocessing.std),
    layout.stem,
    source.channels,
    layout.widths[0]!,
  );
  let width = layout.widths[0]!;
  layout.blocks.forEach((count, stage) => {
    for (let k = 0; k < count; k++) {
      const block = builder.block(x, `layer${stage + 1}.${k}.`, {
        in: width,
        width: layout.widths[stage]!,
        stride: stage > 0 && k === 0 ? 2 : 1,
        bottleneck: layout.bottleneck,
      });
      x = block.value;
      width = block.out;
    }
  });
  const leftOver = weights.leftOver();
  if (leftOver.length > 0) {
    throw new CheckpointError(
      `${source.file}: its tensors do not match the ${layout.backbone} backbone its config describes: ${leftOver.slice(0, 5).join(', ')}${leftOver.length > 5 ? ', ...' : ''} belong to no layer of it`,
    );
  }
  const features = builder.pool(x, options.projector ? 'features' : ONNX_OUTPUT);
  if (!options.projector) return { featureDim: width, outputDim: width };
  const widths = [...config.model.projectorHidden, config.model.projectorOut];
  builder.projector(features, width, widths, ONNX_OUTPUT);
  return { featureDim: width, outputDim: widths[widths.length - 1]! };
}

/** What the output holds, in words, for the metadata and the output's doc_string. */
function outputDescription(source: ExportSource, projector: boolean, featureDim: number): string {
  if (!projector) return "the backbone's features (global average pool of the last stage), as Encoder.embed returns them";
  const widths = [featureDim, ...source.config.model.projectorHidden, source.config.model.projectorOut];
  return `the projection head's output (Linear ${widths.join(' -> ')}, ReLU between) on the backbone's features: the space the CLAMP loss trained, not the one Encoder.embed returns`;
}

/** The model's metadata_props: the input, how to prepare it, the output and the network, as strings. */
function exportMetadata(
  source: ExportSource,
  options: { foldBatchNorm: boolean; projector: boolean; opset: number },
  outputDim: number,
  output: string,
): Record<string, string> {
  const { channels, preprocessing, layout } = source;
  const size = preprocessing.imageSize;
  const normalised = preprocessing.mean.length > 0;
  return {
    format: ONNX_EXPORT_FORMAT,
    input_name: ONNX_INPUT,
    input_shape: `[N, ${channels}, ${size}, ${size}]`,
    input_dtype: 'float32',
    layout: 'NCHW',
    input_range: '[0, 1]',
    channels: `${channels} (${channels === 1 ? 'greyscale' : channels === 3 ? 'RGB' : 'as in training'})`,
    image_size: String(size),
    mean: JSON.stringify(normalised ? preprocessing.mean : Array(channels).fill(0)),
    std: JSON.stringify(normalised ? preprocessing.std : Array(channels).fill(1)),
    normalization: normalised
      ? 'inside the graph: (x - mean) / std per channel; feed unnormalised values in [0, 1]'
      : 'none (the config has no normalize step)',
    resize: `not in the graph: resize each whole image to ${size}x${size} with bilinear interpolation, half-pixel centres (align_corners=false), no antialiasing, as Encoder.embed does`,
    decode: `Encoder.embed decodes image files to ${preprocessing.decodeSize}x${preprocessing.decodeSize} cropped to fill the square (sharp fit: cover), then resizes and scales by 1/255`,
    output_name: ONNX_OUTPUT,
    output_shape: `[N, ${outputDim}]`,
    output,
    backbone: layout.backbone,
    stem: layout.stem,
    widths: JSON.stringify(layout.widths),
    blocks: JSON.stringify(layout.blocks),
    batch_norm: options.foldBatchNorm
      ? 'folded into the convolutions'
      : `BatchNormalization nodes (epsilon ${BATCH_NORM_EPS}, running statistics)`,
    projector: String(options.projector),
    opset: String(options.opset),
    checkpoint_step: String(source.step),
  };
}

/**
 * Writes the encoder of a clamp-native checkpoint (a file, or the run folder holding it) to `file` as
 * an ONNX model, atomically. Input `images`: float32 [N, C, size, size] (N dynamic), values in [0, 1],
 * as Encoder.embed takes float pixels; the config's normalisation runs inside the graph. Output
 * `embeddings`: float32 [N, dim], the backbone's pooled features (what Encoder.embed returns) or, with
 * `projector`, the projection head's output. The model's metadata_props declare the preprocessing.
 */
export async function exportOnnx(checkpointOrRunDir: string, file: string, options: OnnxExportOptions = {}): Promise<OnnxExportResult> {
  const parsed = onnxExportOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'options');
  const { foldBatchNorm, projector, opset } = parsed.data;
  await checkWritable(file);
  const source = await readExportSource(checkpointOrRunDir);
  const { channels, layout } = source;
  const size = source.preprocessing.imageSize;
  const inputShape: Dimension[] = [BATCH, channels, size, size];
  const graph = new OnnxGraph({
    name: ONNX_INPUT,
    dims: inputShape,
    docString: `float32 [N, ${channels}, ${size}, ${size}], NCHW, values in [0, 1] (not normalised)`,
  });
  const { featureDim, outputDim } = buildEncoderGraph(graph, source, { foldBatchNorm, projector });
  const output = outputDescription(source, projector, featureDim);
  const metadata = exportMetadata(source, { foldBatchNorm, projector, opset }, outputDim, output);
  const bytes = graph.encode({
    name: `clamp-native ${layout.backbone}`,
    opset,
    output: { name: ONNX_OUTPUT, dims: [BATCH, outputDim], docString: output },
    producerName: 'clamp-native',
    producerVersion: await packageVersion(),
    docString: `A clamp-native encoder (${layout.backbone}, ${layout.stem} stem): feed ${ONNX_INPUT} float32 [N, ${channels}, ${size}, ${size}] in [0, 1]; ${ONNX_OUTPUT} [N, ${outputDim}] is ${output}.`,
    metadata,
  });
  await writeModel(file, bytes);
  return {
    file,
    bytes: bytes.byteLength,
    opset,
    irVersion: IR_VERSION_OF_OPSET.get(opset)!,
    input: { name: ONNX_INPUT, shape: inputShape },
    output: { name: ONNX_OUTPUT, shape: [BATCH, outputDim] },
    foldBatchNorm,
    projector,
    metadata,
  };
}
