// IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed: the format LeCun's MNIST introduced.
// Layout: two zero bytes, a type byte (0x08 = unsigned byte), a dimension count, the dimensions as
// big-endian uint32, then the values in row-major order.
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { DatasetError, kindOf, readDatasetFileIfPresent } from './dataset-files.js';
import type { ImageDataset } from './image-dataset.js';

const gunzip = promisify(zlib.gunzip);

export interface IdxArray {
  data: Uint8Array;
  shape: number[];
}

/** Parses an IDX buffer; `source` names it in errors. Only unsigned-byte data (all MNIST-style files). */
export function parseIdx(buffer: Uint8Array, source: string): IdxArray {
  if (buffer.length < 4)
    throw new DatasetError(`${source} is not an IDX file: it is ${buffer.length} bytes long, shorter than the 4-byte IDX magic number`);
  if (buffer[0] !== 0 || buffer[1] !== 0) {
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
    throw new DatasetError(
      `${source} is truncated or corrupt: its header promises ${shape.join('x')} = ${expected} values, it holds ${actual}`,
    );
  }
  return { data: buffer.subarray(headerBytes), shape };
}

/**
 * Reads `file`, or `file.gz` when only the compressed one exists; decompression runs off the JS thread.
 * `file` is the path the values were read from.
 */
export async function readIdx(file: string): Promise<IdxArray & { file: string }> {
  for (const candidate of [file, `${file}.gz`]) {
    let bytes = await readDatasetFileIfPresent(candidate);
    if (bytes === null) continue;
    if (candidate.endsWith('.gz')) {
      try {
        bytes = await gunzip(bytes);
      } catch (error) {
        throw new DatasetError(`${candidate} is not valid gzip: ${(error as Error).message}`);
      }
    }
    return { ...parseIdx(bytes, candidate), file: candidate };
  }
  throw new DatasetError(`${file} (or ${path.basename(file)}.gz) does not exist`);
}

/** Debian's `dataset-fashion-mnist` package puts the files here. */
export const DEFAULT_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

export interface IdxDatasetOptions {
  /**
   * How many classes the dataset has: every label must lie in 0..classes-1. 10 (MNIST, Fashion-MNIST,
   * KMNIST) unless given; EMNIST's splits have 26 to 62.
   */
  classes?: number;
}

/** An MNIST-layout folder: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. */
export async function loadIdxDataset(folder: string, split: 'train' | 'test', options: IdxDatasetOptions = {}): Promise<ImageDataset> {
  const classes = options.classes ?? 10;
  if (!Number.isInteger(classes) || classes < 1 || classes > 256) {
    throw new RangeError(`options.classes must be an integer in 1..256 (labels are bytes), got ${classes}`);
  }
  await requireIdxFolder(folder);
  const prefix = split === 'train' ? 'train' : 't10k';
  const [images, labels] = await Promise.all([
    readIdx(path.join(folder, `${prefix}-images-idx3-ubyte`)),
    readIdx(path.join(folder, `${prefix}-labels-idx1-ubyte`)),
  ]);
  if (images.shape.length !== 3)
    throw new DatasetError(`${images.file}: images must be [count, height, width], got ${images.shape.join('x')}`);
  if (images.shape.some((n) => n === 0)) throw new DatasetError(`${images.file} holds no images (its shape is ${images.shape.join('x')})`);
  if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
    throw new DatasetError(
      `${prefix} has ${images.shape[0]} images but labels of shape ${labels.shape.join('x')}: ${images.file} and ${labels.file} do not belong together`,
    );
  }
  checkLabels(labels.data, classes, labels.file);
  const [count, height, width] = images.shape as [number, number, number];
  return { images: images.data, labels: labels.data, count, channels: 1, height, width, classes };
}

/** The folder must exist and be a folder: a file there would otherwise surface as ENOTDIR on a path inside it. */
async function requireIdxFolder(folder: string): Promise<void> {
  const kind = await kindOf(folder);
  if (kind === 'folder') return;
  const hint =
    path.resolve(folder) === DEFAULT_FASHION_MNIST
      ? 'Install it with `sudo apt-get install dataset-fashion-mnist`, or pass --data with another folder.'
      : 'Pass --data with a folder that holds train-images-idx3-ubyte[.gz] and its siblings.';
  throw new DatasetError(`the dataset folder ${folder} ${kind === 'missing' ? 'does not exist' : 'is a file, not a folder'}. ${hint}`);
}

/** A label past the class count is a damaged file or another dataset's, never a new class. */
function checkLabels(labels: Uint8Array, classes: number, file: string): void {
  for (let index = 0; index < labels.length; index++) {
    if (labels[index]! >= classes) {
      throw new DatasetError(
        `${file} gives image ${index} the label ${labels[index]}, outside the dataset's ${classes} classes (0..${classes - 1}): ` +
          'the file is corrupt or belongs to another dataset. Download it again, or pass the right folder.',
      );
    }
  }
}
