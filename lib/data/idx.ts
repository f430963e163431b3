// IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed: the format LeCun's MNIST introduced.
// Layout: two zero bytes, a type byte (0x08 = unsigned byte), a dimension count, the dimensions as
// big-endian uint32, then the values in row-major order.
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const gunzip = promisify(zlib.gunzip);

export interface IdxArray {
  data: Uint8Array;
  shape: number[];
}

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** Parses an IDX buffer; `source` names it in errors. Only unsigned-byte data (all MNIST-style files). */
export function parseIdx(buffer: Uint8Array, source: string): IdxArray {
  if (buffer.length < 4 || buffer[0] !== 0 || buffer[1] !== 0) {
    throw new DatasetError(`${source} is not an IDX file (it does not start with two zero bytes)`);
  }
  if (buffer[2] !== 0x08) {
    throw new DatasetError(`${source} holds IDX type 0x${buffer[2]!.toString(16)}; only unsigned bytes (0x08) are supported`);
  }
  const dims = buffer[3]!;
  const headerBytes = 4 + 4 * dims;
  if (dims === 0 || buffer.length < headerBytes) throw new DatasetError(`${source} has a truncated IDX header`);
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const shape = Array.from({ length: dims }, (_, k) => view.getUint32(4 + 4 * k, false));
  const expected = shape.reduce((a, b) => a * b, 1);
  const actual = buffer.length - headerBytes;
  if (actual !== expected) {
    throw new DatasetError(`${source} is truncated or corrupt: its header promises ${shape.join('x')} = ${expected} values, it holds ${actual}`);
  }
  return { data: buffer.subarray(headerBytes), shape };
}

/** Reads `file`, or `file.gz` when only the compressed one exists; decompression runs off the JS thread. */
export async function readIdx(file: string): Promise<IdxArray> {
  for (const candidate of [file, `${file}.gz`]) {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(candidate);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    if (candidate.endsWith('.gz')) {
      try {
        bytes = await gunzip(bytes);
      } catch (error) {
        throw new DatasetError(`${candidate} is not valid gzip: ${(error as Error).message}`);
      }
    }
    return parseIdx(bytes, candidate);
  }
  throw new DatasetError(`${file} (or ${path.basename(file)}.gz) does not exist`);
}

export interface ImageDataset {
  /** [count, channels, height, width] bytes. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  channels: number;
  height: number;
  width: number;
  classes: number;
}

/** Debian's `dataset-fashion-mnist` package puts the files here. */
export const DEFAULT_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

/** An MNIST-layout folder: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
export async function loadIdxDataset(folder: string, split: 'train' | 'test'): Promise<ImageDataset> {
  try {
    await fs.access(folder);
  } catch {
    const hint = path.resolve(folder) === DEFAULT_FASHION_MNIST
      ? 'Install it with `sudo apt-get install dataset-fashion-mnist`, or pass --data with another folder.'
      : 'Pass --data with a folder that holds train-images-idx3-ubyte[.gz] and its siblings.';
    throw new DatasetError(`the dataset folder ${folder} does not exist. ${hint}`);
  }
  const prefix = split === 'train' ? 'train' : 't10k';
  const [images, labels] = await Promise.all([
    readIdx(path.join(folder, `${prefix}-images-idx3-ubyte`)),
    readIdx(path.join(folder, `${prefix}-labels-idx1-ubyte`)),
  ]);
  if (images.shape.length !== 3) throw new DatasetError(`${prefix} images must be [count, height, width], got ${images.shape.join('x')}`);
  if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new DatasetError(`${prefix} has ${images.shape[0]} images but labels of shape ${labels.shape.join('x')}`);
  }
  let classes = 0;
  for (const label of labels.data) classes = Math.max(classes, label + 1);
  const [count, height, width] = images.shape as [number, number, number];
  return { images: images.data, labels: labels.data, count, channels: 1, height, width, classes };
}
