#!/usr/bin/env node
// Benchmark of one CLAMP training step (all views through backbone and projector as one batch, the
// packing loss, backward, LARS): clamp-native's native step against the same step in eager PyTorch
// (bench/training_step_eager.py, Debian's /usr/bin/python3 with torch 1.13), same network, same
// threads, measured in the same run. Prints view-images per second and the ratio.
//
//   node bench/training-step.mjs [--threads N] [--reps 5] [--json out.json]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Trainer } from '../dist/index.js';
import { setNumThreads } from '../dist/runtime/native.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3'; // Debian's, with torch; a pyenv python3 on PATH has none

// The fashion-mnist preset's network (16-32-64), the wider small ResNet, and ResNet-18 with the paper's
// CIFAR stem at a CPU-sized batch.
const CASES = [
  { name: 'small 16-32-64, 28x28x1', widths: [16, 32, 64], blocks: [2, 2, 2], stem: 'small', channels: 1, size: 28, views: 4, batch: 128, hidden: [512], out: 128 },
  { name: 'small 32-64-128, 28x28x1', widths: [32, 64, 128], blocks: [2, 2, 2], stem: 'small', channels: 1, size: 28, views: 4, batch: 128, hidden: [512], out: 128 },
  { name: 'ResNet-18 CIFAR stem, 32x32x3', widths: [64, 128, 256, 512], blocks: [2, 2, 2, 2], stem: 'cifar', channels: 3, size: 32, views: 2, batch: 64, hidden: [2048], out: 256 },
];

const { values } = parseArgs({ options: { threads: { type: 'string' }, reps: { type: 'string', default: '5' }, json: { type: 'string' } } });
const threads = Number(values.threads ?? os.availableParallelism());
const reps = Number(values.reps);
setNumThreads(threads);

async function ours(c) {
  const trainer = await Trainer.create({
    backbone: c.widths.length === 4 ? 'resnet18' : 'small', stem: c.stem, widths: c.widths, blocks: c.blocks, inChannels: c.channels,
    projectorHidden: c.hidden, projectorOut: c.out, views: c.views, loss: { rs: 7 },
    optimiser: { name: 'lars', weightDecay: 1e-5 }, schedule: { peakLr: 0.1, totalSteps: 1000 },
  });
  const n = c.views * c.batch;
  const images = Float32Array.from({ length: n * c.channels * c.size * c.size }, () => Math.random());
  const shape = [n, c.channels, c.size, c.size];
  const times = [];
  for (let rep = 0; rep <= reps; rep++) {
    const start = performance.now();
    await trainer.step(images, shape);
    if (rep > 0) times.push((performance.now() - start) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

function eager(c) {
  const args = [path.join(here, 'training_step_eager.py'), '--widths', c.widths.join(','), '--blocks', c.blocks.join(','), '--stem', c.stem,
    '--channels', String(c.channels), '--size', String(c.size), '--views', String(c.views), '--batch', String(c.batch),
    '--hidden', c.hidden.join(','), '--out', String(c.out), '--threads', String(threads), '--reps', String(reps)];
  const run = spawnSync(PYTHON, args, { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
  if (run.status !== 0) return { error: (run.stderr || run.error?.message || 'failed').trim().split('\n').pop() };
  return JSON.parse(run.stdout.trim().split('\n').pop());
}

console.log(`CLAMP training step, median of ${reps} steps after a warm-up, ${threads} thread(s), ${os.cpus()[0]?.model ?? 'unknown CPU'}`);
console.log('case | views x batch | clamp-native | eager PyTorch | clamp-native / eager (throughput)');
const rows = [];
for (const c of CASES) {
  const mine = await ours(c);
  const peer = eager(c);
  const n = c.views * c.batch;
  const row = { case: c.name, views: c.views, batch: c.batch, oursSecondsPerStep: mine, oursViewImagesPerSecond: n / mine, eager: peer };
  if (!('error' in peer)) {
    row.eagerViewImagesPerSecond = n / peer.secondsPerStep;
    row.ratio = peer.secondsPerStep / mine;
  }
  rows.push(row);
  const peerText = 'error' in peer ? `failed: ${peer.error}` : `${Math.round(row.eagerViewImagesPerSecond)} img/s (${peer.secondsPerStep.toFixed(3)} s)`;
  console.log(`${c.name} | ${c.views} x ${c.batch} | ${Math.round(n / mine)} img/s (${mine.toFixed(3)} s) | ${peerText} | ${row.ratio ? `${row.ratio.toFixed(2)}x` : '-'}`);
}
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(rows, null, 2)}\n`);
