// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {string: string}} padded with
// spaces to a multiple of 8, then the tensors' bytes back to back with no holes. Python's
// `safetensors.torch.load_file` reads what this writes.
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import os from 'node:os';
import { readAt, writeFileAtomically } from '../io/files.js';

export type TensorDtype = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8';
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** A tensor as the header describes it, without its values. */
export interface TensorInfo {
  name: string;
  dtype: TensorDtype;
  shape: number[];
}

export interface NamedTensorData extends TensorInfo {
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
// A Map, not an object: a header dtype such as "constructor" must not find Object's own properties.
const DTYPE_OF_CODE = new Map(Object.entries(CODES).map(([dtype, code]) => [code, dtype as TensorDtype]));

/** The Python and Rust readers refuse headers over 100 MB; a larger length is a corrupt file, not a header to allocate. */
const MAX_HEADER_BYTES = 100_000_000;

/** Header and tensor bytes of a safetensors file, without writing it. */
export function encodeSafetensors(tensors: readonly NamedTensorData[], metadata: Record<string, string> = {}): Uint8Array[] {
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
    if (count !== t.data.length)
      throw new CheckpointError(`tensor ${t.name}: shape [${t.shape.join(', ')}] holds ${count} values, its data ${t.data.length}`);
    if (!(t.data instanceof ARRAYS[t.dtype]))
      throw new CheckpointError(`tensor ${t.name}: dtype ${t.dtype} needs a ${ARRAYS[t.dtype].name}`);
    header[t.name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  // Plain views, not Buffers: a Buffer cannot view more than 4 GiB, a tensor may be larger.
  return [length, Buffer.from(json), ...ordered.map((t) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

export async function writeSafetensors(
  file: string,
  tensors: readonly NamedTensorData[],
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomically(file, encodeSafetensors(tensors, metadata));
}

/** Where a tensor's bytes lie, from the start of the data section. */
interface TensorSpan extends TensorInfo {
  begin: number;
  end: number;
}

interface Header {
  metadata: Record<string, string>;
  tensors: TensorSpan[];
  /** The data section's first byte, from the start of the file. */
  dataStart: number;
}

function corruptFile(source: string, why: string): CheckpointError {
  return new CheckpointError(`${source} is not a valid safetensors file: ${why}. It may be truncated or corrupt; use another checkpoint.`);
}

/** The JSON header's length from the file's first 8 bytes, checked against the file's size before anything that large is read. */
function headerLength(prefix: Uint8Array, fileBytes: number, source: string): number {
  if (fileBytes < 8) throw corruptFile(source, `it is ${fileBytes} bytes long`);
  const claimed = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (claimed > BigInt(fileBytes - 8))
    throw corruptFile(source, `its header claims ${claimed} bytes, the file has ${fileBytes - 8} after the length`);
  if (claimed > BigInt(MAX_HEADER_BYTES))
    throw corruptFile(source, `its header claims ${claimed} bytes, more than the ${MAX_HEADER_BYTES} a safetensors header may take`);
  return Number(claimed);
}

/** The header's tensors and metadata, every entry checked, and the tensors checked to tile the data section exactly. */
function parseHeader(json: Uint8Array, fileBytes: number, source: string): Header {
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'));
  } catch (error) {
    throw corruptFile(source, `its header is not JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) throw corruptFile(source, 'its header is not a JSON object');
  const dataStart = 8 + json.byteLength;
  const metadata: Record<string, string> = {};
  const tensors: TensorSpan[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') Object.assign(metadata, parseMetadata(entry, source));
    else tensors.push(parseTensorEntry(name, entry, source));
  }
  checkTiling(tensors, fileBytes - dataStart, source);
  return { metadata, tensors, dataStart };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseMetadata(entry: unknown, source: string): Record<string, string> {
  if (entry === null) return {};
  if (!isPlainObject(entry)) throw corruptFile(source, 'its __metadata__ is not a JSON object');
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(entry)) {
    if (typeof value !== 'string') throw corruptFile(source, `metadata ${key} is not a string`);
    // defineProperty, as a key "__proto__" would otherwise set the object's prototype and vanish.
    Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return metadata;
}

function parseTensorEntry(name: string, entry: unknown, source: string): TensorSpan {
  if (!isPlainObject(entry)) throw corruptFile(source, `tensor ${name} is not described by a JSON object`);
  const { dtype: code, shape, data_offsets: offsets } = entry;
  const dtype = typeof code === 'string' ? DTYPE_OF_CODE.get(code) : undefined;
  if (!dtype)
    throw new CheckpointError(
      `${source}: tensor ${name} has dtype ${JSON.stringify(code)}; clamp-native reads ${Object.values(CODES).join(', ')}`,
    );
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw corruptFile(source, `tensor ${name} has a bad shape`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
    throw corruptFile(source, `tensor ${name} has bad data_offsets`);
  const [begin, end] = offsets as [number, number];
  const bytes = (shape as number[]).reduce((a, b) => a * b, BYTES[dtype]);
  if (end - begin !== bytes)
    throw corruptFile(source, `tensor ${name} spans ${end - begin} bytes, its shape [${shape.join(', ')}] needs ${bytes}`);
  return { name, dtype, shape: shape as number[], begin, end };
}

/** The format allows no holes and no overlaps: sorted by offset, each tensor starts where the last ended. */
function checkTiling(tensors: readonly TensorSpan[], dataBytes: number, source: string): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let end = 0;
  for (const t of sorted) {
    if (t.begin !== end) {
      throw corruptFile(
        source,
        t.begin < end
          ? `tensor ${t.name} overlaps the tensor before it (it starts at byte ${t.begin}, that one ends at ${end})`
          : `the data section has a hole at bytes ${end}..${t.begin}`,
      );
    }
    if (t.end > dataBytes) throw corruptFile(source, `tensor ${t.name} ends at byte ${t.end} of a ${dataBytes}-byte data section`);
    end = t.end;
  }
  if (end !== dataBytes) throw corruptFile(source, `its tensors cover ${end} of ${dataBytes} data bytes`);
}

/** Parses a safetensors buffer; `source` names it in errors. Tensors view the buffer where aligned. */
export function decodeSafetensors(bytes: Uint8Array, source: string): { tensors: NamedTensorData[]; metadata: Record<string, string> } {
  const length = headerLength(bytes, bytes.byteLength, source);
  const { metadata, tensors, dataStart } = parseHeader(bytes.subarray(8, 8 + length), bytes.byteLength, source);
  return {
    metadata,
    tensors: tensors.map(({ begin, end, ...info }) => {
      const at = bytes.byteOffset + dataStart + begin;
      const Array_ = ARRAYS[info.dtype];
      const count = (end - begin) / BYTES[info.dtype];
      // A view where aligned; an aligned copy otherwise (files from other writers need not align).
      // The copy is a new Uint8Array: a Buffer's slice() would view the whole pool, not copy the span.
      const data =
        at % BYTES[info.dtype] === 0
          ? new Array_(bytes.buffer as ArrayBuffer, at, count)
          : new Array_(new Uint8Array(bytes.subarray(dataStart + begin, dataStart + end)).buffer);
      return { ...info, data };
    }),
  };
}

/** Opens `file` for reading, with a CheckpointError naming it when it is missing or no file. */
async function openCheckpointFile(file: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    throw unreadable(file, error);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile())
      throw new CheckpointError(
        `the checkpoint ${file} is ${stats.isDirectory() ? 'a folder' : 'not a regular file'}; pass a .safetensors file or the run folder that holds one`,
      );
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close();
    throw error instanceof CheckpointError ? error : unreadable(file, error);
  }
}

function unreadable(file: string, error: unknown): CheckpointError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new CheckpointError(`the checkpoint ${file} does not exist`);
  if (code === 'ENOTDIR') return new CheckpointError(`the checkpoint ${file} does not exist: a folder on its path is a file`);
  if (code === 'EACCES' || code === 'EPERM') return new CheckpointError(`the checkpoint ${file} cannot be read: permission denied`);
  return new CheckpointError(`the checkpoint ${file} cannot be read (${code ?? (error as Error).message})`);
}

/** Fills `target` from `position` on; a file that ends first shrank while being read. */
async function readFully(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let filled: number;
  try {
    filled = await readAt(handle, target, position);
  } catch (error) {
    throw unreadable(file, error);
  }
  if (filled < target.byteLength)
    throw new CheckpointError(
      `${file} ended after ${position + filled} bytes while ${position + target.byteLength} were expected; it shrank while being read`,
    );
}

/** Reads and checks the length and the JSON header only, however large the file. */
async function readHeader(handle: FileHandle, file: string, size: number): Promise<Header> {
  const prefix = new Uint8Array(8);
  if (size >= 8) await readFully(handle, file, prefix, 0);
  const json = new Uint8Array(headerLength(prefix, size, file));
  await readFully(handle, file, json, 8);
  return parseHeader(json, size, file);
}

/** One tensor's values, in their own typed array (so aligned, whatever the file's layout). */
async function readTensor(
  handle: FileHandle,
  file: string,
  dataStart: number,
  { begin, end, ...info }: TensorSpan,
): Promise<NamedTensorData> {
  let data: TensorData;
  try {
    data = new ARRAYS[info.dtype]((end - begin) / BYTES[info.dtype]);
  } catch (error) {
    throw new CheckpointError(
      `${file}: tensor ${info.name} needs ${end - begin} bytes, which could not be allocated (${(error as Error).message}); free memory or read it on a larger machine`,
    );
  }
  await readFully(handle, file, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dataStart + begin);
  return { ...info, data };
}

/** The metadata and the tensors' names, dtypes and shapes, without reading their values. */
export async function readSafetensorsHeader(file: string): Promise<{ tensors: TensorInfo[]; metadata: Record<string, string> }> {
  const { handle, size } = await openCheckpointFile(file);
  try {
    const { metadata, tensors } = await readHeader(handle, file, size);
    return { metadata, tensors: tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape })) };
  } finally {
    await handle.close();
  }
}

/** Reads a safetensors file of any size: the header is checked against the file before any tensor is allocated. */
export async function readSafetensors(file: string): Promise<{ tensors: NamedTensorData[]; metadata: Record<string, string> }> {
  const { handle, size } = await openCheckpointFile(file);
  try {
    const { metadata, tensors, dataStart } = await readHeader(handle, file, size);
    const read: NamedTensorData[] = [];
    for (const span of tensors) read.push(await readTensor(handle, file, dataStart, span));
    return { tensors: read, metadata };
  } finally {
    await handle.close();
  }
}
