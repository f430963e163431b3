// The GPU path from TypeScript: runs where the addon was built with the CUDA kernels and sees a GPU
// (scripts/gpu-check.sh runs it there with CLAMP_TEST_DEVICE=cuda); skipped, and says so, elsewhere.
// The core's own GPU suite (native/test/test_cuda.cpp) checks the kernels against the CPU in detail.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { Encoder } from '../lib/encode/encoder.js';
import { doctor, Trainer, type TrainerOptions } from '../lib/index.js';
import { train } from '../lib/train/training-run.js';
import { noisyViews, SIDE as side } from './noisy-views.js';

const device = process.env.CLAMP_TEST_DEVICE ?? 'cuda';
const report = doctor();
const gpu = report.cuda.kernels && report.cuda.deviceCount > 0;

describe.skipIf(!gpu)(`on ${device} (${report.cuda.devices[0]?.name ?? 'no GPU'})`, () => {
  const views = 2,
    batch = 32;
  const shape = [views * batch, 1, side, side] as const;
  let batchViews: Float32Array;
  const options: TrainerOptions = {
    backbone: 'small',
    inChannels: 1,
    projectorHidden: [128],
    projectorOut: 32,
    views,
    loss: { rs: 2 },
    schedule: { peakLr: 1, warmupSteps: 2, totalSteps: 30 },
    seed: 3,
  };

  beforeAll(async () => {
    batchViews = await noisyViews(views, batch);
  });

  it('doctor describes every device', () => {
    expect(report.cuda.devices).toHaveLength(report.cuda.deviceCount);
    expect(report.cuda.devices[0]!.memoryBytes).toBeGreaterThan(0);
  });

  it('trains on the GPU with the default precision, and the loss falls', async () => {
    const trainer = await Trainer.create({ ...options, device });
    const major = Number(report.cuda.devices[0]!.computeCapability.split('.')[0]);
    expect(trainer.computeSettings).toEqual({ bf16Autocast: major >= 8, channelsLast: major >= 8 });
    const losses = [];
    for (let k = 0; k < 20; k++) losses.push((await trainer.step(batchViews, shape)).loss);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(15))).toBeLessThan(mean(losses.slice(0, 5)) - 0.5);
    const features = await trainer.features(batchViews.subarray(0, 4 * side * side), [4, 1, side, side]);
    expect(features).toHaveLength(4 * trainer.featureDim);
    expect(features.every(Number.isFinite)).toBe(true);
  });

  it('float32 on the GPU starts where the CPU does', async () => {
    const onGpu = await Trainer.create({ ...options, device, precision: 'fp32' });
    const onCpu = await Trainer.create(options);
    const gpuLoss = (await onGpu.step(batchViews, shape)).loss;
    const cpuLoss = (await onCpu.step(batchViews, shape)).loss;
    expect(Math.abs(gpuLoss - cpuLoss)).toBeLessThan(2e-2 * Math.abs(cpuLoss));
  });

  it('train() runs on the GPU end to end, and its Encoder serves on the GPU what it serves on the CPU', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-cuda-'));
    const config = resolveTrainConfig({
      overrides: { data: { limit: 512 }, schedule: { epochs: 1, warmupEpochs: 0 }, run: { batchSize: 128, views: 2, device, workers: 1 } },
    });
    const summary = await train(config, { runDir: dir });
    expect(Number.isFinite(summary.finalLoss)).toBe(true);
    expect(summary.knn?.top1).toBeGreaterThan(0.3); // far above chance (0.1) after one short epoch
    const images = { data: new Uint8Array(16 * side * side).map((_, k) => (k * 37) % 256), shape: [16, side, side, 1] };
    const onCpu = await Encoder.load(dir);
    const onGpu = await Encoder.load(dir, { device }); // precision auto: bf16 on Ampere and newer
    const a = await onCpu.embed(images),
      b = await onGpu.embed(images);
    const dim = onCpu.dim;
    for (let i = 0; i < 16; i++) {
      let dot = 0,
        xx = 0,
        yy = 0;
      for (let k = 0; k < dim; k++) {
        const x = a.data[i * dim + k]!,
          y = b.data[i * dim + k]!;
        dot += x * y;
        xx += x * x;
        yy += y * y;
      }
      expect(dot / Math.sqrt(xx * yy)).toBeGreaterThan(0.99);
    }
    onCpu.dispose();
    onGpu.dispose();
  }, 300_000);
});

describe.runIf(!gpu)('without a GPU', () => {
  it('asking for cuda names what is missing', async () => {
    await expect(
      Trainer.create({ backbone: 'small', inChannels: 1, schedule: { peakLr: 1, totalSteps: 2 }, device: 'cuda' }),
    ).rejects.toThrow(report.cuda.deviceCount === 0 ? /sees no CUDA device/ : /CUDA kernels/);
  });
});
