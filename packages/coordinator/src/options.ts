import type { Logger } from 'pino';
import { DEFAULT_LIMITS } from '@mapscale/protocol';
import { InvalidOptionError } from './errors.js';
import { humanLogger } from './log-lines.js';
import type { MapProgress } from './engine.js';
import { resolveDashboardOptions, type DashboardOptions, type ResolvedDashboardOptions } from './dashboard/options.js';

export interface ProcessorOptions {
  /** Shared secret for the daemons' challenge-response. Default: env MAPSCALE_SECRET. */
  secret?: string;
  /** How long to wait for a daemon to accept and finish the handshake. */
  connectTimeoutMs?: number;
  /**
   * pino logger; the coordinator logs JSON events through child loggers of it. Default: warnings
   * as readable lines on stderr. What the app is told anyway (an error it catches, a worker-lost
   * event) is logged at info, so by default it is not printed a second time.
   */
  logger?: Logger;
  /** Jobs per batch. Default: adaptive, from measured job time and payload size. */
  chunkSize?: number;
  /** For `new Processor(fn, N)`: how long a local daemon may take to start. */
  localStartTimeoutMs?: number;
  /**
   * For `new Processor(fn, N)`: run the N instance threads in this process (an embedded daemon)
   * instead of a child daemon process. Faster to start, and the first maps run faster; what it gives
   * up is the process boundary: a job that crashes the process natively (an addon's segfault,
   * process.abort(), the kernel's OOM killer) takes the app down with it, and cleanup() runs only at
   * shutdown(), not when the app exits without it. Jobs run in worker threads either way.
   */
  inProcess?: boolean;
  /** Default time limit per job; a job over it fails with JobTimeoutError. Undefined: none. */
  jobTimeoutMs?: number;
  /** A job that kills its worker is tried again this many times (alone), then fails with WorkerCrashedError. */
  maxJobRetries?: number;
  /** How often each daemon is pinged. */
  heartbeatIntervalMs?: number;
  /** A daemon silent for this long is treated as dead and its jobs are sent elsewhere. */
  heartbeatTimeoutMs?: number;
  /** First delay before reconnecting a lost daemon; it doubles up to maxReconnectDelayMs. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Streamed inputs (async iterables, imap): jobs read or in flight ahead of the oldest unanswered one. */
  window?: number;
  /**
   * Where console output of user code on workers goes: 'stderr' (tagged lines on this process's
   * stderr), 'logger' (events on the logger), or 'off'. It always stays in the daemon's own log.
   */
  workerOutput?: 'stderr' | 'logger' | 'off';
  /**
   * A class with `static module = import.meta.url` is bundled with its imports (esbuild) and sent
   * to daemons that lack the bundle. false: workers import the module by its path instead.
   */
  bundle?: boolean;
  /** Connect to daemons given by address over TLS. Local daemons (`new Processor(fn, N)`) stay on plain loopback. */
  tls?: ProcessorTlsOptions;
  /** Largest frame accepted from a daemon after the handshake; keep it ≥ the daemons' --max-frame-bytes. */
  maxFrameBytes?: number;
  /**
   * Send each instance's jobs on the data connection it offers (straight to its thread), falling back
   * to the daemon port where that cannot be reached. false: everything through the daemon port (e.g.
   * where data ports are firewalled by dropping packets, so each attempt waits out connectTimeoutMs).
   */
  dataConnections?: boolean;
  /**
   * At shutdown, how long each worker instance's cleanup() may run (and, after `force`, a job still
   * running before it) before its thread is terminated; shutdown() then rejects with a CleanupError
   * whose entries are CleanupTimeoutErrors. A daemon that does not answer at all is given up on
   * after about twice this.
   */
  cleanupTimeoutMs?: number;
  /** Serve a live page of this Processor's maps and workers (loopback by default); stopped by shutdown(). */
  dashboard?: DashboardOptions;
}

/** PEM text. The daemon's certificate is always verified. */
export interface ProcessorTlsOptions {
  /** CA certificate(s) that sign the daemons' certificates. Default: Node.js's bundled public CAs. */
  ca?: string | Buffer | (string | Buffer)[];
  /** This coordinator's client certificate, for daemons that require one (--tls-ca). Needs `key`. */
  cert?: string | Buffer;
  /** The client certificate's private key. */
  key?: string | Buffer;
  /** Name the daemon's certificate must carry (and SNI). Default: the host of its address. */
  servername?: string;
}

/** Per call: `map(jobs, options)`, `imap(jobs, options)`. */
export interface MapOptions {
  /** Cancels the map: dispatch stops, queued jobs are dropped on the workers, the call rejects with AbortError. */
  signal?: AbortSignal;
  /** Resolve to one `{ status, value | reason }` per job instead of rejecting on the first failure. */
  settle?: boolean;
  /** Time limit per job for this call (overrides the Processor's). */
  jobTimeoutMs?: number;
  /** Called with { done, total, failed, jobsPerSecond, elapsedMs } at most every 100 ms, and once at the end. */
  onProgress?: (progress: MapProgress) => void;
}

export interface ResolvedProcessorOptions {
  secret: string | undefined;
  connectTimeoutMs: number;
  logger: Logger;
  chunkSize: number | undefined;
  localStartTimeoutMs: number;
  inProcess: boolean;
  jobTimeoutMs: number | undefined;
  maxJobRetries: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  window: number;
  workerOutput: 'stderr' | 'logger' | 'off';
  bundle: boolean;
  tls: ProcessorTlsOptions | undefined;
  maxFrameBytes: number;
  dataConnections: boolean;
  cleanupTimeoutMs: number;
  dashboard: ResolvedDashboardOptions | undefined;
}

export const DEFAULT_PROCESSOR_OPTIONS = Object.freeze({
  secret: undefined,
  connectTimeoutMs: 10_000,
  chunkSize: undefined,
  localStartTimeoutMs: 20_000,
  inProcess: true,
  jobTimeoutMs: undefined,
  maxJobRetries: 2,
  heartbeatIntervalMs: 1_000,
  heartbeatTimeoutMs: 5_000,
  reconnectDelayMs: 200,
  maxReconnectDelayMs: 5_000,
  window: 50_000,
  workerOutput: 'stderr' as const,
  bundle: true,
  tls: undefined,
  maxFrameBytes: DEFAULT_LIMITS.maxFrameBytes,
  dataConnections: true,
  cleanupTimeoutMs: 10_000,
  dashboard: undefined,
});

function checkPositiveInteger(name: string, value: unknown): void {
  if (value !== undefined && (!Number.isInteger(value) || (value as number) < 1)) {
    throw new InvalidOptionError(`option "${name}" must be a positive integer, got ${String(value)}`);
  }
}

/** Checks one call's options against the Processor's. */
export function resolveMapOptions(options: MapOptions | undefined, processor: ResolvedProcessorOptions): {
  signal: AbortSignal | undefined; settle: boolean; jobTimeoutMs: number | undefined; onProgress: ((p: MapProgress) => void) | undefined;
} {
  if (options !== undefined && (typeof options !== 'object' || options === null)) throw new InvalidOptionError('map options must be an object');
  checkPositiveInteger('jobTimeoutMs', options?.jobTimeoutMs);
  const signal = options?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidOptionError('option "signal" must be an AbortSignal');
  const onProgress = options?.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw new InvalidOptionError('option "onProgress" must be a function');
  return { signal, settle: options?.settle === true, jobTimeoutMs: options?.jobTimeoutMs ?? processor.jobTimeoutMs, onProgress };
}

export function resolveProcessorOptions(options: ProcessorOptions = {}): ResolvedProcessorOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options must be an object');
  checkPositiveInteger('connectTimeoutMs', options.connectTimeoutMs);
  checkPositiveInteger('chunkSize', options.chunkSize);
  checkPositiveInteger('localStartTimeoutMs', options.localStartTimeoutMs);
  for (const name of ['jobTimeoutMs', 'heartbeatIntervalMs', 'heartbeatTimeoutMs', 'reconnectDelayMs', 'maxReconnectDelayMs', 'window', 'cleanupTimeoutMs'] as const) {
    checkPositiveInteger(name, options[name]);
  }
  if (options.workerOutput !== undefined && !['stderr', 'logger', 'off'].includes(options.workerOutput)) {
    throw new InvalidOptionError(`option "workerOutput" must be 'stderr', 'logger' or 'off', got ${String(options.workerOutput)}`);
  }
  if (options.maxJobRetries !== undefined && (!Number.isInteger(options.maxJobRetries) || options.maxJobRetries < 0)) {
    throw new InvalidOptionError(`option "maxJobRetries" must be an integer ≥ 0, got ${String(options.maxJobRetries)}`);
  }
  if (options.maxFrameBytes !== undefined && (!Number.isInteger(options.maxFrameBytes) || options.maxFrameBytes < 1024)) {
    throw new InvalidOptionError(`option "maxFrameBytes" must be an integer ≥ 1024, got ${String(options.maxFrameBytes)}`);
  }
  if (options.tls !== undefined) checkTls(options.tls);
  for (const name of ['bundle', 'dataConnections', 'inProcess'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') {
      throw new InvalidOptionError(`option "${name}" must be a boolean, got ${String(options[name])}`);
    }
  }
  const secret = options.secret ?? (process.env.MAPSCALE_SECRET || undefined);
  if (secret !== undefined && (typeof secret !== 'string' || secret.length === 0)) {
    throw new InvalidOptionError('option "secret" must be a non-empty string');
  }
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  return {
    ...DEFAULT_PROCESSOR_OPTIONS,
    ...given,
    secret,
    logger: options.logger ?? humanLogger('warn'),
    dashboard: resolveDashboardOptions(options.dashboard),
  } as ResolvedProcessorOptions;
}

function isPem(value: unknown): boolean {
  return (typeof value === 'string' || Buffer.isBuffer(value)) && value.length > 0;
}

function checkTls(tls: ProcessorTlsOptions): void {
  if (typeof tls !== 'object' || tls === null) throw new InvalidOptionError('option "tls" must be an object { ca?, cert?, key?, servername? }');
  if (tls.ca !== undefined && !(Array.isArray(tls.ca) ? tls.ca.length > 0 && tls.ca.every(isPem) : isPem(tls.ca))) {
    throw new InvalidOptionError('option "tls.ca" must be the PEM text of the CA certificate(s) that sign the daemons\' certificates');
  }
  for (const name of ['cert', 'key'] as const) {
    if (tls[name] !== undefined && !isPem(tls[name])) throw new InvalidOptionError(`option "tls.${name}" must be PEM text`);
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new InvalidOptionError('options "tls.cert" and "tls.key" go together: a client certificate needs its key');
  }
  if (tls.servername !== undefined && (typeof tls.servername !== 'string' || tls.servername.length === 0)) {
    throw new InvalidOptionError('option "tls.servername" must be a non-empty string');
  }
}
