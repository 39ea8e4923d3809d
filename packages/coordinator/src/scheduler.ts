import type { SerializedError } from '@mapscale/protocol';
import { MapRun, type RunOptions, type RunStatus, type RunView } from './map-run.js';
import type { ResultStore } from './result-stores.js';
import { RunQueue } from './run-queue.js';
import { batchSizeFor, creditFor, type JobCost } from './batch-sizing.js';

export { MapRun, type RunStatus, type RunView } from './map-run.js';

/**
 * Which jobs go to which worker slot, what is in flight, what is sent again after a loss, and
 * where each result lands. No I/O and no clock of its own: the engine feeds it events (slot added
 * or lost, results arrived, run added or ended) and carries out the dispatches it returns.
 *
 * A run's jobs are handed out as contiguous ranges [start, end) called batches. A batch is in
 * flight on exactly one slot; its results may come back in several parts, each a prefix of what
 * is left. When a slot is lost, the unanswered rest of each of its batches goes back to its run,
 * which hands it out again before fresh jobs: every job is answered exactly once.
 */

export interface SchedulerTuning {
  /** Fixed jobs per batch; undefined adapts it from measurements. */
  chunkSize: number | undefined;
  /** Aim for batches that take about this long to run on a worker. */
  targetBatchMs: number;
  /** Upper bound of one batch's job payload, so frames stay bounded. */
  maxBatchBytes: number;
  /**
   * Fixed batches in flight per slot; undefined sizes it per slot from measurements: one running,
   * the next in hand, and as many more as cover the round trip to that worker (see creditFor).
   */
  batchesPerSlot: number | undefined;
  /** Upper bound of the measured credit, whatever the round trip. */
  maxBatchesPerSlot: number;
  /** Upper bound of the estimated job bytes in flight per slot (memory). */
  maxInFlightBytesPerSlot: number;
  maxBatchJobs: number;
}

export const DEFAULT_SCHEDULER_TUNING: Readonly<SchedulerTuning> = Object.freeze({
  chunkSize: undefined,
  targetBatchMs: 4,
  maxBatchBytes: 4 * 1024 * 1024,
  batchesPerSlot: undefined,
  maxBatchesPerSlot: 64,
  maxInFlightBytesPerSlot: 32 * 1024 * 1024,
  maxBatchJobs: 50_000,
});

/** A batch as the scheduler hands it out: its run only to be read. */
export interface Batch {
  readonly id: number;
  readonly slotId: number;
  readonly run: RunView;
  readonly start: number;
  readonly end: number;
  /** Results received so far, counted from `start`. */
  received: number;
  /** Time the worker reported running this batch's jobs, summed over its parts. */
  busyMs: number;
  readonly estimatedBytes: number;
  /** Dispatched from the run's suspects: a loss while it runs may be its own fault. */
  readonly suspect: boolean;
}

/** The scheduler's own record of a batch, with the run it may change. */
interface OwnBatch extends Batch {
  readonly run: MapRun;
}

interface SlotState {
  readonly id: number;
  /** In dispatch order: the first is the one running, the others wait on the worker. */
  readonly inFlight: OwnBatch[];
  inFlightBytes: number;
  /** Measured time from sending a message to this slot's worker to its answer; 0 until measured. */
  roundTripMs: number;
  /** Measured time one batch takes to run on it (EWMA); undefined until a batch has finished. */
  batchMs: number | undefined;
}


/** Why a job failed: it threw, it kept killing its worker, or it ran over its time. */
export type FailureKind = 'error' | 'crash' | 'timeout';

export interface JobFailure {
  run: RunView;
  jobIndex: number;
  slotId: number;
  kind: FailureKind;
  /** The job's own error ('error'), or what the worker said when it died ('crash'), if anything. */
  error: SerializedError | undefined;
  /** For 'crash': how many times the job was running alone on a worker that died. */
  attempts?: number;
}

export interface ResultOutcome {
  /** Runs whose every job is now answered. */
  completed: RunView[];
  /** Failed jobs; a run that does not settle has failed with its first. */
  failed: JobFailure[];
  /** Batches dropped because their run failed: the engine tells their workers to drop them too. */
  cancelled: Batch[];
  /** The part broke the protocol (more results than jobs left, bad error indices): the sender is not to be trusted. */
  malformed?: boolean;
}

/** How a slot was lost, which decides who is blamed for the jobs it held. */
export type SlotLoss =
  /** The connection or the whole daemon went away: nobody knows which job, if any, was at fault. */
  | { kind: 'disconnected' }
  /** The instance died while running this job (known exactly from the worker). */
  | { kind: 'crashed'; batchId: number; jobOffset: number; error?: SerializedError }
  /** This job ran over its time and its instance was replaced. */
  | { kind: 'timeout'; batchId: number; jobOffset: number }
  /** The worker handed its jobs back (graceful stop, removal): nobody is blamed. */
  | { kind: 'retired' };

const EWMA_WEIGHT = 0.3;

/** Every RunView the scheduler is given back is one of its own MapRuns (openRun made it). */
function own(view: RunView): MapRun {
  return view as MapRun;
}

function emptyOutcome(): ResultOutcome {
  return { completed: [], failed: [], cancelled: [] };
}

/** Error entries must name distinct jobs of the part they came with. */
function validErrorIndices(errors: [number, SerializedError][], count: number): boolean {
  const seen = new Set<number>();
  for (const [at] of errors) {
    if (!Number.isInteger(at) || at < 0 || at >= count || seen.has(at)) return false;
    seen.add(at);
  }
  return true;
}

export class Scheduler {
  readonly #tuning: SchedulerTuning;
  readonly #slots = new Map<number, SlotState>();
  readonly #batches = new Map<number, OwnBatch>();
  /** Runs not yet ended, and per run its batches in flight: a run's end touches only its own. */
  readonly #runs = new Map<MapRun, Set<OwnBatch>>();
  /** Runs that may have jobs to hand out, oldest first. */
  readonly #queue = new RunQueue();
  #nextBatchId = 1;
  #nextRunId = 1;
  /**
   * What the last runs measured: a new map of the same work function starts from it instead of
   * ramping up from nothing (most apps map similar jobs again and again).
   */
  #prior: { jobCost: JobCost | undefined; perJobBytes: number | undefined } = { jobCost: undefined, perJobBytes: undefined };

  constructor(tuning: Partial<SchedulerTuning> = {}) {
    this.#tuning = { ...DEFAULT_SCHEDULER_TUNING, ...tuning };
  }

  get slotCount(): number {
    return this.#slots.size;
  }

  get activeRuns(): readonly MapRun[] {
    return [...this.#runs.keys()];
  }

  batch(id: number): Batch | undefined {
    return this.#batches.get(id);
  }

  addSlot(slotId: number): void {
    this.#slots.set(slotId, { id: slotId, inFlight: [], inFlightBytes: 0, roundTripMs: 0, batchMs: undefined });
  }

  /** The round trip to the slot's worker is now measured as `ms`. */
  observeRoundTrip(slotId: number, ms: number): void {
    const slot = this.#slots.get(slotId);
    if (slot && ms >= 0) slot.roundTripMs = ms;
  }

  /** Batches the slot may have in flight now: fixed, or measured (see #credit). */
  creditOf(slotId: number): number {
    const slot = this.#slots.get(slotId);
    return slot ? this.#credit(slot) : 0;
  }

  /**
   * A slot is gone. The unanswered rest of each of its batches goes back to its run; the job it
   * was running is blamed as `loss` says, which may fail that job (the outcome says which).
   */
  removeSlot(slotId: number, loss: SlotLoss = { kind: 'disconnected' }): ResultOutcome {
    const slot = this.#slots.get(slotId);
    const outcome = emptyOutcome();
    if (!slot) return outcome;
    this.#slots.delete(slotId);
    slot.inFlight.forEach((batch, position) => {
      this.#batches.delete(batch.id);
      const run = batch.run;
      this.#runs.get(run)?.delete(batch);
      const from = batch.start + batch.received;
      if (run.status !== 'running' || from >= batch.end) return;
      this.#queue.add(run);
      const running = position === 0;
      if (running && (loss.kind === 'crashed' || loss.kind === 'timeout') && loss.batchId === batch.id) {
        const culprit = Math.max(from, Math.min(batch.end - 1, batch.start + loss.jobOffset));
        if (from < culprit) run.retry.push([from, culprit]);
        if (culprit + 1 < batch.end) run.retry.push([culprit + 1, batch.end]);
        if (loss.kind === 'timeout') {
          this.#fail(run, culprit, slotId, 'timeout', undefined, outcome);
        } else {
          this.#blame(run, culprit, slotId, loss.error, outcome);
        }
      } else if (running && loss.kind === 'disconnected') {
        if (batch.end - from === 1 && (batch.suspect || batch.end - batch.start === 1)) {
          this.#blame(run, from, slotId, undefined, outcome);
        } else {
          run.suspects.push([from, batch.end]);
        }
      } else {
        run.retry.push([from, batch.end]);
      }
    });
    return outcome;
  }

  /** A job was running alone on a worker that died: once too often, and it fails. */
  #blame(run: MapRun, index: number, slotId: number, error: SerializedError | undefined, outcome: ResultOutcome): void {
    const attempts = (run.crashes.get(index) ?? 0) + 1;
    run.crashes.set(index, attempts);
    if (attempts > run.options.maxJobRetries) {
      this.#fail(run, index, slotId, 'crash', error, outcome, attempts);
    } else {
      run.suspects.push([index, index + 1]);
    }
  }

  /**
   * A new run (one map/imap call) over `jobs` (an array: the whole input; undefined: fed with
   * onJobRead and inputEnded), its results put in `results`. Only the scheduler changes it: the
   * caller gets a view.
   */
  openRun(jobs: readonly unknown[] | undefined, options: Partial<RunOptions>, results: ResultStore): { run: RunView; outcome: ResultOutcome } {
    const run = new MapRun(this.#nextRunId++, jobs, options, results);
    return { run, outcome: this.addRun(run) };
  }

  addRun(run: MapRun): ResultOutcome {
    if (run.perJobMs === undefined && this.#prior.jobCost) {
      run.jobCost = this.#prior.jobCost.copy();
      run.perJobMs = run.jobCost.perJobMs;
    }
    run.perJobBytes ??= this.#prior.perJobBytes;
    if (run.isComplete) {
      run.status = 'succeeded';
      return { completed: [run], failed: [], cancelled: [] };
    }
    this.#runs.set(run, new Set());
    this.#queue.add(run);
    return emptyOutcome();
  }

  /** The engine read `job` from a streamed run's input: it may be handed out. */
  onJobRead(view: RunView, job: unknown): void {
    const run = own(view);
    run.pushJob(job);
    if (run.status === 'running') this.#queue.add(run);
  }

  /**
   * The caller took results of a streamed run: with its backlog below the window again, the run
   * may hand out more jobs.
   */
  onConsumed(view: RunView): void {
    const run = own(view);
    if (run.status === 'running') this.#queue.add(run);
  }

  /** The run's input ended; it may be complete already. */
  inputEnded(view: RunView): ResultOutcome {
    const run = own(view);
    run.endInput();
    if (run.status === 'running' && run.isComplete) {
      this.endRun(run, 'succeeded');
      return { completed: [run], failed: [], cancelled: [] };
    }
    return emptyOutcome();
  }

  /** The engine encoded `count` jobs of `run` into `bytes`: feeds batch sizing and memory bounds. */
  observeEncoded(view: RunView, bytes: number, count: number): void {
    const run = own(view);
    if (count <= 0) return;
    const sample = bytes / count;
    run.perJobBytes = run.perJobBytes === undefined ? sample : run.perJobBytes + EWMA_WEIGHT * (sample - run.perJobBytes);
    this.#prior.perJobBytes = run.perJobBytes;
  }

  /**
   * Stops handing out a run's jobs. Its batches still in flight are forgotten (late results for
   * them are dropped) and returned, so the engine can tell the workers to drop them too.
   */
  endRun(view: RunView, status: Exclude<RunStatus, 'running'>): Batch[] {
    const run = own(view);
    if (run.status !== 'running') return [];
    run.status = status;
    run.retry.length = 0;
    run.suspects.length = 0;
    run.next = Math.max(run.next, run.fetched);
    const dropped = [...(this.#runs.get(run) ?? [])];
    this.#runs.delete(run);
    for (const batch of dropped) this.#retire(batch);
    return dropped;
  }

  /** Fills every slot's credit, one batch per slot per round, so idle slots all get work. */
  nextDispatches(): Batch[] {
    const out: Batch[] = [];
    // A call with nothing to hand out (after a map's last results, say) builds no slot list.
    if (!this.#queue.next()) return out;
    const slots = [...this.#slots.values()].sort((a, b) => a.inFlight.length - b.inFlight.length);
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const slot of slots) {
        if (!this.#hasCredit(slot)) continue;
        const run = this.#queue.next();
        if (!run) return out;
        out.push(this.#dispatch(slot, run));
        progressed = true;
      }
    }
    return out;
  }

  /**
   * Results `offset .. offset+values.length` of a batch arrived. Stale parts (the batch's slot was
   * lost meanwhile, or its run ended) are ignored: those jobs went back to the run, or nobody
   * waits for them. `errors` index into this part.
   */
  onResults(batchId: number, offset: number, values: unknown[], errors: [number, SerializedError][] | undefined, busyMs: number, final: boolean): ResultOutcome {
    const batch = this.#batches.get(batchId);
    if (!batch || offset !== batch.received) return emptyOutcome();
    const run = batch.run;
    const count = values.length;
    const size = batch.end - batch.start;
    if (offset + count > size || (errors && !validErrorIndices(errors, count))) {
      return { completed: [], failed: [], cancelled: [], malformed: true };
    }
    batch.received += count;
    if (busyMs > 0) batch.busyMs += busyMs;
    if (final || batch.received >= size) {
      this.#retire(batch);
      this.#observeBatchTime(batch);
      // A final part that stops short hands the rest back rather than leaving it unanswered.
      if (batch.received < size && run.status === 'running') {
        run.retry.push([batch.start + batch.received, batch.end]);
        this.#queue.add(run);
      }
    }
    if (count > 0) {
      run.perJobMs = run.jobCost.add(Math.max(busyMs, 0), count);
      this.#prior.jobCost = run.jobCost;
    }
    const outcome = emptyOutcome();
    if (run.status !== 'running' || count === 0) return outcome;
    const base = batch.start + offset;
    let failedAt = -1;
    if (errors && errors.length > 0) {
      const sorted = [...errors].sort((a, b) => a[0] - b[0]);
      if (!run.options.settle) {
        // Fail fast: the lowest failing job of this part is the run's error.
        const [first, error] = sorted[0]!;
        this.#fail(run, base + first, batch.slotId, 'error', error, outcome);
        return outcome;
      }
      for (const [at, error] of sorted) {
        outcome.failed.push({ run, jobIndex: base + at, slotId: batch.slotId, kind: 'error', error });
      }
      failedAt = 0;
    }
    const store = run.results;
    if (run.options.settle) {
      const failedSet = failedAt === 0 ? new Set(errors!.map(([at]) => at)) : null;
      for (let i = 0; i < count; i++) {
        if (!failedSet?.has(i)) store.put(base + i, { status: 'fulfilled', value: values[i] });
      }
    } else {
      store.putAll(base, values);
    }
    run.markAnswered(base, base + count);
    if (run.isComplete) {
      this.endRun(run, 'succeeded');
      outcome.completed.push(run);
    } else {
      // The window moved: more of a streamed input may be handed out.
      this.#queue.add(run);
    }
    return outcome;
  }

  /**
   * A batch could not be sent at all because of one of its jobs, `jobIndex` (default: its first): a
   * job alone over the worker's frame limit (see splitBack), or one that cannot be encoded. That job
   * fails with `error` as if it had thrown, nothing was timed, and the batch's other jobs go back to
   * be dispatched again (for a run that settles; any other run fails with this job).
   */
  onUnsendable(batchId: number, error: SerializedError, jobIndex?: number): ResultOutcome {
    const batch = this.#batches.get(batchId);
    const outcome = emptyOutcome();
    if (!batch) return outcome;
    this.#retire(batch);
    const run = batch.run;
    if (run.status !== 'running') return outcome;
    const at = jobIndex !== undefined && jobIndex >= batch.start && jobIndex < batch.end ? jobIndex : batch.start;
    // Taken from the end: the range before the job goes out first.
    if (at + 1 < batch.end) run.retry.push([at + 1, batch.end]);
    if (at > batch.start) run.retry.push([batch.start, at]);
    if (batch.end - batch.start > 1) this.#queue.add(run);
    this.#fail(run, at, batch.slotId, 'error', error, outcome);
    return outcome;
  }

  /**
   * A job failed for good. A settling run counts it answered (the engine stores the reason);
   * any other run fails with it.
   */
  #fail(run: MapRun, index: number, slotId: number, kind: FailureKind, error: SerializedError | undefined, outcome: ResultOutcome, attempts?: number): void {
    outcome.failed.push({ run, jobIndex: index, slotId, kind, error, attempts });
    if (!run.options.settle) {
      outcome.cancelled.push(...this.endRun(run, 'failed'));
      return;
    }
    run.markAnswered(index, index + 1);
    if (run.isComplete) {
      this.endRun(run, 'succeeded');
      outcome.completed.push(run);
    } else {
      this.#queue.add(run);
    }
  }

  #retire(batch: OwnBatch): void {
    this.#batches.delete(batch.id);
    this.#runs.get(batch.run)?.delete(batch);
    const slot = this.#slots.get(batch.slotId);
    if (!slot) return;
    const at = slot.inFlight.indexOf(batch);
    if (at >= 0) {
      slot.inFlight.splice(at, 1);
      slot.inFlightBytes -= batch.estimatedBytes;
    }
  }

  /**
   * A batch could not be sent as it is (its frame would be too large for the worker): it is
   * forgotten and its range goes back to its run in two halves, each dispatched anew, so what does
   * fit gets through and a job too large on its own ends up alone. False for a batch of one job.
   */
  splitBack(batchId: number): boolean {
    const batch = this.#batches.get(batchId);
    if (!batch || batch.end - batch.start < 2 || batch.received > 0) return false;
    this.#retire(batch);
    const run = batch.run;
    if (run.status === 'running') {
      const middle = batch.start + Math.floor((batch.end - batch.start) / 2);
      run.retry.push([middle, batch.end], [batch.start, middle]);
      this.#queue.add(run);
    }
    return true;
  }

  #observeBatchTime(batch: Batch): void {
    const slot = this.#slots.get(batch.slotId);
    if (!slot || batch.received === 0) return;
    slot.batchMs = slot.batchMs === undefined ? batch.busyMs : slot.batchMs + EWMA_WEIGHT * (batch.busyMs - slot.batchMs);
  }

  #credit(slot: SlotState): number {
    return creditFor(slot.roundTripMs, slot.batchMs, this.#tuning);
  }

  #hasCredit(slot: SlotState): boolean {
    return slot.inFlight.length < this.#credit(slot) &&
      (slot.inFlight.length === 0 || slot.inFlightBytes < this.#tuning.maxInFlightBytesPerSlot);
  }

  #dispatch(slot: SlotState, run: MapRun): OwnBatch {
    let start: number;
    let end: number;
    let suspect = false;
    const suspects = run.suspects[run.suspects.length - 1];
    const retry = run.retry[run.retry.length - 1];
    if (suspects) {
      // Halve a suspect range each time it goes out: a poison job ends up alone.
      suspect = true;
      start = suspects[0];
      end = start + Math.max(1, Math.ceil((suspects[1] - start) / 2));
      if (end >= suspects[1]) run.suspects.pop();
      else suspects[0] = end;
    } else if (retry) {
      start = retry[0];
      end = Math.min(retry[1], start + batchSizeFor(run, this.#slots.size, this.#tuning));
      if (end === retry[1]) run.retry.pop();
      else retry[0] = end;
    } else {
      start = run.next;
      end = Math.min(run.dispatchLimit, start + batchSizeFor(run, this.#slots.size, this.#tuning));
      run.next = end;
    }
    const estimatedBytes = (run.perJobBytes ?? 0) * (end - start);
    const batch: OwnBatch = { id: this.#nextBatchId++, slotId: slot.id, run, start, end, received: 0, busyMs: 0, estimatedBytes, suspect };
    this.#batches.set(batch.id, batch);
    this.#runs.get(run)?.add(batch);
    slot.inFlight.push(batch);
    slot.inFlightBytes += estimatedBytes;
    run.batchesSent++;
    return batch;
  }
}
