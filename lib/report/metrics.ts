// metrics.jsonl as the report reads it: step, epoch and evaluation lines, tolerant of a half-written
// last line, of fields older runs lack (rankMe, confusion) and of NaN written by JSON.stringify as null.
import fs from 'node:fs/promises';

export const STEP_METRICS = [
  'loss',
  'energy',
  'meanRadius',
  'meanDistance',
  'contactsPerImage',
  'activity',
  'lr',
  'gradNorm',
  'viewImagesPerSecond',
] as const;
export type StepMetric = (typeof STEP_METRICS)[number];

export type StepLine = { kind: 'step'; epoch: number; step: number } & { [K in StepMetric]?: number };

export interface EpochLine {
  kind: 'epoch';
  epoch: number;
  loss?: number;
  lr?: number;
  steps?: number;
  viewImagesPerSecond?: number;
  seconds?: number;
  [key: string]: unknown;
}

export interface EvaluationLine {
  kind: 'evaluation';
  /** -1: before training (eval.atStart); otherwise the (0-based) epoch after which it ran. */
  epoch: number;
  step: number;
  knn: { top1: number; top5: number; k: number };
  linearProbe: { top1: number; top5: number; learningRate: number } | null;
  /** null entries: classes without test images (NaN in the run). */
  perClass: { knn: (number | null)[]; linearProbe: (number | null)[] | null };
  manifolds: { meanRadius: number | null; meanCentreDistance: number | null; overlap: number | null; radius: (number | null)[] } | null;
  /** Effective rank of the test features (newer runs). */
  rankMe?: number;
  /** Confusion counts, rows = true class, columns = predicted (newer runs). */
  confusion?: { knn: number[][]; linearProbe: number[][] | null };
  /** The images scored (newer runs): a monitor on eval.monitorImages scores fewer than the final evaluation. */
  images?: { train: number; test: number };
}

export interface RunMetrics {
  steps: StepLine[];
  epochs: EpochLine[];
  evaluations: EvaluationLine[];
  /** Lines that were not JSON objects (a half-written last line). */
  skipped: number;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const finite = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);
const numberOrNull = (value: unknown): number | null => (finite(value) ? value : null);
const numberArray = (value: unknown): (number | null)[] => (Array.isArray(value) ? value.map(numberOrNull) : []);
const matrix = (value: unknown): number[][] | null =>
  Array.isArray(value) && value.every((row) => Array.isArray(row))
    ? (value as unknown[][]).map((row) => row.map((x) => (finite(x) ? x : 0)))
    : null;

function topK(value: unknown): { top1: number; top5: number } | null {
  if (!isRecord(value) || !finite(value.top1)) return null;
  return { top1: value.top1, top5: finite(value.top5) ? value.top5 : Number.NaN };
}

function evaluationLine(entry: Record<string, unknown>): EvaluationLine | null {
  const knn = topK(entry.knn);
  if (!knn || !finite(entry.epoch)) return null;
  const probe = topK(entry.linearProbe);
  const perClass = isRecord(entry.perClass) ? entry.perClass : {};
  const manifolds = isRecord(entry.manifolds) ? entry.manifolds : null;
  const line: EvaluationLine = {
    kind: 'evaluation',
    epoch: entry.epoch,
    step: finite(entry.step) ? entry.step : 0,
    knn: { ...knn, k: finite((entry.knn as Record<string, unknown>).k) ? ((entry.knn as Record<string, unknown>).k as number) : 0 },
    linearProbe: probe
      ? { ...probe, learningRate: numberOrNull((entry.linearProbe as Record<string, unknown>).learningRate) ?? Number.NaN }
      : null,
    perClass: {
      knn: numberArray(perClass.knn),
      linearProbe: Array.isArray(perClass.linearProbe) ? numberArray(perClass.linearProbe) : null,
    },
    manifolds: manifolds
      ? {
          meanRadius: numberOrNull(manifolds.meanRadius),
          meanCentreDistance: numberOrNull(manifolds.meanCentreDistance),
          overlap: numberOrNull(manifolds.overlap),
          radius: numberArray(manifolds.radius),
        }
      : null,
  };
  if (finite(entry.rankMe)) line.rankMe = entry.rankMe;
  if (isRecord(entry.images) && finite(entry.images.train) && finite(entry.images.test)) {
    line.images = { train: entry.images.train, test: entry.images.test };
  }
  if (isRecord(entry.confusion)) {
    const knnMatrix = matrix(entry.confusion.knn);
    if (knnMatrix) line.confusion = { knn: knnMatrix, linearProbe: matrix(entry.confusion.linearProbe) };
  }
  return line;
}

/** Parses the text of a metrics.jsonl. */
export function parseMetrics(text: string): RunMetrics {
  const metrics: RunMetrics = { steps: [], epochs: [], evaluations: [], skipped: 0 };
  for (const raw of text.split('\n')) {
    if (!raw.trim()) continue;
    let entry: unknown;
    try {
      entry = JSON.parse(raw);
    } catch {
      metrics.skipped++;
      continue;
    }
    if (!isRecord(entry)) {
      metrics.skipped++;
      continue;
    }
    if (entry.kind === 'step' && finite(entry.step)) {
      const line: StepLine = { kind: 'step', epoch: finite(entry.epoch) ? entry.epoch : 0, step: entry.step };
      for (const key of STEP_METRICS) if (finite(entry[key])) line[key] = entry[key];
      metrics.steps.push(line);
    } else if (entry.kind === 'epoch' && finite(entry.epoch)) {
      metrics.epochs.push({ ...entry, kind: 'epoch', epoch: entry.epoch });
    } else if (entry.kind === 'evaluation') {
      const line = evaluationLine(entry);
      if (line) metrics.evaluations.push(line);
      else metrics.skipped++;
    }
  }
  return metrics;
}

export async function readMetrics(file: string): Promise<RunMetrics> {
  return parseMetrics(await fs.readFile(file, 'utf8'));
}

/**
 * At most `threshold` of the points, chosen by largest-triangle-three-buckets (Steinarsson 2013): the
 * first and last kept, and from each bucket between the point that spans the largest triangle with its
 * neighbours' picks, so that spikes and the curve's shape survive.
 */
export function downsample<T>(points: readonly T[], threshold: number, x: (p: T) => number, y: (p: T) => number): T[] {
  if (points.length <= threshold) return [...points];
  if (!Number.isInteger(threshold) || threshold < 3) throw new RangeError(`downsampling keeps at least 3 points, got ${threshold}`);
  const out: T[] = [points[0]!];
  const bucket = (points.length - 2) / (threshold - 2);
  let previous = 0;
  for (let b = 0; b < threshold - 2; b++) {
    const start = Math.floor(b * bucket) + 1;
    const end = Math.min(Math.floor((b + 1) * bucket) + 1, points.length - 1);
    // The next bucket's mean (the last point for the last bucket).
    const nextStart = end,
      nextEnd = Math.min(Math.floor((b + 2) * bucket) + 1, points.length);
    let meanX = 0,
      meanY = 0;
    for (let i = nextStart; i < nextEnd; i++) {
      meanX += x(points[i]!);
      meanY += y(points[i]!);
    }
    const span = Math.max(1, nextEnd - nextStart);
    meanX /= span;
    meanY /= span;
    const ax = x(points[previous]!),
      ay = y(points[previous]!);
    let best = start,
      bestArea = -1;
    for (let i = start; i < end; i++) {
      const area = Math.abs((ax - meanX) * (y(points[i]!) - ay) - (ax - x(points[i]!)) * (meanY - ay));
      if (area > bestArea) {
        bestArea = area;
        best = i;
      }
    }
    out.push(points[best]!);
    previous = best;
  }
  out.push(points[points.length - 1]!);
  return out;
}
