// Reading dataset files: the error every reader throws, where the files are, how big they are, and
// exact reads in bounded chunks. Node's own errors (ENOENT, EISDIR, ...) are turned into messages
// that name the path and what was expected there.
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readAt } from '../io/files.js';

export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** What stands at a path the reader expected a file or a folder at, as a sentence. */
export function unreadablePath(where: string, expected: 'file' | 'folder', error: unknown, howToGetIt = ''): DatasetError {
  const code = (error as NodeJS.ErrnoException).code;
  const fix = howToGetIt ? ` ${howToGetIt}` : '';
  switch (code) {
    case 'ENOENT':
      return new DatasetError(`${where} does not exist.${fix}`);
    case 'ENOTDIR':
      return new DatasetError(`${where} does not exist: a folder on its path is a file.${fix}`);
    case 'EISDIR':
      return new DatasetError(`${where} is a folder, where a ${expected} was expected.${fix}`);
    case 'EACCES':
    case 'EPERM':
      return new DatasetError(`${where} cannot be read: permission denied. Make it readable by this user.`);
    default:
      return new DatasetError(`${where} cannot be read (${code ?? (error as Error).message}).${fix}`);
  }
}

/**
 * Returns `folder/subfolder` when it exists, else `folder` itself, so that callers may pass either the
 * unpacked dataset folder or the folder they unpacked the archive into.
 */
export async function resolveDatasetFolder(folder: string, subfolder: string, howToGetIt: string): Promise<string> {
  const nested = path.join(folder, subfolder);
  if ((await kindOf(nested)) === 'folder') return nested;
  const kind = await kindOf(folder);
  if (kind === 'folder') return folder;
  if (kind === 'missing') throw new DatasetError(`the dataset folder ${folder} does not exist. ${howToGetIt}`);
  throw new DatasetError(`the dataset folder ${folder} is a file, not a folder. ${howToGetIt}`);
}

/** Whether `candidate` is a folder, something else, or nothing (including a path through a file). */
export async function kindOf(candidate: string): Promise<'folder' | 'other' | 'missing'> {
  try {
    return (await fs.stat(candidate)).isDirectory() ? 'folder' : 'other';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw unreadablePath(candidate, 'folder', error);
  }
}

/** The size of `file`, or a DatasetError that names it and says how to get it when it is missing or no file. */
export async function sizeOfDatasetFile(file: string, howToGetIt: string): Promise<number> {
  let stats;
  try {
    stats = await fs.stat(file);
  } catch (error) {
    throw unreadablePath(file, 'file', error, howToGetIt);
  }
  if (stats.isDirectory()) throw new DatasetError(`${file} is a folder, where a file was expected. ${howToGetIt}`);
  if (!stats.isFile()) throw new DatasetError(`${file} is not a regular file. ${howToGetIt}`);
  return stats.size;
}

/** Opens `file` for reading, with a DatasetError naming it when that fails. */
export async function openDatasetFile(file: string, howToGetIt: string): Promise<FileHandle> {
  try {
    return await fs.open(file, 'r');
  } catch (error) {
    throw unreadablePath(file, 'file', error, howToGetIt);
  }
}

/** The whole of `file`, or null when it does not exist; any other failure is a DatasetError naming it. */
export async function readDatasetFileIfPresent(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw unreadablePath(file, 'file', error);
  }
}

/** Fills `target` with the bytes of `file` from `position` on; the file ending early means it was truncated while being read. */
export async function readExactly(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let filled: number;
  try {
    filled = await readAt(handle, target, position);
  } catch (error) {
    throw unreadablePath(file, 'file', error);
  }
  if (filled < target.length) {
    throw new DatasetError(
      `${file} ended after ${position + filled} bytes while ${position + target.length} were expected; it was truncated while being read`,
    );
  }
}
