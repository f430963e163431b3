// The binding's own argument checks (native/src/addon/arguments.h and each binding), called on the raw
// addon: lib/ validates first, so without these tests they would never run. Each wrong type or shape
// is an Error of the right kind with a message naming the argument, and the process goes on.
import { describe, expect, it } from 'vitest';
import { native } from '../lib/runtime/native.js';

const addon = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
// What lib/train/trainer.ts hands createTrainer, every field present.
const trainerOptions = {
  backbone: 'small',
  stem: 'small',
  inChannels: 1,
  widths: [8, 16],
  blocks: [1, 1],
  projectorHidden: [16],
  projectorOut: 8,
  views: 2,
  seed: 1,
  loss: { rs: 2, potPow: 2, minMargin: 0, maxRange: 10, lw0: 0, lw1: 1, log: true },
  optimiser: { name: 'lars', momentum: 0.9, weightDecay: 0, eta: 0.001, nesterov: false, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  schedule: { peakLr: 0.1, warmupSteps: 1, totalSteps: 4, startLr: 0, finalLr: 0 },
  device: 'cpu',
  precision: 'fp32',
  memoryFormat: 'contiguous',
  syncBatchNorm: false,
};

/** Calls fn (sync or async) and returns the error it throws or rejects with. */
async function failure(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

describe('the raw addon refuses bad arguments', () => {
  it.each([
    [
      'packingLoss with 2 arguments',
      () => addon.packingLoss!(new Float32Array(8), 2),
      TypeError,
      /packingLoss\(z, views, dim, options, mode\) takes 5 arguments/,
    ],
    [
      'packingLoss on an Int32Array',
      () => addon.packingLoss!(new Int32Array(8), 2, 2, {}, 'fused'),
      TypeError,
      /z must be a Float32Array or Float64Array/,
    ],
    ['packingLoss with dim 0', () => addon.packingLoss!(new Float32Array(8), 2, 0, {}, 'fused'), RangeError, /dim must be at least 1/],
    ['setNumThreads("2")', () => addon.setNumThreads!('2'), TypeError, /setNumThreads\(threads: number\)/],
    ['setNumThreads(0)', () => addon.setNumThreads!(0), RangeError, /threads must be a whole number >= 1, got 0/],
    ['createTrainer(42)', () => addon.createTrainer!(42), TypeError, /createTrainer\(options\)/],
    [
      'createTrainer without a backbone',
      () => addon.createTrainer!({ ...trainerOptions, backbone: undefined }),
      TypeError,
      /backbone must be a string/,
    ],
    [
      'createTrainer with widths of strings',
      () => addon.createTrainer!({ ...trainerOptions, widths: ['8'] }),
      TypeError,
      /widths must be an array of numbers/,
    ],
    [
      'createTrainer with an unknown stem',
      () => addon.createTrainer!({ ...trainerOptions, stem: 'tiny' }),
      Error,
      /stem must be imagenet, cifar or small, got tiny/,
    ],
    ['createEncoder with a state that is no array', () => addon.createEncoder!({}, 'state'), TypeError, /createEncoder\(options, state\)/],
    ['effectiveRank on a Float64Array', () => addon.effectiveRank!(new Float64Array(4), 2), TypeError, /features must be a Float32Array/],
    [
      'effectiveRank with a length no multiple of dim',
      () => addon.effectiveRank!(new Float32Array(5), 2),
      RangeError,
      /features.length must be a non-zero multiple of dim 2/,
    ],
    [
      'cosineTopK with a string k',
      () => addon.cosineTopK!(new Float32Array(4), new Float32Array(2), 2, '1'),
      TypeError,
      /dim and k must be numbers/,
    ],
    [
      'knnVotes with queries of another width',
      () => addon.knnVotes!(new Float32Array(4), new Int32Array(2), new Float32Array(3), 2, { k: 1, temperature: 0.1, classes: 2 }),
      RangeError,
      /train.length and queries.length must be multiples of dim 2/,
    ],
    [
      'linearProbe with 4 arguments',
      () => addon.linearProbe!(new Float32Array(4), new Int32Array(2), new Float32Array(4), new Int32Array(2)),
      TypeError,
      /linearProbe\(train, trainLabels, test, testLabels, dim, options\)/,
    ],
  ])('%s', async (_, call, type, message) => {
    const error = await failure(call);
    expect(error).toBeInstanceOf(type);
    expect(error.message).toMatch(message);
  });

  it("a trainer's calls check their images, shapes and state entries", async () => {
    const trainer = (await addon.createTrainer!(trainerOptions)) as Record<string, (...args: unknown[]) => unknown>;
    const images = new Float32Array(4 * 1 * 8 * 8);
    const cases: [() => unknown, ErrorConstructor, RegExp][] = [
      [
        () => trainer.step!(new Float64Array(images.length), [4, 1, 8, 8]),
        TypeError,
        /step\(images: Float32Array, shape: \[n, c, h, w\]\)/,
      ],
      [() => trainer.step!(images, [4, 1, 8]), RangeError, /shape must be \[n, c, h, w\]/],
      [() => trainer.step!(images, [4, 1, 8, 9]), RangeError, /images.length 256 does not match the shape/],
      [() => trainer.features!(images, 'shape'), TypeError, /shape must be an array of numbers/],
      [() => trainer.loadState!('state'), TypeError, /loadState\(entries: \{ name, shape, data \}\[\]\)/],
      [
        () => trainer.loadState!([{ name: 'conv1.weight', shape: [1], data: [0] }]),
        TypeError,
        /state entry conv1.weight: data must be a typed array/,
      ],
      [() => trainer.anyRank!('yes'), TypeError, /anyRank\(flag: boolean\)/],
      [() => trainer.distribute!(7), TypeError, /distribute\(\{ masterAddr, masterPort, rank, worldSize, timeoutMs \}\)/],
    ];
    for (const [call, type, message] of cases) {
      const error = await failure(call);
      expect(error).toBeInstanceOf(type);
      expect(error.message).toMatch(message);
    }
    // Still usable after every refusal.
    const result = (await trainer.step!(
      images.map((_, k) => Math.sin(k)),
      [4, 1, 8, 8],
    )) as { loss: number };
    expect(Number.isFinite(result.loss)).toBe(true);
    trainer.dispose!();
  });

  it("an encoder's embed() checks its pixels and shape", async () => {
    const encoderOptions = {
      backbone: 'small',
      stem: 'small',
      inChannels: 1,
      widths: [8, 16],
      blocks: [1, 1],
      imageSize: 8,
      mean: [0.5],
      std: [0.25],
      device: 'cpu',
      precision: 'fp32',
      maxBatch: 0,
    };
    // A state of this backbone: a fresh trainer's (the encoder ignores the projector's entries).
    const trainer = (await addon.createTrainer!(trainerOptions)) as Record<string, (...args: unknown[]) => unknown>;
    const state = await trainer.state!();
    trainer.dispose!();
    const encoder = (await addon.createEncoder!(encoderOptions, state)) as Record<string, (...args: unknown[]) => unknown>;
    const cases: [() => unknown, ErrorConstructor, RegExp][] = [
      [
        () => encoder.embed!(new Int16Array(64), [1, 8, 8, 1]),
        TypeError,
        /embed\(images: Uint8Array \[n, H, W, C\] \| Float32Array \[n, C, H, W\], shape\)/,
      ],
      [() => encoder.embed!(new Uint8Array(64), [1, 8, 8]), RangeError, /shape must have 4 entries/],
      [() => encoder.embed!(new Uint8Array(64), [1, 8, 0, 1]), RangeError, /every entry of shape must be at least 1/],
      [() => encoder.embed!(new Uint8Array(64), [1, 8, 8, 1, 1]), RangeError, /shape must have 4 entries/],
    ];
    for (const [call, type, message] of cases) {
      const error = await failure(call);
      expect(error).toBeInstanceOf(type);
      expect(error.message).toMatch(message);
    }
    const features = (await encoder.embed!(new Uint8Array(64).fill(9), [1, 8, 8, 1])) as Float32Array;
    expect(features.length).toBe(encoder.featureDim as unknown as number);
    encoder.dispose!();
  });
});
