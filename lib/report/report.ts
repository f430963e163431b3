// A training run's report: one self-contained report.html (inline CSS, charts and pictures as PNG data
// URIs, no scripts, nothing fetched) plus the same pictures as report/*.png, from what the run folder
// holds: config.json, metrics.jsonl and checkpoint.safetensors.
import fs from 'node:fs/promises';
import path from 'node:path';
import { CHECKPOINT_FILE, readCheckpointMetadata } from '../checkpoint/checkpoint.js';
import { writeFileAtomically } from '../io/files.js';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import { CONFIG_FILE, METRICS_FILE, REPORT_FILE, REPORT_FOLDER, RunFolderError } from '../run-folder/run-folder.js';
import { augmentationGrid, firstTrainingImages } from './augmentation-grid.js';
import {
  accuracyChartSpec,
  confusionChartSpec,
  embeddingMapSpec,
  lineChartSpec,
  MAX_SERIES_POINTS,
  perClassChartSpec,
  renderChart,
  type AccuracyPoint,
  type SeriesPoint,
} from './charts.js';
import { classNames as classNamesOf } from './class-names.js';
import { embeddingMap } from './embedding-map.js';
import { duration, evaluatedWhen, percent } from '../format.js';
import { escapeHtml, figure, note, number, page, table } from './html.js';
import { downsample, readMetrics, type EvaluationLine, type RunMetrics, type StepMetric } from './metrics.js';

export { REPORT_FILE, REPORT_FOLDER, RunFolderError };
/** Test images the embedding map shows by default. */
export const DEFAULT_MAP_IMAGES = 2000;

export interface ReportOptions {
  /** Test images on the embedding map (default 2,000; 0 leaves the map out). */
  mapImages?: number;
  /** Stops between stages (and during feature extraction) with an AbortError. */
  signal?: AbortSignal;
  /** A line per stage, with its time (for a CLI's stderr). */
  onProgress?: (message: string) => void;
}

export interface ReportResult {
  /** The report.html written. */
  html: string;
  /** The PNGs written under runDir/report. */
  pngs: string[];
}

const notRunFolder = (runDir: string, why: string) =>
  new RunFolderError(`${runDir} is not a run folder: ${why}; pass the --out folder of a \`clamp-native train\` run`);

/** The step charts: metric, file name, title, axis title. */
const STEP_CHARTS: readonly { metric: StepMetric; file: string; title: string; axis: string }[] = [
  { metric: 'loss', file: 'loss', title: 'Loss', axis: 'loss' },
  { metric: 'energy', file: 'energy', title: 'Packing energy E', axis: 'energy' },
  { metric: 'meanRadius', file: 'mean-radius', title: 'Mean sub-manifold radius (r / rs)', axis: 'mean radius' },
  { metric: 'contactsPerImage', file: 'contacts-per-image', title: 'Contacts per image', axis: 'contacts per image' },
  { metric: 'activity', file: 'activity', title: 'Activity (share of images with a contact)', axis: 'activity' },
  { metric: 'lr', file: 'learning-rate', title: 'Learning rate', axis: 'learning rate' },
];
/** Every PNG name the report may write; ones not written this time are removed (left from an earlier report). */
const PNG_NAMES = [...STEP_CHARTS.map((c) => c.file), 'accuracy', 'per-class', 'confusion', 'embedding-map', 'augmentations'];

async function readConfig(runDir: string): Promise<{ config: TrainConfig; raw: unknown }> {
  const file = path.join(runDir, CONFIG_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new RunFolderError(`${file} could not be read: ${(error as Error).message}`);
    // An older or copied run: the checkpoint's header carries the config too (its weights are not needed).
    const checkpointFile = path.join(runDir, CHECKPOINT_FILE);
    if (!(await fs.stat(checkpointFile).catch(() => null))) throw notRunFolder(runDir, `it has no ${CONFIG_FILE} (and no ${CHECKPOINT_FILE} to take the config from)`);
    raw = (await readCheckpointMetadata(checkpointFile)).config;
  }
  return { config: parseTrainConfig(raw, file), raw };
}

const when = (evaluation: EvaluationLine) => evaluatedWhen(evaluation.epoch);

function card(label: string, value: string, detail = ''): string {
  return `<div class="card"><div class="label">${escapeHtml(label)}</div><div class="value">${value}</div>${detail ? `<div class="detail">${detail}</div>` : ''}</div>`;
}

function backboneText(config: TrainConfig): string {
  const { backbone, widths, blocks, stem, projectorHidden, projectorOut } = config.model;
  const shape = [widths ? `widths ${widths.join('-')}` : '', blocks ? `blocks ${blocks.join('-')}` : '', stem ? `${stem} stem` : ''].filter(Boolean).join(', ');
  return `${backbone}${shape ? ` (${shape})` : ''}; projector ${[...projectorHidden, projectorOut].join('-')}`;
}

/** Training totals from the epoch lines (steps also from the step lines, for a run stopped mid-epoch). */
function totals(metrics: RunMetrics): { epochs: number; steps: number; seconds: number; viewImagesPerSecond: number } {
  const epochs = new Set(metrics.epochs.map((e) => e.epoch)).size;
  const epochSteps = metrics.epochs.reduce((sum, e) => sum + (typeof e.steps === 'number' ? e.steps : 0), 0);
  const lastStep = metrics.steps.length > 0 ? metrics.steps[metrics.steps.length - 1]!.step + 1 : 0;
  let seconds = 0, viewImages = 0;
  for (const e of metrics.epochs) {
    if (typeof e.seconds === 'number' && typeof e.viewImagesPerSecond === 'number' && Number.isFinite(e.seconds) && Number.isFinite(e.viewImagesPerSecond)) {
      seconds += e.seconds;
      viewImages += e.seconds * e.viewImagesPerSecond;
    }
  }
  return { epochs, steps: Math.max(epochSteps, lastStep), seconds, viewImagesPerSecond: seconds > 0 ? viewImages / seconds : Number.NaN };
}

/**
 * Writes runDir/report.html and runDir/report/*.png for the training run in `runDir`. Throws
 * RunFolderError when runDir is not a run folder (missing, or without metrics.jsonl). Parts that need
 * what the folder or this machine lacks (a checkpoint, the test split, the dataset) are left out, and the
 * report says why.
 */
export async function buildReport(runDir: string, options: ReportOptions = {}): Promise<ReportResult> {
  const { signal } = options;
  const progress = options.onProgress ?? (() => {});
  const mapImages = options.mapImages ?? DEFAULT_MAP_IMAGES;
  if (!Number.isInteger(mapImages) || mapImages < 0) throw new RangeError(`mapImages must be a whole number >= 0, got ${mapImages}`);
  if (!(await fs.stat(runDir).catch(() => null))?.isDirectory()) throw notRunFolder(runDir, 'it does not exist or is not a folder');
  const metricsFile = path.join(runDir, METRICS_FILE);
  if (!(await fs.stat(metricsFile).catch(() => null))?.isFile()) throw notRunFolder(runDir, `it has no ${METRICS_FILE}`);

  const metrics = await readMetrics(metricsFile);
  const { config, raw } = await readConfig(runDir);
  const names = await classNamesOf(config.data);
  const className = (c: number) => names[c] ?? String(c);
  const outFolder = path.join(runDir, REPORT_FOLDER);
  await fs.mkdir(outFolder, { recursive: true });
  const written: string[] = [];
  const savePng = async (name: string, png: Buffer) => {
    const file = path.join(outFolder, `${name}.png`);
    await writeFileAtomically(file, [png]);
    written.push(file);
  };
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    signal?.throwIfAborted();
    const started = performance.now();
    const result = await work();
    progress(`${what} (${((performance.now() - started) / 1000).toFixed(2)} s)`);
    return result;
  };

  // Training curves.
  const stepFigures: string[] = [];
  // Each epoch line sits at its epoch's last logged step (or, without step lines, its steps counted up;
  // runs before epoch lines carried `steps` have only the former).
  const lastStep = new Map<number, number>();
  for (const line of metrics.steps) lastStep.set(line.epoch, Math.max(lastStep.get(line.epoch) ?? -1, line.step));
  let stepsSoFar = 0;
  const epochMeans = metrics.epochs.map((line) => {
    stepsSoFar += typeof line.steps === 'number' ? line.steps : 0;
    return { x: lastStep.get(line.epoch) ?? stepsSoFar - 1, line };
  });
  await timed('training charts', async () => {
    for (const chart of STEP_CHARTS) {
      const points: SeriesPoint[] = [];
      for (const line of metrics.steps) {
        const y = line[chart.metric];
        if (y !== undefined) points.push({ x: line.step, y });
      }
      if (points.length === 0) continue;
      const kept = downsample(points, MAX_SERIES_POINTS, (p) => p.x, (p) => p.y);
      const ys = kept.map((p) => p.y);
      const log = chart.metric === 'energy' && Math.min(...ys) > 0 && Math.max(...ys) / Math.min(...ys) > 100;
      const means = epochMeans.flatMap(({ x, line }) => (typeof line[chart.metric] === 'number' && Number.isFinite(line[chart.metric]) ? [{ x, y: line[chart.metric] as number }] : []));
      const rendered = await renderChart(lineChartSpec({ title: chart.title, points: kept, ...(means.length >= 2 ? { means } : {}), xTitle: 'step', yTitle: chart.axis, log }));
      await savePng(chart.file, rendered.png);
      stepFigures.push(figure(rendered.png, rendered.width, rendered.height, chart.title));
    }
  });

  // Evaluations.
  const evaluations = metrics.evaluations;
  const final = evaluations.length > 0 ? evaluations[evaluations.length - 1]! : null;
  let accuracyFigure = '';
  if (evaluations.length > 0) {
    accuracyFigure = await timed('accuracy chart', async () => {
      const points: AccuracyPoint[] = evaluations.flatMap((e) => [
        { epochs: e.epoch + 1, method: 'kNN', top1: 100 * e.knn.top1 },
        ...(e.linearProbe ? [{ epochs: e.epoch + 1, method: 'linear probe', top1: 100 * e.linearProbe.top1 }] : []),
      ]);
      const rendered = await renderChart(accuracyChartSpec(points));
      await savePng('accuracy', rendered.png);
      return figure(rendered.png, rendered.width, rendered.height, 'Test top-1 accuracy over epochs', 'Epoch 0 is the untrained network (eval.atStart); the linear probe runs in full evaluations only, the cheap kNN monitors (eval.every) have none.');
    });
  }

  let perClassFigure = '';
  let confusionFigure = '';
  if (final) {
    const series = [{ method: 'kNN', accuracy: final.perClass.knn }, ...(final.perClass.linearProbe ? [{ method: 'linear probe', accuracy: final.perClass.linearProbe }] : [])];
    const classCount = Math.max(final.perClass.knn.length, final.perClass.linearProbe?.length ?? 0);
    if (classCount > 0) {
      perClassFigure = await timed('per-class chart', async () => {
        const rendered = await renderChart(perClassChartSpec(Array.from({ length: classCount }, (_, c) => className(c)), series));
        await savePng('per-class', rendered.png);
        return figure(rendered.png, rendered.width, rendered.height, 'Per-class test accuracy');
      });
    }
    const matrix = final.confusion?.linearProbe ?? final.confusion?.knn;
    if (matrix && matrix.length > 0) {
      const method = final.confusion?.linearProbe ? 'linear probe' : 'kNN';
      confusionFigure = await timed('confusion heat map', async () => {
        const rendered = await renderChart(confusionChartSpec(`Confusion matrix (${method}, ${when(final)})`, names, matrix));
        await savePng('confusion', rendered.png);
        return figure(rendered.png, rendered.width, rendered.height, `Confusion matrix of the ${method}`, 'Rows are the true classes, columns the predicted ones; colour is the share of the row, numbers are image counts.');
      });
    }
  }

  // The embedding map.
  let mapSection: string;
  if (mapImages === 0) {
    mapSection = note('Left out (--map-images 0).');
  } else {
    const map = await timed('embedding map: features and PCA', () => embeddingMap(path.join(runDir, CHECKPOINT_FILE), mapImages, signal));
    if ('skipped' in map) {
      mapSection = note(`No map: ${escapeHtml(map.skipped)}.`);
      progress(`embedding map skipped: ${map.skipped}`);
    } else {
      mapSection = await timed('embedding map chart', async () => {
        const axis = (k: 0 | 1) => `PC${k + 1} (${(100 * map.explained[k]).toFixed(1)}% of variance)`;
        const rendered = await renderChart(embeddingMapSpec(map.points, names, [axis(0), axis(1)]));
        await savePng('embedding-map', rendered.png);
        return figure(
          rendered.png,
          rendered.width,
          rendered.height,
          'Test embeddings on their first two principal components',
          escapeHtml(
            `${map.images} of the ${map.testImages} test images (evenly spread), backbone features (${map.dim} dimensions) of the final checkpoint, ` +
              `L2-normalised, projected on their first two principal axes (exact PCA). Features ${map.seconds.features.toFixed(1)} s, PCA ${map.seconds.pca.toFixed(2)} s.`,
          ),
        );
      });
    }
  }

  // The augmentation grid.
  let gridSection: string;
  try {
    gridSection = await timed('augmentation grid', async () => {
      const images = await firstTrainingImages(config.data, 8);
      const grid = await augmentationGrid(images, config.augment, { rows: 8, views: 6, seed: config.run.seed });
      await savePng('augmentations', grid.png);
      const pipelines = config.augment.length > 1 ? ` View columns cycle over the ${config.augment.length} pipelines (${grid.pipelineOfView.map((p) => p + 1).join(', ')}), as training does.` : '';
      return `<figure class="pixels"><img src="data:image/png;base64,${grid.png.toString('base64')}" width="${grid.width}" height="${grid.height}" alt="Training images and augmented views"><figcaption>${escapeHtml(
        `The first ${grid.rows} training images (left column, resized to the views' ${config.augment[0]!.size} px) and ${grid.views} augmented views of each, ` +
          `made with the run's augmentation pipelines (seed ${config.run.seed}), normalisation undone for display.${pipelines}`,
      )}</figcaption></figure>`;
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    const why = error instanceof Error ? error.message : String(error);
    gridSection = note(`No augmentation grid: the training images could not be read here (${escapeHtml(why)}).`);
    progress(`augmentation grid skipped: ${why}`);
  }
  signal?.throwIfAborted();

  // The page.
  const run = totals(metrics);
  const headline = [
    card('Dataset', escapeHtml(config.data.dataset), escapeHtml([config.data.limit ? `first ${config.data.limit} training images` : '', config.data.testLimit ? `first ${config.data.testLimit} test images` : ''].filter(Boolean).join(', '))),
    card('Backbone', escapeHtml(config.model.backbone), escapeHtml(backboneText(config))),
    card('Epochs', `${run.epochs} / ${config.schedule.epochs}`, escapeHtml(`batch ${config.run.batchSize} x ${config.run.views} views`)),
    card('Steps', String(run.steps), escapeHtml(`training time ${duration(run.seconds)}`)),
    card('Throughput', Number.isFinite(run.viewImagesPerSecond) ? `${Math.round(run.viewImagesPerSecond)}` : 'n/a', 'view-images per second'),
    card('kNN top-1', final ? percent(final.knn.top1) : 'n/a', final ? escapeHtml(`top-5 ${percent(final.knn.top5)}, k=${final.knn.k}, ${when(final)}`) : 'no evaluation in metrics.jsonl'),
    card('Linear probe top-1', final?.linearProbe ? percent(final.linearProbe.top1) : 'n/a', final?.linearProbe ? escapeHtml(`top-5 ${percent(final.linearProbe.top5)}, lr ${number(final.linearProbe.learningRate)}`) : 'not run'),
    ...(final?.rankMe !== undefined ? [card('RankMe', number(final.rankMe, 4), 'effective rank of the test features')] : []),
  ].join('\n');

  const evaluationTable =
    evaluations.length > 0
      ? table(
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
        )
      : note('This run logged no evaluation (eval.atEnd off, no test split, or stopped before the end).');

  let classSection = note('No per-class figures: the run logged no evaluation.');
  let manifoldSection = note('No manifold diagnostics: the run logged no evaluation.');
  if (final) {
    const classCount = Math.max(final.perClass.knn.length, final.perClass.linearProbe?.length ?? 0, final.manifolds?.radius.length ?? 0);
    const rowTotals = (final.confusion?.linearProbe ?? final.confusion?.knn)?.map((row) => row.reduce((a, b) => a + b, 0));
    const accuracyCell = (a: number | null | undefined) => (a === null || a === undefined ? 'n/a' : `${percent(a)}<span class="bar" style="width:${Math.round(60 * Math.max(0, Math.min(1, a)))}px"></span>`);
    classSection = table(
      ['#', 'class', ...(rowTotals ? ['test images'] : []), 'kNN', ...(final.perClass.linearProbe ? ['linear probe'] : []), 'manifold radius'],
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
    manifoldSection = final.manifolds
      ? `${table(['mean radius', 'mean centre distance', 'overlapping class pairs'], [[number(final.manifolds.meanRadius), number(final.manifolds.meanCentreDistance), percent(final.manifolds.overlap)]])}
<p>Each class's test embeddings (backbone features, L2-normalised) form a manifold with a centre and a radius (the RMS distance of its members from the centre). Two classes overlap when their centres are closer than the sum of their radii; those pairs are the ones a linear read-out struggles to separate. Figures ${escapeHtml(when(final))}.</p>`
      : note('The evaluation carries no manifold diagnostics.');
  }

  const title = `clamp-native run report: ${config.data.dataset}, ${config.model.backbone}`;
  const body = `<h1>${escapeHtml(title)}</h1>
<p class="sub">${escapeHtml(path.resolve(runDir))} &middot; generated ${escapeHtml(new Date().toISOString())}${metrics.skipped > 0 ? ` &middot; ${metrics.skipped} unreadable line(s) of ${METRICS_FILE} skipped` : ''}</p>
<div class="cards">
${headline}
</div>

<h2>Training</h2>
${stepFigures.length > 0 ? `<div class="charts">\n${stepFigures.join('\n')}\n</div>\n<p class="note">Per step (at most ${MAX_SERIES_POINTS} points per chart, run.logEvery ${config.run.logEvery}), with the epoch means over them when there are two epochs or more.</p>` : note('No step lines in metrics.jsonl.')}

<h2>Evaluation</h2>
${accuracyFigure}
${evaluationTable}

<h2>Per class</h2>
${perClassFigure}
${classSection}

<h2>Class manifolds</h2>
${manifoldSection}

<h2>Confusion</h2>
${confusionFigure || note('This run did not record confusion matrices (older runs lack them).')}

<h2>Embedding map</h2>
${mapSection}

<h2>Augmented views</h2>
${gridSection}

<h2>Config</h2>
<details><summary>${escapeHtml(CONFIG_FILE)}</summary>
<pre>${escapeHtml(JSON.stringify(raw, null, 2))}</pre>
</details>
`;
  const htmlFile = path.join(runDir, REPORT_FILE);
  await writeFileAtomically(htmlFile, [Buffer.from(page(title, body))]);
  // PNGs an earlier report wrote that this one did not (a map that is now skipped, say) would mislead.
  await Promise.all(
    PNG_NAMES.map((name) => path.join(outFolder, `${name}.png`))
      .filter((file) => !written.includes(file))
      .map((file) => fs.rm(file, { force: true })),
  );
  return { html: htmlFile, pngs: written };
}
