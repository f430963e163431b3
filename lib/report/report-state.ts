// What a report.html shows the state of: the finished run (the whole report, `clamp-native report` or
// the end of `clamp-native train`), or a run still under way, whose page training rewrites at each
// epoch's end. A page of a run under way says so at its top and reloads itself, so that a browser left
// open on it follows the run; the finished report does not reload.
import { escapeHtml } from './html.js';

/** Where a run under way stands when its page is written. */
export interface RunStatus {
  /**
   * `training`: between epochs; `evaluating`: the last step taken, the final evaluation running;
   * `trained`: training and evaluation done, the full report still to draw; `stopped`: Ctrl-C or
   * SIGTERM, a checkpoint written (no reload: nothing more will happen until it is resumed).
   */
  phase: 'training' | 'evaluating' | 'trained' | 'stopped';
  /** Whole epochs trained. */
  epochsDone: number;
  epochs: number;
  /** Steps taken. */
  step: number;
}

/** How often a page of a run under way reloads itself. */
export const REFRESH_SECONDS = 30;

/** The page's state meta tag (`final` for the finished report) and its reload interval, if any. */
export function pageState(status: RunStatus | null): { state: string; refreshSeconds?: number } {
  if (!status) return { state: 'final' };
  return status.phase === 'stopped' ? { state: status.phase } : { state: status.phase, refreshSeconds: REFRESH_SECONDS };
}

/** The banner at the top of a page of a run under way ('' for the finished report). */
export function statusBanner(status: RunStatus | null, runDir: string): string {
  if (!status) return '';
  const { epochsDone, epochs, step } = status;
  const reloads = `This page reloads every ${REFRESH_SECONDS} s.`;
  const later = 'the embedding maps and augmented views come with the full report at the end';
  const text = {
    training: `Training: epoch ${epochsDone} of ${epochs} done (step ${step}). The page is rewritten at each epoch's end; ${later}. ${reloads}`,
    evaluating: `Training finished (${epochs} epochs, step ${step}); the final evaluation is running. ${reloads}`,
    trained:
      `Training and evaluation finished; \`clamp-native train\` replaces this page with the full report in a moment ` +
      `(a run trained from the library: clamp-native report ${runDir}). ${reloads}`,
    stopped:
      `Stopped after ${epochsDone} of ${epochs} epochs (step ${step}), checkpoint written. ` +
      `Continue with: clamp-native train --resume ${runDir}; the full report of the run as it stands: clamp-native report ${runDir}.`,
  }[status.phase];
  return `<p class="status ${status.phase}">${escapeHtml(text)}</p>`;
}
