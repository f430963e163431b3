// The report's pictures, each rendered, written as report/<name>.png and returned as the page's HTML
// for it: the training curves, the accuracy, per-class and confusion charts, the embedding maps (PCA and
// UMAP) and the augmentation grid. A page rewritten mid-run draws only the cheap ones (from metrics.jsonl).
import path from 'node:path';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import type { TrainConfig } from '../config/train-config.js';
import { evaluatedWhen } from '../format.js';
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
import { embeddingMap, type EmbeddingMap } from './embedding-map.js';
import { COLUMN_WIDTH, escapeHtml, figure, note } from './html.js';
import { downsample, type EvaluationLine, type RunMetrics, type StepMetric } from './metrics.js';
import type { PngSink } from './png-folder.js';
import type { RunInputs } from './run-inputs.js';
import type { Stages } from './stages.js';
import { evenlySpread, umap, UMAP_MAX_POINTS, UMAP_MIN_POINTS } from './umap.js';

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
export const PNG_NAMES = [
  ...STEP_CHARTS.map((c) => c.file),
  'accuracy',
  'per-class',
  'confusion',
  'embedding-map',
  'embedding-map-umap',
  'augmentations',
];

/** The pictures as the page shows them; '' where a chart has nothing to show, a note where the page says why a picture is missing. */
export interface Figures {
  /** One per step metric the run logged. */
  training: string[];
  accuracy: string;
  perClass: string;
  confusion: string;
  embeddingMap: string;
  /** '' when the PCA map's note already says why there are no maps. */
  umapMap: string;
  augmentations: string;
}

/** Where figures go: their PNG files, and the stages that time them. */
export interface FigureOutput {
  pngs: PngSink;
  stages: Stages;
}

/**
 * Which pictures: `full` all of them; `cheap` only those drawn from metrics.jsonl (well under a second),
 * for the page rewritten at each epoch's end, without the checkpoint's features, PCA, UMAP and the grid.
 */
export type FigureScope = { kind: 'full'; mapImages: number } | { kind: 'cheap' };

/** What a mid-run page says in place of the expensive pictures. */
const MAPS_AT_THE_END = 'Drawn when the run has finished, from its final checkpoint.';
const GRID_AT_THE_END = 'Drawn when the run has finished, with the full report.';

const when = (evaluation: EvaluationLine) => evaluatedWhen(evaluation.epoch);

/** The pictures `scope` asks for, in the order the progress lines name them; `mapImages` 0 leaves the maps out. */
export async function renderFigures(inputs: RunInputs, scope: FigureScope, out: FigureOutput): Promise<Figures> {
  const { metrics, final } = inputs;
  const training = await trainingFigures(metrics, out);
  const accuracy = metrics.evaluations.length > 0 ? await accuracyFigure(metrics.evaluations, out) : '';
  const perClass = final ? await perClassFigure(final, inputs.className, out) : '';
  const confusion = final ? await confusionFigure(final, inputs.names, out) : '';
  if (scope.kind === 'cheap')
    return {
      training,
      accuracy,
      perClass,
      confusion,
      embeddingMap: note(MAPS_AT_THE_END),
      umapMap: '',
      augmentations: note(GRID_AT_THE_END),
    };
  const maps = await embeddingMapFigures(inputs, scope.mapImages, out);
  const augmentations = await augmentationGridFigure(inputs.config, out);
  return { training, accuracy, perClass, confusion, ...maps, augmentations };
}

async function trainingFigures(metrics: RunMetrics, { pngs, stages }: FigureOutput): Promise<string[]> {
  const figures: string[] = [];
  // Each epoch line sits at its epoch's last logged step (or, without step lines, its steps counted up;
  // runs before epoch lines carried `steps` have only the former).
  const lastStep = new Map<number, number>();
  for (const line of metrics.steps) lastStep.set(line.epoch, Math.max(lastStep.get(line.epoch) ?? -1, line.step));
  let stepsSoFar = 0;
  const epochMeans = metrics.epochs.map((line) => {
    stepsSoFar += typeof line.steps === 'number' ? line.steps : 0;
    return { x: lastStep.get(line.epoch) ?? stepsSoFar - 1, line };
  });
  await stages.timed('training charts', async () => {
    for (const chart of STEP_CHARTS) {
      const points: SeriesPoint[] = [];
      for (const line of metrics.steps) {
        const y = line[chart.metric];
        if (y !== undefined) points.push({ x: line.step, y });
      }
      if (points.length === 0) continue;
      const kept = downsample(
        points,
        MAX_SERIES_POINTS,
        (p) => p.x,
        (p) => p.y,
      );
      const ys = kept.map((p) => p.y);
      const log = chart.metric === 'energy' && Math.min(...ys) > 0 && Math.max(...ys) / Math.min(...ys) > 100;
      const means = epochMeans.flatMap(({ x, line }) =>
        typeof line[chart.metric] === 'number' && Number.isFinite(line[chart.metric]) ? [{ x, y: line[chart.metric] as number }] : [],
      );
      const rendered = await renderChart(
        lineChartSpec({
          title: chart.title,
          points: kept,
          ...(means.length >= 2 ? { means } : {}),
          xTitle: 'step',
          yTitle: chart.axis,
          log,
        }),
      );
      await pngs.save(chart.file, rendered.png);
      figures.push(figure(rendered.png, rendered.width, rendered.height, chart.title));
    }
  });
  return figures;
}

function accuracyFigure(evaluations: readonly EvaluationLine[], { pngs, stages }: FigureOutput): Promise<string> {
  return stages.timed('accuracy chart', async () => {
    // Monitors on eval.monitorImages score a subset: their own series, labelled with its size.
    const fullTest = Math.max(...evaluations.map((e) => e.images?.test ?? 0));
    const knnSeries = (e: EvaluationLine) =>
      e.images && e.images.test < fullTest ? `kNN monitor (${e.images.test.toLocaleString('en-US')} test images)` : 'kNN';
    const points: AccuracyPoint[] = evaluations.flatMap((e) => [
      { epochs: e.epoch + 1, method: knnSeries(e), top1: 100 * e.knn.top1 },
      ...(e.linearProbe ? [{ epochs: e.epoch + 1, method: 'linear probe', top1: 100 * e.linearProbe.top1 }] : []),
    ]);
    const rendered = await renderChart(accuracyChartSpec(points));
    await pngs.save('accuracy', rendered.png);
    return figure(
      rendered.png,
      rendered.width,
      rendered.height,
      'Test top-1 accuracy over epochs',
      'Epoch 0 is the untrained network (eval.atStart); the linear probe runs in full evaluations only, the cheap kNN monitors (eval.every, on eval.monitorImages) have none.',
    );
  });
}

async function perClassFigure(final: EvaluationLine, className: (c: number) => string, { pngs, stages }: FigureOutput): Promise<string> {
  const series = [
    { method: 'kNN', accuracy: final.perClass.knn },
    ...(final.perClass.linearProbe ? [{ method: 'linear probe', accuracy: final.perClass.linearProbe }] : []),
  ];
  const classCount = Math.max(final.perClass.knn.length, final.perClass.linearProbe?.length ?? 0);
  if (classCount === 0) return '';
  return stages.timed('per-class chart', async () => {
    const rendered = await renderChart(
      perClassChartSpec(
        Array.from({ length: classCount }, (_, c) => className(c)),
        series,
      ),
    );
    await pngs.save('per-class', rendered.png);
    // Hundreds of classes make a chart wider than the column: it scrolls rather than shrinking its bars.
    const layout = rendered.width <= COLUMN_WIDTH * 1.1 ? 'column' : 'natural';
    return figure(rendered.png, rendered.width, rendered.height, 'Per-class test accuracy', undefined, layout);
  });
}

async function confusionFigure(final: EvaluationLine, names: readonly string[], { pngs, stages }: FigureOutput): Promise<string> {
  const matrix = final.confusion?.linearProbe ?? final.confusion?.knn;
  if (!matrix || matrix.length === 0) return '';
  const method = final.confusion?.linearProbe ? 'linear probe' : 'kNN';
  return stages.timed('confusion heat map', async () => {
    const rendered = await renderChart(confusionChartSpec(`Confusion matrix (${method}, ${when(final)})`, names, matrix));
    await pngs.save('confusion', rendered.png);
    return figure(
      rendered.png,
      rendered.width,
      rendered.height,
      `Confusion matrix of the ${method}`,
      'Rows are the true classes, columns the predicted ones; colour is the share of the row, numbers are image counts.',
      'natural',
    );
  });
}

type MapFigures = Pick<Figures, 'embeddingMap' | 'umapMap'>;

/** The PCA map and the UMAP map of the same test images' features (computed once), or a note saying why there are none. */
async function embeddingMapFigures(inputs: RunInputs, mapImages: number, out: FigureOutput): Promise<MapFigures> {
  const { stages } = out;
  if (mapImages === 0) return { embeddingMap: note('Left out (--map-images 0).'), umapMap: '' };
  const map = await stages.timed('embedding map: features and PCA', () =>
    embeddingMap(path.join(inputs.runDir, CHECKPOINT_FILE), mapImages, stages.signal),
  );
  if ('skipped' in map) {
    stages.progress(`embedding map skipped: ${map.skipped}`);
    return { embeddingMap: note(`No map: ${escapeHtml(map.skipped)}.`), umapMap: '' };
  }
  const embeddingMapHtml = await pcaMapFigure(map, inputs.names, out);
  const umapMap = await umapMapFigure(map, inputs.names, inputs.config.run.seed, out);
  return { embeddingMap: embeddingMapHtml, umapMap };
}

type ComputedMap = Exclude<EmbeddingMap, { skipped: string }>;

function pcaMapFigure(map: ComputedMap, names: readonly string[], { pngs, stages }: FigureOutput): Promise<string> {
  return stages.timed('embedding map chart', async () => {
    const axis = (k: 0 | 1) => `PC${k + 1} (${(100 * map.explained[k]).toFixed(1)}% of variance)`;
    const chart = { title: 'Test embeddings, first two principal components', axisTitles: [axis(0), axis(1)] as [string, string] };
    const rendered = await renderChart(embeddingMapSpec(map.points, names, chart));
    await pngs.save('embedding-map', rendered.png);
    return figure(
      rendered.png,
      rendered.width,
      rendered.height,
      'Test embeddings on their first two principal components',
      escapeHtml(
        `${map.images} of the ${map.testImages} test images (evenly spread), backbone features (${map.dim} dimensions) of the final checkpoint, ` +
          `L2-normalised, projected on their first two principal axes (exact PCA). Features ${map.seconds.features.toFixed(1)} s, PCA ${map.seconds.pca.toFixed(2)} s.`,
      ),
      'panel',
    );
  });
}

/** The same features laid out by UMAP: neighbourhoods (which PCA's two axes flatten) kept, on at most UMAP_MAX_POINTS of the map's images. */
async function umapMapFigure(map: ComputedMap, names: readonly string[], seed: number, { pngs, stages }: FigureOutput): Promise<string> {
  const chosen = evenlySpread(map.images, UMAP_MAX_POINTS);
  if (chosen.length < UMAP_MIN_POINTS)
    return note(`No UMAP map: ${chosen.length} test images, fewer than the ${UMAP_MIN_POINTS} it needs.`);
  const rows = new Float64Array(chosen.length * map.dim);
  chosen.forEach((source, i) => rows.set(map.features.subarray(source * map.dim, (source + 1) * map.dim), i * map.dim));
  const layout = await stages.timed('embedding map: UMAP', () => umap(rows, chosen.length, map.dim, { seed, signal: stages.signal }));
  return stages.timed('UMAP map chart', async () => {
    const points = chosen.map((source, i) => ({
      x: layout.projections[2 * i]!,
      y: layout.projections[2 * i + 1]!,
      label: map.points[source]!.label,
    }));
    const chart = { title: 'Test embeddings, UMAP', axisTitles: ['UMAP 1', 'UMAP 2'] as [string, string], unscaled: true };
    const rendered = await renderChart(embeddingMapSpec(points, names, chart));
    await pngs.save('embedding-map-umap', rendered.png);
    return figure(
      rendered.png,
      rendered.width,
      rendered.height,
      'Test embeddings laid out by UMAP',
      escapeHtml(
        `${chosen.length} of those images, the same L2-normalised features laid out by UMAP (umap-js: ${layout.neighbours} neighbours, ` +
          `min_dist 0.1, ${layout.epochs} epochs, seed ${seed}). Distances within a cluster mean more than distances between clusters. ` +
          `Neighbour graph ${layout.seconds.graph.toFixed(1)} s, layout ${layout.seconds.layout.toFixed(1)} s.`,
      ),
      'panel',
    );
  });
}

async function augmentationGridFigure(config: TrainConfig, { pngs, stages }: FigureOutput): Promise<string> {
  try {
    return await stages.timed('augmentation grid', async () => {
      const images = await firstTrainingImages(config.data, 8);
      const grid = await augmentationGrid(images, config.augment, { rows: 8, views: 6, seed: config.run.seed });
      await pngs.save('augmentations', grid.png);
      const pipelines =
        config.augment.length > 1
          ? ` View columns cycle over the ${config.augment.length} pipelines (${grid.pipelineOfView.map((p) => p + 1).join(', ')}), as training does.`
          : '';
      return `<figure class="pixels"><img src="data:image/png;base64,${grid.png.toString('base64')}" width="${grid.width}" height="${grid.height}" alt="Training images and augmented views"><figcaption>${escapeHtml(
        `The first ${grid.rows} training images (left column, resized to the views' ${config.augment[0]!.size} px) and ${grid.views} augmented views of each, ` +
          `made with the run's augmentation pipelines (seed ${config.run.seed}), normalisation undone for display.${pipelines}`,
      )}</figcaption></figure>`;
    });
  } catch (error) {
    // A report of a run copied off its machine still has everything but the grid.
    if (stages.signal?.aborted) throw error;
    const why = error instanceof Error ? error.message : String(error);
    stages.progress(`augmentation grid skipped: ${why}`);
    return note(`No augmentation grid: the training images could not be read here (${escapeHtml(why)}).`);
  }
}
