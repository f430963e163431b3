#!/usr/bin/env node
// Time to accuracy on the CPU: the fashion-mnist preset trained by clamp-native (`clamp-native train`)
// and by the same CLAMP recipe in eager PyTorch (bench/time_to_accuracy_eager.py, under PYTHON, default
// python3: pip's torch 2.13), each for the same wall-clock budgets on the same machine, one after the
// other, then both backbones scored by clamp-native's own kNN (k = 200) and lr-swept linear probe on
// features of all 60,000 training and 10,000 test images. Prints the table and writes a PNG of accuracy
// against training time (both sides on one chart) and the figures as JSON.
//
// Each side first times its own steps (augmentation and loading included) and then trains as many
// steps as fit the budget, its schedule laid out over them (clamp-native by a fractional --epochs, the
// steps that fit over the steps an epoch). Training time is the
// training loop's own (dataset loading, start-up and evaluation are not in it). Long: a benchmark, not a test.
//
// A change of seed moves one row by up to 0.9 points on either side, so --seeds trains each budget once
// per seed on both sides (the seed sets the initial weights, batch order and augmentations of each) and
// prints the mean of each side and the mean lead. --equal-steps N instead trains both sides for exactly N
// steps per seed (no budgets, no calibration): whether the two recipes learn alike per step, so that a
// lead at equal time is the step's throughput.
//
//   node bench/time-to-accuracy.mjs [--budgets 2.5,5,10] [--seeds 0] [--threads 2] [--png docs/images/time-to-accuracy.png] [--json out.json]
//   node bench/time-to-accuracy.mjs --equal-steps 936 --seeds 0,1
//   node bench/time-to-accuracy.mjs --replot out.json     # redraws the chart of a saved run
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PRESETS } from '../dist/config/presets.js';
import { decodeNpy } from '../dist/encode/npy.js';
import { datasetFeatures } from '../dist/eval/features.js';
import { knnAccuracy } from '../dist/eval/knn.js';
import { linearProbe } from '../dist/eval/linear-probe.js';
import { renderChart } from '../dist/report/charts.js';
import { trainerFor } from '../dist/train/from-config.js';
import { loadRun } from '../dist/train/saved-run.js';
import { PYTHON, pythonTorchVersion } from './peers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'dist', 'cli', 'main.js');
const { values } = parseArgs({
  options: {
    budgets: { type: 'string', default: '2.5,5,10' },
    seeds: { type: 'string', default: '0' },
    'equal-steps': { type: 'string' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
    png: { type: 'string', default: path.join(here, '..', 'docs', 'images', 'time-to-accuracy.png') },
    json: { type: 'string' },
    replot: { type: 'string' },
  },
});
const budgets = values.budgets.split(',').map(Number);
if (budgets.some((b) => !(b > 0))) throw new Error(`--budgets takes minutes > 0, got ${values.budgets}`);
const seeds = values.seeds.split(',').map(Number);
if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds takes whole numbers >= 0, got ${values.seeds}`);
const threads = values.threads;
if (values.replot) {
  // Redraw the chart of a saved --json run, without training.
  await writeChart(meanRows(JSON.parse(fs.readFileSync(values.replot, 'utf8')).rows));
  process.exit(0);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-tta-'));

function run(command, args, env = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  if (result.status !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} failed:\n${result.stderr}`);
  return result;
}

function percent(x) {
  return (100 * x).toFixed(2);
}

function mean(xs) {
  return xs.reduce((sum, x) => sum + x, 0) / xs.length;
}

function median(xs) {
  const sorted = [...xs].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const lastJson = (stdout) => JSON.parse(stdout.trim().split('\n').pop());

/** The lines of a clamp-native run folder's metrics.jsonl. */
function metricLines(out) {
  return fs
    .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

// clamp-native: `train` as a user runs it (the preset, its loader workers, its threads).
function trainOurs(epochs, seed, out) {
  const args = [
    cli,
    'train',
    '--epochs',
    String(epochs),
    '--seed',
    String(seed),
    '--threads',
    threads,
    '--no-report',
    '--set',
    'eval.atEnd=false',
    '--set',
    'eval.every=0',
    '--out',
    out,
  ];
  run(process.execPath, args);
  const epochLines = metricLines(out).filter((l) => l.kind === 'epoch');
  return { seconds: epochLines.reduce((sum, l) => sum + l.seconds, 0), steps: epochLines.reduce((sum, l) => sum + l.steps, 0) };
}

/**
 * clamp-native's median seconds a step over `steps` steps after the first `warmup`, from its per-step metric
 * lines: the median, as the peer's, so a burst of the VM's steal in the short calibration does not set the
 * budget's step count.
 */
function calibrateOurs(steps, warmup, out) {
  const args = [cli, 'train', '--epochs', '1', '--limit', String((steps + warmup) * 128), '--threads', threads, '--no-report'];
  args.push('--set', 'eval.atEnd=false', '--set', 'eval.every=0', '--set', 'run.logEvery=1', '--out', out);
  run(process.execPath, args);
  const perStep = metricLines(out)
    .filter((l) => l.kind === 'step' && l.step >= warmup)
    .map((l) => (128 * 4) / l.viewImagesPerSecond);
  return median(perStep);
}

function trainPeer(extra) {
  return lastJson(run(PYTHON, [path.join(here, 'time_to_accuracy_eager.py'), '--threads', threads, ...extra]).stdout);
}

/** kNN and the linear probe of the preset's evaluation settings, on the given features. */
async function score(config, train, test, trainFeatures, testFeatures, dim) {
  const classes = Math.max(train.classes, test.classes);
  const bank = { features: trainFeatures, labels: train.labels, dim };
  const queries = { features: testFeatures, labels: test.labels, dim };
  const knn = await knnAccuracy(bank, queries, dim, classes, config.eval.knn);
  const probe = await linearProbe(bank, queries, dim, classes, config.eval.linearProbe);
  return { knn: knn.top1, linear: probe.top1 };
}

async function ourFeatures(runDir) {
  const { checkpoint, config, train, test } = await loadRun(runDir);
  const trainer = await trainerFor(config, train.channels, 1);
  try {
    await trainer.loadState(checkpoint.state);
    const pipeline = config.augment[0];
    const [a, b] = [await datasetFeatures(trainer, train, pipeline), await datasetFeatures(trainer, test, pipeline)];
    return { config, train, test, trainFeatures: a.features, testFeatures: b.features, dim: a.dim };
  } finally {
    trainer.dispose();
  }
}

/** One row per budget and side: the means over the seeds (the chart's points). */
function meanRows(all) {
  const groups = new Map();
  for (const r of all) {
    const key = `${r.budgetMinutes} ${r.side}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rs) => ({
    budgetMinutes: rs[0].budgetMinutes,
    side: rs[0].side,
    seeds: rs.length,
    trainSeconds: mean(rs.map((r) => r.trainSeconds)),
    knn: mean(rs.map((r) => r.knn)),
    linear: mean(rs.map((r) => r.linear)),
  }));
}

/** Accuracy against training time, both sides on one chart (colour: side; dashes: kNN or probe). */
async function writeChart(rows) {
  const points = rows.flatMap((r) => [
    { minutes: r.trainSeconds / 60, accuracy: 100 * r.linear, side: r.side, score: 'linear probe' },
    { minutes: r.trainSeconds / 60, accuracy: 100 * r.knn, side: r.side, score: 'kNN (k = 200)' },
  ]);
  const chart = await renderChart({
    title: { text: 'Fashion-MNIST test accuracy against training time (2 cores)', subtitle: 'solid: kNN (k = 200); dashed: linear probe' },
    width: 620,
    height: 300,
    data: { values: points },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'minutes', type: 'quantitative', title: 'training time (minutes)' },
      y: { field: 'accuracy', type: 'quantitative', title: 'top-1 (%)', scale: { zero: false } },
      color: { field: 'side', type: 'nominal', title: null, legend: { labelLimit: 0 } },
      strokeDash: { field: 'score', type: 'nominal', sort: ['kNN (k = 200)', 'linear probe'], legend: null },
    },
  });
  fs.mkdirSync(path.dirname(values.png), { recursive: true });
  fs.writeFileSync(`${values.png}.tmp`, chart.png);
  fs.renameSync(`${values.png}.tmp`, values.png);
  console.log(`chart: ${values.png}`);
}

/**
 * Both sides trained with one seed, clamp-native for `epochs` (fractional) and the peer with `peerArgs`,
 * both scored alike; a row for each, tagged with `budgetMinutes` (null at equal steps).
 */
async function trainBoth(budgetMinutes, seed, epochs, peerArgs) {
  const tag = `${budgetMinutes ?? 'steps'}-${seed}`;
  const ourDir = path.join(work, `ours-${tag}`);
  const ours = trainOurs(epochs, seed, ourDir);
  const f = await ourFeatures(ourDir);
  const oursScore = await score(f.config, f.train, f.test, f.trainFeatures, f.testFeatures, f.dim);
  const peerDir = fs.mkdtempSync(path.join(work, `peer-${tag}-`));
  const peer = trainPeer([...peerArgs, '--seed', String(seed), '--out', peerDir]);
  const read = (split) => decodeNpy(fs.readFileSync(path.join(peerDir, `${split}-features.npy`)));
  const [pt, pq] = [read('train'), read('test')];
  const peerScore = await score(f.config, f.train, f.test, pt.data, pq.data, pt.shape[1]);
  return [
    ['clamp-native', ours.steps, epochs, ours.seconds, oursScore],
    ['eager PyTorch', peer.steps, peer.epochs, peer.trainSeconds, peerScore],
  ].map(([side, steps, e, seconds, s]) => ({
    budgetMinutes,
    seed,
    side,
    steps,
    epochs: e,
    trainSeconds: seconds,
    knn: s.knn,
    linear: s.linear,
  }));
}

/** Prints a row of the table. */
function printRow(r) {
  const first = r.budgetMinutes === null ? `${r.steps} steps` : `${r.budgetMinutes} min`;
  const time = `${(r.trainSeconds / 60).toFixed(2)} min`;
  console.log(`${first} | ${r.seed} | ${r.side} | ${r.epochs.toFixed(2)} | ${time} | ${percent(r.knn)}% | ${percent(r.linear)}%`);
}

/** The lead of clamp-native's mean over the peer's, for the rows of one budget (or of equal steps). */
function printLead(label, group) {
  const side = (name) => group.filter((r) => r.side === name);
  const [ours, peer] = [side('clamp-native'), side('eager PyTorch')];
  const lead = (key) => percent(mean(ours.map((r) => r[key])) - mean(peer.map((r) => r[key])));
  const minutesOf = (rs) => (mean(rs.map((r) => r.trainSeconds)) / 60).toFixed(2);
  console.log(
    `${label}, mean of ${ours.length} seed(s): clamp-native ahead by ${lead('knn')} (kNN), ${lead('linear')} (linear) points ` +
      `(training ${minutesOf(ours)} against ${minutesOf(peer)} min)`,
  );
}

const stepsPerEpoch = Math.floor(60000 / 128);
const header = 'budget | seed | side | epochs | training time | kNN top-1 | linear probe top-1';
console.log(`time to accuracy, fashion-mnist preset, ${threads} thread(s), ${os.cpus()[0]?.model ?? 'unknown CPU'}`);
if (values['equal-steps'] !== undefined) {
  const steps = Number(values['equal-steps']);
  if (!Number.isInteger(steps) || steps < 1)
    throw new Error(`--equal-steps takes a whole number of steps >= 1, got ${values['equal-steps']}`);
  // clamp-native refuses a run no longer than the preset's warmup.
  const warmupEpochs = PRESETS['fashion-mnist'].schedule.warmupEpochs;
  const warmupSteps = Math.round(warmupEpochs * stepsPerEpoch);
  if (steps <= warmupSteps)
    throw new Error(`--equal-steps must exceed the preset's warmup of ${warmupSteps} steps (${warmupEpochs} epoch), got ${steps}`);
  console.log(
    `peer: the same recipe in eager PyTorch ${pythonTorchVersion()} under ${PYTHON}; ${steps} steps each, seeds ${seeds.join(', ')}`,
  );
  console.log(header);
  const rows = [];
  for (const seed of seeds) {
    const pair = await trainBoth(null, seed, steps / stepsPerEpoch, ['--steps', String(steps)]);
    pair.forEach(printRow);
    rows.push(...pair);
  }
  printLead(`${steps} steps`, rows);
  if (values.json) fs.writeFileSync(values.json, `${JSON.stringify({ threads, equalSteps: steps, rows }, null, 2)}\n`);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(0);
}
console.log(
  `peer: the same recipe in eager PyTorch ${pythonTorchVersion()} under ${PYTHON}; budgets ${budgets.join(', ')} min of training`,
);
// Each side's time per step, augmentation included, after 10 warm-up steps (the first run slower):
// 100 steps of clamp-native's `train`, 60 of the peer's loop.
const oursPerStep = calibrateOurs(100, 10, path.join(work, 'calibrate'));
const peerPerStep = trainPeer(['--calibrate', '60']).secondsPerStep;
console.log(
  `seconds per step: clamp-native ${oursPerStep.toFixed(3)}, eager ${peerPerStep.toFixed(3)} (${(peerPerStep / oursPerStep).toFixed(2)}x)`,
);
const rows = [];
console.log(header);
for (const minutes of budgets) {
  // A fractional epoch count whose steps (scheduledSteps: epochs x stepsPerEpoch, rounded) are exactly those that fit.
  const epochs = Math.max(1, Math.floor((minutes * 60) / oursPerStep)) / stepsPerEpoch;
  for (const seed of seeds) {
    const pair = await trainBoth(minutes, seed, epochs, ['--seconds', String(minutes * 60), '--seconds-per-step', String(peerPerStep)]);
    pair.forEach(printRow);
    rows.push(...pair);
  }
  printLead(
    `${minutes} min`,
    rows.filter((r) => r.budgetMinutes === minutes),
  );
}

await writeChart(meanRows(rows));
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify({ threads, oursPerStep, peerPerStep, rows }, null, 2)}\n`);
fs.rmSync(work, { recursive: true, force: true });
