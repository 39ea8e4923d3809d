import { Packr, Unpackr } from 'msgpackr';

/**
 * One msgpackr configuration for every value that crosses the wire.
 * `moreTypes` keeps typed arrays typed (a Float64Array arrives as a Float64Array,
 * not as a byte Buffer) and Sets as Sets; records keep repeated object shapes compact.
 */
const CODEC_OPTIONS = Object.freeze({ moreTypes: true });

/** A codec instance keeps scratch buffers: make one per thread, not one per call. */
export function createCodec(): { pack(value: unknown): Buffer; unpack(bytes: Uint8Array): unknown } {
  const packr = new Packr(CODEC_OPTIONS);
  const unpackr = new Unpackr(CODEC_OPTIONS);
  return {
    pack: (value) => packr.pack(value),
    unpack: (bytes) => unpackr.unpack(bytes),
  };
}

/** An error as it travels: enough to rebuild name, message, stack, cause and own properties. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** Own enumerable properties (e.g. `code`, `errno`), kept where msgpack can carry them. */
  props?: Record<string, unknown>;
  cause?: SerializedError | { value: unknown };
}

const MAX_CAUSE_DEPTH = 8;

export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return { name: 'NonErrorThrown', message: describeThrown(error), props: { value: carriable(error) } };
  }
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    if (key === 'cause' || key === 'stack' || key === 'message' || key === 'name') continue;
    props[key] = carriable((error as unknown as Record<string, unknown>)[key]);
  }
  const out: SerializedError = { name: error.name, message: error.message, stack: error.stack };
  if (Object.keys(props).length > 0) out.props = props;
  if ('cause' in error && error.cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    out.cause = error.cause instanceof Error ? serializeError(error.cause, depth + 1) : { value: carriable(error.cause) };
  }
  return out;
}

/** Rebuilds an Error that reads like the original: same name, message, stack, props and cause chain. */
export function deserializeError(data: SerializedError): Error {
  const error = new Error(data.message);
  // Own property, so the remote name shows in stack traces and util.inspect.
  Object.defineProperty(error, 'name', { value: data.name, enumerable: false, writable: true, configurable: true });
  if (data.stack !== undefined) error.stack = data.stack;
  if (data.props) Object.assign(error, data.props);
  if (data.cause) {
    const cause = 'value' in data.cause ? data.cause.value : deserializeError(data.cause as SerializedError);
    Object.defineProperty(error, 'cause', { value: cause, enumerable: false, writable: true, configurable: true });
  }
  return error;
}

export function isSerializedError(value: unknown): value is SerializedError {
  return typeof value === 'object' && value !== null &&
    typeof (value as SerializedError).name === 'string' && typeof (value as SerializedError).message === 'string';
}

function describeThrown(value: unknown): string {
  try {
    return `a non-Error value was thrown: ${typeof value === 'string' ? value : JSON.stringify(value)}`;
  } catch {
    return `a non-Error value was thrown: ${String(value)}`;
  }
}

/** Same options as message envelopes: what it packs, an envelope can carry. */
const probe = new Packr({ useRecords: false });

/**
 * Error properties are whatever the thrower put there: cycles, symbols, huge BigInts. What an
 * envelope cannot carry is described in a string instead of failing the whole message.
 */
function carriable(value: unknown): unknown {
  if (typeof value === 'function') return `[function ${value.name || 'anonymous'}]`;
  if (typeof value === 'symbol') return value.toString();
  if (value === null || typeof value !== 'object' && typeof value !== 'bigint') return value;
  try {
    probe.pack(value);
    return value;
  } catch (error) {
    return `[not serializable: ${describe(value)} (${(error as Error).message})]`;
  }
}

function describe(value: unknown): string {
  try {
    return String(value).slice(0, 200);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
