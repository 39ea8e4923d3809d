import type { RunView } from '../map-run.js';

/** `map(jobs, { onProgress })` is called with this, at most every PROGRESS_INTERVAL_MS and once at the end. */
export interface MapProgress {
  done: number;
  /** Undefined while a streamed input is still being read. */
  total: number | undefined;
  failed: number;
  jobsPerSecond: number;
  elapsedMs: number;
}

const PROGRESS_INTERVAL_MS = 100;

/** Calls the user's onProgress, throttled, and once more at the end. */
export class ProgressReporter {
  readonly #callback: (progress: MapProgress) => void;
  readonly #started = performance.now();
  #last = 0;
  failed = 0;

  constructor(callback: (progress: MapProgress) => void) {
    this.#callback = callback;
  }

  report(run: RunView, final = false): void {
    const now = performance.now();
    if (!final && now - this.#last < PROGRESS_INTERVAL_MS) return;
    this.#last = now;
    const elapsedMs = now - this.#started;
    try {
      this.#callback({
        done: run.done, total: run.exhausted ? run.fetched : undefined, failed: this.failed,
        jobsPerSecond: elapsedMs > 0 ? (run.done * 1000) / elapsedMs : 0, elapsedMs,
      });
    } catch {
      // A throwing progress callback must not break the map it reports on.
    }
  }
}
