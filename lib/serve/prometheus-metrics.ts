// The embedding server's metrics in Prometheus's text exposition format (version 0.0.4). Written here
// rather than taken from prom-client: three metric kinds, a few dozen lines, and no dependency that a
// library user must then audit and keep up to date.

/** Label values escaped as the exposition format asks: backslash, double quote and newline. */
const escapeLabel = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function labelText(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

/** Prometheus prints +Inf, -Inf and NaN by name and every other number as a float. */
const numberText = (value: number) =>
  value === Infinity ? '+Inf' : value === -Infinity ? '-Inf' : Number.isNaN(value) ? 'NaN' : String(value);

/** A monotonic counter with labels (one series per distinct label set). */
export class Counter {
  private readonly series = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Record<string, string> = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.series.get(key);
    if (entry) entry.value += by;
    else this.series.set(key, { labels, value: by });
  }

  /** The value of one series; 0 for a label set never counted. */
  value(labels: Record<string, string> = {}): number {
    return this.series.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.series.values()) lines.push(`${this.name}${labelText(labels)} ${numberText(value)}`);
    return lines.join('\n');
  }
}

/** A gauge read when the metrics are scraped, so it can never drift from the state it reports. */
export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number,
  ) {}

  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${numberText(this.read())}`].join('\n');
  }
}

/** A histogram without labels: cumulative buckets at the given upper bounds, then +Inf, _sum and _count. */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
  ) {
    if (!bounds.every((bound, i) => Number.isFinite(bound) && (i === 0 || bound > bounds[i - 1]!))) {
      throw new RangeError(`histogram ${name}: bucket bounds must be finite and increasing, got [${bounds.join(', ')}]`);
    }
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number): void {
    const bucket = this.bounds.findIndex((bound) => value <= bound);
    if (bucket >= 0) this.counts[bucket]!++;
    this.sum += value;
    this.count++;
  }

  /** Observations so far, and their sum. */
  get totals(): { count: number; sum: number } {
    return { count: this.count, sum: this.sum };
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    let cumulative = 0;
    this.bounds.forEach((bound, i) => {
      cumulative += this.counts[i]!;
      lines.push(`${this.name}_bucket{le="${numberText(bound)}"} ${cumulative}`);
    });
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${numberText(this.sum)}`,
      `${this.name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

/** Powers of two up to and including maxBatch: every batch size falls in a bucket of its own order. */
export function batchSizeBounds(maxBatch: number): number[] {
  const bounds: number[] = [];
  for (let bound = 1; bound < maxBatch; bound *= 2) bounds.push(bound);
  bounds.push(maxBatch);
  return bounds;
}

/** Request latency buckets in seconds, 1 ms to 10 s: a 2-core CPU answers in milliseconds, a loaded one in seconds. */
export const LATENCY_BOUNDS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export interface ServeMetricsState {
  /** Requests admitted to /v1/embeddings and not yet answered (reading, decoding, waiting or embedding). */
  inFlight: () => number;
  /** Images decoded and waiting for a forward pass. */
  queuedImages: () => number;
}

/** Everything /metrics reports about one server. */
export class ServeMetrics {
  readonly requests = new Counter('clamp_serve_requests_total', 'HTTP requests answered, by path and status code.');
  readonly images = new Counter('clamp_serve_images_total', 'Images embedded and returned.');
  readonly batchSize: Histogram;
  readonly latency = new Histogram(
    'clamp_serve_request_duration_seconds',
    'Time from the request arriving to its embeddings being sent, for successful POST /v1/embeddings requests.',
    LATENCY_BOUNDS_SECONDS,
  );
  private readonly gauges: Gauge[];

  constructor(maxBatch: number, state: ServeMetricsState) {
    this.batchSize = new Histogram('clamp_serve_batch_size', 'Images per forward pass of the encoder.', batchSizeBounds(maxBatch));
    this.gauges = [
      new Gauge(
        'clamp_serve_requests_in_flight',
        'Embedding requests admitted and not yet answered (bounded by --max-queue).',
        state.inFlight,
      ),
      new Gauge('clamp_serve_queued_images', 'Decoded images waiting for a forward pass.', state.queuedImages),
    ];
  }

  render(): string {
    return `${[this.requests, this.images, this.batchSize, this.latency, ...this.gauges].map((metric) => metric.render()).join('\n')}\n`;
  }
}
