import { pino, type Logger } from 'pino';
import { InvalidOptionError } from './errors.js';

export interface ProcessorOptions {
  /** Shared secret for the daemons' challenge-response. Default: env MAPSCALE_SECRET. */
  secret?: string;
  /** How long to wait for a daemon to accept and finish the handshake. */
  connectTimeoutMs?: number;
  /** pino logger; the coordinator logs through child loggers of it. Default: warnings to stderr. */
  logger?: Logger;
  /** Jobs per batch. Default: adaptive, from measured job time and payload size. */
  chunkSize?: number;
  /** For `new Processor(fn, N)`: how long a local daemon may take to start. */
  localStartTimeoutMs?: number;
}

export interface ResolvedProcessorOptions {
  secret: string | undefined;
  connectTimeoutMs: number;
  logger: Logger;
  chunkSize: number | undefined;
  localStartTimeoutMs: number;
}

export const DEFAULT_PROCESSOR_OPTIONS = Object.freeze({
  secret: undefined,
  connectTimeoutMs: 10_000,
  chunkSize: undefined,
  localStartTimeoutMs: 20_000,
});

function checkPositiveInteger(name: string, value: unknown): void {
  if (value !== undefined && (!Number.isInteger(value) || (value as number) < 1)) {
    throw new InvalidOptionError(`option "${name}" must be a positive integer, got ${String(value)}`);
  }
}

export function resolveProcessorOptions(options: ProcessorOptions = {}): ResolvedProcessorOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options must be an object');
  checkPositiveInteger('connectTimeoutMs', options.connectTimeoutMs);
  checkPositiveInteger('chunkSize', options.chunkSize);
  checkPositiveInteger('localStartTimeoutMs', options.localStartTimeoutMs);
  const secret = options.secret ?? (process.env.MAPSCALE_SECRET || undefined);
  if (secret !== undefined && (typeof secret !== 'string' || secret.length === 0)) {
    throw new InvalidOptionError('option "secret" must be a non-empty string');
  }
  return {
    secret,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_PROCESSOR_OPTIONS.connectTimeoutMs,
    logger: options.logger ?? pino({ level: 'warn' }, pino.destination({ dest: 2, sync: true })),
    chunkSize: options.chunkSize ?? DEFAULT_PROCESSOR_OPTIONS.chunkSize,
    localStartTimeoutMs: options.localStartTimeoutMs ?? DEFAULT_PROCESSOR_OPTIONS.localStartTimeoutMs,
  };
}
