#!/usr/bin/env node
// Builds the addon: resolves LibTorch (scripts/resolve-libtorch.mjs), then runs cmake-js (default) or
// node-gyp (--gyp, the CPU-only second path over binding.gyp). `npm install` and `npx clamp-native build`
// both land here. Writes build/libtorch.json so that `doctor` can say where LibTorch came from.
//
//   node scripts/build.mjs [--gyp] [--tests] [--debug]
//
// CLAMP_BUILD_TESTS=1 in the environment acts as --tests: CI sets it for `npm ci`, so that the install
// build already has the core's tests and `npm test`'s own build finds nothing left to do.
// CLAMP_CUDA (AUTO|ON|OFF), CLAMP_CUDA_ARCHS ("80;90") and CLAMP_CUDA_COMPILE_CHECK (ON|REQUIRED|OFF)
// reach CMake as they are; CI sets CLAMP_CUDA_COMPILE_CHECK=REQUIRED so nvcc must compile the kernels.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, resolveLibTorch } from './resolve-libtorch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function run(command, args, env) {
  process.stderr.write(`clamp-native: ${[command, ...args].join(' ')}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${path.basename(command)} exited with status ${result.status}`);
}

/** Where Node's own headers live when the runtime ships them (Debian's and NodeSource's do), for node-gyp. */
function localNodeDir() {
  const prefix = process.config.variables.node_prefix;
  return prefix && fs.existsSync(path.join(prefix, 'include/node/node.h')) ? prefix : undefined;
}

async function main(args) {
  const gyp = args.includes('--gyp');
  const tests = args.includes('--tests') || process.env.CLAMP_BUILD_TESTS === '1';
  const debug = args.includes('--debug');
  const libtorch = await resolveLibTorch();
  process.stderr.write(`clamp-native: building against ${describe(libtorch)}\n`);
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? String(os.availableParallelism()) };

  if (gyp) {
    if (libtorch.cuda) process.stderr.write('clamp-native: node-gyp builds the CPU addon only; use the default cmake-js build for CUDA\n');
    const nodeDir = localNodeDir();
    run(
      process.execPath,
      [
        require.resolve('node-gyp/bin/node-gyp.js'),
        'rebuild',
        ...(nodeDir ? [`--nodedir=${nodeDir}`] : []),
        ...(debug ? ['--debug'] : []),
        `--jobs=${env.CMAKE_BUILD_PARALLEL_LEVEL}`,
      ],
      env,
    );
  } else {
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
    // The CUDA build's settings pass through from the environment (see the README's GPU section).
    const cuda = ['CLAMP_CUDA', 'CLAMP_CUDA_ARCHS', 'CLAMP_CUDA_COMPILE_CHECK']
      .filter((name) => process.env[name])
      .map((name) => `--CD${name}=${process.env[name]}`);
    const options = [
      '--out',
      'build',
      ...(debug ? ['--debug'] : []),
      `--CDTorch_DIR=${libtorch.cmakeDir}`,
      `--CDCLAMP_BUILD_TESTS=${tests ? 'ON' : 'OFF'}`,
      ...cuda,
    ];
    // Configure every time (cheap when nothing changed) so that an interrupted earlier configure or a
    // new LibTorch never leaves a stale build tree; the compile itself stays incremental.
    run(process.execPath, [cmakeJs, 'configure', ...options], env);
    run(process.execPath, [cmakeJs, 'build', ...options], env);
  }
  const record = { ...libtorch, buildSystem: gyp ? 'node-gyp' : 'cmake-js', builtAt: new Date().toISOString() };
  const file = path.join(root, 'build', 'libtorch.json');
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`\nclamp-native: the native build failed.\n${error.message}\n`);
  process.exitCode = 1;
}
