#!/usr/bin/env node
// Finds the LibTorch the addon builds against. First hit wins:
//   1. LIBTORCH=/path/to/libtorch (LIBTORCH_INCLUDE / LIBTORCH_LIB override its include and lib dirs)
//   2. a Python torch (LIBTORCH_USE_PYTORCH=1 forces it, =0 skips it; otherwise used when
//      `python3 -c "import torch"` works and the package ships its CMake config)
//   3. a system LibTorch: TorchConfig.cmake under the usual prefixes (Debian/Ubuntu's libtorch-dev, conda)
//   4. the official prebuilt archive (CPU, or the CUDA variant matching the driver;
//      CLAMP_LIBTORCH_VARIANT overrides), downloaded once into a cache directory.
// Plain JavaScript with no dependencies: it runs at install time, before anything is compiled.
//
// CLI: node scripts/resolve-libtorch.mjs            -> the resolution as JSON on stdout
//      node scripts/resolve-libtorch.mjs --gyp KEY  -> one field for binding.gyp (include, libdir, cflags, std)
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The prebuilt archive used when nothing is installed: the release the quick start's pip torch is, so
 * both ways build against the same LibTorch. Since 2.7 every Linux build uses the C++11 ABI, and the
 * archive's name no longer says so.
 */
export const PREBUILT_VERSION = '2.13.0';
// Newest first; the first one the driver supports wins. cu130 is the CUDA of PyPI's torch 2.13.0 wheel
// (it requires cuda-toolkit 13.0.3); cu128 and cu126 are the older variants PyTorch's releases have kept.
const PREBUILT_CUDA_VARIANTS = [
  { variant: 'cu130', cuda: [13, 0] },
  { variant: 'cu128', cuda: [12, 8] },
  { variant: 'cu126', cuda: [12, 6] },
];

export class LibTorchNotFoundError extends Error {
  constructor(reasons) {
    super(
      [
        'clamp-native could not find LibTorch. It looks, in this order, for:',
        '  1. LIBTORCH=/path/to/libtorch (an unpacked LibTorch; LIBTORCH_INCLUDE / LIBTORCH_LIB override its dirs)',
        `  2. a Python torch: \`python3 -c "import torch"\` (LIBTORCH_USE_PYTORCH=1 forces it), e.g. \`python3 -m pip install torch==${PREBUILT_VERSION}\``,
        "  3. a system LibTorch, e.g. `sudo apt-get install libtorch-dev` on Debian/Ubuntu, or conda's libtorch",
        `  4. the official prebuilt LibTorch ${PREBUILT_VERSION} (CLAMP_LIBTORCH_VARIANT=cpu|${PREBUILT_CUDA_VARIANTS.map(({ variant }) => variant).join('|')}), downloaded into ${cacheDirectory()}`,
        'What happened:',
        ...reasons.map((reason) => `  - ${reason}`),
      ].join('\n'),
    );
    this.name = 'LibTorchNotFoundError';
  }
}

export function cacheDirectory(env = process.env) {
  if (env.CLAMP_CACHE_DIR) return env.CLAMP_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'clamp-native');
}

function isDirectory(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readTorchVersion(cmakeDir) {
  try {
    const text = fs.readFileSync(path.join(cmakeDir, 'TorchConfigVersion.cmake'), 'utf8');
    return /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(text)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// The C++ ABI flag LibTorch was built with (pip's torch before 2.6 uses the old ABI): node-gyp needs it.
function readCxxFlags(cmakeDir) {
  try {
    const text = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
    return /set\(TORCH_CXX_FLAGS "([^"]*)"\)/.exec(text)?.[1] ?? '';
  } catch {
    return '';
  }
}

// The C++ standard LibTorch's headers need (TorchConfig.cmake sets it on its target: 14 for 1.13, 20 for
// 2.x): at least C++17, which our code is written in.
function readCxxStandard(cmakeDir) {
  try {
    const text = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
    return Math.max(17, Number(/CXX_STANDARD (\d+)/.exec(text)?.[1] ?? 17));
  } catch {
    return 17;
  }
}

function findLibDir(candidates) {
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'libtorch.so')) || fs.existsSync(path.join(dir, 'libtorch.dylib')));
}

/** A resolution from a directory holding share/cmake/Torch (or being the cmake dir itself). */
function fromCMakeDir(source, cmakeDir, prefix, overrides = {}) {
  const multiarch = `${os.arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  const libDir =
    overrides.libDir ??
    findLibDir([path.join(prefix, 'lib'), path.join(prefix, 'lib', multiarch), path.resolve(cmakeDir, '../..')]) ??
    path.join(prefix, 'lib');
  const includeRoot = overrides.includeDir ?? path.join(prefix, 'include');
  return {
    source,
    root: prefix,
    cmakeDir,
    version: readTorchVersion(cmakeDir),
    cxxFlags: readCxxFlags(cmakeDir),
    cxxStandard: readCxxStandard(cmakeDir),
    includeDirs: [includeRoot, path.join(includeRoot, 'torch/csrc/api/include')],
    libDir,
    cuda: fs.existsSync(path.join(libDir, 'libtorch_cuda.so')),
  };
}

function fromLibTorchEnv(env) {
  const root = path.resolve(env.LIBTORCH);
  const cmakeDir = path.join(root, 'share/cmake/Torch');
  if (!fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake'))) {
    throw new LibTorchNotFoundError([
      `LIBTORCH=${env.LIBTORCH} has no share/cmake/Torch/TorchConfig.cmake: point it at an unpacked LibTorch (the folder holding include/, lib/ and share/)`,
    ]);
  }
  return fromCMakeDir('LIBTORCH', cmakeDir, root, { includeDir: env.LIBTORCH_INCLUDE, libDir: env.LIBTORCH_LIB });
}

function fromPython(env, reasons) {
  const python = env.PYTHON || 'python3';
  const probe = [
    'import json, os, torch',
    'root = os.path.dirname(torch.__file__)',
    'print(json.dumps({"root": root, "cmake": os.path.join(root, "share", "cmake", "Torch"), "version": torch.__version__, "cuda": torch.version.cuda}))',
  ].join('\n');
  const timeout = Number(env.CLAMP_PYTHON_PROBE_TIMEOUT_MS ?? 120_000);
  const run = spawnSync(python, ['-c', probe], { encoding: 'utf8', env, timeout });
  // A torch that is there but slow to import (a loaded machine) must not become a silent build against
  // another LibTorch: stop and say so.
  if (run.error?.code === 'ETIMEDOUT') {
    throw new LibTorchNotFoundError([
      `${python} took over ${timeout / 1000} s to import torch (a busy machine?), so it is not known whether it has one: build again when the machine is quieter, raise CLAMP_PYTHON_PROBE_TIMEOUT_MS, or choose with LIBTORCH=<folder> or LIBTORCH_USE_PYTORCH=0 (skip the Python torch)`,
    ]);
  }
  if (run.status !== 0) {
    reasons.push(`${python} has no importable torch${run.error ? ` (${run.error.message})` : ''}`);
    return undefined;
  }
  const found = JSON.parse(run.stdout.trim().split('\n').pop());
  if (!fs.existsSync(path.join(found.cmake, 'TorchConfig.cmake'))) {
    reasons.push(
      `${python}'s torch ${found.version} at ${found.root} ships no CMake config (share/cmake/Torch); Debian's python3-torch is like that, its libtorch-dev is not`,
    );
    return undefined;
  }
  const resolution = fromCMakeDir('python', found.cmake, found.root);
  return { ...resolution, version: found.version, python };
}

export function systemCandidates(env = process.env) {
  if (env.CLAMP_LIBTORCH_SEARCH_PREFIXES !== undefined) {
    return env.CLAMP_LIBTORCH_SEARCH_PREFIXES.split(path.delimiter).filter(Boolean);
  }
  const candidates = [
    '/usr/lib/x86_64-linux-gnu/cmake/Torch',
    '/usr/lib/aarch64-linux-gnu/cmake/Torch',
    '/usr/lib/cmake/Torch',
    '/usr/lib64/cmake/Torch',
    '/usr/share/cmake/Torch',
    '/usr/local/lib/cmake/Torch',
    '/usr/local/share/cmake/Torch',
    '/opt/libtorch/share/cmake/Torch',
  ];
  if (env.CONDA_PREFIX) {
    candidates.unshift(path.join(env.CONDA_PREFIX, 'share/cmake/Torch'), path.join(env.CONDA_PREFIX, 'lib/cmake/Torch'));
  }
  return candidates;
}

function fromSystem(env, reasons) {
  for (const cmakeDir of systemCandidates(env)) {
    if (fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake'))) {
      // <prefix>/lib/<multiarch>/cmake/Torch or <prefix>/share/cmake/Torch: the prefix owns include/.
      let prefix = path.resolve(cmakeDir, '../../..');
      if (!isDirectory(path.join(prefix, 'include'))) prefix = path.resolve(prefix, '..');
      return fromCMakeDir('system', cmakeDir, prefix);
    }
  }
  reasons.push(`no TorchConfig.cmake under ${systemCandidates(env).join(', ')}`);
  return undefined;
}

/** The CUDA version the driver supports, from nvidia-smi, or undefined without an NVIDIA driver. */
function driverCudaVersion() {
  try {
    const text = execFileSync('nvidia-smi', { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /CUDA Version:\s*(\d+)\.(\d+)/.exec(text);
    return match ? [Number(match[1]), Number(match[2])] : undefined;
  } catch {
    return undefined;
  }
}

export function prebuiltVariant(env = process.env, cudaVersion = driverCudaVersion()) {
  if (env.CLAMP_LIBTORCH_VARIANT) return env.CLAMP_LIBTORCH_VARIANT;
  if (!cudaVersion) return 'cpu';
  const [major, minor] = cudaVersion;
  const fit = PREBUILT_CUDA_VARIANTS.find(({ cuda }) => major > cuda[0] || (major === cuda[0] && minor >= cuda[1]));
  return fit ? fit.variant : 'cpu';
}

export function prebuiltUrl(variant, env = process.env) {
  if (env.CLAMP_LIBTORCH_URL) return env.CLAMP_LIBTORCH_URL;
  return `https://download.pytorch.org/libtorch/${variant}/libtorch-shared-with-deps-${PREBUILT_VERSION}%2B${variant}.zip`;
}

async function fromDownload(env, reasons) {
  const variant = prebuiltVariant(env);
  const target = path.join(cacheDirectory(env), `libtorch-${PREBUILT_VERSION}-${variant}`);
  const cmakeDir = path.join(target, 'libtorch/share/cmake/Torch');
  if (!fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake'))) {
    const url = prebuiltUrl(variant, env);
    process.stderr.write(`clamp-native: downloading LibTorch ${PREBUILT_VERSION}+${variant} from ${url}\n`);
    let response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(Number(env.CLAMP_LIBTORCH_DOWNLOAD_TIMEOUT_MS ?? 600_000)) });
    } catch (error) {
      reasons.push(`the download of ${url} failed (${error.cause?.code ?? error.message}): offline?`);
      return undefined;
    }
    if (!response.ok) {
      reasons.push(`the download of ${url} answered HTTP ${response.status}`);
      return undefined;
    }
    fs.mkdirSync(cacheDirectory(env), { recursive: true });
    // Unpack beside the target and rename, so an interrupted download never leaves a half folder.
    const partial = `${target}.partial-${process.pid}`;
    const archive = `${partial}.zip`;
    try {
      fs.writeFileSync(archive, Buffer.from(await response.arrayBuffer()));
      fs.mkdirSync(partial, { recursive: true });
      const unzip = spawnSync('unzip', ['-q', archive, '-d', partial], { stdio: 'inherit' });
      if (unzip.status !== 0) {
        reasons.push(`unpacking ${archive} failed: is \`unzip\` installed?`);
        return undefined;
      }
      fs.rmSync(target, { recursive: true, force: true });
      fs.renameSync(partial, target);
    } finally {
      fs.rmSync(archive, { force: true });
      fs.rmSync(partial, { recursive: true, force: true });
    }
    if (!fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake'))) {
      reasons.push(`the archive from ${url} holds no libtorch/share/cmake/Torch/TorchConfig.cmake`);
      return undefined;
    }
  }
  return { ...fromCMakeDir('download', cmakeDir, path.join(target, 'libtorch')), variant };
}

/** Resolves LibTorch, first hit wins; throws LibTorchNotFoundError listing what was tried. */
export async function resolveLibTorch(env = process.env) {
  if (env.LIBTORCH) return fromLibTorchEnv(env);
  const reasons = [];
  if (env.LIBTORCH_USE_PYTORCH !== '0') {
    const python = fromPython(env, reasons);
    if (python) return python;
    if (env.LIBTORCH_USE_PYTORCH === '1') throw new LibTorchNotFoundError(reasons);
  } else {
    reasons.push('LIBTORCH_USE_PYTORCH=0: the Python torch was not considered');
  }
  const system = fromSystem(env, reasons);
  if (system) return system;
  if (env.CLAMP_LIBTORCH_DOWNLOAD === '0') {
    reasons.push('CLAMP_LIBTORCH_DOWNLOAD=0: the prebuilt archive was not downloaded');
    throw new LibTorchNotFoundError(reasons);
  }
  const downloaded = await fromDownload(env, reasons);
  if (downloaded) return downloaded;
  throw new LibTorchNotFoundError(reasons);
}

export function describe(resolution) {
  return `LibTorch ${resolution.version} (${resolution.source}: ${resolution.cmakeDir}; libraries in ${resolution.libDir}${resolution.cuda ? ', with CUDA' : ''})`;
}

async function main(args) {
  try {
    const resolution = await resolveLibTorch();
    if (args[0] === '--gyp') {
      // binding.gyp expands these with <!@(...): space-separated, one value per item.
      const field = {
        include: resolution.includeDirs.join(' '),
        libdir: resolution.libDir,
        cflags: resolution.cxxFlags,
        std: `-std=c++${resolution.cxxStandard}`,
      }[args[1]];
      if (field === undefined) throw new Error(`--gyp takes include, libdir, cflags or std, got ${args[1]}`);
      process.stdout.write(`${field}\n`);
    } else {
      process.stdout.write(`${JSON.stringify(resolution, null, 2)}\n`);
    }
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await main(process.argv.slice(2));
}
