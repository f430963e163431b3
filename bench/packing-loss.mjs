#!/usr/bin/env node
// Benchmark of the CLAMP packing loss, forward + backward (formula: the packing-loss spec), four ways:
//   fused       - the addon's fused op (no [b, b, d] intermediate) with the diagnostics that come free
//                 with it: what a training step pays, and like for like with the two peers below,
//   fused+stats - the same plus nearest-centre accuracy (one more [m*b, d] x [d, b] product), which is
//                 what the public packingLoss() returns,
//   unfused     - the addon's autograd composition of the same formula (same process, same threads),
//   eager       - the formula in eager PyTorch with broadcasting (bench/packing_loss_eager.py, under
//                 PYTHON, default python3: pip's torch 2.13),
//   compile     - the same function through torch.compile (Inductor; compile time reported apart).
// Every (implementation, shape) runs in a fresh child process under a memory limit and a timeout, so
// that its peak memory is its own. See bench/README.md.
//
//   node bench/packing-loss.mjs [--threads N] [--shapes 512x4x512,1024x8x512] [--impl fused,fused+stats,unfused,eager,compile]
//                               [--json out.json] [--quick]
//   node bench/packing-loss.mjs --child fused|fused+stats|unfused BxMxD --input z.f32 --threads N ...   (internal)
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gaussianSampler } from '../dist/loss/packing-dynamics.js';
import { native } from '../dist/runtime/native.js';
import { PYTHON, pythonTorchVersion } from './peers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const EAGER_SCRIPT = path.join(here, 'packing_loss_eager.py');

const SHAPES = ['128x16x256', '512x4x512', '1024x8x512', '2048x4x512', '4096x4x512'];
const IMPLS = ['fused', 'fused+stats', 'unfused', 'eager', 'compile']; // the default selection
// The addon's packingLoss mode per native implementation.
const NATIVE_MODES = { fused: 'fused-pair-pass', 'fused+stats': 'fused', unfused: 'unfused' };
const PYTHON_IMPLS = ['eager', 'compile'];
const KNOWN_IMPLS = [...Object.keys(NATIVE_MODES), ...PYTHON_IMPLS];
const BBD_IMPLS = ['unfused', 'eager']; // the ones that build [b, b, d] tensors
// Ratio columns (x / fused) in this order, for the selected implementations.
const RATIO_ORDER = ['eager', 'compile', 'unfused', 'fused+stats'];
// The paper's defaults; packing_loss_eager.py hard-codes the same values.
const OPTIONS = { rs: 7, potPow: 2, minMargin: 1e-3, maxRange: 1.5, lw0: 0, lw1: 1, log: true };

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const MEMORY_LIMIT_BYTES = 20 * GiB; // RLIMIT_AS of every child (the machine has 24 GB)
const SKIP_ABOVE_BYTES = 16 * GiB; // do not even start an O(b^2 d) run whose estimate exceeds this
const CHILD_TIMEOUT_MS = 300_000;
// Reps: enough to fill targetMs, clamped to [minReps, maxReps]; sized from the first (warm-up) run.
const REPS = { targetMs: 2500, minReps: 3, maxReps: 20 };
const QUICK_REPS = { targetMs: 500, minReps: 2, maxReps: 5 };

function parseShape(text) {
  const match = /^(\d+)x(\d+)x(\d+)$/.exec(text);
  if (!match) throw new Error(`shape "${text}" is not BxMxD, e.g. 512x4x512`);
  const [b, m, d] = match.slice(1).map(Number);
  if (b < 2 || m < 2 || d < 1) throw new Error(`shape ${text}: needs b >= 2, m >= 2, d >= 1`);
  return { b, m, d };
}

function repsFor(firstMs, { targetMs, minReps, maxReps }) {
  return Math.min(maxReps, Math.max(minReps, Math.ceil(targetMs / Math.max(firstMs, 1e-3))));
}

const isOutOfMemory = (text) => /can't allocate memory|Cannot allocate memory|out of memory|bad_alloc/i.test(text);

const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

// ---------------------------------------------------------------------------------------------------
// Child: one (native implementation, shape) measurement; prints one JSON line (the same fields as the Python peer).

function statusBytes(field) {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return Number(match[1]) * 1024;
}

/** Makes VmHWM equal the current VmRSS (Linux >= 4.0), so the next peak is the measured run's alone. */
function resetPeakRss() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** Reads the raw float32 file straight into a Float32Array (no temporary Buffer for the GC to free later). */
function readFloat32(file, length) {
  const z = new Float32Array(length);
  const bytes = new Uint8Array(z.buffer);
  const fd = fs.openSync(file, 'r');
  try {
    for (let offset = 0; offset < bytes.length;) {
      const read = fs.readSync(fd, bytes, offset, bytes.length - offset, offset);
      if (read === 0) throw new Error(`${file}: expected ${bytes.length} bytes, got ${offset}`);
      offset += read;
    }
  } finally {
    fs.closeSync(fd);
  }
  return z;
}

async function runChild(impl, shapeText, values) {
  const mode = NATIVE_MODES[impl];
  if (!mode) throw new Error(`--child takes ${Object.keys(NATIVE_MODES).join(', ')}, not ${impl}`);
  const { b, m, d } = parseShape(shapeText);
  // Through the library's loader, so the bench runs with the settings users get (threads, OpenMP policy).
  const addon = native();
  addon.setNumThreads(Number(values.threads));
  const z = readFloat32(values.input, m * b * d);

  const forwardBackward = async (input, views = m, dim = d) => {
    const start = process.hrtime.bigint();
    const { loss } = await addon.packingLoss(input, views, dim, OPTIONS, mode);
    return { ms: Number(process.hrtime.bigint() - start) / 1e6, loss };
  };
  // A tiny call first so that one-time runtime start-up (libuv worker, thread pool) is not counted.
  await forwardBackward(
    Float32Array.from({ length: 2 * 2 * 4 }, (_, i) => Math.sin(i + 1)),
    2,
    4,
  );

  const reps = { targetMs: Number(values['target-ms']), minReps: Number(values['min-reps']), maxReps: Number(values['max-reps']) };
  let result;
  try {
    const baseline = statusBytes('VmRSS');
    const peakReset = resetPeakRss();
    // The peak-memory run doubles as the warm-up; its time only sizes the number of reps.
    const first = await forwardBackward(z);
    const peak = statusBytes('VmHWM');
    const count = repsFor(first.ms, reps);
    const times = [];
    for (let i = 0; i < count; i++) times.push((await forwardBackward(z)).ms);
    result = {
      impl,
      loss: first.loss,
      medianMs: median(times),
      timesMs: times,
      firstMs: first.ms,
      reps: count,
      baselineRssBytes: baseline,
      peakExtraBytes: peak - baseline,
      peakReset,
      threads: addon.numThreads(),
      torchVersion: addon.runtimeInfo().torchVersion,
    };
  } catch (error) {
    const message = String(error?.message ?? error);
    console.log(JSON.stringify({ error: isOutOfMemory(message) ? 'oom' : 'error', message }));
    process.exitCode = 1;
    return;
  }
  console.log(JSON.stringify(result));
}

// ---------------------------------------------------------------------------------------------------
// Parent: input files, one child per (impl, shape), the table.

/** Seeded Gaussian input, view-major [m*b, d]: view v of image i = 0.5 * centre_i + 0.5 * noise. */
function makeInput({ b, m, d }, seed) {
  const gaussian = gaussianSampler(seed);
  const centres = Float32Array.from({ length: b * d }, gaussian);
  const z = new Float32Array(m * b * d);
  for (let v = 0; v < m; v++) for (let k = 0; k < b * d; k++) z[v * b * d + k] = 0.5 * centres[k] + 0.5 * gaussian();
  return z;
}

/** What the O(b^2 d) implementations hold at their peak: the [b, b, d] float32 tensor, about 4 times. */
const bbdEstimateBytes = ({ b, d }) => 4 * b * b * d * 4;

function childCommand(impl, shapeText, input, threads, reps) {
  const common = [
    '--input',
    input,
    '--threads',
    String(threads),
    '--target-ms',
    String(reps.targetMs),
    '--min-reps',
    String(reps.minReps),
    '--max-reps',
    String(reps.maxReps),
  ];
  return PYTHON_IMPLS.includes(impl)
    ? [PYTHON, EAGER_SCRIPT, '--shape', shapeText, ...common, ...(impl === 'compile' ? ['--compile'] : [])]
    : [process.execPath, fileURLToPath(import.meta.url), '--child', impl, shapeText, ...common];
}

/** Runs one child under prlimit --as and a timeout; resolves to { status: 'ok' | 'oom' | 'timeout' | 'error', ... }. */
function runMeasurement(command) {
  return new Promise((resolve) => {
    const [file, ...args] = ['prlimit', `--as=${MEMORY_LIMIT_BYTES}`, '--', ...command];
    // Inductor compiles in this process rather than in a pool of workers, so that the memory limit and
    // the timeout cover all of it.
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TORCHINDUCTOR_COMPILE_THREADS: '1' } });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL'); // prlimit execs the command, so this is the measured process itself
    }, CHILD_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ status: 'error', message: error.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return resolve({ status: 'timeout', message: `timeout after ${CHILD_TIMEOUT_MS / 1000} s` });
      const lastLine = stdout.trim().split('\n').at(-1) ?? '';
      let report;
      try {
        report = JSON.parse(lastLine);
      } catch {
        report = undefined;
      }
      if (code === 0 && report && !report.error) return resolve({ status: 'ok', ...report });
      const stderrLines = stderr.trim().split('\n');
      const message =
        report?.message ?? (stderrLines.findLast((line) => /Error\b/.test(line)) || stderrLines.at(-1) || `exit ${code ?? signal}`);
      // SIGKILL without our timeout: the kernel's OOM killer.
      const oom = report?.error === 'oom' || signal === 'SIGKILL' || isOutOfMemory(stderr);
      if (!oom) return resolve({ status: 'error', message });
      const failed = /tried to allocate (\d+) bytes/.exec(message);
      const detail = failed ? `a ${(Number(failed[1]) / GiB).toFixed(1)} GiB allocation failed` : message;
      resolve({ status: 'oom', message: `out of memory under the ${MEMORY_LIMIT_BYTES / GiB} GiB limit (${detail})` });
    });
  });
}

const fmt = {
  ms: (r) => (r?.status === 'ok' ? r.medianMs.toFixed(r.medianMs < 100 ? 2 : 0) : cellStatus(r)),
  mib: (r) => (r?.status === 'ok' ? (r.peakExtraBytes / MiB).toFixed(r.peakExtraBytes < 100 * MiB ? 1 : 0) : cellStatus(r)),
  ratio: (x, y) => (Number.isFinite(x / y) && y > 0 ? `${(x / y).toFixed(x / y < 10 ? 2 : 1)}x` : '-'),
};

function cellStatus(r) {
  if (!r) return '-';
  if (r.status === 'skipped') return `OOM~${(r.estimateBytes / GiB).toFixed(0)}G`;
  return { oom: 'OOM', timeout: 'timeout', error: 'error' }[r.status] ?? r.status;
}

function printTable(rows, impls) {
  const compared = RATIO_ORDER.filter((impl) => impls.includes(impl) && impls.includes('fused'));
  const header = [
    'shape b x m x d',
    ...impls.flatMap((impl) => [`${impl} ms`, `${impl} MiB`]),
    ...compared.map((impl) => `${impl}/fused t`),
    ...compared.map((impl) => `${impl}/fused mem`),
  ];
  const lines = rows.map((row) => {
    const ok = (r) => r?.status === 'ok' && row.fused?.status === 'ok';
    const time = (r) => (ok(r) ? fmt.ratio(r.medianMs, row.fused.medianMs) : '-');
    const mem = (r) => (ok(r) ? fmt.ratio(r.peakExtraBytes, row.fused.peakExtraBytes) : '-');
    return [
      row.shape,
      ...impls.flatMap((impl) => [fmt.ms(row[impl]), fmt.mib(row[impl])]),
      ...compared.map((impl) => time(row[impl])),
      ...compared.map((impl) => mem(row[impl])),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => line[i].length)));
  const render = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(render(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const line of lines) console.log(render(line));
}

async function runParent(values) {
  const threads = values.threads === undefined ? os.availableParallelism() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a whole number >= 1`);
  const shapes = values.shapes ? values.shapes.split(',') : values.quick ? SHAPES.slice(0, 2) : SHAPES;
  shapes.forEach(parseShape);
  const impls = values.impl ? values.impl.split(',') : IMPLS;
  for (const impl of impls)
    if (!KNOWN_IMPLS.includes(impl)) throw new Error(`--impl: unknown implementation ${impl} (${KNOWN_IMPLS.join(', ')})`);
  const reps = values.quick ? QUICK_REPS : REPS;
  if (spawnSync('prlimit', ['--version']).error) throw new Error('prlimit (util-linux) is needed for the memory limit');

  const cpus = os.cpus();
  const machine = { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, memoryGiB: os.totalmem() / GiB };
  const torch = {
    native: native().runtimeInfo().torchVersion,
    python: impls.some((impl) => PYTHON_IMPLS.includes(impl)) ? pythonTorchVersion() : 'not run',
  };
  const lossRelative = (x, y) => Math.abs(x - y) / Math.max(Math.abs(y), 1e-30);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-packing-bench-'));
  const rows = [];
  try {
    for (const [index, shapeText] of shapes.entries()) {
      const shape = parseShape(shapeText);
      const input = path.join(dir, `z-${shapeText}.f32`);
      const z = makeInput(shape, 1234 + index);
      fs.writeFileSync(input, new Uint8Array(z.buffer));
      const row = { shape: shapeText };
      for (const impl of impls) {
        const estimateBytes = BBD_IMPLS.includes(impl) ? bbdEstimateBytes(shape) : 0;
        process.stderr.write(`  ${impl.padEnd(Math.max(...impls.map((i) => i.length)))} ${shapeText} ... `);
        const r = (row[impl] =
          estimateBytes > SKIP_ABOVE_BYTES
            ? { status: 'skipped', estimateBytes, message: `out of memory (needs ~${(estimateBytes / GiB).toFixed(0)} GB; not run)` }
            : await runMeasurement(childCommand(impl, shapeText, input, threads, reps)));
        process.stderr.write(
          r.status === 'ok'
            ? `${r.medianMs.toFixed(1)} ms (median of ${r.reps}), +${(r.peakExtraBytes / MiB).toFixed(1)} MiB peak${r.compileMs ? `, compiled in ${(r.compileMs / 1000).toFixed(1)} s` : ''}\n`
            : `${r.message}\n`,
        );
        if (r.status === 'ok' && r.threads !== threads) process.stderr.write(`  warning: ${impl} ran with ${r.threads} threads\n`);
        if (r.status === 'ok' && !r.peakReset)
          process.stderr.write(`  warning: ${impl}: could not reset VmHWM; peak may include start-up\n`);
      }
      fs.rmSync(input);
      rows.push(row);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  console.log(`\nCLAMP packing loss, forward + backward (median wall time; peak = VmHWM - VmRSS of a fresh process)`);
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB.toFixed(1)} GiB`);
  console.log(`threads: ${threads}   torch: native ${torch.native}, python ${torch.python} (${PYTHON})`);
  console.log(`reps: ${reps.targetMs} ms worth, ${reps.minReps}..${reps.maxReps}, after 1 warm-up (the peak-memory run)\n`);
  printTable(rows, impls);
  console.log('');
  for (const row of rows) {
    const notes = [];
    for (const impl of RATIO_ORDER)
      if (row.fused?.status === 'ok' && row[impl]?.status === 'ok')
        notes.push(`|L_fused - L_${impl}| / |L_${impl}| = ${lossRelative(row.fused.loss, row[impl].loss).toExponential(2)}`);
    for (const impl of impls) if (row[impl] && row[impl].status !== 'ok') notes.push(`${impl}: ${row[impl].message}`);
    if (notes.length) console.log(`${row.shape}: ${notes.join('; ')}`);
  }

  if (values.json) {
    const report = { machine, threads, torch, options: OPTIONS, reps, memoryLimitBytes: MEMORY_LIMIT_BYTES, rows };
    fs.writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nwrote ${values.json}`);
  }
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string' },
    shapes: { type: 'string' },
    impl: { type: 'string' },
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
    // Internal, for the child processes.
    child: { type: 'string' },
    input: { type: 'string' },
    'target-ms': { type: 'string' },
    'min-reps': { type: 'string' },
    'max-reps': { type: 'string' },
  },
});

if (values.help) {
  console.log(
    fs
      .readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 12)
      .map((l) => l.replace(/^\/\/ ?/, ''))
      .join('\n'),
  );
} else if (values.child) {
  await runChild(values.child, positionals[0], values);
} else {
  await runParent(values);
}
