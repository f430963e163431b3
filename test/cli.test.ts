// The `clamp-native` command as a user meets it: mistakes in the command line answered in one line that
// names the flag, --help everywhere, a closed pipe ending a command quietly, progress that suits a log
// file, an unwritable --out refused before any work, and `eval` saying what it is doing.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { progressLine } from '../lib/format.js';
import { train } from '../lib/train/training-run.js';

const cli = path.resolve('dist/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const lines = (text: string) => text.split('\n').filter((line) => line.length > 0);

/** `command | head -1` in a shell: the command's exit status and its stderr, once head has gone. */
function intoHead(args: string[]): Promise<{ status: number | null; stderr: string; first: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let first = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // What head does: read up to the first line, then close the pipe while the command still writes.
    child.stdout.once('data', (chunk: Buffer) => {
      first = chunk.toString().split('\n')[0]!;
      child.stdout.destroy();
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr, first }));
  });
}

describe('command-line mistakes', () => {
  it.each([
    [['train', '--epochs', '-1'], 'train', /--epochs must be a number > 0, got '-1'/],
    [['train', '--epochs', '0'], 'train', /--epochs must be a number > 0, got '0'/],
    [['eval', '--checkpoint', 'x', '--limit', '-5'], 'eval', /--limit must be a whole number >= 1, got '-5'/],
    [['embed', '--checkpoint', 'x', '--batch', '-2.5', 'y.png'], 'embed', /--batch must be a whole number >= 1, got '-2.5'/],
    [['demo', '--steps', '-3'], 'demo', /--steps must be a whole number, got '-3'/],
  ])("%j: a negative number reaches the flag's own check", (args, command, message) => {
    const result = run(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/ambiguous/);
    // One line naming the problem and one pointing to the command's options; not the whole usage.
    expect(lines(result.stderr)).toEqual([expect.stringMatching(message), `\`clamp-native ${command} --help\` lists the options`]);
  });

  it('an unknown option or command is one line and a pointer to --help', () => {
    const option = run('train', '--epoch', '3');
    expect(option.status).toBe(2);
    expect(lines(option.stderr)).toEqual(['clamp-native train: unknown option --epoch', '`clamp-native train --help` lists the options']);
    const command = run('trian');
    expect(command.status).toBe(2);
    expect(lines(command.stderr)[0]).toMatch(/unknown command 'trian': the commands are train, eval/);
    expect(lines(command.stderr)).toHaveLength(2);
    const missing = run('eval', '--checkpoint');
    expect(missing.status).toBe(2);
    expect(lines(missing.stderr)).toEqual([
      "clamp-native eval: Option '--checkpoint <value>' argument missing",
      '`clamp-native eval --help` lists the options',
    ]);
  });

  it.each(['train', 'eval', 'finetune', 'embed', 'serve', 'export', 'report', 'doctor', 'build', 'demo'])(
    '`%s --help` prints its usage and exits 0',
    (command) => {
      const result = run(command, '--help');
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.startsWith(`clamp-native ${command}`)).toBe(true);
      expect(result.stderr).toBe('');
    },
  );

  it("`clamp-native --help` lists every command's options", () => {
    const result = run('--help');
    expect(result.status).toBe(0);
    for (const command of ['train', 'eval', 'finetune', 'embed', 'serve', 'export', 'report', 'doctor', 'build', 'demo'])
      expect(result.stdout).toContain(`clamp-native ${command}`);
  });
});

describe('a closed stdout', () => {
  it('`demo | head -1` ends the demo quietly with status 0', async () => {
    // 2,000 steps: rows are still to come when the pipe closes after the first.
    const result = await intoHead(['demo', '--steps', '2000']);
    expect(result.first).toMatch(/^Packing dynamics/);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('progress lines', () => {
  const recorder = (isTTY: boolean) => {
    const written: string[] = [];
    return { stream: { isTTY, write: (text: string) => written.push(text) }, written };
  };

  it('elsewhere than a terminal: no carriage returns, a line a tenth at most, and the closing line', () => {
    const { stream, written } = recorder(false);
    const progress = progressLine(stream);
    for (let done = 1; done <= 1000; done++) progress.update(`${done}/1000`, done, 1000);
    progress.end('all 1000');
    expect(written.join('')).not.toMatch(/\r/);
    expect(written).toEqual([...Array.from({ length: 9 }, (_, k) => `${(k + 1) * 100}/1000\n`), 'all 1000\n']);
  });

  it('on a terminal: one line redrawn in place, cleared for the closing line', () => {
    const { stream, written } = recorder(true);
    const progress = progressLine(stream);
    progress.update('1/2', 1, 2);
    progress.end('both');
    expect(written).toEqual(['\r\x1b[K1/2', '\r\x1b[Kboth\n']);
  });
});

describe('embed and eval on a saved run', () => {
  let dir: string;
  let images: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-cli-'));
    const config = resolveTrainConfig({
      overrides: {
        data: { limit: 256, testLimit: 100 },
        schedule: { epochs: 1, warmupEpochs: 0 },
        run: { batchSize: 64, views: 2, workers: 1 },
        eval: { atEnd: false },
      },
    });
    await train(config, { runDir: dir });
    images = path.join(dir, 'images');
    await fs.mkdir(images);
    for (let i = 0; i < 200; i++) {
      const pixels = Buffer.from(Array.from({ length: 28 * 28 }, (_, k) => (k * 7 + i * 13) % 256));
      await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toFile(path.join(images, `${String(i).padStart(3, '0')}.png`));
    }
  }, 120_000);

  it('`embed` into a pipe: plain progress lines, no carriage returns', () => {
    const result = run('embed', '--checkpoint', dir, images, '--batch', '8', '--out', path.join(dir, 'all.npy'));
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/\r/);
    const progress = lines(result.stderr).filter((line) => line.startsWith('embedded'));
    expect(progress.length).toBeLessThanOrEqual(10);
    expect(progress.at(-1)).toMatch(/^embedded 200 images \(dim \d+\) in/);
  });

  it("`embed --out` in a missing folder is refused before any image is embedded, naming the user's path", async () => {
    const out = path.join(dir, 'no-such-folder', 'emb.npy');
    const result = run('embed', '--checkpoint', dir, images, '--out', out);
    expect(result.status).toBe(2);
    expect(lines(result.stderr)[0]).toBe(
      `clamp-native embed: --out ${out}: the folder ${path.dirname(out)} does not exist; create it (mkdir -p ${path.dirname(out)}) or choose another path`,
    );
    expect(result.stderr).not.toMatch(/embedded|\.tmp-/);
    await expect(fs.stat(path.dirname(out))).rejects.toThrow();
  });

  it('`embed` of a missing file says it does not exist', () => {
    const missing = path.join(dir, 'missing.png');
    const result = run('embed', '--checkpoint', dir, missing);
    expect(result.status).toBe(2);
    expect(lines(result.stderr)[0]).toBe(`clamp-native embed: ${missing} does not exist; check the path`);
  });

  it('`embed | head -1` ends quietly with status 0', async () => {
    // 200 JSON lines are far more than a pipe's buffer: the writes after head has gone fail.
    const result = await intoHead(['embed', '--checkpoint', dir, images]);
    expect(JSON.parse(result.first)).toMatchObject({ file: path.join(images, '000.png') });
    expect(result.stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    expect(result.status).toBe(0);
  });

  it('`eval` says what it is doing as it goes', () => {
    const result = run('eval', '--checkpoint', dir);
    expect(result.status, result.stderr).toBe(0);
    const said = lines(result.stderr);
    const at = (pattern: RegExp) => said.findIndex((line) => pattern.test(line));
    const steps = [
      /reading the checkpoint and its dataset\.\.\./,
      /features of the 256 training images: done in/,
      /features of the 100 test images: done in/,
      /kNN \(k=200\) of 100 test images against 256 training images\.\.\./,
      /linear probe: 6 learning rates x 100 epochs on 230 training features \(26 held out\), then 100 epochs on all 256\.\.\./,
      /class manifolds and effective rank/,
      /kNN \(k=200\) top-1 .*linear probe top-1/,
    ];
    const found = steps.map(at);
    expect(
      found.every((index) => index >= 0),
      `${steps.filter((_, k) => found[k]! < 0).join(', ')} missing from:\n${result.stderr}`,
    ).toBe(true);
    expect([...found].sort((a, b) => a - b)).toEqual(found); // in the order they run
    expect(result.stderr).not.toMatch(/\r/);
  }, 60_000);
});
