import { MapScaleError, ShippingError } from '@mapscale/protocol';

export { ShippingError };

// Raised below the coordinator too (address parsing, dialling), so they live with those layers.
export { InvalidOptionError } from '@mapscale/protocol';
export { TLSError } from '@mapscale/transport';

/** A job's call() threw; `cause` is the worker's error with its name, message, stack and properties. */
export class JobError extends MapScaleError {
  static override readonly code = 'MS_JOB_FAILED';
  constructor(readonly jobIndex: number, readonly workerAddress: string, cause: Error) {
    super(`job ${jobIndex} failed on worker ${workerAddress}: ${cause.name}: ${cause.message}`, { cause });
  }
}

/**
 * (As a JobError's cause.) A job encodes to more than the largest frame its worker's daemon accepts,
 * so it was never sent: `size` and `limit` in bytes. The advice fits how the workers were made:
 * local workers take their limit from the Processor's maxFrameBytes, a daemon from its --max-frame-bytes.
 */
export class JobTooLargeError extends MapScaleError {
  static override readonly code = 'MS_JOB_TOO_LARGE';
  constructor(readonly size: number, readonly limit: number, workers: 'local' | 'daemon' = 'daemon') {
    super(`the job encodes to ${size} bytes, over ${workers === 'local' ? 'the local workers\'' : 'the daemon\'s'} frame limit of ${limit} bytes: send smaller jobs, or ` +
      (workers === 'local' ? 'raise the Processor\'s maxFrameBytes option (local workers accept frames up to it)' : 'raise --max-frame-bytes on the daemon'));
  }
}

/** A worker could not restore the work function or its setup() threw. */
export class SetupError extends MapScaleError {
  static override readonly code = 'MS_SETUP_FAILED';
  constructor(readonly workerAddress: string, cause: Error) {
    super(`setup failed on worker ${workerAddress}: ${cause.name}: ${cause.message}`, { cause });
  }
}

/** One or more cleanup() calls threw during shutdown; `errors` holds each, with its worker. */
export class CleanupError extends MapScaleError {
  static override readonly code = 'MS_CLEANUP_FAILED';
  constructor(readonly errors: { workerAddress: string; error: Error }[]) {
    super(`cleanup failed on ${errors.length} worker instance(s): ` +
      errors.map((e) => `${e.workerAddress}: ${e.error.name}: ${e.error.message}`).join('; '));
  }
}

/** The Processor was shut down; it accepts no more work. */
export class ProcessorClosedError extends MapScaleError {
  static override readonly code = 'MS_PROCESSOR_CLOSED';
}

/** Every worker is gone, so the map cannot finish. `workers` says why each was lost. */
export class NoWorkersError extends MapScaleError {
  static override readonly code = 'MS_NO_WORKERS';
  constructor(readonly workers: { address: string; reason: Error }[]) {
    super(`no workers left: ${workers.map((w) => `${w.address} (${w.reason.message})`).join('; ') || 'none were given'}`);
  }
}

/** A job kept killing the worker it ran on (`attempts` times, each time alone); it is not tried again. */
export class WorkerCrashedError extends MapScaleError {
  static override readonly code = 'MS_WORKER_CRASHED';
  constructor(readonly jobIndex: number, readonly attempts: number, readonly workerAddress: string, cause?: Error) {
    super(`job ${jobIndex} crashed its worker ${attempts} time(s), last on ${workerAddress}; it is not retried again` +
      (cause ? `: ${cause.message}` : ''), cause ? { cause } : undefined);
  }
}

/** A job ran longer than its time limit; its worker instance was replaced by a fresh one. */
export class JobTimeoutError extends MapScaleError {
  static override readonly code = 'MS_JOB_TIMEOUT';
  constructor(readonly jobIndex: number, readonly timeoutMs: number, readonly workerAddress: string) {
    super(`job ${jobIndex} ran longer than ${timeoutMs} ms on ${workerAddress}; its worker instance was replaced`);
  }
}

/** The map was cancelled through its AbortSignal; `cause` is the signal's reason. */
export class AbortError extends MapScaleError {
  static override readonly code = 'MS_ABORTED';
}

/** A daemon stopped answering heartbeats: treated as dead, its jobs sent elsewhere. */
export class HeartbeatTimeoutError extends MapScaleError {
  static override readonly code = 'MS_HEARTBEAT_TIMEOUT';
}

/** Reading the jobs failed: the iterable (or async iterable) given to map/imap threw; `cause` is what it threw. */
export class InputError extends MapScaleError {
  static override readonly code = 'MS_INPUT_FAILED';
}

/**
 * A job's value cannot be encoded (a function, a Symbol, a circular reference, …), so it was
 * never sent: `jobIndex`, and where inside the job the value is (`path`, e.g. `job.options.onDone`,
 * undefined when it could not be found) and what it is (`valueType`). The workers never saw it.
 */
export class JobSerializationError extends MapScaleError {
  static override readonly code = 'MS_JOB_NOT_SERIALIZABLE';
  constructor(readonly jobIndex: number, readonly path: string | undefined, readonly valueType: string, reason: string, options?: { cause?: unknown }) {
    super(`job ${jobIndex} cannot be sent: ${path === undefined ? 'it' : path} is ${reason}`, options);
  }
}

/**
 * `dashboard: { port }` (or `mapscale run --dashboard`): the page cannot be served there (the port is
 * taken, the address is not this host's, no permission). `host`, `port`; `cause` is the system error.
 */
export class DashboardListenError extends MapScaleError {
  static override readonly code = 'MS_DASHBOARD_LISTEN_FAILED';
  constructor(readonly host: string, readonly port: number, cause: NodeJS.ErrnoException) {
    const why = cause.code === 'EADDRINUSE' ? `port ${port} is in use: choose another, or 0 for a free one`
      : cause.code === 'EADDRNOTAVAIL' ? `${host} is not an address of this host`
      : cause.code === 'EACCES' ? `no permission to listen on port ${port}`
      : `${cause.code ?? cause.name}: ${cause.message}`;
    super(`the dashboard cannot listen on ${host}:${port}: ${why}`, { cause });
  }
}
