// The peers every benchmark measures against, found in one place:
// - PyTorch under Python (`PYTHON`, default `python3`: the quick start's `pip install torch==2.13.0`),
//   run as a child process by the benchmarks' .py scripts;
// - onnxruntime-node, which is not a dependency of clamp-native (its install script downloads CUDA
//   libraries from outside npm, and a benchmark's peer must never be able to break the install): it is
//   installed on first use into bench/peers/node_modules, with install scripts off, from
//   bench/peers/package.json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const peersDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peers');

/** The Python interpreter whose torch the benchmarks compare against. */
export const PYTHON = process.env.PYTHON || 'python3';

/**
 * The peer's torch version, e.g. '2.13.0+cpu'; throws with the fix when PYTHON has no torch.
 * Benchmarks call it before they start timing, so a missing peer fails at once, not after the native side.
 */
export function pythonTorchVersion() {
  const probe = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new Error(
      `the peer needs PyTorch under ${PYTHON}, which has none (${(probe.stderr || probe.error?.message || '').trim().split('\n').pop()}): run \`python3 -m pip install torch==2.13.0\`, or set PYTHON=/path/to/python`,
    );
  }
  return probe.stdout.trim();
}

/** onnxruntime-node's module, installed into bench/peers on first use (npm registry only, no scripts). */
export async function loadOnnxRuntime() {
  const entry = path.join(peersDir, 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(path.join(entry, 'package.json'))) {
    process.stderr.write(`bench: installing the onnxruntime-node peer into ${path.join(peersDir, 'node_modules')} (once)\n`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const install = spawnSync(npm, ['install', '--prefix', peersDir, '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock'], {
      stdio: 'inherit',
    });
    if (install.status !== 0)
      throw new Error(`installing onnxruntime-node into ${peersDir} failed (npm exited ${install.status ?? install.error?.message})`);
  }
  const main = JSON.parse(fs.readFileSync(path.join(entry, 'package.json'), 'utf8')).main ?? 'index.js';
  const module = await import(pathToFileURL(path.join(entry, main)).href);
  return module.default ?? module;
}
