// The report's charts: Vega-Lite specs compiled to Vega, rendered headless to SVG (no canvas, no DOM,
// no network: data is always inline), then rasterised to PNG by sharp (librsvg, with the system's
// fonts: DejaVu Sans on Debian).
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** The font the charts ask for; librsvg falls back through fontconfig when it is missing. */
export const CHART_FONT = 'DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif';
/** Points per line series at most (more only makes the SVG big). */
export const MAX_SERIES_POINTS = 2000;
/**
 * PNG pixels per SVG pixel. PNGs are palette-quantised (flat chart colours survive, the files shrink 2-3x)
 * at quantiser effort 1: half the time of the default 7 for a few percent more bytes, which counts where
 * report.html is rewritten at each epoch's end (a 2,000-point chart: 70 ms instead of 150, 83 KB).
 */
const PIXEL_RATIO = 2;

// The plot area of the step and accuracy charts: with the axes and padding around it a chart is about
// html.ts's COLUMN_WIDTH wide, so it shows at 1:1 in the page's column (at 520 x 200 it showed small and
// half-width). At PIXEL_RATIO 2 that is 1,876 x 696 PNG pixels: 20-30 KB a chart of a short run, 83 KB
// one of MAX_SERIES_POINTS points.
const WIDTH = 870;
const HEIGHT = 260;
/** The side of an embedding map's plot area: two maps sit side by side in the column. */
const MAP_SIDE = 400;

const baseConfig = {
  font: CHART_FONT,
  background: 'white',
  padding: 8,
  title: { fontSize: 14, anchor: 'start' as const, offset: 8 },
  axis: { labelFontSize: 11, titleFontSize: 11, gridColor: '#e8e8e8' },
  legend: { labelFontSize: 11, titleFontSize: 11 },
  view: { stroke: '#d0d0d0' },
};

export interface RenderedChart {
  svg: string;
  png: Buffer;
  width: number;
  height: number;
}

/** Vega-Lite spec -> SVG (headless Vega) -> PNG (sharp) at twice the SVG's pixel size. */
export async function renderChart(spec: TopLevelSpec): Promise<RenderedChart> {
  const compiled = compile({ ...spec, config: { ...baseConfig, ...(spec.config ?? {}) } } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.Warn });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const { data: png, info } = await sharp(Buffer.from(svg), { density: 72 * PIXEL_RATIO })
    .png({ palette: true, effort: 1 })
    .toBuffer({ resolveWithObject: true });
  return { svg, png, width: Math.round(info.width / PIXEL_RATIO), height: Math.round(info.height / PIXEL_RATIO) };
}

export interface SeriesPoint {
  x: number;
  y: number;
}

/** One metric over training steps, with the epoch means (each at its epoch's last step) over it when given. */
export function lineChartSpec(options: {
  title: string;
  points: readonly SeriesPoint[];
  means?: readonly SeriesPoint[];
  xTitle: string;
  yTitle: string;
  log?: boolean;
}): TopLevelSpec {
  const means = options.means ?? [];
  const series = means.length > 0 ? ['per step', 'epoch mean'] : ['per step'];
  const colour = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: series, range: ['#6baed6', '#d95f02'].slice(0, series.length) },
    legend: means.length > 0 ? { orient: 'top' as const } : null,
  };
  const layer = (values: readonly SeriesPoint[], name: string, strokeWidth: number) => ({
    data: { values: values.map((p) => ({ x: p.x, y: p.y, series: name })) },
    mark: { type: 'line' as const, strokeWidth, ...(values.length === 1 ? { point: true } : {}) },
    encoding: { color: colour },
  });
  return {
    title: options.title,
    width: WIDTH,
    height: HEIGHT,
    encoding: {
      x: { field: 'x', type: 'quantitative', title: options.xTitle, scale: { zero: false, nice: false } },
      y: { field: 'y', type: 'quantitative', title: options.yTitle, scale: options.log ? { type: 'log' } : { zero: false } },
    },
    // The epoch means drawn last, over the steps.
    layer: [layer(options.points, 'per step', 1.25), ...(means.length > 0 ? [layer(means, 'epoch mean', 2)] : [])],
  };
}

const METHOD_COLOURS: Record<string, string> = { kNN: '#1f77b4', 'linear probe': '#d62728' };

/** Methods named otherwise (a kNN monitor on a subset) take these, in order of appearance: kNN's blue, lighter. */
const OTHER_METHOD_COLOURS = ['#7fb2dd', '#9467bd', '#8c564b'];

/** The same colour for a method on every chart, and legends that list only the methods present. */
function methodColours(methods: readonly string[]): { domain: string[]; range: string[] } {
  const known = Object.keys(METHOD_COLOURS).filter((m) => methods.includes(m));
  const others = [...new Set(methods)].filter((m) => !(m in METHOD_COLOURS));
  return {
    domain: [...known, ...others],
    range: [...known.map((m) => METHOD_COLOURS[m]!), ...others.map((_, k) => OTHER_METHOD_COLOURS[k % OTHER_METHOD_COLOURS.length]!)],
  };
}

export interface AccuracyPoint {
  /** Epochs trained (0: before training). */
  epochs: number;
  method: string;
  /** Percent. */
  top1: number;
}

/** Top-1 accuracy over epochs, one line per method (kNN, linear probe). */
export function accuracyChartSpec(points: readonly AccuracyPoint[]): TopLevelSpec {
  return {
    title: 'Test top-1 accuracy',
    width: WIDTH,
    height: HEIGHT,
    data: { values: points.map((p) => ({ ...p })) },
    mark: { type: 'line', point: { size: 50 }, strokeWidth: 1.5 },
    encoding: {
      x: { field: 'epochs', type: 'quantitative', title: 'epochs trained', scale: { zero: true }, axis: { tickMinStep: 1, format: 'd' } },
      y: { field: 'top1', type: 'quantitative', title: 'top-1 (%)', scale: { zero: false } },
      color: {
        field: 'method',
        type: 'nominal',
        title: null,
        scale: methodColours(points.map((p) => p.method)),
        legend: { orient: 'top' },
      },
    },
  };
}

/** Accuracy within each class (percent), grouped bars per method. */
export function perClassChartSpec(
  classNames: readonly string[],
  series: readonly { method: string; accuracy: readonly (number | null)[] }[],
): TopLevelSpec {
  const values = series.flatMap(({ method, accuracy }) =>
    accuracy.flatMap((a, c) => (a === null ? [] : [{ label: `${c}: ${classNames[c] ?? c}`, order: c, method, accuracy: 100 * a }])),
  );
  const many = classNames.length > 20;
  return {
    title: 'Per-class test accuracy',
    width: many ? Math.max(WIDTH, classNames.length * 8) : WIDTH,
    height: HEIGHT,
    data: { values },
    mark: { type: 'bar' },
    encoding: {
      x: {
        field: 'label',
        type: 'nominal',
        title: null,
        sort: { field: 'order', op: 'min' },
        axis: { labelAngle: -40, labelLimit: 200, ...(many ? { labels: false } : {}) },
      },
      xOffset: { field: 'method', type: 'nominal', scale: { domain: series.map((s) => s.method) } },
      y: { field: 'accuracy', type: 'quantitative', title: 'accuracy (%)', scale: { domain: [0, 100] } },
      color: {
        field: 'method',
        type: 'nominal',
        title: null,
        scale: methodColours(series.map((s) => s.method)),
        legend: { orient: 'top' },
      },
    },
  };
}

/** Confusion heat map: rows = true class, columns = predicted, coloured by the share of the row. */
export function confusionChartSpec(title: string, classNames: readonly string[], counts: readonly (readonly number[])[]): TopLevelSpec {
  const classes = counts.length;
  const name = (c: number) => `${c}: ${classNames[c] ?? c}`;
  const values = counts.flatMap((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, p) => ({ truth: name(t), predicted: name(p), t, p, count, share: total > 0 ? count / total : 0 }));
  });
  const cell = classes > 30 ? 6 : classes > 12 ? 20 : 36;
  const labels = classes <= 30;
  const order = Array.from({ length: classes }, (_, c) => name(c));
  return {
    title,
    width: cell * classes,
    height: cell * classes,
    data: { values },
    encoding: {
      x: { field: 'predicted', type: 'ordinal', title: 'predicted class', sort: order, axis: { labelAngle: -40, labelLimit: 200, labels } },
      y: { field: 'truth', type: 'ordinal', title: 'true class', sort: order, axis: { labelLimit: 200, labels } },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: {
            field: 'share',
            type: 'quantitative',
            title: 'share of row',
            scale: { domain: [0, 1], range: ['#f7fbff', '#08519c'], interpolate: 'hcl' },
          },
        },
      },
      ...(classes <= 12
        ? [
            {
              mark: { type: 'text' as const, fontSize: 10 },
              encoding: {
                text: { field: 'count', type: 'quantitative' as const },
                color: { condition: { test: 'datum.share > 0.5', value: 'white' }, value: '#333' },
              },
            },
          ]
        : []),
    ],
  };
}

export interface MapPoint {
  x: number;
  y: number;
  label: number;
}

export interface EmbeddingMapChart {
  title: string;
  axisTitles: [string, string];
  /** Hide the axes' numbers (a UMAP layout's coordinates mean nothing in themselves). */
  unscaled?: boolean;
}

/** A 2-D map of test embeddings (PCA or UMAP), one colour per class, the legend under it (two maps sit side by side). */
export function embeddingMapSpec(points: readonly MapPoint[], classNames: readonly string[], chart: EmbeddingMapChart): TopLevelSpec {
  const classes = Math.max(classNames.length, ...points.map((p) => p.label + 1));
  const name = (c: number) => `${c}: ${classNames[c] ?? c}`;
  const legend = classes <= 20;
  const axis = chart.unscaled ? { labels: false, ticks: false, grid: false } : {};
  return {
    title: chart.title,
    width: MAP_SIDE,
    height: MAP_SIDE,
    data: { values: points.map((p) => ({ x: p.x, y: p.y, class: name(p.label), order: p.label })) },
    // fillOpacity rather than opacity: librsvg composites every element with its own opacity off-screen (6x slower).
    mark: { type: 'circle', size: 14, fillOpacity: 0.7, opacity: 1 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: chart.axisTitles[0], scale: { zero: false }, axis },
      y: { field: 'y', type: 'quantitative', title: chart.axisTitles[1], scale: { zero: false }, axis },
      color: {
        field: 'class',
        type: 'nominal',
        title: null,
        sort: Array.from({ length: classes }, (_, c) => name(c)),
        scale: { scheme: classes <= 10 ? 'category10' : 'category20' },
        legend: legend ? { orient: 'bottom', columns: Math.min(classes, 3), symbolSize: 60, labelLimit: 130 } : null,
      },
    },
  };
}
