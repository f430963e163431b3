// The training config: presets that validate and mirror the paper, files (JSON, YAML) over presets,
// flags over files, and errors that name the field.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSetting } from '../lib/cli/train-command.js';
import { PRESETS } from '../lib/config/presets.js';
import { mergeConfig, parseTrainConfig, readConfigFile, resolveTrainConfig } from '../lib/config/train-config.js';

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
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-config-'));
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
    expect(() => resolveTrainConfig({ overrides: { schedule: { warmupEpochs: 9 } } })).toThrow(/config.schedule.warmupEpochs: warmupEpochs must be less than epochs/);
    expect(() => resolveTrainConfig({ overrides: { optimiser: { name: 'adam' } } })).toThrow(/config.optimiser/);
    expect(() => resolveTrainConfig({ preset: 'imagenet21k' })).toThrow(/unknown preset "imagenet21k"; the presets are fashion-mnist, cifar10/);
    expect(() => parseTrainConfig({})).toThrow(/config.augment/);
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'clamp-config-'));
    await fs.writeFile(path.join(folder, 'bad.json'), '{ "run": ');
    await expect(readConfigFile(path.join(folder, 'bad.json'))).rejects.toThrow(/bad.json is not valid JSON/);
    await expect(readConfigFile(path.join(folder, 'none.yaml'))).rejects.toThrow(/none.yaml: it does not exist/);
  });
});
