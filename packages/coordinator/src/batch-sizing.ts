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
 *
 * A batch measured at under a quarter of targetBatchMs counts as that quarter: batches that short are
 * young (sizes still growing towards the target, a map's first few parts), and what they call for
 * is bigger batches, not more of them. Counted as they are, a first map's tiny batches asked for the
 * full 64 in flight, and that many tiny batches went out before the sizes had caught up (issue 13).
 */
export function creditFor(roundTripMs: number, batchMs: number | undefined, t: SchedulerTuning): number {
  if (t.batchesPerSlot !== undefined) return t.batchesPerSlot;
  const wanted = 1 + Math.ceil(roundTripMs / Math.max(batchMs ?? t.targetBatchMs, t.targetBatchMs / 4));
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

/** An increase of the cost per job is smoothed with this weight (as before): one stalled part must not shrink every batch. */
const RISE_WEIGHT = 0.3;
/** A fall is followed at once, but at most this far per part: batches grow at most this much per results part. */
const MAX_FALL = 4;

/**
 * Cost per job, from the workers' busy time per results part. In a fresh process the first parts are
 * a few jobs each whose time is mostly per-batch cost and code V8 has not optimized yet, so they
 * overstate a job's cost many times over; smoothed both ways, that estimate fell by 30% a part and
 * kept a fresh coordinator's first 100k map in ~70 tiny batches (issue 13). A cost that falls is
 * believed at once, up to 4x a part (so batches grow 4x a part until they reach targetBatchMs, a few
 * round trips); one that rises is smoothed, as before, so a stall does not shrink every batch.
 */
export class JobCost {
  #perJobMs: number | undefined;

  /** A part of `jobs` jobs took `busyMs`; returns the estimate, ms per job. */
  add(busyMs: number, jobs: number): number {
    const sample = busyMs / jobs;
    const current = this.#perJobMs;
    this.#perJobMs = current === undefined ? sample
      : sample < current ? Math.max(sample, current / MAX_FALL)
      : current + RISE_WEIGHT * (sample - current);
    return this.#perJobMs;
  }

  get perJobMs(): number | undefined {
    return this.#perJobMs;
  }

  /** An estimate that goes on from this one (a new run of the same Processor). */
  copy(): JobCost {
    const copy = new JobCost();
    copy.#perJobMs = this.#perJobMs;
    return copy;
  }
}
