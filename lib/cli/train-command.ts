// `clamp-native train`: flags over a config file over a preset, a progress line on stderr, and with
// --json one summary line on stdout. Ctrl-C and SIGTERM (what schedulers and containers send) stop
// after the current step and write a checkpoint; a second one exits at once.
import { parseArgs } from 'node:util';
import { buildReport } from '../report/report.js';
import { duration, evaluatedWhen, evaluationTimeline, linearProbeClause, percent } from '../format.js';
import { numberFlag, UsageError, wholeNumberFlag } from './flags.js';
import { distributedFromEnvironment, launchWorkers } from './launcher.js';
import { epochsEntered, mergeConfig, readConfigFile, resolveTrainConfig, type ConfigOverrides } from '../config/train-config.js';
import { resumeTraining, train, type ResumeOptions, type TrainEvent, type TrainSummary } from '../train/training-run.js';

export const TRAIN_USAGE = `clamp-native train [options]
  --preset NAME        fashion-mnist (default; CPU), cifar10, imagenet100, imagenet1k
  --config FILE        a JSON or YAML config on top of the preset (it may name its own preset)
  --data DIR           the dataset's folder (data.path)
  --out DIR            the run folder (default runs/<dataset>-<date>-<time>); one holding a run is refused
  --overwrite          replace the run --out already holds (its checkpoint, metrics and report are deleted)
  --epochs N           schedule.epochs (fractions allowed: 2.5 stops half-way through a third epoch)
  --batch-size N       run.batchSize
  --views N            run.views
  --limit N            train on the first N images (data.limit)
  --device D           cpu, cuda or cuda:<index>
  --precision P        auto (bf16 autocast on Ampere and newer GPUs, float32 elsewhere), bf16 or fp32
  --memory-format F    auto (channels_last on the CPU, and with bf16 on a GPU), channels_last or contiguous
  --seed N             run.seed
  --workers N          augmentation worker threads
  --threads N          LibTorch intra-op threads
  --set KEY=VALUE      any config field, e.g. --set loss.rs=3 --set optimiser.name=sgd (repeatable)
  --resume PATH        continue the run in a run folder (or a checkpoint file) where it stopped
  --no-report          skip report.html (its rewrite at each epoch's end, and the full report at the end)
  --json               print one JSON summary line on stdout at the end
  --nproc N            data-parallel over N local worker processes (c10d Gloo on CPU); run.batchSize is the global batch
  --nnodes N           machines taking part (default 1); each runs the same command with its --node-rank
  --node-rank N        this machine's index (default 0)
  --master-addr HOST   where rank 0 listens (default 127.0.0.1)
  --master-port PORT   (default: a free port on one machine, 29500 across machines)
  --dist-timeout S     seconds before a dead or hung peer fails the run (default 60)
  --sync-bn            with --nproc: SyncBatchNorm, statistics over the global batch (run.syncBatchNorm)
`;

export { UsageError };

/** The shell's exit status for a process stopped by a signal: 128 + the signal's number. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/** `a.b.c=value`: value read as JSON when it parses (numbers, booleans, arrays), as a string otherwise. */
export function parseSetting(setting: string): Record<string, unknown> {
  const equals = setting.indexOf('=');
  if (equals <= 0) throw new UsageError(`--set needs KEY=VALUE, got '${setting}'`);
  const keys = setting.slice(0, equals).split('.');
  const raw = setting.slice(equals + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  return keys.reduceRight<Record<string, unknown>>((inner, key) => ({ [key]: inner }), value as Record<string, unknown>);
}

/** A log (not a terminal) gets a step line this often, so a long first epoch does not look hung. */
const LOG_STEP_SECONDS = 30;

/** Renders progress: a rewritten line on a terminal; in a log, a line per epoch and one every LOG_STEP_SECONDS. */
export function progressReporter(stream: Pick<NodeJS.WriteStream, 'isTTY' | 'write'>): (event: TrainEvent) => void {
  const tty = stream.isTTY === true;
  let lastDraw = performance.now();
  let epochs = 0;
  const line = (text: string) => stream.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
  return (event) => {
    switch (event.kind) {
      case 'start':
        // A fractional run counts its cut-short last epoch: 'epoch 3/3' for 2.5 epochs.
        epochs = epochsEntered(event.totalSteps, event.stepsPerEpoch);
        stream.write(
          `training in ${event.runDir}: ${event.trainImages} images, ${event.epochs} epochs of ${event.stepsPerEpoch} steps${Number.isInteger(event.epochs) ? '' : ` (${event.totalSteps} steps)`}${event.resumedAt ? `, resuming at epoch ${event.resumedAt.epoch + 1} step ${event.resumedAt.step}` : ''}\n`,
        );
        stream.write(
          `on ${event.device}, ${event.compute.bf16Autocast ? 'bf16 autocast (the loss in float32)' : 'float32'}${event.compute.channelsLast ? ', channels_last' : ''}\n`,
        );
        break;
      case 'step': {
        const now = performance.now();
        if (now - lastDraw < (tty ? 100 : LOG_STEP_SECONDS * 1000)) return;
        lastDraw = now;
        const { result } = event;
        const fraction = (event.batch + 1) / event.stepsPerEpoch;
        const bar = '#'.repeat(Math.round(fraction * 20)).padEnd(20, '.');
        line(
          `epoch ${event.epoch + 1}/${epochs} [${bar}] step ${result.step + 1}/${event.totalSteps} loss ${result.loss.toFixed(4)} radius ${result.stats.meanRadius.toFixed(3)} contacts/img ${result.stats.contactsPerImage.toFixed(2)} ${Math.round(event.viewImagesPerSecond)} img/s ETA ${duration(event.etaSeconds)}`,
        );
        break;
      }
      case 'epoch':
        lastDraw = performance.now();
        line(
          `epoch ${event.epoch + 1}/${epochs}: mean loss ${event.loss.toFixed(4)}, ${Math.round(event.viewImagesPerSecond)} view-images/s, ${duration(event.seconds)}`,
        );
        if (tty) stream.write('\n');
        break;
      case 'evaluating':
        stream.write(`${event.what}...\n`);
        break;
      case 'evaluation': {
        const { knn, linearProbe, rankMe } = event.evaluation;
        const when = evaluatedWhen(event.epoch);
        stream.write(
          `${when}: kNN (k=${knn.k}) top-1 ${percent(knn.top1)}, top-5 ${percent(knn.top5)}${linearProbeClause(linearProbe)}; RankMe ${rankMe.toFixed(1)}\n`,
        );
        stream.write(`evaluation ${evaluationTimeline(event.evaluation.timings)}\n`);
        break;
      }
      case 'checkpoint':
        break;
    }
  };
}

export async function runTrain(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      preset: { type: 'string' },
      config: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      epochs: { type: 'string' },
      'batch-size': { type: 'string' },
      views: { type: 'string' },
      limit: { type: 'string' },
      device: { type: 'string' },
      precision: { type: 'string' },
      'memory-format': { type: 'string' },
      seed: { type: 'string' },
      workers: { type: 'string' },
      threads: { type: 'string' },
      set: { type: 'string', multiple: true },
      resume: { type: 'string' },
      json: { type: 'boolean', default: false },
      overwrite: { type: 'boolean', default: false },
      'no-report': { type: 'boolean', default: false },
      nproc: { type: 'string' },
      nnodes: { type: 'string' },
      'node-rank': { type: 'string' },
      'master-addr': { type: 'string' },
      'master-port': { type: 'string' },
      'dist-timeout': { type: 'string' },
      'sync-bn': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(TRAIN_USAGE);
    return 0;
  }
  const launcherFlags = ['nproc', 'nnodes', 'node-rank', 'master-addr', 'master-port', 'dist-timeout'] as const;
  if (values.nproc !== undefined) {
    const nproc = wholeNumberFlag('nproc', values.nproc, 1)!;
    const nnodes = wholeNumberFlag('nnodes', values.nnodes, 1) ?? 1;
    const nodeRank = wholeNumberFlag('node-rank', values['node-rank']) ?? 0;
    if (nodeRank >= nnodes) throw new UsageError(`--node-rank must be less than --nnodes (${nnodes}), got ${nodeRank}`);
    const masterPort = wholeNumberFlag('master-port', values['master-port'], 1);
    if (masterPort !== undefined && masterPort > 65535) throw new UsageError(`--master-port must be at most 65535, got ${masterPort}`);
    const timeout = wholeNumberFlag('dist-timeout', values['dist-timeout'], 1) ?? 60;
    // The workers get every flag but the launcher's own.
    const own = new Set(launcherFlags.map((name) => `--${name}`));
    const forwarded: string[] = [];
    for (let k = 0; k < args.length; k++) {
      const [name] = args[k]!.split('=');
      if (own.has(name!)) {
        if (!args[k]!.includes('=')) k++;
        continue;
      }
      forwarded.push(args[k]!);
    }
    return launchWorkers(forwarded, {
      nproc,
      nnodes,
      nodeRank,
      masterAddr: values['master-addr'] ?? '127.0.0.1',
      masterPort,
      timeoutMs: timeout * 1000,
    });
  }
  const used = launcherFlags.filter((name) => values[name] !== undefined);
  if (used.length > 0) throw new UsageError(`--${used.join(', --')} ${used.length > 1 ? 'need' : 'needs'} --nproc`);
  const group = distributedFromEnvironment();
  const quiet = group !== null && group.rank !== 0; // rank 0 reports for the run
  const controller = new AbortController();
  // SIGTERM is how schedulers, containers and our launcher stop a job: treated as Ctrl-C (stop after the
  // step, checkpoint), with the shell's exit status for the signal (128 + its number).
  let stoppedBy: 'SIGINT' | 'SIGTERM' | null = null;
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    if (stoppedBy !== null) process.exit(SIGNAL_EXIT[signal]);
    stoppedBy = signal;
    process.stderr.write(
      `\n${signal === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'}: stopping after this step and writing a checkpoint (again to quit at once)...\n`,
    );
    controller.abort();
  };
  const onInterrupt = () => onSignal('SIGINT');
  const onTerminate = () => onSignal('SIGTERM');
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  const stoppedStatus = () => SIGNAL_EXIT[stoppedBy ?? 'SIGINT'];
  const onProgress = quiet ? undefined : progressReporter(process.stderr);
  let summary: TrainSummary;
  try {
    const run = {
      ...(values.device === undefined ? {} : { device: values.device }),
      ...(values.precision === undefined ? {} : { precision: values.precision }),
      ...(values['memory-format'] === undefined ? {} : { memoryFormat: values['memory-format'] }),
      ...(values.workers === undefined ? {} : { workers: wholeNumberFlag('workers', values.workers) }),
      ...(values.threads === undefined ? {} : { threads: wholeNumberFlag('threads', values.threads) }),
      // --no-report: neither the page rewritten at each epoch's end nor the full report at the end.
      ...(values['no-report'] ? { reportEvery: 0 } : {}),
    };
    if (values.resume !== undefined) {
      const ignored: string[] = (
        ['preset', 'config', 'data', 'out', 'epochs', 'batch-size', 'views', 'limit', 'seed', 'set'] as const
      ).filter((name) => values[name] !== undefined);
      if (values['sync-bn']) ignored.push('sync-bn');
      if (values.overwrite) ignored.push('overwrite');
      if (ignored.length > 0)
        throw new UsageError(`--resume continues a run with its own config; it cannot be combined with --${ignored.join(', --')}`);
      summary = await resumeTraining(values.resume, {
        onProgress,
        signal: controller.signal,
        distributed: group ?? undefined,
        overrides: { run } as NonNullable<ResumeOptions['overrides']>,
      });
    } else {
      const file: ConfigOverrides | undefined = values.config === undefined ? undefined : await readConfigFile(values.config);
      let overrides: unknown = {
        data: {
          ...(values.data === undefined ? {} : { path: values.data }),
          ...(values.limit === undefined ? {} : { limit: wholeNumberFlag('limit', values.limit) }),
        },
        schedule: values.epochs === undefined ? {} : { epochs: numberFlag('epochs', values.epochs, 0, true) },
        run: {
          ...run,
          ...(values['batch-size'] === undefined ? {} : { batchSize: wholeNumberFlag('batch-size', values['batch-size'], 2) }),
          ...(values.views === undefined ? {} : { views: wholeNumberFlag('views', values.views, 2) }),
          ...(values.seed === undefined ? {} : { seed: wholeNumberFlag('seed', values.seed) }),
          ...(values['sync-bn'] ? { syncBatchNorm: true } : {}),
        },
      };
      for (const setting of values.set ?? []) overrides = mergeConfig(overrides, parseSetting(setting));
      const config = resolveTrainConfig({
        ...(values.preset === undefined ? {} : { preset: values.preset }),
        ...(file ? { file } : {}),
        overrides,
      });
      summary = await train(config, {
        onProgress,
        signal: controller.signal,
        distributed: group ?? undefined,
        overwrite: values.overwrite,
        ...(values.out === undefined ? {} : { runDir: values.out }),
      });
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onTerminate);
  }
  if (quiet) return summary.stopped ? stoppedStatus() : 0;
  if (summary.alreadyFinished) {
    process.stderr.write(
      `${summary.runDir} had already finished (${summary.steps} steps); nothing to train. Its checkpoint: ${summary.checkpoint}\n`,
    );
    if (values.json) process.stdout.write(`${JSON.stringify({ ...summary, report: null })}\n`);
    return 0;
  }
  const knn = summary.knn ? `, kNN top-1 ${percent(summary.knn.top1)}` : '';
  const probe = summary.linearProbe ? `, linear probe top-1 ${percent(summary.linearProbe.top1)}` : '';
  process.stderr.write(
    `${summary.stopped ? 'stopped' : 'done'}: ${summary.steps} steps in ${duration(summary.seconds)}, final loss ${summary.finalLoss.toFixed(4)}${knn}${probe}; checkpoint ${summary.checkpoint}${summary.stopped ? ` (continue with: clamp-native train --resume ${summary.runDir})` : ''}\n`,
  );
  // The report reads what the run wrote; a failure to draw it does not fail the run.
  let report: string | null = null;
  if (!summary.stopped && !values['no-report']) {
    try {
      report = (await buildReport(summary.runDir)).html;
      process.stderr.write(`report: ${report}\n`);
    } catch (error) {
      process.stderr.write(`report skipped: ${(error as Error).message} (retry with: clamp-native report ${summary.runDir})\n`);
    }
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ ...summary, report })}\n`);
  return summary.stopped ? stoppedStatus() : 0;
}
