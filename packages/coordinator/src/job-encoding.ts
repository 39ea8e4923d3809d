import { createCodec } from '@mapscale/protocol';
import { JobSerializationError } from './errors.js';

/**
 * Jobs are packed with functions refused: msgpackr would write one as `undefined` (as JSON drops
 * it) and the job would run on a value it was not given.
 */
const codec = createCodec({ refuseFunctions: true });

/**
 * The payload of a batch's jobs (`firstIndex` is the first one's index in its map), or, when it
 * cannot be packed, why: which job, where inside it, and what is there. The batch is packed whole,
 * as always; only when that fails are its jobs packed one by one to find the culprit, so a batch
 * that packs costs nothing more.
 */
export function encodeJobs(jobs: unknown[], firstIndex: number): Buffer | JobSerializationError {
  try {
    return codec.pack(jobs);
  } catch (error) {
    return whyNotSerializable(jobs, firstIndex, error);
  }
}

/** The valueType of a batch whose jobs each pack alone but not together. */
const TOGETHER = 'batch';

/**
 * Whether `error` names the job at fault (and that job alone is to fail), rather than a batch whose
 * jobs each encode but not all together, which is to be split until its parts do.
 */
export function namesAJob(error: JobSerializationError): boolean {
  return error.valueType !== TOGETHER;
}

function whyNotSerializable(jobs: unknown[], firstIndex: number, batchError: unknown): JobSerializationError {
  for (let i = 0; i < jobs.length; i++) {
    try {
      codec.pack(jobs[i]);
    } catch (error) {
      const culprit = findCulprit(jobs[i]) ?? {
        path: undefined, valueType: typeof jobs[i],
        reason: isStackOverflow(error) ? 'nested too deeply to be serialized' : `not serializable (${describeError(error)})`,
      };
      return new JobSerializationError(firstIndex + i, culprit.path, culprit.valueType, culprit.reason, { cause: error });
    }
  }
  // Each packs alone, not all together (their sum too large for one buffer): no job is at fault.
  return new JobSerializationError(firstIndex, undefined, TOGETHER, `not serializable together with the rest of its batch (${describeError(batchError)})`, { cause: batchError });
}

interface Culprit {
  path: string;
  valueType: string;
  reason: string;
}

/**
 * The first value inside `job` that msgpack cannot carry, with its path from the job: a function,
 * a Symbol, or a reference back to an object that contains it. Walked with a stack of its own, so
 * a deep job cannot overflow this walk as it overflowed the packer. Shared (not circular)
 * references are fine: they are packed twice.
 */
export function findCulprit(job: unknown): Culprit | undefined {
  const stack: { value: unknown; path: string; leave?: true }[] = [{ value: job, path: 'job' }];
  const ancestors = new Map<object, string>();
  const done = new Set<object>();
  while (stack.length > 0) {
    const { value, path, leave } = stack.pop()!;
    if (leave) {
      ancestors.delete(value as object);
      done.add(value as object);
      continue;
    }
    if (typeof value === 'function') {
      return { path, valueType: 'function', reason: `a function (${value.name || 'anonymous'}): send data, and create the function on the worker (in call() or setup())` };
    }
    if (typeof value === 'symbol') return { path, valueType: 'symbol', reason: `a Symbol (${value.toString()}), which msgpack cannot carry` };
    if (typeof value !== 'object' || value === null || done.has(value) || isLeaf(value)) continue;
    const ancestor = ancestors.get(value);
    if (ancestor !== undefined) {
      return { path, valueType: 'circular', reason: `a reference back to ${ancestor === 'job' ? 'the job itself' : ancestor} (a circular structure), which msgpack cannot carry` };
    }
    ancestors.set(value, path);
    stack.push({ value, path, leave: true });
    let children: [string, unknown][];
    try {
      children = childrenOf(value, path);
    } catch (error) {
      return { path, valueType: 'object', reason: `an object whose properties cannot be read (${describeError(error)})` };
    }
    // Reversed, so the first child is looked at first and the path named is the first culprit.
    for (let i = children.length - 1; i >= 0; i--) stack.push({ value: children[i]![1], path: children[i]![0] });
  }
  return undefined;
}

/** Values msgpack packs as a whole, with nothing inside to look at. */
function isLeaf(value: object): boolean {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp;
}

function childrenOf(value: object, path: string): [string, unknown][] {
  if (Array.isArray(value)) return value.map((item, i) => [`${path}[${i}]`, item]);
  if (value instanceof Map) {
    const out: [string, unknown][] = [];
    let i = 0;
    for (const [key, item] of value) {
      out.push([`${path} (Map key #${i})`, key], [`${path}.get(${describeKey(key, i)})`, item]);
      i++;
    }
    return out;
  }
  if (value instanceof Set) return [...value].map((item, i) => [`${path} (Set element #${i})`, item]);
  const out: [string, unknown][] = Object.keys(value).map((key) => [`${path}${propertyPath(key)}`, (value as Record<string, unknown>)[key]]);
  // msgpack carries an error's cause too (and its own keys are what Object.keys gave).
  if (value instanceof Error && 'cause' in value) out.push([`${path}.cause`, value.cause]);
  return out;
}

function propertyPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function describeKey(key: unknown, index: number): string {
  return typeof key === 'string' ? JSON.stringify(key) : typeof key === 'number' || typeof key === 'boolean' ? String(key) : `<key #${index}>`;
}

function isStackOverflow(error: unknown): boolean {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
