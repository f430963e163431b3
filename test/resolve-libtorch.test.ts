// The LibTorch resolution order, on fake LibTorch trees (only the CMake config files matter to it).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prebuiltUrl, prebuiltVariant, resolveLibTorch } from '../scripts/resolve-libtorch.mjs';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-resolve-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A folder laid out like an unpacked LibTorch: include/, lib/libtorch.so, share/cmake/Torch. */
function fakeLibTorch(root: string, version: string, cxxStandard?: number): string {
  fs.mkdirSync(path.join(root, 'share/cmake/Torch'), { recursive: true });
  fs.mkdirSync(path.join(root, 'include'), { recursive: true });
  fs.mkdirSync(path.join(root, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(root, 'lib/libtorch.so'), '');
  // 2.x's config sets the C++ standard its headers need on its target, as pip's torch 2.13 does.
  const standard = cxxStandard ? `set_target_properties(torch PROPERTIES\n    CXX_STANDARD ${cxxStandard}\n)\n` : '';
  fs.writeFileSync(
    path.join(root, 'share/cmake/Torch/TorchConfig.cmake'),
    `set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")\n${standard}`,
  );
  fs.writeFileSync(path.join(root, 'share/cmake/Torch/TorchConfigVersion.cmake'), `set(PACKAGE_VERSION "${version}")\n`);
  return root;
}

// Every test states the whole environment: no Python torch, no system prefixes, no download.
const isolated = {
  PATH: process.env.PATH ?? '',
  HOME: scratch,
  PYTHON: path.join(scratch, 'no-python'),
  CLAMP_LIBTORCH_SEARCH_PREFIXES: '',
  CLAMP_LIBTORCH_DOWNLOAD: '0',
  CLAMP_CACHE_DIR: path.join(scratch, 'cache'),
};

describe('resolveLibTorch', () => {
  const unpacked = fakeLibTorch(path.join(scratch, 'unpacked'), '2.5.1');
  const system = fakeLibTorch(path.join(scratch, 'usr'), '1.13.0');

  it('1. LIBTORCH wins over everything else, with LIBTORCH_INCLUDE / LIBTORCH_LIB overrides', async () => {
    const env = { ...isolated, LIBTORCH: unpacked, CLAMP_LIBTORCH_SEARCH_PREFIXES: path.join(system, 'share/cmake/Torch') };
    const found = await resolveLibTorch(env);
    expect(found).toMatchObject({
      source: 'LIBTORCH',
      version: '2.5.1',
      libDir: path.join(unpacked, 'lib'),
      cxxFlags: '-D_GLIBCXX_USE_CXX11_ABI=0',
      cxxStandard: 17,
    });
    const overridden = await resolveLibTorch({ ...env, LIBTORCH_INCLUDE: '/opt/inc', LIBTORCH_LIB: '/opt/lib' });
    expect(overridden.includeDirs[0]).toBe('/opt/inc');
    expect(overridden.libDir).toBe('/opt/lib');
  });

  it('an invalid LIBTORCH is an error, not a silent fall-through', async () => {
    await expect(resolveLibTorch({ ...isolated, LIBTORCH: scratch })).rejects.toThrow(
      /LIBTORCH=.* has no share\/cmake\/Torch\/TorchConfig.cmake/,
    );
  });

  it('2. LIBTORCH_USE_PYTORCH=1 insists on a Python torch and says why it failed', async () => {
    await expect(resolveLibTorch({ ...isolated, LIBTORCH_USE_PYTORCH: '1' })).rejects.toThrow(/no-python has no importable torch/);
  });

  it('2. a Python torch with a CMake config is used before the system one', async () => {
    const fakePython = path.join(scratch, 'python-with-torch');
    const torchRoot = fakeLibTorch(path.join(scratch, 'site-packages/torch'), '2.11.0', 20);
    const answer = JSON.stringify({
      root: torchRoot,
      cmake: path.join(torchRoot, 'share/cmake/Torch'),
      version: '2.11.0+cu130',
      cuda: '13.0',
    });
    fs.writeFileSync(fakePython, `#!/bin/sh\necho '${answer}'\n`, { mode: 0o755 });
    const found = await resolveLibTorch({
      ...isolated,
      PYTHON: fakePython,
      CLAMP_LIBTORCH_SEARCH_PREFIXES: path.join(system, 'share/cmake/Torch'),
    });
    // root is the torch package folder, which doctor names ("from python (…/site-packages/torch)").
    expect(found).toMatchObject({
      source: 'python',
      version: '2.11.0+cu130',
      root: torchRoot,
      libDir: path.join(torchRoot, 'lib'),
      cxxStandard: 20,
    });
  });

  it('2. a Python that is too slow to answer is an error naming the timeout, not a silent build against the system LibTorch', async () => {
    const slowPython = path.join(scratch, 'python-asleep');
    fs.writeFileSync(slowPython, '#!/bin/sh\nsleep 5\n', { mode: 0o755 });
    await expect(
      resolveLibTorch({
        ...isolated,
        PYTHON: slowPython,
        CLAMP_PYTHON_PROBE_TIMEOUT_MS: '300',
        CLAMP_LIBTORCH_SEARCH_PREFIXES: path.join(system, 'share/cmake/Torch'),
      }),
    ).rejects.toThrow(/python-asleep took over 0.3 s to import torch .*LIBTORCH_USE_PYTORCH=0/);
  });

  it('3. a system TorchConfig.cmake is found under the search prefixes', async () => {
    const found = await resolveLibTorch({
      ...isolated,
      CLAMP_LIBTORCH_SEARCH_PREFIXES: `/nowhere${path.delimiter}${path.join(system, 'share/cmake/Torch')}`,
    });
    expect(found).toMatchObject({ source: 'system', version: '1.13.0', libDir: path.join(system, 'lib') });
  });

  it('nothing found and no download: the error lists all four ways and what each found', async () => {
    const error = await resolveLibTorch(isolated).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    for (const way of ['1. LIBTORCH=', '2. a Python torch', '3. a system LibTorch', '4. the official prebuilt LibTorch'])
      expect(message).toContain(way);
    expect(message).toMatch(/no importable torch/);
    expect(message).toMatch(/CLAMP_LIBTORCH_DOWNLOAD=0/);
  });

  it('4. offline, the download fails fast with the same four-way message', async () => {
    const env = { ...isolated, CLAMP_LIBTORCH_DOWNLOAD: '1', CLAMP_LIBTORCH_URL: 'http://127.0.0.1:9/libtorch.zip' };
    await expect(resolveLibTorch(env)).rejects.toThrow(/the download of http:\/\/127.0.0.1:9\/libtorch.zip failed[\s\S]*/);
    await expect(resolveLibTorch(env)).rejects.toThrow(/1\. LIBTORCH=/);
  });

  it('4. downloads the archive once, unpacks it atomically into the cache and reuses it', async () => {
    const staging = fakeLibTorch(path.join(scratch, 'staging/libtorch'), '2.13.0');
    const archive = path.join(scratch, 'libtorch.zip');
    execFileSync('zip', ['-qr', archive, 'libtorch'], { cwd: path.dirname(staging) });
    let requests = 0;
    const server = http.createServer((_, response) => {
      requests++;
      response.end(fs.readFileSync(archive));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/libtorch.zip`;
    try {
      const env = { ...isolated, CLAMP_LIBTORCH_DOWNLOAD: '1', CLAMP_LIBTORCH_URL: url, CLAMP_LIBTORCH_VARIANT: 'cpu' };
      const first = await resolveLibTorch(env);
      expect(first).toMatchObject({ source: 'download', version: '2.13.0', variant: 'cpu' });
      expect(first.cmakeDir.startsWith(isolated.CLAMP_CACHE_DIR)).toBe(true);
      expect(fs.readdirSync(isolated.CLAMP_CACHE_DIR).filter((name) => name.includes('partial'))).toEqual([]);
      await resolveLibTorch(env);
      expect(requests).toBe(1);
    } finally {
      server.close();
    }
  });

  it("picks the prebuilt variant from the driver's CUDA version", () => {
    expect(prebuiltVariant({}, undefined)).toBe('cpu');
    expect(prebuiltVariant({}, [13, 2])).toBe('cu130');
    expect(prebuiltVariant({}, [12, 9])).toBe('cu128');
    expect(prebuiltVariant({}, [12, 6])).toBe('cu126');
    expect(prebuiltVariant({}, [12, 4])).toBe('cpu');
    expect(prebuiltVariant({ CLAMP_LIBTORCH_VARIANT: 'cu126' }, [13, 0])).toBe('cu126');
    // Since 2.7 the archives have one (C++11) ABI and drop "cxx11-abi" from their names.
    expect(prebuiltUrl('cu130', {})).toMatch(/libtorch\/cu130\/libtorch-shared-with-deps-2\.13\.0%2Bcu130\.zip$/);
  });
});
