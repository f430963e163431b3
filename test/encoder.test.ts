// The serving Encoder: the vectors evaluation computes, the same vector through every input form,
// dynamic batching that never mixes callers up, the event loop free while it works, dispose, worker
// threads, the exact index, and errors that name the problem for bad inputs and bad checkpoints.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../lib/checkpoint/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../lib/checkpoint/safetensors.js';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { firstImages, loadDataset } from '../lib/data/datasets.js';
import type { ImageDataset } from '../lib/data/image-dataset.js';
import { EmbeddingIndex } from '../lib/encode/embedding-index.js';
import { defaultEncoderThreads, Encoder } from '../lib/encode/encoder.js';
import { decodeNpy, encodeNpy } from '../lib/encode/npy.js';
import { datasetFeatures } from '../lib/eval/features.js';
import { trainerFor } from '../lib/train/from-config.js';
import { train } from '../lib/train/training-run.js';

let dir: string;
let checkpoint: string;
let test: ImageDataset;
const SIDE = 28;

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** Test image i as raw [H, W, 1] bytes (one channel: planar and interleaved are the same). */
const imageBytes = (i: number) => test.images.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE);
const png = (bytes: Uint8Array, side = SIDE) =>
  sharp(Buffer.from(bytes), { raw: { width: side, height: side, channels: 1 } })
    .png()
    .toBuffer();

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-encoder-'));
  // One short epoch: BatchNorm's running statistics move away from their initial values.
  const config = resolveTrainConfig({
    overrides: {
      data: { limit: 256 },
      schedule: { epochs: 1, warmupEpochs: 0 },
      run: { batchSize: 64, views: 2, workers: 1 },
      eval: { atEnd: false },
    },
  });
  checkpoint = (await train(config, { runDir: dir })).checkpoint;
  test = firstImages((await loadDataset(config.data, 'test'))!, 300);
}, 120_000);

describe('Encoder', () => {
  it('gives the vectors evaluation computes for the same images', async () => {
    const saved = await readCheckpoint(checkpoint);
    const config = resolveTrainConfig({ overrides: saved.config });
    const trainer = await trainerFor(config, 1, 1);
    await trainer.loadState(saved.state);
    const subset = firstImages(test, 50);
    const expected = await datasetFeatures(trainer, subset, config.augment[0]!, { workers: 1 });

    const encoder = await Encoder.load(dir);
    const out = await encoder.embed({ data: subset.images, shape: [50, SIDE, SIDE, 1] });
    expect(out.shape).toEqual([50, encoder.dim]);
    expect(encoder.dim).toBe(expected.dim);
    expect(maxDifference(out.data, expected.features)).toBeLessThan(1e-4);
    encoder.dispose();
  });

  it('precision bf16 (the default on Ampere and newer GPUs) gives float32 vectors close to float32 serving', async () => {
    const images = { data: test.images.subarray(0, 20 * SIDE * SIDE), shape: [20, SIDE, SIDE, 1] };
    const fp32 = await Encoder.load(checkpoint); // auto on the CPU: float32
    const bf16 = await Encoder.load(checkpoint, { precision: 'bf16' });
    const a = await fp32.embed(images),
      b = await bf16.embed(images);
    expect(b.data).toBeInstanceOf(Float32Array);
    expect(maxDifference(a.data, b.data)).toBeGreaterThan(0); // bfloat16 really ran
    const dim = fp32.dim;
    for (let i = 0; i < 20; i++) {
      const x = a.data.subarray(i * dim, (i + 1) * dim),
        y = b.data.subarray(i * dim, (i + 1) * dim);
      let dot = 0,
        xx = 0,
        yy = 0;
      for (let k = 0; k < dim; k++) {
        dot += x[k]! * y[k]!;
        xx += x[k]! ** 2;
        yy += y[k]! ** 2;
      }
      expect(dot / Math.sqrt(xx * yy)).toBeGreaterThan(0.999);
    }
    fp32.dispose();
    bf16.dispose();
    await expect(Encoder.load(checkpoint, { precision: 'fp16' as 'bf16' })).rejects.toThrow(/options.precision/);
  });

  it('gives one vector for one image through every input form', async () => {
    const encoder = await Encoder.load(checkpoint);
    const bytes = imageBytes(7);
    const reference = (await encoder.embed({ data: bytes, shape: [SIDE, SIDE, 1] })).data;
    const file = path.join(dir, 'seven.png');
    await fs.writeFile(file, await png(bytes));
    // Twice the side by pixel repetition: resizing back (bilinear, half-pixel centres) recovers the image.
    const doubled = new Uint8Array(4 * SIDE * SIDE).map(
      (_, k) => bytes[Math.floor(Math.floor(k / (2 * SIDE)) / 2) * SIDE + Math.floor((k % (2 * SIDE)) / 2)]!,
    );
    const forms = [
      await encoder.embed({ data: Float32Array.from(bytes, (x) => x / 255), shape: [1, 1, SIDE, SIDE] }),
      await encoder.embed(await png(bytes)),
      await encoder.embed([await png(bytes)]),
      await encoder.embed(file),
      await encoder.embed([file]),
      await encoder.embed({ data: doubled, shape: [2 * SIDE, 2 * SIDE, 1] }),
    ];
    for (const form of forms) {
      expect(form.shape).toEqual([1, encoder.dim]);
      expect(maxDifference(form.data, reference)).toBeLessThan(1e-5);
    }
    // A different image gives a different vector (the comparison above can fail).
    expect(maxDifference((await encoder.embed({ data: imageBytes(8), shape: [SIDE, SIDE, 1] })).data, reference)).toBeGreaterThan(1e-3);
    encoder.dispose();
  });

  it('coalesces 200 concurrent calls into batches of at most maxBatch and returns each caller its own rows', async () => {
    const encoder = await Encoder.load(checkpoint, { maxBatch: 32 });
    const all = await encoder.embed({ data: test.images.subarray(0, 200 * SIDE * SIDE), shape: [200, SIDE, SIDE, 1] });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => encoder.embed({ data: imageBytes(i), shape: [SIDE, SIDE, 1] })),
    );
    results.forEach((result, i) => {
      expect(result.shape).toEqual([1, encoder.dim]);
      expect(maxDifference(result.data, all.data.subarray(i * encoder.dim, (i + 1) * encoder.dim))).toBeLessThan(1e-5);
    });
    // Callers of one batch share its result buffer (no copies); no batch exceeds maxBatch.
    const perBuffer = new Map<ArrayBufferLike, number>();
    for (const result of results) perBuffer.set(result.data.buffer, (perBuffer.get(result.data.buffer) ?? 0) + 1);
    expect(perBuffer.size).toBeLessThan(200);
    expect(Math.max(...perBuffer.values())).toBeLessThanOrEqual(32);
    expect(Math.max(...perBuffer.values())).toBeGreaterThan(1);
    // Calls of different sizes are not mixed into one batch, and still come back right.
    const [small, large] = await Promise.all([
      encoder.embed({ data: imageBytes(3), shape: [SIDE, SIDE, 1] }),
      encoder.embed({ data: new Uint8Array(4 * SIDE * SIDE).fill(9), shape: [2 * SIDE, 2 * SIDE, 1] }),
    ]);
    expect(maxDifference(small.data, all.data.subarray(3 * encoder.dim, 4 * encoder.dim))).toBeLessThan(1e-5);
    expect(large.shape).toEqual([1, encoder.dim]);
    encoder.dispose();
  });

  it('keeps the event loop running while a large batch is embedded', async () => {
    const encoder = await Encoder.load(checkpoint);
    const images = new Uint8Array(2000 * SIDE * SIDE).map((_, k) => (k * 31) % 256);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const pending = encoder.embed({ data: images, shape: [2000, SIDE, SIDE, 1] });
    let done = false;
    void pending.then(() => (done = true));
    const out = await pending;
    clearInterval(timer);
    expect(done).toBe(true);
    expect(out.shape).toEqual([2000, encoder.dim]);
    // Had the embedding run on this thread, the timer could not have fired before it finished.
    expect(ticks).toBeGreaterThan(2);
    encoder.dispose();
  });

  it('dispose() rejects queued calls and refuses later ones; it may be called twice', async () => {
    const encoder = await Encoder.load(checkpoint);
    const first = encoder.embed({ data: new Uint8Array(500 * SIDE * SIDE), shape: [500, SIDE, SIDE, 1] });
    await new Promise((resolve) => setTimeout(resolve, 0));
    const queued = encoder.embed({ data: imageBytes(0), shape: [SIDE, SIDE, 1] });
    await new Promise((resolve) => setTimeout(resolve, 0));
    encoder.dispose();
    const queuedRefused = expect(queued).rejects.toThrow(/disposed before this embed\(\) ran/);
    encoder.dispose();
    // The batch already running completes; the one still waiting is rejected.
    expect((await first).shape).toEqual([500, encoder.dim]);
    await queuedRefused;
    await expect(encoder.embed({ data: imageBytes(0), shape: [SIDE, SIDE, 1] })).rejects.toThrow(
      /this Encoder was disposed; load another with Encoder.load\(\)/,
    );
    expect(encoder.isDisposed).toBe(true);
  });

  /** A worker running `body` (an ES module's text) with the library and the checkpoint as workerData. */
  const workerRunning = (body: string, data: Record<string, unknown> = {}) =>
    new Worker(
      new URL(`data:text/javascript,${encodeURIComponent(`import { parentPort, workerData } from 'node:worker_threads';\n${body}`)}`),
      {
        workerData: { library: new URL('../dist/index.js', import.meta.url).href, checkpoint, ...data },
      },
    );

  it('works inside a worker thread', async () => {
    const encoder = await Encoder.load(checkpoint);
    const expected = (await encoder.embed({ data: imageBytes(5), shape: [SIDE, SIDE, 1] })).data;
    encoder.dispose();
    const worker = workerRunning(
      `const { Encoder } = await import(workerData.library);
       const encoder = await Encoder.load(workerData.checkpoint);
       const out = await encoder.embed({ data: workerData.image, shape: [28, 28, 1] });
       parentPort.postMessage(Array.from(out.data));
       encoder.dispose();`,
      { image: imageBytes(5).slice() },
    );
    const fromWorker = await new Promise<number[]>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(maxDifference(fromWorker, expected)).toBeLessThan(1e-6);
  });

  it('survives a worker terminated while its embeddings run: the process and other encoders carry on', async () => {
    // The native job reads the worker's memory in place; terminating the worker must wait for it, not
    // crash the process (it did: a freed typed array, then a destroyed thread-safe function).
    for (let round = 0; round < 3; round++) {
      const worker = workerRunning(
        `const { Encoder } = await import(workerData.library);
         const encoder = await Encoder.load(workerData.checkpoint);
         const images = new Uint8Array(1000 * 28 * 28).fill(7);
         parentPort.postMessage('embedding');
         for (;;) await encoder.embed({ data: images, shape: [1000, 28, 28, 1] });`,
      );
      await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      await new Promise((resolve) => setTimeout(resolve, 50 * round));
      expect(await worker.terminate()).toBe(1);
    }
    const encoder = await Encoder.load(checkpoint);
    expect((await encoder.embed({ data: imageBytes(0), shape: [SIDE, SIDE, 1] })).shape).toEqual([1, encoder.dim]);
    encoder.dispose();
  });

  it('indexes embeddings: each image finds itself first, as a brute-force search ranks them', async () => {
    const encoder = await Encoder.load(checkpoint);
    const labels = Array.from(test.labels.subarray(0, 100));
    const embeddings = await encoder.embed({ data: test.images.subarray(0, 100 * SIDE * SIDE), shape: [100, SIDE, SIDE, 1] });
    const index = encoder.index(embeddings, labels);
    const queries = embeddings.data.subarray(10 * encoder.dim, 13 * encoder.dim);
    const found = await index.query(queries, 5);
    expect(found).toHaveLength(3);
    const dim = encoder.dim;
    const cosine = (a: number, b: number) => {
      let dot = 0,
        na = 0,
        nb = 0;
      for (let c = 0; c < dim; c++) {
        const x = embeddings.data[a * dim + c]!,
          y = embeddings.data[b * dim + c]!;
        ((dot += x * y), (na += x * x), (nb += y * y));
      }
      return dot / Math.sqrt(na * nb);
    };
    found.forEach((neighbours, q) => {
      expect(neighbours[0]).toMatchObject({ index: 10 + q, label: labels[10 + q] });
      expect(neighbours[0]!.similarity).toBeCloseTo(1, 5);
      const ranked = Array.from({ length: 100 }, (_, j) => j)
        .sort((a, b) => cosine(10 + q, b) - cosine(10 + q, a))
        .slice(0, 5);
      expect(neighbours.map((n) => n.index)).toEqual(ranked);
      neighbours.forEach((n) => expect(n.similarity).toBeCloseTo(cosine(10 + q, n.index), 5));
    });
    await expect(index.query(new Float32Array(3), 1)).rejects.toThrow(/whole number of rows of dim/);
    expect(() => new EmbeddingIndex({ data: new Float32Array(6), shape: [2, 3] }, [1])).toThrow(/2 embeddings but 1 labels/);
    expect(() => encoder.index({ data: new Float32Array(6), shape: [2, 3] })).toThrow(/dim 3; this encoder's are/);
    encoder.dispose();
  });

  it('refuses bad inputs with errors that name the problem', async () => {
    const encoder = await Encoder.load(checkpoint);
    await expect(encoder.embed({ data: new Uint8Array(10), shape: [SIDE, SIDE, 1] })).rejects.toThrow(/needs 784 values; data holds 10/);
    await expect(encoder.embed({ data: new Uint8Array(3 * SIDE * SIDE), shape: [SIDE, SIDE, 3] })).rejects.toThrow(
      /3 channel\(s\).*this encoder takes 1/,
    );
    await expect(encoder.embed({ data: new Int16Array(SIDE * SIDE) as unknown as Uint8Array, shape: [SIDE, SIDE, 1] })).rejects.toThrow(
      /Uint8Array .* or a Float32Array/,
    );
    await expect(encoder.embed({ data: new Uint8Array(SIDE * SIDE), shape: [SIDE, SIDE] })).rejects.toThrow(/shape must be/);
    await expect(encoder.embed([] as string[])).rejects.toThrow(/empty array/);
    await expect(encoder.embed(42 as unknown as string)).rejects.toThrow(/embed\(\) takes/);
    const corrupt = (await png(imageBytes(0))).subarray(0, 40);
    await expect(encoder.embed(corrupt)).rejects.toThrow(/encoded image 0 could not be decoded.*corrupt/);
    // The encoder still works after refusing.
    expect((await encoder.embed({ data: imageBytes(0), shape: [SIDE, SIDE, 1] })).shape).toEqual([1, encoder.dim]);
    encoder.dispose();
    await expect(Encoder.load(checkpoint, { maxBatch: 0 })).rejects.toThrow(/maxBatch/);
    await expect(Encoder.load(checkpoint, { device: 'tpu' })).rejects.toThrow(/device must be cpu, cuda or cuda:<index>/);
  });

  it('says a file does not exist, or an input is empty or a folder, rather than calling it corrupt', async () => {
    const encoder = await Encoder.load(checkpoint);
    // Not "corrupt or not an image", nor sharp's bare "Input Buffer is empty".
    const missing = path.join(dir, 'missing.png');
    await expect(encoder.embed(missing)).rejects.toThrow(`${missing} does not exist; check the path`);
    await expect(encoder.embed(Buffer.alloc(0))).rejects.toThrow('encoded image 0 is empty (0 bytes)');
    await expect(encoder.embed([await png(imageBytes(0)), Buffer.alloc(0)])).rejects.toThrow('encoded image 1 is empty (0 bytes)');
    await expect(encoder.embed(dir)).rejects.toThrow(`${dir} is a folder, not an image file`);
    encoder.dispose();
  });

  it('refuses NaN or infinite float pixels, naming the image and the value', async () => {
    const encoder = await Encoder.load(checkpoint);
    // They would come back as NaN embeddings, which look like any other vector to an index.
    const floats = new Float32Array(3 * SIDE * SIDE).fill(0.5);
    floats[SIDE * SIDE + 2 * SIDE + 5] = Number.NaN;
    await expect(encoder.embed({ data: floats, shape: [3, 1, SIDE, SIDE] })).rejects.toThrow(
      /^image 1 of the input holds NaN \(first at channel 0, row 2, column 5\); float pixels must be finite/,
    );
    floats[SIDE * SIDE + 2 * SIDE + 5] = 0.5;
    floats[3 * SIDE * SIDE - 1] = Number.POSITIVE_INFINITY;
    await expect(encoder.embed({ data: floats, shape: [3, 1, SIDE, SIDE] })).rejects.toThrow(
      /^image 2 of the input holds Infinity \(first at channel 0, row 27, column 27\)/,
    );
    floats[3 * SIDE * SIDE - 1] = Number.NEGATIVE_INFINITY;
    await expect(encoder.embed({ data: floats.subarray(2 * SIDE * SIDE), shape: [1, SIDE, SIDE] })).rejects.toThrow(
      /^image 0 of the input holds -Infinity/,
    );
    // The encoder still works after refusing.
    expect((await encoder.embed({ data: floats.fill(0.5), shape: [3, 1, SIDE, SIDE] })).shape).toEqual([3, encoder.dim]);
    encoder.dispose();
  });

  it('takes the measured default of intra-op threads unless a count was chosen', () => {
    // In a fresh process each: the thread count is process-wide, and this one's was set by train().
    const threadsAfterLoad = (options: string, env: Record<string, string> = {}) => {
      const script = `import { Encoder, getNumThreads } from ${JSON.stringify(path.resolve('dist/index.js'))};
        const encoder = await Encoder.load(${JSON.stringify(checkpoint)}, ${options});
        console.log(getNumThreads());
        encoder.dispose();`;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, CLAMP_NUM_THREADS: '', ...env },
      });
      expect(child.status, child.stderr).toBe(0);
      return Number(child.stdout.trim());
    };
    expect(threadsAfterLoad('{}')).toBe(1); // the small backbone: 1 thread, whatever the cores
    expect(threadsAfterLoad('{ threads: 2 }')).toBe(2);
    expect(threadsAfterLoad('{}', { CLAMP_NUM_THREADS: '2' })).toBe(2);
    expect(defaultEncoderThreads('small', 64)).toBe(1);
    expect([1, 2, 3, 16].map((cores) => defaultEncoderThreads('resnet18', cores))).toEqual([1, 1, 1, 8]);
  });

  it('refuses a checkpoint of another architecture and a truncated one', async () => {
    const { tensors, metadata } = await readSafetensors(checkpoint);
    const config = JSON.parse(metadata.config!) as { model: Record<string, unknown> };
    const foreign = path.join(dir, 'foreign.safetensors');
    await writeSafetensors(foreign, tensors, {
      ...metadata,
      config: JSON.stringify({ ...config, model: { ...config.model, backbone: 'resnet18', widths: undefined, blocks: undefined } }),
    });
    await expect(Encoder.load(foreign)).rejects.toThrow(/do not match the resnet18 backbone its config describes.*(missing|has shape)/);
    const bytes = await fs.readFile(checkpoint);
    const truncated = path.join(dir, 'truncated.safetensors');
    await fs.writeFile(truncated, bytes.subarray(0, bytes.length - 1000));
    await expect(Encoder.load(truncated)).rejects.toThrow(/truncated|shorter|corrupt/i);
    await expect(Encoder.load(path.join(dir, 'nothing-here'))).rejects.toThrow(/nothing-here/);
  });

  it('`clamp-native embed` writes .npy (with the path list) and JSON lines equal to embed()', async () => {
    const folder = path.join(dir, 'images');
    await fs.mkdir(path.join(folder, 'b'), { recursive: true });
    const files = [path.join(folder, 'a.png'), path.join(folder, 'b', 'c.png')];
    await fs.writeFile(files[0]!, await png(imageBytes(1)));
    await fs.writeFile(files[1]!, await png(imageBytes(2)));
    await fs.writeFile(path.join(folder, 'notes.txt'), 'not an image');
    const encoder = await Encoder.load(checkpoint);
    const expected = await encoder.embed(files);
    encoder.dispose();

    const cli = path.resolve('dist/cli/main.js');
    const out = path.join(dir, 'emb.npy');
    const npy = spawnSync(process.execPath, [cli, 'embed', '--checkpoint', dir, folder, '--out', out], { encoding: 'utf8' });
    expect(npy.status, npy.stderr).toBe(0);
    const written = decodeNpy(await fs.readFile(out));
    expect(written.shape).toEqual([2, expected.shape[1]]);
    expect(maxDifference(written.data, expected.data)).toBeLessThan(1e-6);
    expect((await fs.readFile(path.join(dir, 'emb.paths.txt'), 'utf8')).trim().split('\n')).toEqual(files);

    const jsonl = spawnSync(process.execPath, [cli, 'embed', '--checkpoint', checkpoint, files[1]!], { encoding: 'utf8' });
    expect(jsonl.status, jsonl.stderr).toBe(0);
    const line = JSON.parse(jsonl.stdout.trim()) as { file: string; embedding: number[] };
    expect(line.file).toBe(files[1]);
    expect(maxDifference(line.embedding, expected.data.subarray(expected.shape[1]))).toBeLessThan(1e-6);

    const bad = spawnSync(process.execPath, [cli, 'embed', '--checkpoint', checkpoint, folder, '--out', path.join(dir, 'emb.csv')], {
      encoding: 'utf8',
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--out must end in .npy or .jsonl/);
  });

  it(".npy files follow NumPy's layout and are refused when truncated", () => {
    const parts = encodeNpy(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const bytes = Buffer.concat(parts);
    // NumPy's own bytes for np.save(f, np.arange(1, 7, dtype='<f4').reshape(2, 3)): a 64-byte-aligned header.
    expect(bytes.subarray(0, 10)).toEqual(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 118, 0]));
    expect(bytes.subarray(10, 128).toString('latin1')).toBe(
      `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }${' '.repeat(58)}\n`,
    );
    expect(decodeNpy(bytes)).toEqual({ data: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [2, 3] });
    expect(() => decodeNpy(bytes.subarray(0, bytes.length - 4), 'x.npy')).toThrow(/x.npy: shape \(2, 3\) needs 24 bytes.*truncated/);
    expect(() => decodeNpy(Buffer.from('not numpy at all'))).toThrow(/not a .npy file/);
  });
});
