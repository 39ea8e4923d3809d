import type { SerializedError } from '@mapscale/protocol';
import { Scheduler, type Batch, type ResultOutcome, type SchedulerTuning } from '../../packages/coordinator/dist/scheduler.js';
import { prng } from './prng.js';

/** What the scheduler's tests share: simulated workers, their jobs and answers. */

/** The "work function" every simulated worker runs. */
export const work = (job: unknown): unknown => `r${String(job)}`;

export function jobsOf(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i * 3 + 1);
}

export function size(batch: Batch): number {
  return batch.end - batch.start;
}

export function remoteError(message: string): SerializedError {
  return { name: 'Error', message };
}

export function scheduler(tuning: Partial<SchedulerTuning>, slots: number[]): Scheduler {
  const s = new Scheduler(tuning);
  for (const id of slots) s.addSlot(id);
  return s;
}

/**
 * Answers `count` jobs of a batch from where it stands, as a worker would; `errors` index into
 * this part, and those jobs answer null. The part is final when it reaches the end of the batch
 * unless told otherwise.
 */
export function answer(
  s: Scheduler, batch: Batch, count = size(batch) - batch.received,
  options: { final?: boolean; busyMs?: number; errors?: [number, SerializedError][] } = {},
): ResultOutcome {
  const from = batch.received;
  const values = batch.run.jobs(batch.start + from, batch.start + from + count).map(work);
  for (const [at] of options.errors ?? []) values[at] = null;
  const final = options.final ?? from + count === size(batch);
  return s.onResults(batch.id, from, values, options.errors, options.busyMs ?? 0, final);
}

/** A seeded source of choices for one simulated history. */
export function seeded(seed: number): { rand: () => number; int: (n: number) => number; pick: <T>(items: readonly T[]) => T } {
  const rand = prng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  return { rand, int, pick: <T>(items: readonly T[]): T => items[int(items.length)]! };
}

/** Tuning drawn at random, so simulations cover fixed and adaptive batches, several credits and tight byte bounds. */
export function randomTuning(rand: () => number, int: (n: number) => number): Partial<SchedulerTuning> {
  return {
    batchesPerSlot: 1 + int(3),
    chunkSize: rand() < 0.5 ? 1 + int(12) : undefined,
    targetBatchMs: 4,
    maxBatchBytes: 64 + int(2000),
  };
}
