// `clamp-native eval`: kNN and the linear probe of a checkpoint's backbone on its run's dataset (or
// another folder), with --json for one summary line on stdout.
import { parseArgs } from 'node:util';
import { evaluateCheckpoint } from '../eval/evaluate.js';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { linearProbeClause, percent } from '../format.js';
import { TrainUsageError, wholeNumberFlag } from './flags.js';

export const EVAL_USAGE = `clamp-native eval --checkpoint PATH [options]
  --checkpoint PATH    a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --data DIR           the dataset's folder (default: the run's)
  --limit N            use the first N training images (kNN bank and probe training set)
  --test-limit N       score the first N test images
  --augment-epochs N   also train the probe through random crops and flips for N epochs (slow)
  --json               print one JSON summary line on stdout
`;

const count = (name: string, value: string | undefined) => wholeNumberFlag(name, value, 1);

export async function runEval(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      checkpoint: { type: 'string' }, data: { type: 'string' }, limit: { type: 'string' }, 'test-limit': { type: 'string' }, 'augment-epochs': { type: 'string' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(EVAL_USAGE);
    return 0;
  }
  if (values.checkpoint === undefined) throw new TrainUsageError('eval needs --checkpoint');
  const data = {
    ...(values.data === undefined ? {} : { path: values.data }),
    ...(values.limit === undefined ? {} : { limit: count('limit', values.limit) }),
    ...(values['test-limit'] === undefined ? {} : { testLimit: count('test-limit', values['test-limit']) }),
  };
  process.stderr.write(`evaluating ${values.checkpoint}...\n`);
  const started = performance.now();
  const augmentEpochs = wholeNumberFlag('augment-epochs', values['augment-epochs']);
  const result = await evaluateCheckpoint(values.checkpoint, { data, ...(augmentEpochs === undefined ? {} : { augmentEpochs }) });
  process.stderr.write(`${result.config.data.dataset}, ${result.trainImages} training / ${result.testImages} test images: kNN (k=${result.knn.k}) top-1 ${percent(result.knn.top1)}, top-5 ${percent(result.knn.top5)}${linearProbeClause(result.linearProbe)}\n`);
  const worst = result.perClass.linearProbe ?? result.perClass.knn;
  const hardest = worst.map((accuracy, c) => ({ accuracy, c })).filter((x) => !Number.isNaN(x.accuracy)).sort((a, b) => a.accuracy - b.accuracy).slice(0, 3);
  process.stderr.write(`class manifolds: mean radius ${result.manifolds.meanRadius.toFixed(3)}, mean centre distance ${result.manifolds.meanCentreDistance.toFixed(3)}, overlapping pairs ${percent(result.manifolds.overlap)}; effective rank (RankMe) ${result.rankMe.toFixed(1)}; hardest classes ${hardest.map((x) => `${x.c} (${percent(x.accuracy)})`).join(', ')}\n`);
  if (values.json) {
    const { config: _config, ...summary } = result;
    process.stdout.write(`${JSON.stringify({ ...summary, dataset: result.config.data.dataset, seconds: (performance.now() - started) / 1000 })}\n`);
  }
  return 0;
}
