#!/usr/bin/env node
// Benchmark of inference: clamp-native's Encoder (embed() on raw uint8 pixels, preprocessing included)
// against onnxruntime-node running the same backbone exported to ONNX by clamp-native's own exportOnnx
// (lib/export/onnx.ts: no Python), fed the [0, 1] float32 NCHW batch (the graph normalises). The
// onnxruntime-node peer is installed on first use into bench/peers (bench/peers.mjs). Same CPU, same number of
// intra-op threads, measured in the same process, the two sides alternated. For each network: the
// features' agreement, images per second and per-call latency at each batch size, event-loop lag while
// embedding, and a soak: RSS sampled over a long run of one-image calls (20,000 by default) and the
// event-loop delay while it runs.
//
//   node --expose-gc bench/embed.mjs [--threads N] [--batches 1,64] [--seconds 10] [--calls N]
//                                    [--checkpoint FILE] [--cifar-checkpoint FILE] [--networks fashion-mnist,cifar10[,resnet50]]
//                                    [--rss-calls 20000] [--lag-seconds 3] [--quick] [--json] [--ort-only] [--encoder-only] [--keep]
//
// --encoder-only times the Encoder alone (ORT still checks its features): half the time, for comparing
// the Encoder with itself, e.g. at --threads 1 against --threads 2.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import * as clamp from '../dist/index.js';
import { exportOnnx } from '../dist/export/onnx.js';
import { trainerFor } from '../dist/train/from-config.js';
import { loadOnnxRuntime } from './peers.mjs';

const { values } = parseArgs({
  options: {
    threads: { type: 'string' },
    batches: { type: 'string' },
    seconds: { type: 'string' },
    calls: { type: 'string' },
    checkpoint: { type: 'string' },
    'cifar-checkpoint': { type: 'string' },
    networks: { type: 'string', default: 'fashion-mnist,cifar10' },
    'rss-calls': { type: 'string' },
    'lag-seconds': { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'ort-only': { type: 'boolean', default: false },
    'encoder-only': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const quick = values.quick;
const threads = Number(values.threads ?? os.availableParallelism());
const batches = (values.batches ?? '1,64').split(',').map(Number);
const secondsPerSide = Number(values.seconds ?? (quick ? 0.3 : 10)); // timed seconds per side, per network and batch size
const fixedCalls = values.calls === undefined ? undefined : Number(values.calls);
const minCalls = quick ? 2 : 20;
const maxCalls = quick ? 20 : 2000;
// 20,000: enough calls for a leak of a few hundred bytes a call to show above the allocator's noise.
const rssCalls = Number(values['rss-calls'] ?? (quick ? 50 : 20_000));
const lagSeconds = Number(values['lag-seconds'] ?? (quick ? 0.5 : 3));
const TOLERANCE = 1e-3; // max |a - b| / max |b| over the features
if (
  ![threads, ...batches, secondsPerSide, rssCalls, lagSeconds, fixedCalls ?? 1].every((n) => Number.isFinite(n) && n > 0) ||
  ![threads, ...batches, fixedCalls ?? 1].every(Number.isInteger)
) {
  throw new RangeError(
    '--threads, --batches, --seconds, --calls, --rss-calls and --lag-seconds must be positive numbers (threads, batches and calls whole)',
  );
}

// With --json the figures go to stdout as one object and the commentary to stderr.
const say = values.json ? (...args) => console.error(...args) : (...args) => console.log(...args);
const gc =
  globalThis.gc ??
  (() => {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc');
  })();

const ort = await loadOnnxRuntime();
clamp.setNumThreads(threads);
const Encoder = clamp.Encoder;
if (!Encoder && !values['ort-only']) {
  console.error('clamp-native has no Encoder export in dist/ (run `npm run compile`?); pass --ort-only to check the ONNX side alone');
  process.exit(2);
}
const encoderSide = Encoder && !values['ort-only'];
if (values['ort-only'] && values['encoder-only']) {
  console.error('--ort-only and --encoder-only leave nothing to time: pass one of them');
  process.exit(2);
}

const NETWORKS = {
  'fashion-mnist': {
    title: 'fashion-mnist preset: small ResNet 16-32-64, 28x28x1',
    preset: 'fashion-mnist',
    checkpoint: values.checkpoint,
  },
  cifar10: { title: 'cifar10 preset: ResNet-18, CIFAR stem, 32x32x3', preset: 'cifar10', checkpoint: values['cifar-checkpoint'] },
  // Opt-in (--networks resnet50): a one-thread batch of 64 takes several seconds a call.
  resnet50: {
    title: 'imagenet100 preset: ResNet-50, ImageNet stem, 224x224x3',
    preset: 'imagenet100',
    overrides: { run: { device: 'cpu' } },
  },
};

const networks = values.networks.split(',');
for (const key of networks) {
  if (!(key in NETWORKS)) throw new RangeError(`--networks: unknown network ${key}; choose from ${Object.keys(NETWORKS).join(', ')}`);
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A checkpoint of the preset's network with its random initialisation (run.seed), the BatchNorm
// statistics and affine parameters then set to seeded random values so that evaluation-mode BatchNorm
// is not the identity and the agreement check means something. Returns the trainer too (the reference).
async function makeCheckpoint(preset, file, overrides) {
  const config = clamp.resolveTrainConfig({ preset, overrides });
  const channels = config.augment[0].normalize?.mean?.length ?? config.data.channels ?? 3;
  const trainer = await trainerFor(config, channels, 100);
  const random = new clamp.Random(1234);
  const state = await trainer.state();
  const byName = new Map(state.map((t) => [t.name, t]));
  for (const entry of state) {
    if (entry.name.startsWith('projector.') || !entry.name.endsWith('.running_mean')) continue;
    const bn = entry.name.slice(0, -'.running_mean'.length);
    const fill = (name, draw) => {
      const t = byName.get(`${bn}.${name}`);
      if (t) for (let i = 0; i < t.data.length; i++) t.data[i] = draw();
    };
    fill('running_mean', () => 0.2 * random.normal());
    fill('running_var', () => random.uniform(0.5, 2));
    fill('weight', () => random.uniform(0.5, 1.5));
    fill('bias', () => 0.1 * random.normal());
  }
  await trainer.loadState(state);
  await clamp.saveCheckpoint(file, trainer, { config, position: { epoch: 0, batch: 0, step: 0 }, metrics: {} });
  return trainer;
}

// The trainer a given checkpoint describes, with its weights: the library's own evaluation-mode forward.
async function trainerOf(file) {
  const checkpoint = await clamp.readCheckpoint(file);
  const config = clamp.parseTrainConfig(checkpoint.config, file);
  const conv1 = checkpoint.state.find((t) => t.name === 'conv1.weight');
  const trainer = await trainerFor(config, conv1.shape[1], 100);
  await trainer.loadState(checkpoint.state);
  return trainer;
}

// The checkpoint's backbone as ONNX (BatchNorm folded, the config's normalisation inside the graph),
// described as the rest of the benchmark reads it.
async function exportModel(checkpoint, out) {
  const result = await exportOnnx(checkpoint, out);
  const [, inChannels, size] = result.input.shape;
  const { metadata } = result;
  return {
    onnx: out,
    backbone: metadata.backbone,
    stem: metadata.stem,
    widths: JSON.parse(metadata.widths),
    blocks: JSON.parse(metadata.blocks),
    inChannels,
    size,
    featureDim: result.output.shape[1],
    mean: JSON.parse(metadata.mean),
    std: JSON.parse(metadata.std),
    opset: result.opset,
    bytes: result.bytes,
  };
}

// n seeded random images as the Encoder takes them (uint8 [n, H, W, C]), as ORT takes them (`unit`:
// float32 [n, C, H, W] scaled by 1/255; the graph normalises) and as Trainer.features takes them
// (`floats`: the same, normalised with the config's mean and std).
function images(n, info, seed) {
  const { size, inChannels: c } = info;
  const mean = info.mean ?? Array(c).fill(0);
  const std = info.std ?? Array(c).fill(1);
  const random = new clamp.Random(seed);
  const pixels = new Uint8Array(n * size * size * c);
  for (let i = 0; i < pixels.length; i++) pixels[i] = random.integer(0, 255);
  const unit = new Float32Array(pixels.length);
  const floats = new Float32Array(pixels.length);
  for (let k = 0; k < n; k++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let ch = 0; ch < c; ch++) {
          const value = pixels[((k * size + y) * size + x) * c + ch] / 255;
          unit[((k * c + ch) * size + y) * size + x] = value;
          floats[((k * c + ch) * size + y) * size + x] = (value - mean[ch]) / std[ch];
        }
      }
    }
  }
  return { n, pixels, pixelShape: [n, size, size, c], unit, floats, floatShape: [n, c, size, size] };
}

function compare(a, b) {
  if (a.length !== b.length) return { maxAbsDiff: Infinity, relative: Infinity, note: `lengths ${a.length} vs ${b.length}` };
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  if (Number.isNaN(diff) || a.some(Number.isNaN)) diff = Infinity;
  return { maxAbsDiff: diff, maxAbs: scale, relative: diff / (scale || 1) };
}

// The two sides, each a function: open() -> { embed(batch) -> Promise<Float32Array>, input(batch), close() }.
async function openEncoder(file, maxBatch) {
  const enc = await Encoder.load(file, { device: 'cpu', threads, maxBatch });
  return {
    name: 'encoder',
    run: (batch) => enc.embed({ data: batch.pixels, shape: batch.pixelShape }),
    features: async (batch) => {
      const result = await enc.embed({ data: batch.pixels, shape: batch.pixelShape });
      if (!(result.data instanceof Float32Array) || result.shape?.[0] !== batch.n) {
        throw new Error(
          `Encoder.embed returned ${result.data?.constructor?.name} of shape [${result.shape}], expected Float32Array [${batch.n}, dim]`,
        );
      }
      return result.data;
    },
    close: () => enc.dispose(),
  };
}

async function openOrt(onnxPath) {
  const session = await ort.InferenceSession.create(onnxPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const tensors = new WeakMap(); // the input tensor is made once per batch: ORT pays only the graph's normalisation
  const tensorOf = (batch) => {
    if (!tensors.has(batch)) tensors.set(batch, new ort.Tensor('float32', batch.unit, batch.floatShape));
    return tensors.get(batch);
  };
  return {
    name: 'ort',
    run: (batch) => session.run({ images: tensorOf(batch) }),
    features: async (batch) => (await session.run({ images: tensorOf(batch) })).embeddings.data,
    close: () => session.release(),
  };
}

// Timed calls of each side on the same batch, alternated in rounds (the order swapped every round)
// so that noise from the VM and the other engineer's jobs hits both.
async function throughput(sides, batch) {
  const warm = {};
  for (const side of sides) {
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      const start = performance.now();
      await side.run(batch);
      warm[side.name] = performance.now() - start;
    }
  }
  const perCall = Object.values(warm).reduce((a, b) => a + b, 0) / sides.length;
  const calls = fixedCalls ?? Math.min(maxCalls, Math.max(minCalls, Math.round((secondsPerSide * 1000) / perCall)));
  const rounds = Math.min(calls, 10);
  const times = Object.fromEntries(sides.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    const share = Math.floor(calls / rounds) + (round < calls % rounds ? 1 : 0);
    for (const side of order) {
      for (let i = 0; i < share; i++) {
        const start = performance.now();
        await side.run(batch);
        times[side.name].push(performance.now() - start);
      }
    }
  }
  const out = {};
  for (const [name, list] of Object.entries(times)) {
    const total = list.reduce((a, b) => a + b, 0);
    const sorted = [...list].sort((a, b) => a - b);
    out[name] = {
      calls: list.length,
      imagesPerSecond: (batch.n * list.length) / (total / 1000),
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
    };
  }
  return out;
}

// How late a 10 ms setInterval fires while the JS thread is busy with something else, and perf_hooks'
// monitorEventLoopDelay (10 ms resolution) alongside. stop() ends both and summarises them.
function lagMonitor() {
  const lags = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(Math.max(0, now - last - 10));
    last = now;
  }, 10);
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  return {
    async stop() {
      await sleep(20); // a tick the last call held up fires now and is counted
      histogram.disable();
      clearInterval(timer);
      const sorted = lags.sort((a, b) => a - b);
      return {
        samples: sorted.length,
        p99Ms: percentile(sorted, 0.99),
        maxMs: sorted[sorted.length - 1],
        // The histogram records the whole interval between its ticks: less its 10 ms period, the lag.
        monitorP99Ms: Math.max(0, histogram.percentile(99) / 1e6 - 10),
      };
    },
  };
}

// Event-loop lag while a stream of calls runs back to back (each awaited before the next starts).
async function loopLag(side, batch) {
  const monitor = lagMonitor();
  let calls = 0;
  const end = performance.now() + lagSeconds * 1000;
  while (performance.now() < end) {
    await side.run(batch);
    calls++;
  }
  return { batch: batch.n, calls, ...(await monitor.stop()) };
}

// The soak: `rssCalls` one-image calls back to back after a warm-up. RSS after a full collection before
// and after, and sampled (without collecting) 20 times along the way, so that a steady climb shows
// apart from a one-off step; the event-loop delay over the whole run.
async function soak(side, batch) {
  for (let i = 0; i < Math.min(200, Math.max(5, Math.ceil(rssCalls / 10))); i++) await side.run(batch);
  const settle = async () => {
    gc();
    await sleep(50);
    gc();
    return process.memoryUsage();
  };
  const before = await settle();
  const every = Math.max(1, Math.floor(rssCalls / 20));
  const samples = [];
  const monitor = lagMonitor();
  const started = performance.now();
  for (let i = 1; i <= rssCalls; i++) {
    await side.run(batch);
    if (i % every === 0) samples.push({ calls: i, rssMiB: process.memoryUsage.rss() / 2 ** 20 });
  }
  const seconds = (performance.now() - started) / 1000;
  const lag = await monitor.stop();
  const after = await settle();
  const half = samples.slice(Math.floor(samples.length / 2));
  return {
    calls: rssCalls,
    seconds,
    rssBeforeMiB: before.rss / 2 ** 20,
    rssAfterMiB: after.rss / 2 ** 20,
    rssPeakMiB: Math.max(...samples.map((x) => x.rssMiB)),
    growthPercent: (100 * (after.rss - before.rss)) / before.rss,
    // Growth over the second half of the calls: a leak keeps climbing there; a warm-up step does not.
    secondHalfGrowthMiB: half.length > 1 ? half[half.length - 1].rssMiB - half[0].rssMiB : 0,
    heapGrowthMiB: (after.heapUsed - before.heapUsed) / 2 ** 20,
    externalGrowthMiB: (after.external - before.external) / 2 ** 20,
    samples,
    eventLoopDelay: lag,
  };
}

async function bench(key, dir) {
  const network = NETWORKS[key];
  let checkpoint = network.checkpoint;
  let reference;
  if (checkpoint) {
    reference = await trainerOf(checkpoint);
  } else {
    checkpoint = path.join(dir, `${key}.safetensors`);
    reference = await makeCheckpoint(network.preset, checkpoint, network.overrides);
  }
  const onnxPath = path.join(dir, `${key}.onnx`);
  const info = await exportModel(checkpoint, onnxPath);
  const result = {
    network: key,
    title:
      checkpoint === network.checkpoint
        ? `${checkpoint} (${info.backbone}, ${info.stem} stem, ${info.size}x${info.size}x${info.inChannels})`
        : network.title,
    checkpoint: network.checkpoint ?? null,
    export: info,
  };
  say(`\n${result.title}: feature dim ${info.featureDim}, ONNX opset ${info.opset}`);

  // Correctness first, on a batch of 8 (or the largest batch if smaller): ORT against the library's own
  // evaluation-mode forward (Trainer.features on the same normalised floats: checks the export), then
  // the Encoder on the raw pixels against ORT.
  const check = images(Math.min(8, Math.max(...batches)), info, 7);
  const sides = [];
  const ortSide = await openOrt(onnxPath);
  const ortFeatures = await ortSide.features(check);
  result.exportCheck = compare(ortFeatures, await reference.features(check.floats, check.floatShape));
  reference = undefined;
  say(
    `  ONNX (onnxruntime-node) vs clamp-native Trainer.features: max |diff| ${result.exportCheck.maxAbsDiff.toExponential(2)} (relative ${result.exportCheck.relative.toExponential(2)})`,
  );
  let ok = result.exportCheck.relative < TOLERANCE;
  if (encoderSide) {
    const encoder = await openEncoder(checkpoint, Math.max(...batches));
    sides.push(encoder);
    result.encoderCheck = compare(await encoder.features(check), ortFeatures);
    say(
      `  Encoder.embed (uint8 pixels) vs ONNX ([0, 1] floats): max |diff| ${result.encoderCheck.maxAbsDiff.toExponential(2)} (relative ${result.encoderCheck.relative.toExponential(2)})`,
    );
    ok &&= result.encoderCheck.relative < TOLERANCE;
  }
  if (values['encoder-only']) await ortSide.close();
  else sides.push(ortSide);
  result.agree = ok;
  if (!ok) {
    say(`  DISAGREE (tolerance ${TOLERANCE} relative): no timing for this network`);
    for (const side of sides) side.close();
    return result;
  }

  result.throughput = [];
  for (const n of batches) {
    const row = { batch: n, ...(await throughput(sides, images(n, info, 100 + n))) };
    if (row.encoder && row.ort) {
      row.throughputRatio = row.encoder.imagesPerSecond / row.ort.imagesPerSecond;
      row.p50Ratio = row.ort.p50Ms / row.encoder.p50Ms;
      row.p99Ratio = row.ort.p99Ms / row.encoder.p99Ms;
    }
    result.throughput.push(row);
  }
  say(
    '  batch | calls/side | encoder img/s | ort img/s | encoder/ort | encoder p50 / p99 ms | ort p50 / p99 ms | ort_p50/enc_p50 | ort_p99/enc_p99',
  );
  for (const row of result.throughput) {
    const e = row.encoder;
    const o = row.ort;
    const f = (x, d = 1) => (x === undefined ? '-' : x.toFixed(d));
    say(
      `  ${row.batch} | ${(o ?? e).calls} | ${f(e?.imagesPerSecond, 0)} | ${f(o?.imagesPerSecond, 0)} | ${row.throughputRatio ? `${f(row.throughputRatio, 2)}x` : '-'} | ${e ? `${f(e.p50Ms, 2)} / ${f(e.p99Ms, 2)}` : '-'} | ${o ? `${f(o.p50Ms, 2)} / ${f(o.p99Ms, 2)}` : '-'} | ${f(row.p50Ratio, 2)} | ${f(row.p99Ratio, 2)}`,
    );
  }

  const lagBatch = images(Math.max(...batches), info, 3);
  result.eventLoopLag = {};
  for (const side of sides) result.eventLoopLag[side.name] = await loopLag(side, lagBatch);
  for (const [name, lag] of Object.entries(result.eventLoopLag)) {
    say(
      `  event-loop lag, ${name} stream of batch ${lag.batch} (${lag.calls} calls, ${lagSeconds} s): p99 ${lag.p99Ms.toFixed(1)} ms, max ${lag.maxMs.toFixed(1)} ms${name === 'encoder' ? `; target < 50 ms: ${lag.p99Ms < 50 ? 'met' : 'MISSED'}` : ''}`,
    );
  }

  if (encoderSide) {
    result.soak = await soak(sides[0], images(1, info, 5));
    const r = result.soak;
    const d = r.eventLoopDelay;
    const signed = (x, digits) => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
    say(
      `  soak, ${r.calls} one-image embed() calls in ${r.seconds.toFixed(1)} s: RSS ${r.rssBeforeMiB.toFixed(1)} -> ${r.rssAfterMiB.toFixed(1)} MiB (${signed(r.growthPercent, 2)}%; target < 2%: ${r.growthPercent < 2 ? 'met' : 'MISSED'}), peak ${r.rssPeakMiB.toFixed(1)} MiB, ${signed(r.secondHalfGrowthMiB, 1)} MiB over the second half; JS heap ${signed(r.heapGrowthMiB, 2)} MiB`,
    );
    say(`    RSS sampled every ${r.samples[0]?.calls ?? '-'} calls (MiB): ${r.samples.map((x) => x.rssMiB.toFixed(1)).join(' ')}`);
    say(
      `    event-loop delay while embedding: p99 ${d.p99Ms.toFixed(1)} ms, max ${d.maxMs.toFixed(1)} ms over ${d.samples} ticks (monitorEventLoopDelay p99 ${d.monitorP99Ms.toFixed(1)} ms); target < 50 ms: ${d.p99Ms < 50 ? 'met' : 'MISSED'}`,
    );
  }
  for (const side of sides) await side.close();
  return result;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-embed-'));
const report = {
  threads,
  cpu: os.cpus()[0]?.model ?? 'unknown CPU',
  node: process.version,
  onnxruntime: ort.env.versions?.node ?? ort.env.versions?.common ?? null,
  exportedWith: 'clamp-native exportOnnx (TypeScript, BatchNorm folded)',
  libtorch: clamp.doctor().libtorch.version,
  quick,
  batches,
  tolerance: TOLERANCE,
  encoder: Boolean(encoderSide),
  networks: [],
};
say(
  `Inference: clamp-native Encoder vs onnxruntime-node (CPU provider), ${threads} intra-op thread(s) each, ${report.cpu}${quick ? ', --quick' : ''}`,
);
say(`clamp-native on LibTorch ${report.libtorch}; onnxruntime-node ${report.onnxruntime}; ONNX exported by ${report.exportedWith}`);
say('The Encoder is fed raw uint8 HWC pixels and pays its preprocessing (scale, normalise, HWC->CHW); ORT is fed the');
say('[0, 1] float32 NCHW batch and pays only the normalisation inside its graph. Ratios >= 1.0 mean clamp-native is faster.');
let failed = false;
try {
  for (const key of networks) {
    const result = await bench(key, dir);
    failed ||= !result.agree;
    report.networks.push(result);
  }
} finally {
  if (values.keep) say(`\nkept ${dir}`);
  else fs.rmSync(dir, { recursive: true, force: true });
}
if (!encoderSide) say('\n--ort-only: the Encoder side was not run');
if (values.json) console.log(JSON.stringify(report, null, 2));
if (failed) {
  console.error('the features disagree: see above');
  process.exit(1);
}
