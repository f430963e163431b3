// Semi-supervised fine-tuning: class-balanced label subsets, the native fine-tuner (a CLAMP backbone
// loads into it, a frozen backbone stays put, refusals name the problem), the whole protocol learning
// a task and not learning shuffled labels, and the `finetune` command.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTrainConfig, type TrainConfig } from '../lib/config/train-config.js';
import type { ImageDataset } from '../lib/data/image-dataset.js';
import { balancedLabelSubset, datasetSubset } from '../lib/data/label-subset.js';
import { topKAccuracy } from '../lib/eval/diagnostics.js';
import { evaluate } from '../lib/eval/evaluate.js';
import { parseLabelShare } from '../lib/cli/finetune-command.js';
import { Random } from '../lib/random.js';
import { FineTuner } from '../lib/train/fine-tuner.js';
import { fineTune, fineTunerFor } from '../lib/train/fine-tune-run.js';
import { trainerFor } from '../lib/train/from-config.js';
import { train } from '../lib/train/training-run.js';

const SIDE = 12;

/** Four classes that survive crops and flips: horizontal stripes, vertical stripes, a checkerboard, flat grey; with noise. */
function stripes(count: number, seed: number): ImageDataset {
  const random = new Random(seed);
  const images = new Uint8Array(count * SIDE * SIDE);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % 4;
    labels[i] = label;
    const phase = random.integer(0, 1);
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const on = [((y >> 1) + phase) % 2, ((x >> 1) + phase) % 2, ((x >> 1) + (y >> 1) + phase) % 2, 0.5][label]!;
        images[i * SIDE * SIDE + y * SIDE + x] = Math.max(0, Math.min(255, Math.round(40 + 170 * on + random.uniform(-40, 40))));
      }
    }
  }
  return { images, labels, count, channels: 1, height: SIDE, width: SIDE, classes: 4 };
}

const tiny: TrainConfig = resolveTrainConfig({
  overrides: {
    augment: { size: SIDE, normalize: { mean: [0.5], std: [0.3] } },
    model: { widths: [8, 16], blocks: [1, 1], projectorHidden: [32], projectorOut: 16 },
    run: { batchSize: 32, views: 2, workers: 1 },
  },
});

describe('balancedLabelSubset', () => {
  const labels = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) % 10);

  it('takes the same share of every class, at least one each, reproducibly', () => {
    const subset = balancedLabelSubset(labels, 10, 0.05, 3);
    const perClass = new Array(10).fill(0);
    for (const i of subset) perClass[labels[i]!]++;
    expect(perClass).toEqual(new Array(10).fill(5));
    expect(subset).toEqual([...subset].sort((a, b) => a - b));
    expect(new Set(subset).size).toBe(subset.length);
    expect(balancedLabelSubset(labels, 10, 0.05, 3)).toEqual(subset);
    expect(balancedLabelSubset(labels, 10, 0.05, 4)).not.toEqual(subset);
    expect(balancedLabelSubset(labels, 10, 0.001, 0)).toHaveLength(10);
  });

  it("a larger share's subset contains a smaller one's", () => {
    const small = balancedLabelSubset(labels, 10, 0.01, 9),
      large = new Set(balancedLabelSubset(labels, 10, 0.1, 9));
    expect(small.every((i) => large.has(i))).toBe(true);
  });

  it('refuses shares outside (0, 1] and labels outside the classes', () => {
    expect(() => balancedLabelSubset(labels, 10, 0, 0)).toThrow(/\(0, 1\], got 0/);
    expect(() => balancedLabelSubset(labels, 10, 1.5, 0)).toThrow(RangeError);
    expect(() => balancedLabelSubset(labels, 5, 0.1, 0)).toThrow(/label 7 of image 1 is outside \[0, 5\)/);
  });

  it('datasetSubset copies the chosen images and labels in order', () => {
    const data = stripes(10, 1);
    const subset = datasetSubset(data, [7, 2]);
    expect(subset.count).toBe(2);
    expect(Array.from(subset.labels)).toEqual([data.labels[7], data.labels[2]]);
    expect(subset.images.subarray(SIDE * SIDE)).toEqual(data.images.subarray(2 * SIDE * SIDE, 3 * SIDE * SIDE));
  });

  it('the CLI reads percentages and fractions', () => {
    expect(parseLabelShare('1%')).toBeCloseTo(0.01, 12);
    expect(parseLabelShare('0.1')).toBe(0.1);
    expect(() => parseLabelShare('0')).toThrow(/shares in \(0, 1\]/);
    expect(() => parseLabelShare('150%')).toThrow(/got '150%'/);
  });
});

describe('topKAccuracy', () => {
  it('counts a row right when fewer than k classes score above its label', () => {
    const scores = Float32Array.from([0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0.2, 0.3, 0.4]);
    expect(topKAccuracy(scores, [1, 1, 0], 3, 1)).toBeCloseTo(1 / 3, 12);
    expect(topKAccuracy(scores, [1, 1, 0], 3, 2)).toBeCloseTo(2 / 3, 12);
    expect(topKAccuracy(scores, [1, 1, 0], 3, 3)).toBe(1);
  });
});

describe('FineTuner', () => {
  it("loads a CLAMP trainer's backbone: the same features; another architecture is refused by name", async () => {
    const trainer = await trainerFor(tiny, 1, 10);
    const data = stripes(8, 2);
    const images = Float32Array.from(data.images, (v) => v / 255);
    const shape = [8, 1, SIDE, SIDE] as const;
    const two = new Float32Array(2 * images.length);
    two.set(images);
    two.set(
      images.map((v) => v * 0.9),
      images.length,
    );
    await trainer.step(two, [16, 1, SIDE, SIDE]); // BatchNorm statistics and weights move off their initial values
    const state = await trainer.state();
    const fineTuner = await fineTunerFor(tiny, 1, 4, { schedule: { peakLr: 0.1, totalSteps: 10 }, seed: 99 });
    expect(Array.from(await fineTuner.features(images, shape))).not.toEqual(Array.from(await trainer.features(images, shape)));
    await fineTuner.loadBackbone(state);
    expect(Array.from(await fineTuner.features(images, shape))).toEqual(Array.from(await trainer.features(images, shape)));

    const wider = await FineTuner.create({
      widths: [8, 32],
      blocks: [1, 1],
      inChannels: 1,
      classes: 4,
      schedule: { peakLr: 0.1, totalSteps: 10 },
    });
    await expect(wider.loadBackbone(state)).rejects.toThrow(/layer2\.0\.conv1\.weight has shape .* this backbone needs/);
    await expect(fineTuner.step(images, shape, new Uint8Array(7))).rejects.toThrow(/7 labels for 8 images/);
    await expect(fineTuner.step(images, shape, Uint8Array.from([0, 1, 2, 3, 4, 0, 1, 2]))).rejects.toThrow(/labels must lie in \[0, 4\)/);
    await expect(fineTuner.standardise(new Float32Array(3))).rejects.toThrow(/at least 2 rows of 16 features/);
    await expect(FineTuner.create({ classes: 1, schedule: { peakLr: 0.1, totalSteps: 10 } })).rejects.toThrow(/options.classes/);
  });

  it('a frozen backbone (backboneLrScale 0) keeps every weight and statistic; fine-tuning moves them', async () => {
    const data = stripes(16, 3);
    const images = Float32Array.from(data.images, (v) => v / 255);
    const shape = [16, 1, SIDE, SIDE] as const;
    for (const backboneLrScale of [0, 0.1]) {
      const fineTuner = await fineTunerFor(tiny, 1, 4, { schedule: { peakLr: 0.5, totalSteps: 10 }, backboneLrScale });
      const backbone = async () =>
        (await fineTuner.state()).filter((e) => !e.name.startsWith('head.')).map((e) => Array.from(e.data as Float32Array));
      const before = await backbone();
      for (let k = 0; k < 3; k++) await fineTuner.step(images, shape, data.labels);
      const after = await backbone();
      if (backboneLrScale === 0) expect(after).toEqual(before);
      else expect(after).not.toEqual(before);
      const head = (await fineTuner.state()).find((e) => e.name === 'head.weight')!;
      expect(Array.from(head.data as Float32Array).some((v) => v !== 0)).toBe(true);
    }
  });
});

describe('fineTune', () => {
  const trainSet = stripes(256, 10),
    testSet = stripes(200, 11);

  it('learns a task from labelled images, and labels unrelated to the images leave the test set at chance', async () => {
    const options = { fromScratch: true, labels: 1, epochs: 6, batchSize: 32, lr: 0.1, backboneLrScale: 1, workers: 1 };
    const learned = await fineTune(null, tiny, trainSet, testSet, options);
    expect(learned.top1).toBeGreaterThan(0.9);
    expect(learned).toMatchObject({ labelledImages: 256, epochs: 6, steps: 48, fromScratch: true });
    expect(learned.history.at(-1)!.loss).toBeLessThan(learned.history[0]!.loss);
    expect(learned.confusion.flat().reduce((a, b) => a + b, 0)).toBe(200);

    // Labels that say nothing about the images: every class's images carry each label equally often.
    const unrelated = (set: ImageDataset) => ({ ...set, labels: Uint8Array.from(set.labels, (_, i) => Math.floor(i / 4) % 4) });
    const chance = await fineTune(null, tiny, unrelated(trainSet), unrelated(testSet), options);
    expect(Math.abs(chance.top1 - 0.25)).toBeLessThan(0.1);
  }, 60_000);

  it('uses the class-balanced share of the labels it is given', async () => {
    const result = await fineTune(null, tiny, trainSet, testSet, { fromScratch: true, labels: 0.25, epochs: 1, batchSize: 16, workers: 1 });
    expect(result).toMatchObject({ labelledImages: 64, epochs: 1, steps: 4, labels: 0.25 });
    await expect(fineTune(null, tiny, trainSet, testSet, { labels: 0.25, epochs: 1 })).rejects.toThrow(/needs the pretrained state/);
    await expect(fineTune(null, tiny, trainSet, testSet, { labels: 2 })).rejects.toThrow(/finetune.labels/);
  });
});

describe('the linear probe with crops and flips', () => {
  it('trains through augmented views of a frozen backbone at the rate the feature probe chose', async () => {
    const trainer = await trainerFor(tiny, 1, 10);
    const trainSet = stripes(256, 20),
      testSet = stripes(200, 21);
    const withAugmentation = {
      ...tiny,
      eval: { ...tiny.eval, linearProbe: { ...(tiny.eval.linearProbe as object), epochs: 20, augmentEpochs: 4 } },
    } as TrainConfig;
    const before = (await trainer.state()).map((e) => Array.from(e.data as Float32Array));
    const result = await evaluate(trainer, trainSet, testSet, withAugmentation, false);
    const probe = result.linearProbe!;
    expect(probe.augmented).toMatchObject({ epochs: 4, learningRate: probe.learningRate });
    expect(probe.augmented!.top1).toBeGreaterThan(0.5);
    expect(probe.augmented!.top5).toBe(1);
    expect((await trainer.state()).map((e) => Array.from(e.data as Float32Array))).toEqual(before);
    const plain = await evaluate(trainer, trainSet, testSet, tiny, false);
    expect(plain.linearProbe!.augmented).toBeUndefined();
  }, 60_000);
});

describe('clamp-native finetune', () => {
  let runDir: string;
  const cli = path.resolve('dist/cli/main.js');

  beforeAll(async () => {
    runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-finetune-'));
    const config = resolveTrainConfig({
      overrides: {
        data: { limit: 256, testLimit: 100 },
        schedule: { epochs: 1, warmupEpochs: 0 },
        run: { batchSize: 64, views: 2, workers: 1 },
        eval: { atEnd: false },
      },
    });
    await train(config, { runDir });
  }, 120_000);

  it('fine-tunes a run on each share of the labels and prints a --json summary', () => {
    const result = spawnSync(
      process.execPath,
      [cli, 'finetune', '--checkpoint', runDir, '--labels', '10%,0.25', '--epochs', '2', '--json'],
      { encoding: 'utf8' },
    );
    expect(result.status, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout.trim()) as {
      dataset: string;
      results: { labels: number; labelledImages: number; epochs: number; top1: number; top5: number }[];
    };
    expect(summary.dataset).toBe('fashion-mnist');
    expect(summary.results.map((r) => [r.labels, r.epochs])).toEqual([
      [0.1, 2],
      [0.25, 2],
    ]);
    expect(summary.results[0]!.labelledImages).toBeLessThan(summary.results[1]!.labelledImages);
    for (const r of summary.results) expect(r.top5).toBeGreaterThanOrEqual(r.top1);
    expect(result.stderr).toMatch(/fashion-mnist, 10% of the labels \(\d+ images, 2 epochs, \d+ steps\): test top-1/);
  }, 120_000);

  it('`eval --augment-epochs` adds the augmented probe to the summary', () => {
    const result = spawnSync(process.execPath, [cli, 'eval', '--checkpoint', runDir, '--augment-epochs', '1', '--json'], {
      encoding: 'utf8',
    });
    expect(result.status, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout.trim()) as {
      linearProbe: { learningRate: number; augmented: { epochs: number; learningRate: number; top1: number } };
    };
    expect(summary.linearProbe.augmented).toMatchObject({ epochs: 1, learningRate: summary.linearProbe.learningRate });
    expect(result.stderr).toMatch(/probe with crops and flips \(1 epochs\) top-1/);
  }, 120_000);

  it('names a bad flag', () => {
    const bad = spawnSync(process.execPath, [cli, 'finetune', '--checkpoint', runDir, '--labels', '0%'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--labels takes shares in \(0, 1\]/);
    const missing = spawnSync(process.execPath, [cli, 'finetune'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/finetune needs --checkpoint/);
  });
});
