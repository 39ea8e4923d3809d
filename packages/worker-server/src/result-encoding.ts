import { serializeError, type SerializedError } from '@mapscale/protocol';
import { ResultSerializationError } from './errors.js';

type Codec = { pack(value: unknown): Buffer };
type JobErrors = [number, SerializedError][];

/**
 * A results part whose whole pack threw (a symbol, a cycle, nesting deeper than the encoder's
 * stack; a function, with a codec made with `refuseFunctions`), packed again job by job: each
 * value that cannot be packed answers with a ResultSerializationError in its place. So one bad
 * result fails its own job, the part still goes out, and the thread lives on (the throw used to
 * kill it, and the job was retried on its replacement, forever). The fast path stays one pack of
 * the whole part, by the caller; this runs only after it failed. `values` is changed in place.
 */
export function packEachJob(codec: Codec, values: unknown[], errors: JobErrors | undefined, partError: unknown): { payload: Buffer; errors: JobErrors } {
  const failed = new Map(errors ?? []);
  for (let i = 0; i < values.length; i++) {
    if (failed.has(i)) continue;
    try {
      codec.pack(values[i]);
    } catch (error) {
      failed.set(i, toWire(describeFailure(values[i], error)));
      values[i] = null;
    }
  }
  const sorted = [...failed].sort((a, b) => a[0] - b[0]);
  try {
    return { payload: codec.pack(values), errors: sorted };
  } catch {
    // Every value alone packs, together they do not: not seen, but the part must still go out.
    const whole = toWire(describeFailure(undefined, partError));
    return { payload: codec.pack(values.map(() => null)), errors: values.map((_, i) => [i, failed.get(i) ?? whole]) };
  }
}

/** The error a job answers with; its stack (this module) says nothing about the job. */
function toWire(error: ResultSerializationError): SerializedError {
  const wire = serializeError(error);
  delete wire.stack;
  return wire;
}

function describeFailure(value: unknown, error: unknown): ResultSerializationError {
  const found = value === undefined ? undefined : findUnserializable(value);
  const detail = error instanceof Error ? error.message : String(error);
  return found ? new ResultSerializationError(found.path, found.valueType, found.detail) : new ResultSerializationError(undefined, 'unknown', detail);
}

/** Deeper than this, a walk stops and calls it too deep (msgpackr recurses per level, and runs out of stack some thousands down). */
const MAX_DEPTH = 1_000;
/** A path longer than this many steps is shown by its start and end. */
const PATH_SHOWN = 12;

export interface Unserializable {
  /** Where, as an accessor chain from `result`: `result.items[3].cb`, `result.get("k")`. */
  path: string;
  // The same words as JobSerializationError's, where they name the same thing.
  valueType: 'function' | 'symbol' | 'circular' | 'nesting too deep' | 'object';
  detail?: string;
}

/**
 * The first place in `value` msgpack cannot encode, walked the way msgpackr packs: arrays, Maps
 * and Sets by element, errors by name, message and cause, objects with a toJSON by what it
 * returns, others by own enumerable properties. Only run once packing failed, to say why.
 */
export function findUnserializable(value: unknown): Unserializable | undefined {
  const steps: string[] = [];
  const ancestors = new Set<object>();
  const found = (valueType: Unserializable['valueType'], detail?: string): Unserializable => ({ path: formatPath(steps), valueType, ...(detail ? { detail } : {}) });
  const walk = (current: unknown): Unserializable | undefined => {
    if (typeof current === 'symbol') return found('symbol');
    if (typeof current === 'function') return found('function');
    if (typeof current !== 'object' || current === null) return undefined;
    if (ancestors.has(current)) return found('circular');
    if (steps.length >= MAX_DEPTH) return found('nesting too deep');
    if (ArrayBuffer.isView(current) || current instanceof ArrayBuffer || current instanceof Date || current instanceof RegExp) return undefined;
    ancestors.add(current);
    try {
      return walkChildren(current);
    } catch (error) {
      // Out of stack (this walk's own, deeper than the encoder's was), or a getter or toJSON that
      // throws, which the encoder met too.
      if (error instanceof RangeError && /call stack/i.test(error.message)) return found('nesting too deep');
      return found('object', error instanceof Error ? error.message : String(error));
    } finally {
      ancestors.delete(current);
    }
  };
  const step = (name: string, child: unknown): Unserializable | undefined => {
    steps.push(name);
    const result = walk(child);
    steps.pop();
    return result;
  };
  const walkChildren = (current: object): Unserializable | undefined => {
    if (Array.isArray(current)) {
      for (let i = 0; i < current.length; i++) {
        const result = step(`[${i}]`, current[i]);
        if (result) return result;
      }
      return undefined;
    }
    if (current instanceof Map) {
      let i = 0;
      for (const [key, entry] of current) {
        const result = step(`.keys()[${i}]`, key) ?? step(`.get(${describeKey(key)})`, entry);
        if (result) return result;
        i++;
      }
      return undefined;
    }
    if (current instanceof Set) {
      let i = 0;
      for (const entry of current) {
        const result = step(`.values()[${i++}]`, entry);
        if (result) return result;
      }
      return undefined;
    }
    if (current instanceof Error) {
      return step('.name', current.name) ?? step('.message', current.message) ?? step('.cause', current.cause);
    }
    const toJSON = (current as { toJSON?: unknown }).toJSON;
    if (current.constructor !== Object && typeof toJSON === 'function') return step('.toJSON()', toJSON.call(current));
    for (const key in current) {
      if (!Object.hasOwn(current, key)) continue;
      const result = step(/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`, (current as Record<string, unknown>)[key]);
      if (result) return result;
    }
    return undefined;
  };
  return walk(value);
}

function describeKey(key: unknown): string {
  if (typeof key === 'string') return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
  if (typeof key === 'number' || typeof key === 'boolean' || typeof key === 'bigint' || key === null || key === undefined) return String(key);
  return `<${typeof key}>`;
}

function formatPath(steps: string[]): string {
  const shown = steps.length <= PATH_SHOWN ? steps : [...steps.slice(0, PATH_SHOWN / 2), `…(${steps.length - PATH_SHOWN} more)…`, ...steps.slice(-PATH_SHOWN / 2)];
  return `result${shown.join('')}`;
}
