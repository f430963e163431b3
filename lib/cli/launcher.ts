// `clamp-native train --nproc N`: a torchrun-style launcher. It starts N local workers, each the same
// `train` command with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
// passes rank 0's output through, and watches them: when one dies the others are stopped and the exit
// status says which rank failed and how. Ctrl-C and SIGTERM reach every worker (they agree to stop
// after the same step and rank 0 writes a checkpoint); a second one kills them.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { DistributedOptions } from '../train/trainer.js';

export interface LaunchOptions {
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  /** Undefined on one node: a free port is chosen. */
  masterPort: number | undefined;
  timeoutMs: number;
}

/** The group this process belongs to when a launcher (ours or torchrun) started it; null otherwise. */
export function distributedFromEnvironment(env: NodeJS.ProcessEnv = process.env): DistributedOptions | null {
  const worldSize = Number(env.WORLD_SIZE ?? 1);
  if (!(worldSize > 1)) return null;
  return {
    rank: Number(env.RANK),
    worldSize,
    masterAddr: env.MASTER_ADDR ?? '127.0.0.1',
    masterPort: Number(env.MASTER_PORT ?? 29500),
    timeoutMs: Number(env.CLAMP_DIST_TIMEOUT_MS ?? 60_000),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs `clamp-native train <args>` as nproc local workers; resolves with the launcher's exit status. */
export async function launchWorkers(args: readonly string[], o: LaunchOptions): Promise<number> {
  const worldSize = o.nproc * o.nnodes;
  const masterPort = o.masterPort ?? (o.nnodes === 1 ? await freePort() : 29500);
  // Each worker's share of the cores for LibTorch, unless the user chose.
  const threads = process.env.CLAMP_NUM_THREADS ?? String(Math.max(1, Math.floor(os.availableParallelism() / o.nproc)));
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const workers: { rank: number; child: ChildProcess; stderrTail: string[] }[] = [];
  let failure: { rank: number; how: string } | null = null;
  let interrupts = 0;
  let stoppedBy = 'SIGINT' as 'SIGINT' | 'SIGTERM';

  const stopAll = (signal: NodeJS.Signals) => {
    for (const { child } of workers) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  // The workers take either signal as "stop after this step and checkpoint"; a second one kills them.
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    interrupts++;
    if (interrupts === 1) stoppedBy = signal;
    stopAll(interrupts > 1 ? 'SIGKILL' : signal);
  };
  const onInterrupt = () => onSignal('SIGINT');
  const onTerminate = () => onSignal('SIGTERM');
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  try {
    const exits = Array.from({ length: o.nproc }, (_, local) => {
      const rank = o.nodeRank * o.nproc + local;
      const child = spawn(process.execPath, [main, 'train', ...args], {
        env: {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(o.nproc),
          MASTER_ADDR: o.masterAddr,
          MASTER_PORT: String(masterPort),
          CLAMP_DIST_TIMEOUT_MS: String(o.timeoutMs),
          CLAMP_NUM_THREADS: threads,
        },
        // Rank 0 speaks for the run; the others' stderr is kept for when they fail.
        stdio: rank === 0 ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'ignore', 'pipe'],
      });
      const worker = { rank, child, stderrTail: [] as string[] };
      child.stderr?.on('data', (chunk: Buffer) => {
        worker.stderrTail.push(...chunk.toString().split('\n').filter(Boolean));
        worker.stderrTail.splice(0, Math.max(0, worker.stderrTail.length - 20));
      });
      workers.push(worker);
      process.stderr.write(`started rank ${rank} of ${worldSize} (pid ${child.pid})\n`);
      return new Promise<void>((resolve) => {
        child.on('exit', (code, signal) => {
          if ((code !== 0 || signal !== null) && failure === null && interrupts === 0) {
            failure = { rank, how: signal ? `was killed by ${signal}` : `exited with status ${code}` };
            // The others would wait for it in their next collective until the timeout, so a graceful stop
            // (which finishes the step first) would hang: kill them. The last checkpoint is intact, as
            // checkpoints are renamed into place whole.
            stopAll('SIGKILL');
          }
          resolve();
        });
      });
    });
    await Promise.all(exits);
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onTerminate);
  }
  const failed = failure as { rank: number; how: string } | null;
  if (failed) {
    const tail = workers.find((w) => w.rank === failed.rank)?.stderrTail ?? [];
    // With one worker per machine there are no others here to stop: the other machines' workers stop
    // on their own, when their next collective fails or times out.
    const stopped = o.nproc > 1 ? '; the other workers were stopped' : '';
    process.stderr.write(
      `clamp-native: rank ${failed.rank} of ${worldSize} ${failed.how}${stopped}${tail.length ? `. Its last words:\n  ${tail.slice(-5).join('\n  ')}` : ''}\n`,
    );
    return 1;
  }
  if (interrupts > 0) return stoppedBy === 'SIGTERM' ? 143 : 130;
  return workers.some(({ child }) => child.exitCode !== 0) ? 1 : 0;
}
