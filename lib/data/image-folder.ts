// A folder of ordinary image files, one sub-folder per class (the layout torchvision's ImageFolder reads):
//   folder/<class name>/<image>.{jpg,jpeg,png,webp}
// Classes are the sub-folders sorted by name, their index the label. Every image is decoded by sharp
// (libvips), cropped and resized to a square, and stored channel-planar like the other datasets.
import fs from 'node:fs/promises';
import path from 'node:path';
import { constants as bufferConstants } from 'node:buffer';
import sharp from 'sharp';
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { DatasetError } from './dataset-files.js';
import type { ImageDataset } from './image-dataset.js';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export const imageFolderOptionsSchema = z
  .object({
    /** Side of the square every image is cropped and resized to. */
    size: z.number().int().positive(),
    /** 1 converts every image to greyscale, 3 to sRGB. */
    channels: z.union([z.literal(1), z.literal(3)]),
    /** Images decoded at once; sharp decodes on libuv's thread pool, so more than its 4 threads rarely helps. */
    concurrency: z.number().int().positive().default(4),
  })
  .strict();

export type ImageFolderOptions = z.input<typeof imageFolderOptionsSchema>;

interface LabelledFile {
  file: string;
  label: number;
}

function expectedLayout(folder: string): string {
  return `Expected layout: ${path.join(folder, '<class name>', '<image>')}.{jpg,jpeg,png,webp}, one sub-folder per class.`;
}

/** Whether a file name has an image extension the readers decode (jpg, jpeg, png, webp). */
export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
}

/** Class sub-folders and their images, both in name order so that labels and sample order never depend on the file system. */
async function listLabelledFiles(folder: string): Promise<{ classNames: string[]; files: LabelledFile[] }> {
  let entries;
  try {
    entries = await fs.readdir(folder, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new DatasetError(`the image folder ${folder} does not exist (or is not a folder). ${expectedLayout(folder)}`);
    }
    throw error;
  }
  // Hidden entries (.git, .ipynb_checkpoints) are tool litter, never classes. stat() rather than the
  // entry's own type so that a class folder may be a symbolic link.
  const visible = entries.filter((entry) => !entry.name.startsWith('.'));
  const classNames: string[] = [];
  for (const entry of visible) {
    if ((await fs.stat(path.join(folder, entry.name))).isDirectory()) classNames.push(entry.name);
  }
  // Code-point order, as Python's sorted() gives torchvision, so labels agree with a PyTorch run on the same folder.
  classNames.sort();
  if (classNames.length === 0) {
    const looseImages = visible.filter((entry) => isImageFile(entry.name)).length;
    const found =
      looseImages > 0 ? `holds ${looseImages} image${looseImages === 1 ? '' : 's'} but no class sub-folders` : 'holds no class sub-folders';
    throw new DatasetError(`the image folder ${folder} ${found}. ${expectedLayout(folder)}`);
  }

  const files: LabelledFile[] = [];
  const classesWithoutImages: string[] = [];
  for (const [label, className] of classNames.entries()) {
    const classFolder = path.join(folder, className);
    const names = (await fs.readdir(classFolder, { withFileTypes: true }))
      .filter((entry) => !entry.isDirectory() && !entry.name.startsWith('.') && isImageFile(entry.name))
      .map((entry) => entry.name)
      .sort();
    if (names.length === 0) classesWithoutImages.push(classFolder);
    for (const name of names) files.push({ file: path.join(classFolder, name), label });
  }
  if (classesWithoutImages.length > 0) {
    // An empty class would still take a label that no sample carries; better to say so than train on it.
    throw new DatasetError(
      `${classesWithoutImages.join(', ')} ${classesWithoutImages.length === 1 ? 'holds' : 'hold'} no .jpg, .jpeg, .png or .webp ` +
        `images; every class sub-folder needs at least one, so add images or remove the empty folder. ${expectedLayout(folder)}`,
    );
  }
  return { classNames, files };
}

/** sharp's steps from a source to size x size pixels with `channels` channels. */
function decodePipeline(source: string | Buffer, size: number, channels: 1 | 3): sharp.Sharp {
  // autoOrient: phone photos store their rotation in EXIF; without it they would train sideways.
  const pipeline = sharp(source).autoOrient().resize(size, size, { fit: 'cover' }).removeAlpha();
  // toColourspace('srgb') also turns greyscale and CMYK sources into three channels.
  return channels === 1 ? pipeline.grayscale() : pipeline.toColourspace('srgb');
}

/**
 * Why a source did not decode. sharp reports a missing file, a folder and an unreadable file alike as
 * input it cannot read, so a file path is looked at before the file is called corrupt.
 */
async function undecodable(source: string | Buffer, name: string, error: unknown): Promise<DatasetError> {
  if (typeof source === 'string') {
    const stat = await fs.stat(source).catch((failure: NodeJS.ErrnoException) => failure);
    if (stat instanceof Error) {
      const code = stat.code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return new DatasetError(`${name} does not exist; check the path`);
      if (code === 'EACCES' || code === 'EPERM') return new DatasetError(`${name} cannot be read (permission denied); fix its permissions`);
    } else if (stat.isDirectory()) {
      return new DatasetError(`${name} is a folder, not an image file`);
    } else if (stat.size === 0) {
      return new DatasetError(`${name} is empty (0 bytes); replace or delete it`);
    }
  }
  return new DatasetError(
    `${name} could not be decoded: ${(error as Error).message}. The file is corrupt or not an image; replace or delete it.`,
  );
}

/**
 * Decodes an image file or encoded bytes (JPEG, PNG, WebP, ...) to size x size interleaved (HWC) bytes
 * with exactly `channels` channels: cropped to fill the square, alpha dropped. `name` labels errors.
 * The dataset reader and the Encoder both decode through here, so served images match training ones.
 */
export async function decodeImage(
  source: string | Buffer,
  size: number,
  channels: 1 | 3,
  name = typeof source === 'string' ? source : 'the encoded image',
): Promise<Uint8Array> {
  // Checked first: sharp throws its bare "Input Buffer is empty" from its constructor.
  if (Buffer.isBuffer(source) && source.length === 0)
    throw new DatasetError(`${name} is empty (0 bytes); pass the bytes of a JPEG, PNG or WebP image`);
  let decoded: { data: Buffer; info: sharp.OutputInfo };
  try {
    decoded = await decodePipeline(source, size, channels).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw await undecodable(source, name, error);
  }
  const { data, info } = decoded;
  if (info.width !== size || info.height !== size || info.channels !== channels || data.length !== size * size * channels) {
    throw new DatasetError(
      `${name} decoded to ${info.width}x${info.height}x${info.channels}, not the ${size}x${size}x${channels} asked for`,
    );
  }
  return data;
}

/**
 * Reads an image-per-file dataset: class = sub-folder (sorted by name; `classNames[label]` names it),
 * images cropped to fill a `size` x `size` square (`fit: 'cover'`), alpha dropped, converted to
 * greyscale (`channels: 1`) or sRGB (`channels: 3`). Up to `concurrency` images (default 4) decode at once.
 */
export async function loadImageFolder(folder: string, options: ImageFolderOptions): Promise<ImageDataset & { classNames: string[] }> {
  const parsed = imageFolderOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'options');
  const { size, channels, concurrency } = parsed.data;

  const { classNames, files } = await listLabelledFiles(folder);
  if (classNames.length > 256) {
    throw new DatasetError(`${folder} has ${classNames.length} class sub-folders; labels are bytes, so at most 256 classes fit`);
  }
  const count = files.length;
  const imageBytes = channels * size * size;
  if (count * imageBytes > bufferConstants.MAX_LENGTH) {
    throw new DatasetError(
      `${folder} holds ${count} images; at ${size}x${size}x${channels} they need ${count * imageBytes} bytes, more than ` +
        `one buffer may hold (${bufferConstants.MAX_LENGTH}). Use a smaller size or split the folder.`,
    );
  }
  const images = new Uint8Array(count * imageBytes);
  const labels = Uint8Array.from(files, ({ label }) => label);

  const pixels = size * size;
  let nextIndex = 0;
  let firstFailure: { error: unknown } | undefined;
  const decodeWorker = async (): Promise<void> => {
    while (firstFailure === undefined && nextIndex < count) {
      const index = nextIndex++;
      try {
        const interleaved = await decodeImage(files[index]!.file, size, channels);
        const planes = images.subarray(index * imageBytes, (index + 1) * imageBytes);
        for (let channel = 0; channel < channels; channel++) {
          const plane = channel * pixels;
          for (let pixel = 0; pixel < pixels; pixel++) planes[plane + pixel] = interleaved[pixel * channels + channel]!;
        }
      } catch (error) {
        firstFailure ??= { error };
      }
    }
  };
  // Every worker is awaited even after a failure, so that no decode still writes into `images` once this returns.
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, decodeWorker));
  if (firstFailure !== undefined) throw firstFailure.error;

  return { images, labels, count, channels, height: size, width: size, classes: classNames.length, classNames };
}
