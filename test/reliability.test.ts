// Nothing lost, nothing silently wrong: a refused or diverged step leaves no trace, a diverged run says
// where and keeps its last checkpoint, a run folder is never overwritten unasked, SIGTERM stops like
// Ctrl-C (with a checkpoint), a killed writer's temporaries are cleared, and shared memory is accepted.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { progressReporter } from '../lib/cli/train-command.js';
import { readCheckpoint, saveCheckpoint } from '../lib/checkpoint/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../lib/checkpoint/safetensors.js';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { Encoder } from '../lib/encode/encoder.js';
import { packingLoss } from '../lib/loss/packing-loss.js';
import { native } from '../lib/runtime/native.js';
import { resumeTraining, train, type TrainEvent } from '../lib/train/training-run.js';
import { Trainer, TrainingDivergedError, type StateEntry } from '../lib/train/trainer.js';

const cli = path.resolve('dist/cli/main.js');

async function runFolder(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'clamp-reliability-'));
}

// 512 images, batch 64, 2 views: 8 steps an epoch.
const small = resolveTrainConfig({
  overrides: {
    data: { limit: 512 },
    schedule: { epochs: 2, warmupEpochs: 0.5 },
    run: { batchSize: 64, views: 2, workers: 2, checkpointEvery: 1 },
    eval: { atEnd: false },
  },
});

const tinyTrainer = () =>
  Trainer.create({
    backbone: 'small',
    widths: [8, 16],
    blocks: [1, 1],
    inChannels: 1,
    projectorHidden: [32],
    projectorOut: 16,
    views: 2,
    loss: { rs: 2 },
    schedule: { peakLr: 0.5, totalSteps: 10 },
  });

const batchOf = (n: number, side = 12, into: Float32Array = new Float32Array(n * side * side)) => {
  for (let k = 0; k < into.length; k++) into[k] = Math.sin(k * 0.37);
  return into;
};

function copies(state: StateEntry[]): [string, number[]][] {
  return state.map((entry) => [entry.name, Array.from(entry.data, Number)]);
}

describe('a refused step leaves no trace', () => {
  it('a NaN or infinite pixel is refused naming the image, and weights, statistics, optimiser and step count are unchanged', async () => {
    const trainer = await tinyTrainer();
    await trainer.step(batchOf(8), [8, 1, 12, 12]);
    const before = copies(await trainer.state());
    for (const [bad, printed] of [
      [Number.NaN, 'nan'],
      [Number.POSITIVE_INFINITY, 'inf'],
    ] as const) {
      const images = batchOf(8);
      images[3 * 144 + 5] = bad;
      await expect(trainer.step(images, [8, 1, 12, 12])).rejects.toThrow(
        `images hold a non-finite value: ${printed} at index ${3 * 144 + 5}, in image 3 of 8`,
      );
      expect(copies(await trainer.state())).toEqual(before);
      expect(trainer.stepsTaken).toBe(1);
    }
    const features = await trainer.features(batchOf(8), [8, 1, 12, 12]);
    expect(features.every(Number.isFinite)).toBe(true);
  });

  it('a diverged step (finite pixels whose squares overflow) is a TrainingDivergedError, and is undone', async () => {
    const trainer = await tinyTrainer();
    await trainer.step(batchOf(8), [8, 1, 12, 12]);
    const before = copies(await trainer.state());
    const huge = batchOf(8).map((v) => v * 1e36);
    const error = await trainer.step(huge, [8, 1, 12, 12]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TrainingDivergedError);
    expect(error).toMatchObject({ step: 1, code: 'CLAMP_TRAINING_DIVERGED' });
    expect((error as Error).message).toMatch(/training diverged at step 1 \(learning rate .*\): .*non-finite/);
    expect(copies(await trainer.state())).toEqual(before);
    expect(trainer.stepsTaken).toBe(1);
  });

  it('typed arrays over a SharedArrayBuffer are read in place by step, features and packingLoss', async () => {
    const trainer = await tinyTrainer();
    const shared = batchOf(8, 12, new Float32Array(new SharedArrayBuffer(8 * 144 * 4)));
    const plain = batchOf(8);
    const other = await tinyTrainer();
    expect((await trainer.step(shared, [8, 1, 12, 12])).loss).toBe((await other.step(plain, [8, 1, 12, 12])).loss);
    expect(Array.from(await trainer.features(shared, [8, 1, 12, 12]))).toEqual(Array.from(await other.features(plain, [8, 1, 12, 12])));
    const z = new Float32Array(new SharedArrayBuffer(8 * 4 * 4)).map((_, k) => Math.cos(k));
    expect((await packingLoss(z, { views: 2, batch: 4, dim: 4 })).loss).toBe(
      (await packingLoss(Float32Array.from(z), { views: 2, batch: 4, dim: 4 })).loss,
    );
  });

  it('a state holding NaN is never written as a checkpoint: the previous file stays', async () => {
    const trainer = await tinyTrainer();
    const file = path.join(await runFolder(), 'checkpoint.safetensors');
    const content = { config: small, position: { epoch: 0, batch: 1, step: 1 }, metrics: {} };
    await saveCheckpoint(file, trainer, content);
    const before = await fs.readFile(file);
    const state = await trainer.state();
    const poisoned = state.map((entry) =>
      entry.name === 'conv1.weight'
        ? { ...entry, data: Float32Array.from(entry.data as Float32Array, (v, k) => (k === 2 ? Number.NaN : v)) }
        : entry,
    );
    await trainer.loadState(poisoned);
    await expect(saveCheckpoint(file, trainer, { ...content, position: { epoch: 0, batch: 2, step: 2 } })).rejects.toThrow(
      /training diverged before step 2: conv1.weight holds NaN at index 2, so no checkpoint was written/,
    );
    expect((await fs.readFile(file)).equals(before)).toBe(true);
    expect((await fs.readdir(path.dirname(file))).length).toBe(1);
  });

  it('packingLoss refuses inputs whose squares overflow float32, with the fix, instead of a NaN loss', async () => {
    const z = new Float32Array(8 * 4).map((_, k) => Math.cos(k) * 3e38);
    await expect(packingLoss(z, { views: 2, batch: 4, dim: 4 })).rejects.toThrow(
      /z's largest magnitude, 3e\+38, overflows the loss's float32 arithmetic.*divide z by a constant/,
    );
  });
});

describe('runs', () => {
  it('a diverged run names the step, epoch and learning rate, suggests the fix, and keeps its last checkpoint', async () => {
    const runDir = await runFolder();
    const controller = new AbortController();
    const first = await train(small, {
      runDir,
      signal: controller.signal,
      onProgress: (event: TrainEvent) => {
        if (event.kind === 'step' && event.result.step === 5) controller.abort();
      },
    });
    expect(first).toMatchObject({ stopped: true, steps: 6 });
    // The same run at an absurd learning rate from here on: its checkpoint's config says so.
    const { tensors, metadata } = await readSafetensors(first.checkpoint);
    const config = JSON.parse(metadata.config!) as typeof small;
    await writeSafetensors(first.checkpoint, tensors, {
      ...metadata,
      config: JSON.stringify({ ...config, schedule: { ...config.schedule, baseLr: 1e30 } }),
    });
    const saved = await fs.readFile(first.checkpoint);

    const error = await resumeTraining(runDir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TrainingDivergedError);
    const message = (error as Error).message;
    expect(message).toMatch(/^training diverged at step \d+ of 16 \(epoch 1, learning rate [\d.e+]+\): /);
    expect(message).toContain(`The last good checkpoint, ${first.checkpoint} (step 6, epoch 0), is intact`);
    expect(message).toMatch(/schedule\.baseLr is 1e\+30; try --set schedule\.baseLr=5e\+29/);
    expect((await fs.readFile(first.checkpoint)).equals(saved)).toBe(true);
    const lines = (await fs.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kind: string });
    expect(lines.at(-1)).toMatchObject({ kind: 'diverged', epoch: 0 });
  });

  it('a run folder that holds a run is refused unless --overwrite; a finished run resumes to "already finished"', async () => {
    const runDir = await runFolder();
    const oneEpoch = { ...small, schedule: { ...small.schedule, epochs: 1, warmupEpochs: 0 } };
    const whole = await train(oneEpoch, { runDir });
    const checkpoint = await fs.readFile(whole.checkpoint);
    const metrics = await fs.readFile(path.join(runDir, 'metrics.jsonl'));
    await expect(train(oneEpoch, { runDir })).rejects.toThrow(
      new RegExp(
        `${runDir} already holds a run \\(checkpoint.safetensors, metrics.jsonl, config.json\\): continue it with --resume .*--overwrite`,
      ),
    );
    expect((await fs.readFile(whole.checkpoint)).equals(checkpoint)).toBe(true);
    expect((await fs.readFile(path.join(runDir, 'metrics.jsonl'))).equals(metrics)).toBe(true);
    const refused = spawnSync(process.execPath, [cli, 'train', '--limit', '256', '--epochs', '1', '--out', runDir], { encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/already holds a run/);

    const finished = await resumeTraining(runDir);
    expect(finished).toMatchObject({ alreadyFinished: true, steps: 8, finalLoss: whole.finalLoss });
    expect((await fs.readFile(whole.checkpoint)).equals(checkpoint)).toBe(true);
    const printed = spawnSync(process.execPath, [cli, 'train', '--resume', runDir], { encoding: 'utf8' });
    expect(printed.status, printed.stderr).toBe(0);
    expect(printed.stderr).toMatch(/had already finished \(8 steps\); nothing to train/);
    expect(printed.stderr).not.toMatch(/NaN/);

    // The finished run serves, and a SharedArrayBuffer-backed batch embeds as a plain one does.
    const encoder = await Encoder.load(runDir);
    try {
      const shared = new Float32Array(new SharedArrayBuffer(3 * 28 * 28 * 4)).map((_, k) => (k % 97) / 97);
      const viaShared = await encoder.embed({ data: shared, shape: [3, 1, 28, 28] });
      const viaPlain = await encoder.embed({ data: Float32Array.from(shared), shape: [3, 1, 28, 28] });
      expect(Array.from(viaShared.data)).toEqual(Array.from(viaPlain.data));
    } finally {
      encoder.dispose();
    }

    const replaced = await train({ ...oneEpoch, run: { ...oneEpoch.run, seed: 5 } }, { runDir, overwrite: true });
    expect(replaced.finalLoss).not.toBe(whole.finalLoss);
    expect((await readCheckpoint(replaced.checkpoint)).config).toMatchObject({ run: { seed: 5 } });
  });

  it("a killed writer's temporary files are removed on resume; --resume without a checkpoint says how to start afresh", async () => {
    const runDir = await runFolder();
    const whole = await train({ ...small, schedule: { ...small.schedule, epochs: 1, warmupEpochs: 0 } }, { runDir });
    const leftovers = ['checkpoint.safetensors.tmp-4242-0badf00d', 'metrics.jsonl.tmp-17-deadbeef'];
    for (const name of leftovers) await fs.writeFile(path.join(runDir, name), Buffer.alloc(1024));
    await fs.writeFile(path.join(runDir, 'notes.tmp-keep'), 'mine');
    await resumeTraining(runDir);
    const names = await fs.readdir(runDir);
    for (const name of leftovers) expect(names).not.toContain(name);
    expect(names).toContain('notes.tmp-keep');

    await fs.rm(whole.checkpoint);
    await expect(resumeTraining(runDir)).rejects.toThrow(
      new RegExp(`${runDir} holds no checkpoint yet.*clamp-native train --out ${runDir} --overwrite`),
    );
    await expect(resumeTraining(path.join(runDir, 'nothing-here'))).rejects.toThrow(
      /there is no run folder or checkpoint at .*nothing-here/,
    );
  });
});

/** Starts `clamp-native train <args>`; resolves when stderr shows `ready`, then on exit with its status and output. */
function startTraining(args: string[], ready: RegExp) {
  const child = spawn(process.execPath, [cli, 'train', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let onReady: () => void;
  const isReady = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (ready.test(stderr)) onReady();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
  return { child, isReady, exited };
}

describe('exiting while native work runs', () => {
  // process.exit() (a second Ctrl-C, a closed stdout) calls exit() without tearing Node down, and exit()
  // ran LibTorch's static destructors under a running training step: status 139 in about half of the
  // runs. The addon's exit handler now waits for the running job.
  const SCRIPT = `
    const { Trainer } = await import(${JSON.stringify(path.resolve('dist/index.js'))});
    const trainer = await Trainer.create({ backbone: 'small', inChannels: 1, views: 2, schedule: { peakLr: 0.1, totalSteps: 1000 } });
    const images = new Float32Array(64 * 28 * 28).map((_, k) => Math.sin(k));
    (async () => { for (;;) await trainer.step(images, [64, 1, 28, 28]); })();
    setTimeout(() => process.exit(0), Number(process.argv[2]));
  `;

  it('process.exit() mid-step ends with its own status, never a segfault', async () => {
    const file = path.join(await runFolder(), 'exit.mjs');
    await fs.writeFile(file, SCRIPT);
    const statuses = [50, 120, 200, 280, 360, 440]
      .map((delay) => spawnSync(process.execPath, [file, String(delay)], { encoding: 'utf8' }))
      .map((result) => ({ status: result.status, signal: result.signal }));
    expect(statuses).toEqual(statuses.map(() => ({ status: 0, signal: null })));
  }, 120_000);

  // A step longer than the 2 s exit wait (ResNet-18 on 128 view-images of 32x32 takes ~3 s on 2 cores;
  // a first step building oneDNN's primitives on a loaded machine took as long): the process must end
  // with its own status there and then, not run exit()'s destructors under the step.
  const LONG_STEP = `
    const { Trainer } = await import(${JSON.stringify(path.resolve('dist/index.js'))});
    const trainer = await Trainer.create({ backbone: 'resnet18', stem: 'cifar', inChannels: 3, views: 2, schedule: { peakLr: 0.1, totalSteps: 10 } });
    const images = new Float32Array(128 * 3 * 32 * 32).map((_, k) => Math.sin(k));
    trainer.step(images, [128, 3, 32, 32]);
    setTimeout(() => process.exit(3), 100);
  `;

  it('process.exit() during a step longer than the exit wait ends with its own status, never a segfault', async () => {
    const file = path.join(await runFolder(), 'exit-long.mjs');
    await fs.writeFile(file, LONG_STEP);
    const statuses = [1, 2]
      .map(() => spawnSync(process.execPath, [file], { encoding: 'utf8' }))
      .map((result) => ({ status: result.status, signal: result.signal }));
    expect(statuses).toEqual([
      { status: 3, signal: null },
      { status: 3, signal: null },
    ]);
  }, 120_000);
});

describe('progress in a log', () => {
  it('a log (not a terminal) gets a plain step line every 30 s, and no carriage returns', () => {
    let now = 0;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    const written: string[] = [];
    const report = progressReporter({ isTTY: false, write: (text: string) => written.push(text) > 0 } as never);
    const stats = { energy: 1, meanRadius: 0.5, meanDistance: 1, contactsPerImage: 2, activity: 1 };
    const step = (k: number): TrainEvent => ({
      kind: 'step',
      epoch: 0,
      batch: k,
      stepsPerEpoch: 1000,
      totalSteps: 8000,
      result: { step: k, loss: 3, learningRate: 0.1, gradNorm: 1, stats },
      viewImagesPerSecond: 500,
      etaSeconds: 100,
    });
    try {
      report({
        kind: 'start',
        runDir: 'runs/x',
        totalSteps: 8000,
        stepsPerEpoch: 1000,
        epochs: 8,
        resumedAt: null,
        trainImages: 60000,
        device: 'cpu',
        compute: { bf16Autocast: false, channelsLast: false },
      });
      const before = written.length;
      for (let k = 0; k < 100; k++) {
        now = k * 1000; // one step a second
        report(step(k));
      }
      const lines = written.slice(before);
      expect(lines).toHaveLength(3); // at 30 s, 60 s and 90 s
      expect(lines[0]).toMatch(/^epoch 1\/8 \[.*\] step 31\/8000 loss 3.0000 .* ETA .*\n$/);
      expect(written.join('')).not.toContain('\r');
    } finally {
      clock.mockRestore();
    }
  });
});

describe('SIGTERM stops like Ctrl-C', () => {
  const longRun = (out: string) => [
    '--limit',
    '1024',
    '--epochs',
    '50',
    '--batch-size',
    '64',
    '--views',
    '2',
    '--set',
    'eval.atEnd=false',
    '--no-report',
    '--out',
    out,
  ];

  it('one process: stops after the step, writes a checkpoint, exits 143, and resumes', async () => {
    const out = path.join(await runFolder(), 'run');
    // A log, not a terminal: step lines come every 30 s, so wait for the run to start and a few seconds more.
    const run = startTraining(longRun(out), /training in /);
    await run.isReady;
    await new Promise((resolve) => setTimeout(resolve, 4000));
    run.child.kill('SIGTERM');
    const { code, stderr } = await run.exited;
    expect(code, stderr).toBe(143);
    expect(stderr).toMatch(/SIGTERM: stopping after this step and writing a checkpoint/);
    expect(stderr).toMatch(/continue with: clamp-native train --resume/);
    const checkpoint = await readCheckpoint(path.join(out, 'checkpoint.safetensors'));
    expect(checkpoint.position.step).toBeGreaterThan(0);
  }, 120_000);

  it.skipIf(native().runtimeInfo().build.distributed !== 'gloo')(
    '--nproc 2: the launcher passes SIGTERM on, both workers stop after the same step, rank 0 checkpoints',
    async () => {
      const out = path.join(await runFolder(), 'run');
      const run = startTraining(['--nproc', '2', ...longRun(out)], /training in /);
      await run.isReady;
      await new Promise((resolve) => setTimeout(resolve, 5000));
      run.child.kill('SIGTERM');
      const { code, stderr } = await run.exited;
      expect(code, stderr).toBe(143);
      const checkpoint = await readCheckpoint(path.join(out, 'checkpoint.safetensors'));
      expect(checkpoint.position.step).toBeGreaterThan(0);
      expect(stderr).not.toMatch(/rank \d of 2 (was killed|exited with status)/);
    },
    120_000,
  );
});
