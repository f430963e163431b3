// The ONNX export: the file loads in onnxruntime-node and gives Encoder.embed's vectors (or the
// projector's output on them) on the same [0, 1] pixels, folded and unfolded, for the small backbone,
// ResNet-18 with the CIFAR stem and a Bottleneck ResNet with the ImageNet stem and max-pool; the batch
// is dynamic; the metadata declares the preprocessing; bad paths and mismatched checkpoints are refused
// with messages that name the problem.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxRuntime } from '../bench/peers.mjs';
import { readCheckpoint, saveCheckpoint } from '../lib/checkpoint/checkpoint.js';
import { UsageError } from '../lib/cli/flags.js';
import { runExport } from '../lib/cli/export-command.js';
import { resolveTrainConfig, type TrainConfig } from '../lib/config/train-config.js';
import { Encoder } from '../lib/encode/encoder.js';
import { exportOnnx, OnnxExportError, type OnnxExportOptions } from '../lib/export/onnx.js';
import { ModelProtoSchema, type ModelProto } from '../lib/export/proto/onnx_pb.js';
import { Random } from '../lib/random.js';
import { trainerFor } from '../lib/train/from-config.js';

/** onnxruntime-node, installed into bench/peers on first use; undefined (with the reason) when npm cannot reach it. */
type Ort = {
  InferenceSession: { create(file: string, options: object): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
};
type OrtSession = {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputMetadata?: readonly { name: string; shape?: readonly (number | string)[] }[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>>;
  release(): Promise<void>;
};
let ort: Ort | undefined;
let ortMissing = '';
try {
  ort = (await loadOnnxRuntime()) as Ort;
} catch (error) {
  ortMissing = (error as Error).message;
}

const TOLERANCE = 1e-4;
let dir: string;
/** The largest max |onnx - encoder| / max |encoder| over every comparison, printed at the end. */
let worstRelative = 0;

/** max |a - b| / max |b|: the error against the size of the vectors, so tiny entries do not inflate it. */
function relativeError(a: Float32Array, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  expect(scale).toBeGreaterThan(0);
  return Number.isNaN(diff) ? Infinity : diff / scale;
}

/**
 * A checkpoint of the config's network, its random initialisation with every BatchNorm's statistics
 * and affine parameters set to seeded random values: with the initial ones (mean 0, var 1, weight 1,
 * bias 0) BatchNorm is nearly the identity, and a folding or epsilon mistake would go unseen.
 */
async function makeCheckpoint(config: TrainConfig, channels: number, file: string): Promise<void> {
  const trainer = await trainerFor(config, channels, 10);
  const random = new Random(1234);
  const state = await trainer.state();
  const byName = new Map(state.map((t) => [t.name, t]));
  for (const entry of state) {
    if (!entry.name.endsWith('.running_mean')) continue;
    const bn = entry.name.slice(0, -'.running_mean'.length);
    const fill = (name: string, draw: () => number) => {
      const data = byName.get(`${bn}.${name}`)!.data as Float32Array;
      for (let i = 0; i < data.length; i++) data[i] = draw();
    };
    fill('running_mean', () => 0.2 * random.normal());
    fill('running_var', () => random.uniform(0.5, 2));
    fill('weight', () => random.uniform(0.5, 1.5));
    fill('bias', () => 0.1 * random.normal());
  }
  await trainer.loadState(state);
  await saveCheckpoint(file, trainer, { config, position: { epoch: 0, batch: 0, step: 3 }, metrics: {} });
}

/** n seeded images of [0, 1] floats, [n, C, size, size]: what Encoder.embed and the ONNX input both take. */
function images(n: number, channels: number, size: number, seed: number): Float32Array {
  const random = new Random(seed);
  return Float32Array.from({ length: n * channels * size * size }, () => random.next());
}

/** The projector's Linear-ReLU-...-Linear in float64 on the Encoder's features, from the checkpoint's tensors. */
async function projected(checkpoint: string, features: Float32Array, n: number, widths: readonly number[]): Promise<Float64Array> {
  const state = new Map((await readCheckpoint(checkpoint)).state.map((t) => [t.name, t.data as Float32Array]));
  let x: Float64Array = Float64Array.from(features);
  let width = features.length / n;
  widths.forEach((out, k) => {
    const weight = state.get(`projector.layers.${2 * k}.weight`)!;
    const bias = state.get(`projector.layers.${2 * k}.bias`)!;
    const y = new Float64Array(n * out);
    for (let row = 0; row < n; row++) {
      for (let o = 0; o < out; o++) {
        let sum = bias[o]!;
        for (let i = 0; i < width; i++) sum += x[row * width + i]! * weight[o * width + i]!;
        y[row * out + o] = k < widths.length - 1 ? Math.max(0, sum) : sum;
      }
    }
    x = y;
    width = out;
  });
  return x;
}

async function decodedModel(file: string): Promise<ModelProto> {
  return fromBinary(ModelProtoSchema, await fs.readFile(file));
}

const metadataOf = (model: ModelProto) => Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
const opTypes = (model: ModelProto) => new Set(model.graph!.node.map((node) => node.opType));

interface Network {
  name: string;
  config: TrainConfig;
  channels: number;
  size: number;
  checkpoint: string;
}

const NETWORKS: Omit<Network, 'checkpoint'>[] = [
  {
    name: 'small ResNet 16-32-64 (fashion-mnist preset), 1x28x28',
    config: resolveTrainConfig({ preset: 'fashion-mnist' }),
    channels: 1,
    size: 28,
  },
  {
    name: 'ResNet-18, CIFAR stem (cifar10 preset), 3x32x32',
    config: resolveTrainConfig({ preset: 'cifar10', overrides: { model: { projectorHidden: [64] } } }),
    channels: 3,
    size: 32,
  },
  {
    name: 'Bottleneck ResNet 8-16, ImageNet stem and max-pool, 3x40x40',
    config: resolveTrainConfig({
      preset: 'cifar10',
      overrides: {
        augment: { size: 40 },
        model: { backbone: 'resnet50', stem: 'imagenet', widths: [8, 16], blocks: [1, 2], projectorHidden: [32, 24], projectorOut: 16 },
      },
    }),
    channels: 3,
    size: 40,
  },
];
const networks: Network[] = [];

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-onnx-'));
  for (const [k, network] of NETWORKS.entries()) {
    const checkpoint = path.join(dir, `network-${k}.safetensors`);
    await makeCheckpoint(network.config, network.channels, checkpoint);
    networks.push({ ...network, checkpoint });
  }
}, 120_000);

afterAll(async () => {
  if (worstRelative > 0)
    console.log(`onnx-export: largest relative difference from Encoder.embed ${worstRelative.toExponential(2)} (tolerance ${TOLERANCE})`);
  await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(ort === undefined)(
  `exportOnnx in onnxruntime-node${ort === undefined ? ` (skipped: onnxruntime-node could not be loaded: ${ortMissing})` : ''}`,
  () => {
    const cases: { label: string; network: number; options: OnnxExportOptions }[] = [
      { label: 'small, folded', network: 0, options: {} },
      { label: 'small, BatchNormalization nodes', network: 0, options: { foldBatchNorm: false } },
      { label: 'small, folded, projector', network: 0, options: { projector: true } },
      {
        label: 'small, BatchNormalization nodes, projector, opset 13',
        network: 0,
        options: { foldBatchNorm: false, projector: true, opset: 13 },
      },
      { label: 'small, folded, opset 22', network: 0, options: { opset: 22 } },
      { label: 'ResNet-18 CIFAR stem, folded', network: 1, options: {} },
      {
        label: 'ResNet-18 CIFAR stem, BatchNormalization nodes, projector',
        network: 1,
        options: { foldBatchNorm: false, projector: true },
      },
      { label: 'Bottleneck ImageNet stem, folded', network: 2, options: {} },
      {
        label: 'Bottleneck ImageNet stem, BatchNormalization nodes, projector',
        network: 2,
        options: { foldBatchNorm: false, projector: true },
      },
    ];
    it.each(cases)(
      "$label: the Encoder's vectors (or the projector on them) to 1e-4 at batch 1 and 5",
      async ({ network: index, options }) => {
        const network = networks[index]!;
        const { channels, size, checkpoint } = network;
        const file = path.join(dir, `network-${index}-${JSON.stringify(options).replace(/\W+/g, '_')}.onnx`);
        const result = await exportOnnx(checkpoint, file, options);
        const session = await ort!.InferenceSession.create(file, {
          executionProviders: ['cpu'],
          intraOpNumThreads: 1,
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all',
        });
        const encoder = await Encoder.load(checkpoint, { threads: 1 });
        try {
          expect(session.inputNames).toEqual(['images']);
          expect(session.outputNames).toEqual(['embeddings']);
          if (session.inputMetadata) expect(session.inputMetadata[0]!.shape).toEqual(['N', channels, size, size]);

          const pixels = images(5, channels, size, 7 + index);
          const dim = options.projector ? network.config.model.projectorOut : encoder.dim;
          expect(result.output.shape).toEqual(['N', dim]);
          const features = (await encoder.embed({ data: pixels, shape: [5, channels, size, size] })).data.slice();
          const expected = options.projector
            ? await projected(checkpoint, features, 5, [...network.config.model.projectorHidden, network.config.model.projectorOut])
            : features;
          const five = await session.run({ images: new ort!.Tensor('float32', pixels, [5, channels, size, size]) });
          expect(five.embeddings!.dims).toEqual([5, dim]);
          const one = await session.run({
            images: new ort!.Tensor('float32', pixels.slice(0, channels * size * size), [1, channels, size, size]),
          });
          expect(one.embeddings!.dims).toEqual([1, dim]);
          for (const [actual, reference] of [
            [five.embeddings!.data, expected],
            [one.embeddings!.data, expected.subarray(0, dim)],
          ] as const) {
            const relative = relativeError(actual, reference);
            worstRelative = Math.max(worstRelative, relative);
            expect(relative).toBeLessThan(TOLERANCE);
          }

          // The option changed the graph, not only the name: BatchNormalization nodes only when not folded,
          // Gemm only with the projector, MaxPool only for the ImageNet stem.
          const model = await decodedModel(file);
          const ops = opTypes(model);
          expect(ops.has('BatchNormalization')).toBe(options.foldBatchNorm === false);
          expect(ops.has('Gemm')).toBe(options.projector === true);
          expect(ops.has('MaxPool')).toBe(index === 2);
          expect(model.opsetImport.map((o) => Number(o.version))).toEqual([options.opset ?? 17]);
        } finally {
          encoder.dispose();
          await session.release();
        }
      },
    );
  },
);

describe('exportOnnx metadata and file', () => {
  it('declares the input, its preprocessing, the output and the opset in the model', async () => {
    const network = networks[1]!;
    const file = path.join(dir, 'metadata.onnx');
    const result = await exportOnnx(network.checkpoint, file);
    const model = await decodedModel(file);
    const metadata = metadataOf(model);
    expect(result.metadata).toEqual(metadata);
    const normalize = network.config.augment[0]!.normalize!;
    expect(metadata).toMatchObject({
      format: 'clamp-native-onnx/1',
      input_name: 'images',
      input_shape: '[N, 3, 32, 32]',
      input_dtype: 'float32',
      layout: 'NCHW',
      input_range: '[0, 1]',
      image_size: '32',
      output_name: 'embeddings',
      output_shape: '[N, 512]',
      backbone: 'resnet18',
      stem: 'cifar',
      batch_norm: 'folded into the convolutions',
      projector: 'false',
      opset: '17',
      checkpoint_step: '3',
    });
    expect(JSON.parse(metadata.mean!)).toEqual(normalize.mean);
    expect(JSON.parse(metadata.std!)).toEqual(normalize.std);
    expect(metadata.resize).toMatch(/32x32.*bilinear.*half-pixel/);
    expect(metadata.normalization).toMatch(/inside the graph/);
    // The graph's own declaration agrees: a symbolic batch, fixed channels and size, ONNX's IR 8 for opset 17.
    expect(model.irVersion).toBe(8n);
    expect(model.producerName).toBe('clamp-native');
    const dims = (name: 'input' | 'output') => {
      const type = model.graph![name][0]!.type!.value;
      expect(type.case).toBe('tensorType');
      return (type.value as { shape: { dim: { value: { case?: string; value?: unknown } }[] } }).shape.dim.map((d) =>
        d.value.case === 'dimParam' ? d.value.value : Number(d.value.value),
      );
    };
    expect(model.graph!.input.map((v) => v.name)).toEqual(['images']);
    expect(dims('input')).toEqual(['N', 3, 32, 32]);
    expect(dims('output')).toEqual(['N', 512]);
    // Written atomically: no temporary file is left beside it.
    expect((await fs.readdir(dir)).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });

  it('repeats a single-entry mean and std over the channels, as the Encoder does', async () => {
    const network = networks[0]!;
    const file = path.join(dir, 'grey.onnx');
    await exportOnnx(network.checkpoint, file);
    const metadata = metadataOf(await decodedModel(file));
    expect(JSON.parse(metadata.mean!)).toEqual([0.286]);
    expect(metadata.input_shape).toBe('[N, 1, 28, 28]');
  });
});

describe('exportOnnx refuses bad inputs', () => {
  it('a missing checkpoint, naming the path', async () => {
    await expect(exportOnnx(path.join(dir, 'no-such-run'), path.join(dir, 'x.onnx'))).rejects.toThrow(/no-such-run.*does not exist/);
  });

  it('an output that cannot be written, before reading the checkpoint, naming the path and the fix', async () => {
    const checkpoint = networks[0]!.checkpoint;
    await expect(exportOnnx(checkpoint, path.join(dir, 'missing-folder', 'x.onnx'))).rejects.toThrow(
      /missing-folder does not exist; create it/,
    );
    await expect(exportOnnx(checkpoint, path.join(checkpoint, 'x.onnx'))).rejects.toThrow(/is a file, not a folder/);
    await expect(exportOnnx(checkpoint, dir)).rejects.toThrow(OnnxExportError);
    await expect(exportOnnx(checkpoint, dir)).rejects.toThrow(/is a folder; name a file in it/);
  });

  it('a checkpoint whose tensors are not the network its config describes', async () => {
    const file = path.join(dir, 'mismatched.safetensors');
    const saved = await readCheckpoint(networks[0]!.checkpoint);
    const trainer = await trainerFor(networks[0]!.config, 1, 10);
    await trainer.loadState(saved.state);
    await saveCheckpoint(file, trainer, {
      config: resolveTrainConfig({ preset: 'fashion-mnist', overrides: { model: { widths: [16, 32, 48] } } }),
      position: saved.position,
      metrics: {},
    });
    await expect(exportOnnx(file, path.join(dir, 'mismatched.onnx'))).rejects.toThrow(
      /layer3\.0\.conv1\.weight is float32 \[64, 32, 3, 3\], the network needs float32 \[48, 32, 3, 3\].*do not match the small backbone/,
    );
    const blocks = path.join(dir, 'fewer-blocks.safetensors');
    await saveCheckpoint(blocks, trainer, {
      config: resolveTrainConfig({ preset: 'fashion-mnist', overrides: { model: { blocks: [2, 2, 1] } } }),
      position: saved.position,
      metrics: {},
    });
    await expect(exportOnnx(blocks, path.join(dir, 'fewer-blocks.onnx'))).rejects.toThrow(/layer3\.1\..*belong to no layer of it/);
  });

  it('options out of range, naming the field', async () => {
    await expect(exportOnnx(networks[0]!.checkpoint, path.join(dir, 'x.onnx'), { opset: 12 })).rejects.toThrow(
      /options\.opset: opset must be one of 13, 14/,
    );
    await expect(exportOnnx(networks[0]!.checkpoint, path.join(dir, 'x.onnx'), { fold: true } as OnnxExportOptions)).rejects.toThrow(
      /options/,
    );
  });
});

describe('clamp-native export', () => {
  it('writes the model the flags describe', async () => {
    const file = path.join(dir, 'cli.onnx');
    expect(await runExport(['--checkpoint', networks[0]!.checkpoint, '--onnx', file, '--no-fold', '--projector', '--opset', '18'])).toBe(0);
    const model = await decodedModel(file);
    const metadata = metadataOf(model);
    expect(metadata.projector).toBe('true');
    expect(metadata.output_shape).toBe('[N, 128]');
    expect(metadata.batch_norm).toMatch(/BatchNormalization nodes/);
    expect(Number(model.opsetImport[0]!.version)).toBe(18);
  });

  it('refuses a command line that lacks what it needs, saying what', async () => {
    await expect(runExport(['--onnx', 'x.onnx'])).rejects.toThrow(UsageError);
    await expect(runExport(['--checkpoint', networks[0]!.checkpoint])).rejects.toThrow(/needs --onnx FILE/);
    await expect(runExport(['--checkpoint', networks[0]!.checkpoint, '--onnx', 'x.onnx', '--opset', '9'])).rejects.toThrow(
      /--opset must be one of 13/,
    );
  });
});
