// The page: report.html's sections around the figures, from the run's config and metrics.
import path from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import { duration, evaluatedWhen, percent } from '../format.js';
import { CONFIG_FILE, METRICS_FILE } from '../run-folder/run-folder.js';
import { MAX_SERIES_POINTS } from './charts.js';
import type { Figures } from './figures.js';
import { escapeHtml, note, number, page, table } from './html.js';
import type { EvaluationLine, RunMetrics } from './metrics.js';
import { pageState, statusBanner, type RunStatus } from './report-state.js';
import type { RunInputs } from './run-inputs.js';

const when = (evaluation: EvaluationLine) => evaluatedWhen(evaluation.epoch);

/** The whole of report.html: the finished run's (`status` null), or that of a run under way, with its banner. */
export function reportPage(inputs: RunInputs, figures: Figures, status: RunStatus | null = null): string {
  const { runDir, metrics, config, final } = inputs;
  const title = `clamp-native run report: ${config.data.dataset}, ${config.model.backbone}`;
  const body = `<h1>${escapeHtml(title)}</h1>
<p class="sub">${escapeHtml(path.resolve(runDir))} &middot; generated ${escapeHtml(new Date().toISOString())}${metrics.skipped > 0 ? ` &middot; ${metrics.skipped} unreadable line(s) of ${METRICS_FILE} skipped` : ''}</p>
${statusBanner(status, path.resolve(runDir))}
<div class="cards">
${headlineCards(config, metrics, final)}
</div>

<h2>Training</h2>
${trainingSection(figures.training, config)}

<h2>Evaluation</h2>
${figures.accuracy}
${evaluationTable(metrics.evaluations)}

<h2>Per class</h2>
${figures.perClass}
${final ? classTable(final, inputs.className) : note('No per-class figures: the run logged no evaluation.')}

<h2>Class manifolds</h2>
${final ? manifoldSection(final) : note('No manifold diagnostics: the run logged no evaluation.')}

<h2>Confusion</h2>
${figures.confusion || note('This run did not record confusion matrices (older runs lack them).')}

<h2>Embedding maps</h2>
${figures.umapMap ? `<div class="maps">\n${figures.embeddingMap}\n${figures.umapMap}\n</div>` : figures.embeddingMap}

<h2>Augmented views</h2>
${figures.augmentations}

<h2>Config</h2>
<details><summary>${escapeHtml(CONFIG_FILE)}</summary>
<pre>${escapeHtml(JSON.stringify(inputs.rawConfig, null, 2))}</pre>
</details>
`;
  return page(title, body, pageState(status));
}

function card(label: string, value: string, detail = ''): string {
  return `<div class="card"><div class="label">${escapeHtml(label)}</div><div class="value">${value}</div>${detail ? `<div class="detail">${detail}</div>` : ''}</div>`;
}

function backboneText(config: TrainConfig): string {
  const { backbone, widths, blocks, stem, projectorHidden, projectorOut } = config.model;
  const shape = [widths ? `widths ${widths.join('-')}` : '', blocks ? `blocks ${blocks.join('-')}` : '', stem ? `${stem} stem` : '']
    .filter(Boolean)
    .join(', ');
  return `${backbone}${shape ? ` (${shape})` : ''}; projector ${[...projectorHidden, projectorOut].join('-')}`;
}

/** Training totals from the epoch lines (steps also from the step lines, for a run stopped mid-epoch). */
function totals(metrics: RunMetrics): { epochs: number; steps: number; seconds: number; viewImagesPerSecond: number } {
  const epochs = new Set(metrics.epochs.map((e) => e.epoch)).size;
  const epochSteps = metrics.epochs.reduce((sum, e) => sum + (typeof e.steps === 'number' ? e.steps : 0), 0);
  const lastStep = metrics.steps.length > 0 ? metrics.steps[metrics.steps.length - 1]!.step + 1 : 0;
  let seconds = 0,
    viewImages = 0;
  for (const e of metrics.epochs) {
    if (
      typeof e.seconds === 'number' &&
      typeof e.viewImagesPerSecond === 'number' &&
      Number.isFinite(e.seconds) &&
      Number.isFinite(e.viewImagesPerSecond)
    ) {
      seconds += e.seconds;
      viewImages += e.seconds * e.viewImagesPerSecond;
    }
  }
  return { epochs, steps: Math.max(epochSteps, lastStep), seconds, viewImagesPerSecond: seconds > 0 ? viewImages / seconds : Number.NaN };
}

function headlineCards(config: TrainConfig, metrics: RunMetrics, final: EvaluationLine | null): string {
  const run = totals(metrics);
  return [
    card(
      'Dataset',
      escapeHtml(config.data.dataset),
      escapeHtml(
        [
          config.data.limit ? `first ${config.data.limit} training images` : '',
          config.data.testLimit ? `first ${config.data.testLimit} test images` : '',
        ]
          .filter(Boolean)
          .join(', '),
      ),
    ),
    card('Backbone', escapeHtml(config.model.backbone), escapeHtml(backboneText(config))),
    card('Epochs', `${run.epochs} / ${config.schedule.epochs}`, escapeHtml(`batch ${config.run.batchSize} x ${config.run.views} views`)),
    card('Steps', String(run.steps), escapeHtml(`training time ${duration(run.seconds)}`)),
    card(
      'Throughput',
      Number.isFinite(run.viewImagesPerSecond) ? `${Math.round(run.viewImagesPerSecond)}` : 'n/a',
      'view-images per second',
    ),
    card(
      'kNN top-1',
      final ? percent(final.knn.top1) : 'n/a',
      final ? escapeHtml(`top-5 ${percent(final.knn.top5)}, k=${final.knn.k}, ${when(final)}`) : 'no evaluation in metrics.jsonl',
    ),
    card(
      'Linear probe top-1',
      final?.linearProbe ? percent(final.linearProbe.top1) : 'n/a',
      final?.linearProbe ? escapeHtml(`top-5 ${percent(final.linearProbe.top5)}, lr ${number(final.linearProbe.learningRate)}`) : 'not run',
    ),
    ...(final?.rankMe !== undefined ? [card('RankMe', number(final.rankMe, 4), 'effective rank of the test features')] : []),
  ].join('\n');
}

function trainingSection(stepFigures: readonly string[], config: TrainConfig): string {
  if (stepFigures.length === 0) return note('No step lines in metrics.jsonl.');
  return `<div class="charts">\n${stepFigures.join('\n')}\n</div>\n<p class="note">Per step (at most ${MAX_SERIES_POINTS} points per chart, run.logEvery ${config.run.logEvery}), with the epoch means over them when there are two epochs or more.</p>`;
}

function evaluationTable(evaluations: readonly EvaluationLine[]): string {
  if (evaluations.length === 0) return note('This run logged no evaluation (eval.atEnd off, no test split, or stopped before the end).');
  return table(
    ['when', 'step', 'kNN top-1', 'kNN top-5', 'probe top-1', 'probe top-5', 'RankMe', 'mean radius', 'centre distance', 'overlap'],
    evaluations.map((e) => [
      escapeHtml(when(e)),
      String(e.step),
      percent(e.knn.top1),
      percent(e.knn.top5),
      e.linearProbe ? percent(e.linearProbe.top1) : '-',
      e.linearProbe ? percent(e.linearProbe.top5) : '-',
      e.rankMe !== undefined ? number(e.rankMe) : '-',
      number(e.manifolds?.meanRadius),
      number(e.manifolds?.meanCentreDistance),
      percent(e.manifolds?.overlap),
    ]),
  );
}

function classTable(final: EvaluationLine, className: (c: number) => string): string {
  const classCount = Math.max(final.perClass.knn.length, final.perClass.linearProbe?.length ?? 0, final.manifolds?.radius.length ?? 0);
  const rowTotals = (final.confusion?.linearProbe ?? final.confusion?.knn)?.map((row) => row.reduce((a, b) => a + b, 0));
  const accuracyCell = (a: number | null | undefined) =>
    a === null || a === undefined
      ? 'n/a'
      : `${percent(a)}<span class="bar" style="width:${Math.round(60 * Math.max(0, Math.min(1, a)))}px"></span>`;
  return table(
    [
      '#',
      'class',
      ...(rowTotals ? ['test images'] : []),
      'kNN',
      ...(final.perClass.linearProbe ? ['linear probe'] : []),
      'manifold radius',
    ],
    Array.from({ length: classCount }, (_, c) => [
      String(c),
      escapeHtml(className(c)),
      ...(rowTotals ? [String(rowTotals[c] ?? 0)] : []),
      accuracyCell(final.perClass.knn[c]),
      ...(final.perClass.linearProbe ? [accuracyCell(final.perClass.linearProbe[c])] : []),
      number(final.manifolds?.radius[c]),
    ]),
    'classes',
  );
}

function manifoldSection(final: EvaluationLine): string {
  if (!final.manifolds) return note('The evaluation carries no manifold diagnostics.');
  return `${table(['mean radius', 'mean centre distance', 'overlapping class pairs'], [[number(final.manifolds.meanRadius), number(final.manifolds.meanCentreDistance), percent(final.manifolds.overlap)]])}
<p>Each class's test embeddings (backbone features, L2-normalised) form a manifold with a centre and a radius (the RMS distance of its members from the centre). Two classes overlap when their centres are closer than the sum of their radii; those pairs are the ones a linear read-out struggles to separate. Figures ${escapeHtml(when(final))}.</p>`;
}
