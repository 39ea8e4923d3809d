import { createCodec, serializeError } from '@mapscale/protocol';
import { JobTooLargeError } from '../errors.js';
import type { Batch, ResultOutcome, Scheduler } from '../scheduler.js';
import type { SlotTable } from './slots.js';

/** Room for a jobs message's envelope (type, slot, batch, time limit) beside its payload. */
const JOBS_ENVELOPE_BYTES = 256;

/**
 * Carries the scheduler's dispatches out: encodes each batch's jobs, fits it to the daemon's frame
 * limit (halving a batch that does not fit, failing a single job that never can) and sends it on
 * its slot's connection; tells workers to drop batches nobody waits for any more.
 */
export class Dispatcher {
  readonly #codec = createCodec();
  readonly #scheduler: Scheduler;
  readonly #slots: SlotTable;
  /** Settles what the scheduler decided about a job that could not be sent. */
  readonly #settle: (outcome: ResultOutcome, address: string) => void;

  constructor(scheduler: Scheduler, slots: SlotTable, settle: (outcome: ResultOutcome, address: string) => void) {
    this.#scheduler = scheduler;
    this.#slots = slots;
    this.#settle = settle;
  }

  /** Hands out every batch the scheduler has credit for; the frames of one pump go out in one write per connection. */
  pump(): void {
    for (;;) {
      let tooLarge: { batch: Batch; size: number; limit: number }[] | undefined;
      for (const batch of this.#scheduler.nextDispatches()) {
        const refused = this.#send(batch);
        if (refused) (tooLarge ??= []).push({ batch, ...refused });
      }
      if (!tooLarge) return;
      // Halves go back to be dispatched again; a job too large alone fails as its own error. Either
      // way the scheduler changed, so hand out again.
      for (const { batch, size, limit } of tooLarge) {
        if (!this.#scheduler.splitBack(batch.id)) this.#failTooLarge(batch, size, limit);
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

  /** Sends a batch, unless its frame would be over the daemon's limit: then it says by how much. */
  #send(batch: Batch): { size: number; limit: number } | null {
    const ref = this.#slots.get(batch.slotId)!;
    const run = batch.run;
    const payload = this.#codec.pack(run.jobs(batch.start, batch.end));
    this.#scheduler.observeEncoded(run, payload.length, batch.end - batch.start);
    const limit = ref.session.daemonFrameBytes;
    if (payload.length + JOBS_ENVELOPE_BYTES > limit) return { size: payload.length, limit };
    ref.session.sendJobs(ref.slot, batch.id, payload, run.options.timeoutMs);
    return null;
  }

  /** A one-job batch that no daemon frame can carry is answered here, with that job's error. */
  #failTooLarge(batch: Batch, size: number, limit: number): void {
    const error = serializeError(new JobTooLargeError(size, limit));
    delete error.stack;
    const address = this.#slots.get(batch.slotId)?.endpoint.label ?? 'unknown';
    this.#settle(this.#scheduler.onUnsendable(batch.id, error), address);
  }
}
