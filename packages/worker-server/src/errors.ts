import { MapScaleError, ShippingError } from '@mapscale/protocol';

/** A shipped work function could not be rebuilt on the worker. */
export class RestoreError extends MapScaleError {
  static override readonly code = 'MS_RESTORE_FAILED';
}

/**
 * A by-value class (or function) uses a name from its module's scope, which does not travel with
 * it. Raised when the Processor is constructed (`identifiers` lists the names); on a worker, at
 * setup, for a global the app has and that worker lacks; and in place of a ReferenceError a job
 * met (which stays as `cause`) where the source could not be analysed.
 */
export class ModuleScopeError extends ShippingError {
  static override readonly code = 'MS_MODULE_SCOPE';
  readonly identifiers: string[];
  constructor(message: string, options?: { cause?: unknown; identifiers?: string[] }) {
    super(message, options);
    this.identifiers = options?.identifiers ?? [];
  }
}

/** The daemon could not start as configured (a bad flag or option, named in the message). */
export class WorkerServerConfigError extends MapScaleError {
  static override readonly code = 'MS_DAEMON_CONFIG';
}

/**
 * Results of a job (or of several, answered together) encode to more than a frame may carry. Sent
 * to the coordinator as those jobs' error, so the job fails and the connection stays up.
 */
export class ResultTooLargeError extends MapScaleError {
  static override readonly code = 'MS_RESULT_TOO_LARGE';
  constructor(readonly size: number, readonly limit: number, readonly jobs: number) {
    super((jobs === 1
      ? `the result encodes to a frame of ${size} bytes`
      : `this job's result and those of the ${jobs - 1} other job(s) answered with it encode to a frame of ${size} bytes`) +
      `, over the frame limit of ${limit} bytes: return smaller results, or raise --max-frame-bytes on the daemon and maxFrameBytes on the coordinator`);
  }
}

/** A connection that did not finish its handshake (or, on a data connection, its attach) in time. */
export class HandshakeTimeoutError extends MapScaleError {
  static override readonly code = 'MS_HANDSHAKE_TIMEOUT';
}

/**
 * The daemon could not store a bundle a coordinator sent (its disk is full even after evicting the
 * least recently used bundles, the bundle is over --cache-max-bytes, the directory is not writable).
 * The coordinator hears it as a refusal with this code; the cache is left as it was, so smaller bundles still fit.
 */
export class BundleStoreError extends MapScaleError {
  static override readonly code = 'MS_BUNDLE_STORE_FAILED';
}

/** The daemon could not listen on its address (the port is taken, the address is not this host's, no permission). */
export class ListenError extends MapScaleError {
  static override readonly code = 'MS_LISTEN_FAILED';
}

/**
 * (As a JobError's cause.) A job's result holds something msgpack cannot carry: a function, a
 * symbol, a circular reference, nesting too deep to encode. `path` says where inside the result
 * (`result.items[3].cb`), `valueType` what was found there. Only that job fails; its instance lives on.
 */
export class ResultSerializationError extends MapScaleError {
  static override readonly code = 'MS_RESULT_NOT_SERIALIZABLE';
  constructor(readonly path: string | undefined, readonly valueType: string, detail?: string) {
    super(path === undefined
      ? `the result cannot be serialized${detail ? ` (${detail})` : ''}: return plain data (no functions, symbols or cycles)`
      : `${path} is ${describeKind(valueType)}${detail ? ` (${detail})` : ''}: results travel as msgpack, so return plain data in its place`);
  }
}

function describeKind(valueType: string): string {
  switch (valueType) {
    case 'function': return 'a function';
    case 'symbol': return 'a symbol';
    case 'circular': return 'a circular reference (an object that contains itself)';
    case 'nesting too deep': return 'nested too deeply to encode';
    case 'object': return 'an object whose properties cannot be read';
    default: return `a value that cannot be serialized (${valueType})`;
  }
}
