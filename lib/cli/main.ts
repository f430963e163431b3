#!/usr/bin/env node
// The `clamp-native` command.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runPackingDynamics, type PackingDynamicsOptions, type PackingDynamicsStep } from '../loss/packing-dynamics.js';
import { doctor, formatDoctorReport } from '../runtime/doctor.js';
import { packageRoot } from '../runtime/native.js';
import { EMBED_USAGE, runEmbed } from './embed-command.js';
import { EVAL_USAGE, runEval } from './eval-command.js';
import { FINETUNE_USAGE, runFineTune } from './finetune-command.js';
import { REPORT_USAGE, runReport } from './report-command.js';
import { runTrain, TRAIN_USAGE, TrainUsageError } from './train-command.js';

const USAGE = `Usage: clamp-native <command> [options]

Commands:
  train [options]    train an encoder with CLAMP (default: the fashion-mnist preset on CPU), then evaluate
  eval [options]     kNN and the linear probe of a checkpoint's backbone
  finetune [options] semi-supervised fine-tuning on 1% / 10% of the labels, scored on the test set
  embed [options]    features of image files with a trained encoder, as .npy or JSON lines
  report RUN_DIR     a self-contained report.html: training curves, accuracy, embedding map, augmented views
  doctor [--json]    LibTorch version and origin, CUDA, threads, BLAS, addon path and build flags
  build [--gyp]      (re)build the native addon (needed when npm skipped this package's install script)
  demo [options]     packing dynamics of free embeddings under the CLAMP loss
                     --views 4 --batch 64 --dim 16 --steps 100 --lr 1 --noise 1.5 --rs 7 --seed 1 [--json]

${TRAIN_USAGE}
${EVAL_USAGE}
${FINETUNE_USAGE}
${EMBED_USAGE}
${REPORT_USAGE}`;

class UsageError extends Error {}

function wholeNumber(name: string, value: string | undefined): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) throw new UsageError(`--${name} must be a whole number, got '${value}'`);
  return number;
}

function positiveNumber(name: string, value: string | undefined): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new UsageError(`--${name} must be a number > 0, got '${value}'`);
  return number;
}

function runDoctor(args: string[]): number {
  const { values } = parseArgs({ args, options: { json: { type: 'boolean', default: false } }, strict: true });
  const report = doctor();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
  return 0;
}

function runBuild(args: string[]): number {
  const { values } = parseArgs({ args, options: { gyp: { type: 'boolean', default: false }, debug: { type: 'boolean', default: false } }, strict: true });
  const flags = [...(values.gyp ? ['--gyp'] : []), ...(values.debug ? ['--debug'] : [])];
  const result = spawnSync(process.execPath, [path.join(packageRoot, 'scripts', 'build.mjs'), ...flags], { stdio: 'inherit' });
  return result.status ?? 1;
}

async function runDemo(args: string[]): Promise<number> {
  const names = ['views', 'batch', 'dim', 'steps', 'lr', 'noise', 'rs', 'seed'] as const;
  const { values } = parseArgs({
    args,
    options: { ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])), json: { type: 'boolean', default: false } },
    strict: true,
  });
  const strings = values as Record<string, string | boolean | undefined>;
  const flag = (name: (typeof names)[number]) => strings[name] as string | undefined;
  // Only the flags given override runPackingDynamics's defaults.
  const given = <T>(name: (typeof names)[number], key: string, parse: (name: string, value: string | undefined) => T) =>
    flag(name) === undefined ? {} : { [key]: parse(name, flag(name)) };
  const options: PackingDynamicsOptions = {
    ...given('views', 'views', wholeNumber),
    ...given('batch', 'batch', wholeNumber),
    ...given('dim', 'dim', wholeNumber),
    ...given('steps', 'steps', wholeNumber),
    ...given('lr', 'learningRate', positiveNumber),
    ...given('noise', 'noise', positiveNumber),
    ...given('seed', 'seed', wholeNumber),
    ...(flag('rs') === undefined ? {} : { loss: { rs: positiveNumber('rs', flag('rs')) } }),
  };
  const steps = options.steps ?? 100;
  const every = Math.max(1, Math.round(steps / 12));
  const row = (s: PackingDynamicsStep) =>
    [s.step, s.loss.toPrecision(4), s.energy.toExponential(3), s.meanRadius.toFixed(4), s.meanDistance.toFixed(4),
      s.contactsPerImage.toFixed(2), s.activity.toFixed(2), s.nearestCentreAccuracy.toFixed(3)]
      .map((cell, i) => String(cell).padStart(i === 0 ? 5 : 11)).join(' ');
  if (!values.json) {
    process.stdout.write('Packing dynamics: free embeddings descending the packing energy (clamp-native demo --help for options)\n');
    process.stdout.write(`${['step', 'loss', 'energy', 'meanRadius', 'meanDist', 'contacts/im', 'activity', 'nearestCtr'].map((h, i) => h.padStart(i === 0 ? 5 : 11)).join(' ')}\n`);
  }
  const history = await runPackingDynamics(options, (step) => {
    if (!values.json && (step.step % every === 0 || step.step === steps)) process.stdout.write(`${row(step)}\n`);
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ options, history })}\n`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'doctor': return runDoctor(rest);
    case 'build': return runBuild(rest);
    case 'demo': return runDemo(rest);
    case 'train': return runTrain(rest);
    case 'eval': return runEval(rest);
    case 'finetune': return runFineTune(rest);
    case 'embed': return runEmbed(rest);
    case 'report': return runReport(rest);
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 1 : 0;
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`clamp-native: ${message}\n${error instanceof UsageError || error instanceof TrainUsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? `\n${USAGE}` : ''}`);
    process.exitCode = error instanceof UsageError || error instanceof TrainUsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  },
);
