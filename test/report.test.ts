// The run report: an exact PCA (known axes recovered), downsampling, and report.html + report/*.png of
// a tiny real run (self-contained: no scripts, nothing fetched; the final accuracy as metrics.jsonl has
// it; every PNG a PNG), of a run with the newer evaluation fields and no checkpoint, and the refusal of
// a folder that is not a run.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runReport } from '../lib/cli/report-command.js';
import { UsageError } from '../lib/cli/train-command.js';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { augmentationSchema } from '../lib/augment/pipeline.js';
import { augmentationGrid } from '../lib/report/augmentation-grid.js';
import { downsample, parseMetrics } from '../lib/report/metrics.js';
import { pca } from '../lib/report/pca.js';
import { buildReport, RunFolderError } from '../lib/report/report.js';
import { Random } from '../lib/random.js';
import { train } from '../lib/train/training-run.js';

const folder = () => fs.mkdtemp(path.join(os.tmpdir(), 'clamp-report-'));
const percent = (fraction: number) => `${(100 * fraction).toFixed(2)}%`;
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((sum, x, k) => sum + x * b[k]!, 0);

async function expectValidPngs(files: string[]): Promise<void> {
  for (const file of files) {
    const meta = await sharp(file).metadata();
    expect(meta.format, file).toBe('png');
    expect(meta.width, file).toBeGreaterThan(0);
    expect(meta.height, file).toBeGreaterThan(0);
  }
}

function expectSelfContained(html: string): void {
  expect(html).not.toMatch(/<script/i);
  expect(html).not.toMatch(/https?:\/\//i);
  expect(html).not.toMatch(/<link\b|<iframe\b|\bsrc="(?!data:)/i);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('pca', () => {
  it('finds the exact axes and variances of a set whose covariance is diagonal', () => {
    // Variance 6 along x, 2/3 along y, none along z; the mean (1, 2, 3) is removed.
    const points = [
      [4, 2, 3],
      [-2, 2, 3],
      [1, 3, 3],
      [1, 1, 3],
    ];
    const result = pca(points.flat(), 4, 3);
    expect(Array.from(result.mean)).toEqual([1, 2, 3]);
    expect(result.variances[0]).toBeCloseTo(6, 10);
    expect(result.variances[1]).toBeCloseTo(2 / 3, 10);
    expect(Array.from(result.components[0]!).map((x) => Math.abs(x))).toEqual([1, 0, 0].map((x) => expect.closeTo(x, 8)));
    expect(Array.from(result.components[1]!).map((x) => Math.abs(x))).toEqual([0, 1, 0].map((x) => expect.closeTo(x, 8)));
    expect(result.explained[0]! + result.explained[1]!).toBeCloseTo(1, 10);
    expect(Math.abs(result.projections[0]!)).toBeCloseTo(3, 8); // (4, 2, 3) lies 3 along the first axis
  });

  it('recovers the known principal axes of a noisy synthetic set in 40 dimensions', () => {
    const random = new Random(7);
    const d = 40,
      n = 3000;
    // Two random orthonormal directions (Gram-Schmidt), standard deviations 5 and 2 along them, 0.3 noise elsewhere.
    const u1 = Array.from({ length: d }, () => random.normal());
    const u2 = Array.from({ length: d }, () => random.normal());
    const norm1 = Math.sqrt(dot(u1, u1));
    for (let k = 0; k < d; k++) u1[k]! /= norm1;
    const along = dot(u1, u2);
    for (let k = 0; k < d; k++) u2[k]! -= along * u1[k]!;
    const norm2 = Math.sqrt(dot(u2, u2));
    for (let k = 0; k < d; k++) u2[k]! /= norm2;
    const data = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      const a = 5 * random.normal(),
        b = 2 * random.normal();
      for (let k = 0; k < d; k++) data[i * d + k] = 10 + a * u1[k]! + b * u2[k]! + 0.3 * random.normal();
    }
    const result = pca(data, n, d);
    expect(Math.abs(dot(result.components[0]!, u1))).toBeGreaterThan(0.999);
    expect(Math.abs(dot(result.components[1]!, u2))).toBeGreaterThan(0.995);
    expect(dot(result.components[0]!, result.components[1]!)).toBeCloseTo(0, 8);
    expect(dot(result.components[0]!, result.components[0]!)).toBeCloseTo(1, 10);
    expect(result.variances[0]! / 25).toBeGreaterThan(0.9);
    expect(result.variances[0]! / 25).toBeLessThan(1.1);
    expect(result.variances[1]! / 4).toBeGreaterThan(0.9);
    expect(result.variances[1]! / 4).toBeLessThan(1.1);
    // The projections are centred and carry the variances found.
    const first = Array.from({ length: n }, (_, i) => result.projections[2 * i]!);
    const mean = first.reduce((s, x) => s + x, 0) / n;
    expect(mean).toBeCloseTo(0, 8);
    expect(first.reduce((s, x) => s + x * x, 0) / (n - 1)).toBeCloseTo(result.variances[0]!, 6);
  });
});

describe('metrics', () => {
  it('downsampling keeps at most the threshold, the ends, and a spike', () => {
    const points = Array.from({ length: 10_000 }, (_, i) => ({ x: i, y: i === 5_432 ? 100 : Math.sin(i / 300) }));
    const kept = downsample(
      points,
      2000,
      (p) => p.x,
      (p) => p.y,
    );
    expect(kept.length).toBeLessThanOrEqual(2000);
    expect(kept[0]).toBe(points[0]);
    expect(kept[kept.length - 1]).toBe(points[points.length - 1]);
    expect(kept.some((p) => p.y === 100)).toBe(true);
    expect(
      downsample(
        points.slice(0, 10),
        2000,
        (p) => p.x,
        (p) => p.y,
      ),
    ).toHaveLength(10);
  });

  it('reads step, epoch and evaluation lines, NaN written as null, and skips a half-written last line', () => {
    const text = [
      JSON.stringify({ kind: 'step', epoch: 0, step: 0, loss: 5, lr: 0.1 }),
      JSON.stringify({
        kind: 'evaluation',
        epoch: -1,
        step: 0,
        knn: { top1: 0.5, top5: 0.9, k: 20 },
        linearProbe: null,
        perClass: { knn: [0.5, null], linearProbe: null },
        manifolds: { meanRadius: 0.3, meanCentreDistance: 0.5, overlap: 0.1, radius: [0.3, null] },
      }),
      JSON.stringify({ kind: 'epoch', epoch: 0, loss: 5, steps: 1, seconds: 2, viewImagesPerSecond: 64 }),
      '{"kind":"step","epo',
    ].join('\n');
    const metrics = parseMetrics(text);
    expect(metrics.steps).toEqual([{ kind: 'step', epoch: 0, step: 0, loss: 5, lr: 0.1 }]);
    expect(metrics.epochs).toHaveLength(1);
    expect(metrics.evaluations[0]).toMatchObject({ epoch: -1, knn: { top1: 0.5 }, perClass: { knn: [0.5, null] } });
    expect(metrics.evaluations[0]!.rankMe).toBeUndefined();
    expect(metrics.skipped).toBe(1);
  });
});

describe('augmentation grid', () => {
  it('shows each image and its views, normalisation undone, small images scaled up to 64 px tiles', async () => {
    // 3 colour images of 20 x 20; an identity pipeline (whole-image crop, nothing random) that normalises, and a random one.
    const size = 20,
      count = 3;
    const images = Uint8Array.from({ length: count * 3 * size * size }, (_, k) => (k * 37) % 256);
    const dataset = { images, labels: Uint8Array.from([0, 1, 2]), count, channels: 3, height: size, width: size, classes: 3 };
    const normalize = { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] };
    const identity = augmentationSchema.parse({
      size,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
      normalize,
    });
    const random = augmentationSchema.parse({ size, normalize });
    const grid = await augmentationGrid(dataset, [identity, random], { rows: 8, views: 4, gap: 2 });
    expect(grid.rows).toBe(3); // only 3 images
    expect(grid.pipelineOfView).toEqual([0, 1, 0, 1]);
    const tile = 80; // 20 px scaled 4x (the smallest whole factor reaching 64)
    expect([grid.width, grid.height]).toEqual([5 * tile + 6 * 2, 3 * tile + 4 * 2]);
    const { data, info } = await sharp(grid.png).raw().toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(3);
    const pixel = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3));
    for (const [row, column] of [
      [0, 0],
      [0, 1],
      [2, 3],
    ] as const) {
      // Tile (row, column) at the source pixel (5, 7): columns 0 (the image) and 1, 3 (identity views) show the bytes themselves.
      const x = 2 + column * (tile + 2) + 7 * 4 + 1,
        y = 2 + row * (tile + 2) + 5 * 4 + 2;
      const expected = [0, 1, 2].map((c) => images[((row * 3 + c) * size + 5) * size + 7]!);
      pixel(x, y).forEach((value, c) => expect(Math.abs(value - expected[c]!)).toBeLessThanOrEqual(1));
    }
    expect(pixel(0, 0)).toEqual([255, 255, 255]); // the white gap
  });
});

describe('report', () => {
  it('of a tiny real run: a self-contained report.html with the final accuracy, and valid PNGs', async () => {
    // 256 images, batch 64, 2 views: 4 steps an epoch, 2 epochs; an evaluation before, a kNN monitor after epoch 1, the full one at the end.
    const config = resolveTrainConfig({
      overrides: {
        data: { limit: 256, testLimit: 300 },
        schedule: { epochs: 2, warmupEpochs: 0.5 },
        run: { batchSize: 64, views: 2, workers: 2 },
        eval: { atStart: true, every: 1, atEnd: true, linearProbe: { epochs: 20 } },
      },
    });
    const runDir = await folder();
    const started = performance.now();
    await train(config, { runDir });
    const trained = performance.now();
    const progress: string[] = [];
    const result = await buildReport(runDir, { mapImages: 200, onProgress: (line) => progress.push(line) });
    console.log(
      `report test: training ${((trained - started) / 1000).toFixed(1)} s, report ${((performance.now() - trained) / 1000).toFixed(1)} s: ${progress.join('; ')}`,
    );

    expect(result.html).toBe(path.join(runDir, 'report.html'));
    const html = await fs.readFile(result.html, 'utf8');
    expectSelfContained(html);
    const evaluations = (await fs.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            kind: string;
            epoch: number;
            knn: { top1: number; top5: number };
            linearProbe: { top1: number } | null;
            rankMe?: number;
            confusion?: unknown;
          },
      )
      .filter((line) => line.kind === 'evaluation');
    expect(evaluations.map((e) => e.epoch)).toEqual([-1, 0, 1]);
    const final = evaluations[evaluations.length - 1]!;
    expect(html).toContain(percent(final.knn.top1));
    expect(html).toContain(percent(final.knn.top5));
    expect(html).toContain(percent(final.linearProbe!.top1));
    expect(html).toContain('Ankle boot'); // the per-class table names Fashion-MNIST's classes
    expect(html).toMatch(/<details>\s*<summary>config\.json<\/summary>/);

    // Runs from before RankMe and the confusion matrices lack them (the evaluation has both since they were added).
    if (final.rankMe !== undefined) expect(html).toMatch(/RankMe<\/div><div class="value">[0-9.]+</);
    const names = result.pngs.map((file) => path.basename(file)).sort();
    expect(names).toEqual(
      [
        'accuracy',
        'activity',
        'augmentations',
        ...(final.confusion ? ['confusion'] : []),
        'contacts-per-image',
        'embedding-map-umap', // sorted with its .png: '-' before '.'
        'embedding-map',
        'energy',
        'learning-rate',
        'loss',
        'mean-radius',
        'per-class',
      ].map((n) => `${n}.png`),
    );
    expect(result.pngs.every((file) => path.dirname(file) === path.join(runDir, 'report'))).toBe(true);
    await expectValidPngs(result.pngs);
    // Every picture is inside the page itself.
    expect(html.match(/src="data:image\/png;base64,/g)).toHaveLength(result.pngs.length);
    // The augmentation grid: 8 rows and 7 columns of 28 px images scaled up to 84 px tiles, 2 px apart.
    const grid = await sharp(path.join(runDir, 'report', 'augmentations.png')).metadata();
    expect([grid.width, grid.height]).toEqual([7 * 84 + 8 * 2, 8 * 84 + 9 * 2]);

    // Without the checkpoint the map is left out and the report says why; its old PNG goes.
    await fs.rm(path.join(runDir, 'checkpoint.safetensors'));
    const again = await buildReport(runDir);
    expect(again.pngs.map((file) => path.basename(file))).not.toContain('embedding-map.png');
    await expect(fs.access(path.join(runDir, 'report', 'embedding-map.png'))).rejects.toThrow();
    await expect(fs.access(path.join(runDir, 'report', 'embedding-map-umap.png'))).rejects.toThrow();
    expect(await fs.readFile(again.html, 'utf8')).toMatch(/No map: the run folder has no checkpoint/);
  }, 120_000);

  it('shows RankMe and the confusion matrix when the evaluation has them; --json names the files', async () => {
    const runDir = await folder();
    const config = resolveTrainConfig({
      overrides: { data: { limit: 64 }, schedule: { epochs: 1, warmupEpochs: 0 }, run: { batchSize: 32, views: 2 } },
    });
    await fs.writeFile(path.join(runDir, 'config.json'), JSON.stringify(config));
    const confusion = Array.from({ length: 10 }, (_, t) =>
      Array.from({ length: 10 }, (_, p) => (t === p ? 40 : t === 6 && p === 0 ? 15 : 1)),
    );
    const lines = [
      ...Array.from({ length: 5 }, (_, step) => ({
        kind: 'step',
        epoch: 0,
        step,
        loss: 6 - step / 10,
        energy: 400 - step,
        meanRadius: 0.5,
        meanDistance: 1.2,
        contactsPerImage: 3,
        activity: 0.9,
        lr: 0.5,
        gradNorm: 1,
        viewImagesPerSecond: 900,
      })),
      { kind: 'epoch', epoch: 0, loss: 5.8, lr: 0.5, steps: 5, viewImagesPerSecond: 880, seconds: 0.36 },
      {
        kind: 'evaluation',
        epoch: 0,
        step: 5,
        knn: { top1: 0.7654, top5: 0.9876, k: 200 },
        linearProbe: { top1: 0.8123, top5: 0.99, learningRate: 0.1 },
        perClass: { knn: [0.9, 0.95, 0.7, 0.8, 0.6, 0.9, null, 0.9, 0.95, 0.9], linearProbe: Array(10).fill(0.8) },
        manifolds: { meanRadius: 0.41, meanCentreDistance: 0.62, overlap: 0.37, radius: Array(10).fill(0.4) },
        rankMe: 37.25,
        confusion: { knn: confusion, linearProbe: confusion },
      },
    ];
    await fs.writeFile(path.join(runDir, 'metrics.jsonl'), `${lines.map((line) => JSON.stringify(line)).join('\n')}\n`);

    const stdout: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => (stdout.push(String(chunk)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(await runReport([runDir, '--map-images', '0', '--json'])).toBe(0);
    vi.restoreAllMocks();
    const printed = JSON.parse(stdout.join('').trim()) as { html: string; pngs: string[]; seconds: number };
    expect(printed.html).toBe(path.join(runDir, 'report.html'));
    expect(printed.pngs.map((file) => path.basename(file))).toEqual(
      expect.arrayContaining(['confusion.png', 'per-class.png', 'accuracy.png', 'loss.png', 'augmentations.png']),
    );
    await expectValidPngs(printed.pngs);
    const html = await fs.readFile(printed.html, 'utf8');
    expectSelfContained(html);
    expect(html).toContain('76.54%');
    expect(html).toContain('81.23%');
    expect(html).toContain('37.25'); // RankMe
    expect(html).toContain('Left out (--map-images 0)');
    expect(html).not.toContain('did not record confusion');
  }, 60_000);

  it('escapes text from the run folder into the page', async () => {
    const runDir = await folder();
    const config = resolveTrainConfig({
      overrides: {
        data: { limit: 64, path: '/nowhere/<script>alert(1)</script>' },
        schedule: { epochs: 1, warmupEpochs: 0 },
        run: { batchSize: 32, views: 2 },
      },
    });
    await fs.writeFile(path.join(runDir, 'config.json'), JSON.stringify(config));
    await fs.writeFile(path.join(runDir, 'metrics.jsonl'), `${JSON.stringify({ kind: 'step', epoch: 0, step: 0, loss: 1 })}\n`);
    const result = await buildReport(runDir, { mapImages: 0 });
    const html = await fs.readFile(result.html, 'utf8');
    expectSelfContained(html);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toMatch(/No augmentation grid: the training images could not be read here/);
  });

  it('refuses a folder that is not a run, naming what is missing and what to pass', async () => {
    const empty = await folder();
    const message = `${empty} is not a run folder: it has no metrics.jsonl; pass the --out folder of a \`clamp-native train\` run`;
    await expect(buildReport(empty)).rejects.toThrow(message);
    await expect(buildReport(empty)).rejects.toBeInstanceOf(RunFolderError);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(runReport([empty])).rejects.toThrow(message);
    await expect(runReport([path.join(empty, 'missing')])).rejects.toThrow(/missing is not a run folder: it does not exist/);
    await expect(runReport([])).rejects.toBeInstanceOf(UsageError);
    await expect(runReport([empty, '--map-images', 'many'])).rejects.toThrow(/--map-images must be a whole number/);
  });
});
