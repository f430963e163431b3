#!/usr/bin/env node
// Load test of `clamp-native serve`: a fixed number of POST /v1/embeddings requests at a fixed
// concurrency, from Node's own http client (keep-alive, one socket per concurrent client) against the
// server running as its own process, as it would be deployed. Reports requests/s, p50/p99 latency and
// the mean forward-pass batch size (from /metrics), then the same calls made in-process on Encoder.embed
// (the same PNG bytes, so decoding is paid on both sides) at the same concurrency, and the ratio: what
// calling over HTTP costs against linking the Encoder.
//
//   node bench/serve.mjs [--checkpoint FILE] [--requests 4000] [--concurrency 16] [--images 1]
//                        [--max-batch 64] [--max-delay-ms 2] [--binary] [--warmup 200] [--json]
//
// Without --checkpoint an untrained checkpoint of the fashion-mnist preset (small ResNet, 28x28x1) is
// written to a temporary folder: throughput does not depend on what the weights learned.
// Needs the compiled dist/ (npm run compile) and the built addon. No dependency: no autocannon, no wrk.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import * as clamp from '../dist/index.js';
import { trainerFor } from '../dist/train/from-config.js';

const { values } = parseArgs({
  options: {
    checkpoint: { type: 'string' },
    requests: { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '16' },
    images: { type: 'string', default: '1' },
    'max-batch': { type: 'string', default: '64' },
    'max-delay-ms': { type: 'string', default: '2' },
    warmup: { type: 'string', default: '200' },
    binary: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const requests = Number(values.requests),
  concurrency = Number(values.concurrency),
  perRequest = Number(values.images);
const maxBatch = Number(values['max-batch']),
  maxDelayMs = Number(values['max-delay-ms']),
  warmup = Number(values.warmup);
if (
  ![requests, concurrency, perRequest, maxBatch].every((n) => Number.isInteger(n) && n >= 1) ||
  !Number.isInteger(warmup) ||
  warmup < 0 ||
  !(maxDelayMs >= 0)
) {
  throw new RangeError(
    '--requests, --concurrency, --images and --max-batch must be whole numbers >= 1, --warmup >= 0, --max-delay-ms a number >= 0',
  );
}
if (perRequest > maxBatch)
  throw new RangeError(`--images ${perRequest} is more than --max-batch ${maxBatch}: the server would refuse every request`);
const say = values.json ? (...args) => console.error(...args) : (...args) => console.log(...args);

/** An untrained checkpoint of the fashion-mnist preset, written into `folder`. */
async function untrainedCheckpoint(folder) {
  const config = clamp.resolveTrainConfig({ preset: 'fashion-mnist' });
  const file = path.join(folder, clamp.CHECKPOINT_FILE);
  await clamp.saveCheckpoint(file, await trainerFor(config, 1, 100), { config, position: { epoch: 0, batch: 0, step: 0 }, metrics: {} });
  return file;
}

/** 64 distinct seeded-noise PNGs at the encoder's decode size and channels. */
async function testImages(side, channels) {
  let state = 12345;
  const noise = () =>
    Buffer.from(Array.from({ length: side * side * channels }, () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) >>> 24));
  return Promise.all(
    Array.from({ length: 64 }, () =>
      sharp(noise(), { raw: { width: side, height: side, channels } })
        .png()
        .toBuffer(),
    ),
  );
}

/** `clamp-native serve` in a child process; resolves with its URL once it listens. */
async function startServer(checkpoint) {
  const command = new URL('../dist/cli/serve-command.js', import.meta.url).href;
  const script = `const { runServe } = await import(${JSON.stringify(command)}); process.exitCode = await runServe(process.argv.slice(1));`;
  const args = [
    '--checkpoint',
    checkpoint,
    '--port',
    '0',
    '--max-batch',
    String(maxBatch),
    '--max-delay-ms',
    String(maxDelayMs),
    '--max-queue',
    String(Math.max(256, 2 * concurrency)),
  ];
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
  let stderr = '';
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const found = /listening on (http:\/\/\S+)/.exec(stderr);
      if (found) resolve(found[1]);
    });
    child.once('exit', (code) => reject(new Error(`the server exited (${code}) before listening: ${stderr.trim()}`)));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
    stderr: () => stderr,
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

/** One request; resolves with its latency in ms, rejects on anything but 200. */
function post(url, body, headers) {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${url}/v1/embeddings`,
      { method: 'POST', agent, headers: { ...headers, 'Content-Length': body.length } },
      (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          if (response.statusCode !== 200)
            reject(new Error(`HTTP ${response.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
          else resolve(performance.now() - started);
        });
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** `count` calls of `call(k)` from `concurrency` workers; per-call latencies (ms) and the wall time (s). */
async function drive(count, call) {
  const latencies = new Float64Array(count);
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const k = next++;
        const t = performance.now();
        await call(k);
        latencies[k] = performance.now() - t;
      }
    }),
  );
  return { latencies: latencies.sort(), seconds: (performance.now() - started) / 1000 };
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
const summary = ({ latencies, seconds }) => ({
  requestsPerSecond: latencies.length / seconds,
  imagesPerSecond: (latencies.length * perRequest) / seconds,
  p50Ms: percentile(latencies, 0.5),
  p99Ms: percentile(latencies, 0.99),
  seconds,
});

/** The batch-size histogram's sum and count from /metrics. */
async function batchTotals(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { sum: read('clamp_serve_batch_size_sum'), count: read('clamp_serve_batch_size_count') };
}

const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-bench-serve-'));
try {
  const checkpoint = values.checkpoint ?? (await untrainedCheckpoint(folder));
  const probe = await clamp.Encoder.load(checkpoint, { maxBatch });
  const { decodeSize, channels } = probe;
  probe.dispose();
  const images = await testImages(decodeSize, channels);
  const group = (k) => Array.from({ length: perRequest }, (_, j) => images[(k * perRequest + j) % images.length]);
  const format = values.binary ? { Accept: 'application/octet-stream' } : {};
  const body = (k) => (perRequest === 1 ? group(k)[0] : Buffer.from(JSON.stringify({ images: group(k).map((b) => b.toString('base64')) })));
  const headers = { 'Content-Type': perRequest === 1 ? 'image/png' : 'application/json', ...format };
  say(
    `bench/serve: ${requests} requests of ${perRequest} ${decodeSize}x${decodeSize}x${channels} PNG image(s), concurrency ${concurrency}, --max-batch ${maxBatch} --max-delay-ms ${maxDelayMs}, ${values.binary ? 'binary' : 'JSON'} responses, ${os.availableParallelism()} cores`,
  );

  const server = await startServer(checkpoint);
  let served;
  try {
    await drive(warmup, (k) => post(server.url, body(k), headers));
    const before = await batchTotals(server.url);
    served = summary(await drive(requests, (k) => post(server.url, body(k), headers)));
    const after = await batchTotals(server.url);
    served.meanBatch = (after.sum - before.sum) / (after.count - before.count);
  } finally {
    agent.destroy();
    const code = await server.stop();
    if (code !== 0) say(`the server exited ${code} on SIGTERM: ${server.stderr().trim()}`);
  }

  // The same calls in this process: Encoder.embed of the same PNG bytes, the Encoder's own coalescing.
  const encoder = await clamp.Encoder.load(checkpoint, { maxBatch });
  let linked;
  try {
    const input = (k) => (perRequest === 1 ? group(k)[0] : group(k));
    await drive(warmup, (k) => encoder.embed(input(k)));
    linked = summary(await drive(requests, (k) => encoder.embed(input(k))));
  } finally {
    encoder.dispose();
  }

  const row = (name, s) =>
    `${name.padEnd(26)} ${s.requestsPerSecond.toFixed(0).padStart(8)} ${s.imagesPerSecond.toFixed(0).padStart(9)} ${s.p50Ms.toFixed(2).padStart(8)} ${s.p99Ms.toFixed(2).padStart(8)} ${s.meanBatch === undefined ? '       -' : s.meanBatch.toFixed(1).padStart(8)}`;
  say(
    `${'side'.padEnd(26)} ${'req/s'.padStart(8)} ${'images/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'batch'.padStart(8)}`,
  );
  say(row('HTTP (clamp-native serve)', served));
  say(row('in-process Encoder.embed', linked));
  const ratio = served.requestsPerSecond / linked.requestsPerSecond;
  say(`HTTP / in-process throughput: ${ratio.toFixed(2)}x`);
  if (values.json) {
    console.log(
      JSON.stringify({
        requests,
        concurrency,
        imagesPerRequest: perRequest,
        maxBatch,
        maxDelayMs,
        binary: values.binary,
        cores: os.availableParallelism(),
        http: served,
        inProcess: linked,
        ratio,
      }),
    );
  }
} finally {
  await fs.rm(folder, { recursive: true, force: true });
}
