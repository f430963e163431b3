// `clamp-native demo`: free embeddings under the packing loss unjam, reproducibly.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPackingDynamics } from '../lib/index.js';
import { packageRoot } from '../lib/runtime/native.js';

describe('packing dynamics', () => {
  it('gradient descent on the energy pushes sub-manifolds apart and shrinks them until contacts vanish', async () => {
    const history = await runPackingDynamics({ views: 4, batch: 64, dim: 16, steps: 100, seed: 1 });
    const [first, last] = [history[0]!, history.at(-1)!];
    expect(history).toHaveLength(101);
    expect(first.contactsPerImage).toBeGreaterThan(10);
    expect(last.energy).toBeLessThan(first.energy * 1e-3);
    expect(last.contactsPerImage).toBeLessThan(first.contactsPerImage / 10);
    expect(last.meanRadius).toBeLessThan(first.meanRadius);
    expect(last.meanDistance).toBeGreaterThan(first.meanDistance);
    expect(last.nearestCentreAccuracy).toBeGreaterThanOrEqual(first.nearestCentreAccuracy);
  });

  it('a seed reproduces the run exactly', async () => {
    const options = { views: 3, batch: 16, dim: 8, steps: 10, seed: 5 };
    expect(await runPackingDynamics(options)).toEqual(await runPackingDynamics(options));
  });

  it('the demo command prints the dynamics, and --json the whole history', () => {
    const cli = path.join(packageRoot, 'dist', 'cli', 'main.js');
    const text = spawnSync(process.execPath, [cli, 'demo', '--steps', '12', '--batch', '16'], { encoding: 'utf8' });
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/contacts\/im/);
    const json = spawnSync(process.execPath, [cli, 'demo', '--steps', '3', '--json'], { encoding: 'utf8' });
    expect((JSON.parse(json.stdout) as { history: unknown[] }).history).toHaveLength(4);
    const bad = spawnSync(process.execPath, [cli, 'demo', '--steps', 'lots'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--steps must be a whole number, got 'lots'/);
    const unknown = spawnSync(process.execPath, [cli, 'fly'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'fly'/);
  });
});
