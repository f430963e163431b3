// STL-10, the binary version from https://cs.stanford.edu/~acoates/stl10/ (stl10_binary.tar.gz).
// *_X.bin files hold 96x96 colour images with no header, 27648 bytes each: the red plane, then green,
// then blue, each plane written column-major by MATLAB, so the value for (row r, column c) sits at
// c*96 + r. *_y.bin files hold one byte per image, the class 1..10. unlabeled_X.bin has no labels.
import path from 'node:path';
import { openDatasetFile, readExactly, resolveDatasetFolder, sizeOfDatasetFile } from './dataset-files.js';
import { DatasetError } from './dataset-files.js';
import type { ImageDataset } from './image-dataset.js';

const STL10_SIDE = 96;
const STL10_CHANNELS = 3;
const STL10_PLANE_BYTES = STL10_SIDE * STL10_SIDE;
const STL10_IMAGE_BYTES = STL10_CHANNELS * STL10_PLANE_BYTES;
const STL10_CLASSES = 10;
const STL10_SOURCE = 'https://cs.stanford.edu/~acoates/stl10/';
/** About 28 MB per read: transposing a chunk right after reading it touches memory that is still in cache. */
const IMAGES_PER_READ = 1024;

/** The label of every image of the 'unlabeled' split: no class, outside 0..9. */
export const STL10_NO_LABEL = 255;

const HOW_TO_GET_STL10 =
  `Download the binary version of STL-10 (stl10_binary.tar.gz) from ${STL10_SOURCE}, unpack it, ` +
  'and pass the stl10_binary folder or the folder that holds it.';

/** Turns a column-major square plane into a row-major one where it lies, swapping across the diagonal. */
function transposeSquarePlane(plane: Uint8Array, side: number): void {
  for (let row = 0; row < side; row++) {
    for (let column = row + 1; column < side; column++) {
      const upper = row * side + column;
      const lower = column * side + row;
      const value = plane[upper]!;
      plane[upper] = plane[lower]!;
      plane[lower] = value;
    }
  }
}

/**
 * Reads the binary version of STL-10. `folder` is `stl10_binary` or the folder that holds it. Labels come
 * as 0..9 (the files' 1..10 less one); for the 'unlabeled' split every label is STL10_NO_LABEL (255)
 * and `classes` is still 10, the classes the labelled splits use.
 * The unlabeled split is 2.7 GB: it is read in chunks straight into the one output buffer and
 * transposed there, never held twice.
 */
export async function loadStl10Dataset(folder: string, split: 'train' | 'test' | 'unlabeled'): Promise<ImageDataset> {
  if (split !== 'train' && split !== 'test' && split !== 'unlabeled') {
    throw new DatasetError(`unknown STL-10 split ${JSON.stringify(split)}: use 'train', 'test' or 'unlabeled'`);
  }
  const root = await resolveDatasetFolder(folder, 'stl10_binary', HOW_TO_GET_STL10);
  const imageFile = path.join(root, `${split}_X.bin`);
  const labelFile = split === 'unlabeled' ? undefined : path.join(root, `${split}_y.bin`);

  const imageBytes = await sizeOfDatasetFile(imageFile, HOW_TO_GET_STL10);
  if (imageBytes === 0 || imageBytes % STL10_IMAGE_BYTES !== 0) {
    throw new DatasetError(
      `${imageFile} is truncated or corrupt: it holds ${imageBytes} bytes, not a whole number of ` +
        `${STL10_IMAGE_BYTES}-byte STL-10 images (${Math.floor(imageBytes / STL10_IMAGE_BYTES)} images and ` +
        `${imageBytes % STL10_IMAGE_BYTES} bytes over). Download it again: ${HOW_TO_GET_STL10}`,
    );
  }
  const count = imageBytes / STL10_IMAGE_BYTES;
  // Labels are read and checked before the images, so a mismatch fails before gigabytes are read.
  const labels = labelFile === undefined ? new Uint8Array(count).fill(STL10_NO_LABEL) : await readStl10Labels(labelFile, count);

  const images = new Uint8Array(imageBytes);
  const handle = await openDatasetFile(imageFile, HOW_TO_GET_STL10);
  try {
    for (let first = 0; first < count; first += IMAGES_PER_READ) {
      const inChunk = Math.min(IMAGES_PER_READ, count - first);
      const chunk = images.subarray(first * STL10_IMAGE_BYTES, (first + inChunk) * STL10_IMAGE_BYTES);
      await readExactly(handle, imageFile, chunk, first * STL10_IMAGE_BYTES);
      for (let plane = 0; plane < inChunk * STL10_CHANNELS; plane++) {
        transposeSquarePlane(chunk.subarray(plane * STL10_PLANE_BYTES, (plane + 1) * STL10_PLANE_BYTES), STL10_SIDE);
      }
    }
  } finally {
    await handle.close();
  }
  return { images, labels, count, channels: STL10_CHANNELS, height: STL10_SIDE, width: STL10_SIDE, classes: STL10_CLASSES };
}

async function readStl10Labels(labelFile: string, count: number): Promise<Uint8Array> {
  const size = await sizeOfDatasetFile(labelFile, HOW_TO_GET_STL10);
  if (size !== count) {
    throw new DatasetError(
      `${labelFile} is truncated or corrupt: it holds ${size} bytes, one label per image, but its images file ` +
        `holds ${count} images. Download both again: ${HOW_TO_GET_STL10}`,
    );
  }
  const labels = new Uint8Array(count);
  const handle = await openDatasetFile(labelFile, HOW_TO_GET_STL10);
  try {
    await readExactly(handle, labelFile, labels, 0);
  } finally {
    await handle.close();
  }
  for (let index = 0; index < count; index++) {
    const label = labels[index]!;
    if (label < 1 || label > STL10_CLASSES) {
      throw new DatasetError(
        `${labelFile} gives image ${index} the label ${label}, outside STL-10's 1..${STL10_CLASSES}: ` +
          `the file is corrupt. Download it again: ${HOW_TO_GET_STL10}`,
      );
    }
    labels[index] = label - 1;
  }
  return labels;
}
