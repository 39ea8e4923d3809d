import type { SerializedError, ShippedCode } from '@mapscale/protocol';

/** Daemon main thread → instance thread. */
export type ToInstance =
  | { kind: 'init'; code: ShippedCode; flushMs: number }
  | { kind: 'batch'; batch: number; payload: Uint8Array }
  | { kind: 'cleanup' };

/** Instance thread → daemon main thread. */
export type FromInstance =
  | { kind: 'ready' }
  | { kind: 'setup-failed'; error: SerializedError }
  | { kind: 'results'; batch: number; offset: number; payload: Uint8Array; errors?: [number, SerializedError][]; busyMs: number; final: boolean }
  | { kind: 'cleaned'; error?: SerializedError };
