// The GPU path from TypeScript: runs where the addon was built with the CUDA kernels and sees a GPU
// (scripts/gpu-check.sh runs it there with CLAMP_TEST_DEVICE=cuda); skipped, and says so, elsewhere.
// The core's own GPU suite (native/test/test_cuda.cpp) checks the kernels against the CPU in detail.
import { beforeAll, describe, expect, it } from 'vitest';
import { doctor, Trainer, type TrainerOptions } from '../lib/index.js';
import { noisyViews, SIDE as side } from './noisy-views.js';

const device = process.env.CLAMP_TEST_DEVICE ?? 'cuda';
const report = doctor();
const gpu = report.cuda.kernels && report.cuda.deviceCount > 0;

describe.skipIf(!gpu)(`on ${device} (${report.cuda.devices[0]?.name ?? 'no GPU'})`, () => {
  const views = 2, batch = 32;
  const shape = [views * batch, 1, side, side] as const;
  let batchViews: Float32Array;
  const options: TrainerOptions = {
    backbone: 'small', inChannels: 1, projectorHidden: [128], projectorOut: 32, views,
    loss: { rs: 2 }, schedule: { peakLr: 1, warmupSteps: 2, totalSteps: 30 }, seed: 3,
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
});

describe.runIf(!gpu)('without a GPU', () => {
  it('asking for cuda names what is missing', async () => {
    await expect(Trainer.create({ backbone: 'small', inChannels: 1, schedule: { peakLr: 1, totalSteps: 2 }, device: 'cuda' }))
      .rejects.toThrow(report.cuda.deviceCount === 0 ? /sees no CUDA device/ : /CUDA kernels/);
  });
});
