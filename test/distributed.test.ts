// Data-parallel training from TypeScript, two ranks as two Node processes over c10d/Gloo on loopback:
// both ranks see the global loss and keep bitwise the same weights step after step; a rank that dies
// makes the other's next step fail with an error naming it, within the timeout; bad options are
// refused. (Exact parity with one process, on a BatchNorm-free network, is native/test/test_distributed.cpp.)
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { native } from '../lib/runtime/native.js';
import { Trainer } from '../lib/train/trainer.js';
import { resolveTrainConfig } from '../lib/config/train-config.js';
import { train } from '../lib/train/training-run.js';

const distributed = native().runtimeInfo().build.distributed === 'gloo';

/** One rank: a tiny trainer joins the group, takes its share of three fixed global batches, prints what it saw. */
const RANK_SCRIPT = `
import { Trainer } from ${JSON.stringify(path.resolve('dist/train/trainer.js'))};
const rank = Number(process.env.RANK), worldSize = Number(process.env.WORLD_SIZE);
const trainer = await Trainer.create({ backbone: 'small', widths: [8, 16], blocks: [1, 1], inChannels: 1, projectorHidden: [32], projectorOut: 16,
  views: 2, loss: { rs: 2 }, schedule: { peakLr: 0.5, totalSteps: 10 }, seed: 10 + rank, syncBatchNorm: process.env.SYNC_BN === '1' });
await trainer.distribute({ rank, worldSize, masterPort: Number(process.env.MASTER_PORT), timeoutMs: Number(process.env.TIMEOUT_MS) });
const losses = [];
for (let step = 0; step < 3; step++) {
  if (step === 1 && rank === Number(process.env.DIE_RANK)) process.exit(3);
  // The global batch: 2 views x 8 images; this rank's share is images [4 rank, 4 rank + 4) of each view.
  const global = Float32Array.from({ length: 2 * 8 * 144 }, (_, k) => Math.sin(k * 0.37 + step));
  const share = new Float32Array(2 * 4 * 144);
  for (let v = 0; v < 2; v++) share.set(global.subarray((v * 8 + 4 * rank) * 144, (v * 8 + 4 * rank + 4) * 144), v * 4 * 144);
  try {
    losses.push((await trainer.step(share, [8, 1, 12, 12])).loss);
  } catch (error) {
    console.log(JSON.stringify({ rank, error: error.message }));
    process.exit(1);
  }
}
const parameters = (await trainer.state()).filter((e) => !e.name.startsWith('optimizer.') && !e.name.includes('running_') && !e.name.includes('num_batches') && e.name !== 'trainer.steps');
const statistics = (await trainer.state()).filter((e) => e.name.includes('running_'));
console.log(JSON.stringify({ rank, losses, parameters: parameters.map((e) => [e.name, Array.from(e.data)]), statistics: statistics.map((e) => Array.from(e.data)) }));
`;

let script: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

interface RankOutput {
  code: number | null;
  seconds: number;
  result: { rank: number; losses?: number[]; parameters?: [string, number[]][]; statistics?: number[][]; error?: string } | null;
}

async function runRanks(env: Record<string, string>): Promise<RankOutput[]> {
  const port = String(await freePort());
  return Promise.all(
    [0, 1].map(
      (rank) =>
        new Promise<RankOutput>((resolve) => {
          const started = performance.now();
          const child = spawn(process.execPath, [script], {
            env: { ...process.env, RANK: String(rank), WORLD_SIZE: '2', MASTER_PORT: port, TIMEOUT_MS: '20000', DIE_RANK: '-1', ...env },
          });
          let stdout = '';
          child.stdout.on('data', (chunk: Buffer) => {
            stdout += chunk.toString();
          });
          child.on('close', (code) => {
            const line = stdout.trim().split('\n').pop() ?? '';
            resolve({ code, seconds: (performance.now() - started) / 1000, result: line.startsWith('{') ? JSON.parse(line) : null });
          });
        }),
    ),
  );
}

beforeAll(async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-ddp-'));
  script = path.join(dir, 'rank.mjs');
  await fs.writeFile(script, RANK_SCRIPT);
});

describe.runIf(distributed)('data-parallel training over Gloo', () => {
  it('two ranks compute the global loss and keep bitwise the same weights', async () => {
    const [zero, one] = await runRanks({});
    expect(zero!.code).toBe(0);
    expect(one!.code).toBe(0);
    expect(zero!.result!.losses).toHaveLength(3);
    expect(one!.result!.losses).toEqual(zero!.result!.losses);
    expect(new Set(zero!.result!.losses).size).toBe(3); // the weights moved between steps
    expect(one!.result!.parameters).toEqual(zero!.result!.parameters);
    // Per-rank BatchNorm: each rank's running statistics come from its own share.
    expect(one!.result!.statistics).not.toEqual(zero!.result!.statistics);
  }, 60_000);

  it('with syncBatchNorm the ranks also share their BatchNorm statistics', async () => {
    const [zero, one] = await runRanks({ SYNC_BN: '1' });
    expect(zero!.code).toBe(0);
    expect(one!.code).toBe(0);
    expect(one!.result!.losses).toEqual(zero!.result!.losses);
    expect(one!.result!.parameters).toEqual(zero!.result!.parameters);
    expect(one!.result!.statistics).toEqual(zero!.result!.statistics);
  }, 60_000);

  it("a rank that dies makes the other's next step fail, naming the rank, within the timeout", async () => {
    const [zero, one] = await runRanks({ DIE_RANK: '1', TIMEOUT_MS: '15000' });
    expect(one!.code).toBe(3);
    expect(zero!.code).toBe(1);
    expect(zero!.result!.error).toMatch(/rank 0 of 2: .* failed/);
    expect(zero!.seconds).toBeLessThan(60);
  }, 90_000);
});

describe.runIf(distributed)('clamp-native train --nproc', () => {
  const cli = path.resolve('dist/cli/main.js');

  it('runs two workers to the end: rank 0 writes the run and reports it', async () => {
    const out = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-ddp-run-')), 'run');
    const result = spawnSync(
      process.execPath,
      [
        cli,
        'train',
        '--nproc',
        '2',
        '--limit',
        '256',
        '--epochs',
        '1',
        '--batch-size',
        '64',
        '--views',
        '2',
        '--set',
        'data.testLimit=300',
        '--no-report',
        '--out',
        out,
        '--json',
      ],
      { encoding: 'utf8', timeout: 240_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/started rank 0 of 2 \(pid \d+\)/);
    expect(result.stderr).toMatch(/started rank 1 of 2/);
    const summary = JSON.parse(result.stdout.trim().split('\n').pop()!) as {
      steps: number;
      stopped: boolean;
      knn: { top1: number } | null;
      checkpoint: string;
    };
    expect(summary).toMatchObject({ steps: 4, stopped: false }); // 256 images in global batches of 64
    expect(summary.knn!.top1).toBeGreaterThan(0.1);
    const lines = (await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { kind: string });
    expect(lines.filter((line) => line.kind === 'step')).toHaveLength(4);
    expect((await fs.stat(summary.checkpoint)).size).toBeGreaterThan(1000);
    // --no-report: no page at any epoch's end, and no report at the end.
    await expect(fs.stat(path.join(out, 'report.html'))).rejects.toThrow(/ENOENT/);
  }, 300_000);

  it('a killed worker stops the run: the launcher names the rank and exits non-zero within a minute', async () => {
    const out = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-ddp-kill-')), 'run');
    const started = performance.now();
    const launcher = spawn(process.execPath, [
      cli,
      'train',
      '--nproc',
      '2',
      '--limit',
      '4096',
      '--epochs',
      '4',
      '--batch-size',
      '64',
      '--views',
      '2',
      '--set',
      'eval.atEnd=false',
      '--no-report',
      '--dist-timeout',
      '20',
      '--out',
      out,
    ]);
    let stderr = '';
    let killed = false;
    launcher.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const pid = /started rank 1 of 2 \(pid (\d+)\)/.exec(stderr)?.[1];
      // Two seconds into training (the group has formed once rank 0 says where it trains), rank 1 dies without a word.
      if (!killed && pid && /training in /.test(stderr)) {
        killed = true;
        setTimeout(() => process.kill(Number(pid), 'SIGKILL'), 2000);
      }
    });
    const code = await new Promise<number | null>((resolve) => launcher.on('exit', resolve));
    expect(killed, stderr).toBe(true);
    expect(code).toBe(1);
    expect(stderr).toMatch(/rank 1 of 2 was killed by SIGKILL; the other workers were stopped/);
    expect((performance.now() - started) / 1000).toBeLessThan(120);
  }, 180_000);

  it('Ctrl-C stops both workers after the same step; one process resumes the run on the same schedule', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-ddp-resume-'));
    const flags = [
      '--limit',
      '1024',
      '--epochs',
      '3',
      '--batch-size',
      '64',
      '--views',
      '2',
      '--set',
      'eval.atEnd=false',
      '--set',
      'run.checkpointEvery=1',
      '--no-report',
    ];
    const out = path.join(root, 'run');
    const launcher = spawn(process.execPath, [cli, 'train', '--nproc', '2', ...flags, '--out', out]);
    let stderr = '';
    launcher.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // Interrupt once the first epoch's checkpoint is on disk.
    const poll = setInterval(() => {
      fs.stat(path.join(out, 'checkpoint.safetensors')).then(
        () => {
          clearInterval(poll);
          launcher.kill('SIGINT');
        },
        () => {},
      );
    }, 100);
    const code = await new Promise<number | null>((resolve) => launcher.on('exit', resolve));
    clearInterval(poll);
    expect(code, stderr).toBe(130);
    const resumed = spawnSync(process.execPath, [cli, 'train', '--resume', out, '--json'], { encoding: 'utf8', timeout: 240_000 });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout.trim().split('\n').pop()!)).toMatchObject({ steps: 48, epochs: 3, stopped: false });
    // The reference: one process all the way.
    const reference = path.join(root, 'reference');
    const single = spawnSync(process.execPath, [cli, 'train', ...flags, '--out', reference], { encoding: 'utf8', timeout: 240_000 });
    expect(single.status, single.stderr).toBe(0);
    const stepLines = async (dir: string) =>
      (await fs.readFile(path.join(dir, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { kind: string; step: number; lr: number })
        .filter((line) => line.kind === 'step');
    const [mine, theirs] = [await stepLines(out), await stepLines(reference)];
    expect(mine.map((line) => line.step)).toEqual(Array.from({ length: 48 }, (_, k) => k));
    expect(mine.map((line) => line.lr)).toEqual(theirs.map((line) => line.lr));
  }, 300_000);

  it('launcher flags without --nproc are refused', () => {
    const result = spawnSync(process.execPath, [cli, 'train', '--master-port', '1234'], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--master-port needs --nproc/);
  });
});

describe('distribute options', () => {
  it("this build has Gloo wherever Debian's libgloo-dev is installed", async () => {
    const glooHeaders = await fs.stat('/usr/include/gloo/config.h').then(
      () => true,
      () => false,
    );
    if (glooHeaders) expect(native().runtimeInfo().build.distributed).toBe('gloo');
  });

  it('train() refuses what a data-parallel run cannot do yet, before any rendezvous', async () => {
    const config = resolveTrainConfig({
      overrides: { data: { limit: 256 }, schedule: { epochs: 1, warmupEpochs: 0 }, run: { batchSize: 64, views: 2 }, eval: { every: 1 } },
    });
    // A monitor on the whole splits could outlast the collectives' timeout while rank 0 alone runs it.
    const unbounded = { ...config, eval: { ...config.eval, monitorImages: {} } };
    await expect(train(unbounded, { runDir: path.join(os.tmpdir(), 'never'), distributed: { rank: 0, worldSize: 2 } })).rejects.toThrow(
      /eval.every runs data-parallel only on bounded subsets: set eval.monitorImages.train and .test/,
    );
    const atStart = { ...config, eval: { ...config.eval, every: 0, atStart: true } };
    await expect(train(atStart, { runDir: path.join(os.tmpdir(), 'never'), distributed: { rank: 0, worldSize: 2 } })).rejects.toThrow(
      /eval.atStart does not run data-parallel yet/,
    );
    const odd = { ...config, run: { ...config.run, batchSize: 63 }, eval: { ...config.eval, every: 0 } };
    await expect(train(odd, { runDir: path.join(os.tmpdir(), 'never'), distributed: { rank: 0, worldSize: 2 } })).rejects.toThrow(
      /run.batchSize 63 must split evenly over 2 processes/,
    );
  });

  it('are checked before any rendezvous', async () => {
    const trainer = await Trainer.create({
      backbone: 'small',
      widths: [8, 16],
      blocks: [1, 1],
      inChannels: 1,
      schedule: { peakLr: 0.1, totalSteps: 2 },
    });
    await expect(trainer.distribute({ rank: 2, worldSize: 2 })).rejects.toThrow(/distributed.rank: rank must be less than worldSize/);
    await expect(trainer.distribute({ rank: 0, worldSize: 2, masterPort: 70000 })).rejects.toThrow(/distributed.masterPort/);
  });
});
