// CIFAR-10 and CIFAR-100, the binary versions from https://www.cs.toronto.edu/~kriz/cifar.html.
// Each file is a run of fixed-size records with no header. A CIFAR-10 record is one label byte and
// 3072 pixel bytes; a CIFAR-100 record is a coarse label byte, a fine label byte and 3072 pixel bytes.
// The pixels are a 32x32 image as the red plane, then green, then blue, each plane row-major: already
// ImageDataset's channel-planar layout, so records are copied as they are.
import path from 'node:path';
import { openDatasetFile, readExactly, resolveDatasetFolder, sizeOfDatasetFile } from './dataset-files.js';
import { DatasetError } from './dataset-files.js';
import type { ImageDataset } from './image-dataset.js';

const CIFAR_SIDE = 32;
const CIFAR_CHANNELS = 3;
const CIFAR_PIXEL_BYTES = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE;
const CIFAR_SOURCE = 'https://www.cs.toronto.edu/~kriz/cifar.html';
/** Records read per file access: about 3 MB, so that a 150 MB file never sits whole in memory beside the output. */
const RECORDS_PER_READ = 1024;

interface LabelField {
  name: string;
  classes: number;
}

interface CifarLayout {
  title: string;
  archive: string;
  subfolder: string;
  files: Record<'train' | 'test', string[]>;
  /** The label bytes at the head of each record, in file order. */
  labelFields: LabelField[];
}

const CIFAR_LAYOUTS: Record<'cifar10' | 'cifar100', CifarLayout> = {
  cifar10: {
    title: 'CIFAR-10',
    archive: 'cifar-10-binary.tar.gz',
    subfolder: 'cifar-10-batches-bin',
    files: {
      train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
      test: ['test_batch.bin'],
    },
    labelFields: [{ name: 'label', classes: 10 }],
  },
  cifar100: {
    title: 'CIFAR-100',
    archive: 'cifar-100-binary.tar.gz',
    subfolder: 'cifar-100-binary',
    files: { train: ['train.bin'], test: ['test.bin'] },
    labelFields: [
      { name: 'coarse label', classes: 20 },
      { name: 'fine label', classes: 100 },
    ],
  },
};

export interface CifarOptions {
  /** CIFAR-100 only: the 100 fine classes (the default) or the 20 coarse superclasses. */
  labels?: 'fine' | 'coarse';
}

/**
 * Reads the binary version of CIFAR-10 or CIFAR-100. `folder` is `cifar-10-batches-bin` /
 * `cifar-100-binary` or the folder that holds it. CIFAR-100 gives its fine labels (100 classes) unless
 * `options.labels` is 'coarse' (20 superclasses).
 */
export async function loadCifarDataset(
  folder: string,
  split: 'train' | 'test',
  variant: 'cifar10' | 'cifar100',
  options: CifarOptions = {},
): Promise<ImageDataset> {
  const layout = CIFAR_LAYOUTS[variant];
  if (layout === undefined) throw new DatasetError(`unknown CIFAR variant ${JSON.stringify(variant)}: use 'cifar10' or 'cifar100'`);
  const fileNames = layout.files[split];
  if (fileNames === undefined) throw new DatasetError(`unknown ${layout.title} split ${JSON.stringify(split)}: use 'train' or 'test'`);
  const labelChoice = options.labels ?? 'fine';
  if (variant === 'cifar10' && labelChoice === 'coarse') {
    throw new DatasetError("CIFAR-10 has no coarse labels; labels: 'coarse' is for CIFAR-100");
  }
  const chosenField = variant === 'cifar100' && labelChoice === 'coarse' ? 0 : layout.labelFields.length - 1;

  const howToGetIt =
    `Download the binary version of ${layout.title} (${layout.archive}) from ${CIFAR_SOURCE}, unpack it, ` +
    `and pass the ${layout.subfolder} folder or the folder that holds it.`;
  const root = await resolveDatasetFolder(folder, layout.subfolder, howToGetIt);
  const labelBytes = layout.labelFields.length;
  const recordBytes = labelBytes + CIFAR_PIXEL_BYTES;

  // Sizes are checked for every file before anything is read, so a bad last batch fails at once, not after minutes.
  // The checks run together, but the error reported is the first file's in order, not whichever stat lost the race.
  const checked = await Promise.allSettled(
    fileNames.map(async (name) => {
      const file = path.join(root, name);
      const size = await sizeOfDatasetFile(file, howToGetIt);
      if (size === 0 || size % recordBytes !== 0) {
        throw new DatasetError(
          `${file} is truncated or corrupt: it holds ${size} bytes, not a whole number of ${recordBytes}-byte ` +
            `${layout.title} records (${Math.floor(size / recordBytes)} records and ${size % recordBytes} bytes over). ` +
            `Download it again: ${howToGetIt}`,
        );
      }
      return { file, records: size / recordBytes };
    }),
  );
  const failed = checked.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  const files = checked.map((result) => (result as PromiseFulfilledResult<{ file: string; records: number }>).value);
  const count = files.reduce((total, { records }) => total + records, 0);
  const images = new Uint8Array(count * CIFAR_PIXEL_BYTES);
  const labels = new Uint8Array(count);

  const chunk = new Uint8Array(RECORDS_PER_READ * recordBytes);
  let written = 0;
  for (const { file, records } of files) {
    const handle = await openDatasetFile(file, howToGetIt);
    try {
      for (let first = 0; first < records; first += RECORDS_PER_READ) {
        const inChunk = Math.min(RECORDS_PER_READ, records - first);
        const bytes = chunk.subarray(0, inChunk * recordBytes);
        await readExactly(handle, file, bytes, first * recordBytes);
        for (let k = 0; k < inChunk; k++) {
          const record = bytes.subarray(k * recordBytes, (k + 1) * recordBytes);
          // Every label byte is checked, not only the chosen one: a byte out of range in either means the
          // file is damaged or is another dataset's, and then its pixels cannot be trusted either.
          for (const [field, { name, classes }] of layout.labelFields.entries()) {
            const value = record[field]!;
            if (value >= classes) {
              throw new DatasetError(
                `${file} record ${first + k} has ${name} ${value}, outside ${layout.title}'s 0..${classes - 1}: ` +
                  `the file is corrupt or is not the ${layout.title} binary version. ${howToGetIt}`,
              );
            }
          }
          labels[written] = record[chosenField]!;
          images.set(record.subarray(labelBytes), written * CIFAR_PIXEL_BYTES);
          written++;
        }
      }
    } finally {
      await handle.close();
    }
  }

  const classes = layout.labelFields[chosenField]!.classes;
  return { images, labels, count, channels: CIFAR_CHANNELS, height: CIFAR_SIDE, width: CIFAR_SIDE, classes };
}
