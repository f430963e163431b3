// `clamp-native serve`: a trained encoder's embeddings over HTTP (lib/serve), for services that would
// rather call than link. Runs until SIGTERM or SIGINT, then stops accepting, answers the requests
// already admitted, disposes the Encoder and exits 0; a second signal cuts what is still running.
import { parseArgs } from 'node:util';
import { CHECKPOINT_FILE } from '../checkpoint/checkpoint.js';
import { Encoder, type EncoderLoadOptions } from '../encode/encoder.js';
import { startEmbeddingServer, type EmbeddingServer, type EmbeddingServerSettings } from '../serve/server.js';
import { numberFlag, UsageError, wholeNumberFlag } from './flags.js';

export const SERVE_USAGE = `clamp-native serve --checkpoint PATH [options]
  --checkpoint PATH    a checkpoint file, or a run folder holding ${CHECKPOINT_FILE}
  --port N             the port to listen on (default 8080; 0: any free port, printed at start)
  --host H             the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)
  --max-batch N        the most images per forward pass, and per request (default 64)
  --max-delay-ms X     how long a request may wait for others to share its forward pass (default 2)
  --max-queue N        the most embedding requests admitted at once; more get 503 (default 256)
  --max-body-mb X      the largest request body, in MiB; larger ones get 413 (default 16)
  --max-image-pixels N  the most pixels (width x height) an image may declare; larger ones get 413 (default 16777216)
  --shutdown-timeout-s X  on SIGTERM or SIGINT, how long admitted requests may take before their connections are cut (default 30)
  --device D           cpu (default), cuda or cuda:<index>
  --precision P        auto (bf16 on Ampere and newer GPUs, float32 elsewhere), bf16 or fp32
  --threads N          LibTorch threads
  Endpoints: POST /v1/embeddings (Content-Type application/json {"images": ["<base64>", ...]}, or
  image/png, image/jpeg, image/webp or application/octet-stream with one image's bytes; the vectors come
  back as JSON, or as float32 little-endian bytes with Accept: application/octet-stream), GET /healthz,
  GET /metrics (Prometheus text). SIGTERM or SIGINT: finish admitted requests, then exit 0.
`;

interface ServeOptions {
  checkpoint: string;
  encoder: EncoderLoadOptions;
  server: EmbeddingServerSettings;
  shutdownTimeoutMs: number;
}

/** The command line as Encoder and server options, every flag checked before the checkpoint is read. */
function serveOptions(values: Record<string, string | boolean | undefined>): ServeOptions {
  const flag = (name: string) => values[name] as string | undefined;
  const checkpoint = flag('checkpoint');
  if (checkpoint === undefined) throw new UsageError('serve needs --checkpoint (a checkpoint file or a training run folder)');
  if (flag('host') === '') throw new UsageError("--host must be an address, got ''");
  const port = wholeNumberFlag('port', flag('port'), 0) ?? 8080;
  if (port > 65535) throw new UsageError(`--port must be 0 to 65535, got '${flag('port')}'`);
  const maxBatch = wholeNumberFlag('max-batch', flag('max-batch'), 1) ?? 64;
  const threads = wholeNumberFlag('threads', flag('threads'), 1);
  const maxBodyMb = numberFlag('max-body-mb', flag('max-body-mb'), 0, true) ?? 16;
  const maxQueue = wholeNumberFlag('max-queue', flag('max-queue'), 1);
  const maxImagePixels = wholeNumberFlag('max-image-pixels', flag('max-image-pixels'), 1);
  const maxDelayMs = numberFlag('max-delay-ms', flag('max-delay-ms'), 0);
  if (maxDelayMs !== undefined && maxDelayMs > 60_000)
    throw new UsageError(`--max-delay-ms must be at most 60000, got '${flag('max-delay-ms')}'`);
  const shutdownTimeoutS = numberFlag('shutdown-timeout-s', flag('shutdown-timeout-s'), 0) ?? 30;
  return {
    checkpoint,
    encoder: {
      ...(flag('device') ? { device: flag('device') } : {}),
      ...(flag('precision') ? { precision: flag('precision') as EncoderLoadOptions['precision'] } : {}),
      ...(threads ? { threads } : {}),
      maxBatch,
    },
    server: {
      port,
      host: flag('host') ?? '127.0.0.1',
      maxBatch,
      maxBodyBytes: Math.max(1, Math.floor(maxBodyMb * 1024 * 1024)),
      ...(maxQueue === undefined ? {} : { maxQueue }),
      ...(maxImagePixels === undefined ? {} : { maxImagePixels }),
      ...(maxDelayMs === undefined ? {} : { maxDelayMs }),
    },
    shutdownTimeoutMs: shutdownTimeoutS * 1000,
  };
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** Calls `handler` on the first SIGTERM or SIGINT (the process no longer ends on them); returns the unsubscribe. */
function onceSignalled(handler: (signal: NodeJS.Signals) => void): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    unsubscribe();
    handler(signal);
  };
  const unsubscribe = () => {
    for (const name of SIGNALS) process.off(name, onSignal);
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  return unsubscribe;
}

/**
 * Waits for a signal, then closes the server gracefully. A second signal while requests finish cuts
 * them (the operator asked twice); the result says whether the shutdown was graceful.
 */
async function serveUntilSignalled(server: EmbeddingServer, shutdownTimeoutMs: number): Promise<boolean> {
  const signal = await new Promise<NodeJS.Signals>((resolve) => onceSignalled(resolve));
  process.stderr.write(
    `clamp-native serve: ${signal}: no longer accepting; finishing ${server.inFlight} admitted request(s) (send ${signal} again to cut them)\n`,
  );
  let cut = false;
  const stopListening = onceSignalled(() => {
    cut = true;
    void server.close({ timeoutMs: 0 });
  });
  try {
    await server.close({ timeoutMs: shutdownTimeoutMs });
  } finally {
    stopListening();
  }
  return !cut;
}

export async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      checkpoint: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'max-batch': { type: 'string' },
      'max-delay-ms': { type: 'string' },
      'max-queue': { type: 'string' },
      'max-body-mb': { type: 'string' },
      'max-image-pixels': { type: 'string' },
      'shutdown-timeout-s': { type: 'string' },
      device: { type: 'string' },
      precision: { type: 'string' },
      threads: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  const options = serveOptions(values);
  const encoder = await Encoder.load(options.checkpoint, options.encoder);
  try {
    const server = await startEmbeddingServer({
      encoder,
      ...options.server,
      onInternalError: (error) =>
        process.stderr.write(
          `clamp-native serve: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
        ),
    });
    const kind = `${encoder.decodeSize}x${encoder.decodeSize} ${encoder.channels === 1 ? 'greyscale' : 'RGB'}`;
    process.stderr.write(`clamp-native serve: ${options.checkpoint} (${kind} images, dim ${encoder.dim}) listening on ${server.url}\n`);
    const graceful = await serveUntilSignalled(server, options.shutdownTimeoutMs);
    process.stderr.write(
      graceful
        ? 'clamp-native serve: every admitted request answered; stopped\n'
        : 'clamp-native serve: stopped, cutting the requests still running\n',
    );
    return graceful ? 0 : 1;
  } finally {
    encoder.dispose();
  }
}
