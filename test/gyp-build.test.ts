// binding.gyp is a working second build path: node-gyp builds the addon from the same source list and
// the same LibTorch resolution, and it computes what the cmake-js build computes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packingLoss } from '../lib/index.js';
import { scatteredViews } from '../lib/loss/packing-dynamics.js';
import { packageRoot } from '../lib/runtime/native.js';

const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'clamp-gyp-'));
afterAll(() => fs.rmSync(copy, { recursive: true, force: true }));

describe('node-gyp build (binding.gyp)', () => {
  it('builds, loads, reports itself and matches the cmake-js build', { timeout: 900_000 }, async () => {
    for (const entry of ['binding.gyp', 'package.json', 'native', 'scripts']) {
      fs.cpSync(path.join(packageRoot, entry), path.join(copy, entry), { recursive: true });
    }
    fs.symlinkSync(path.join(packageRoot, 'node_modules'), path.join(copy, 'node_modules'));
    const build = spawnSync(process.execPath, ['scripts/build.mjs', '--gyp'], { cwd: copy, encoding: 'utf8' });
    expect(build.status, build.stderr.slice(-4000)).toBe(0);
    const addon = path.join(copy, 'build', 'Release', 'clamp_native.node');
    expect(fs.existsSync(addon)).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(copy, 'build', 'libtorch.json'), 'utf8')).buildSystem).toBe('node-gyp');

    const shape = { views: 4, batch: 32, dim: 16 };
    const probe = `
      import { packingLoss, doctor } from ${JSON.stringify(path.join(packageRoot, 'dist', 'index.js'))};
      import { scatteredViews } from ${JSON.stringify(path.join(packageRoot, 'dist', 'loss', 'packing-dynamics.js'))};
      const result = await packingLoss(scatteredViews(4, 32, 16, 1, 7), ${JSON.stringify(shape)});
      console.log(JSON.stringify({ loss: result.loss, stats: result.stats, build: doctor().build }));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
      encoding: 'utf8',
      env: { ...process.env, CLAMP_NATIVE_ADDON: addon },
    });
    expect(run.status, run.stderr).toBe(0);
    const fromGyp = JSON.parse(run.stdout) as { loss: number; stats: { contactsPerImage: number }; build: { buildSystem: string } };
    expect(fromGyp.build.buildSystem).toBe('node-gyp');
    const fromCMake = await packingLoss(scatteredViews(4, 32, 16, 1, 7), shape);
    expect(Math.abs(fromGyp.loss - fromCMake.loss) / Math.abs(fromCMake.loss)).toBeLessThan(1e-6);
    expect(fromGyp.stats.contactsPerImage).toBe(fromCMake.stats.contactsPerImage);
  });
});
