import { findUnserializable, isTooDeep, serializeError, type SerializedError } from '@mapscale/protocol';
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
  const found = value === undefined ? undefined : findUnserializable(value, 'result');
  if (found) return new ResultSerializationError(found.path, found.valueType, found.valueType === 'object' ? found.detail : undefined);
  if (isTooDeep(error)) return new ResultSerializationError('result', 'nesting too deep');
  return new ResultSerializationError(undefined, 'unknown', error instanceof Error ? error.message : String(error));
}
