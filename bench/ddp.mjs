#!/usr/bin/env node
// Benchmark of data-parallel training on CPU: the fashion-mnist preset's step (4 views x global batch
// 128) in 1 process with all the cores against 2 processes with half each over c10d Gloo, clamp-native
// (bench/ddp-rank.mjs) and the same in eager PyTorch with torch.distributed (bench/training_step_eager.py
// --world N), measured in the same run; and the bytes each rank sends per step, from the ring
// algorithms Gloo runs (all-gather of embeddings, all-reduce of gradients).
//
//   node bench/ddp.mjs [--reps 5] [--json out.json]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PYTHON, pythonTorchVersion } from './peers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { reps: { type: 'string', default: '5' }, json: { type: 'string' } } });
const reps = Number(values.reps);
const cores = os.availableParallelism();
const VIEWS = 4,
  BATCH = 128,
  DIM = 128;

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function ours(world) {
  const port = await freePort();
  const threads = Math.max(1, Math.floor(cores / world));
  const outputs = await Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise((resolve, reject) => {
          const child = spawn(process.execPath, [path.join(here, 'ddp-rank.mjs')], {
            env: {
              ...process.env,
              RANK: String(rank),
              WORLD_SIZE: String(world),
              MASTER_PORT: String(port),
              THREADS: String(threads),
              REPS: String(reps),
            },
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let out = '';
          child.stdout.on('data', (chunk) => {
            out += chunk;
          });
          child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`rank ${rank} exited with ${code}`))));
        }),
    ),
  );
  return JSON.parse(outputs[0].split('\n').pop());
}

function eager(world) {
  const threads = Math.max(1, Math.floor(cores / world));
  const args = [
    path.join(here, 'training_step_eager.py'),
    '--widths',
    '16,32,64',
    '--blocks',
    '2,2,2',
    '--stem',
    'small',
    '--channels',
    '1',
    '--size',
    '28',
    '--views',
    String(VIEWS),
    '--batch',
    String(BATCH),
    '--hidden',
    '2048',
    '--out',
    String(DIM),
    '--threads',
    String(threads),
    '--reps',
    String(reps),
    '--world',
    String(world),
  ];
  const run = spawnSync(PYTHON, args, { encoding: 'utf8' }); // each side with its own OpenMP defaults
  if (run.status !== 0) return { error: (run.stderr || run.error?.message || 'failed').trim().split('\n').pop() };
  return JSON.parse(run.stdout.trim().split('\n').pop());
}

/** Bytes one rank sends per step: ring all-gather of its embeddings, ring all-reduce of the gradients, two 8-byte sums. */
function bytesPerRank(world, parameters) {
  if (world === 1) return { embeddings: 0, gradients: 0, total: 0 };
  const embeddings = (world - 1) * ((VIEWS * BATCH) / world) * DIM * 4;
  const gradients = ((2 * (world - 1)) / world) * parameters * 4;
  return { embeddings, gradients, total: embeddings + gradients + 2 * 8 };
}

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
console.log(
  `CLAMP step, fashion-mnist preset network, ${VIEWS} views x global batch ${BATCH}, median of ${reps} steps, ${cores} cores (${os.cpus()[0]?.model ?? 'unknown CPU'})`,
);
console.log(`peer: PyTorch ${pythonTorchVersion()} under ${PYTHON}, torch.distributed Gloo`);
console.log(
  'processes x threads | clamp-native s/step | eager PyTorch s/step | clamp-native / eager (speed) | bytes sent per rank per step (embeddings + gradients)',
);
const rows = [];
for (const world of [1, 2]) {
  const mine = await ours(world);
  const peer = eager(world);
  const bytes = bytesPerRank(world, mine.parameters);
  const row = {
    world,
    threadsPerProcess: Math.max(1, Math.floor(cores / world)),
    ours: mine.secondsPerStep,
    parameters: mine.parameters,
    eager: peer,
    bytes,
  };
  if (!('error' in peer)) row.ratio = peer.secondsPerStep / mine.secondsPerStep;
  rows.push(row);
  console.log(
    `${world} x ${row.threadsPerProcess} | ${mine.secondsPerStep.toFixed(3)} | ${'error' in peer ? `failed: ${peer.error}` : peer.secondsPerStep.toFixed(3)} | ${row.ratio ? `${row.ratio.toFixed(2)}x` : '-'} | ${mib(bytes.total)} (${mib(bytes.embeddings)} + ${mib(bytes.gradients)})`,
  );
}
const [one, two] = rows;
console.log(
  `2 processes against 1: clamp-native ${(one.ours / two.ours).toFixed(2)}x the steps per second${'error' in one.eager || 'error' in two.eager ? '' : `, eager PyTorch ${(one.eager.secondsPerStep / two.eager.secondsPerStep).toFixed(2)}x`}`,
);
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(rows, null, 2)}\n`);
