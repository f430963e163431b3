// `clamp-native finetune`: semi-supervised fine-tuning of a run's backbone on 1% / 10% of its training
// labels (or any shares), each scored on the whole test set; --json for one summary line on stdout.
import { parseArgs } from 'node:util';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { duration, percent, share } from '../format.js';
import { fineTuneCheckpoint, type FineTuneResult } from '../train/fine-tune-run.js';
import { numberFlag, UsageError, wholeNumberFlag } from './flags.js';

export const FINETUNE_USAGE = `clamp-native finetune --checkpoint PATH [options]
  --checkpoint PATH        a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --labels LIST            shares of each class's training labels, e.g. 1%,10% (the default) or 0.05
  --epochs N               epochs over the labelled images (default: 60 below 10%, else 30)
  --lr X                   the head's peak learning rate, cosine-decayed (default 0.3)
  --backbone-lr-scale X    the backbone's rate as a fraction of the head's (default 0.1; 0 freezes it)
  --batch-size N           (default 128, at most the labelled images)
  --weight-decay X         (default 0)
  --seed N                 the labelled subset, batch order and augmentations (default 0)
  --from-scratch           a randomly initialised backbone: the supervised-only baseline
  --data DIR               the dataset's folder (default: the run's)
  --json                   print one JSON summary line on stdout
`;

/** "1%" -> 0.01, "0.1" -> 0.1. */
export function parseLabelShare(text: string): number {
  const trimmed = text.trim();
  const share = trimmed.endsWith('%') ? Number(trimmed.slice(0, -1)) / 100 : Number(trimmed);
  if (trimmed === '' || trimmed === '%' || !(share > 0 && share <= 1))
    throw new UsageError(`--labels takes shares in (0, 1] or percentages like 1%, got '${text}'`);
  return share;
}

export async function runFineTune(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      checkpoint: { type: 'string' },
      labels: { type: 'string', default: '1%,10%' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      'backbone-lr-scale': { type: 'string' },
      'batch-size': { type: 'string' },
      'weight-decay': { type: 'string' },
      seed: { type: 'string' },
      'from-scratch': { type: 'boolean', default: false },
      data: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(FINETUNE_USAGE);
    return 0;
  }
  if (values.checkpoint === undefined) throw new UsageError('finetune needs --checkpoint');
  const shares = values.labels.split(',').map(parseLabelShare);
  const defined = <T>(key: string, value: T | undefined) => (value === undefined ? {} : { [key]: value });
  const options = {
    ...defined('epochs', wholeNumberFlag('epochs', values.epochs, 1)),
    ...defined('lr', numberFlag('lr', values.lr, 0, true)),
    ...defined('backboneLrScale', numberFlag('backbone-lr-scale', values['backbone-lr-scale'], 0)),
    ...defined('batchSize', wholeNumberFlag('batch-size', values['batch-size'], 2)),
    ...defined('weightDecay', numberFlag('weight-decay', values['weight-decay'], 0)),
    ...defined('seed', wholeNumberFlag('seed', values.seed)),
    fromScratch: values['from-scratch'],
  };
  const data = values.data === undefined ? {} : { path: values.data };
  const results: FineTuneResult[] = [];
  let checkpoint = '',
    dataset = '';
  for (const labels of shares) {
    process.stderr.write(
      `fine-tuning ${values['from-scratch'] ? 'a randomly initialised backbone' : values.checkpoint} on ${share(labels)} of the labels...\n`,
    );
    const result = await fineTuneCheckpoint(
      values.checkpoint,
      { ...options, labels },
      {
        data,
        onEpoch: (e) => {
          if (e.epoch % Math.max(1, Math.round(e.epochs / 10)) === 0 || e.epoch === e.epochs) {
            process.stderr.write(
              `  epoch ${e.epoch}/${e.epochs}: loss ${e.loss.toFixed(4)}, training-batch accuracy ${percent(e.accuracy)}\n`,
            );
          }
        },
      },
    );
    process.stderr.write(
      `${result.dataset}, ${share(labels)} of the labels (${result.labelledImages} images, ${result.epochs} epochs, ${result.steps} steps): ` +
        `test top-1 ${percent(result.top1)}, top-5 ${percent(result.top5)} in ${duration(result.seconds)}\n`,
    );
    ({ checkpoint, dataset } = result);
    const { checkpoint: _c, dataset: _d, ...summary } = result;
    results.push(summary);
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ checkpoint, dataset, results })}\n`);
  return 0;
}
