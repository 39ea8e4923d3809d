import { errorBrand } from './errors.js';
import { Packr, Unpackr, addExtension } from 'msgpackr';
import { packNumberList } from './number-lists.js';

/** The msgpackr extension type of errors ('e'): its own, redefined below to carry the stack too. */
const ERROR_EXTENSION = 0x65;
const ERROR_CLASSES: Record<string, new (message: string, options?: { cause?: unknown }) => Error> = {
  Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError,
};

/**
 * An Error inside a job or a result (returned, not thrown) keeps its stack. msgpackr's own error
 * extension carries [name, message, cause] (and an AggregateError's errors), so the receiver's
 * rebuilt error had the stack of the code that unpacked it: for a result, the coordinator's decoder
 * instead of the user's job. This is the same extension, the same fields in the same places, with
 * the stack after them: a plain msgpackr peer still reads it. msgpackr's extensions are global to
 * the msgpackr module, so this applies to every Packr of it (registered once, on first import).
 */
addExtension({
  Class: Error,
  type: ERROR_EXTENSION,
  pack(this: { moreTypes?: boolean }, error: Error, allocateForWrite: (size: number) => { target: Uint8Array; position: number }, pack: (value: unknown) => void) {
    const { target, position } = allocateForWrite(this.moreTypes ? 3 : 0);
    if (this.moreTypes) {
      target[position] = 0xd4;
      target[position + 1] = ERROR_EXTENSION;
      target[position + 2] = 0;
    }
    pack([error.name, error.message, error.cause, error instanceof AggregateError ? error.errors : undefined, typeof error.stack === 'string' ? error.stack : undefined]);
  },
  read(data: unknown[]): Error {
    const [name, message, cause, errors, stack] = data as [string, string, unknown, unknown[] | undefined, unknown];
    const options = cause === undefined ? undefined : { cause };
    let error: Error;
    if (name === 'AggregateError') {
      error = new AggregateError(errors ?? [], message, options);
    } else {
      error = new (ERROR_CLASSES[name] ?? Error)(message, options);
      if (!(name in ERROR_CLASSES)) error.name = name;
    }
    if (typeof stack === 'string') error.stack = stack;
    return error;
  },
} as unknown as Parameters<typeof addExtension>[0]);

/**
 * One msgpackr configuration for every value that crosses the wire.
 * `moreTypes` keeps typed arrays typed (a Float64Array arrives as a Float64Array,
 * not as a byte Buffer) and Sets as Sets; records keep repeated object shapes compact.
 */
const CODEC_OPTIONS = Object.freeze({ moreTypes: true });

/** What `pack` throws for a function when a codec refuses them (see createCodec). */
export class FunctionNotSerializable extends TypeError {
  constructor(readonly fn: Function) {
    super(`a function (${fn.name || 'anonymous'}) cannot be serialized`);
  }
}

function refuseFunction(fn: Function): never {
  throw new FunctionNotSerializable(fn);
}

/**
 * A codec instance keeps scratch buffers: make one per thread, not one per call.
 * `refuseFunctions`: throw FunctionNotSerializable on a function, which msgpackr otherwise writes as
 * `undefined` (as JSON.stringify drops it), so the receiver would run on a value it was not sent.
 */
export function createCodec(options: { refuseFunctions?: boolean } = {}): Codec {
  const packr = new Packr(options.refuseFunctions ? { ...CODEC_OPTIONS, writeFunction: refuseFunction as () => never } : CODEC_OPTIONS);
  const unpackr = new Unpackr(CODEC_OPTIONS);
  return {
    pack: (value) => packr.pack(value),
    packList: (values, start = 0, end = values.length) =>
      packNumberList(values, start, end) ?? packr.pack(start === 0 && end === values.length ? values : values.slice(start, end)),
    unpack: (bytes) => unpackr.unpack(bytes),
  };
}

export interface Codec {
  pack(value: unknown): Buffer;
  /**
   * A batch's jobs or results, values[start..end) (default: all): a list of plain numbers goes as
   * one number list (number-lists.ts).
   */
  packList(values: readonly unknown[], start?: number, end?: number): Buffer;
  unpack(bytes: Uint8Array): unknown;
}

/** An error as it travels: enough to rebuild name, message, stack, cause and own properties. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  /** Own enumerable properties (e.g. `code`, `errno`), kept where msgpack can carry them. */
  props?: Record<string, unknown>;
  cause?: SerializedError | { value: unknown };
  /**
   * The codes of the MapScale error classes it was an instance of (their `Symbol.for` brands), so
   * that `instanceof ResultSerializationError` holds for one a worker raised, as for one raised here.
   */
  brands?: string[];
}

const BRAND_PREFIX = 'mapscale.error.';
const MAX_BRANDS = 16;

const MAX_CAUSE_DEPTH = 8;

/**
 * What one error may bring along, so that whatever a job throws (a 100 MB message, a Buffer in a
 * property) travels as an error and never as a frame the peer must refuse: at most 8 causes deep,
 * each with a message and a stack cut at 64 Ki characters and own properties of 64 KiB packed.
 */
export const ERROR_LIMITS = Object.freeze({
  textChars: 64 * 1024,
  nameChars: 1024,
  propBytes: 16 * 1024,
  propsBytes: 64 * 1024,
});

/** `text` cut to `max` characters, saying how much was cut. */
export function truncateText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}… [${text.length - max} more characters cut]`;
}

export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return { name: 'NonErrorThrown', message: truncateText(describeThrown(error), ERROR_LIMITS.textChars), props: boundedProps([['value', error]]) };
  }
  const props = boundedProps(Object.keys(error)
    .filter((key) => key !== 'cause' && key !== 'stack' && key !== 'message' && key !== 'name')
    .map((key) => [key, (error as unknown as Record<string, unknown>)[key]]));
  const out: SerializedError = {
    name: truncateText(String(error.name), ERROR_LIMITS.nameChars),
    message: truncateText(String(error.message), ERROR_LIMITS.textChars),
    stack: typeof error.stack === 'string' ? truncateText(error.stack, ERROR_LIMITS.textChars) : undefined,
  };
  if (Object.keys(props).length > 0) out.props = props;
  const brands = Object.getOwnPropertySymbols(error).flatMap((symbol) =>
    symbol.description?.startsWith(BRAND_PREFIX) && Symbol.for(symbol.description) === symbol ? [symbol.description.slice(BRAND_PREFIX.length)] : []);
  if (brands.length > 0) out.brands = brands.slice(0, MAX_BRANDS);
  if ('cause' in error && error.cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    out.cause = error.cause instanceof Error ? serializeError(error.cause, depth + 1) : { value: boundedProps([['value', error.cause]]).value };
  }
  return out;
}

/** Own properties as they can travel: each one carriable and at most propBytes, all of them at most propsBytes. */
function boundedProps(entries: [string, unknown][]): Record<string, unknown> {
  const props: Record<string, unknown> = {};
  let total = 0;
  for (const [key, raw] of entries) {
    let { value, size } = carriable(raw);
    if (size > ERROR_LIMITS.propBytes) {
      value = typeof value === 'string'
        ? truncateText(value, ERROR_LIMITS.propBytes / 4)
        : `[left out: ${describe(raw).slice(0, 80)}, ${size} bytes packed, over ${ERROR_LIMITS.propBytes}]`;
      size = Buffer.byteLength(value as string);
    }
    total += size + key.length;
    if (total > ERROR_LIMITS.propsBytes) {
      props['…'] = `[${entries.length - Object.keys(props).length} more properties left out: over ${ERROR_LIMITS.propsBytes} bytes in all]`;
      break;
    }
    props[key] = value;
  }
  return props;
}


/** Rebuilds an Error that reads like the original: same name, message, stack, props and cause chain. */
export function deserializeError(data: SerializedError): Error {
  const error = new Error(data.message);
  // Own property, so the remote name shows in stack traces and util.inspect.
  Object.defineProperty(error, 'name', { value: data.name, enumerable: false, writable: true, configurable: true });
  if (data.stack !== undefined) error.stack = data.stack;
  if (data.props) Object.assign(error, data.props);
  if (Array.isArray(data.brands)) {
    for (const code of data.brands.slice(0, MAX_BRANDS)) {
      if (typeof code === 'string' && code.length <= 64) Object.defineProperty(error, errorBrand(code), { value: true });
    }
  }
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
 * envelope cannot carry is described in a string instead of failing the whole message. The size
 * (bytes packed, near enough) comes from the same probe, so each property is packed once.
 */
function carriable(raw: unknown): { value: unknown; size: number } {
  const value = typeof raw === 'function' ? `[function ${raw.name || 'anonymous'}]` : typeof raw === 'symbol' ? raw.toString() : raw;
  if (typeof value === 'string') return { value, size: Buffer.byteLength(value) };
  if (value === null || typeof value !== 'object' && typeof value !== 'bigint') return { value, size: 9 };
  try {
    return { value, size: probe.pack(value).length };
  } catch (error) {
    const text = `[not serializable: ${describe(value)} (${(error as Error).message})]`;
    return { value: text, size: Buffer.byteLength(text) };
  }
}

function describe(value: unknown): string {
  try {
    return String(value).slice(0, 200);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
