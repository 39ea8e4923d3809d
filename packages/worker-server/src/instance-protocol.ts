import type { DataEndpoint, SerializedError, ShippedCode } from '@mapscale/protocol';
import type { WorkerServerTlsOptions } from './options.js';

/**
 * Shared between an instance thread and the daemon's main thread, written by the thread as it
 * works: which batch and which job of it is running, and that batch's time limit. The main thread
 * reads it to time jobs out (no progress for too long) and to name the job an instance died on, at
 * no per-job message cost.
 */
export const PROGRESS = Object.freeze({
  /** Batch id being run, or 0 when idle. */
  batch: 0,
  /** Index within that batch of the job being run. */
  jobOffset: 1,
  /** Bumped once per job started: a watchdog that sees it unchanged knows the job is still running. */
  jobsStarted: 2,
  /** The running batch's time limit per job in ms, or 0 for none. Written before `batch`. */
  limitMs: 3,
  /**
   * 1 while the main thread's watchdog samples this instance. A thread starting a timed batch
   * sets it from 0 to 1 and then asks for a watchdog (`watch`), so one is always running while a
   * time limit is in play, whichever channel the batch came through.
   */
  watching: 4,
  /**
   * Cancels published by the main thread (each batch id written to the ring, then this bumped;
   * a halt bumps it too). The thread compares it with what it has read before every job and
   * every batch: one read, and a cancel reaches it even while a synchronous job holds its
   * event loop, so it cannot read the message that also carries the cancel.
   */
  cancels: 5,
  /** 1 once this instance's session is over: no batch runs any more, queued or arriving. */
  halted: 6,
  /** First of CANCEL_RING words: the last cancelled batch ids, at `count % CANCEL_RING`. */
  cancelRing: 7,
  length: 7 + 64,
});

/**
 * Slots of the cancel ring. An id overwritten before the thread read it is not lost: the cancel
 * also travels as a message, read once the thread's event loop is free; the ring only makes it early.
 */
export const CANCEL_RING = 64;

/** Main thread: publishes that `batch` is cancelled (it is the ring's only writer). */
export function publishCancel(progress: Int32Array<ArrayBufferLike>, batch: number): void {
  const count = Atomics.load(progress, PROGRESS.cancels);
  Atomics.store(progress, PROGRESS.cancelRing + (count & (CANCEL_RING - 1)), batch);
  Atomics.store(progress, PROGRESS.cancels, (count + 1) | 0);
}

/** Main thread: no batch of this instance is to run any more (its session is over). */
export function publishHalt(progress: Int32Array<ArrayBufferLike>): void {
  Atomics.store(progress, PROGRESS.halted, 1);
  Atomics.add(progress, PROGRESS.cancels, 1);
}

/**
 * Thread: calls `cancelled` with each batch id published since `seen` (the newest CANCEL_RING of
 * them, if more), and returns the new count to remember. Counts wrap as int32; the difference stays right.
 */
export function readCancels(progress: Int32Array<ArrayBufferLike>, seen: number, cancelled: (batch: number) => void): number {
  const count = Atomics.load(progress, PROGRESS.cancels);
  const fresh = Math.min((count - seen) | 0, CANCEL_RING);
  for (let i = fresh; i > 0; i--) {
    const batch = Atomics.load(progress, PROGRESS.cancelRing + ((count - i) & (CANCEL_RING - 1)));
    // (A halt bumps the count without writing a slot: what it finds there is an older id, or 0, no batch's.)
    if (batch !== 0) cancelled(batch);
  }
  return count;
}

/** Counters the thread bumps per results part (BigInt64Array over a SharedArrayBuffer): the daemon's status reads them. */
export const COUNTERS = Object.freeze({ jobsDone: 0, jobErrors: 1, length: 2 });

/** How an instance thread offers a data connection of its own (see DataListener). */
export interface DataConfig {
  slot: number;
  /** Address to listen on: the daemon's own, so the coordinator reaches it where it reached the daemon. */
  host: string;
  /** Ports to listen on (inclusive), for firewalls; undefined: any free port. */
  ports?: [number, number];
  tls?: WorkerServerTlsOptions;
  handshakeTimeoutMs: number;
  /** Largest frame accepted once attached. */
  maxFrameBytes: number;
  /** Results frames are fitted to this (the smaller of both sides' limits). */
  resultsFrameLimit: number;
  /** The coordinator wants what user code prints (setup's `forwardOutput`). */
  forwardOutput: boolean;
}

/** Daemon main thread → instance thread. */
export type ToInstance =
  | { kind: 'init'; code: ShippedCode; flushMs: number; progress: SharedArrayBuffer; counters: SharedArrayBuffer; bundlePath?: string; data?: DataConfig }
  | { kind: 'batch'; batch: number; payload: Uint8Array; timeoutMs?: number }
  | { kind: 'cancel'; batches: number[] }
  | { kind: 'cleanup' };

/** Instance thread → daemon main thread. */
export type FromInstance =
  | { kind: 'ready'; data?: DataEndpoint }
  | { kind: 'setup-failed'; error: SerializedError }
  | { kind: 'results'; batch: number; offset: number; count: number; payload: Uint8Array; errors?: [number, SerializedError][]; busyMs: number; final: boolean }
  /** The thread reached the cleanup request (no job runs any more) and calls cleanup() now. */
  | { kind: 'cleanup-started' }
  | { kind: 'cleaned'; error?: SerializedError }
  /** What user code printed; `forwarded`: already sent to the coordinator on the data connection (the daemon only logs it). */
  | { kind: 'output'; stream: 'stdout' | 'stderr'; text: string; phase: 'setup' | 'call' | 'cleanup'; batch?: number; jobOffset?: number; forwarded: boolean }
  /** A timed batch started while no watchdog ran. */
  | { kind: 'watch' }
  /** Events of the data connection, for the daemon's log and the coordinator. */
  | { kind: 'data-attached'; peer: string }
  | { kind: 'data-refused'; peer: string; code: string; reason: string }
  /** The attached data connection closed: its batches were dropped; `data` is the fresh endpoint offered instead, if any. */
  | { kind: 'data-closed'; code?: string; reason: string; data?: DataEndpoint };
