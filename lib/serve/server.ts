// Embeddings over HTTP, on node:http: POST /v1/embeddings (a JSON body of base64 images, or the raw
// bytes of one image; float32 vectors back as JSON or as a binary body), GET /healthz and GET /metrics
// (Prometheus text). Requests are batched across clients (batcher.ts), every request is bounded (body
// size, images per request, pixels per image) and so is the number admitted at once: past --max-queue a
// request gets 503 with the reason at once, so no queue grows without bound. close() is graceful: it
// stops accepting, answers what was admitted, then resolves. The caller owns the Encoder and disposes it
// after close(). Nothing here imports training code: a service links only the Encoder.
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { EncoderError, type Embeddings, type Encoder } from '../encode/encoder.js';
import { EmbeddingBatcher } from './batcher.js';
import { decodeImages } from './images.js';
import { ServeMetrics } from './prometheus-metrics.js';
import { bodyKind, checkDeclaredLength, ClientGoneError, HttpError, readBody, requestImages, wantsBinary } from './request.js';

export const embeddingServerOptionsSchema = z
  .object({
    /** 0: any free port (read it back from `port` or `url`). */
    port: z.number().int().min(0).max(65535).default(0),
    /** The address to listen on; 127.0.0.1 keeps the server off the network until you choose otherwise. */
    host: z.string().min(1).default('127.0.0.1'),
    /** The most images in one forward pass, and in one request (default: the Encoder's maxBatch). */
    maxBatch: z.number().int().positive().optional(),
    /** How long the first request of a batch may wait for others to join it. */
    maxDelayMs: z.number().min(0).max(60_000).default(2),
    /** The most embedding requests admitted at once (reading, decoding, waiting or embedding); more get 503. */
    maxQueue: z.number().int().positive().default(256),
    /** The largest request body, in bytes; larger ones get 413. */
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(16 * 1024 * 1024),
    /** The most pixels an image's header may declare (width x height); larger ones get 413. */
    maxImagePixels: z
      .number()
      .int()
      .positive()
      .default(4096 * 4096),
    /** The longest a client may take to send a whole request; slower ones are cut off (408). */
    requestTimeoutMs: z.number().int().positive().default(30_000),
  })
  .strict();

export type EmbeddingServerSettings = z.input<typeof embeddingServerOptionsSchema>;

/** The part of the Encoder the server uses. */
export type ServingEncoder = Pick<Encoder, 'dim' | 'channels' | 'decodeSize' | 'maxBatch' | 'embed'>;

export interface EmbeddingServerOptions extends EmbeddingServerSettings {
  /** A loaded Encoder; the server does not dispose it (dispose it after close()). */
  encoder: ServingEncoder;
  /** Told of every failure answered with 500 (a bug or a broken encoder, not a client's mistake), for the operator's log. */
  onInternalError?: (error: unknown) => void;
}

export interface EmbeddingServer {
  /** e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly metrics: ServeMetrics;
  /** Embedding requests admitted and not yet answered. */
  readonly inFlight: number;
  /**
   * Stops accepting connections, answers every request already admitted (later ones on open connections
   * get 503), then resolves. After timeoutMs (default 30 s) connections still open are cut. A later
   * call while closing returns the same promise, with the cut brought forward to its timeoutMs if sooner.
   */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

type Settings = z.output<typeof embeddingServerOptionsSchema> & { maxBatch: number };

/** What every request handler shares. */
interface Service {
  encoder: ServingEncoder;
  settings: Settings;
  batcher: EmbeddingBatcher;
  metrics: ServeMetrics;
  inFlight: number;
  draining: boolean;
  onInternalError: ((error: unknown) => void) | undefined;
}

const ROUTES: Record<
  string,
  { methods: readonly string[]; handle: (service: Service, request: IncomingMessage, response: ServerResponse) => Promise<void> | void }
> = {
  '/v1/embeddings': { methods: ['POST'], handle: embeddings },
  '/healthz': { methods: ['GET', 'HEAD'], handle: health },
  '/metrics': { methods: ['GET', 'HEAD'], handle: metricsPage },
};

function send(
  response: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Readonly<Record<string, string>> = {},
): void {
  response.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  response.end(body);
}

const sendJson = (response: ServerResponse, status: number, value: unknown, headers: Readonly<Record<string, string>> = {}) =>
  send(response, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`, headers);

function health(service: Service, _request: IncomingMessage, response: ServerResponse): void {
  const state = { dim: service.encoder.dim, inFlight: service.inFlight, queuedImages: service.batcher.queuedImages };
  if (service.draining) sendJson(response, 503, { status: 'draining', ...state });
  else sendJson(response, 200, { status: 'ok', ...state });
}

function metricsPage(service: Service, _request: IncomingMessage, response: ServerResponse): void {
  send(response, 200, 'text/plain; version=0.0.4; charset=utf-8', service.metrics.render());
}

/** Admits a request or says why not: the server is shutting down, or --max-queue requests are already in. */
function admit(service: Service): void {
  if (service.draining)
    throw new HttpError(503, 'the server is shutting down; send the request to another instance or retry once it is back', {
      'Retry-After': '1',
    });
  const { maxQueue } = service.settings;
  if (service.inFlight >= maxQueue) {
    throw new HttpError(
      503,
      `the queue is full: ${maxQueue} requests are already being embedded or waiting (--max-queue ${maxQueue}); retry after a moment, or raise --max-queue`,
      {
        'Retry-After': '1',
      },
    );
  }
}

/** The embeddings as JSON {dim, count, embeddings: number[][]}, or as float32 little-endian bytes [count, dim]. */
function sendEmbeddings(response: ServerResponse, { data, shape: [count, dim] }: Embeddings, binary: boolean): void {
  if (binary) {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    send(response, 200, 'application/octet-stream', bytes, {
      'X-Embedding-Count': String(count),
      'X-Embedding-Dim': String(dim),
      'X-Embedding-Dtype': 'float32-le',
    });
    return;
  }
  const embeddings = Array.from({ length: count }, (_, i) => Array.from(data.subarray(i * dim, (i + 1) * dim)));
  sendJson(response, 200, { dim, count, embeddings });
}

async function embeddings(service: Service, request: IncomingMessage, response: ServerResponse): Promise<void> {
  admit(service);
  const started = performance.now();
  service.inFlight++;
  try {
    const { settings, encoder } = service;
    const kind = bodyKind(request.headers['content-type']);
    checkDeclaredLength(request, settings.maxBodyBytes);
    // The client waits for this before sending the body: a refusal above cost it no upload.
    if (request.headers.expect?.toLowerCase() === '100-continue') response.writeContinue();
    const images = requestImages(kind, await readBody(request, settings.maxBodyBytes), settings.maxBatch);
    const pixels = await decodeImages(images, { side: encoder.decodeSize, channels: encoder.channels, maxPixels: settings.maxImagePixels });
    const result = await service.batcher.embed(pixels, images.length);
    // Closing began while this request waited: its connection takes no further requests.
    if (service.draining) response.setHeader('Connection', 'close');
    sendEmbeddings(response, result, wantsBinary(request.headers.accept));
    service.metrics.images.inc({}, images.length);
    service.metrics.latency.observe((performance.now() - started) / 1000);
  } finally {
    service.inFlight--;
  }
}

/** The status and message a failure is answered with; null when the client has gone. */
function failureResponse(error: unknown): HttpError | null {
  if (error instanceof HttpError) return error;
  if (error instanceof ClientGoneError) return null;
  if (error instanceof EncoderError) return new HttpError(503, `the encoder is unavailable: ${error.message}`);
  // The details (paths, native messages) go to the operator's log through onInternalError, not to clients.
  return new HttpError(
    500,
    'internal error while embedding; the server log has the details: report them with the request that caused this',
  );
}

function sendFailure(service: Service, request: IncomingMessage, response: ServerResponse, error: unknown): void {
  const failure = failureResponse(error);
  if (failure?.status === 500) service.onInternalError?.(error);
  if (failure === null || response.headersSent || response.destroyed) {
    response.destroy();
    return;
  }
  // A body left unread would be parsed as the next request on this connection: close it instead.
  const close = !request.complete || service.draining ? { Connection: 'close' } : {};
  sendJson(response, failure.status, { error: failure.message }, { ...failure.headers, ...close });
}

/** The path label of the request counter: a route, or "other", so that scanners cannot grow the series without bound. */
const pathLabel = (path: string) => (path in ROUTES ? path : 'other');

function route(service: Service, request: IncomingMessage, response: ServerResponse): Promise<void> | void {
  const path = (request.url ?? '/').split('?')[0]!;
  response.once('finish', () => service.metrics.requests.inc({ path: pathLabel(path), code: String(response.statusCode) }));
  if (service.draining) response.setHeader('Connection', 'close');
  const target = ROUTES[path];
  if (target === undefined)
    throw new HttpError(404, `no such endpoint ${path}; the endpoints are POST /v1/embeddings, GET /healthz and GET /metrics`);
  if (!target.methods.includes(request.method ?? '')) {
    throw new HttpError(405, `${path} takes ${target.methods.join(' or ')}, not ${request.method}`, { Allow: target.methods.join(', ') });
  }
  return target.handle(service, request, response);
}

function handler(service: Service) {
  return (request: IncomingMessage, response: ServerResponse) => {
    Promise.resolve()
      .then(() => route(service, request, response))
      .catch((error: unknown) => sendFailure(service, request, response, error));
  };
}

function settingsFor(encoder: ServingEncoder, options: EmbeddingServerSettings): Settings {
  const parsed = embeddingServerOptionsSchema.safeParse(options, { reportInput: true });
  if (!parsed.success) throw validationError(parsed.error, 'options');
  return { ...parsed.data, maxBatch: parsed.data.maxBatch ?? encoder.maxBatch };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') reject(new Error(`port ${port} on ${host} is in use; choose another --port, or stop what holds it`));
      else if (error.code === 'EADDRNOTAVAIL')
        reject(
          new Error(
            `${host} is not an address of this machine; choose another --host (127.0.0.1 for this machine only, 0.0.0.0 for every interface)`,
          ),
        );
      else reject(error);
    });
    server.listen(port, host, () => resolve());
  });
}

function closer(server: Server, service: Service): EmbeddingServer['close'] {
  let closing: Promise<void> | undefined;
  let cut: NodeJS.Timeout | undefined;
  let cutAt = Infinity;
  const cutBy = (timeoutMs: number) => {
    if (performance.now() + timeoutMs >= cutAt) return;
    clearTimeout(cut);
    cutAt = performance.now() + timeoutMs;
    cut = setTimeout(() => server.closeAllConnections(), timeoutMs);
  };
  return ({ timeoutMs = 30_000 } = {}) => {
    cutBy(timeoutMs);
    closing ??= (async () => {
      service.draining = true;
      // Requests waiting for others to join their batch would wait out --max-delay-ms for nobody.
      service.batcher.flush();
      const closed = new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      server.closeIdleConnections();
      try {
        await closed;
      } finally {
        clearTimeout(cut);
      }
      await service.batcher.idle();
    })();
    return closing;
  };
}

/** Starts the server; resolves once it listens. */
export async function startEmbeddingServer({ encoder, onInternalError, ...options }: EmbeddingServerOptions): Promise<EmbeddingServer> {
  const settings = settingsFor(encoder, options);
  const batcher = new EmbeddingBatcher(encoder, {
    maxBatch: settings.maxBatch,
    maxDelayMs: settings.maxDelayMs,
    imageShape: [encoder.decodeSize, encoder.decodeSize, encoder.channels],
    onBatch: (images) => metrics.batchSize.observe(images),
  });
  const metrics = new ServeMetrics(settings.maxBatch, { inFlight: () => service.inFlight, queuedImages: () => batcher.queuedImages });
  const service: Service = { encoder, settings, batcher, metrics, inFlight: 0, draining: false, onInternalError };
  const server = http.createServer({
    requestTimeout: settings.requestTimeoutMs,
    headersTimeout: Math.min(settings.requestTimeoutMs, 60_000),
  });
  const handle = handler(service);
  server.on('request', handle);
  // Without this listener Node answers 100 Continue itself; with it, admission and size are checked first.
  server.on('checkContinue', handle);
  await listen(server, settings.port, settings.host);
  const { port } = server.address() as { port: number };
  const hostInUrl = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  return {
    url: `http://${hostInUrl}:${port}`,
    host: settings.host,
    port,
    metrics,
    get inFlight() {
      return service.inFlight;
    },
    close: closer(server, service),
  };
}
