// The safetensors writer and reader: round trips, the layout the format prescribes (checked by an
// independent parse), atomic writes, and errors for truncated or corrupt files.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckpointError, decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors, type NamedTensorData } from '../lib/checkpoint/safetensors.js';

const tensors: NamedTensorData[] = [
  { name: 'b.weight', dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
  { name: 'a.count', dtype: 'int64', shape: [], data: new BigInt64Array([42n]) },
  { name: 'c.bias', dtype: 'float32', shape: [3], data: Float32Array.from([-1, 0.5, 7]) },
  { name: 'd.labels', dtype: 'uint8', shape: [5], data: Uint8Array.from([1, 2, 3, 4, 5]) },
  { name: 'e.double', dtype: 'float64', shape: [1], data: Float64Array.from([Math.PI]) },
];

async function temporaryFolder(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'clamp-safetensors-'));
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
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    expect(header.__metadata__).toEqual({ k: 'v' });
    expect(header['a.count']).toEqual({ dtype: 'I64', shape: [], data_offsets: [0, 8] });
    const entries = Object.entries(header).filter(([name]) => name !== '__metadata__').sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
    let end = 0;
    for (const [, entry] of entries) {
      expect(entry.data_offsets[0]).toBe(end); // no holes
      end = entry.data_offsets[1];
    }
    expect(end).toBe(bytes.length - 8 - headerLength);
    // Widest first: every tensor starts at a multiple of its element size.
    expect(entries.map(([, e]) => e.dtype)).toEqual(['I64', 'F64', 'F32', 'F32', 'U8']) // equal widths by name;
    const weight = header['b.weight']!;
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + headerLength + weight.data_offsets[0], bytes.byteOffset + 8 + headerLength + weight.data_offsets[1]))).toEqual(tensors[0]!.data);
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
    expect(() => encodeSafetensors([{ name: 'x', dtype: 'float32', shape: [4], data: new Float32Array(3) }])).toThrow(/holds 4 values, its data 3/);
    expect(() => encodeSafetensors([{ name: 'x', dtype: 'int64', shape: [1], data: new Float32Array(1) as never }])).toThrow(/needs a BigInt64Array/);
    expect(() => encodeSafetensors([tensors[2]!, tensors[2]!])).toThrow(/appears twice/);
  });

  it('writes atomically: a failed write leaves the previous file and no temporary behind', async () => {
    const folder = await temporaryFolder();
    const file = path.join(folder, 'x.safetensors');
    await writeSafetensors(file, tensors);
    const before = await fs.readFile(file);
    await expect(writeSafetensors(file, [{ name: 'x', dtype: 'float32', shape: [2], data: new Float32Array(1) }])).rejects.toThrow(CheckpointError);
    expect(await fs.readFile(file)).toEqual(before);
    expect(await fs.readdir(folder)).toEqual(['x.safetensors']);
    await expect(readSafetensors(path.join(folder, 'missing.safetensors'))).rejects.toThrow(/does not exist/);
  });
});
