// NumPy's .npy format (version 1.0) for float32 matrices: what `clamp-native embed --out x.npy` writes,
// so embeddings load with numpy.load() and every tool that reads it.
export class NpyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NpyError';
  }
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

/** The header and data of a little-endian float32 array of `shape`, row-major. */
export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer[] {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`shape [${shape.join(', ')}] needs ${count} values; data holds ${data.length}`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, ending in \n.
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const preamble = Buffer.alloc(10);
  MAGIC.copy(preamble, 0);
  preamble[6] = 1;
  preamble[7] = 0;
  preamble.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new NpyError('writing .npy needs a little-endian machine');
  return [preamble, Buffer.from(header, 'latin1'), body];
}

/** A float32 .npy file's data and shape (version 1.x or 2.x, little-endian, C order). */
export function decodeNpy(bytes: Uint8Array, name = 'the .npy data'): { data: Float32Array; shape: number[] } {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 10 || !buffer.subarray(0, 6).equals(MAGIC)) throw new NpyError(`${name} is not a .npy file (no \\x93NUMPY magic)`);
  const major = buffer[6]!;
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : buffer.length >= 12 ? buffer.readUInt32LE(8) : -1;
  const start = major === 1 ? 10 : 12;
  if (headerLength < 0 || start + headerLength > buffer.length) throw new NpyError(`${name}: the .npy header is truncated`);
  const header = buffer.subarray(start, start + headerLength).toString('latin1');
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr !== '<f4' || fortran !== 'False' || shapeText === undefined) {
    throw new NpyError(
      `${name} holds ${descr ?? 'an unknown dtype'}${fortran === 'True' ? ' in Fortran order' : ''}; only little-endian float32 in C order is read`,
    );
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  if (buffer.length - offset !== count * 4)
    throw new NpyError(
      `${name}: shape (${shape.join(', ')}) needs ${count * 4} bytes of data, the file has ${buffer.length - offset}; it is truncated or corrupt`,
    );
  const data = new Float32Array(count);
  new Uint8Array(data.buffer).set(buffer.subarray(offset));
  return { data, shape };
}
