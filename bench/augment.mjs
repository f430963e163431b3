#!/usr/bin/env node
// Benchmark of augmentation, per core: clamp-native's multiViewBatch (lib/augment/pipeline.ts, what a
// loader worker runs: random draws in TypeScript, one view program per view run by the addon's C++
// kernels, native/src/core/augment/) on ONE thread against albumentations (the paper's code augments with it) in one
// Python process on one core, same images, same pipelines, measured in the same run. Prints views per
// second for each side and clamp-native's over albumentations'; optionally clamp-native's MultiViewLoader
// with its worker pool as an extra row, which is not per-core.
//
//   node bench/augment.mjs [--seconds 5] [--warmup 1] [--cases fashion-mnist,cifar10,rgb96,imagenet-pair96]
//                          [--images 4096] [--cifar DIR] [--fashion-mnist DIR] [--workers N] [--profile]
//                          [--check-views 512] [--quick] [--json out.json]
//
// --profile adds microseconds per view by transform on each side (each transform timed on its own:
// clamp-native's through lib/augment/transforms.ts, one program and one new array per transform, so
// its sum exceeds what multiViewBatch pays for a view, which allocates nothing per op);
// --workers 0 leaves out the loader rows; --quick is a smoke test (0.5 s, 256 images), not figures.
//
// The peer: albumentations 2.0.8 (PyPI, with opencv-python-headless), installed on first use into the
// bench-local virtual environment bench/peers/albumentations-venv (`python3 -m venv`, then `pip install -r
// bench/peers/albumentations-requirements.txt`); never into the global Python. PYTHON (default python3)
// is the interpreter that creates it. bench/augment_albumentations.py is its side.
//
// Each side runs alone, in its own child process, one after the other: clamp-native in
// `node --single-threaded-gc` (V8's collector on the measured thread too, so the figure borrows no
// second core), albumentations with cv2.setNumThreads(1) and OMP/MKL/OpenBLAS threads 1. Each makes
// view-major batches [views * batch, C, size, size] of float32 normalised views from the same uint8
// images (in order, cycling), for --warmup seconds, then counts the views made in --seconds.
//
// Cases (images: the real Fashion-MNIST; CIFAR-10 from --cifar DIR when given, otherwise synthetic RGB
// images from a fixed seed; output at the pipeline's size):
// - fashion-mnist: the fashion-mnist preset's pipeline (crop [0.3, 1], flip, brightness/contrast 0.4 at
//   p 0.8, normalise), 28x28x1, 4 views;
// - cifar10: the cifar10 preset's (crop [0.2, 1], flip, jitter 0.4/0.4/0.2/0.1 at p 0.8, grayscale 0.2,
//   normalise), 32x32x3, 16 views;
// - rgb96: the cifar10 preset's pipeline with size 96, on 96x96x3 (STL-10-sized) images;
// - imagenet-pair96: the imagenet100 preset's asymmetric pair (Gaussian blur, kernel 23, sigma in
//   [0.1, 2], at p 1 / p 0.1 + solarize at p 0.2), size 96 on 96x96x3, 4 views alternating the two;
// - imagenet-pair224 (opt-in): the same pair at the preset's 224, from 256x256x3 images.
//
// Semantic differences that remain (the same transforms, parameters and order otherwise):
// - albumentations works on uint8 HWC pixels until Normalize, so each step lands on whole levels
//   (brightness and contrast truncate: about -0.4 and -0.5 of a level on average per step, saturation,
//   grayscale and blur round); clamp-native works on float32 CHW in [0, 1] from the start
//   (imageFromBytes) and never rounds;
// - hue: albumentations shifts OpenCV's uint8 hue (180 levels, a lookup table, truncated), clamp-native
//   rotates a float hue: single pixels differ by up to ~10 levels; the crop's bilinear resize is
//   OpenCV's fixed-point INTER_LINEAR against float weights (both half-pixel centred, neither
//   antialiased); blur is the same kernel (23 taps, sigma uniform in the range) and the same mirrored
//   border (OpenCV's BORDER_REFLECT_101), solarize the same threshold (uint8: 127.5);
// - albumentations skips a jitter step whose drawn factor is exactly 1 and ColorJitter always draws all
//   four factors; clamp-native skips a step whose strength option is 0 (the same work);
// - albumentations' ToGray is not applied to a one-channel image; neither is clamp-native's grayscale
//   (it copies the channel): a one-channel pipeline's grayscale is left out on both sides;
// - random numbers: each side its own generator (mulberry32 against Python's random/NumPy), so the views
//   differ; the same distributions, checked by each side's per-channel mean and std over --check-views
//   views (default 512) of the first images, untimed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MultiViewLoader } from '../dist/augment/loader.js';
import { multiViewBatch } from '../dist/augment/pipeline.js';
import {
  colorJitter,
  cropAndResize,
  gaussianBlur,
  grayscale,
  horizontalFlip,
  imageFromBytes,
  normalize,
  sampleCropBox,
  solarize,
} from '../dist/augment/transforms.js';
import { resolveTrainConfig } from '../dist/config/train-config.js';
import { DEFAULT_FASHION_MNIST, loadIdxDataset } from '../dist/data/idx.js';
import { loadCifarDataset } from '../dist/data/cifar.js';
import { Random } from '../dist/random.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.PYTHON || 'python3';
const VENV = path.join(here, 'peers', 'albumentations-venv');
const REQUIREMENTS = path.join(here, 'peers', 'albumentations-requirements.txt');
const ALBUMENTATIONS_VERSION = '2.0.8';

const CASES = {
  'fashion-mnist': { preset: 'fashion-mnist', source: 'fashion-mnist', side: 28, channels: 1, views: 4, batch: 128 },
  cifar10: { preset: 'cifar10', source: 'cifar', side: 32, channels: 3, views: 16, batch: 32 },
  rgb96: { preset: 'cifar10', size: 96, source: 'synthetic', side: 96, channels: 3, views: 4, batch: 32 },
  'imagenet-pair96': { preset: 'imagenet100', size: 96, source: 'synthetic', side: 96, channels: 3, views: 4, batch: 16 },
  'imagenet-pair224': { preset: 'imagenet100', source: 'synthetic', side: 256, channels: 3, views: 2, batch: 4 },
};
const DEFAULT_CASES = ['fashion-mnist', 'cifar10', 'rgb96', 'imagenet-pair96'];

// ---------------------------------------------------------------------------------------------------
// Child: clamp-native's side of one case, on this thread alone.

/** One batch as multiViewBatch makes it, each transform timed (the same calls, in augment()'s order). */
function profiledBatch(dataset, indices, views, pipelines, random, totals) {
  const { channels, height, width } = dataset;
  const pixels = channels * height * width;
  const size = pipelines[0].size;
  const viewValues = channels * size * size;
  const data = new Float32Array(views * indices.length * viewValues);
  let t = performance.now();
  const lap = (name) => {
    const now = performance.now();
    totals[name] = (totals[name] ?? 0) + now - t;
    t = now;
  };
  indices.forEach((index, i) => {
    const image = imageFromBytes(dataset.images.subarray(index * pixels, (index + 1) * pixels), channels, height, width);
    lap('fromBytes');
    for (let v = 0; v < views; v++) {
      const a = pipelines[v % pipelines.length];
      let out = cropAndResize(image, sampleCropBox(image.height, image.width, a.crop.scale, a.crop.ratio, random), a.size, a.size);
      lap('crop');
      if (random.chance(a.flip)) out = horizontalFlip(out);
      lap('flip');
      if (random.chance(a.colorJitter.p)) out = colorJitter(out, a.colorJitter, random);
      lap('jitter');
      if (random.chance(a.grayscale)) out = grayscale(out);
      lap('gray');
      if (random.chance(a.blur.p)) out = gaussianBlur(out, a.blur.kernelSize, random.uniform(a.blur.sigma[0], a.blur.sigma[1]));
      lap('blur');
      if (random.chance(a.solarize.p)) out = solarize(out, a.solarize.threshold);
      lap('solarize');
      if (a.normalize) out = normalize(out, a.normalize.mean, a.normalize.std);
      lap('normalize');
      data.set(out.data, (v * indices.length + i) * viewValues);
      lap('copy');
    }
  });
  return data;
}

function channelStats(data, channels, plane) {
  const mean = [],
    std = [];
  const rows = data.length / (channels * plane);
  for (let c = 0; c < channels; c++) {
    let sum = 0,
      squares = 0;
    for (let r = 0; r < rows; r++) {
      const base = (r * channels + c) * plane;
      for (let k = 0; k < plane; k++) {
        const x = data[base + k];
        sum += x;
        squares += x * x;
      }
    }
    const n = rows * plane;
    mean.push(sum / n);
    std.push(Math.sqrt(Math.max(0, squares / n - (sum / n) ** 2)));
  }
  return { mean, std };
}

function child(specFile) {
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
  const { count, channels, height, width, pipelines, views, batch, seconds, warmup, seed } = spec;
  const images = new Uint8Array(fs.readFileSync(spec.imagesFile));
  const dataset = { images, labels: new Uint8Array(count), count, channels, height, width, classes: 10 };
  const random = new Random(seed);
  let position = 0;
  const nextIndices = () => {
    const indices = Array.from({ length: batch }, (_, k) => (position + k) % count);
    position += batch;
    return indices;
  };
  const warmEnd = performance.now() + warmup * 1000;
  do multiViewBatch(dataset, nextIndices(), views, pipelines, random);
  while (performance.now() < warmEnd);
  let made = 0,
    elapsed = 0;
  const start = performance.now();
  do {
    multiViewBatch(dataset, nextIndices(), views, pipelines, random);
    made += views * batch;
    elapsed = (performance.now() - start) / 1000;
  } while (elapsed < seconds);

  const size = pipelines[0].size;
  const indices = Array.from({ length: Math.min(spec.checkImages, count) }, (_, k) => k);
  const check = multiViewBatch(dataset, indices, views, pipelines, random);
  const result = {
    views: made,
    seconds: elapsed,
    viewsPerSecond: made / elapsed,
    shape: check.shape,
    ...channelStats(check.data, channels, size * size),
  };
  if (spec.profile) {
    const totals = {};
    let profiled = 0;
    const end = performance.now() + spec.profileSeconds * 1000;
    while (performance.now() < end) {
      profiledBatch(dataset, nextIndices(), views, pipelines, random, totals);
      profiled += views * batch;
    }
    result.profile = {
      views: profiled,
      microsecondsPerView: Object.fromEntries(Object.entries(totals).map(([k, ms]) => [k, (1000 * ms) / profiled])),
    };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Parent.

function ensureAlbumentations() {
  const python = path.join(VENV, 'bin', 'python');
  const probe = () =>
    spawnSync(python, ['-c', 'import albumentations, cv2; print(albumentations.__version__)'], {
      encoding: 'utf8',
      env: { ...process.env, NO_ALBUMENTATIONS_UPDATE: '1' },
    });
  let found = fs.existsSync(python) ? probe() : null;
  if (found?.status === 0 && found.stdout.trim() === ALBUMENTATIONS_VERSION) return python;
  process.stderr.write(`bench: installing the albumentations ${ALBUMENTATIONS_VERSION} peer into ${VENV} (once)\n`);
  if (!fs.existsSync(python)) {
    const venv = spawnSync(PYTHON, ['-m', 'venv', VENV], { stdio: 'inherit' });
    if (venv.status !== 0)
      throw new Error(
        `\`${PYTHON} -m venv ${VENV}\` failed (exit ${venv.status ?? venv.error?.message}); on Debian, apt-get install python3-venv, or set PYTHON`,
      );
  }
  const pip = spawnSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', REQUIREMENTS], {
    stdio: 'inherit',
  });
  if (pip.status !== 0) throw new Error(`installing albumentations into ${VENV} failed (pip exited ${pip.status ?? pip.error?.message})`);
  found = probe();
  if (found.status !== 0) throw new Error(`albumentations does not load in ${VENV}: ${(found.stderr || '').trim().split('\n').pop()}`);
  return python;
}

/** Images whose content varies like a photo's at several scales: seeded, so every run sees the same. */
function syntheticDataset(count, channels, side, seed) {
  const random = new Random(seed);
  const images = new Uint8Array(count * channels * side * side);
  const plane = side * side;
  for (let n = 0; n < count; n++) {
    const waves = Array.from({ length: 3 }, () => ({
      fx: random.uniform(-0.3, 0.3),
      fy: random.uniform(-0.3, 0.3),
      amplitude: random.uniform(20, 60),
    }));
    for (let c = 0; c < channels; c++) {
      const base = random.uniform(60, 190);
      const phases = waves.map(() => random.uniform(0, 2 * Math.PI));
      const offset = (n * channels + c) * plane;
      for (let y = 0; y < side; y++) {
        for (let x = 0; x < side; x++) {
          let v = base + random.uniform(-15, 15);
          waves.forEach((w, k) => (v += w.amplitude * Math.sin(w.fx * x + w.fy * y + phases[k])));
          images[offset + y * side + x] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
  }
  return { images, labels: new Uint8Array(count), count, channels, height: side, width: side, classes: 10 };
}

function subset(dataset, count) {
  const pixels = dataset.channels * dataset.height * dataset.width;
  const n = Math.min(count, dataset.count);
  return { ...dataset, count: n, images: dataset.images.slice(0, n * pixels), labels: dataset.labels.slice(0, n) };
}

async function imagesFor(c, count) {
  if (c.source === 'fashion-mnist')
    return {
      dataset: subset(await loadIdxDataset(values['fashion-mnist'] ?? DEFAULT_FASHION_MNIST, 'train'), count),
      from: 'Fashion-MNIST train',
    };
  if (c.source === 'cifar' && values.cifar)
    return { dataset: subset(await loadCifarDataset(values.cifar, 'train', 'cifar10'), count), from: 'CIFAR-10 train' };
  return { dataset: syntheticDataset(count, c.channels, c.side, 20250101 + c.side), from: 'synthetic (seeded)' };
}

function pipelinesFor(c) {
  const config = resolveTrainConfig({ preset: c.preset });
  return config.augment.map((a) => (c.size ? { ...a, size: c.size } : a));
}

function runChild(command, args, env) {
  const run = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 16 << 20 });
  if (run.status !== 0) return { error: (run.stderr || run.error?.message || `exit ${run.status}`).trim().split('\n').pop() };
  return JSON.parse(run.stdout.trim().split('\n').pop());
}

async function loaderViewsPerSecond(dataset, c, pipelines, workers) {
  const loader = new MultiViewLoader({ dataset, batchSize: c.batch, views: c.views, pipelines, seed: 7, workers, prefetch: 2 * workers });
  try {
    let made = 0,
      start = 0,
      epoch = 0,
      elapsed = 0;
    const warmEnd = performance.now() + warmup * 1000;
    for (;;) {
      for await (const batch of loader.epoch(epoch++)) {
        const now = performance.now();
        if (!start) {
          if (now >= warmEnd) start = now;
          continue;
        }
        made += batch.shape[0];
        elapsed = (now - start) / 1000;
        if (elapsed >= seconds) return { views: made, seconds: elapsed, viewsPerSecond: made / elapsed };
      }
    }
  } finally {
    await loader.close();
  }
}

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    cases: { type: 'string', default: DEFAULT_CASES.join(',') },
    images: { type: 'string' },
    cifar: { type: 'string' },
    'fashion-mnist': { type: 'string' },
    workers: { type: 'string' },
    'check-views': { type: 'string' },
    profile: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

if (values.child) {
  child(values.child);
  process.exit(0);
}

const quick = values.quick;
const seconds = Number(values.seconds ?? (quick ? 0.5 : 5));
const warmup = Number(values.warmup ?? (quick ? 0.2 : 1));
const imageCount = Number(values.images ?? (quick ? 256 : 4096));
const checkViews = Number(values['check-views'] ?? (quick ? 64 : 512));
const workers = Number(values.workers ?? Math.min(4, os.availableParallelism()));
const cases = values.cases.split(',').filter(Boolean);
for (const name of cases)
  if (!(name in CASES)) throw new RangeError(`--cases: unknown case ${name}; choose from ${Object.keys(CASES).join(', ')}`);
if (
  ![seconds, warmup, imageCount].every((n) => Number.isFinite(n) && n > 0) ||
  !Number.isInteger(imageCount) ||
  !Number.isInteger(workers) ||
  workers < 0
) {
  throw new RangeError(
    '--seconds, --warmup and --images must be positive (images whole), --workers a whole number >= 0 (0: no loader rows)',
  );
}

const venvPython = ensureAlbumentations();
const single = {
  OMP_NUM_THREADS: '1',
  MKL_NUM_THREADS: '1',
  OPENBLAS_NUM_THREADS: '1',
  NUMEXPR_NUM_THREADS: '1',
  NO_ALBUMENTATIONS_UPDATE: '1',
};
const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-augment-bench-'));
const rows = [];
let peerVersions;
const [load1] = os.loadavg();
console.log(
  `Augmentation per core: views/s over ${seconds} s after ${warmup} s warm-up, one thread each side, ${os.cpus()[0]?.model ?? 'unknown CPU'} (${os.availableParallelism()} cores, load ${load1.toFixed(2)})`,
);
try {
  for (const name of cases) {
    const c = CASES[name];
    const { dataset, from } = await imagesFor(c, imageCount);
    const pipelines = pipelinesFor(c);
    const size = pipelines[0].size;
    const imagesFile = path.join(temp, `${name}.u8`);
    fs.writeFileSync(imagesFile, dataset.images);
    const specFile = path.join(temp, `${name}.json`);
    const spec = {
      imagesFile,
      count: dataset.count,
      channels: dataset.channels,
      height: dataset.height,
      width: dataset.width,
      pipelines,
      views: c.views,
      batch: c.batch,
      seconds,
      warmup,
      seed: 1234,
      checkImages: Math.ceil(checkViews / c.views),
      profile: values.profile,
      profileSeconds: Math.max(1, seconds / 2),
    };
    fs.writeFileSync(specFile, JSON.stringify(spec));
    const ours = runChild(process.execPath, ['--single-threaded-gc', fileURLToPath(import.meta.url), '--child', specFile], single);
    const peer = runChild(venvPython, [path.join(here, 'augment_albumentations.py'), specFile], single);
    if (!('error' in peer))
      peerVersions = `albumentations ${peer.albumentations}, OpenCV ${peer.opencv} (cv2 threads ${peer.cv2Threads}), NumPy ${peer.numpy}`;
    const loader = workers > 0 ? await loaderViewsPerSecond(dataset, c, pipelines, workers) : undefined;
    rows.push({
      case: name,
      from,
      images: dataset.count,
      input: `${dataset.height}x${dataset.width}x${dataset.channels}`,
      size,
      views: c.views,
      batch: c.batch,
      pipelines,
      ours,
      albumentations: peer,
      loader,
      workers,
    });
  }
} finally {
  fs.rmSync(temp, { recursive: true, force: true });
}

const cell = (r) => ('error' in r ? `failed: ${r.error}` : `${Math.round(r.viewsPerSecond)}`);
const ratio = (a, b) => ('error' in a || 'error' in b ? '-' : `${(a.viewsPerSecond / b.viewsPerSecond).toFixed(2)}x`);
console.log(
  `peer: ${peerVersions ?? 'albumentations failed'}; clamp-native: multiViewBatch on the main thread of node --single-threaded-gc`,
);
console.log(
  [
    'case',
    'images',
    'input -> view',
    'views x batch',
    'clamp-native views/s',
    'albumentations views/s',
    'clamp-native / albumentations',
  ].join(' | '),
);
for (const r of rows)
  console.log(
    [
      r.case,
      r.from,
      `${r.input} -> ${r.size}x${r.size}`,
      `${r.views} x ${r.batch}`,
      cell(r.ours),
      cell(r.albumentations),
      ratio(r.ours, r.albumentations),
    ].join(' | '),
  );
if (workers > 0) {
  console.log(
    `\nNot per-core: clamp-native's MultiViewLoader, ${workers} worker thread(s) (prefetch ${2 * workers}) on a machine of ${os.availableParallelism()} cores`,
  );
  console.log(['case', 'loader views/s', 'loader / one-thread clamp-native', 'loader / one-core albumentations'].join(' | '));
  for (const r of rows) console.log([r.case, cell(r.loader), ratio(r.loader, r.ours), ratio(r.loader, r.albumentations)].join(' | '));
}
const fmt = (xs) => xs.map((x) => x.toFixed(3)).join(',');
console.log(
  `\nOutput check (${checkViews} views of the first images; same distribution expected, not the same views): per-channel mean / std`,
);
console.log(['case', 'shape', 'clamp-native mean', 'albumentations mean', 'clamp-native std', 'albumentations std'].join(' | '));
for (const r of rows) {
  if ('error' in r.ours || 'error' in r.albumentations) continue;
  console.log(
    [
      r.case,
      `[${r.ours.shape.join(', ')}] float32 / [${r.albumentations.shape.join(', ')}] ${r.albumentations.dtype}`,
      fmt(r.ours.mean),
      fmt(r.albumentations.mean),
      fmt(r.ours.std),
      fmt(r.albumentations.std),
    ].join(' | '),
  );
}
if (values.profile) {
  const stages = ['fromBytes', 'crop', 'flip', 'jitter', 'gray', 'blur', 'solarize', 'normalize', 'copy'];
  console.log(
    '\nProfile: microseconds per view by stage (each transform timed on its own; albumentations "compose" is its whole Compose call, the rest its own bookkeeping)',
  );
  console.log(['case', 'side', ...stages, 'sum', 'compose'].join(' | '));
  for (const r of rows) {
    for (const [side, result] of [
      ['clamp-native', r.ours],
      ['albumentations', r.albumentations],
    ]) {
      if ('error' in result || !result.profile) continue;
      const us = result.profile.microsecondsPerView;
      const sum = Object.values(us).reduce((a, b) => a + b, 0);
      console.log(
        [
          r.case,
          side,
          ...stages.map((s) => (us[s] === undefined ? '-' : us[s].toFixed(1))),
          sum.toFixed(1),
          result.profile.composeMicrosecondsPerView?.toFixed(1) ?? '-',
        ].join(' | '),
      );
    }
  }
}
if (values.json)
  fs.writeFileSync(
    values.json,
    `${JSON.stringify({ seconds, warmup, workers, load1, cpu: os.cpus()[0]?.model, peer: peerVersions, rows }, null, 2)}\n`,
  );
