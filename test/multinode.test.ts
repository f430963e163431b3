// Multi-node data-parallel training across a real network: two "machines" are two network namespaces
// joined by a veth pair, each with its own address, so `train --nnodes 2` has to rendezvous, bind its
// Gloo interface and exchange every step over that link rather than loopback. A run goes to the end and
// lands on the single-process result for the same global batch; a link cut mid-run stops both sides
// within --dist-timeout with an error naming the peer, and leaves rank 0's last checkpoint intact.
// (Two ranks over loopback are test/distributed.test.ts; the math's parity, native/test/test_distributed.cpp.)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../lib/checkpoint/checkpoint.js';
import { native } from '../lib/runtime/native.js';

const CLI = path.resolve('dist/cli/main.js');
const PREFIX = 'clamp-mn-';
// Per-run names (the pid) so that concurrent runs on one machine never meet; a veth name is at most
// 15 characters.
const hosts = [
  { ns: `${PREFIX}${process.pid}-0`, veth: `cmn${process.pid}a`, address: '10.231.0.1' },
  { ns: `${PREFIX}${process.pid}-1`, veth: `cmn${process.pid}b`, address: '10.231.0.2' },
] as const;
const MASTER = hosts[0].address;

function ip(...args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim() || `exit status ${result.status}`}`);
  return result.stdout;
}

function removeHosts(): void {
  // Deleting a namespace deletes the veth end inside it, and with it the pair.
  for (const { ns } of hosts) spawnSync('ip', ['netns', 'delete', ns]);
  spawnSync('ip', ['link', 'delete', hosts[0].veth]);
}

/** Namespaces left by an earlier run of this file that died before its afterAll (its pid is gone). */
function removeStaleHosts(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const match = new RegExp(`^(${PREFIX}(\\d+)-[01])\\b`).exec(line);
    if (!match) continue;
    try {
      process.kill(Number(match[2]), 0);
    } catch {
      spawnSync('ip', ['netns', 'delete', match[1]!]);
    }
  }
}

/** Builds the two hosts; returns why they cannot be built here, or null. */
function buildHosts(): string | null {
  if (native().runtimeInfo().build.distributed !== 'gloo')
    return 'this build of the addon has no c10d Gloo (install libgloo-dev and rebuild with `node scripts/build.mjs`)';
  if (process.platform !== 'linux') return 'network namespaces are Linux-only';
  if (process.getuid?.() !== 0) return 'making network namespaces and a veth pair needs root (CAP_NET_ADMIN)';
  if (spawnSync('ip', ['-V']).error) return 'no `ip` command: install iproute2';
  try {
    removeStaleHosts();
    ip('link', 'add', hosts[0].veth, 'type', 'veth', 'peer', 'name', hosts[1].veth);
    for (const { ns, veth, address } of hosts) {
      ip('netns', 'add', ns);
      ip('link', 'set', veth, 'netns', ns);
      ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', veth);
      ip('-n', ns, 'link', 'set', veth, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    return null;
  } catch (error) {
    removeHosts();
    return `network namespaces cannot be made here (${(error as Error).message})`;
  }
}

const skipReason = buildHosts();
afterAll(removeHosts);

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  at: number;
}
interface Running {
  child: ChildProcess;
  stderr: () => string;
  finished: Promise<Finished>;
}
const running = new Set<ChildProcess>();

/** `clamp-native <args>` inside a host's namespace (or in this one when ns is null). */
function start(ns: string | null, args: string[]): Running {
  const argv = ns ? ['netns', 'exec', ns, process.execPath, CLI, ...args] : [CLI, ...args];
  // Its own process group, so that cleanup reaches the launcher's worker too.
  const child = spawn(ns ? 'ip' : process.execPath, argv, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLAMP_NUM_THREADS: '1' },
  });
  running.add(child);
  let stdout = '',
    stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const finished = new Promise<Finished>((resolve) =>
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal, stdout, stderr, at: performance.now() });
    }),
  );
  return { child, stderr: () => stderr, finished };
}

afterAll(() => {
  for (const child of running) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** node's part of a two-node run: one worker, rank = node. */
function node(rank: 0 | 1, distTimeout: number, args: string[]): Running {
  return start(hosts[rank].ns, [
    'train',
    '--nproc',
    '1',
    '--nnodes',
    '2',
    '--node-rank',
    String(rank),
    '--master-addr',
    MASTER,
    '--master-port',
    '29500',
    '--dist-timeout',
    String(distTimeout),
    ...args,
  ]);
}

// The same config on every side, chosen so that two ranks and one process can agree to round-off:
// - deterministic views (the whole image; the second view blurred with a fixed sigma), because each
//   rank draws its own augmentations (lib/augment/loader.ts), so random crops would differ;
// - SyncBatchNorm, because per-rank BatchNorm statistics are by design not the global batch's;
// - a regime where round-off stays round-off. The loss's contact-range cap (loss.maxRange, 1.5)
//   switches a pair's radius gradient off where it binds, and the preset's peak learning rate
//   amplifies such a switch: a float32 round-off apart at step 0, the distributed and single runs
//   ended 1e-4 to 1e-1 apart after four to eight steps on some seeds (measured; the same over
//   loopback, so not the network's doing), with either the cap or the learning rate alone. With the
//   cap out of reach and a tenth of the learning rate, five seeds stayed within 1e-7 (losses,
//   relative) and 1.3e-6 (any weight or optimiser state) over eight steps.
// A tiny network, so each run takes seconds on 2 cores.
const CONFIG = {
  augment: [
    {
      size: 28,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
      normalize: { mean: [0.286], std: [0.353] },
    },
    {
      size: 28,
      crop: { scale: [1, 1], ratio: [1, 1] },
      flip: 0,
      colorJitter: { p: 0 },
      grayscale: 0,
      blur: { p: 1, kernelSize: 5, sigma: [1, 1] },
      normalize: { mean: [0.286], std: [0.353] },
    },
  ],
  model: { widths: [8, 16], blocks: [1, 1], projectorHidden: [64], projectorOut: 16 },
  loss: { maxRange: 100 },
  schedule: { baseLr: 0.4 },
  run: { syncBatchNorm: true, checkpointEvery: 1 },
  eval: { atEnd: false },
};

async function stepLosses(runDir: string): Promise<number[]> {
  return (await fs.readFile(path.join(runDir, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { kind: string; loss: number })
    .filter((line) => line.kind === 'step')
    .map((line) => line.loss);
}

describe.skipIf(skipReason !== null)(
  `train --nnodes 2 across two network namespaces${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let root: string;
    let config: string;
    beforeAll(async () => {
      root = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-multinode-'));
      config = path.join(root, 'config.json');
      await fs.writeFile(config, JSON.stringify(CONFIG));
    });
    afterAll(() => fs.rm(root, { recursive: true, force: true }));

    it('trains to the end over the link and lands on the single-process result for the same global batch', async () => {
      const flags = [
        '--config',
        config,
        '--limit',
        '256',
        '--epochs',
        '2',
        '--batch-size',
        '64',
        '--views',
        '2',
        '--workers',
        '1',
        '--threads',
        '1',
        '--no-report',
        '--json',
        // NCHW, where the bounds below were measured. channels_last (the CPU default) sums in another
        // order again: losses then differ by 3e-7 relative, with one step at 1.2e-5 (measured), too close
        // to a real mismatch's 3e-4 for a tight bound. The layout is tested on its own in trainer.test.ts.
        '--memory-format',
        'contiguous',
      ];
      const [zero, one] = await Promise.all(
        [node(0, 30, [...flags, '--out', path.join(root, 'node0')]), node(1, 30, [...flags, '--out', path.join(root, 'node1')])].map(
          (n) => n.finished,
        ),
      );
      expect(zero!.code, zero!.stderr).toBe(0);
      expect(one!.code, one!.stderr).toBe(0);
      const summary = JSON.parse(zero!.stdout.trim().split('\n').pop()!) as { steps: number; stopped: boolean; checkpoint: string };
      expect(summary).toMatchObject({ steps: 8, stopped: false }); // 256 images in global batches of 64, twice
      // Rank 0 writes the run; the other machine only trains.
      await expect(fs.stat(path.join(root, 'node1'))).rejects.toThrow(/ENOENT/);

      const reference = path.join(root, 'single');
      const single = await start(null, ['train', ...flags, '--out', reference]).finished;
      expect(single.code, single.stderr).toBe(0);
      const [mine, theirs] = [await stepLosses(path.join(root, 'node0')), await stepLosses(reference)];
      expect(mine).toHaveLength(8);
      expect(new Set(mine).size).toBe(8); // the weights moved
      // Not bitwise: the global batch's gradient is summed in another order (each rank's half, then the
      // all-reduce), and so are SyncBatchNorm's statistics. Observed: 1e-7 (losses, relative) and 1.3e-6
      // (weights and optimiser state) on AVX-512 CPUs; on an AVX2-only AMD EPYC, whose oneDNN kernels
      // sum a half batch in another order than a whole one, the losses still agree to 1e-5 but the
      // BatchNorm parameters' LARS momentum differs by up to 6.3e-4 (on values of ~0.6) after 8 steps,
      // with or without the fused BatchNorm + ReLU (measured 2026-12-03). The state's bound, 5e-3, keeps
      // a tenfold margin below a real mismatch: per-rank BatchNorm instead of SyncBatchNorm moved the
      // losses by 3e-4 to 1e-2 and the weights by 0.05 (measured); the losses' bound stays the tight one.
      for (let k = 0; k < 8; k++)
        expect(Math.abs(mine[k]! - theirs[k]!) / Math.abs(theirs[k]!), `step ${k}: ${mine[k]} vs ${theirs[k]}`).toBeLessThan(1e-5);
      const [a, b] = [await readCheckpoint(summary.checkpoint), await readCheckpoint(path.join(reference, 'checkpoint.safetensors'))];
      expect(a.position).toEqual(b.position);
      expect(a.state.map((e) => e.name)).toEqual(b.state.map((e) => e.name));
      let worst = 0,
        worstName = '';
      for (const [k, entry] of a.state.entries()) {
        if (entry.dtype !== 'float32') {
          expect(Array.from(entry.data as BigInt64Array), entry.name).toEqual(Array.from(b.state[k]!.data as BigInt64Array)); // step counts, BatchNorm's batch counters
          continue;
        }
        const other = b.state[k]!.data as Float32Array;
        for (let i = 0; i < entry.data.length; i++) {
          const difference = Math.abs((entry.data as Float32Array)[i]! - other[i]!);
          if (!(difference <= worst)) [worst, worstName] = [difference, entry.name];
        }
      }
      expect(worst, `worst difference in ${worstName}`).toBeLessThan(5e-3);
    }, 240_000);

    it('a node with no route to the master address says so at once, naming the address', async () => {
      // 10.232.0.1 is on no network of the namespace: nothing to wait --dist-timeout for.
      const started = performance.now();
      const lost = await start(hosts[1].ns, [
        'train',
        '--nproc',
        '1',
        '--nnodes',
        '2',
        '--node-rank',
        '1',
        '--master-addr',
        '10.232.0.1',
        '--dist-timeout',
        '60',
        '--config',
        config,
        '--limit',
        '256',
        '--epochs',
        '1',
        '--batch-size',
        '64',
        '--views',
        '2',
        '--no-report',
        '--out',
        path.join(root, 'lost'),
      ]).finished;
      expect(lost.code).toBe(1);
      expect(lost.stderr).toMatch(
        /rank 1 of 2 has no route to the master address 10\.232\.0\.1 .*: pass --master-addr an address of rank 0's machine that this one can reach/,
      );
      expect((performance.now() - started) / 1000).toBeLessThan(30);
    });

    it('a link cut mid-run stops both sides within --dist-timeout, each naming its peer; the last checkpoint is intact', async () => {
      const distTimeout = 10;
      const flags = [
        '--config',
        config,
        '--limit',
        '2048',
        '--epochs',
        '20',
        '--batch-size',
        '64',
        '--views',
        '2',
        '--workers',
        '1',
        '--threads',
        '1',
        '--no-report',
      ];
      const out = path.join(root, 'cut');
      const [zero, one] = [
        node(0, distTimeout, [...flags, '--out', out]),
        node(1, distTimeout, [...flags, '--out', path.join(root, 'cut1')]),
      ];
      // Cut once epoch 1's checkpoint is on disk and a few steps of epoch 2 have crossed the link.
      const stepsPerEpoch = 2048 / 64;
      let cutAt = 0;
      while (cutAt === 0) {
        const exited = await Promise.race([
          zero.finished,
          one.finished,
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 200)),
        ]);
        if (exited) throw new Error(`a node stopped before the cut (status ${exited.code}):\n${exited.stderr}`);
        const metrics = await fs.readFile(path.join(out, 'metrics.jsonl'), 'utf8').catch(() => '');
        const checkpoint = await fs.stat(path.join(out, 'checkpoint.safetensors')).then(
          () => true,
          () => false,
        );
        if (checkpoint && metrics.includes(`"step":${stepsPerEpoch + 2},`)) {
          ip('netns', 'exec', hosts[0].ns, 'ip', 'link', 'set', hosts[0].veth, 'down');
          cutAt = performance.now();
        }
      }
      const [z, o] = await Promise.all([zero.finished, one.finished]);
      const seconds = [(z.at - cutAt) / 1000, (o.at - cutAt) / 1000];
      console.log(
        `after the cut, with --dist-timeout ${distTimeout}: node 0 stopped in ${seconds[0]!.toFixed(1)} s, node 1 in ${seconds[1]!.toFixed(1)} s`,
      );
      expect(z.code, z.stderr).toBe(1);
      expect(o.code, o.stderr).toBe(1);
      // A behaviour bound, not a benchmark: the timeout is honoured, nobody hangs on the dead link.
      for (const s of seconds) expect(s).toBeLessThan(distTimeout + 30);
      // Rank 0's worker speaks on node 0's stderr; node 1's launcher passes on its worker's last words.
      expect(z.stderr).toMatch(
        new RegExp(
          `clamp-native: rank 0 of 2: .* failed: rank 1 \\(at ${hosts[1].address.replaceAll('.', '\\.')}\\) died, hung past the ${distTimeout}000 ms timeout, or the network to it went down`,
        ),
      );
      expect(o.stderr).toMatch(/clamp-native: rank 1 of 2 exited with status 1\. Its last words:/);
      expect(o.stderr).toMatch(new RegExp(`clamp-native: rank 1 of 2: .* failed: rank 0 \\(at ${MASTER.replaceAll('.', '\\.')}\\) died`));
      // clamp-native's sentences, not a C++ backtrace, Gloo's source locations ("[/.../pair.cc:598]") or
      // a JavaScript stack. (c10's own warning lines, "[W... socket.cpp:207] ...", are LibTorch's logging.)
      for (const stderr of [z.stderr, o.stderr]) expect(stderr).not.toMatch(/frame #\d|Exception raised from|\[\/[^\]\s]+:\d+\]|\n\s+at /);
      const checkpoint = await readCheckpoint(path.join(out, 'checkpoint.safetensors'));
      expect(checkpoint.position.batch).toBe(0); // written at an epoch's end
      expect(checkpoint.position.step).toBe(checkpoint.position.epoch * stepsPerEpoch);
      expect(checkpoint.position.epoch).toBeGreaterThanOrEqual(1);
      expect(checkpoint.state.length).toBeGreaterThan(10);
      expect(checkpoint.state.filter((e) => e.dtype === 'float32').every((e) => (e.data as Float32Array).every(Number.isFinite))).toBe(
        true,
      );
    }, 240_000);
  },
);
