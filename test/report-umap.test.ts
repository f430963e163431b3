// The report's UMAP map: the layout keeps well-separated clusters apart, a seed reproduces it exactly
// (and another seed gives another), an abort stops it; and in the report of a tiny real run the UMAP
// map sits beside the PCA one, drawn from the same test images, with the same PNG bytes when drawn twice.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { Random } from '../lib/random.js';
import { buildReport } from '../lib/report/report.js';
import { evenlySpread, umap } from '../lib/report/umap.js';
import { train } from '../lib/train/training-run.js';

/** `perCluster` points around each of `clusters` random unit centres in `d` dimensions, noise `spread`. */
function clustered(clusters: number, perCluster: number, d: number, spread: number, seed: number) {
  const random = new Random(seed);
  const centres = Array.from({ length: clusters }, () => Array.from({ length: d }, () => random.normal()));
  const data = new Float64Array(clusters * perCluster * d);
  const labels: number[] = [];
  for (let c = 0; c < clusters; c++) {
    for (let p = 0; p < perCluster; p++) {
      const row = (c * perCluster + p) * d;
      for (let k = 0; k < d; k++) data[row + k] = centres[c]![k]! + spread * random.normal();
      labels.push(c);
    }
  }
  return { data, labels, n: clusters * perCluster, d };
}

/** The share of points whose nearest other point in the 2-D layout has their label. */
function neighbourAgreement(projections: Float64Array, labels: readonly number[]): number {
  let agree = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = -1,
      bestDistance = Infinity;
    for (let j = 0; j < labels.length; j++) {
      if (j === i) continue;
      const dx = projections[2 * i]! - projections[2 * j]!,
        dy = projections[2 * i + 1]! - projections[2 * j + 1]!;
      if (dx * dx + dy * dy < bestDistance) [best, bestDistance] = [j, dx * dx + dy * dy];
    }
    if (labels[best] === labels[i]) agree++;
  }
  return agree / labels.length;
}

describe('umap', () => {
  it('keeps separated clusters apart, and a seed reproduces the layout exactly', async () => {
    const { data, labels, n, d } = clustered(4, 60, 32, 0.15, 3);
    const first = await umap(data, n, d, { seed: 11 });
    expect(first.projections).toHaveLength(2 * n);
    expect(Array.from(first.projections).every(Number.isFinite)).toBe(true);
    expect(first.neighbours).toBe(15);
    expect(neighbourAgreement(first.projections, labels)).toBeGreaterThan(0.97);
    const again = await umap(data, n, d, { seed: 11 });
    expect(Array.from(again.projections)).toEqual(Array.from(first.projections));
    const other = await umap(data, n, d, { seed: 12 });
    expect(Array.from(other.projections)).not.toEqual(Array.from(first.projections));
  });

  it('refuses too few points or a mis-sized matrix, and stops on an abort', async () => {
    await expect(umap(new Float64Array(9 * 2), 9, 2)).rejects.toThrow(/n >= 10/);
    await expect(umap(new Float64Array(10), 10, 2)).rejects.toThrow(/not n \* d/);
    const { data, n, d } = clustered(2, 20, 4, 0.1, 1);
    await expect(umap(data, n, d, { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i);
  });

  it('spreads a subset evenly', () => {
    expect(evenlySpread(10, 4)).toEqual([0, 2, 5, 7]);
    expect(evenlySpread(3, 5)).toEqual([0, 1, 2]);
  });
});

describe('the UMAP map in the report', () => {
  it('sits beside the PCA map, and the same run and seed draw the same PNG bytes twice', async () => {
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-report-umap-'));
    const config = resolveTrainConfig({
      overrides: {
        data: { limit: 256, testLimit: 400 },
        schedule: { epochs: 1, warmupEpochs: 0.5 },
        run: { batchSize: 64, views: 2, workers: 2, seed: 4 },
        eval: { atEnd: false },
      },
    });
    await train(config, { runDir });
    const progress: string[] = [];
    const first = await buildReport(runDir, { mapImages: 300, onProgress: (line) => progress.push(line) });
    console.log(`report-umap test: ${progress.join('; ')}`);
    const file = path.join(runDir, 'report', 'embedding-map-umap.png');
    expect(first.pngs).toContain(file);
    const bytes = await fs.readFile(file);
    const meta = await sharp(bytes).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(600); // drawn at 2x its CSS size

    const html = await fs.readFile(first.html, 'utf8');
    // Both maps in the side-by-side grid, the UMAP one naming its subset and seed.
    const maps = html.slice(html.indexOf('<div class="maps">'), html.indexOf('<h2>Augmented views</h2>'));
    expect(maps.match(/<figure class="panel"><img src="data:image\/png;base64,/g)).toHaveLength(2);
    expect(maps).toContain('alt="Test embeddings laid out by UMAP"');
    expect(maps).toMatch(/300 of those images, .* seed 4\)/);
    expect(progress.some((line) => /^embedding map: UMAP \(\d+\.\d+ s\)$/.test(line))).toBe(true);

    await buildReport(runDir, { mapImages: 300 });
    expect((await fs.readFile(file)).equals(bytes)).toBe(true);
  }, 120_000);
});
