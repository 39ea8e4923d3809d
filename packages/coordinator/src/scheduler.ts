import type { SerializedError } from '@mapscale/protocol';

/**
 * Which jobs go to which worker slot, what is in flight, what is sent again after a loss, and
 * where each result lands. No I/O and no clock of its own: the engine feeds it events (slot
 * added or lost, results arrived, run added or cancelled) and carries out the dispatches it returns.
 *
 * A run's jobs are handed out as contiguous ranges [start, end) called batches. A batch is in
 * flight on exactly one slot; its results may come back in several parts, each a prefix of what
 * is left. When a slot is lost, the unanswered rest of each of its batches goes back to its run's
 * retry list, which is served before fresh jobs: every job is answered exactly once.
 */

export type RunStatus = 'running' | 'succeeded' | 'failed';

export interface SchedulerTuning {
  /** Fixed jobs per batch; undefined adapts it from measurements. */
  chunkSize: number | undefined;
  /** Aim for batches that take about this long to run on a worker. */
  targetBatchMs: number;
  /** Upper bound of one batch's job payload, so frames stay bounded. */
  maxBatchBytes: number;
  /** Batches in flight per slot: one running, the next already in hand. */
  batchesPerSlot: number;
  /** Upper bound of the estimated job bytes in flight per slot (memory). */
  maxInFlightBytesPerSlot: number;
  maxBatchJobs: number;
}

export const DEFAULT_SCHEDULER_TUNING: Readonly<SchedulerTuning> = Object.freeze({
  chunkSize: undefined,
  targetBatchMs: 4,
  maxBatchBytes: 4 * 1024 * 1024,
  batchesPerSlot: 2,
  maxInFlightBytesPerSlot: 32 * 1024 * 1024,
  maxBatchJobs: 50_000,
});

export class MapRun {
  readonly id: number;
  readonly jobs: readonly unknown[];
  readonly results: unknown[];
  status: RunStatus = 'running';
  /** Jobs answered so far. */
  done = 0;
  /** Next job index never handed out. */
  next = 0;
  /** Ranges handed out once, lost with their worker, to be handed out again first. */
  readonly retry: [number, number][] = [];
  /** Measured cost per job, updated from each result part (EWMA). */
  perJobMs: number | undefined;
  /** Measured payload bytes per job (EWMA), from observeEncoded. */
  perJobBytes: number | undefined;
  batchesSent = 0;

  constructor(id: number, jobs: readonly unknown[]) {
    this.id = id;
    this.jobs = jobs;
    this.results = new Array(jobs.length);
  }

  get total(): number {
    return this.jobs.length;
  }

  get unassigned(): number {
    let n = this.total - this.next;
    for (const [start, end] of this.retry) n += end - start;
    return n;
  }
}

export interface Batch {
  readonly id: number;
  readonly slotId: number;
  readonly run: MapRun;
  readonly start: number;
  readonly end: number;
  /** Results received so far, counted from `start`. */
  received: number;
  readonly estimatedBytes: number;
}

interface SlotState {
  readonly id: number;
  readonly inFlight: Set<Batch>;
  inFlightBytes: number;
}

export interface JobFailure {
  run: MapRun;
  jobIndex: number;
  slotId: number;
  error: SerializedError;
}

export interface ResultOutcome {
  /** Runs whose every job is now answered. */
  completed: MapRun[];
  /** Runs that failed with this result part (first failing job per run). */
  failed: JobFailure[];
}

const EWMA_WEIGHT = 0.3;
const EMPTY_OUTCOME: ResultOutcome = Object.freeze({ completed: [], failed: [] }) as ResultOutcome;

export class Scheduler {
  readonly #tuning: SchedulerTuning;
  readonly #slots = new Map<number, SlotState>();
  readonly #batches = new Map<number, Batch>();
  #runs: MapRun[] = [];
  #nextBatchId = 1;
  /**
   * What the last runs measured: a new map of the same work function starts from it instead of
   * ramping up from nothing (most apps map similar jobs again and again).
   */
  #prior: { perJobMs: number | undefined; perJobBytes: number | undefined } = { perJobMs: undefined, perJobBytes: undefined };

  constructor(tuning: Partial<SchedulerTuning> = {}) {
    this.#tuning = { ...DEFAULT_SCHEDULER_TUNING, ...tuning };
  }

  get slotCount(): number {
    return this.#slots.size;
  }

  get activeRuns(): readonly MapRun[] {
    return this.#runs;
  }

  batch(id: number): Batch | undefined {
    return this.#batches.get(id);
  }

  addSlot(slotId: number): void {
    this.#slots.set(slotId, { id: slotId, inFlight: new Set(), inFlightBytes: 0 });
  }

  /** A slot is gone: the unanswered part of each of its batches goes back to its run. */
  removeSlot(slotId: number): Batch[] {
    const slot = this.#slots.get(slotId);
    if (!slot) return [];
    this.#slots.delete(slotId);
    const lost = [...slot.inFlight];
    for (const batch of lost) {
      this.#batches.delete(batch.id);
      const from = batch.start + batch.received;
      if (batch.run.status === 'running' && from < batch.end) batch.run.retry.push([from, batch.end]);
    }
    return lost;
  }

  addRun(run: MapRun): void {
    if (run.total === 0) {
      run.status = 'succeeded';
      return;
    }
    run.perJobMs ??= this.#prior.perJobMs;
    run.perJobBytes ??= this.#prior.perJobBytes;
    this.#runs.push(run);
  }

  /** The engine encoded `count` jobs of `run` into `bytes`: feeds batch sizing and memory bounds. */
  observeEncoded(run: MapRun, bytes: number, count: number): void {
    if (count <= 0) return;
    const sample = bytes / count;
    run.perJobBytes = run.perJobBytes === undefined ? sample : run.perJobBytes + EWMA_WEIGHT * (sample - run.perJobBytes);
    this.#prior.perJobBytes = run.perJobBytes;
  }

  /** Stops handing out a run's jobs; results still in flight for it will be dropped. */
  endRun(run: MapRun, status: Exclude<RunStatus, 'running'>): void {
    if (run.status !== 'running') return;
    run.status = status;
    run.retry.length = 0;
    run.next = run.total;
    this.#runs = this.#runs.filter((r) => r !== run);
  }

  /** Fills every slot's credit, one batch per slot per round, so idle slots all get work. */
  nextDispatches(): Batch[] {
    const out: Batch[] = [];
    const slots = [...this.#slots.values()].sort((a, b) => a.inFlight.size - b.inFlight.size);
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const slot of slots) {
        if (!this.#hasCredit(slot)) continue;
        const run = this.#runs.find((r) => r.status === 'running' && r.unassigned > 0);
        if (!run) return out;
        out.push(this.#dispatch(slot, run));
        progressed = true;
      }
    }
    return out;
  }

  /**
   * Results `offset .. offset+values.length` of a batch arrived. Stale parts (the batch's slot
   * was lost meanwhile) are ignored: those jobs went back to the run and will be answered again.
   */
  onResults(batchId: number, offset: number, values: unknown[], errors: [number, SerializedError][] | undefined, busyMs: number, final: boolean): ResultOutcome {
    const batch = this.#batches.get(batchId);
    if (!batch || offset !== batch.received) return EMPTY_OUTCOME;
    const run = batch.run;
    const count = values.length;
    batch.received += count;
    if (final || batch.start + batch.received >= batch.end) this.#retire(batch);
    if (count > 0 && busyMs >= 0) {
      const sample = busyMs / count;
      run.perJobMs = run.perJobMs === undefined ? sample : run.perJobMs + EWMA_WEIGHT * (sample - run.perJobMs);
      this.#prior.perJobMs = run.perJobMs;
    }
    if (run.status !== 'running') return EMPTY_OUTCOME;
    const base = batch.start + offset;
    if (errors && errors.length > 0) {
      const [first] = errors.reduce((a, b) => (b[0] < a[0] ? b : a));
      const error = errors.find((e) => e[0] === first)![1];
      this.endRun(run, 'failed');
      return { completed: [], failed: [{ run, jobIndex: base + first, slotId: batch.slotId, error }] };
    }
    const results = run.results;
    for (let i = 0; i < count; i++) results[base + i] = values[i];
    run.done += count;
    if (run.done >= run.total) {
      this.endRun(run, 'succeeded');
      return { completed: [run], failed: [] };
    }
    return EMPTY_OUTCOME;
  }

  #retire(batch: Batch): void {
    this.#batches.delete(batch.id);
    const slot = this.#slots.get(batch.slotId);
    if (slot && slot.inFlight.delete(batch)) slot.inFlightBytes -= batch.estimatedBytes;
  }

  #hasCredit(slot: SlotState): boolean {
    return slot.inFlight.size < this.#tuning.batchesPerSlot &&
      (slot.inFlight.size === 0 || slot.inFlightBytes < this.#tuning.maxInFlightBytesPerSlot);
  }

  #dispatch(slot: SlotState, run: MapRun): Batch {
    const size = this.#batchSize(run);
    let start: number;
    let end: number;
    const retry = run.retry[run.retry.length - 1];
    if (retry) {
      start = retry[0];
      end = Math.min(retry[1], start + size);
      if (end === retry[1]) run.retry.pop();
      else retry[0] = end;
    } else {
      start = run.next;
      end = Math.min(run.total, start + size);
      run.next = end;
    }
    const estimatedBytes = (run.perJobBytes ?? 0) * (end - start);
    const batch: Batch = { id: this.#nextBatchId++, slotId: slot.id, run, start, end, received: 0, estimatedBytes };
    this.#batches.set(batch.id, batch);
    slot.inFlight.add(batch);
    slot.inFlightBytes += estimatedBytes;
    run.batchesSent++;
    return batch;
  }

  /**
   * Big enough that per-batch costs vanish (about targetBatchMs of work), small enough to keep
   * every slot busy to the end (a fair share of what is left) and frames bounded in bytes.
   * Before the first measurement, sizes ramp up geometrically from a few jobs.
   */
  #batchSize(run: MapRun): number {
    const t = this.#tuning;
    if (t.chunkSize !== undefined) return t.chunkSize;
    const fairShare = Math.ceil(run.unassigned / Math.max(1, this.#slots.size * t.batchesPerSlot));
    const byTime = run.perJobMs === undefined
      ? 4 * 2 ** Math.min(run.batchesSent, 12)
      : t.targetBatchMs / Math.max(run.perJobMs, 1e-6);
    const byBytes = run.perJobBytes ? t.maxBatchBytes / run.perJobBytes : Infinity;
    return Math.max(1, Math.floor(Math.min(byTime, byBytes, fairShare, t.maxBatchJobs)));
  }
}
