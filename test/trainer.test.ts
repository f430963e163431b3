// The native training step from TypeScript, on real Fashion-MNIST images.
import { beforeAll, describe, expect, it } from 'vitest';
import { doctor, Trainer, type TrainerOptions } from '../lib/index.js';
import { noisyViews, SIDE as side } from './noisy-views.js';

const views = 2,
  batch = 32;
let batchViews: Float32Array;

beforeAll(async () => {
  batchViews = await noisyViews(views, batch); // two noisy views of 32 test images
});

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
const shape = [views * batch, 1, side, side] as const;

describe('Trainer', () => {
  it('the loss falls over 20 steps on a fixed batch; lr follows the schedule', async () => {
    const trainer = await Trainer.create(options);
    expect(trainer.featureDim).toBe(128);
    const results = [];
    for (let k = 0; k < 20; k++) results.push(await trainer.step(batchViews, shape));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(results.slice(0, 5).map((r) => r.loss));
    const last = mean(results.slice(15).map((r) => r.loss));
    expect(last).toBeLessThan(first - 0.5);
    expect(results.map((r) => r.step)).toEqual([...Array(20).keys()]);
    expect(results[0]!.learningRate).toBe(0);
    expect(results[1]!.learningRate).toBe(0.5);
    expect(results[2]!.learningRate).toBe(1);
    expect(trainer.stepsTaken).toBe(20);
    expect(results.every((r) => Number.isFinite(r.gradNorm) && r.stats.meanRadius > 0)).toBe(true);
  });

  it('a seed reproduces the losses exactly', async () => {
    const run = async () => {
      const trainer = await Trainer.create(options);
      const losses = [];
      for (let k = 0; k < 3; k++) losses.push((await trainer.step(batchViews, shape)).loss);
      return losses;
    };
    expect(await run()).toEqual(await run());
  });

  it('keeps the event loop running during a step', async () => {
    const trainer = await Trainer.create(options);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await trainer.step(batchViews, shape);
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
  });

  it('features: [n, featureDim] in evaluation mode, repeatable, and without side effects on training', async () => {
    const images = batchViews.subarray(0, batch * side * side);
    const trainer = await Trainer.create(options);
    const first = await trainer.features(images, [batch, 1, side, side]);
    expect(first).toHaveLength(batch * trainer.featureDim);
    expect(await trainer.features(images, [batch, 1, side, side])).toEqual(first);
    // Reading features between steps changes nothing: the same losses as a trainer that never did.
    const untouched = await Trainer.create(options);
    const a = (await trainer.step(batchViews, shape)).loss;
    const b = (await untouched.step(batchViews, shape)).loss;
    expect(a).toBe(b);
    // After a step the weights and BatchNorm statistics moved, so the features did too.
    expect(await trainer.features(images, [batch, 1, side, side])).not.toEqual(first);
    await expect(trainer.features(images, [batch, 3, side, side])).rejects.toThrow(/images.length is|3 channels/);
  });

  it('state() and loadState(): a restored trainer continues bitwise, for every optimiser', async () => {
    for (const optimiser of [{ name: 'lars' }, { name: 'sgd', nesterov: true }, { name: 'adamw' }] as const) {
      const opts = { ...options, optimiser, schedule: { ...options.schedule, peakLr: optimiser.name === 'adamw' ? 1e-3 : 1 } };
      const original = await Trainer.create(opts);
      for (let k = 0; k < 3; k++) await original.step(batchViews, shape);
      const saved = await original.state();
      const expected = [];
      for (let k = 0; k < 2; k++) expected.push((await original.step(batchViews, shape)).loss);
      const restored = await Trainer.create({ ...opts, seed: 77 });
      await restored.loadState(saved);
      expect(restored.stepsTaken).toBe(3);
      const resumed = [];
      for (let k = 0; k < 2; k++) resumed.push((await restored.step(batchViews, shape)).loss);
      expect(resumed).toEqual(expected);
    }
  });

  it('state() snapshots carry torchvision names, dtypes and shapes, and do not follow later steps', async () => {
    const trainer = await Trainer.create(options);
    const state = await trainer.state();
    const byName = new Map(state.map((entry) => [entry.name, entry]));
    expect(byName.get('conv1.weight')).toMatchObject({ dtype: 'float32', shape: [32, 1, 3, 3] });
    expect(byName.get('layer1.0.bn1.num_batches_tracked')).toMatchObject({ dtype: 'int64', shape: [] });
    expect(byName.get('layer1.0.bn1.num_batches_tracked')!.data).toBeInstanceOf(BigInt64Array);
    expect(byName.has('optimizer.momentum.projector.layers.0.weight')).toBe(true);
    expect(byName.get('trainer.steps')!.data).toEqual(new BigInt64Array([0n]));
    const before = Float32Array.from(byName.get('conv1.weight')!.data as Float32Array);
    await trainer.step(batchViews, shape);
    expect(byName.get('conv1.weight')!.data).toEqual(before);
    const other = await Trainer.create({ ...options, projectorOut: 16 });
    await expect(other.loadState(state)).rejects.toThrow(/projector.layers.2.weight has shape \[32, 128\], this model needs \[16, 128\]/);
  });

  it('mixed precision: bf16 autocast runs on the CPU too (the path a GPU takes by default) and the loss still falls', async () => {
    // A narrow network: oneDNN's bfloat16 kernels are slow on CPUs without native bf16.
    const narrow: TrainerOptions = { ...options, widths: [8, 16, 16], blocks: [1, 1, 1] };
    // auto on the CPU: float32, in channels_last with LibTorch 2.x (oneDNN's own layout), NCHW with 1.x.
    const nhwcByDefault = !doctor().libtorch.version.startsWith('1.');
    expect((await Trainer.create(narrow)).computeSettings).toEqual({ bf16Autocast: false, channelsLast: nhwcByDefault });
    const fp32 = await Trainer.create({ ...narrow, memoryFormat: 'contiguous' });
    expect(fp32.computeSettings).toEqual({ bf16Autocast: false, channelsLast: false });
    const fp32First = (await fp32.step(batchViews, shape)).loss;
    const trainer = await Trainer.create({ ...narrow, precision: 'bf16', memoryFormat: 'contiguous' });
    expect(trainer.computeSettings).toEqual({ bf16Autocast: true, channelsLast: false });
    const losses = [];
    for (let k = 0; k < 20; k++) losses.push((await trainer.step(batchViews, shape)).loss);
    expect(losses[0]).not.toBe(fp32First);
    expect(Math.abs(losses[0]! - fp32First)).toBeLessThan(0.05 * Math.abs(fp32First));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(15))).toBeLessThan(mean(losses.slice(0, 5)) - 0.5);
    const nhwc = await Trainer.create({ ...narrow, precision: 'fp32', memoryFormat: 'channels_last' });
    expect(nhwc.computeSettings).toEqual({ bf16Autocast: false, channelsLast: true });
    expect(Math.abs((await nhwc.step(batchViews, shape)).loss - fp32First)).toBeLessThan(1e-4 * Math.abs(fp32First));
    await expect(Trainer.create({ ...options, precision: 'fp16' as 'bf16' })).rejects.toThrow(/options.precision/);
  });

  it('refuses bad options and batches with the reason', async () => {
    await expect(Trainer.create({ ...options, backbone: 'vgg16' as 'small' })).rejects.toThrow(/options.backbone/);
    await expect(Trainer.create({ ...options, views: 1 })).rejects.toThrow(RangeError);
    await expect(Trainer.create({ ...options, device: 'tpu' })).rejects.toThrow(/options.device: device must be cpu, cuda or cuda:<index>/);
    await expect(Trainer.create({ ...options, optimiser: { name: 'adam' } as never })).rejects.toThrow(/options.optimiser/);
    await expect(Trainer.create({ ...options, schedule: { peakLr: 1, warmupSteps: 5, totalSteps: 5 } })).rejects.toThrow(
      /warmupSteps must be less than totalSteps/,
    );
    const trainer = await Trainer.create(options);
    await expect(trainer.step(batchViews.subarray(1), shape)).rejects.toThrow(/images.length is/);
    await expect(trainer.step(new Float32Array(3 * 28 * 28 * 4), [4, 3, 28, 28])).rejects.toThrow(/3 channels; the backbone takes 1/);
    await expect(trainer.step(new Float32Array(3 * 28 * 28), [3, 1, 28, 28])).rejects.toThrow(/not views \* batch/);
    await expect(trainer.step([1, 2] as unknown as Float32Array, shape)).rejects.toThrow(TypeError);
  });
});
