// Property-based tests of every reader of outside bytes: small valid files, truncated, bit-flipped, or
// with their headers rewritten, must either read (and then hold no more than the file) or fail with the
// reader's own error and a message. Anything else (a TypeError from a typed-array constructor, a JSON
// SyntaxError, an allocation the file cannot back) is a reader bug. Seeds are fixed so that a failure
// reproduces; fast-check prints the shrunk counterexample.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idx } from './idx-bytes.js';
import { CHECKPOINT_FORMAT, readCheckpoint, readCheckpointMetadata } from '../lib/checkpoint/checkpoint.js';
import {
  CheckpointError,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  type NamedTensorData,
} from '../lib/checkpoint/safetensors.js';
import { ConfigError } from '../lib/config/errors.js';
import { readConfigFile, resolveTrainConfig } from '../lib/config/train-config.js';
import { loadCifarDataset } from '../lib/data/cifar.js';
import { DatasetError } from '../lib/data/dataset-files.js';
import { loadIdxDataset, parseIdx, readIdx } from '../lib/data/idx.js';
import { loadStl10Dataset } from '../lib/data/stl10.js';

const SEED = 20_240_614;
/** Runs per property: enough to reach every check of these small files, few enough for a shared two-core machine. */
const RUNS_IN_MEMORY = 1000;
const RUNS_ON_DISK = 250;

let scratch = '';
beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-fuzz-'));
});
afterAll(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

type Mutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'append'; bytes: Uint8Array };

/**
 * One to four byte-level edits. Positions lean on `hot` (headers, label bytes), where a random position
 * in a file of pixels would rarely land.
 */
function mutations(length: number, hot: readonly number[]): fc.Arbitrary<Mutation[]> {
  const position = hot.length > 0 ? fc.oneof(fc.constantFrom(...hot), fc.nat(Math.max(0, length - 1))) : fc.nat(Math.max(0, length - 1));
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant('truncate' as const), at: fc.oneof(position, fc.nat(length)) }),
    fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat(7) }),
    fc.record({
      kind: fc.constant('set' as const),
      at: position,
      value: fc.oneof(fc.constantFrom(0, 1, 9, 10, 99, 100, 0x7f, 0x80, 0xff), fc.nat(255)),
    }),
    fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  );
  return fc.array(mutation, { minLength: 1, maxLength: 4 });
}

function mutate(base: Uint8Array, edits: readonly Mutation[]): Uint8Array {
  let bytes = Uint8Array.from(base);
  for (const edit of edits) {
    if (edit.kind === 'append') {
      bytes = Uint8Array.from([...bytes, ...edit.bytes]);
      continue;
    }
    if (bytes.length === 0) continue;
    const at = edit.at % (edit.kind === 'truncate' ? bytes.length + 1 : bytes.length);
    if (edit.kind === 'truncate') bytes = bytes.slice(0, at);
    else if (edit.kind === 'flip') bytes[at] = bytes[at]! ^ (1 << edit.bit);
    else if (edit.kind === 'set') bytes[at] = edit.value;
    else bytes = Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(at + edit.length)]);
  }
  return bytes;
}

/** What a property's reader did: read, or threw this. */
async function outcome<T>(read: () => Promise<T> | T): Promise<{ value: T } | { error: unknown }> {
  try {
    return { value: await read() };
  } catch (error) {
    return { error };
  }
}

function expectOwnError(error: unknown, type: new (message: string) => Error): void {
  if (!(error instanceof type)) throw new Error(`expected a ${type.name}, got ${String((error as Error)?.stack ?? error)}`);
  expect(error.message.length).toBeGreaterThan(0);
}

/** Sizes that break naive readers: zero, powers of two near the 32-bit and 53-bit limits, negatives, fractions. */
const AWKWARD_NUMBERS = [
  0,
  1,
  2,
  7,
  8,
  255,
  256,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 40,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 64,
  -1,
  1.5,
  1e300,
];

describe('IDX reader', () => {
  const images = idx([3, 2, 2], [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]);
  const labels = idx([3], [0, 9, 4]);
  const hotImages = Array.from({ length: 16 }, (_, k) => k);
  const hotLabels = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

  /** A header with dims and sizes of any magnitude, followed by a few value bytes. */
  const rewrittenHeader = fc
    .record({
      type: fc.constantFrom(0x08, 0x08, 0x09, 0x0d),
      dims: fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constant(255)),
      sizes: fc.array(fc.oneof(fc.constantFrom(0, 1, 3, 2 ** 31, 2 ** 32 - 1), fc.nat()), { maxLength: 6 }),
      tail: fc.uint8Array({ maxLength: 24 }),
    })
    .map(({ type, dims, sizes, tail }) => {
      const header = Buffer.alloc(4 + 4 * sizes.length);
      header[2] = type;
      header[3] = dims;
      sizes.forEach((n, k) => header.writeUInt32BE(n >>> 0, 4 + 4 * k));
      return Uint8Array.from(Buffer.concat([header, tail]));
    });

  it('parseIdx: mutated or rewritten buffers parse consistently or raise DatasetError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          mutations(images.length, hotImages).map((edits) => mutate(images, edits)),
          rewrittenHeader,
        ),
        (bytes) => {
          let parsed;
          try {
            parsed = parseIdx(bytes, 'fuzzed.idx');
          } catch (error) {
            expectOwnError(error, DatasetError);
            return;
          }
          expect(parsed.data.length).toBe(parsed.shape.reduce((a, b) => a * b, 1));
          expect(parsed.data.length).toBeLessThanOrEqual(bytes.length);
        },
      ),
      { seed: SEED, numRuns: RUNS_IN_MEMORY },
    );
  });

  it('readIdx: mutated raw and gzip files read or raise DatasetError', async () => {
    const gz = zlib.gzipSync(images);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          mutations(images.length, hotImages).map((edits) => ({ name: 'raw-idx3-ubyte', bytes: mutate(images, edits) })),
          mutations(images.length, hotImages).map((edits) => ({
            name: 'inner-idx3-ubyte.gz',
            bytes: zlib.gzipSync(mutate(images, edits)),
          })),
          mutations(gz.length, [0, 1, 2, 3, gz.length - 8, gz.length - 4, gz.length - 1]).map((edits) => ({
            name: 'outer-idx3-ubyte.gz',
            bytes: mutate(gz, edits),
          })),
        ),
        async ({ name, bytes }) => {
          const folder = await fs.mkdtemp(path.join(scratch, 'idx-'));
          await fs.writeFile(path.join(folder, name), bytes);
          const result = await outcome(() => readIdx(path.join(folder, name.replace(/\.gz$/, ''))));
          if ('error' in result) expectOwnError(result.error, DatasetError);
          await fs.rm(folder, { recursive: true });
        },
      ),
      { seed: SEED, numRuns: RUNS_ON_DISK },
    );
  });

  it('loadIdxDataset: mutated image and label files load with labels in range, or raise DatasetError', async () => {
    await fc.assert(
      fc.asyncProperty(
        mutations(images.length, hotImages),
        mutations(labels.length, hotLabels),
        fc.boolean(),
        async (imageEdits, labelEdits, both) => {
          const folder = await fs.mkdtemp(path.join(scratch, 'idx-set-'));
          await fs.writeFile(path.join(folder, 'train-images-idx3-ubyte'), both ? mutate(images, imageEdits) : images);
          await fs.writeFile(path.join(folder, 'train-labels-idx1-ubyte'), mutate(labels, labelEdits));
          const result = await outcome(() => loadIdxDataset(folder, 'train'));
          if ('error' in result) expectOwnError(result.error, DatasetError);
          else {
            const { count, height, width, classes } = result.value;
            expect(result.value.images.length).toBe(count * height * width);
            expect(result.value.labels.length).toBe(count);
            // The class count is the dataset's, never one more than whatever label a damaged byte holds.
            expect(classes).toBe(10);
            expect(result.value.labels.every((label) => label < classes)).toBe(true);
          }
          await fs.rm(folder, { recursive: true });
        },
      ),
      { seed: SEED, numRuns: RUNS_ON_DISK },
    );
  });
});

describe('CIFAR and STL-10 readers', () => {
  const CIFAR_PIXELS = 3 * 32 * 32;
  function cifarRecords(labels: number[][]): Uint8Array {
    return Uint8Array.from(
      labels.flatMap((head, index) => [...head, ...Array.from({ length: CIFAR_PIXELS }, (_, k) => (index + k) % 256)]),
    );
  }

  it.each([
    ['cifar10', 'test_batch.bin', cifarRecords([[3], [9]]), 1 + CIFAR_PIXELS],
    [
      'cifar100',
      'test.bin',
      cifarRecords([
        [19, 99],
        [0, 42],
      ]),
      2 + CIFAR_PIXELS,
    ],
  ] as const)('%s: mutated batches load with labels in range, or raise DatasetError', async (variant, name, file, record) => {
    const hot = [0, 1, record, record + 1, file.length - 1];
    await fc.assert(
      fc.asyncProperty(mutations(file.length, hot), fc.constantFrom('fine', 'coarse'), async (edits, labels) => {
        const folder = await fs.mkdtemp(path.join(scratch, `${variant}-`));
        await fs.writeFile(path.join(folder, name), mutate(file, edits));
        const result = await outcome(() => loadCifarDataset(folder, 'test', variant, { labels: variant === 'cifar100' ? labels : 'fine' }));
        if ('error' in result) expectOwnError(result.error, DatasetError);
        else {
          expect(result.value.images.length).toBe(result.value.count * CIFAR_PIXELS);
          expect(result.value.labels.every((label) => label < result.value.classes)).toBe(true);
        }
        await fs.rm(folder, { recursive: true });
      }),
      { seed: SEED, numRuns: RUNS_ON_DISK },
    );
  });

  it('stl10: mutated image and label files load with labels 0..9, or raise DatasetError', async () => {
    const image = Uint8Array.from({ length: 3 * 96 * 96 }, (_, k) => k % 251);
    const images = Uint8Array.from([...image, ...image]);
    const labels = Uint8Array.from([1, 10]);
    await fc.assert(
      fc.asyncProperty(
        mutations(images.length, [images.length - 1, image.length]),
        mutations(labels.length, [0, 1]),
        fc.boolean(),
        async (imageEdits, labelEdits, both) => {
          const folder = await fs.mkdtemp(path.join(scratch, 'stl10-'));
          await fs.writeFile(path.join(folder, 'test_X.bin'), both ? mutate(images, imageEdits) : images);
          await fs.writeFile(path.join(folder, 'test_y.bin'), mutate(labels, labelEdits));
          const result = await outcome(() => loadStl10Dataset(folder, 'test'));
          if ('error' in result) expectOwnError(result.error, DatasetError);
          else expect(result.value.labels.every((label) => label < 10)).toBe(true);
          await fs.rm(folder, { recursive: true });
        },
      ),
      { seed: SEED, numRuns: RUNS_ON_DISK },
    );
  });
});

describe('safetensors reader', () => {
  const metadata = {
    format: CHECKPOINT_FORMAT,
    config: '{"schedule":{"epochs":2}}',
    position: '{"epoch":0,"batch":1,"step":1}',
    metrics: '{}',
  };
  const tensors: NamedTensorData[] = [
    { name: 'w', dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
    { name: 'step', dtype: 'int64', shape: [], data: new BigInt64Array([3n]) },
    { name: 'mask', dtype: 'uint8', shape: [3], data: Uint8Array.from([1, 0, 1]) },
  ];
  const valid = Uint8Array.from(Buffer.concat(encodeSafetensors(tensors, metadata)));
  const headerLength = Number(Buffer.from(valid).readBigUInt64LE(0));
  const header = JSON.parse(Buffer.from(valid.subarray(8, 8 + headerLength)).toString()) as Record<string, Record<string, unknown>>;
  const data = valid.subarray(8 + headerLength);

  /** The header rewritten field by field, then framed with a length that matches it, so the edit reaches the checks past the length. */
  const rewrittenHeader = fc
    .record({
      tensor: fc.constantFrom('w', 'step', 'mask', '__metadata__'),
      field: fc.constantFrom('dtype', 'shape', 'data_offsets', 'entry', 'format', 'extra'),
      value: fc.oneof(
        fc.constantFrom<unknown>('F32', 'F16', 'I64', 'BOOL', 'constructor', '__proto__', null, [], {}),
        fc.array(fc.constantFrom(...AWKWARD_NUMBERS), { maxLength: 3 }),
        // Other tensors' spans and their pieces: overlaps and holes that still add up to the data length.
        fc.constantFrom<unknown>([0, 8], [8, 32], [32, 35], [0, 24], [24, 32], [8, 16], [31, 34], [3], [2, 4], [6]),
        fc.constantFrom(...AWKWARD_NUMBERS),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      dataEdits: fc.option(mutations(data.length, [0, data.length - 1]), { nil: undefined }),
    })
    .map(({ tensor, field, value, dataEdits }) => {
      const edited = structuredClone(header) as Record<string, unknown>;
      const target =
        tensor === '__metadata__' ? (edited.__metadata__ as Record<string, unknown>) : (edited[tensor] as Record<string, unknown>);
      if (field === 'entry') edited[tensor] = value;
      else if (field === 'extra') edited[`extra-${String(value).slice(0, 8)}`] = value;
      else target[field] = value;
      const json = Buffer.from(JSON.stringify(edited));
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(json.length));
      return Uint8Array.from(Buffer.concat([length, json, dataEdits ? mutate(data, dataEdits) : data]));
    });
  const inputs = fc.oneof(
    mutations(valid.length, [0, 1, 4, 7, 8, 9, headerLength, headerLength + 7, valid.length - 1]).map((edits) => mutate(valid, edits)),
    rewrittenHeader,
  );

  /**
   * What was read must be what the header says, independently parsed here: its metadata object, and
   * tensors that tile the data section (no overlaps, no holes), each holding the bytes at its offsets.
   */
  function expectFaithful(read: { tensors: readonly NamedTensorData[]; metadata: Record<string, string> }, bytes: Uint8Array): void {
    const length = Number(Buffer.from(bytes).readBigUInt64LE(0));
    const parsed = JSON.parse(Buffer.from(bytes.subarray(8, 8 + length)).toString()) as Record<
      string,
      { data_offsets: [number, number]; shape: number[] }
    >;
    expect(read.metadata).toEqual(parsed.__metadata__ ?? {});
    const spans = read.tensors.map((t) => parsed[t.name]!.data_offsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let end = 0;
    for (const [begin, stop] of spans) {
      expect(begin).toBe(end);
      end = stop;
    }
    expect(end).toBe(bytes.length - 8 - length);
    for (const t of read.tensors) {
      const [begin, stop] = parsed[t.name]!.data_offsets;
      expect(t.shape).toEqual(parsed[t.name]!.shape);
      expect(
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(
          Buffer.from(bytes.subarray(8 + length + begin, 8 + length + stop)),
        ),
      ).toBe(true);
    }
  }

  /** The same bytes inside a larger pooled Buffer, at an odd offset: every tensor unaligned. */
  function atOddOffset(bytes: Uint8Array): Buffer {
    return Buffer.concat([Buffer.from([0]), bytes]).subarray(1);
  }

  /** Every tensor lies within these small files, so a failed allocation can only be one the file does not back. */
  function expectCheckpointError(error: unknown): void {
    expectOwnError(error, CheckpointError);
    expect((error as Error).message).not.toMatch(/could not be allocated/);
  }

  it('decodeSafetensors: mutated or rewritten buffers decode to what their header says, at any offset, or raise CheckpointError', () => {
    fc.assert(
      fc.property(inputs, (bytes) => {
        let read;
        try {
          read = decodeSafetensors(bytes, 'fuzzed.safetensors');
        } catch (error) {
          expectCheckpointError(error);
          return;
        }
        expectFaithful(read, bytes);
        expect(decodeSafetensors(atOddOffset(bytes), 'fuzzed.safetensors')).toEqual(read);
      }),
      { seed: SEED, numRuns: RUNS_IN_MEMORY },
    );
  });

  it('readSafetensors, its header reader and the checkpoint readers agree with the in-memory decoder, or raise CheckpointError', async () => {
    const file = path.join(scratch, 'fuzzed.safetensors');
    await fc.assert(
      fc.asyncProperty(inputs, async (bytes) => {
        await fs.writeFile(file, bytes);
        const fromFile = await outcome(() => readSafetensors(file));
        const inMemory = await outcome(() => decodeSafetensors(bytes, file));
        if ('error' in fromFile) {
          expectCheckpointError(fromFile.error);
          expect('error' in inMemory && (inMemory.error as Error).message).toBe((fromFile.error as Error).message);
        } else {
          expectFaithful(fromFile.value, bytes);
          expect('value' in inMemory && inMemory.value).toEqual(fromFile.value);
        }
        for (const read of [readSafetensorsHeader, readCheckpointMetadata, readCheckpoint] as ((file: string) => Promise<unknown>)[]) {
          const result = await outcome(() => read(file));
          if ('error' in result) expectCheckpointError(result.error);
        }
      }),
      { seed: SEED, numRuns: RUNS_ON_DISK },
    );
  });
});

describe('config reader', () => {
  const settings: Record<string, unknown> = {
    preset: 'cifar10',
    schedule: { epochs: 20, warmupEpochs: 2 },
    model: { projectorHidden: [512], stem: 'cifar' },
    run: { batchSize: 64, views: 4 },
    augment: [{ size: 32, crop: { scale: [0.2, 1] } }],
    eval: { every: 5 },
  };

  /** A setting replaced by any JSON value or an awkward key, at a random depth. */
  const editedSettings = fc
    .record({
      section: fc.constantFrom('preset', 'schedule', 'model', 'run', 'augment', 'eval', 'data', 'loss'),
      key: fc.constantFrom(
        'epochs',
        'baseLr',
        'projectorHidden',
        'batchSize',
        'crop',
        '__proto__',
        'constructor',
        'prototype',
        'toString',
        '',
      ),
      value: fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.constantFrom(...AWKWARD_NUMBERS),
        fc.constantFrom('constructor', '__proto__', 'toString'),
      ),
      whole: fc.boolean(),
    })
    .map(({ section, key, value, whole }) => {
      const edited = structuredClone(settings) as Record<string, unknown>;
      const inner = edited[section];
      if (whole || typeof inner !== 'object' || inner === null) edited[section] = value;
      // defineProperty: a plain assignment of '__proto__' would set the prototype, not write the key a file would hold.
      else Object.defineProperty(inner, key, { value, enumerable: true, writable: true, configurable: true });
      return edited;
    });

  it('starts from settings that resolve', () => {
    expect(resolveTrainConfig({ file: settings }).run.batchSize).toBe(64);
  });

  const configText = fc.record({ value: fc.oneof(fc.constant(settings), editedSettings), yaml: fc.boolean() }).chain(({ value, yaml }) => {
    const text = yaml ? stringifyYaml(value) : JSON.stringify(value, null, 1);
    const bytes = Buffer.from(text);
    const hot = [...text.matchAll(/[:{}[\],"\n-]/g)].map((match) => match.index);
    return mutations(bytes.length, hot).map((edits) => ({ text: Buffer.from(mutate(bytes, edits)).toString('utf8'), yaml }));
  });

  /** Every value the file sets is in the resolved config at the same path: nothing dropped or swapped silently. */
  function expectEverySettingKept(file: Record<string, unknown>, config: unknown): void {
    const { preset: _preset, ...fields } = file;
    const walk = (value: unknown, resolved: unknown, at: string): void => {
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        expect(typeof resolved, at).toBe('object');
        for (const key of Object.keys(value)) {
          expect(Object.hasOwn(resolved as object, key), `${at}.${key} is kept`).toBe(true);
          walk((value as Record<string, unknown>)[key], (resolved as Record<string, unknown>)[key], `${at}.${key}`);
        }
      } else if (Array.isArray(value)) {
        expect(Array.isArray(resolved), at).toBe(true);
        value.forEach((item, index) => walk(item, (resolved as unknown[])[index], `${at}[${index}]`));
      } else expect(resolved, at).toEqual(value);
    };
    // A single augmentation pipeline is accepted as the list of one.
    if (fields.augment !== undefined && !Array.isArray(fields.augment)) fields.augment = [fields.augment];
    walk(fields, config, 'config');
  }

  it('readConfigFile + resolveTrainConfig: mutated JSON and YAML give a config or a config error that names the field', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          configText,
          editedSettings.map((value) => ({ text: JSON.stringify(value), yaml: false })),
        ),
        async ({ text, yaml }) => {
          const file = path.join(scratch, yaml ? 'fuzzed.yaml' : 'fuzzed.json');
          await fs.writeFile(file, text);
          const result = await outcome(async () => resolveTrainConfig({ file: await readConfigFile(file) }));
          if ('value' in result) {
            expectEverySettingKept(yaml ? parseYaml(text) : JSON.parse(text), result.value);
            return;
          }
          const { error } = result;
          if (error instanceof ConfigError) {
            expect(error.message).toMatch(
              new RegExp(`^(the config file|cannot read the config file) ${file} .+|^.+ is not a config field$`),
            );
            return;
          }
          // Field errors are TypeError or RangeError, as a JavaScript caller expects, and name the field from the root.
          const namesField = (error instanceof TypeError || error instanceof RangeError) && /^config[.:] ?.+/.test(error.message);
          if (!namesField) throw new Error(`not a config error: ${String((error as Error)?.stack ?? error)}`);
        },
      ),
      { seed: SEED, numRuns: RUNS_IN_MEMORY },
    );
  });
});
