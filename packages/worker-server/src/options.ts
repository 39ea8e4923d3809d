import { availableParallelism } from 'node:os';
import { DEFAULT_LIMITS } from '@mapscale/protocol';
import type { Logger } from 'pino';
import { WorkerServerConfigError } from './errors.js';

export interface WorkerServerOptions {
  /** Address to listen on. Loopback unless told otherwise. */
  host?: string;
  /** TCP port; 0 picks a free one. */
  port?: number;
  /** Worker instances (threads) each coordinator session gets. */
  workers?: number;
  /** Shared secret coordinators must prove they hold. Undefined: no authentication. */
  secret?: string;
  /** A connection that has not finished its handshake by then is dropped. */
  handshakeTimeoutMs?: number;
  /** Largest frame accepted after authentication. */
  maxFrameBytes?: number;
  /** An instance hands back finished results of a batch once they have waited this long. */
  resultFlushMs?: number;
  /** On SIGTERM/close: how long running jobs may take to finish before cleanup() is forced. */
  stopGraceMs?: number;
  /** pino logger; the daemon logs through child loggers of it. */
  logger?: Logger;
}

export type ResolvedWorkerServerOptions = Required<Omit<WorkerServerOptions, 'secret'>> & { secret: string | undefined };

export const DEFAULT_WORKER_SERVER_OPTIONS: Readonly<Omit<ResolvedWorkerServerOptions, 'logger'>> = Object.freeze({
  host: '127.0.0.1',
  port: 7100,
  workers: availableParallelism(),
  secret: undefined,
  handshakeTimeoutMs: 10_000,
  maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
  resultFlushMs: 5,
  stopGraceMs: 10_000,
});

function positiveInteger(name: string, value: number, min = 1): number {
  if (!Number.isInteger(value) || value < min) {
    throw new WorkerServerConfigError(`option "${name}" must be an integer ≥ ${min}, got ${value}`);
  }
  return value;
}

export function resolveWorkerServerOptions(options: WorkerServerOptions, logger: Logger): ResolvedWorkerServerOptions {
  const merged = { ...DEFAULT_WORKER_SERVER_OPTIONS, ...stripUndefined(options), logger };
  positiveInteger('port', merged.port, 0);
  if (merged.port > 65535) throw new WorkerServerConfigError(`option "port" must be ≤ 65535, got ${merged.port}`);
  positiveInteger('workers', merged.workers);
  positiveInteger('handshakeTimeoutMs', merged.handshakeTimeoutMs);
  positiveInteger('maxFrameBytes', merged.maxFrameBytes, 1024);
  if (!(merged.resultFlushMs >= 0)) throw new WorkerServerConfigError(`option "resultFlushMs" must be ≥ 0, got ${merged.resultFlushMs}`);
  if (merged.secret !== undefined && merged.secret.length === 0) {
    throw new WorkerServerConfigError('option "secret" is empty: give a non-empty secret, or none');
  }
  return merged;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
