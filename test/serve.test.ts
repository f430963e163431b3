// The embedding server: the vectors a linked Encoder gives, over JSON/base64, raw bytes and the binary
// response; /healthz and /metrics; dynamic batching across requests; every limit answered with its
// status and reason (413, 503, 400, 415) while the server keeps serving; graceful close and the CLI's
// SIGTERM, both finishing the request in flight. Waits are on conditions (the server's own counters),
// never on durations.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http, { type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveCheckpoint } from '../lib/checkpoint/checkpoint.js';
import { runServe } from '../lib/cli/serve-command.js';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { Encoder } from '../lib/encode/encoder.js';
import { startEmbeddingServer, type EmbeddingServer, type EmbeddingServerOptions } from '../lib/serve/server.js';
import { trainerFor } from '../lib/train/from-config.js';

let dir: string;
let checkpoint: string;
let encoder: Encoder;
/** Eight seeded random 28x28 greyscale PNGs. */
let pngs: Buffer[];
let jpeg: Buffer;
/** A 40x30 RGB PNG: cropped, resized and made grey on the way in. */
let rgbPng: Buffer;
const servers: EmbeddingServer[] = [];

function randomPixels(count: number, seed: number): Buffer {
  let state = seed >>> 0;
  return Buffer.from(Array.from({ length: count }, () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) >>> 24));
}

/** A PNG whose header says 0x0 pixels, with valid chunk checksums (no encoder writes one). */
function zeroByZeroPng(): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const length = Buffer.alloc(4),
      crc = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header[8] = 8; // bit depth; width, height and colour type (greyscale) stay 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(0))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-serve-'));
  // An untrained checkpoint of the default (fashion-mnist) network: serving needs weights, not good ones.
  const config = resolveTrainConfig({});
  checkpoint = path.join(dir, 'checkpoint.safetensors');
  await saveCheckpoint(checkpoint, await trainerFor(config, 1, 100), { config, position: { epoch: 0, batch: 0, step: 0 }, metrics: {} });
  encoder = await Encoder.load(checkpoint, { maxBatch: 16 });
  const raw = (pixels: Buffer, width: number, height: number, channels: 1 | 3) => sharp(pixels, { raw: { width, height, channels } });
  pngs = await Promise.all(
    Array.from({ length: 8 }, (_, k) =>
      raw(randomPixels(28 * 28, k + 1), 28, 28, 1)
        .png()
        .toBuffer(),
    ),
  );
  jpeg = await raw(randomPixels(28 * 28, 99), 28, 28, 1)
    .jpeg()
    .toBuffer();
  rgbPng = await raw(randomPixels(40 * 30 * 3, 7), 40, 30, 3)
    .png()
    .toBuffer();
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close({ timeoutMs: 0 })));
  encoder?.dispose();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

async function serve(settings: Partial<EmbeddingServerOptions> = {}): Promise<EmbeddingServer> {
  const server = await startEmbeddingServer({ encoder, maxDelayMs: 0, ...settings });
  servers.push(server);
  return server;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A request whose body the test writes itself (`request`), and its reply. A fresh connection each (agent: false). */
function open(url: string, options: http.RequestOptions = {}): { request: ClientRequest; reply: Promise<Reply> } {
  let request!: ClientRequest;
  const reply = new Promise<Reply>((resolve, reject) => {
    request = http.request(url, { method: 'POST', agent: false, ...options }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
  return { request, reply };
}

/** One whole request. */
function call(url: string, body: string | Buffer | undefined, headers: Record<string, string> = {}, method = 'POST'): Promise<Reply> {
  const { request, reply } = open(url, { method, headers });
  request.end(body);
  return reply;
}

const json = (reply: Reply) => JSON.parse(reply.body.toString('utf8')) as Record<string, unknown>;
const errorOf = (reply: Reply) => String(json(reply).error);
const embedJson = (server: EmbeddingServer, images: readonly Buffer[], headers: Record<string, string> = {}) =>
  call(`${server.url}/v1/embeddings`, JSON.stringify({ images: images.map((image) => image.toString('base64')) }), {
    'Content-Type': 'application/json',
    ...headers,
  });
const embedRaw = (server: EmbeddingServer, image: Buffer, type = 'image/png') =>
  call(`${server.url}/v1/embeddings`, image, { 'Content-Type': type });

/** The vectors of a JSON reply, as one float32 array (each JSON number is a float32 printed exactly). */
function vectors(reply: Reply): Float32Array {
  expect(reply.status, reply.body.toString()).toBe(200);
  const { embeddings, count, dim } = json(reply) as { embeddings: number[][]; count: number; dim: number };
  expect([embeddings.length, dim]).toEqual([count, encoder.dim]);
  return Float32Array.from(embeddings.flat());
}

/** One sample of the Prometheus text, e.g. `clamp_serve_batch_size_bucket{le="4"}`; 0 when the series is absent. */
async function metric(server: EmbeddingServer, series: string): Promise<number> {
  const text = (await call(`${server.url}/metrics`, undefined, {}, 'GET')).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Resolves once `condition` holds, checked on every turn of the event loop (the test's timeout bounds it). */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** A request sent up to half its body: the server has admitted it and waits for the rest. */
async function halfSent(server: EmbeddingServer, image: Buffer) {
  const { request, reply } = open(`${server.url}/v1/embeddings`, {
    headers: { 'Content-Type': 'image/png', 'Content-Length': String(image.length) },
  });
  request.write(image.subarray(0, image.length >> 1));
  return { finish: () => request.end(image.subarray(image.length >> 1)), reply };
}

describe('embedding server', () => {
  it('gives exactly the float32 vectors Encoder.embed gives, over JSON/base64, raw bytes and the binary body', async () => {
    const server = await serve();
    // Requests one at a time, so each forward pass holds one request's images, as the reference call does.
    const trio = [pngs[0]!, jpeg, rgbPng];
    const overJson = vectors(await embedJson(server, trio));
    expect(Array.from(overJson)).toEqual(Array.from((await encoder.embed(trio)).data));
    // A data: URL and line-wrapped base64 are the same image.
    const wrapped = `data:image/png;base64,${pngs[0]!.toString('base64').replace(/(.{76})/g, '$1\n')}`;
    const fromDataUrl = vectors(
      await call(`${server.url}/v1/embeddings`, JSON.stringify({ images: [wrapped] }), {
        'Content-Type': 'application/json; charset=utf-8',
      }),
    );
    expect(Array.from(fromDataUrl)).toEqual(Array.from((await encoder.embed(pngs[0]!)).data));

    const overRaw = vectors(await embedRaw(server, pngs[1]!));
    expect(Array.from(overRaw)).toEqual(Array.from((await encoder.embed(pngs[1]!)).data));
    expect(Array.from(vectors(await embedRaw(server, jpeg, 'image/jpeg')))).toEqual(Array.from((await encoder.embed(jpeg)).data));

    const binary = await embedJson(server, [pngs[2]!, pngs[3]!], { Accept: 'application/octet-stream' });
    expect(binary.status).toBe(200);
    expect(binary.headers['content-type']).toBe('application/octet-stream');
    expect([binary.headers['x-embedding-count'], binary.headers['x-embedding-dim'], binary.headers['x-embedding-dtype']]).toEqual([
      '2',
      String(encoder.dim),
      'float32-le',
    ]);
    expect(binary.body.length).toBe(2 * encoder.dim * 4);
    const floats = new Float32Array(binary.body.buffer.slice(binary.body.byteOffset, binary.body.byteOffset + binary.body.length));
    expect(Array.from(floats)).toEqual(Array.from((await encoder.embed([pngs[2]!, pngs[3]!])).data));

    // Different images give different vectors, so the comparisons above can fail.
    expect(Array.from(overRaw)).not.toEqual(Array.from(overJson.subarray(0, encoder.dim)));
  });

  it('answers /healthz, and /metrics counts requests, images, batch sizes and latency in Prometheus text', async () => {
    const server = await serve();
    const health = await call(`${server.url}/healthz`, undefined, {}, 'GET');
    expect(health.status).toBe(200);
    expect(json(health)).toMatchObject({ status: 'ok', dim: encoder.dim, inFlight: 0, queuedImages: 0 });

    await embedJson(server, [pngs[0]!, pngs[1]!, pngs[2]!]);
    const page = await call(`${server.url}/metrics`, undefined, {}, 'GET');
    expect(page.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = page.body.toString();
    for (const type of [
      'clamp_serve_requests_total counter',
      'clamp_serve_images_total counter',
      'clamp_serve_batch_size histogram',
      'clamp_serve_request_duration_seconds histogram',
    ]) {
      expect(text).toContain(`# TYPE ${type}`);
    }
    expect(await metric(server, 'clamp_serve_requests_total{path="/v1/embeddings",code="200"}')).toBe(1);
    expect(await metric(server, 'clamp_serve_images_total')).toBe(3);
    // One forward pass of 3 images: cumulative buckets 0 up to le=2, 1 from le=4 (maxBatch 16: 1 2 4 8 16 +Inf).
    expect(
      await Promise.all(['1', '2', '4', '8', '16', '+Inf'].map((le) => metric(server, `clamp_serve_batch_size_bucket{le="${le}"}`))),
    ).toEqual([0, 0, 1, 1, 1, 1]);
    expect([await metric(server, 'clamp_serve_batch_size_sum'), await metric(server, 'clamp_serve_batch_size_count')]).toEqual([3, 1]);
    expect(await metric(server, 'clamp_serve_request_duration_seconds_count')).toBe(1);
    expect(await metric(server, 'clamp_serve_request_duration_seconds_bucket{le="+Inf"}')).toBe(1);
    expect(await metric(server, 'clamp_serve_request_duration_seconds_sum')).toBeGreaterThan(0);

    await embedRaw(server, pngs[3]!);
    expect(await metric(server, 'clamp_serve_requests_total{path="/v1/embeddings",code="200"}')).toBe(2);
    expect(await metric(server, 'clamp_serve_images_total')).toBe(4);
    expect(await metric(server, 'clamp_serve_batch_size_bucket{le="1"}')).toBe(1);
    expect(await metric(server, 'clamp_serve_request_duration_seconds_count')).toBe(2);
    // The scrapes themselves are counted too.
    expect(await metric(server, 'clamp_serve_requests_total{path="/metrics",code="200"}')).toBeGreaterThan(5);
  });

  it('batches concurrent requests into one forward pass of up to maxBatch images', async () => {
    // A delay no request reaches: the pass starts because 4 images (maxBatch) are queued.
    const server = await serve({ maxBatch: 4, maxDelayMs: 60_000 });
    const replies = await Promise.all(pngs.slice(0, 4).map((png) => embedRaw(server, png)));
    for (const [k, reply] of replies.entries()) {
      // A batch of 4 rounds differently from a batch of 1 in the last bits, so this one is close, not exact.
      const alone = (await encoder.embed(pngs[k]!)).data;
      vectors(reply).forEach((value, i) => expect(Math.abs(value - alone[i]!)).toBeLessThan(1e-5));
    }
    expect(await metric(server, 'clamp_serve_batch_size_count')).toBe(1);
    expect(await metric(server, 'clamp_serve_batch_size_sum')).toBe(4);
    expect(await metric(server, 'clamp_serve_batch_size_bucket{le="2"}')).toBe(0);
    expect(await metric(server, 'clamp_serve_batch_size_bucket{le="4"}')).toBe(1);
  }, 15_000);

  it('refuses bad requests with a 4xx and a message, and keeps serving', async () => {
    const server = await serve({ maxBatch: 4 });
    const url = `${server.url}/v1/embeddings`;
    const refusals: [Promise<Reply>, number, RegExp][] = [
      [embedRaw(server, pngs[0]!.subarray(0, 60)), 400, /the image could not be (read|decoded).*corrupt/],
      [embedRaw(server, zeroByZeroPng()), 400, /the image (could not be read|is 0x0).*(invalid image width|at least 1x1)/],
      [embedRaw(server, Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), 400, /not a JPEG, PNG or WebP file/],
      [embedRaw(server, Buffer.alloc(0)), 400, /empty \(0 bytes\)/],
      [call(url, 'hello', { 'Content-Type': 'text/plain' }), 415, /got Content-Type text\/plain; send Content-Type: application\/json/],
      [call(url, pngs[0]!), 415, /got no Content-Type/],
      [call(url, '{"images": [', { 'Content-Type': 'application/json' }), 400, /not valid JSON/],
      [call(url, '{"image": "x"}', { 'Content-Type': 'application/json' }), 400, /unknown field\(s\) "image"/],
      [call(url, '{"images": []}', { 'Content-Type': 'application/json' }), 400, /holds no images/],
      [call(url, '{"images": ["not base64!"]}', { 'Content-Type': 'application/json' }), 400, /images\[0\] is not base64/],
      [call(url, '{"images": [7]}', { 'Content-Type': 'application/json' }), 400, /images\[0\] is number/],
      [embedJson(server, [pngs[0]!, pngs[0]!.subarray(0, 60)]), 400, /images\[1\] could not be/],
      [embedJson(server, pngs.slice(0, 5)), 413, /holds 5 images; at most 4 \(--max-batch\)/],
      [call(url, undefined, {}, 'GET'), 405, /takes POST, not GET/],
      [call(`${server.url}/v2/things`, undefined, {}, 'GET'), 404, /no such endpoint \/v2\/things/],
    ];
    for (const [pending, status, message] of refusals) {
      const reply = await pending;
      expect(reply.status, reply.body.toString()).toBe(status);
      expect(errorOf(reply)).toMatch(message);
    }
    // Still serving, and the refusals are counted by status.
    expect(vectors(await embedRaw(server, pngs[0]!))).toHaveLength(encoder.dim);
    expect(await metric(server, 'clamp_serve_requests_total{path="/v1/embeddings",code="400"}')).toBe(10);
    expect(await metric(server, 'clamp_serve_requests_total{path="other",code="404"}')).toBe(1);
  });

  it('answers 413 for a body over the limit, declared, chunked or behind Expect: 100-continue', async () => {
    const server = await serve({ maxBodyBytes: 4000 });
    const url = `${server.url}/v1/embeddings`;
    const limit = /the request body is .*over this server's limit of 4000 bytes \(--max-body-mb\)/;

    // Declared too large: refused on the headers, before the client sends a byte of the body.
    const declared = open(url, { headers: { 'Content-Type': 'image/png', 'Content-Length': '1000000' } });
    declared.request.flushHeaders();
    const early = await declared.reply;
    expect([early.status, early.headers.connection]).toEqual([413, 'close']);
    expect(errorOf(early)).toMatch(limit);
    declared.request.destroy();

    // Chunked (no length declared): refused once more than the limit has arrived.
    const chunked = await call(url, Buffer.alloc(50_000, 1), { 'Content-Type': 'image/png', 'Transfer-Encoding': 'chunked' });
    expect(chunked.status).toBe(413);
    expect(errorOf(chunked)).toMatch(limit);

    // Expect: 100-continue: the refusal comes instead of 100 Continue, and the body is never sent.
    const expecting = open(url, { headers: { 'Content-Type': 'image/png', 'Content-Length': '1000000', Expect: '100-continue' } });
    let continued = false;
    expecting.request.on('continue', () => (continued = true));
    expecting.request.flushHeaders();
    expect((await expecting.reply).status).toBe(413);
    expect(continued).toBe(false);
    expecting.request.destroy();

    // Under the limit, Expect: 100-continue goes through.
    const small = open(url, {
      headers: { 'Content-Type': 'image/png', 'Content-Length': String(pngs[0]!.length), Expect: '100-continue' },
    });
    small.request.on('continue', () => small.request.end(pngs[0]!));
    small.request.flushHeaders();
    expect(vectors(await small.reply)).toHaveLength(encoder.dim);
    expect(vectors(await embedRaw(server, pngs[1]!))).toHaveLength(encoder.dim);

    // A small file may declare a huge image: the header is read, and the image refused before it is decoded.
    const strict = await serve({ maxImagePixels: 100 });
    const huge = await embedRaw(strict, pngs[0]!);
    expect(huge.status).toBe(413);
    expect(errorOf(huge)).toMatch(/the image is 28x28 = 784 pixels, over this server's limit of 100; resize it before sending/);
  });

  it('answers 503 with the reason when --max-queue requests are already in, and serves again once they finish', async () => {
    const server = await serve({ maxQueue: 2 });
    const first = await halfSent(server, pngs[0]!);
    const second = await halfSent(server, pngs[1]!);
    await until(() => server.inFlight === 2);
    const refused = await embedRaw(server, pngs[2]!);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(errorOf(refused)).toMatch(
      /the queue is full: 2 requests are already being embedded or waiting \(--max-queue 2\); retry after a moment/,
    );
    // Health and metrics are not embedding requests: they still answer.
    expect(json(await call(`${server.url}/healthz`, undefined, {}, 'GET'))).toMatchObject({ status: 'ok', inFlight: 2 });
    expect(await metric(server, 'clamp_serve_requests_in_flight')).toBe(2);

    first.finish();
    second.finish();
    expect((await first.reply).status).toBe(200);
    expect((await second.reply).status).toBe(200);
    expect(vectors(await embedRaw(server, pngs[2]!))).toHaveLength(encoder.dim);
    expect(await metric(server, 'clamp_serve_requests_total{path="/v1/embeddings",code="503"}')).toBe(1);
  });

  it('close() stops accepting, finishes the requests in flight (mid-upload and mid-batch), then resolves', async () => {
    const server = await serve({ maxBatch: 4, maxDelayMs: 60_000 });
    // One request waiting in the batcher for others to join (they never will), one still uploading.
    const waiting = embedRaw(server, pngs[0]!);
    await until(async () => (await metric(server, 'clamp_serve_queued_images')) === 1);
    const uploading = await halfSent(server, pngs[1]!);
    await until(() => server.inFlight === 2);

    let closed = false;
    const closing = server.close().then(() => (closed = true));
    // No new connections once closing.
    await expect(call(`${server.url}/healthz`, undefined, {}, 'GET')).rejects.toThrow(/ECONNREFUSED/);
    // The waiting request is sent at once rather than after its delay, and answered.
    const early = await waiting;
    expect(vectors(early)).toHaveLength(encoder.dim);
    expect(early.headers.connection).toBe('close');
    expect(closed).toBe(false);

    uploading.finish();
    const late = await uploading.reply;
    expect(Array.from(vectors(late))).toEqual(Array.from((await encoder.embed(pngs[1]!)).data));
    await closing;
    expect(closed).toBe(true);
    servers.splice(servers.indexOf(server), 1);
  }, 15_000);

  it('answers 500 without the details when the encoder fails (the operator is told them), and 503 once it is disposed', async () => {
    const told: unknown[] = [];
    const failing = {
      dim: encoder.dim,
      channels: encoder.channels,
      decodeSize: encoder.decodeSize,
      maxBatch: 4,
      embed: () => Promise.reject(new Error('native failure at /secret/path')),
    };
    const broken = await startEmbeddingServer({ encoder: failing, onInternalError: (error) => told.push(error) });
    servers.push(broken);
    const reply = await embedRaw(broken, pngs[0]!);
    expect(reply.status).toBe(500);
    expect(errorOf(reply)).toMatch(/internal error while embedding; the server log has the details/);
    expect(errorOf(reply)).not.toMatch(/secret/);
    expect(told.map((error) => (error as Error).message)).toEqual(['native failure at /secret/path']);

    const own = await Encoder.load(checkpoint);
    const server = await serve({ encoder: own });
    own.dispose();
    const refused = await embedRaw(server, pngs[0]!);
    expect(refused.status).toBe(503);
    expect(errorOf(refused)).toMatch(/the encoder is unavailable: this Encoder was disposed/);
  });

  it('refuses bad options and bad flags, naming them', async () => {
    await expect(startEmbeddingServer({ encoder, maxQueue: 0 })).rejects.toThrow(/options.maxQueue/);
    await expect(startEmbeddingServer({ encoder, colour: 'red' } as never)).rejects.toThrow(/colour/);
    const taken = await serve();
    await expect(startEmbeddingServer({ encoder, port: taken.port })).rejects.toThrow(
      new RegExp(`port ${taken.port} on 127.0.0.1 is in use; choose another --port`),
    );
    await expect(runServe([])).rejects.toThrow(/serve needs --checkpoint/);
    await expect(runServe(['--checkpoint', checkpoint, '--max-batch', '0'])).rejects.toThrow(
      /--max-batch must be a whole number >= 1, got '0'/,
    );
    await expect(runServe(['--checkpoint', checkpoint, '--port', '70000'])).rejects.toThrow(/--port must be 0 to 65535/);
    await expect(runServe(['--checkpoint', checkpoint, '--max-delay-ms', 'soon'])).rejects.toThrow(/--max-delay-ms must be a number >= 0/);
    await expect(runServe(['--checkpoint', checkpoint, '--max-body-mb', '0'])).rejects.toThrow(/--max-body-mb must be a number > 0/);
  });

  it('clamp-native serve: SIGTERM finishes the request in flight, disposes the encoder and exits 0', async () => {
    const command = new URL('../dist/cli/serve-command.js', import.meta.url).href;
    const script = `const { runServe } = await import(${JSON.stringify(command)}); process.exitCode = await runServe(process.argv.slice(1));`;
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, '--', '--checkpoint', dir, '--port', '0', '--max-delay-ms', '0'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await until(() => /listening on http:\/\/127\.0\.0\.1:\d+\n/.test(stderr) || child.exitCode !== null);
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
      expect(url, stderr).toBeDefined();
      const server = { url: url! } as EmbeddingServer;
      expect(vectors(await embedRaw(server, pngs[0]!))).toHaveLength(encoder.dim);

      const uploading = await halfSent(server, pngs[1]!);
      await until(async () => json(await call(`${url}/healthz`, undefined, {}, 'GET')).inFlight === 1);
      child.kill('SIGTERM');
      await until(() => stderr.includes('SIGTERM: no longer accepting; finishing 1 admitted request(s)'));
      uploading.finish();
      expect(Array.from(vectors(await uploading.reply))).toEqual(Array.from((await encoder.embed(pngs[1]!)).data));
      expect(await exited, stderr).toBe(0);
      expect(stderr).toMatch(/every admitted request answered; stopped/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
