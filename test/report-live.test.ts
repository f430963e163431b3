// report.html while a run trains: rewritten at each epoch's end with the charts of metrics.jsonl, a
// banner saying where the run stands and a reload hint; a stopped run's page stops reloading; the CLI's
// full report at the end has neither; run.reportEvery 0 writes none; and every rewrite replaces the page
// whole, through a temporary file renamed over it, so a browser never loads half of one.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fsPromises from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { writeRunningReport } from '../lib/report/report.js';
import { train, type TrainEvent } from '../lib/train/training-run.js';

const fs = fsPromises;
const folder = () => fs.mkdtemp(path.join(os.tmpdir(), 'clamp-report-live-'));
const REFRESH = '<meta http-equiv="refresh" content="30">';
const state = (html: string) => /<meta name="clamp-report-state" content="([a-z]+)">/.exec(html)?.[1];
const imageCount = (html: string) => html.match(/<img src="data:image\/png;base64,/g)?.length ?? 0;

// 256 images, batch 64, 2 views: 4 steps an epoch, 2 epochs; a kNN monitor after epoch 1 and the final evaluation (no probe) on 300 test images.
const tiny = resolveTrainConfig({
  overrides: {
    data: { limit: 256, testLimit: 300 },
    schedule: { epochs: 2, warmupEpochs: 0.5 },
    run: { batchSize: 64, views: 2, workers: 2 },
    eval: { every: 1, atEnd: true, linearProbe: false },
  },
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('report.html during a run', () => {
  it('is rewritten after epoch 1 with its charts and the in-progress marker, then says the run is evaluating and trained', async () => {
    const runDir = await folder();
    const file = path.join(runDir, 'report.html');
    const seen: { before?: boolean; afterEpoch1?: string; evaluating?: string } = {};
    // The events come synchronously from the training loop: what the file holds at each is what a browser would load then.
    const onProgress = (event: TrainEvent) => {
      if (event.kind === 'step' && event.result.step === 0) seen.before = existsSync(file);
      if (event.kind === 'step' && event.epoch === 1 && event.batch === 0) seen.afterEpoch1 = readFileSync(file, 'utf8');
      // The first evaluation after epoch 2 began is the final one (epoch 1's kNN monitor came before).
      if (event.kind === 'evaluating' && seen.afterEpoch1 && !seen.evaluating) seen.evaluating = readFileSync(file, 'utf8');
    };
    await train(tiny, { runDir, onProgress });

    expect(seen.before).toBe(false); // nothing before the first epoch ends
    const afterEpoch1 = seen.afterEpoch1!;
    expect(state(afterEpoch1)).toBe('training');
    expect(afterEpoch1).toContain(REFRESH);
    expect(afterEpoch1).toContain('Training: epoch 1 of 2 done (step 4)');
    expect(afterEpoch1).toContain('alt="Loss"');
    expect(afterEpoch1).toContain('alt="Test top-1 accuracy over epochs"'); // the kNN monitor of epoch 1
    // The expensive parts wait for the end; a mid-run page writes no report/*.png.
    expect(afterEpoch1).not.toContain('alt="Test embeddings');
    expect(afterEpoch1).toContain('Drawn when the run has finished');
    await expect(fs.readdir(path.join(runDir, 'report'))).rejects.toThrow(/ENOENT/);

    const evaluating = seen.evaluating!;
    expect(state(evaluating)).toBe('evaluating');
    expect(evaluating).toContain(REFRESH);
    expect(evaluating).toMatch(/Epochs<\/div><div class="value">2 \/ 2</);

    // train() itself ends with the page of a trained run (the CLI draws the full report next), final accuracy in.
    const trained = await fs.readFile(file, 'utf8');
    expect(state(trained)).toBe('trained');
    expect(trained).toContain(REFRESH);
    expect(trained).toContain('alt="Per-class test accuracy"');
    expect((await fs.readdir(runDir)).filter((name) => name.includes('.tmp-'))).toEqual([]);
  }, 120_000);

  it('of a stopped run says how to resume and no longer reloads; run.reportEvery 0 writes no page', async () => {
    const runDir = await folder();
    const controller = new AbortController();
    const summary = await train(
      { ...tiny, eval: { ...tiny.eval, every: 0 } },
      {
        runDir,
        signal: controller.signal,
        onProgress: (event) => {
          if (event.kind === 'step' && event.result.step === 5) controller.abort(); // epoch 2, mid-epoch
        },
      },
    );
    expect(summary.stopped).toBe(true);
    const html = await fs.readFile(path.join(runDir, 'report.html'), 'utf8');
    expect(state(html)).toBe('stopped');
    expect(html).not.toContain('http-equiv="refresh"');
    expect(html).toContain('Stopped after 1 of 2 epochs (step 6)');
    expect(html).toContain(`clamp-native train --resume ${path.resolve(runDir)}`);

    const quiet = await folder();
    await train({ ...tiny, run: { ...tiny.run, reportEvery: 0 }, eval: { ...tiny.eval, every: 0, atEnd: false } }, { runDir: quiet });
    await expect(fs.access(path.join(quiet, 'report.html'))).rejects.toThrow(/ENOENT/);
  }, 120_000);

  it('is replaced whole: written to a temporary name in the folder and renamed over report.html, never opened in place', async () => {
    const runDir = await folder();
    await train({ ...tiny, schedule: { ...tiny.schedule, epochs: 1 }, eval: { ...tiny.eval, every: 0, atEnd: false } }, { runDir });
    const file = path.join(runDir, 'report.html');
    const opened = vi.spyOn(fs, 'open');
    const renamed = vi.spyOn(fs, 'rename');
    // A reader polling the page throughout the rewrites sees whole pages only (a page written in place would be empty or cut while it is written).
    let writing = true;
    const reads: string[] = [];
    const reader = (async () => {
      while (writing) reads.push(await fs.readFile(file, 'utf8'));
    })();
    for (let k = 0; k < 4; k++) await writeRunningReport(runDir, { phase: 'training', epochsDone: 1, epochs: 3, step: 4 + k });
    writing = false;
    await reader;

    const opens = opened.mock.calls.map(([target]) => String(target)).filter((target) => target.startsWith(file));
    expect(opens).toHaveLength(4);
    for (const target of opens) expect(target).toMatch(new RegExp(`^${escapeRegExp(file)}\\.tmp-${process.pid}-[0-9a-f]{8}$`));
    expect(renamed.mock.calls.filter(([, to]) => to === file).map(([from]) => String(from))).toEqual(opens);
    expect(reads.length).toBeGreaterThan(0);
    for (const text of reads) expect(text.endsWith('</body>\n</html>\n')).toBe(true);
    expect(await fs.readFile(file, 'utf8')).toContain('(step 7)');
    expect((await fs.readdir(runDir)).filter((name) => name.includes('.tmp-'))).toEqual([]);
  }, 60_000);
});

describe('the CLI', () => {
  it('ends a 2-epoch run with the full report: no banner, no reload, the maps and the grid drawn', async () => {
    const out = path.join(await folder(), 'run');
    const args = ['train', '--limit', '256', '--epochs', '2', '--batch-size', '64', '--views', '2', '--out', out];
    const settings = ['data.testLimit=300', 'eval.linearProbe=false'].flatMap((setting) => ['--set', setting]);
    const result = spawnSync(process.execPath, [path.resolve('dist/cli/main.js'), ...args, ...settings], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(state(html)).toBe('final');
    expect(html).not.toContain('http-equiv="refresh"');
    expect(html).not.toContain('class="status');
    expect(html).toContain('alt="Test embeddings on their first two principal components"');
    expect(html).toContain('alt="Test embeddings laid out by UMAP"');
    expect(html).toContain('alt="Training images and augmented views"');
    expect(imageCount(html)).toBeGreaterThanOrEqual(10);
  }, 180_000);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
