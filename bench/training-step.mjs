#!/usr/bin/env node
// Benchmark of one CLAMP training step (all views through backbone and projector as one batch, the
// packing loss, backward, LARS): clamp-native's native step against the same step in PyTorch
// (bench/training_step_eager.py under PYTHON, default python3: pip's torch 2.13), eager and under
// torch.compile, same network, same threads, measured in the same run. Prints view-images per second
// and clamp-native's throughput over each peer's.
//
//   node bench/training-step.mjs [--threads N] [--reps 5] [--peers eager,eager-channels-last,compile] [--json out.json]
//   node bench/training-step.mjs --cases preset --batch 64 --widths 32,64,128     # the preset's network, resized
//   node bench/training-step.mjs --precision bf16 --peers eager-bf16,eager-bf16-channels-last
//
// --cases: preset, resnet18 or both (default). --batch and --widths change the preset's case (two blocks a
// stage, the projector's input the last width). --precision: clamp-native's side in float32 (default) or
// under bf16 autocast; the peers named eager-bf16* run the forward under torch.autocast(bfloat16).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Trainer } from '../dist/index.js';
import { getNumThreads, openMPWaitPolicySource, setNumThreads } from '../dist/runtime/native.js';
import { PYTHON, pythonTorchVersion } from './peers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

// The fashion-mnist preset's network (small ResNet 16-32-64, projector 64→2048→128, 4 views × 128), and
// ResNet-18 with the paper's CIFAR stem and projector (512→2048→256) at a CPU-sized batch.
const CASES = [
  {
    name: 'fashion-mnist preset: small 16-32-64, 28x28x1',
    backbone: 'small',
    widths: [16, 32, 64],
    blocks: [2, 2, 2],
    stem: 'small',
    channels: 1,
    size: 28,
    views: 4,
    batch: 128,
    hidden: [2048],
    out: 128,
  },
  {
    name: 'ResNet-18 CIFAR stem, 32x32x3',
    backbone: 'resnet18',
    widths: [64, 128, 256, 512],
    blocks: [2, 2, 2, 2],
    stem: 'cifar',
    channels: 3,
    size: 32,
    views: 2,
    batch: 64,
    hidden: [2048],
    out: 256,
  },
];
// eager: the loop a user writes (NCHW); eager-channels-last: the same in clamp-native's CPU layout, to show
// what the layout alone is worth; compile: torch.compile (Inductor) of the network and the loss.
const PEERS = ['eager', 'eager-channels-last', 'compile'];
// bfloat16 autocast, as a user would add it (NCHW), and in channels_last: what the same autocast gives the peer.
const BF16_PEERS = ['eager-bf16', 'eager-bf16-channels-last'];
const KNOWN_PEERS = [...PEERS, ...BF16_PEERS];

const { values } = parseArgs({
  options: {
    threads: { type: 'string' },
    reps: { type: 'string', default: '5' },
    peers: { type: 'string', default: PEERS.join(',') },
    cases: { type: 'string', default: 'preset,resnet18' },
    batch: { type: 'string' },
    widths: { type: 'string' },
    precision: { type: 'string', default: 'fp32' },
    json: { type: 'string' },
  },
});
if (!['fp32', 'bf16'].includes(values.precision)) throw new Error(`--precision takes fp32 or bf16, got ${values.precision}`);
const caseNames = values.cases.split(',').filter(Boolean);
for (const name of caseNames) if (!['preset', 'resnet18'].includes(name)) throw new Error(`--cases takes preset, resnet18, got ${name}`);
const [preset, resnet18] = CASES;
if (values.batch !== undefined) {
  const batch = Number(values.batch);
  if (!Number.isInteger(batch) || batch < 2) throw new Error(`--batch takes a whole number >= 2, got ${values.batch}`);
  preset.batch = batch;
}
if (values.widths !== undefined) {
  const widths = values.widths.split(',').map(Number);
  if (widths.some((w) => !Number.isInteger(w) || w % 16 !== 0 || w < 16))
    throw new Error(`--widths takes multiples of 16, comma-separated, got ${values.widths}`);
  Object.assign(preset, { widths, blocks: widths.map(() => 2) });
}
if (values.batch !== undefined || values.widths !== undefined)
  preset.name = `small ${preset.widths.join('-')}, 28x28x1, batch ${preset.batch}`;
const cases = [...(caseNames.includes('preset') ? [preset] : []), ...(caseNames.includes('resnet18') ? [resnet18] : [])];
const threads = Number(values.threads ?? os.availableParallelism());
const reps = Number(values.reps);
const peers = values.peers.split(',').filter(Boolean);
for (const peer of peers) if (!KNOWN_PEERS.includes(peer)) throw new Error(`--peers takes ${KNOWN_PEERS.join(', ')}, got ${peer}`);
setNumThreads(threads);

async function ours(c) {
  const trainer = await Trainer.create({
    backbone: c.backbone,
    stem: c.stem,
    widths: c.widths,
    blocks: c.blocks,
    inChannels: c.channels,
    projectorHidden: c.hidden,
    projectorOut: c.out,
    views: c.views,
    loss: { rs: 7 },
    optimiser: { name: 'lars', weightDecay: 1e-5 },
    schedule: { peakLr: 0.1, totalSteps: 1000 },
    precision: values.precision,
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

function peer(c, kind) {
  const args = [
    path.join(here, 'training_step_eager.py'),
    '--widths',
    c.widths.join(','),
    '--blocks',
    c.blocks.join(','),
    '--stem',
    c.stem,
    '--channels',
    String(c.channels),
    '--size',
    String(c.size),
    '--views',
    String(c.views),
    '--batch',
    String(c.batch),
    '--hidden',
    c.hidden.join(','),
    '--out',
    String(c.out),
    '--threads',
    String(threads),
    '--reps',
    String(reps),
    ...(kind === 'compile' ? ['--compile'] : []),
    ...(kind.endsWith('channels-last') ? ['--channels-last'] : []),
    ...(kind.startsWith('eager-bf16') ? ['--bf16'] : []),
  ];
  // The peer runs with PyTorch's own OpenMP settings; Inductor compiles in-process (no worker pool
  // competing for the cores while the native side is idle).
  const run = spawnSync(PYTHON, args, { encoding: 'utf8', env: { ...process.env, TORCHINDUCTOR_COMPILE_THREADS: '1' } });
  if (run.status !== 0) return { error: (run.stderr || run.error?.message || 'failed').trim().split('\n').pop() };
  return JSON.parse(run.stdout.trim().split('\n').pop());
}

const torchVersion = pythonTorchVersion();
console.log(
  `CLAMP training step, median of ${reps} steps after warm-up, ${getNumThreads()} thread(s), ${os.cpus()[0]?.model ?? 'unknown CPU'}`,
);
console.log(
  `clamp-native on its LibTorch (${values.precision === 'bf16' ? 'bf16 autocast' : 'float32'}, OpenMP wait policy ${openMPWaitPolicySource()}); peers: PyTorch ${torchVersion} under ${PYTHON} (${peers.join(', ')})`,
);
console.log(
  ['case', 'views x batch', 'clamp-native', ...peers.map((p) => `PyTorch ${p}`), ...peers.map((p) => `clamp-native / ${p}`)].join(' | '),
);
const rows = [];
for (const c of cases) {
  const n = c.views * c.batch;
  const mine = await ours(c);
  const row = { case: c.name, views: c.views, batch: c.batch, oursSecondsPerStep: mine, oursViewImagesPerSecond: n / mine, peers: {} };
  for (const kind of peers) {
    const result = peer(c, kind);
    row.peers[kind] =
      'error' in result ? result : { ...result, viewImagesPerSecond: n / result.secondsPerStep, ratio: result.secondsPerStep / mine };
  }
  rows.push(row);
  const cell = (r) =>
    'error' in r
      ? `failed: ${r.error}`
      : `${Math.round(r.viewImagesPerSecond)} img/s (${r.secondsPerStep.toFixed(3)} s${r.compileSeconds ? `, compiled in ${r.compileSeconds.toFixed(0)} s` : ''})`;
  const ratio = (r) => ('error' in r ? '-' : `${r.ratio.toFixed(2)}x`);
  console.log(
    [
      c.name,
      `${c.views} x ${c.batch}`,
      `${Math.round(n / mine)} img/s (${mine.toFixed(3)} s)`,
      ...peers.map((k) => cell(row.peers[k])),
      ...peers.map((k) => ratio(row.peers[k])),
    ].join(' | '),
  );
}
if (values.json)
  fs.writeFileSync(values.json, `${JSON.stringify({ threads, reps, precision: values.precision, torch: torchVersion, rows }, null, 2)}\n`);
