#!/usr/bin/env node
// What augmentation and data loading cost the training step, end to end: the fashion-mnist preset's
// native trainer stepping on batches from MultiViewLoader (its worker threads making each batch while
// earlier steps run, as in `clamp-native train`) against the same trainer stepping on one batch made
// beforehand (the bare step), in one process, rounds alternated so that drift in the machine falls on
// both. Prints view-images/s of each and the loader's cost as a fraction of the bare step's throughput.
//
//   node bench/loader-overhead.mjs [--steps 40] [--rounds 3] [--workers N] [--priority low|normal]
//                                  [--threads N] [--json out.json]
//
// --priority is the loader's `workerPriority` (low: the workers yield the cores to LibTorch's threads);
// --workers the loader's worker count (default: the loader's own). The first step of each measured
// stretch is not timed (a warm-up).
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { MultiViewLoader, resolveTrainConfig, setNumThreads } from '../dist/index.js';
import { loadDataset } from '../dist/data/datasets.js';
import { trainerFor } from '../dist/train/from-config.js';
import { getNumThreads } from '../dist/runtime/native.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '3' },
    workers: { type: 'string' },
    priority: { type: 'string', default: 'low' },
    threads: { type: 'string' },
    json: { type: 'string' },
  },
});
const steps = Number(values.steps);
const rounds = Number(values.rounds);
if (values.threads) setNumThreads(Number(values.threads));
if (!['low', 'normal'].includes(values.priority)) throw new Error(`--priority takes low or normal, got ${values.priority}`);

const config = resolveTrainConfig({ preset: 'fashion-mnist' });
const dataset = await loadDataset(config.data, 'train');
const stepsPerEpoch = Math.floor(dataset.count / config.run.batchSize);
const trainer = await trainerFor(config, dataset.channels, stepsPerEpoch);
const loader = new MultiViewLoader({
  dataset,
  batchSize: config.run.batchSize,
  views: config.run.views,
  pipelines: config.augment,
  seed: 0,
  workers: values.workers === undefined ? undefined : Number(values.workers),
  workerPriority: values.priority,
});

/** View-images per second over `steps` steps after one untimed warm-up step, each taking its batch from `next`. */
async function timed(next) {
  let start = 0;
  let images = 0;
  for (let k = 0; k <= steps; k++) {
    const batch = await next();
    await trainer.step(batch.data, batch.shape);
    if (k === 0) start = performance.now();
    else images += batch.shape[0];
  }
  return images / ((performance.now() - start) / 1000);
}

const epochs = loader.epoch(0);
const fromLoader = async () => {
  const { value, done } = await epochs.next();
  if (done) throw new Error('the epoch ran out of batches: use fewer --steps or --rounds');
  return value;
};
const fixed = await fromLoader();
const bareBatch = { data: fixed.data.slice(), shape: fixed.shape };

console.log(
  `loader overhead: fashion-mnist preset, ${config.run.views} views x ${config.run.batchSize}, ${getNumThreads()} LibTorch thread(s), ` +
    `${loader.workerCount} worker(s) at ${values.priority} priority, ${steps} steps a stretch, ${os.cpus()[0]?.model ?? 'unknown CPU'}`,
);
console.log('round | bare step img/s | with the loader img/s | loader cost');
const results = [];
for (let round = 0; round < rounds; round++) {
  const bare = await timed(async () => bareBatch);
  const loaded = await timed(fromLoader);
  const cost = 1 - loaded / bare;
  results.push({ bare, loaded, cost });
  console.log(`${round + 1} | ${bare.toFixed(0)} | ${loaded.toFixed(0)} | ${(100 * cost).toFixed(1)}%`);
}
const sum = (key) => results.reduce((s, r) => s + r[key], 0);
const bare = sum('bare') / rounds;
const loaded = sum('loaded') / rounds;
console.log(`mean | ${bare.toFixed(0)} | ${loaded.toFixed(0)} | ${(100 * (1 - loaded / bare)).toFixed(1)}% (target <= 10%)`);
await epochs.return(undefined);
await loader.close();
trainer.dispose();
if (values.json) {
  const report = { steps, rounds, threads: getNumThreads(), workers: loader.workerCount, priority: values.priority, results };
  fs.writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
}
