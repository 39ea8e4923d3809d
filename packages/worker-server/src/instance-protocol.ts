import type { SerializedError, ShippedCode } from '@mapscale/protocol';

/**
 * Shared between an instance thread and the daemon's main thread, written by the thread as it
 * works: which batch and which job of it is running. The main thread reads it to time jobs out
 * (no progress for too long) and to name the job an instance died on, at no per-job message cost.
 */
export const PROGRESS = Object.freeze({
  /** Batch id being run, or 0 when idle. */
  batch: 0,
  /** Index within that batch of the job being run. */
  jobOffset: 1,
  /** Bumped once per job started: a watchdog that sees it unchanged knows the job is still running. */
  jobsStarted: 2,
  length: 3,
});

/** Daemon main thread → instance thread. */
export type ToInstance =
  | { kind: 'init'; code: ShippedCode; flushMs: number; progress: SharedArrayBuffer; bundlePath?: string }
  | { kind: 'batch'; batch: number; payload: Uint8Array }
  | { kind: 'cancel'; batches: number[] | 'all' }
  | { kind: 'cleanup' };

/** Instance thread → daemon main thread. */
export type FromInstance =
  | { kind: 'ready' }
  | { kind: 'setup-failed'; error: SerializedError }
  | { kind: 'results'; batch: number; offset: number; count: number; payload: Uint8Array; errors?: [number, SerializedError][]; busyMs: number; final: boolean }
  | { kind: 'cleaned'; error?: SerializedError }
  | { kind: 'output'; stream: 'stdout' | 'stderr'; text: string; phase: 'setup' | 'call' | 'cleanup'; batch?: number; jobOffset?: number };
