#!/usr/bin/env node
// The CPU's float32 multiply-add peak, the ceiling the training step's kernels are measured against
// (docs/benchmarks.md, "The step against the CPU's peak"): compiles bench/cpu_fma_peak.cpp with the
// system's g++ (the quick start installs it) into a temporary folder and runs it on 1 to N threads.
// A kernel's share of the peak is its floating-point work over its time over these GFLOP/s.
//
//   node bench/cpu-peak.mjs [--threads N]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { threads: { type: 'string', default: String(os.availableParallelism()) } } });
const threads = Number(values.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads takes a whole number >= 1, got ${values.threads}`);
if (os.arch() !== 'x64') throw new Error(`bench/cpu-peak.mjs measures x86-64 FMA units; this machine is ${os.arch()}`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-cpu-peak-'));
try {
  const binary = path.join(work, 'cpu_fma_peak');
  const build = spawnSync('g++', ['-O3', '-fopenmp', '-o', binary, path.join(here, 'cpu_fma_peak.cpp')], { encoding: 'utf8' });
  if (build.error || build.status !== 0)
    throw new Error(`g++ could not build bench/cpu_fma_peak.cpp (apt-get install g++):\n${build.stderr ?? build.error?.message}`);
  const run = spawnSync(binary, [String(threads)], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`cpu_fma_peak failed:\n${run.stderr}`);
  console.log(`float32 FMA peak, ${os.cpus()[0]?.model ?? 'unknown CPU'}, best of 3 runs`);
  console.log('threads | AVX2 (256-bit) GFLOP/s | AVX-512 GFLOP/s | AVX-512 / AVX2');
  for (const line of run.stdout.trim().split('\n')) {
    const r = JSON.parse(line);
    const wide = r.avx512 === null ? 'not on this CPU' : r.avx512.toFixed(1);
    const ratio = r.avx512 === null ? '-' : `${(r.avx512 / r.avx2).toFixed(2)}x`;
    console.log(`${r.threads} | ${r.avx2.toFixed(1)} | ${wide} | ${ratio}`);
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
