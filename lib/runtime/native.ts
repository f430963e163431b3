// Loads the compiled addon once, with errors that say how to fix a missing or broken build.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './addon-types.js';

/** The package's root folder (holds package.json, build/, scripts/). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The addon file: CLAMP_NATIVE_ADDON overrides it (for instance, to load a node-gyp build elsewhere). */
export function addonPath(): string {
  return process.env.CLAMP_NATIVE_ADDON ?? path.join(packageRoot, 'build', 'Release', 'clamp_native.node');
}

const BUILD_HINT =
  'Build it with `npx clamp-native build`. (npm 11 does not run the install scripts of dependencies unless ' +
  'you allow them: `npm install-scripts approve clamp-native`, or install with `--allow-scripts=clamp-native`.)';

export class NativeAddonError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NativeAddonError';
  }
}

function explainLoadFailure(file: string, error: unknown): NativeAddonError {
  const detail = error instanceof Error ? error.message : String(error);
  if (!fs.existsSync(file)) {
    return new NativeAddonError(`clamp-native's native addon is not built: ${file} does not exist. ${BUILD_HINT}`, { cause: error });
  }
  if (/lib(torch|c10)[\w.]*\.so/.test(detail)) {
    return new NativeAddonError(
      `clamp-native's addon (${file}) cannot find LibTorch: ${detail}. The LibTorch it was built against has moved ` +
        "or been removed. Reinstall it (pip's torch: `python3 -m pip install torch==2.13.0`; Debian/Ubuntu's: " +
        '`sudo apt-get install libtorch-dev`), or point LIBTORCH at another one and rebuild with `npx clamp-native build`.',
      { cause: error },
    );
  }
  return new NativeAddonError(`clamp-native's addon (${file}) failed to load: ${detail}. Rebuild it with \`npx clamp-native build\`.`, {
    cause: error,
  });
}

/** Reads CLAMP_NUM_THREADS, or the cores this process may use (Debian's LibTorch would start with one). */
export function defaultThreadCount(env: NodeJS.ProcessEnv = process.env): { threads: number; source: string } {
  const raw = env.CLAMP_NUM_THREADS;
  if (raw === undefined || raw === '') return { threads: os.availableParallelism(), source: 'available cores' };
  const threads = Number(raw);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError(`CLAMP_NUM_THREADS must be a whole number >= 1, got '${raw}'`);
  }
  return { threads, source: 'CLAMP_NUM_THREADS' };
}

/** What `npx clamp-native build` recorded about the LibTorch it built against (build/libtorch.json). */
export interface LibTorchOrigin {
  source: string;
  /** The LibTorch folder (a pip torch's package folder, an unpacked archive, a system prefix); older builds lack it. */
  root?: string;
  cmakeDir: string;
  libDir: string;
  version: string;
  cuda: boolean;
  buildSystem: string;
  builtAt: string;
}

/** The build's record, or null when the addon was not built by `npx clamp-native build`. */
export function libTorchOrigin(): LibTorchOrigin | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageRoot, 'build', 'libtorch.json'), 'utf8')) as LibTorchOrigin;
  } catch {
    return null;
  }
}

/**
 * OpenMP reads its wait policy once, when LibTorch's OpenMP runtime loads with the addon, so it is
 * chosen here, before the load, from the LibTorch the build recorded. For LibTorch 1.x (Debian's
 * libtorch-dev, whose matrix products run on OpenBLAS's own threads) clamp-native asks for PASSIVE:
 * there idle OpenMP workers spinning took the cores that OpenBLAS's threads needed (the packing loss at
 * b = 1024 ran ~25% slower on 2 cores). LibTorch 2.x from pip carries MKL inside and its own libgomp,
 * and there OpenMP's default (spin a while, then sleep) is faster: measured on 2 cores, the default
 * preset's training step ran 1,830 view-images/s with it against 1,516 with PASSIVE (means of two runs
 * of 15 steps each), the loss as fast either way. So nothing is set for it.
 */
function configureOpenMP(env: NodeJS.ProcessEnv = process.env, origin = libTorchOrigin()): string {
  if (env.OMP_WAIT_POLICY !== undefined) return `${env.OMP_WAIT_POLICY} (OMP_WAIT_POLICY)`;
  if (origin?.version.startsWith('1.')) {
    env.OMP_WAIT_POLICY = 'PASSIVE';
    return 'PASSIVE (clamp-native default for LibTorch 1.x with OpenBLAS)';
  }
  return "OpenMP's default (spin, then sleep)";
}

/** How long process exit waits for a running native job. */
const EXIT_WAIT_MS = 2000;

let loaded: NativeAddon | undefined;
let threadSource = 'available cores';
let openMPWaitPolicy = 'not loaded yet';

/** The addon, loaded on first use, with LibTorch's intra-op threads set. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  const file = addonPath();
  openMPWaitPolicy = configureOpenMP();
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (error) {
    throw explainLoadFailure(file, error);
  }
  // A worker thread that loads the addon (a loader worker, for its augmentation kernels) runs no
  // LibTorch op, and must not reset what the main thread chose: MKL's thread count is the process's.
  if (isMainThread) {
    const { threads, source } = defaultThreadCount();
    addon.setNumThreads(threads);
    threadSource = source;
  }
  // process.exit() (a second Ctrl-C, a closed stdout) goes straight to exit(), which tears LibTorch
  // down under a running job: a segfault in about half of the runs that exited mid-step. 'exit' comes
  // first, so the running job finishes (up to 2 s, so that "quit at once" stays nearly so; a job that
  // runs longer ends the process there, with the same status). Worker threads share the process's
  // compute thread and must not stop it: their teardown waits per job.
  if (isMainThread) process.once('exit', (code) => addon.stopComputeThread(EXIT_WAIT_MS, code));
  loaded = addon;
  return addon;
}

/** Intra-op threads LibTorch uses for every later native call. */
export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a whole number >= 1, got ${threads}`);
  native().setNumThreads(threads);
  threadSource = 'setNumThreads()';
}

export function getNumThreads(): number {
  return native().numThreads();
}

/** The OpenMP wait policy in force and who chose it. */
export function openMPWaitPolicySource(): string {
  return openMPWaitPolicy;
}

/** Where the current thread count came from: 'available cores', 'CLAMP_NUM_THREADS' or 'setNumThreads()'. */
export function numThreadsSource(): string {
  return threadSource;
}
