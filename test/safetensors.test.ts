// The safetensors writer and reader: round trips, the layout the format prescribes (checked by an
// independent parse), atomic writes, errors for truncated or corrupt files, files past 2 GiB, and the
// checkpoint reader's refusal of weights a diverged run wrote.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CHECKPOINT_FORMAT, readCheckpoint, readCheckpointMetadata } from '../lib/checkpoint/checkpoint.js';
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  type NamedTensorData,
} from '../lib/checkpoint/safetensors.js';

const tensors: NamedTensorData[] = [
  { name: 'b.weight', dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
  { name: 'a.count', dtype: 'int64', shape: [], data: new BigInt64Array([42n]) },
  { name: 'c.bias', dtype: 'float32', shape: [3], data: Float32Array.from([-1, 0.5, 7]) },
  { name: 'd.labels', dtype: 'uint8', shape: [5], data: Uint8Array.from([1, 2, 3, 4, 5]) },
  { name: 'e.double', dtype: 'float64', shape: [1], data: Float64Array.from([Math.PI]) },
];

const folders: string[] = [];
afterAll(async () => {
  for (const folder of folders) await fs.rm(folder, { recursive: true, force: true });
});

async function temporaryFolder(): Promise<string> {
  const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-safetensors-'));
  folders.push(folder);
  return folder;
}

async function caught(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof Error)) throw new Error('expected the promise to reject with an Error');
  return error;
}

/** A safetensors file of `size` bytes that holds only its first bytes: the rest is a hole, costing no disk. */
async function sparseFile(file: string, head: Uint8Array, size: number): Promise<void> {
  await fs.writeFile(file, head);
  await fs.truncate(file, size);
}

/** The 8-byte length and padded JSON of a header, as a writer other than ours might lay it out. */
function headerBytes(header: unknown): Buffer {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([length, Buffer.from(json)]);
}

describe('safetensors', () => {
  it('round-trips names, dtypes, shapes, values and metadata', async () => {
    const file = path.join(await temporaryFolder(), 'x.safetensors');
    await writeSafetensors(file, tensors, { format: 'test', note: 'héllo' });
    const { tensors: back, metadata } = await readSafetensors(file);
    expect(metadata).toEqual({ format: 'test', note: 'héllo' });
    for (const t of tensors) expect(back.find((b) => b.name === t.name)).toEqual(t);
  });

  it('lays the file out as the format says: u64 header length, JSON padded to 8, contiguous aligned data', () => {
    const bytes = Buffer.concat(encodeSafetensors(tensors, { k: 'v' }));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect((8 + headerLength) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString()) as Record<
      string,
      { dtype: string; shape: number[]; data_offsets: [number, number] }
    >;
    expect(header.__metadata__).toEqual({ k: 'v' });
    expect(header['a.count']).toEqual({ dtype: 'I64', shape: [], data_offsets: [0, 8] });
    const entries = Object.entries(header)
      .filter(([name]) => name !== '__metadata__')
      .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
    let end = 0;
    for (const [, entry] of entries) {
      expect(entry.data_offsets[0]).toBe(end); // no holes
      end = entry.data_offsets[1];
    }
    expect(end).toBe(bytes.length - 8 - headerLength);
    // Widest first: every tensor starts at a multiple of its element size.
    expect(entries.map(([, e]) => e.dtype)).toEqual(['I64', 'F64', 'F32', 'F32', 'U8']); // equal widths by name;
    const weight = header['b.weight']!;
    expect(
      new Float32Array(
        bytes.buffer.slice(
          bytes.byteOffset + 8 + headerLength + weight.data_offsets[0],
          bytes.byteOffset + 8 + headerLength + weight.data_offsets[1],
        ),
      ),
    ).toEqual(tensors[0]!.data);
  });

  it('refuses truncated and corrupt files with errors that say so', () => {
    const bytes = Buffer.concat(encodeSafetensors(tensors));
    expect(() => decodeSafetensors(bytes.subarray(0, 5), 'f')).toThrow(/f is not a valid safetensors file: it is 5 bytes long/);
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4), 'f')).toThrow(/ends at byte .* data section|cover/);
    const badJson = Buffer.from(bytes);
    badJson[9] = 0x7b; // '{{' is not JSON
    expect(() => decodeSafetensors(badJson, 'f')).toThrow(/header is not JSON/);
    const hugeHeader = Buffer.from(bytes);
    hugeHeader.writeBigUInt64LE(10n ** 12n, 0);
    expect(() => decodeSafetensors(hugeHeader, 'f')).toThrow(/header claims/);
    const extra = Buffer.concat([bytes, Buffer.alloc(4)]);
    expect(() => decodeSafetensors(extra, 'f')).toThrow(/cover .* of .* data bytes/);
  });

  it('refuses inconsistent tensors on write', () => {
    expect(() => encodeSafetensors([{ name: 'x', dtype: 'float32', shape: [4], data: new Float32Array(3) }])).toThrow(
      /holds 4 values, its data 3/,
    );
    expect(() => encodeSafetensors([{ name: 'x', dtype: 'int64', shape: [1], data: new Float32Array(1) as never }])).toThrow(
      /needs a BigInt64Array/,
    );
    expect(() => encodeSafetensors([tensors[2]!, tensors[2]!])).toThrow(/appears twice/);
  });

  it('writes atomically: a failed write leaves the previous file and no temporary behind', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, 'x.safetensors');
    await writeSafetensors(file, tensors);
    const before = await fs.readFile(file);
    await expect(writeSafetensors(file, [{ name: 'x', dtype: 'float32', shape: [2], data: new Float32Array(1) }])).rejects.toThrow(
      CheckpointError,
    );
    expect(await fs.readFile(file)).toEqual(before);
    expect(await fs.readdir(folder)).toEqual(['x.safetensors']);
    await expect(readSafetensors(path.join(folder, 'missing.safetensors'))).rejects.toThrow(/does not exist/);
  });

  it('refuses overlapping tensors, holes, and a __metadata__ that is not an object', () => {
    const data = Buffer.alloc(16);
    const overlapping = Buffer.concat([
      headerBytes({
        a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] },
        b: { dtype: 'U8', shape: [8], data_offsets: [0, 8] },
        c: { dtype: 'U8', shape: [8], data_offsets: [8, 16] },
      }),
      data,
    ]);
    expect(() => decodeSafetensors(overlapping, 'f')).toThrow(/tensor b overlaps the tensor before it/);
    const hole = Buffer.concat([headerBytes({ a: { dtype: 'U8', shape: [8], data_offsets: [8, 16] } }), data]);
    expect(() => decodeSafetensors(hole, 'f')).toThrow(/hole at bytes 0..8/);
    const stringMetadata = Buffer.concat([
      headerBytes({ __metadata__: 'abc', a: { dtype: 'U8', shape: [16], data_offsets: [0, 16] } }),
      data,
    ]);
    expect(() => decodeSafetensors(stringMetadata, 'f')).toThrow(/__metadata__ is not a JSON object/);
    const inheritedDtype = Buffer.concat([headerBytes({ a: { dtype: 'constructor', shape: [16], data_offsets: [0, 16] } }), data]);
    expect(() => decodeSafetensors(inheritedDtype, 'f')).toThrow(/tensor a has dtype "constructor"; clamp-native reads F32/);
  });

  it('copies an unaligned tensor out of a pooled Buffer with its own values only', () => {
    // A one-byte tensor first puts the float32 tensor at an odd offset, which other writers may do.
    const header = headerBytes({
      flag: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
      w: { dtype: 'F32', shape: [2], data_offsets: [1, 9] },
    });
    const values = Buffer.from(Float32Array.from([1.5, -2.5]).buffer);
    const bytes = Buffer.concat([header, Buffer.from([7]), values]);
    expect(bytes.buffer.byteLength).toBeGreaterThan(bytes.length); // a slice of Node's shared pool
    const w = decodeSafetensors(bytes, 'f').tensors.find((t) => t.name === 'w')!;
    expect(w.data).toEqual(Float32Array.from([1.5, -2.5]));
  });

  it('names the path when the checkpoint is a folder or lies under a file', async () => {
    const folder = await temporaryFolder();
    const error = await caught(readSafetensors(folder));
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.message).toBe(`the checkpoint ${folder} is a folder; pass a .safetensors file or the run folder that holds one`);
    const file = path.join(folder, 'x.safetensors');
    await writeSafetensors(file, tensors);
    const underFile = await caught(readSafetensors(path.join(file, 'y.safetensors')));
    expect(underFile).toBeInstanceOf(CheckpointError);
    expect(underFile.message).toBe(`the checkpoint ${path.join(file, 'y.safetensors')} does not exist: a folder on its path is a file`);
  });
});

describe('safetensors files past 2 GiB', () => {
  const GiB = 2 ** 30;

  it('refuses a 64 GiB file by its header alone, naming the file and the problem', async () => {
    const file = path.join(await temporaryFolder(), 'huge.safetensors');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(10n ** 10n); // within the file, far beyond any real header
    await sparseFile(file, length, 64 * GiB);
    for (const read of [readSafetensors, readSafetensorsHeader]) {
      const error = await caught(read(file));
      expect(error).toBeInstanceOf(CheckpointError);
      expect(error.message).toBe(
        `${file} is not a valid safetensors file: its header claims 10000000000 bytes, more than the 100000000 a safetensors header may take. It may be truncated or corrupt; use another checkpoint.`,
      );
    }
    const header = headerBytes({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
    await sparseFile(file, header, 64 * GiB);
    const uncovered = await caught(readSafetensors(file));
    expect(uncovered).toBeInstanceOf(CheckpointError);
    expect(uncovered.message).toBe(
      `${file} is not a valid safetensors file: its tensors cover 8 of ${64 * GiB - header.length} data bytes. It may be truncated or corrupt; use another checkpoint.`,
    );
  });

  it("reads a checkpoint's metadata without its weights, however large they are", async () => {
    const file = path.join(await temporaryFolder(), 'checkpoint.safetensors');
    const metadata = {
      format: CHECKPOINT_FORMAT,
      config: '{"schedule":{"epochs":3}}',
      position: '{"epoch":1,"batch":0,"step":9}',
      metrics: '{}',
    };
    // One float32 tensor of 2^34 values (64 GiB): more than a typed array may hold, so reading it would fail.
    const header = headerBytes({ __metadata__: metadata, w: { dtype: 'F32', shape: [2 ** 34], data_offsets: [0, 64 * GiB] } });
    await sparseFile(file, header, header.length + 64 * GiB);
    expect(await readCheckpointMetadata(file)).toEqual({
      config: { schedule: { epochs: 3 } },
      position: { epoch: 1, batch: 0, step: 9 },
      metrics: {},
    });
    expect(await readSafetensorsHeader(file)).toEqual({ metadata, tensors: [{ name: 'w', dtype: 'float32', shape: [2 ** 34] }] });
  });

  it('round-trips a 2.2 GB float32 tensor', { timeout: 300_000 }, async () => {
    const file = path.join(await temporaryFolder(), 'large.safetensors');
    const count = 550_000_000;
    const big = new Float32Array(count);
    const marks = [0, 1, 2, count / 2, count - 3, count - 2, count - 1];
    marks.forEach((index, k) => (big[index] = k + 0.25));
    try {
      await writeSafetensors(
        file,
        [
          { name: 'big', dtype: 'float32', shape: [count], data: big },
          { name: 'step', dtype: 'int64', shape: [1], data: new BigInt64Array([5n]) },
        ],
        { k: 'v' },
      );
      const { tensors: back, metadata } = await readSafetensors(file);
      expect(metadata).toEqual({ k: 'v' });
      const read = back.find((t) => t.name === 'big')!;
      expect([read.dtype, read.shape, read.data.length]).toEqual(['float32', [count], count]);
      expect(marks.map((index) => read.data[index])).toEqual(marks.map((_, k) => k + 0.25));
      expect([read.data[3], read.data[count - 4]]).toEqual([0, 0]);
      expect(back.find((t) => t.name === 'step')!.data).toEqual(new BigInt64Array([5n]));
    } finally {
      await fs.rm(file, { force: true });
    }
  });
});

describe('checkpoints', () => {
  const metadata = { format: CHECKPOINT_FORMAT, config: '{}', position: '{"epoch":0,"batch":0,"step":0}', metrics: '{}' };

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('refuses float weights holding %s, naming the file, tensor and index', async (text, bad) => {
    const file = path.join(await temporaryFolder(), 'checkpoint.safetensors');
    const weight = Float32Array.from([0.5, -1, 2, bad, 3]);
    await writeSafetensors(
      file,
      [
        { name: 'conv1.weight', dtype: 'float32', shape: [5], data: weight },
        { name: 'step', dtype: 'int64', shape: [1], data: new BigInt64Array([1n]) },
      ],
      metadata,
    );
    const error = await caught(readCheckpoint(file));
    expect(error).toBeInstanceOf(CheckpointError);
    expect(error.message).toBe(
      `${file}: tensor conv1.weight holds ${text} at index 3 (of 5): the run diverged before this checkpoint was written. ` +
        'Use an earlier checkpoint of the run, or train again with a lower learning rate.',
    );
  });

  it('loads finite weights, extreme ones included', async () => {
    const file = path.join(await temporaryFolder(), 'checkpoint.safetensors');
    const weight = Float32Array.from([3.4e38, -3.4e38, 1e-45, -0, 0]);
    await writeSafetensors(file, [{ name: 'w', dtype: 'float32', shape: [5], data: weight }], metadata);
    expect((await readCheckpoint(file)).state).toEqual([{ name: 'w', dtype: 'float32', shape: [5], data: weight }]);
  });
});
