// The dependency rules of lib/, checked on the sources: serving, export and the report load nothing of
// the training code (a service that only embeds pulls in no trainer), and nothing below the CLI imports
// the CLI. Type-only imports are erased by the compiler, so they do not count.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const lib = path.resolve('lib');

/** The lib/ modules `entry` loads at run time, transitively (relative imports, `import type` skipped). */
function runtimeClosure(entry: string): string[] {
  const seen = new Set<string>();
  const stack = [path.join(lib, entry)];
  while (stack.length > 0) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = fs.readFileSync(file, 'utf8');
    for (const match of source.matchAll(/^(?:import|export)\s+(?!type\s)[^;]*?\sfrom\s+'(\.{1,2}\/[^']+)\.js';/gms)) {
      stack.push(path.resolve(path.dirname(file), `${match[1]}.ts`));
    }
  }
  return [...seen].map((file) => path.relative(lib, file));
}

describe('dependencies run one way', () => {
  it.each(['serve/server.ts', 'encode/encoder.ts', 'export/onnx.ts', 'report/report.ts'])(
    '%s loads nothing from train/ or cli/',
    (entry) => {
      const closure = runtimeClosure(entry);
      expect(closure.length).toBeGreaterThan(3); // the walk found the module's imports
      expect(closure.filter((file) => /^(train|cli)\//.test(file))).toEqual([]);
    },
  );

  it("the addon's typed contract (runtime/addon-types.ts) imports nothing, type-only imports included", () => {
    const source = fs.readFileSync(path.join(lib, 'runtime/addon-types.ts'), 'utf8');
    expect(source).toMatch(/export interface NativeAddon \{/); // the file is the contract
    expect([...source.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+'[^']+';/gm)].map((m) => m[0])).toEqual([]);
  });

  it('only the CLI imports the CLI', () => {
    for (const entry of ['index.ts']) expect(runtimeClosure(entry).filter((file) => file.startsWith('cli/'))).toEqual([]);
  });
});
