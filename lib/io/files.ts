// Reading and writing files of any size without half-written results: the primitives the checkpoint,
// dataset, report, embedding and export writers share. Errors are Node's own; each caller names the
// file in its own error class.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import path from 'node:path';

/** A single read or write is capped just under 2 GiB by Node; 1 GiB calls stay well inside it. */
const MAX_BYTES_PER_CALL = 1 << 30;

/**
 * Writes `file` atomically: to a temporary name in the same folder (`<file>.tmp-<pid>-<8 hex digits>`,
 * which run folders clear after a kill -9), flushed to disk, then renamed, so a crash leaves the
 * previous file or the new one, never half of one.
 */
export async function writeFileAtomically(file: string, chunks: readonly Uint8Array[]): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const handle = await fs.open(temporary, 'w');
  try {
    await writeAll(handle, file, chunks);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fs.rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fs.rename(temporary, file);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}

/**
 * Writes the chunks back to back, in calls under Node's 2 GiB limit, until every byte is down: one
 * writev of a larger list does write it all today, but reports the count as a negative 32-bit number,
 * so a short write could not be told from a full one.
 */
async function writeAll(handle: FileHandle, file: string, chunks: readonly Uint8Array[]): Promise<void> {
  let position = 0;
  for (const chunk of chunks) {
    let done = 0;
    while (done < chunk.byteLength) {
      const length = Math.min(chunk.byteLength - done, MAX_BYTES_PER_CALL);
      const { bytesWritten } = await handle.write(chunk, done, length, position + done);
      if (bytesWritten === 0) throw new Error(`writing ${file} stopped at byte ${position + done}: the disk accepted no more`);
      done += bytesWritten;
    }
    position += chunk.byteLength;
  }
}

/**
 * Reads into `target` from `position` until it is full or the file ends, in calls under Node's 2 GiB
 * limit; returns the bytes read (fewer than `target` holds only when the file ended first).
 */
export async function readAt(handle: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < target.byteLength) {
    const length = Math.min(target.byteLength - filled, MAX_BYTES_PER_CALL);
    const { bytesRead } = await handle.read(target, filled, length, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/**
 * Why an output file cannot be written at `file`, as a clause for the caller's message, or null when it
 * can: checked before long work, which would otherwise fail at its very end. `example` names a file for
 * the case where `file` is a folder.
 */
export async function unwritableOutputReason(file: string, example: string): Promise<string | null> {
  const folder = path.dirname(path.resolve(file));
  const stat = await fs.stat(folder).catch(() => null);
  if (stat === null) return `the folder ${folder} does not exist; create it (mkdir -p ${folder}) or choose another path`;
  if (!stat.isDirectory()) return `${folder} is a file, not a folder; choose another path`;
  if ((await fs.stat(file).catch(() => null))?.isDirectory()) return `it is a folder; name a file in it, e.g. ${path.join(file, example)}`;
  const writable = await fs.access(folder, fsConstants.W_OK).then(
    () => true,
    () => false,
  );
  return writable ? null : `the folder ${folder} is not writable; choose another path or fix its permissions`;
}

/** Why writing `file` failed, for the user: writeFileAtomically's own errors name its temporary file. */
export function writeFailureReason(file: string, error: unknown, otherPath = 'another path'): string {
  const { code, message } = error as NodeJS.ErrnoException;
  if (code === 'ENOSPC') return `the disk is full; free space or choose ${otherPath}`;
  if (code === 'ENOENT') return `its folder ${path.dirname(path.resolve(file))} has gone; create it again or choose ${otherPath}`;
  if (code === 'EACCES' || code === 'EPERM') return `permission denied; choose ${otherPath}`;
  return message;
}
