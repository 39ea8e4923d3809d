import type { MapRun } from './map-run.js';
import type { SchedulerTuning } from './scheduler.js';

/** Fewest batches in flight per slot: one running, the next in hand. */
export const MIN_BATCHES_PER_SLOT = 2;

/**
 * Batches a slot may have in flight: enough that the worker never waits for the next. While one
 * runs, the answers to the batches before it and the requests for the ones after it are on the
 * wire. With a round trip of R and batches of B ms, that takes 1 + ceil(R / B) in flight, at least
 * 2, at most maxBatchesPerSlot, and the bytes bound (memory) applies on top. On loopback that is 2;
 * across a 40 ms link with 4 ms batches it is 11.
 */
export function creditFor(roundTripMs: number, batchMs: number | undefined, t: SchedulerTuning): number {
  if (t.batchesPerSlot !== undefined) return t.batchesPerSlot;
  const wanted = 1 + Math.ceil(roundTripMs / Math.max(batchMs ?? t.targetBatchMs, 0.05));
  return Math.min(t.maxBatchesPerSlot, Math.max(MIN_BATCHES_PER_SLOT, wanted));
}

/**
 * Jobs in a run's next batch: big enough that per-batch costs vanish (about targetBatchMs of
 * work), small enough to keep every slot busy to the end (a fair share of what is left) and frames
 * bounded in bytes. Before the first measurement, sizes ramp up geometrically from a few jobs.
 */
export function batchSizeFor(run: MapRun, slots: number, t: SchedulerTuning): number {
  if (t.chunkSize !== undefined) return t.chunkSize;
  const fairShare = Math.ceil(run.unassigned / Math.max(1, slots * (t.batchesPerSlot ?? MIN_BATCHES_PER_SLOT)));
  const byTime = run.perJobMs === undefined
    ? 4 * 2 ** Math.min(run.batchesSent, 12)
    : t.targetBatchMs / Math.max(run.perJobMs, 1e-6);
  const byBytes = run.perJobBytes ? t.maxBatchBytes / run.perJobBytes : Infinity;
  // The fair share shrinks towards the end of a map; below about a quarter of the target time a
  // batch costs more in round trips than it gains in balance, so it stops shrinking there.
  const floor = run.perJobMs === undefined ? 1 : t.targetBatchMs / 4 / Math.max(run.perJobMs, 1e-6);
  return Math.max(1, Math.floor(Math.min(Math.max(Math.min(byTime, fairShare), floor), byBytes, t.maxBatchJobs)));
}
