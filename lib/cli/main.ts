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
import { EXPORT_USAGE, runExport } from './export-command.js';
import { FINETUNE_USAGE, runFineTune } from './finetune-command.js';
import { REPORT_USAGE, runReport } from './report-command.js';
import { runServe, SERVE_USAGE } from './serve-command.js';
import { numberFlag, UsageError, wholeNumberFlag } from './flags.js';
import { runTrain, TRAIN_USAGE } from './train-command.js';

const COMMANDS = ['train', 'eval', 'finetune', 'embed', 'serve', 'export', 'report', 'doctor', 'build', 'demo'] as const;

const DOCTOR_USAGE = `clamp-native doctor [--json]
  LibTorch version and origin, CUDA, threads, BLAS, addon path and build flags
  --json               the same as one JSON object on stdout
`;

const BUILD_USAGE = `clamp-native build [--gyp] [--debug]
  (re)build the native addon against the LibTorch found (LIBTORCH, pip's torch, a system install)
  --gyp                build with node-gyp instead of cmake-js
  --debug              a debug build
`;

const DEMO_USAGE = `clamp-native demo [options]
  packing dynamics of free embeddings under the CLAMP loss: about a dozen rows of steps on stdout
  --views N            views per image (default 4)
  --batch N            images (default 64)
  --dim N              embedding dimension (default 16)
  --steps N            gradient steps (default 100)
  --lr X               learning rate (default 1)
  --noise X            width of each image's cloud of views against the centres' spread (default 1.5)
  --rs X               the packing loss's rs (default 7)
  --seed N             (default 1)
  --json               the options and the whole history as one JSON line
`;

const USAGE = `Usage: clamp-native <command> [options]

Commands:
  train [options]    train an encoder with CLAMP (default: the fashion-mnist preset on CPU), then evaluate
  eval [options]     kNN and the linear probe of a checkpoint's backbone
  finetune [options] semi-supervised fine-tuning on 1% / 10% of the labels, scored on the test set
  embed [options]    features of image files with a trained encoder, as .npy or JSON lines
  serve [options]    embeddings over HTTP: POST /v1/embeddings, GET /healthz, GET /metrics
  export [options]   a trained encoder as an ONNX model: --checkpoint RUN --onnx FILE [--no-fold] [--projector]
  report RUN_DIR     a self-contained report.html: training curves, accuracy, embedding map, augmented views
  doctor [--json]    LibTorch version and origin, CUDA, threads, BLAS, addon path and build flags
  build [--gyp]      (re)build the native addon (needed when npm skipped this package's install script)
  demo [options]     packing dynamics of free embeddings under the CLAMP loss
                     --views 4 --batch 64 --dim 16 --steps 100 --lr 1 --noise 1.5 --rs 7 --seed 1 [--json]

${TRAIN_USAGE}
${EVAL_USAGE}
${FINETUNE_USAGE}
${EMBED_USAGE}
${SERVE_USAGE}
${EXPORT_USAGE}
${REPORT_USAGE}
${DOCTOR_USAGE}
${BUILD_USAGE}
${DEMO_USAGE}`;

// The demo's flags are all given values (the parsers only run when the flag is present).
const wholeNumber = (name: string, value: string | undefined) => wholeNumberFlag(name, value)!;
const positiveNumber = (name: string, value: string | undefined) => numberFlag(name, value, 0, true)!;

/** Prints a command's usage when --help was given; true when it was. */
function answeredHelp(help: boolean | undefined, usage: string): boolean {
  if (help) process.stdout.write(usage);
  return help === true;
}

function runDoctor(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
    strict: true,
  });
  if (answeredHelp(values.help, DOCTOR_USAGE)) return 0;
  const report = doctor();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
  return 0;
}

function runBuild(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      gyp: { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (answeredHelp(values.help, BUILD_USAGE)) return 0;
  const flags = [...(values.gyp ? ['--gyp'] : []), ...(values.debug ? ['--debug'] : [])];
  const result = spawnSync(process.execPath, [path.join(packageRoot, 'scripts', 'build.mjs'), ...flags], { stdio: 'inherit' });
  return result.status ?? 1;
}

async function runDemo(args: string[]): Promise<number> {
  const names = ['views', 'batch', 'dim', 'steps', 'lr', 'noise', 'rs', 'seed'] as const;
  const { values } = parseArgs({
    args,
    options: {
      ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (answeredHelp(values.help as boolean, DEMO_USAGE)) return 0;
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
    [
      s.step,
      s.loss.toPrecision(4),
      s.energy.toExponential(3),
      s.meanRadius.toFixed(4),
      s.meanDistance.toFixed(4),
      s.contactsPerImage.toFixed(2),
      s.activity.toFixed(2),
      s.nearestCentreAccuracy.toFixed(3),
    ]
      .map((cell, i) => String(cell).padStart(i === 0 ? 5 : 11))
      .join(' ');
  if (!values.json) {
    process.stdout.write('Packing dynamics: free embeddings descending the packing energy (clamp-native demo --help for options)\n');
    process.stdout.write(
      `${['step', 'loss', 'energy', 'meanRadius', 'meanDist', 'contacts/im', 'activity', 'nearestCtr'].map((h, i) => h.padStart(i === 0 ? 5 : 11)).join(' ')}\n`,
    );
  }
  const history = await runPackingDynamics(options, (step) => {
    if (!values.json && (step.step % every === 0 || step.step === steps)) process.stdout.write(`${row(step)}\n`);
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ options, history })}\n`);
  return 0;
}

async function main(command: string | undefined, rest: string[]): Promise<number> {
  switch (command) {
    case 'doctor':
      return runDoctor(rest);
    case 'build':
      return runBuild(rest);
    case 'demo':
      return runDemo(rest);
    case 'train':
      return runTrain(rest);
    case 'eval':
      return runEval(rest);
    case 'finetune':
      return runFineTune(rest);
    case 'embed':
      return runEmbed(rest);
    case 'serve':
      return runServe(rest);
    case 'export':
      return runExport(rest);
    case 'report':
      return runReport(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 1 : 0;
    default:
      throw new UsageError(`unknown command '${command}': the commands are ${COMMANDS.join(', ')}`);
  }
}

/**
 * `--epochs -1` as `--epochs=-1`. parseArgs reads any token that starts with a dash as an option, so a
 * negative number after a flag became "argument is ambiguous" instead of reaching the flag's own check,
 * which says what the flag takes. Only negative numbers are joined: `--out -x` stays ambiguous (it may
 * be a mistyped option), and nothing after `--` is touched.
 */
function joinNegativeNumbers(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let k = 0; k < args.length; k++) {
    const token = args[k]!;
    if (token === '--') return [...out, ...args.slice(k)];
    const next = args[k + 1];
    if (/^--[^=]+$/.test(token) && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${token}=${next}`);
      k++;
    } else {
      out.push(token);
    }
  }
  return out;
}

const isParseArgsError = (error: unknown) => String((error as { code?: unknown } | null)?.code).startsWith('ERR_PARSE_ARGS_');

/**
 * A mistake in the command line: one line naming it and where the options are listed. (The whole usage
 * of every command, 80 lines, used to follow, and buried the line that mattered.)
 */
function usageMessage(command: string | undefined, error: Error): string {
  // parseArgs's messages run over several lines and end in its own advice; one line reads better in a terminal.
  const message = isParseArgsError(error)
    ? error.message
        .split('\n')
        .map((line) => line.trim())
        .join(' ')
        .replace(/^Unknown option '([^']*)'.*$/, 'unknown option $1')
    : error.message;
  const known = COMMANDS.includes(command as (typeof COMMANDS)[number]);
  return `clamp-native${known ? ` ${command}` : ''}: ${message}\n\`clamp-native ${known ? `${command} ` : ''}--help\` lists the options\n`;
}

const isClosedPipe = (error: unknown) => (error as { code?: unknown } | null)?.code === 'EPIPE';

/** The last word on a failure: a usage mistake exits 2, anything else 1; a reader gone away exits 0, quietly. */
function reportFailure(command: string | undefined, error: unknown): number {
  if (isClosedPipe(error)) return 0;
  if (error instanceof UsageError || isParseArgsError(error)) {
    process.stderr.write(usageMessage(command, error as Error));
    return 2;
  }
  process.stderr.write(`clamp-native: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
}

/**
 * `clamp-native demo | head -1`: once the reader has gone, what is left to print has nowhere to go, so
 * the command ends as other Unix tools do on SIGPIPE, quietly (Node ignores SIGPIPE, and the unhandled
 * EPIPE used to end it with a stack trace). stdout is the command's result; stderr is only commentary,
 * so a closed stderr silences it and the work (a training run, its checkpoint) carries on.
 */
function endQuietlyWhenReadersLeave(): void {
  process.stdout.on('error', (error) => {
    if (!isClosedPipe(error)) throw error;
    process.exit(0);
  });
  process.stderr.on('error', (error: NodeJS.ErrnoException) => {
    if (!isClosedPipe(error) && error.code !== 'ERR_STREAM_DESTROYED') throw error;
  });
}

endQuietlyWhenReadersLeave();
const [command, ...rest] = process.argv.slice(2);
main(command, joinNegativeNumbers(rest)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportFailure(command, error);
  },
);
