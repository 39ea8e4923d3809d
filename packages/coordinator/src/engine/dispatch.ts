import { JobError, JobSerializationError, JobTooLargeError } from '../errors.js';
import { encodeJobs, namesAJob } from '../job-encoding.js';
import type { Batch, ResultOutcome, Scheduler } from '../scheduler.js';
import type { SlotTable } from './slots.js';

/** Room for a jobs message's envelope (type, slot, batch, time limit) beside its payload. */
const JOBS_ENVELOPE_BYTES = 256;

/** Why a batch was not sent: a job in it cannot be encoded, or its frame is over the daemon's limit. */
type Unsendable = JobSerializationError | { size: number; limit: number };

/**
 * Carries the scheduler's dispatches out: encodes each batch's jobs (job-encoding.ts: a job that
 * cannot be encoded fails alone, never sent), fits it to the daemon's frame limit (halving a batch
 * that does not fit, failing a single job that never can) and sends it on its slot's connection;
 * tells workers to drop batches nobody waits for any more.
 */
export class Dispatcher {
  readonly #scheduler: Scheduler;
  readonly #slots: SlotTable;
  /** Settles what the scheduler decided about a job that could not be sent; `error`, when given, is what its caller gets. */
  readonly #settle: (outcome: ResultOutcome, address: string, error?: Error) => void;

  constructor(scheduler: Scheduler, slots: SlotTable, settle: (outcome: ResultOutcome, address: string, error?: Error) => void) {
    this.#scheduler = scheduler;
    this.#slots = slots;
    this.#settle = settle;
  }

  /** Hands out every batch the scheduler has credit for; the frames of one pump go out in one write per connection. */
  pump(): void {
    for (;;) {
      let unsent: { batch: Batch; why: Unsendable }[] | undefined;
      for (const batch of this.#scheduler.nextDispatches()) {
        const why = this.#send(batch);
        if (why) (unsent ??= []).push({ batch, why });
      }
      if (!unsent) return;
      // A job that cannot be encoded fails at once (its batch's other jobs go back); a batch too
      // large goes back in halves, and a job too large alone fails. Either way the scheduler
      // changed, so hand out again.
      for (const { batch, why } of unsent) {
        const unencodable = why instanceof JobSerializationError;
        if ((unencodable && namesAJob(why)) || !this.#scheduler.splitBack(batch.id)) {
          if (unencodable) this.#failUnencodable(batch, why);
          else this.#failTooLarge(batch, why.size, why.limit);
        }
      }
    }
  }

  /** Tells the workers holding `batches` to drop them (an abort, an early break, a failed run). */
  cancel(batches: readonly Batch[]): void {
    if (batches.length === 0) return;
    const bySlot = new Map<number, number[]>();
    for (const batch of batches) {
      const list = bySlot.get(batch.slotId);
      if (list) list.push(batch.id);
      else bySlot.set(batch.slotId, [batch.id]);
    }
    for (const [slotId, ids] of bySlot) {
      const ref = this.#slots.get(slotId);
      ref?.session.cancel(ref.slot, ids);
    }
  }

  /** Sends a batch, unless a job in it cannot be encoded or its frame would be over the daemon's limit: then it says why. */
  #send(batch: Batch): Unsendable | null {
    const ref = this.#slots.get(batch.slotId)!;
    const run = batch.run;
    const payload = encodeJobs(run.jobsView(batch.start, batch.end), batch.start);
    if (payload instanceof JobSerializationError) return payload;
    this.#scheduler.observeEncoded(run, payload.length, batch.end - batch.start);
    const limit = ref.session.daemonFrameBytes;
    if (payload.length + JOBS_ENVELOPE_BYTES > limit) return { size: payload.length, limit };
    ref.session.sendJobs(ref.slot, batch.id, payload, run.options.timeoutMs);
    return null;
  }

  /**
   * A job that cannot be encoded fails with the JobSerializationError itself (no worker saw it, so
   * it is not a JobError); a map that does not settle fails with it, so nothing of its batch is sent.
   */
  #failUnencodable(batch: Batch, error: JobSerializationError): void {
    const address = this.#slots.get(batch.slotId)?.endpoint.label ?? 'unknown';
    this.#settle(this.#scheduler.onUnsendable(batch.id, { name: error.name, message: error.message }, error.jobIndex), address, error);
  }

  /** A one-job batch that no daemon frame can carry is answered here, with that job's error. */
  #failTooLarge(batch: Batch, size: number, limit: number): void {
    const endpoint = this.#slots.get(batch.slotId)?.endpoint;
    const address = endpoint?.label ?? 'unknown';
    // Its advice names the limit that exists for these workers: the Processor's option for local ones.
    const tooLarge = new JobTooLargeError(size, limit, endpoint?.local ? 'local' : 'daemon');
    this.#settle(this.#scheduler.onUnsendable(batch.id, { name: tooLarge.name, message: tooLarge.message }), address, new JobError(batch.start, address, tooLarge));
  }
}
