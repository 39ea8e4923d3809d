import { createCodec, findUnserializable, isTooDeep } from '@mapscale/protocol';
import { JobSerializationError } from './errors.js';
import type { JobsView } from './map-run.js';

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
export function encodeJobs(jobs: readonly unknown[] | JobsView, firstIndex: number): Buffer | JobSerializationError {
  const { items, from, to } = isJobsView(jobs) ? jobs : { items: jobs, from: 0, to: jobs.length };
  try {
    return codec.packList(items, from, to);
  } catch (error) {
    return whyNotSerializable(items.slice(from, to), firstIndex, error);
  }
}

function isJobsView(jobs: readonly unknown[] | JobsView): jobs is JobsView {
  return !Array.isArray(jobs);
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
      const found = findUnserializable(jobs[i], 'job');
      if (found) return new JobSerializationError(firstIndex + i, found.path, found.valueType, `${found.detail}, which msgpack cannot carry${ADVICE[found.valueType] ?? ''}`, { cause: error });
      const deep = isTooDeep(error);
      return new JobSerializationError(firstIndex + i, undefined, deep ? 'nesting too deep' : typeof jobs[i],
        deep ? 'nested too deeply to be serialized' : `not serializable (${describeError(error)})`, { cause: error });
    }
  }
  // Each packs alone, not all together (their sum too large for one buffer): no job is at fault.
  return new JobSerializationError(firstIndex, undefined, TOGETHER, `not serializable together with the rest of its batch (${describeError(batchError)})`, { cause: batchError });
}

/** What to do instead, where there is something to say. */
const ADVICE: Partial<Record<string, string>> = {
  function: ': send data, and create the function on the worker (in call() or setup())',
};

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
