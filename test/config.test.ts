// The training config: presets that validate and mirror the paper, files (JSON, YAML) over presets,
// flags over files, and errors that name the field.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSetting } from '../lib/cli/train-command.js';
import { ConfigError } from '../lib/config/errors.js';
import { PRESETS } from '../lib/config/presets.js';
import { mergeConfig, parseTrainConfig, readConfigFile, resolveTrainConfig } from '../lib/config/train-config.js';

const folders: string[] = [];
afterAll(async () => {
  for (const folder of folders) await fs.rm(folder, { recursive: true, force: true });
});

async function temporaryFolder(): Promise<string> {
  const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-config-'));
  folders.push(folder);
  return folder;
}

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected it to throw');
}

function expectError(run: () => unknown, type: new (message: string) => Error, message: string): void {
  const error = thrownBy(run);
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toBe(message);
}

describe('training config', () => {
  it('every preset validates; the paper presets carry the paper setups', () => {
    for (const name of Object.keys(PRESETS)) expect(() => resolveTrainConfig({ preset: name })).not.toThrow();
    const cifar = resolveTrainConfig({ preset: 'cifar10' });
    expect(cifar.model).toMatchObject({ backbone: 'resnet18', stem: 'cifar', projectorHidden: [2048], projectorOut: 256 });
    expect(cifar.run).toMatchObject({ batchSize: 128, views: 16 });
    expect(cifar.loss.rs).toBe(7);
    expect(cifar.optimiser).toMatchObject({ name: 'lars', eta: 0.001 });
    expect(cifar.schedule.epochs).toBe(1000);
    for (const name of ['imagenet100', 'imagenet1k']) {
      const imagenet = resolveTrainConfig({ preset: name });
      expect(imagenet.model).toMatchObject({ backbone: 'resnet50', projectorHidden: [8192, 8192], projectorOut: 512 });
      expect(imagenet.run).toMatchObject({ batchSize: 512, views: 4 });
      expect(imagenet.loss.rs).toBe(8.5);
      expect(imagenet.augment).toHaveLength(2);
    }
    expect(resolveTrainConfig({}).data.dataset).toBe('fashion-mnist');
  });

  it('a file overrides its preset and flags override the file; arrays are replaced, objects merged', async () => {
    const folder = await temporaryFolder();
    const yamlFile = path.join(folder, 'run.yaml');
    await fs.writeFile(yamlFile, 'preset: cifar10\nschedule:\n  epochs: 20\nmodel:\n  projectorHidden: [512]\n');
    const file = await readConfigFile(yamlFile);
    const config = resolveTrainConfig({ file, overrides: mergeConfig({ run: { batchSize: 64 } }, parseSetting('loss.rs=5')) });
    expect(config.schedule).toMatchObject({ epochs: 20, warmupEpochs: 10, baseLr: 0.3 });
    expect(config.model.projectorHidden).toEqual([512]);
    expect(config.model.backbone).toBe('resnet18');
    expect(config.run).toMatchObject({ batchSize: 64, views: 16 });
    expect(config.loss.rs).toBe(5);
    const jsonFile = path.join(folder, 'run.json');
    await fs.writeFile(jsonFile, JSON.stringify({ run: { views: 2 } }));
    expect(resolveTrainConfig({ file: await readConfigFile(jsonFile) }).run.views).toBe(2);
  });

  it('--set reads JSON values and keeps other text as strings', () => {
    expect(parseSetting('optimiser.name=sgd')).toEqual({ optimiser: { name: 'sgd' } });
    expect(parseSetting('model.projectorHidden=[256,256]')).toEqual({ model: { projectorHidden: [256, 256] } });
    expect(parseSetting('eval.atStart=true')).toEqual({ eval: { atStart: true } });
    expect(() => parseSetting('rs')).toThrow(/KEY=VALUE/);
  });

  it('bad configs name the field and the value', async () => {
    expect(() => resolveTrainConfig({ overrides: { loss: { rs: -1 } } })).toThrow(/config.loss.rs: .*got -1/);
    expect(() => resolveTrainConfig({ overrides: { run: { batchSize: 'big' } } })).toThrow(TypeError);
    expect(() => resolveTrainConfig({ overrides: { run: { colour: 1 } } })).toThrow(/config.run: .*colour/);
    expect(() => resolveTrainConfig({ overrides: { schedule: { warmupEpochs: 9 } } })).toThrow(
      /config.schedule.warmupEpochs: warmupEpochs must be less than epochs/,
    );
    expect(() => resolveTrainConfig({ overrides: { optimiser: { name: 'adam' } } })).toThrow(/config.optimiser/);
    expect(() => resolveTrainConfig({ preset: 'imagenet21k' })).toThrow(
      /unknown preset "imagenet21k"; the presets are fashion-mnist, cifar10/,
    );
    expect(() => parseTrainConfig({})).toThrow(/config.augment/);
    const folder = await temporaryFolder();
    await fs.writeFile(path.join(folder, 'bad.json'), '{ "run": ');
    await expect(readConfigFile(path.join(folder, 'bad.json'))).rejects.toThrow(/bad.json is not valid JSON/);
    await expect(readConfigFile(path.join(folder, 'none.yaml'))).rejects.toThrow(/none.yaml: it does not exist/);
  });

  it('refuses __proto__, constructor and prototype keys in files, naming the file and the key path', async () => {
    const folder = await temporaryFolder();
    const cases: [string, string, string][] = [
      ['proto.json', '{"__proto__": {"run": {"batchSize": 7}}}', '__proto__ is not a config field'],
      ['nested.json', '{"schedule": {"epochs": 3, "__proto__": {"baseLr": 1}}}', 'schedule.__proto__ is not a config field'],
      ['constructor.yaml', 'model:\n  constructor: 1\n', 'model.constructor is not a config field'],
      ['prototype.yaml', 'augment:\n  - prototype: {}\n', 'augment[0].prototype is not a config field'],
    ];
    for (const [name, text, why] of cases) {
      const file = path.join(folder, name);
      await fs.writeFile(file, text);
      const error = await readConfigFile(file).then(
        (read) => resolveTrainConfig({ file: read }),
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toBe(`the config file ${file} is refused: ${why}`);
    }
  });

  it('refuses __proto__, constructor and prototype keys in --set overrides', () => {
    for (const [setting, why] of [
      ['__proto__.x=1', '__proto__ is not a config field'],
      ['run.__proto__.batchSize=7', 'run.__proto__ is not a config field'],
      ['constructor=1', 'constructor is not a config field'],
      ['model.prototype={}', 'model.prototype is not a config field'],
    ] as const) {
      expectError(() => mergeConfig({}, parseSetting(setting)), ConfigError, why);
      expectError(() => resolveTrainConfig({ overrides: parseSetting(setting) }), ConfigError, why);
    }
  });

  it('refuses YAML that does not map to plain settings: explicit tags, self-containing aliases, several documents', async () => {
    const folder = await temporaryFolder();
    const cases: [string, RegExp][] = [
      // A !!set would otherwise pass validation as an empty object: model's defaults, silently.
      ['model: !!set {backbone}\nschedule: {epochs: 3}\n', /is not valid YAML: Unresolved tag: tag:yaml.org,2002:set/],
      ['schedule: !!omap [{epochs: 3}]\n', /is not valid YAML: Unresolved tag: tag:yaml.org,2002:omap/],
      ['model: &m\n  widths: *m\n', /is refused: model.widths contains itself \(a YAML alias inside its own anchor\)/],
      ['schedule: {epochs: 3}\n---\nrun: {views: 2}\n', /is not valid YAML: Source contains multiple documents/],
    ];
    for (const [index, [text, message]] of cases.entries()) {
      const file = path.join(folder, `case-${index}.yaml`);
      await fs.writeFile(file, text);
      const error = await readConfigFile(file).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(new RegExp(`^the config file ${file} ${message.source}`));
    }
  });

  it("names a config path that is a folder, and presets that are only Object's own properties", async () => {
    const folder = await temporaryFolder();
    const error = await readConfigFile(folder).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(`cannot read the config file ${folder}: it is a folder; pass a .json, .yaml or .yml file`);
    for (const preset of ['constructor', '__proto__', 'toString']) {
      expectError(
        () => resolveTrainConfig({ preset }),
        RangeError,
        `config.preset: unknown preset ${JSON.stringify(preset)}; the presets are ${Object.keys(PRESETS).join(', ')}`,
      );
    }
  });
});
