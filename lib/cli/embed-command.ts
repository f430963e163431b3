// `clamp-native embed`: backbone features of image files (or every image under folders) with a trained
// encoder, written as .npy (rows in the order of a .paths.txt list beside it) or JSON lines.
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { unwritableOutputReason, writeFailureReason, writeFileAtomically } from '../io/files.js';
import { isImageFile } from '../data/image-folder.js';
import { Encoder, type EncoderLoadOptions } from '../encode/encoder.js';
import { encodeNpy } from '../encode/npy.js';
import { progressLine } from '../format.js';
import { UsageError, wholeNumberFlag } from './flags.js';

export const EMBED_USAGE = `clamp-native embed --checkpoint PATH [options] FILE_OR_FOLDER...
  --checkpoint PATH    a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --out FILE           FILE.npy: float32 [n, dim], rows in the order of FILE.paths.txt beside it;
                       FILE.jsonl: one {"file", "embedding"} per line (default: JSON lines on stdout)
  --device D           cpu (default), cuda or cuda:<index>
  --precision P        auto (bf16 on Ampere and newer GPUs, float32 elsewhere), bf16 or fp32
  --threads N          LibTorch threads
  --batch N            images per forward pass (default 128)
  Folders are searched recursively for .jpg, .jpeg, .png and .webp files, in name order.
`;

/** The image files named, with folders expanded recursively in name order. */
async function imageFiles(inputs: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const input of inputs) {
    const stat = await fs.stat(input).catch(() => null);
    if (stat === null) throw new UsageError(`${input} does not exist; check the path`);
    if (stat.isDirectory()) {
      const entries = (await fs.readdir(input, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const nested = await imageFiles(
        entries.filter((e) => e.isDirectory() || (e.isFile() && isImageFile(e.name))).map((e) => path.join(input, e.name)),
      );
      out.push(...nested);
    } else {
      out.push(input);
    }
  }
  return out;
}

const count = (name: string, value: string | undefined) => wholeNumberFlag(name, value, 1);

/**
 * Refuses an --out that cannot be written before any image is embedded: found only at the end, it cost
 * the whole run, and the error named the temporary file rather than the user's path.
 */
async function checkWritable(out: string): Promise<void> {
  const reason = await unwritableOutputReason(out, 'embeddings.npy');
  if (reason) throw new UsageError(`--out ${out}: ${reason}`);
}

/** Writes one output file; a failure names the user's path and the reason, not the temporary file's. */
async function writeOutput(file: string, chunks: readonly Uint8Array[]): Promise<void> {
  try {
    await writeFileAtomically(file, chunks);
  } catch (error) {
    throw new Error(`could not write ${file}: ${writeFailureReason(file, error, 'another --out')}`);
  }
}

export async function runEmbed(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      checkpoint: { type: 'string' },
      out: { type: 'string' },
      device: { type: 'string' },
      precision: { type: 'string' },
      threads: { type: 'string' },
      batch: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(EMBED_USAGE);
    return 0;
  }
  if (values.checkpoint === undefined) throw new UsageError('embed needs --checkpoint');
  if (positionals.length === 0) throw new UsageError('embed needs at least one image file or folder');
  const format = values.out === undefined ? 'jsonl' : path.extname(values.out).toLowerCase();
  if (format !== '.npy' && format !== '.jsonl' && format !== 'jsonl')
    throw new UsageError(`--out must end in .npy or .jsonl, got '${values.out}'`);
  const threads = count('threads', values.threads);
  const maxBatch = count('batch', values.batch) ?? 128;
  if (values.out !== undefined) await checkWritable(values.out);
  const files = await imageFiles(positionals);
  if (files.length === 0) throw new UsageError(`no .jpg, .jpeg, .png or .webp files under ${positionals.join(', ')}`);

  const encoder = await Encoder.load(values.checkpoint, {
    ...(values.device ? { device: values.device } : {}),
    ...(values.precision ? { precision: values.precision as EncoderLoadOptions['precision'] } : {}),
    ...(threads ? { threads } : {}),
    maxBatch,
  });
  try {
    const embeddings = new Float32Array(files.length * encoder.dim);
    const started = performance.now();
    const progress = progressLine(process.stderr);
    for (let start = 0; start < files.length; start += maxBatch) {
      const chunk = files.slice(start, start + maxBatch);
      embeddings.set((await encoder.embed(chunk)).data, start * encoder.dim);
      progress.update(`embedded ${start + chunk.length}/${files.length} images`, start + chunk.length, files.length);
    }
    const seconds = (performance.now() - started) / 1000;
    progress.end(
      `embedded ${files.length} images (dim ${encoder.dim}) in ${seconds.toFixed(1)} s, ${(files.length / seconds).toFixed(0)} images/s`,
    );
    const lines = () =>
      files.map(
        (file, i) => `${JSON.stringify({ file, embedding: Array.from(embeddings.subarray(i * encoder.dim, (i + 1) * encoder.dim)) })}\n`,
      );
    if (values.out === undefined) {
      for (const line of lines()) process.stdout.write(line);
    } else if (format === '.npy') {
      await writeOutput(values.out, encodeNpy(embeddings, [files.length, encoder.dim]));
      const list = `${values.out.slice(0, -'.npy'.length)}.paths.txt`;
      await writeOutput(list, [Buffer.from(files.map((f) => `${f}\n`).join(''))]);
      process.stderr.write(`wrote ${values.out} [${files.length}, ${encoder.dim}] and ${list}\n`);
    } else {
      await writeOutput(values.out, [Buffer.from(lines().join(''))]);
      process.stderr.write(`wrote ${values.out}\n`);
    }
  } finally {
    encoder.dispose();
  }
  return 0;
}
