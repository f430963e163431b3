// Every object that owns native memory frees it on dispose(): at once, or when the calls already
// queued on it have run; later calls throw an error naming dispose(), never touch freed memory.
import { describe, expect, it } from 'vitest';
import { FineTuner, Trainer, type TrainerOptions } from '../lib/index.js';
import type { NativeTrainer } from '../lib/runtime/addon-types.js';
import { noisyViews, SIDE as side } from './noisy-views.js';

const views = 2;
const batch = 4;
const options: TrainerOptions = {
  backbone: 'small',
  widths: [8, 16],
  blocks: [1, 1],
  inChannels: 1,
  projectorHidden: [32],
  projectorOut: 16,
  views,
  loss: { rs: 2 },
  schedule: { peakLr: 0.5, warmupSteps: 1, totalSteps: 10 },
  seed: 5,
};
const shape = [views * batch, 1, side, side] as const;

describe('dispose()', () => {
  it('Trainer: a step already queued completes; later calls and accessors throw; twice is harmless', async () => {
    const trainer = await Trainer.create(options);
    const images = await noisyViews(views, batch);
    const queued = trainer.step(images, shape);
    trainer.dispose();
    expect(trainer.isDisposed).toBe(true);
    const result = await queued; // the native object lives until the jobs holding it end
    expect(Number.isFinite(result.loss)).toBe(true);
    await expect(trainer.step(images, shape)).rejects.toThrow(/this Trainer was disposed; create another with Trainer.create\(\)/);
    await expect(trainer.state()).rejects.toThrow(/disposed/);
    expect(() => trainer.stepsTaken).toThrow(/disposed/);
    trainer.dispose();
  });

  it('Symbol.dispose disposes (for `using` declarations)', async () => {
    const trainer = await Trainer.create(options);
    trainer[Symbol.dispose]();
    expect(trainer.isDisposed).toBe(true);
    const fineTuner = await FineTuner.create({
      widths: [8, 16],
      blocks: [1, 1],
      inChannels: 1,
      classes: 3,
      schedule: { peakLr: 0.1, totalSteps: 4 },
    });
    fineTuner[Symbol.dispose]();
    expect(fineTuner.isDisposed).toBe(true);
    await expect(fineTuner.state()).rejects.toThrow(/this FineTuner was disposed; create another with FineTuner.create\(\)/);
    expect(() => fineTuner.featureDim).toThrow(/disposed/);
  });

  it('the raw addon objects refuse calls after dispose() with an error, not a crash', async () => {
    const trainer = await Trainer.create(options);
    // The native handle under the TypeScript object: its own check, without the TypeScript one.
    const handle = (trainer as unknown as { nativeHandle: NativeTrainer }).nativeHandle;
    const images = await noisyViews(views, batch);
    const stateBefore = handle.state(); // queued before dispose: completes
    handle.dispose();
    expect(Array.isArray(await stateBefore)).toBe(true);
    expect(() => handle.stepsTaken).toThrow(/this Trainer was disposed; create another with createTrainer\(\)/);
    expect(() => handle.step(images, [...shape])).toThrow(/disposed/);
    expect(() => handle.state()).toThrow(/disposed/);
  });
});
