// Reading the fixed-record binary datasets (CIFAR, STL-10): where the files are, how big they are, and
// exact reads in bounded chunks.
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import path from 'node:path';
import { DatasetError } from './idx.js';

/** One read() call is capped by Node at 2 GiB; 64 MiB steps stay far below it. */
const MAX_BYTES_PER_READ = 64 * 1024 * 1024;

/**
 * Returns `folder/subfolder` when it exists, else `folder` itself, so that callers may pass either the
 * unpacked dataset folder or the folder they unpacked the archive into.
 */
export async function resolveDatasetFolder(folder: string, subfolder: string, howToGetIt: string): Promise<string> {
  const nested = path.join(folder, subfolder);
  if (await isDirectory(nested)) return nested;
  if (await isDirectory(folder)) return folder;
  throw new DatasetError(`the dataset folder ${folder} does not exist (or is not a folder). ${howToGetIt}`);
}

async function isDirectory(candidate: string): Promise<boolean> {
  try {
    return (await fs.stat(candidate)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw error;
  }
}

/** The size of `file`, or a DatasetError that names it and says how to get it when it is missing. */
export async function sizeOfDatasetFile(file: string, howToGetIt: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetError(`${file} does not exist. ${howToGetIt}`);
    throw error;
  }
}

/** Fills `target` with the bytes of `file` from `position` on; the file ending early means it shrank while being read. */
export async function readExactly(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let filled = 0;
  while (filled < target.length) {
    const length = Math.min(target.length - filled, MAX_BYTES_PER_READ);
    const { bytesRead } = await handle.read(target, filled, length, position + filled);
    if (bytesRead === 0) {
      throw new DatasetError(`${file} ended after ${position + filled} bytes while ${position + target.length} were expected; it was truncated while being read`);
    }
    filled += bytesRead;
  }
}
