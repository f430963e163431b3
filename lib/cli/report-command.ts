// `clamp-native report`: a self-contained report.html (charts, per-class table, embedding map,
// augmented views) and report/*.png for a training run's folder, with --json for one line naming them.
import { parseArgs } from 'node:util';
import { buildReport, DEFAULT_MAP_IMAGES, REPORT_FILE, REPORT_FOLDER } from '../report/report.js';
import { UsageError, wholeNumberFlag } from './flags.js';

export const REPORT_USAGE = `clamp-native report RUN_DIR [options]
  RUN_DIR              a run folder (the --out of \`clamp-native train\`): config.json, metrics.jsonl, checkpoint
                       writes RUN_DIR/${REPORT_FILE} (self-contained, opens offline) and RUN_DIR/${REPORT_FOLDER}/*.png
  --map-images N       test images on the embedding map (default ${DEFAULT_MAP_IMAGES}; 0 leaves the map out)
  --json               print one JSON line with the written paths on stdout
`;

export async function runReport(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { 'map-images': { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    process.stdout.write(REPORT_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('report needs the run folder: clamp-native report RUN_DIR');
  if (positionals.length > 1) throw new UsageError(`report takes one run folder, got ${positionals.length}: ${positionals.join(' ')}`);
  const runDir = positionals[0]!;
  const mapImages = wholeNumberFlag('map-images', values['map-images']);
  const controller = new AbortController();
  const onInterrupt = () => {
    process.stderr.write('\nstopping the report...\n');
    controller.abort();
  };
  process.once('SIGINT', onInterrupt);
  const started = performance.now();
  process.stderr.write(`reporting on ${runDir}...\n`);
  try {
    const result = await buildReport(runDir, {
      ...(mapImages === undefined ? {} : { mapImages }),
      signal: controller.signal,
      onProgress: (message) => process.stderr.write(`  ${message}\n`),
    });
    const seconds = (performance.now() - started) / 1000;
    process.stderr.write(
      `wrote ${result.html} and ${result.pngs.length} PNG${result.pngs.length === 1 ? '' : 's'} in ${seconds.toFixed(1)} s\n`,
    );
    if (values.json) process.stdout.write(`${JSON.stringify({ ...result, seconds })}\n`);
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }
  return 0;
}
