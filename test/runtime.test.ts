// doctor, threads, BLAS detection and the addon's load errors.
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { doctor, getNumThreads, setNumThreads, Trainer } from '../lib/index.js';
import { classifyBlas, detectBlas, detectOpenMP, formatDoctorReport } from '../lib/runtime/doctor.js';
import { native, packageRoot } from '../lib/runtime/native.js';
import { resolveLibTorch } from '../scripts/resolve-libtorch.mjs';

const cli = path.join(packageRoot, 'dist', 'cli', 'main.js');
function runCli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
}

describe('doctor', () => {
  it('reports the LibTorch the build resolved, its origin, CUDA, threads and BLAS', async () => {
    const report = doctor();
    const resolved = await resolveLibTorch();
    expect(report.libtorch.origin?.source).toBe(resolved.source);
    expect(report.libtorch.origin?.cmakeDir).toBe(resolved.cmakeDir);
    // The compiled-in version agrees with the resolved package's major.minor.
    expect(report.libtorch.version.split('.').slice(0, 2)).toEqual(resolved.version.split('.').slice(0, 2));
    expect(report.cuda.available).toBe(report.cuda.deviceCount > 0);
    // Devices are described by a build with the CUDA kernels, every one the runtime sees.
    expect(report.cuda.devices.length).toBe(report.cuda.kernels ? report.cuda.deviceCount : 0);
    expect(report.threads.intraOp).toBe(os.availableParallelism());
    expect(report.blas.kind).not.toBe('unknown');
    expect(report.build.cxxStandard).toBeGreaterThanOrEqual(201703);
    // LibTorch brings its OpenMP runtime, and it is the only one in the process.
    expect(report.openMP.runtimes.length).toBe(1);
    expect(report.openMP.warning).toBeNull();
  });

  it('names where LibTorch came from: the torch package folder for a pip torch', async () => {
    const report = doctor();
    const resolved = await resolveLibTorch();
    const line = formatDoctorReport(report)
      .split('\n')
      .find((l) => l.startsWith('LibTorch'));
    expect(line).toContain(`${report.libtorch.version} from ${resolved.source} (${resolved.root})`);
    if (resolved.source === 'python') expect(resolved.root).toMatch(/torch$/);
  });

  it('--json prints the same report as the API, and the text form names LibTorch and BLAS', () => {
    const json = runCli(['doctor', '--json']);
    expect(json.status).toBe(0);
    const report = JSON.parse(json.stdout) as ReturnType<typeof doctor>;
    expect(report.libtorch.version).toBe(doctor().libtorch.version);
    const text = runCli(['doctor']);
    expect(text.stdout).toMatch(/LibTorch\s+\d+\.\d+/);
    expect(text.stdout).toMatch(/BLAS\s+\w/);
  });

  it('CLAMP_NUM_THREADS sets the intra-op threads; a bad value is an error naming it', () => {
    const one = JSON.parse(runCli(['doctor', '--json'], { CLAMP_NUM_THREADS: '1' }).stdout) as ReturnType<typeof doctor>;
    expect(one.threads).toMatchObject({ intraOp: 1, source: 'CLAMP_NUM_THREADS' });
    const bad = runCli(['doctor'], { CLAMP_NUM_THREADS: 'many' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/CLAMP_NUM_THREADS must be a whole number >= 1, got 'many'/);
  });

  it('chooses the OpenMP wait policy by the LibTorch built against, unless the user chose one', async () => {
    const chosen = spawnSync(process.execPath, [cli, 'doctor', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, OMP_WAIT_POLICY: 'ACTIVE' },
    });
    expect((JSON.parse(chosen.stdout) as ReturnType<typeof doctor>).threads.openMPWaitPolicy).toBe('ACTIVE (OMP_WAIT_POLICY)');
    const env = { ...process.env };
    delete env.OMP_WAIT_POLICY;
    const fallback = spawnSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8', env });
    const policy = (JSON.parse(fallback.stdout) as ReturnType<typeof doctor>).threads.openMPWaitPolicy;
    // PASSIVE for LibTorch 1.x (OpenBLAS's own threads need the cores), OpenMP's default for 2.x (pip's
    // torch: MKL inside, measured faster with its default).
    const { version } = await resolveLibTorch();
    expect(policy).toBe(
      version.startsWith('1.') ? 'PASSIVE (clamp-native default for LibTorch 1.x with OpenBLAS)' : "OpenMP's default (spin, then sleep)",
    );
  });

  it('setNumThreads changes the count and rejects nonsense', () => {
    const before = getNumThreads();
    setNumThreads(1);
    expect(getNumThreads()).toBe(1);
    expect(doctor().threads.source).toBe('setNumThreads()');
    setNumThreads(before);
    expect(() => setNumThreads(0)).toThrow(RangeError);
  });
});

describe('CPU memory', () => {
  it('LibTorch allocates from the caching allocator from the addon load on, and a training step reuses its blocks', async () => {
    expect(doctor().cpuMemory.cachingAllocator).toBe(true);
    expect(formatDoctorReport(doctor())).toMatch(/CPU memory +caching allocator/);
    const trainer = await Trainer.create({
      backbone: 'small',
      widths: [8, 16],
      blocks: [1, 1],
      inChannels: 1,
      projectorHidden: [64],
      projectorOut: 32,
      views: 2,
      schedule: { peakLr: 0.1, totalSteps: 10 },
    });
    // 2 x 64 images of 28x28: the activations are blocks of 100 KiB and more, which malloc would fault in anew.
    const images = Float32Array.from({ length: 128 * 28 * 28 }, (_, k) => (k % 97) / 97);
    await trainer.step(images, [128, 1, 28, 28]);
    const after1 = native().cpuMemory();
    await trainer.step(images, [128, 1, 28, 28]);
    const after2 = native().cpuMemory();
    trainer.dispose();
    // The second step allocates what the first freed: served from the cache, not from malloc.
    expect(after2.reused - after1.reused).toBeGreaterThan(10);
    expect(after2.allocated - after1.allocated).toBeLessThan(after2.reused - after1.reused);
    expect(after2.cachedBytes).toBeLessThanOrEqual(after2.limitBytes);
    native().releaseCachedCpuMemory();
    expect(native().cpuMemory()).toMatchObject({ cachedBytes: 0, cachedBlocks: 0 });
  });
});

describe('BLAS detection', () => {
  it("classifies Debian's alternatives", () => {
    expect(classifyBlas('/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3')).toBe('OpenBLAS');
    expect(classifyBlas('/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0')).toBe('reference BLAS');
    expect(classifyBlas('/opt/intel/lib/libmkl_rt.so.2')).toBe('MKL');
    expect(classifyBlas('/usr/lib/x86_64-linux-gnu/blis-openmp/libblas.so.3')).toBe('BLIS');
  });

  it('warns, with the fix, when the reference BLAS is mapped', () => {
    const maps = '7f00-7f10 r-xp 00000000 fe:01 1234 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0\n';
    const blas = detectBlas(maps);
    expect(blas.kind).toBe('reference BLAS');
    expect(blas.warning).toMatch(/apt-get install libopenblas0-pthread/);
  });

  it('prefers the libblas.so.3 that LibTorch calls over other BLAS libraries in the process', () => {
    const maps = [
      '7f00-7f10 r-xp 00000000 fe:01 1 /usr/lib/x86_64-linux-gnu/libopenblas.so.0',
      '7f20-7f30 r-xp 00000000 fe:01 2 /usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0',
    ].join('\n');
    expect(detectBlas(maps).kind).toBe('reference BLAS');
  });

  it("reads a BLAS linked into LibTorch (pip's MKL) from its build configuration when none is mapped", () => {
    const config =
      '  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605\n  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release,';
    expect(detectBlas('', config)).toEqual({ kind: 'MKL', library: 'linked into LibTorch (MKL 2024.2, BLAS_INFO=mkl)', warning: null });
    expect(detectBlas('', 'Build settings: BUILD_TYPE=Release').kind).toBe('unknown');
    // A mapped library wins over the configuration: it is what the calls reach.
    const maps = '7f00-7f10 r-xp 00000000 fe:01 1 /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3\n';
    expect(detectBlas(maps, config).kind).toBe('OpenBLAS');
  });
});

describe('OpenMP detection', () => {
  it('names each mapped runtime and warns when there is more than one', () => {
    const one = detectOpenMP('7f00-7f10 r-xp 00000000 fe:01 1 /opt/site-packages/torch/lib/libgomp.so.1\n');
    expect(one).toEqual({ runtimes: [{ kind: 'GNU libgomp', library: '/opt/site-packages/torch/lib/libgomp.so.1' }], warning: null });
    const two = detectOpenMP(
      [
        '7f00-7f10 r-xp 00000000 fe:01 1 /opt/site-packages/torch/lib/libgomp.so.1',
        '7f20-7f30 r-xp 00000000 fe:01 2 /opt/other/libiomp5.so',
        '7f30-7f40 r--p 00000000 fe:01 2 /opt/other/libiomp5.so',
      ].join('\n'),
    );
    expect(two.runtimes.map((r) => r.kind)).toEqual(['GNU libgomp', 'Intel libiomp5']);
    expect(two.warning).toMatch(/2 OpenMP runtimes are loaded/);
    expect(detectOpenMP('7f00-7f10 r-xp 00000000 fe:01 1 /usr/lib/libgompish-not.so\n').runtimes).toEqual([]);
  });
});

describe('loading the addon', () => {
  it("a missing build says how to build it, including npm 11's script approval", () => {
    const result = runCli(['doctor'], { CLAMP_NATIVE_ADDON: path.join(os.tmpdir(), 'no-such-addon.node') });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/native addon is not built/);
    expect(result.stderr).toMatch(/npx clamp-native build/);
    expect(result.stderr).toMatch(/npm install-scripts approve clamp-native/);
    expect(result.stderr).toMatch(/--allow-scripts=clamp-native/);
  });
});
