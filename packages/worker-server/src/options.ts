import { BlockList, isIP } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
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
  /**
   * When a session ends without its coordinator waiting (SIGTERM, or a coordinator that vanished):
   * how long a job still running may take to finish; past it, the instance's thread is terminated.
   */
  stopGraceMs?: number;
  /**
   * A daemon process that is stopping (SIGTERM, SIGINT, or for a local daemon its app gone) exits at
   * most this long after `stopGraceMs`, whatever cleanup() is still running: a cleanup() that never
   * returns must not keep it alive. What it gave up on is logged (`stop-overdue`).
   */
  stopDeadlineMs?: number;
  /**
   * How long an instance's cleanup() may take before its thread is terminated, for sessions whose
   * coordinator vanished and on SIGTERM; a coordinator's shutdown asks for its own (`cleanupTimeoutMs`).
   */
  cleanupTimeoutMs?: number;
  /** Where work-function bundles are cached; bare imports they leave external resolve from here upwards. */
  cacheDir?: string;
  /** Bound of the bundle cache; least recently used bundles are evicted past it. */
  cacheMaxBytes?: number;
  /**
   * Listen on a non-loopback address without a secret. Off: the daemon refuses to start that way,
   * because anyone who can reach the port could run any code as this user. Logged loudly when on.
   */
  insecure?: boolean;
  /** Serve over TLS. Undefined: plain TCP. */
  tls?: WorkerServerTlsOptions;
  /** Connections open at once (any state); one over it is refused at once. */
  maxConnections?: number;
  /** Connections still in their handshake (TLS or MapScale) at once; one over it is refused at once. */
  maxUnauthenticated?: number;
  /**
   * Each instance thread offers the coordinator a data connection of its own (a fresh port on
   * `host`, opened for one connection with a one-off token), so jobs and results skip the main
   * thread. Off: everything travels through the daemon's one port (e.g. behind a firewall that
   * opens only that port; a coordinator that cannot reach a data port falls back to it anyway).
   */
  dataConnections?: boolean;
  /**
   * The ports data connections listen on, inclusive (e.g. [7101, 7164]: open them in the firewall with
   * the daemon port). Each instance of each session holds one only until its coordinator attaches.
   * Undefined: any free port. When none in the range is free, that instance is served through the daemon port.
   */
  dataPorts?: [number, number];
  /** pino logger; the daemon logs through child loggers of it. */
  logger?: Logger;
}

/** PEM text (the CLI reads it from files). */
export interface WorkerServerTlsOptions {
  /** The daemon's certificate (chain). */
  cert: string | Buffer;
  /** Its private key. */
  key: string | Buffer;
  /** CA certificate(s) for client certificates: when given, every coordinator must present one it signed (mutual TLS). */
  ca?: string | Buffer | (string | Buffer)[];
}

/**
 * How every TLS port of the daemon serves (its own, and each instance's data port): with a CA, a
 * coordinator without a certificate it signed never gets past the TLS handshake.
 */
export function tlsServerOptions(tls: WorkerServerTlsOptions, handshakeTimeoutMs: number): TlsOptions {
  return {
    cert: tls.cert, key: tls.key, ca: tls.ca,
    requestCert: tls.ca !== undefined,
    rejectUnauthorized: tls.ca !== undefined,
    minVersion: 'TLSv1.2',
    handshakeTimeout: handshakeTimeoutMs,
  };
}

export type ResolvedWorkerServerOptions = Required<Omit<WorkerServerOptions, 'secret' | 'tls' | 'dataPorts'>> & {
  secret: string | undefined;
  tls: WorkerServerTlsOptions | undefined;
  dataPorts: [number, number] | undefined;
};

export const DEFAULT_WORKER_SERVER_OPTIONS: Readonly<Omit<ResolvedWorkerServerOptions, 'logger'>> = Object.freeze({
  host: '127.0.0.1',
  port: 7100,
  workers: availableParallelism(),
  secret: undefined,
  handshakeTimeoutMs: 10_000,
  maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
  resultFlushMs: 5,
  stopGraceMs: 10_000,
  stopDeadlineMs: 10_000,
  cleanupTimeoutMs: 10_000,
  cacheDir: resolve('.mapscale-cache'),
  cacheMaxBytes: 256 * 1024 * 1024,
  insecure: false,
  tls: undefined,
  // Each connection that authenticates gets its own worker threads: a few hundred is plenty.
  maxConnections: 256,
  // Pre-auth buffering is at most one 16 KiB frame per connection: this bounds it to 1 MiB.
  maxUnauthenticated: 64,
  dataConnections: true,
  dataPorts: undefined,
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
  positiveInteger('stopGraceMs', merged.stopGraceMs, 0);
  positiveInteger('stopDeadlineMs', merged.stopDeadlineMs, 0);
  positiveInteger('cleanupTimeoutMs', merged.cleanupTimeoutMs);
  if (!(merged.resultFlushMs >= 0)) throw new WorkerServerConfigError(`option "resultFlushMs" must be ≥ 0, got ${merged.resultFlushMs}`);
  if (merged.secret !== undefined && merged.secret.length === 0) {
    throw new WorkerServerConfigError('option "secret" is empty: give a non-empty secret, or none');
  }
  positiveInteger('maxConnections', merged.maxConnections);
  positiveInteger('maxUnauthenticated', merged.maxUnauthenticated);
  if (merged.maxUnauthenticated > merged.maxConnections) {
    throw new WorkerServerConfigError(`option "maxUnauthenticated" (${merged.maxUnauthenticated}) must be ≤ "maxConnections" (${merged.maxConnections})`);
  }
  if (merged.dataPorts !== undefined) {
    const [low, high] = Array.isArray(merged.dataPorts) ? merged.dataPorts : [NaN, NaN];
    if (!Number.isInteger(low) || !Number.isInteger(high) || low! < 1 || high! > 65535 || low! > high!) {
      throw new WorkerServerConfigError(`option "dataPorts" must be [low, high] with 1 ≤ low ≤ high ≤ 65535, got ${JSON.stringify(merged.dataPorts)}`);
    }
  }
  if (typeof merged.dataConnections !== 'boolean') throw new WorkerServerConfigError(`option "dataConnections" must be a boolean, got ${String(merged.dataConnections)}`);
  if (typeof merged.insecure !== 'boolean') throw new WorkerServerConfigError(`option "insecure" must be a boolean, got ${String(merged.insecure)}`);
  if (typeof merged.host !== 'string' || merged.host.length === 0) throw new WorkerServerConfigError('option "host" must be a non-empty string');
  if (merged.tls !== undefined) checkTls(merged.tls);
  if (merged.secret === undefined && !merged.insecure && !isLoopbackHost(merged.host)) {
    throw new WorkerServerConfigError(
      `refusing to listen on ${merged.host} without a secret: anyone who can reach it could run any code as this user. ` +
      'Give a secret (--secret-file F, or env MAPSCALE_SECRET), listen on loopback (--host 127.0.0.1), ' +
      'or, on a network you trust entirely, pass --insecure. See SECURITY.md.');
  }
  return merged;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * 127.0.0.0/8, ::1 (also written out, or IPv4-mapped as ::ffff:127.x.y.z) and the name localhost.
 * Any other name counts as reachable from elsewhere: what it resolves to is not ours to trust.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (/^localhost\.?$/i.test(bare)) return true;
  const family = isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 6 ? 'ipv6' : 'ipv4');
}

function isPem(value: unknown): boolean {
  return (typeof value === 'string' || Buffer.isBuffer(value)) && value.length > 0;
}

function checkTls(tls: WorkerServerTlsOptions): void {
  if (typeof tls !== 'object' || tls === null) throw new WorkerServerConfigError('option "tls" must be an object { cert, key, ca? }');
  if (!isPem(tls.cert)) throw new WorkerServerConfigError('option "tls.cert" must be the PEM text of the daemon\'s certificate');
  if (!isPem(tls.key)) throw new WorkerServerConfigError('option "tls.key" must be the PEM text of the daemon\'s private key');
  if (tls.ca !== undefined && !(Array.isArray(tls.ca) ? tls.ca.length > 0 && tls.ca.every(isPem) : isPem(tls.ca))) {
    throw new WorkerServerConfigError('option "tls.ca" must be the PEM text of the CA certificate(s) that sign client certificates');
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
