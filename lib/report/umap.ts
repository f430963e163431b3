// UMAP (McInnes, Healy & Melville, 2018) of the report's map points, by umap-js: a pure-JS port that
// starts from a random layout rather than the spectral one. Seeded, so that a report drawn twice from
// the same checkpoint shows the same map. It runs where the PCA runs (the report, a one-shot step after
// training or `clamp-native report`, on the JS thread): the neighbour graph is one synchronous piece, the
// layout's epochs yield to the event loop between them so that Ctrl-C (the signal) still stops it.
import { UMAP } from 'umap-js';
import { Random } from '../random.js';

/**
 * Points UMAP lays out at most: the cost grows faster than the count (the neighbour graph, 500 layout
 * epochs up to 2,500 points). Measured on the project's 2-core machine (umap-js 1.4.0, Node 20, clustered
 * unit rows): 2,000 points take 5.0 s with 64 dimensions (the fashion-mnist preset's features: graph
 * 1.1 s, layout 3.9 s), 5.6 s with 512 (ResNet-18: 1.8 + 3.8 s), 8.5 s with 2,048 (ResNet-50: 4.3 + 4.0 s);
 * 1,000 points of 64 take 2.5 s. The graph is the one stretch that holds the JS thread (1-4 s); the
 * layout yields every EPOCHS_PER_YIELD epochs (about 80 ms).
 */
export const UMAP_MAX_POINTS = 2000;
/** Fewer points than this make no neighbourhood graph worth drawing. */
export const UMAP_MIN_POINTS = 10;

export interface UmapOptions {
  /** Seeds every random choice (the neighbour search's trees, the starting layout, negative samples; default 1). */
  seed?: number;
  /** The neighbourhood size (default 15, umap-learn's; at most n - 1). */
  neighbours?: number;
  /** How tightly points may pack in the layout (default 0.1, umap-learn's). */
  minDist?: number;
  /** Checked between layout epochs: an abort stops the layout with an AbortError. */
  signal?: AbortSignal | undefined;
}

export interface UmapResult {
  /** The rows laid out in 2-D: [n, 2] row-major. */
  projections: Float64Array;
  neighbours: number;
  epochs: number;
  seconds: { graph: number; layout: number };
}

/** Layout epochs run between two yields to the event loop (each is a few ms at 2,000 points). */
const EPOCHS_PER_YIELD = 10;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A 2-D UMAP layout of `data` ([n, d] row-major), Euclidean distances (on unit rows, a monotone function of the cosine). */
export async function umap(data: ArrayLike<number>, n: number, d: number, options: UmapOptions = {}): Promise<UmapResult> {
  if (!Number.isInteger(n) || !Number.isInteger(d) || n < UMAP_MIN_POINTS || d < 1)
    throw new RangeError(`umap needs n >= ${UMAP_MIN_POINTS} rows and d >= 1 columns, got n=${n}, d=${d}`);
  if (data.length !== n * d) throw new RangeError(`data holds ${data.length} values, not n * d = ${n} * ${d}`);
  const random = new Random(options.seed ?? 1);
  const neighbours = Math.min(options.neighbours ?? 15, n - 1);
  const model = new UMAP({
    nComponents: 2,
    nNeighbors: neighbours,
    minDist: options.minDist ?? 0.1,
    // umap-js draws indices as floor(random() * n): it needs [0, 1), which uniform gives (next() is (0, 1]).
    random: () => random.uniform(0, 1),
  });
  const rows = Array.from({ length: n }, (_, i) => Array.from({ length: d }, (_, k) => data[i * d + k]!));
  options.signal?.throwIfAborted();
  const started = performance.now();
  const epochs = model.initializeFit(rows);
  const graphDone = performance.now();
  for (let epoch = 0; epoch < epochs;) {
    if (epoch % EPOCHS_PER_YIELD === 0) {
      await nextTurn();
      options.signal?.throwIfAborted();
    }
    epoch = model.step();
  }
  const layout = model.getEmbedding();
  const projections = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    projections[2 * i] = layout[i]![0]!;
    projections[2 * i + 1] = layout[i]![1]!;
  }
  return {
    projections,
    neighbours,
    epochs,
    seconds: { graph: (graphDone - started) / 1000, layout: (performance.now() - graphDone) / 1000 },
  };
}

/** `count` indices spread evenly over [0, n) (all of them when count >= n), in order. */
export function evenlySpread(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor((i * n) / count));
}
