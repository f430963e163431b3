// How figures and progress read wherever clamp-native prints them (the CLI's lines, report.html), in one place.
import type { EvaluationTimings, LinearProbeSummary } from './eval/evaluate.js';

/** 0.8312 -> "83.12%"; "n/a" for a missing or non-finite value. */
export function percent(fraction: number | null | undefined): string {
  return fraction === null || fraction === undefined || !Number.isFinite(fraction) ? 'n/a' : `${(100 * fraction).toFixed(2)}%`;
}

/** A share without trailing zeros: 0.01 -> "1%", 0.025 -> "2.5%". */
export function share(fraction: number): string {
  return `${Number((100 * fraction).toPrecision(4))}%`;
}

/** 1722 -> "28m42s", 45 -> "45s", 4000 -> "1h06m"; "?" when unknown. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
}

/** When an evaluation ran, from its 0-based epoch (-1: before training): "before training", "after epoch 3". */
export function evaluatedWhen(epoch: number): string {
  return epoch < 0 ? 'before training' : `after epoch ${epoch + 1}`;
}

/** "; linear probe top-1 …, top-5 … (lr …)[; with crops and flips (N epochs) top-1 …, top-5 …]", or "" when the probe did not run. */
export function linearProbeClause(probe: LinearProbeSummary | null | undefined): string {
  if (!probe) return '';
  const augmented = probe.augmented
    ? `; probe with crops and flips (${probe.augmented.epochs} epochs) top-1 ${percent(probe.augmented.top1)}, top-5 ${percent(probe.augmented.top5)}`
    : '';
  return `; linear probe top-1 ${percent(probe.top1)}, top-5 ${percent(probe.top5)} (lr ${probe.learningRate})${augmented}`;
}

/** Where an evaluation's time went: "took 1m04s: features 21s (training split) + 4s (test), kNN 3s, linear probe 34s, diagnostics 1s". */
export function evaluationTimeline(seconds: EvaluationTimings): string {
  const parts = [
    `features ${duration(seconds.trainFeatures)} (training split) + ${duration(seconds.testFeatures)} (test)`,
    `kNN ${duration(seconds.knn)}`,
    ...(seconds.linearProbe === null ? [] : [`linear probe ${duration(seconds.linearProbe)}`]),
    ...(seconds.augmentedProbe === null ? [] : [`augmented probe ${duration(seconds.augmentedProbe)}`]),
    `diagnostics ${duration(seconds.diagnostics)}`,
  ];
  return `took ${duration(seconds.total)}: ${parts.join(', ')}`;
}

/** Where progress is drawn: process.stderr, or anything with its write() and isTTY. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

export interface ProgressLine {
  /** `done` of `total` units are done; `text` says so. */
  update(text: string, done: number, total: number): void;
  /** The closing line, always written. */
  end(text: string): void;
}

/**
 * Progress of one long step, as `train` draws its own: on a terminal one line redrawn in place, at most
 * every 100 ms; anywhere else (a log file, a pipe, CI) never a carriage return, only a plain line as the
 * work passes each tenth, so that a log keeps a dozen readable lines instead of one line of redraws.
 */
export function progressLine(stream: ProgressStream): ProgressLine {
  const tty = stream.isTTY === true;
  let lastDraw = -Infinity;
  let drawn = false;
  let tenthsWritten = 0;
  return {
    update(text, done, total) {
      if (tty) {
        const now = performance.now();
        if (now - lastDraw < 100) return;
        lastDraw = now;
        drawn = true;
        stream.write(`\r\x1b[K${text}`);
        return;
      }
      const tenths = total > 0 ? Math.floor((10 * done) / total) : 0;
      // The last tenth is the closing line's to say.
      if (tenths > tenthsWritten && done < total) {
        tenthsWritten = tenths;
        stream.write(`${text}\n`);
      }
    },
    end(text) {
      stream.write(`${tty && drawn ? '\r\x1b[K' : ''}${text}\n`);
    },
  };
}
