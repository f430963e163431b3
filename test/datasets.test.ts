// CIFAR-10/100 and STL-10 binary readers and the image-folder reader, on small synthetic files written
// here in their real layouts, and on broken ones: every error must name the file and what to do.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCifarDataset } from '../lib/data/cifar.js';
import { dataSchema, loadDataset } from '../lib/data/datasets.js';
import { DatasetError } from '../lib/data/dataset-files.js';
import { loadImageFolder } from '../lib/data/image-folder.js';
import { loadStl10Dataset, STL10_NO_LABEL } from '../lib/data/stl10.js';

let scratch = '';
beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-datasets-'));
});
afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

async function makeFolder(...parts: string[]): Promise<string> {
  const folder = path.join(scratch, ...parts);
  await fs.mkdir(folder, { recursive: true });
  return folder;
}

async function expectDatasetError(promise: Promise<unknown>, ...messages: (string | RegExp)[]): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(DatasetError);
  for (const message of messages) expect((error as Error).message).toMatch(message);
}

/** Byte-for-byte equality; vitest's deep toEqual takes seconds on megabyte arrays, so mismatches report their first offset instead. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  const firstDifference = actual.findIndex((value, offset) => value !== expected[offset]);
  expect(firstDifference, `first differing byte at offset ${firstDifference}`).toBe(-1);
}

const CIFAR_PIXELS = 3 * 32 * 32;

/** The pixel bytes of CIFAR record `index`: a ramp that differs per record, so misplaced records show. */
function cifarPixels(index: number): Uint8Array {
  return Uint8Array.from({ length: CIFAR_PIXELS }, (_, byte) => (index * 37 + byte * 11) % 256);
}

function cifarFile(records: { labels: number[]; index: number }[]): Buffer {
  return Buffer.concat(records.flatMap(({ labels, index }) => [Uint8Array.from(labels), cifarPixels(index)]));
}

describe('CIFAR-10 binary version', () => {
  let parent = '';
  let batches = '';
  beforeAll(async () => {
    parent = await makeFolder('cifar10');
    batches = await makeFolder('cifar10', 'cifar-10-batches-bin');
    // Batch b holds records 2b and 2b+1, labelled 2b % 10 and (2b+1) % 10.
    for (let batch = 0; batch < 5; batch++) {
      const records = [2 * batch, 2 * batch + 1].map((index) => ({ labels: [index % 10], index }));
      await fs.writeFile(path.join(batches, `data_batch_${batch + 1}.bin`), cifarFile(records));
    }
    await fs.writeFile(
      path.join(batches, 'test_batch.bin'),
      cifarFile([
        { labels: [7], index: 100 },
        { labels: [3], index: 101 },
        { labels: [0], index: 102 },
      ]),
    );
  });

  it('reads the five training batches in order, R, G and B planes as stored', async () => {
    const train = await loadCifarDataset(parent, 'train', 'cifar10');
    expect([train.count, train.channels, train.height, train.width, train.classes]).toEqual([10, 3, 32, 32, 10]);
    expect([...train.labels]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(train.images.length).toBe(10 * CIFAR_PIXELS);
    for (let index = 0; index < 10; index++) {
      expectSameBytes(train.images.subarray(index * CIFAR_PIXELS, (index + 1) * CIFAR_PIXELS), cifarPixels(index));
    }
    // Image 3, green plane, row 5, column 7: byte 1024 + 5*32 + 7 of record 3's pixels.
    expect(train.images[3 * CIFAR_PIXELS + 1024 + 5 * 32 + 7]).toBe((3 * 37 + (1024 + 167) * 11) % 256);
  });

  it('takes the batches folder itself as well as its parent', async () => {
    const fromParent = await loadCifarDataset(parent, 'test', 'cifar10');
    const fromBatches = await loadCifarDataset(batches, 'test', 'cifar10');
    expect(fromBatches).toEqual(fromParent);
    expect(fromParent.count).toBe(3);
    expect([...fromParent.labels]).toEqual([7, 3, 0]);
    expectSameBytes(fromParent.images.subarray(2 * CIFAR_PIXELS), cifarPixels(102));
  });

  it('says where to get the dataset when the folder or a batch is missing', async () => {
    await expectDatasetError(
      loadCifarDataset(path.join(scratch, 'nowhere'), 'train', 'cifar10'),
      'nowhere does not exist',
      'https://www.cs.toronto.edu/~kriz/cifar.html',
      'binary version',
    );
    const incomplete = await makeFolder('cifar10-incomplete', 'cifar-10-batches-bin');
    await fs.copyFile(path.join(batches, 'data_batch_1.bin'), path.join(incomplete, 'data_batch_1.bin'));
    await expectDatasetError(
      loadCifarDataset(path.dirname(incomplete), 'train', 'cifar10'),
      `${path.join(incomplete, 'data_batch_2.bin')} does not exist`,
      'binary version of CIFAR-10 (cifar-10-binary.tar.gz)',
    );
  });

  it('rejects a truncated batch with its byte counts', async () => {
    const folder = await makeFolder('cifar10-truncated');
    await fs.writeFile(
      path.join(folder, 'test_batch.bin'),
      cifarFile([
        { labels: [1], index: 0 },
        { labels: [2], index: 1 },
      ]).subarray(0, 2 * 3073 - 5),
    );
    await expectDatasetError(
      loadCifarDataset(folder, 'test', 'cifar10'),
      `${path.join(folder, 'test_batch.bin')} is truncated or corrupt`,
      'holds 6141 bytes, not a whole number of 3073-byte CIFAR-10 records (1 records and 3068 bytes over)',
    );
  });

  it('says what it expected when a batch is a folder or the dataset folder is a file', async () => {
    const folder = await makeFolder('cifar10-folder-batch', 'test_batch.bin');
    await expectDatasetError(
      loadCifarDataset(path.dirname(folder), 'test', 'cifar10'),
      new RegExp(`^${folder} is a folder, where a file was expected\\. Download the binary version of CIFAR-10`),
    );
    const file = path.join(scratch, 'cifar10-as-file');
    await fs.writeFile(file, 'x');
    await expectDatasetError(
      loadCifarDataset(file, 'test', 'cifar10'),
      new RegExp(`^the dataset folder ${file} is a file, not a folder\\. Download`),
    );
  });

  it('rejects a label out of range, naming the file and record', async () => {
    const folder = await makeFolder('cifar10-bad-label');
    await fs.writeFile(
      path.join(folder, 'test_batch.bin'),
      cifarFile([
        { labels: [1], index: 0 },
        { labels: [10], index: 1 },
      ]),
    );
    await expectDatasetError(
      loadCifarDataset(folder, 'test', 'cifar10'),
      `${path.join(folder, 'test_batch.bin')} record 1 has label 10, outside CIFAR-10's 0..9`,
    );
  });

  it('refuses coarse labels, which only CIFAR-100 has', async () => {
    await expectDatasetError(loadCifarDataset(parent, 'test', 'cifar10', { labels: 'coarse' }), 'CIFAR-10 has no coarse labels');
  });
});

describe('CIFAR-100 binary version', () => {
  // More records than one read takes (1024), so that the chunked reading is crossed.
  const TRAIN_RECORDS = 1030;
  let parent = '';
  beforeAll(async () => {
    parent = await makeFolder('cifar100');
    const folder = await makeFolder('cifar100', 'cifar-100-binary');
    const records = Array.from({ length: TRAIN_RECORDS }, (_, index) => ({ labels: [index % 20, (index * 3) % 100], index }));
    await fs.writeFile(path.join(folder, 'train.bin'), cifarFile(records));
    await fs.writeFile(
      path.join(folder, 'test.bin'),
      cifarFile([
        { labels: [19, 99], index: 5 },
        { labels: [0, 0], index: 6 },
      ]),
    );
  });

  it('gives fine labels (100 classes) by default and coarse ones (20 classes) on request', async () => {
    const fine = await loadCifarDataset(parent, 'train', 'cifar100');
    expect([fine.count, fine.channels, fine.height, fine.width, fine.classes]).toEqual([TRAIN_RECORDS, 3, 32, 32, 100]);
    expect([...fine.labels]).toEqual(Array.from({ length: TRAIN_RECORDS }, (_, index) => (index * 3) % 100));
    const coarse = await loadCifarDataset(parent, 'train', 'cifar100', { labels: 'coarse' });
    expect(coarse.classes).toBe(20);
    expect([...coarse.labels]).toEqual(Array.from({ length: TRAIN_RECORDS }, (_, index) => index % 20));
    expectSameBytes(coarse.images, fine.images);
    // Both label bytes are skipped: the pixels start right after them, on both sides of the read boundary.
    for (const index of [0, 1023, 1024, TRAIN_RECORDS - 1]) {
      expectSameBytes(fine.images.subarray(index * CIFAR_PIXELS, (index + 1) * CIFAR_PIXELS), cifarPixels(index));
    }
  });

  it('reads the test split from the cifar-100-binary folder itself', async () => {
    const test = await loadCifarDataset(path.join(parent, 'cifar-100-binary'), 'test', 'cifar100', { labels: 'fine' });
    expect([...test.labels]).toEqual([99, 0]);
    expectSameBytes(test.images.subarray(0, CIFAR_PIXELS), cifarPixels(5));
  });

  it('rejects a fine label out of range, and a file with 2-byte headers read as CIFAR-10', async () => {
    const folder = await makeFolder('cifar100-bad-label');
    await fs.writeFile(path.join(folder, 'test.bin'), cifarFile([{ labels: [3, 100], index: 0 }]));
    await expectDatasetError(
      loadCifarDataset(folder, 'test', 'cifar100', { labels: 'coarse' }),
      `${path.join(folder, 'test.bin')} record 0 has fine label 100, outside CIFAR-100's 0..99`,
    );
    await expectDatasetError(loadCifarDataset(parent, 'train', 'cifar10'), 'data_batch_1.bin does not exist');
  });
});

const STL_SIDE = 96;
const STL_PLANE = STL_SIDE * STL_SIDE;
const STL_IMAGE = 3 * STL_PLANE;

/** A value per (image, channel, row, column) that differs between (row, column) and (column, row). */
function stlValue(image: number, channel: number, row: number, column: number): number {
  return (image * 17 + channel * 59 + row * 3 + column * 7) % 256;
}

/** STL-10's on-disk layout: each channel plane column-major, i.e. (row, column) at column*96 + row. */
function stlImagesFile(count: number, firstImage = 0): Uint8Array {
  const bytes = new Uint8Array(count * STL_IMAGE);
  for (let image = 0; image < count; image++) {
    for (let channel = 0; channel < 3; channel++) {
      for (let row = 0; row < STL_SIDE; row++) {
        for (let column = 0; column < STL_SIDE; column++) {
          bytes[image * STL_IMAGE + channel * STL_PLANE + column * STL_SIDE + row] = stlValue(firstImage + image, channel, row, column);
        }
      }
    }
  }
  return bytes;
}

function stlPixel(images: Uint8Array, image: number, channel: number, row: number, column: number): number | undefined {
  return images[image * STL_IMAGE + channel * STL_PLANE + row * STL_SIDE + column];
}

describe('STL-10 binary version', () => {
  let parent = '';
  let binary = '';
  beforeAll(async () => {
    parent = await makeFolder('stl10');
    binary = await makeFolder('stl10', 'stl10_binary');
    await fs.writeFile(path.join(binary, 'train_X.bin'), stlImagesFile(2));
    await fs.writeFile(path.join(binary, 'train_y.bin'), Uint8Array.from([1, 10]));
    await fs.writeFile(path.join(binary, 'test_X.bin'), stlImagesFile(1, 2));
    await fs.writeFile(path.join(binary, 'test_y.bin'), Uint8Array.from([5]));
    await fs.writeFile(path.join(binary, 'unlabeled_X.bin'), stlImagesFile(3, 3));
  });

  it('transposes each column-major plane to row-major and shifts labels 1..10 to 0..9', async () => {
    const train = await loadStl10Dataset(parent, 'train');
    expect([train.count, train.channels, train.height, train.width, train.classes]).toEqual([2, 3, 96, 96, 10]);
    expect([...train.labels]).toEqual([0, 9]);
    expect(stlPixel(train.images, 0, 0, 1, 2)).toBe(stlValue(0, 0, 1, 2));
    expect(stlPixel(train.images, 0, 0, 2, 1)).toBe(stlValue(0, 0, 2, 1));
    expect(stlValue(0, 0, 1, 2)).not.toBe(stlValue(0, 0, 2, 1));
    expect(stlPixel(train.images, 1, 2, 95, 0)).toBe(stlValue(1, 2, 95, 0));
    expect(stlPixel(train.images, 1, 1, 10, 80)).toBe(stlValue(1, 1, 10, 80));
    const expected = Uint8Array.from({ length: 2 * STL_IMAGE }, (_, offset) => {
      const image = Math.floor(offset / STL_IMAGE);
      const channel = Math.floor((offset % STL_IMAGE) / STL_PLANE);
      const within = offset % STL_PLANE;
      return stlValue(image, channel, Math.floor(within / STL_SIDE), within % STL_SIDE);
    });
    expectSameBytes(train.images, expected);
  });

  it('takes the stl10_binary folder itself as well as its parent', async () => {
    const test = await loadStl10Dataset(binary, 'test');
    expect(test).toEqual(await loadStl10Dataset(parent, 'test'));
    expect([...test.labels]).toEqual([4]);
    expect(stlPixel(test.images, 0, 1, 40, 3)).toBe(stlValue(2, 1, 40, 3));
  });

  it('labels every unlabeled image STL10_NO_LABEL (255), with 10 classes', async () => {
    const unlabeled = await loadStl10Dataset(parent, 'unlabeled');
    expect(STL10_NO_LABEL).toBe(255);
    expect([unlabeled.count, unlabeled.classes]).toEqual([3, 10]);
    expect([...unlabeled.labels]).toEqual([255, 255, 255]);
    expect(stlPixel(unlabeled.images, 2, 2, 7, 93)).toBe(stlValue(5, 2, 7, 93));
  });

  it('says where to get the dataset when the folder or a file is missing', async () => {
    await expectDatasetError(
      loadStl10Dataset(path.join(scratch, 'no-stl'), 'train'),
      'no-stl does not exist',
      'https://cs.stanford.edu/~acoates/stl10/',
    );
    const folder = await makeFolder('stl10-no-labels');
    await fs.writeFile(path.join(folder, 'test_X.bin'), stlImagesFile(1));
    await expectDatasetError(loadStl10Dataset(folder, 'test'), `${path.join(folder, 'test_y.bin')} does not exist`, 'stl10_binary.tar.gz');
  });

  it('rejects a truncated images file and a labels file of the wrong length, with byte counts', async () => {
    const folder = await makeFolder('stl10-truncated');
    await fs.writeFile(path.join(folder, 'train_X.bin'), stlImagesFile(2).subarray(0, STL_IMAGE + 100));
    await fs.writeFile(path.join(folder, 'train_y.bin'), Uint8Array.from([1, 2]));
    await expectDatasetError(
      loadStl10Dataset(folder, 'train'),
      `${path.join(folder, 'train_X.bin')} is truncated or corrupt`,
      'holds 27748 bytes, not a whole number of 27648-byte STL-10 images (1 images and 100 bytes over)',
    );
    await fs.writeFile(path.join(folder, 'train_X.bin'), stlImagesFile(2));
    await fs.writeFile(path.join(folder, 'train_y.bin'), Uint8Array.from([1]));
    await expectDatasetError(
      loadStl10Dataset(folder, 'train'),
      `${path.join(folder, 'train_y.bin')} is truncated or corrupt`,
      'holds 1 bytes',
      'holds 2 images',
    );
  });

  it('says so when the labels file is a folder', async () => {
    const folder = await makeFolder('stl10-labels-folder');
    await fs.writeFile(path.join(folder, 'test_X.bin'), stlImagesFile(1));
    await makeFolder('stl10-labels-folder', 'test_y.bin');
    await expectDatasetError(
      loadStl10Dataset(folder, 'test'),
      new RegExp(`^${path.join(folder, 'test_y.bin')} is a folder, where a file was expected\\. Download the binary version of STL-10`),
    );
  });

  it('rejects labels outside 1..10', async () => {
    const folder = await makeFolder('stl10-bad-label');
    await fs.writeFile(path.join(folder, 'test_X.bin'), stlImagesFile(2));
    for (const bad of [0, 11]) {
      await fs.writeFile(path.join(folder, 'test_y.bin'), Uint8Array.from([3, bad]));
      await expectDatasetError(
        loadStl10Dataset(folder, 'test'),
        `${path.join(folder, 'test_y.bin')} gives image 1 the label ${bad}, outside STL-10's 1..10`,
      );
    }
  });
});

async function solidPng(
  file: string,
  width: number,
  height: number,
  colour: { r: number; g: number; b: number; alpha?: number },
): Promise<void> {
  const channels = colour.alpha === undefined ? 3 : 4;
  await sharp({ create: { width, height, channels, background: { alpha: 1, ...colour } } })
    .png()
    .toFile(file);
}

describe('image folder', () => {
  let folder = '';
  beforeAll(async () => {
    folder = await makeFolder('images');
    // 'Zebra' sorts before 'apple' by code point, as torchvision's sorted() orders them.
    for (const className of ['apple', 'Zebra', 'mango']) await makeFolder('images', className);
    await solidPng(path.join(folder, 'apple', 'b.png'), 9, 5, { r: 10, g: 20, b: 30 });
    await solidPng(path.join(folder, 'apple', 'a.PNG'), 3, 7, { r: 200, g: 100, b: 50, alpha: 1 });
    await sharp({ create: { width: 6, height: 6, channels: 3, background: { r: 77, g: 77, b: 77 } } })
      .webp({ lossless: true })
      .toFile(path.join(folder, 'mango', 'grey.webp'));
    // A 4x4 image with a different colour per pixel: at size 4 nothing is resampled, so the planar layout is checkable exactly.
    const ramp = Buffer.alloc(4 * 4 * 3);
    for (let pixel = 0; pixel < 16; pixel++) ramp.set([pixel, 100 + pixel, 200 + pixel], pixel * 3);
    await sharp(ramp, { raw: { width: 4, height: 4, channels: 3 } })
      .png()
      .toFile(path.join(folder, 'Zebra', 'ramp.png'));
    await fs.writeFile(path.join(folder, 'Zebra', 'notes.txt'), 'not an image');
    await makeFolder('images', '.ipynb_checkpoints');
  });

  it('labels sub-folders in name order and stores every image channel-planar', async () => {
    const dataset = await loadImageFolder(folder, { size: 4, channels: 3 });
    expect(dataset.classNames).toEqual(['Zebra', 'apple', 'mango']);
    expect([dataset.count, dataset.channels, dataset.height, dataset.width, dataset.classes]).toEqual([4, 3, 4, 4, 3]);
    // Within a class, files in name order: a.PNG before b.png.
    expect([...dataset.labels]).toEqual([0, 1, 1, 2]);
    const image = (index: number, channel: number) => [
      ...dataset.images.subarray((index * 3 + channel) * 16, (index * 3 + channel + 1) * 16),
    ];
    const ramp = Array.from({ length: 16 }, (_, pixel) => pixel);
    expect(image(0, 0)).toEqual(ramp);
    expect(image(0, 1)).toEqual(ramp.map((value) => 100 + value));
    expect(image(0, 2)).toEqual(ramp.map((value) => 200 + value));
    // Solid images of other shapes, cropped and resized to 4x4, keep their colour exactly; alpha is dropped.
    expect([image(1, 0), image(1, 1), image(1, 2)]).toEqual([200, 100, 50].map((value) => new Array(16).fill(value)));
    expect([image(2, 0), image(2, 1), image(2, 2)]).toEqual([10, 20, 30].map((value) => new Array(16).fill(value)));
    expect([image(3, 0), image(3, 1), image(3, 2)]).toEqual([77, 77, 77].map((value) => new Array(16).fill(value)));
  });

  it('converts to one grey channel and resizes, the same at any concurrency', async () => {
    const grey = await loadImageFolder(folder, { size: 3, channels: 1, concurrency: 1 });
    expect([grey.count, grey.channels, grey.height, grey.width]).toEqual([4, 1, 3, 3]);
    expect([...grey.images.subarray(3 * 9)]).toEqual(new Array(9).fill(77));
    expect(await loadImageFolder(folder, { size: 3, channels: 1, concurrency: 16 })).toEqual(grey);
  });

  it('names a corrupt image', async () => {
    const broken = await makeFolder('images-broken', 'cats');
    await solidPng(path.join(broken, 'fine.png'), 4, 4, { r: 1, g: 2, b: 3 });
    const jpeg = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 9, g: 9, b: 9 } } })
      .jpeg()
      .toBuffer();
    await fs.writeFile(path.join(broken, 'torn.jpg'), jpeg.subarray(0, 40));
    await expectDatasetError(
      loadImageFolder(path.dirname(broken), { size: 4, channels: 3 }),
      `${path.join(broken, 'torn.jpg')} could not be decoded`,
    );
  });

  it('says what layout it expects when there are no classes or a class has no images', async () => {
    const empty = await makeFolder('images-empty');
    await expectDatasetError(
      loadImageFolder(empty, { size: 4, channels: 3 }),
      'holds no class sub-folders',
      'Expected layout',
      '<class name>',
    );
    await solidPng(path.join(empty, 'loose.png'), 4, 4, { r: 1, g: 2, b: 3 });
    await expectDatasetError(loadImageFolder(empty, { size: 4, channels: 3 }), 'holds 1 image but no class sub-folders', 'Expected layout');
    const emptyClass = await makeFolder('images-empty', 'dogs');
    await expectDatasetError(loadImageFolder(empty, { size: 4, channels: 3 }), `${emptyClass} holds no .jpg, .jpeg, .png or .webp images`);
    await expectDatasetError(
      loadImageFolder(path.join(scratch, 'no-images'), { size: 4, channels: 3 }),
      'does not exist',
      'Expected layout',
    );
  });

  it('rejects bad options as a JavaScript caller expects', async () => {
    await expect(loadImageFolder(folder, { size: 0, channels: 3 })).rejects.toThrow(RangeError);
    await expect(loadImageFolder(folder, { size: 4, channels: 2 as 3 })).rejects.toThrow(/options\.channels/);
  });
});

function idxFile(shape: number[], values: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((n, k) => header.writeUInt32BE(n, 4 + 4 * k));
  return Buffer.concat([header, values]);
}

describe('MNIST-layout datasets through the config', () => {
  async function mnistFolder(name: string, side: number, labels: number[]): Promise<string> {
    const folder = await makeFolder(name);
    await fs.writeFile(
      path.join(folder, 't10k-images-idx3-ubyte'),
      idxFile([labels.length, side, side], new Uint8Array(labels.length * side * side)),
    );
    await fs.writeFile(path.join(folder, 't10k-labels-idx1-ubyte'), idxFile([labels.length], Uint8Array.from(labels)));
    return folder;
  }

  it('gives MNIST 10 classes whatever labels the split holds, and refuses a label of 10', async () => {
    const folder = await mnistFolder('mnist-few', 28, [0, 3, 3]);
    const test = await loadDataset(dataSchema.parse({ dataset: 'mnist', path: folder }), 'test');
    expect([test?.count, test?.classes]).toEqual([3, 10]);
    const bad = await mnistFolder('mnist-bad-label', 28, [0, 10]);
    await expectDatasetError(
      loadDataset(dataSchema.parse({ dataset: 'mnist', path: bad }), 'test'),
      `${path.join(bad, 't10k-labels-idx1-ubyte')} gives image 1 the label 10, outside the dataset's 10 classes (0..9)`,
    );
  });

  it("refuses images of another size than the dataset's", async () => {
    const folder = await mnistFolder('fashion-32', 32, [1]);
    await expectDatasetError(
      loadDataset(dataSchema.parse({ dataset: 'fashion-mnist', path: folder }), 'test'),
      `${folder} holds 32x32 images, but fashion-mnist images are 28x28`,
    );
  });
});
