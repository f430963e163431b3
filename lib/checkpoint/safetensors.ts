// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {string: string}} padded with
// spaces to a multiple of 8, then the tensors' bytes back to back with no holes. Python's
// `safetensors.torch.load_file` reads what this writes.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';

export type TensorDtype = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8';
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface NamedTensorData {
  name: string;
  dtype: TensorDtype;
  shape: number[];
  data: TensorData;
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

const CODES: Record<TensorDtype, string> = { float32: 'F32', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8' };
const BYTES: Record<TensorDtype, number> = { float32: 4, float64: 8, int64: 8, int32: 4, uint8: 1 };
const ARRAYS = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array } as const;
const DTYPE_OF_CODE = Object.fromEntries(Object.entries(CODES).map(([dtype, code]) => [code, dtype as TensorDtype]));

/** Header and tensor bytes of a safetensors file, without writing it. */
export function encodeSafetensors(tensors: readonly NamedTensorData[], metadata: Record<string, string> = {}): Buffer[] {
  if (os.endianness() !== 'LE') throw new CheckpointError('safetensors files are little-endian; this machine is big-endian');
  // Widest dtypes first (then by name), as the Python writer does, so every tensor starts aligned to
  // its element size and a reader can view it in place.
  const ordered = [...tensors].sort((a, b) => BYTES[b.dtype] - BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of ordered) {
    if (seen.has(t.name)) throw new CheckpointError(`tensor name ${t.name} appears twice`);
    seen.add(t.name);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new CheckpointError(`tensor ${t.name}: shape [${t.shape.join(', ')}] holds ${count} values, its data ${t.data.length}`);
    if (!(t.data instanceof ARRAYS[t.dtype])) throw new CheckpointError(`tensor ${t.name}: dtype ${t.dtype} needs a ${ARRAYS[t.dtype].name}`);
    header[t.name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return [length, Buffer.from(json), ...ordered.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

/**
 * Writes `file` atomically: to a temporary name in the same folder, flushed to disk, then renamed, so
 * a crash leaves the previous file or the new one, never half of one.
 */
export async function writeFileAtomically(file: string, chunks: readonly Uint8Array[]): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const handle = await fs.open(temporary, 'w');
  try {
    await handle.writev(chunks as Uint8Array[]);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fs.rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fs.rename(temporary, file);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}

export async function writeSafetensors(file: string, tensors: readonly NamedTensorData[], metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomically(file, encodeSafetensors(tensors, metadata));
}

/** Parses a safetensors buffer; `source` names it in errors. Tensors view the buffer where aligned. */
export function decodeSafetensors(bytes: Uint8Array, source: string): { tensors: NamedTensorData[]; metadata: Record<string, string> } {
  const corrupt = (why: string) => new CheckpointError(`${source} is not a valid safetensors file: ${why}. It may be truncated or corrupt; use another checkpoint.`);
  if (bytes.length < 8) throw corrupt(`it is ${bytes.length} bytes long`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) throw corrupt(`its header claims ${headerLength} bytes, the file has ${bytes.length - 8} after the length`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, Number(headerLength)).toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    throw corrupt(`its header is not JSON (${(error as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw corrupt('its header is not a JSON object');
  const dataStart = 8 + Number(headerLength);
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: NamedTensorData[] = [];
  let covered = 0;
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      for (const [key, value] of Object.entries((entry ?? {}) as Record<string, unknown>)) {
        if (typeof value !== 'string') throw corrupt(`metadata ${key} is not a string`);
        metadata[key] = value;
      }
      continue;
    }
    const { dtype: code, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = typeof code === 'string' ? DTYPE_OF_CODE[code] : undefined;
    if (!dtype) throw new CheckpointError(`${source}: tensor ${name} has dtype ${String(code)}; clamp-native reads ${Object.values(CODES).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw corrupt(`tensor ${name} has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) throw corrupt(`tensor ${name} has bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * BYTES[dtype]) throw corrupt(`tensor ${name} spans ${end - begin} bytes, its shape needs ${count * BYTES[dtype]}`);
    if (end > dataLength) throw corrupt(`tensor ${name} ends at byte ${end} of a ${dataLength}-byte data section`);
    covered += end - begin;
    const at = bytes.byteOffset + dataStart + begin;
    const Array_ = ARRAYS[dtype];
    // A view where aligned; an aligned copy otherwise (files from other writers need not align).
    const data = at % BYTES[dtype] === 0 ? new Array_(bytes.buffer as ArrayBuffer, at, count) : new Array_(bytes.slice(dataStart + begin, dataStart + end).buffer);
    tensors.push({ name, dtype, shape: shape as number[], data });
  }
  if (covered !== dataLength) throw corrupt(`its tensors cover ${covered} of ${dataLength} data bytes`);
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<{ tensors: NamedTensorData[]; metadata: Record<string, string> }> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointError(`the checkpoint ${file} does not exist`);
    throw error;
  }
  return decodeSafetensors(bytes, file);
}
