// `clamp-native doctor`: what LibTorch this install runs on and whether it will be fast.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { CudaDeviceInfo, NativeCpuMemory, NativeRuntimeInfo } from './addon-types.js';
import { addonPath, libTorchOrigin, native, numThreadsSource, openMPWaitPolicySource, packageRoot, type LibTorchOrigin } from './native.js';

export type BlasKind = 'OpenBLAS' | 'reference BLAS' | 'MKL' | 'BLIS' | 'ATLAS' | 'unknown';

export interface BlasInfo {
  kind: BlasKind;
  /**
   * The shared library the process actually mapped, links resolved; for a BLAS linked statically into
   * LibTorch (pip's torch carries MKL inside libtorch_cpu.so) what LibTorch's build configuration says.
   */
  library: string | null;
  /** Set when matrix products will be slow, with the fix. */
  warning: string | null;
}

export type OpenMPKind = 'GNU libgomp' | 'Intel libiomp5' | 'LLVM libomp';

export interface OpenMPInfo {
  /** The OpenMP runtimes this process mapped (LibTorch's, and any other a library brought). */
  runtimes: { kind: OpenMPKind; library: string }[];
  /** Set when more than one runtime is mapped: each keeps its own thread pool, and they fight over the cores. */
  warning: string | null;
}

export interface DoctorReport {
  clampNative: string;
  node: string;
  platform: string;
  addon: { path: string };
  libtorch: {
    version: string;
    origin: LibTorchOrigin | null;
    /** The Debian/Ubuntu package that owns the library, when dpkg knows it. */
    package: string | null;
  };
  cuda: { available: boolean; deviceCount: number; kernels: boolean; devices: CudaDeviceInfo[] };
  threads: { intraOp: number; source: string; openMPWaitPolicy: string };
  cpuMemory: NativeCpuMemory;
  blas: BlasInfo;
  openMP: OpenMPInfo;
  build: NativeRuntimeInfo['build'];
  torchConfig: string;
  warnings: string[];
}

const REFERENCE_BLAS_FIX =
  "The reference (netlib) BLAS is active: LibTorch's matrix products run ~50x slower than with OpenBLAS. " +
  'Fix: `sudo apt-get install libopenblas0-pthread` (it takes over libblas.so.3 through update-alternatives).';

/** Classifies a BLAS library path as Debian lays them out (/usr/lib/<arch>/{blas,openblas-pthread,...}/libblas.so.3). */
export function classifyBlas(library: string): BlasKind {
  const lower = library.toLowerCase();
  if (lower.includes('openblas')) return 'OpenBLAS';
  if (lower.includes('mkl')) return 'MKL';
  if (lower.includes('blis')) return 'BLIS';
  if (lower.includes('atlas')) return 'ATLAS';
  if (/\/blas\/libblas\.so/.test(lower) || /\/libblas\.so/.test(lower)) return 'reference BLAS';
  return 'unknown';
}

/** The mapped shared libraries whose file name matches, links resolved, each once. */
function mappedLibraries(maps: string, name: RegExp): string[] {
  const libraries = new Set<string>();
  for (const line of maps.split('\n')) {
    const file = line.slice(line.indexOf('/'));
    if (line.includes('/') && name.test(path.basename(file))) libraries.add(realpathOr(file));
  }
  return [...libraries];
}

/**
 * The BLAS this process has mapped (after loading LibTorch), read from /proc/self/maps; when none is
 * mapped, the one LibTorch's build configuration (`torchConfig`, at::show_config()) names as linked in.
 */
export function detectBlas(maps: string = readProcMaps(), torchConfig = ''): BlasInfo {
  const found = mappedLibraries(maps, /lib(open)?blas|libmkl|libblis|libatlas/);
  // libopenblas may be mapped beside the libblas.so.3 alternative that points into it: prefer the kind
  // that the libblas.so.3 alternative resolves to, since that is what LibTorch calls.
  const blas = found.find((file) => path.basename(file).startsWith('libblas')) ?? found[0] ?? null;
  if (blas === null) return linkedBlas(torchConfig);
  const kind = classifyBlas(blas);
  return { kind, library: blas, warning: kind === 'reference BLAS' ? REFERENCE_BLAS_FIX : null };
}

/** A BLAS linked statically into LibTorch, from its build configuration's BLAS_INFO (and MKL's version line). */
function linkedBlas(torchConfig: string): BlasInfo {
  const info = /BLAS_INFO=(\w+)/.exec(torchConfig)?.[1]?.toLowerCase();
  const kinds: Record<string, BlasKind> = { mkl: 'MKL', open: 'OpenBLAS', openblas: 'OpenBLAS', blis: 'BLIS', atlas: 'ATLAS' };
  const kind = info === undefined ? 'unknown' : (kinds[info] ?? 'unknown');
  if (kind === 'unknown') return { kind, library: null, warning: null };
  const mklVersion = /Math Kernel Library Version ([\w.]+)/.exec(torchConfig)?.[1];
  const what = kind === 'MKL' && mklVersion ? `MKL ${mklVersion}` : kind;
  return { kind, library: `linked into LibTorch (${what}, BLAS_INFO=${info})`, warning: null };
}

/** The OpenMP runtimes this process mapped, from /proc/self/maps. */
export function detectOpenMP(maps: string = readProcMaps()): OpenMPInfo {
  const runtimes = mappedLibraries(maps, /^lib(gomp|iomp5|omp)[.-]/).map((library) => {
    const name = path.basename(library);
    const kind: OpenMPKind = name.startsWith('libgomp') ? 'GNU libgomp' : name.startsWith('libiomp5') ? 'Intel libiomp5' : 'LLVM libomp';
    return { kind, library };
  });
  const warning =
    runtimes.length > 1
      ? `${runtimes.length} OpenMP runtimes are loaded (${runtimes.map((r) => r.library).join(', ')}): each keeps its own thread pool, and together they oversubscribe the cores. Load only LibTorch's (no other OpenMP library in this process), or set OMP_NUM_THREADS=1 for the others.`
      : null;
  return { runtimes, warning };
}

function readProcMaps(): string {
  try {
    return fs.readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return '';
  }
}

function realpathOr(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}

function owningPackage(libDir: string | undefined): string | null {
  if (!libDir) return null;
  try {
    const library = realpathOr(path.join(libDir, 'libtorch.so'));
    const owner = execFileSync('dpkg-query', ['-S', library], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const name = owner.split(':')[0]?.trim();
    if (!name) return null;
    const version = execFileSync('dpkg-query', ['-W', '-f=${Version}', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return `${name} ${version.trim()}`;
  } catch {
    return null;
  }
}

function packageVersion(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

export function doctor(): DoctorReport {
  const info = native().runtimeInfo();
  const origin = libTorchOrigin();
  const maps = readProcMaps();
  const blas = detectBlas(maps, info.torchConfig);
  const openMP = detectOpenMP(maps);
  const warnings: string[] = [];
  if (blas.warning) warnings.push(blas.warning);
  if (blas.kind === 'unknown')
    warnings.push('Could not tell which BLAS LibTorch uses (no libblas/openblas/mkl mapped, and its build configuration names none).');
  if (openMP.warning) warnings.push(openMP.warning);
  if (origin === null) warnings.push('build/libtorch.json is missing: the addon was not built by `npx clamp-native build`.');
  if (info.numThreads === 1 && numThreadsSource() === 'available cores') {
    warnings.push('LibTorch runs on one thread: this process may use only one core.');
  }
  return {
    clampNative: packageVersion(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addon: { path: addonPath() },
    libtorch: { version: info.torchVersion, origin, package: owningPackage(origin?.libDir) },
    cuda: { available: info.cudaAvailable, deviceCount: info.cudaDeviceCount, kernels: info.build.cudaKernels, devices: info.cudaDevices },
    threads: { intraOp: info.numThreads, source: numThreadsSource(), openMPWaitPolicy: openMPWaitPolicySource() },
    cpuMemory: native().cpuMemory(),
    blas,
    openMP,
    build: info.build,
    torchConfig: info.torchConfig,
    warnings,
  };
}

export function formatDoctorReport(report: DoctorReport): string {
  const origin = report.libtorch.origin;
  const lines = [
    `clamp-native ${report.clampNative} on Node ${report.node} (${report.platform})`,
    `addon        ${report.addon.path}`,
    `LibTorch     ${report.libtorch.version}` +
      (origin ? ` from ${origin.source} (${origin.root ?? origin.cmakeDir})` : '') +
      (report.libtorch.package ? `, package ${report.libtorch.package}` : ''),
    `libraries    ${origin?.libDir ?? 'unknown'}`,
    `CUDA         ${report.cuda.available ? `available, ${report.cuda.deviceCount} device(s)` : 'not available (CPU only)'}; ` +
      `fused-loss CUDA kernels ${report.cuda.kernels ? 'built' : 'not in this build'}`,
    ...report.cuda.devices.map(
      (d) =>
        `GPU ${String(d.index).padEnd(9)}${d.name}, compute capability ${d.computeCapability}, ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${d.multiprocessors} SMs` +
        (Number(d.computeCapability) >= 8 ? ' (bf16 autocast by default)' : ' (float32 by default)'),
    ),
    `threads      ${report.threads.intraOp} intra-op (${report.threads.source}), OpenMP wait policy ${report.threads.openMPWaitPolicy}`,
    `CPU memory   ${report.cpuMemory.cachingAllocator ? `caching allocator (freed tensor memory kept for reuse, up to ${(report.cpuMemory.limitBytes / 2 ** 30).toFixed(1)} GiB)` : "c10's default allocator"}`,
    `distributed  ${report.build.distributed === 'gloo' ? 'c10d Gloo (data-parallel training on CPU)' : 'not in this build (LibTorch without Gloo headers, or node-gyp)'}`,
    `BLAS         ${report.blas.kind}${report.blas.library ? ` (${report.blas.library})` : ''}`,
    `OpenMP       ${report.openMP.runtimes.length ? report.openMP.runtimes.map((r) => `${r.kind} (${r.library})`).join(', ') : 'none mapped'}`,
    `build        ${report.build.buildSystem}, ${report.build.compiler}, ${report.build.buildType}, C++${String(report.build.cxxStandard).slice(2, 4)}, ` +
      `CXX11 ABI ${report.build.cxx11Abi === null ? 'n/a' : report.build.cxx11Abi ? 'on' : 'off'}, N-API ${report.build.napiVersion}`,
  ];
  for (const warning of report.warnings) lines.push(`warning      ${warning}`);
  return lines.join('\n');
}
