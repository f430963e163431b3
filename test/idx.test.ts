// IDX reading on the real Fashion-MNIST (Debian's dataset-fashion-mnist) and on broken files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { idx } from './idx-bytes.js';
import { DatasetError } from '../lib/data/dataset-files.js';
import { DEFAULT_FASHION_MNIST, loadIdxDataset, parseIdx, readIdx } from '../lib/data/idx.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-idx-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('IDX files', () => {
  it('parses shape and values', () => {
    const parsed = parseIdx(idx([2, 3], [1, 2, 3, 4, 5, 6]), 'mem');
    expect(parsed.shape).toEqual([2, 3]);
    expect([...parsed.data]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it.each([
    ['not IDX', Buffer.from('PK\x03\x04hello'), /not an IDX file/],
    ['float IDX', Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), /type 0xd; only unsigned bytes/],
    ['truncated header', Buffer.from([0, 0, 8, 3, 0, 0]), /truncated IDX header/],
    ['truncated data', idx([2, 3], [1, 2, 3, 4]), /promises 2x3 = 6 values, it holds 4/],
  ])('rejects %s with a DatasetError that says why', (_, bytes, message) => {
    expect(() => parseIdx(bytes, 'file.idx')).toThrow(DatasetError);
    expect(() => parseIdx(bytes, 'file.idx')).toThrow(message);
  });

  it('reads .gz when only the compressed file exists, and says when neither does', async () => {
    fs.writeFileSync(path.join(scratch, 'a-idx1-ubyte.gz'), zlib.gzipSync(idx([3], [7, 8, 9])));
    expect([...(await readIdx(path.join(scratch, 'a-idx1-ubyte'))).data]).toEqual([7, 8, 9]);
    fs.writeFileSync(path.join(scratch, 'b-idx1-ubyte.gz'), Buffer.from('not gzip at all'));
    await expect(readIdx(path.join(scratch, 'b-idx1-ubyte'))).rejects.toThrow(/is not valid gzip/);
    await expect(readIdx(path.join(scratch, 'missing'))).rejects.toThrow(/missing \(or missing.gz\) does not exist/);
  });
});

describe("Fashion-MNIST from Debian's dataset-fashion-mnist", () => {
  it('train: 60,000 28x28 images, 10 balanced classes', async () => {
    const train = await loadIdxDataset(DEFAULT_FASHION_MNIST, 'train');
    expect([train.count, train.channels, train.height, train.width, train.classes]).toEqual([60000, 1, 28, 28, 10]);
    expect(train.images.length).toBe(60000 * 28 * 28);
    const perClass = new Array<number>(10).fill(0);
    for (const label of train.labels) perClass[label]!++;
    expect(perClass).toEqual(new Array(10).fill(6000));
  });

  it('test: 10,000 images; the raw file reads the same as the .gz', async () => {
    const test = await loadIdxDataset(DEFAULT_FASHION_MNIST, 'test');
    expect(test.count).toBe(10000);
    const raw = path.join(scratch, 'raw');
    fs.mkdirSync(raw);
    for (const name of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      fs.writeFileSync(path.join(raw, name), zlib.gunzipSync(fs.readFileSync(path.join(DEFAULT_FASHION_MNIST, `${name}.gz`))));
    }
    const fromRaw = await loadIdxDataset(raw, 'test');
    expect(Buffer.compare(fromRaw.images, test.images)).toBe(0);
    expect(Buffer.compare(fromRaw.labels, test.labels)).toBe(0);
  });

  it('a missing folder names the fix', async () => {
    await expect(loadIdxDataset(path.join(scratch, 'nowhere'), 'train')).rejects.toThrow(/does not exist. Pass --data/);
  });

  it('images and labels that disagree are an error', async () => {
    const folder = path.join(scratch, 'mismatch');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'train-images-idx3-ubyte'), idx([2, 1, 1], [0, 255]));
    fs.writeFileSync(path.join(folder, 'train-labels-idx1-ubyte'), idx([3], [0, 1, 2]));
    await expect(loadIdxDataset(folder, 'train')).rejects.toThrow(/2 images but labels of shape 3/);
  });

  it('says what it expected when the folder is a file or an IDX file is a folder', async () => {
    const notFolder = path.join(scratch, 'a-file');
    fs.writeFileSync(notFolder, 'x');
    const error = await loadIdxDataset(notFolder, 'train').catch((caught: unknown) => caught as Error);
    expect(error).toBeInstanceOf(DatasetError);
    expect((error as Error).message).toBe(
      `the dataset folder ${notFolder} is a file, not a folder. Pass --data with a folder that holds train-images-idx3-ubyte[.gz] and its siblings.`,
    );
    const underFile = await readIdx(path.join(notFolder, 'train-images-idx3-ubyte')).catch((caught: unknown) => caught as Error);
    expect(underFile).toBeInstanceOf(DatasetError);
    expect((underFile as Error).message).toBe(
      `${path.join(notFolder, 'train-images-idx3-ubyte')} does not exist: a folder on its path is a file.`,
    );

    const folder = path.join(scratch, 'images-as-folder');
    fs.mkdirSync(path.join(folder, 'train-images-idx3-ubyte'), { recursive: true });
    fs.writeFileSync(path.join(folder, 'train-labels-idx1-ubyte'), idx([1], [0]));
    const isFolder = await loadIdxDataset(folder, 'train').catch((caught: unknown) => caught as Error);
    expect(isFolder).toBeInstanceOf(DatasetError);
    expect((isFolder as Error).message).toBe(`${path.join(folder, 'train-images-idx3-ubyte')} is a folder, where a file was expected.`);
  });

  it('refuses a label outside the class count, naming the file and the image', async () => {
    const folder = path.join(scratch, 'bad-label');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 't10k-images-idx3-ubyte'), idx([3, 1, 1], [0, 1, 2]));
    for (const bad of [10, 255]) {
      fs.writeFileSync(path.join(folder, 't10k-labels-idx1-ubyte'), idx([3], [9, bad, 0]));
      const error = await loadIdxDataset(folder, 'test').catch((caught: unknown) => caught as Error);
      expect(error).toBeInstanceOf(DatasetError);
      expect((error as Error).message).toBe(
        `${path.join(folder, 't10k-labels-idx1-ubyte')} gives image 1 the label ${bad}, outside the dataset's 10 classes (0..9): ` +
          'the file is corrupt or belongs to another dataset. Download it again, or pass the right folder.',
      );
    }
    // The class count is what the caller says, not one more than the largest label seen.
    fs.writeFileSync(path.join(folder, 't10k-labels-idx1-ubyte'), idx([3], [1, 46, 0]));
    expect((await loadIdxDataset(folder, 'test', { classes: 47 })).classes).toBe(47);
    fs.writeFileSync(path.join(folder, 't10k-labels-idx1-ubyte'), idx([3], [1, 2, 0]));
    expect((await loadIdxDataset(folder, 'test')).classes).toBe(10);
    await expect(loadIdxDataset(folder, 'test', { classes: 300 })).rejects.toThrow(RangeError);
  });

  it('refuses an images file that holds no images', async () => {
    const folder = path.join(scratch, 'no-images');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'train-images-idx3-ubyte'), idx([0, 28, 28], []));
    fs.writeFileSync(path.join(folder, 'train-labels-idx1-ubyte'), idx([0], []));
    await expect(loadIdxDataset(folder, 'train')).rejects.toThrow(
      `${path.join(folder, 'train-images-idx3-ubyte')} holds no images (its shape is 0x28x28)`,
    );
  });
});
