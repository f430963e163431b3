// `clamp-native eval`: kNN and the linear probe of a checkpoint's backbone on its run's dataset (or
// another folder), with --json for one summary line on stdout.
import { parseArgs } from 'node:util';
import { evaluateCheckpoint, type EvaluationProgressListener } from '../eval/evaluate.js';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { evaluationTimeline, linearProbeClause, percent, progressLine, type ProgressLine, type ProgressStream } from '../format.js';
import { UsageError, wholeNumberFlag } from './flags.js';

export const EVAL_USAGE = `clamp-native eval --checkpoint PATH [options]
  --checkpoint PATH    a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --data DIR           the dataset's folder (default: the run's)
  --limit N            use the first N training images (kNN bank and probe training set)
  --test-limit N       score the first N test images
  --augment-epochs N   also train the probe through random crops and flips for N epochs (slow)
  --json               print one JSON summary line on stdout
`;

const count = (name: string, value: string | undefined) => wholeNumberFlag(name, value, 1);

/**
 * Evaluation's progress on `stream`, each step on a line of its own with the time it took, counted
 * steps (features, the augmented probe's epochs) as a progress line: an evaluation of a full dataset
 * runs a minute or more, and printed nothing until it ended.
 */
function progressReporter(stream: ProgressStream): EvaluationProgressListener {
  let current: { what: string; started: number; line: ProgressLine | null } | null = null;
  const finish = () => {
    if (current?.line) current.line.end(`  ${current.what}: done in ${((performance.now() - current.started) / 1000).toFixed(1)} s`);
    current = null;
  };
  return (progress) => {
    if (current?.what !== progress.what) {
      finish();
      current = { what: progress.what, started: performance.now(), line: progress.kind === 'count' ? progressLine(stream) : null };
      if (progress.kind === 'step') stream.write(`  ${progress.what}...\n`);
    }
    if (progress.kind === 'count')
      current.line?.update(`  ${progress.what}: ${progress.done}/${progress.total} ${progress.unit}`, progress.done, progress.total);
    if (progress.kind === 'count' && progress.done === progress.total) finish();
  };
}

export async function runEval(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      checkpoint: { type: 'string' },
      data: { type: 'string' },
      limit: { type: 'string' },
      'test-limit': { type: 'string' },
      'augment-epochs': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(EVAL_USAGE);
    return 0;
  }
  if (values.checkpoint === undefined) throw new UsageError('eval needs --checkpoint');
  const data = {
    ...(values.data === undefined ? {} : { path: values.data }),
    ...(values.limit === undefined ? {} : { limit: count('limit', values.limit) }),
    ...(values['test-limit'] === undefined ? {} : { testLimit: count('test-limit', values['test-limit']) }),
  };
  process.stderr.write(`evaluating ${values.checkpoint}...\n`);
  const started = performance.now();
  const augmentEpochs = wholeNumberFlag('augment-epochs', values['augment-epochs']);
  const result = await evaluateCheckpoint(values.checkpoint, {
    data,
    ...(augmentEpochs === undefined ? {} : { augmentEpochs }),
    onProgress: progressReporter(process.stderr),
  });
  process.stderr.write(
    `${result.config.data.dataset}, ${result.trainImages} training / ${result.testImages} test images: kNN (k=${result.knn.k}) top-1 ${percent(result.knn.top1)}, top-5 ${percent(result.knn.top5)}${linearProbeClause(result.linearProbe)}\n`,
  );
  process.stderr.write(`evaluation ${evaluationTimeline(result.timings)}\n`);
  const worst = result.perClass.linearProbe ?? result.perClass.knn;
  const hardest = worst
    .map((accuracy, c) => ({ accuracy, c }))
    .filter((x) => !Number.isNaN(x.accuracy))
    .sort((a, b) => a.accuracy - b.accuracy)
    .slice(0, 3);
  process.stderr.write(
    `class manifolds: mean radius ${result.manifolds.meanRadius.toFixed(3)}, mean centre distance ${result.manifolds.meanCentreDistance.toFixed(3)}, overlapping pairs ${percent(result.manifolds.overlap)}; effective rank (RankMe) ${result.rankMe.toFixed(1)}; hardest classes ${hardest.map((x) => `${x.c} (${percent(x.accuracy)})`).join(', ')}\n`,
  );
  if (values.json) {
    const { config: _config, ...summary } = result;
    process.stdout.write(
      `${JSON.stringify({ ...summary, dataset: result.config.data.dataset, seconds: (performance.now() - started) / 1000 })}\n`,
    );
  }
  return 0;
}
