import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ProtocolError, createCodec, deserializeError, type MapScaleError, type ResultsMessage, type ShippedCode } from '@mapscale/protocol';
import { CleanupError, JobError, NoWorkersError, ProcessorClosedError } from './errors.js';
import { LocalDaemon } from './local-daemon.js';
import { MapRun, Scheduler, type Batch, type ResultOutcome } from './scheduler.js';
import { parseAddress, type DaemonAddress } from './transport.js';
import { WorkerSession } from './worker-session.js';
import type { ResolvedProcessorOptions } from './options.js';

/** A Processor's life; only 'running' takes new maps. */
export type EngineStatus = 'starting' | 'running' | 'closing' | 'closed';

interface SlotRef {
  session: WorkerSession;
  slot: number;
}

interface PendingRun {
  resolve: (results: unknown[]) => void;
  reject: (error: Error) => void;
}

/**
 * Carries out what the Scheduler decides: owns the worker sessions (and local daemons), encodes
 * batches, decodes results, settles each map's promise. Processor is its thin public face.
 */
export class Engine {
  #status: EngineStatus = 'starting';
  readonly #options: ResolvedProcessorOptions;
  readonly #log: Logger;
  readonly #code: ShippedCode;
  readonly #codec = createCodec();
  readonly #scheduler: Scheduler;
  readonly #sessions: WorkerSession[] = [];
  readonly #slots = new Map<number, SlotRef>();
  readonly #sessionSlots = new Map<WorkerSession, number[]>();
  readonly #pending = new Map<MapRun, PendingRun>();
  readonly #lost: { address: string; reason: Error }[] = [];
  #localDaemon: LocalDaemon | null = null;
  #nextSlotId = 1;
  #nextRunId = 1;
  #ready: Promise<void>;
  #shutdown: Promise<void> | null = null;
  /** Sockets and child processes are unref'd; this ref'd timer keeps the app alive only while a caller awaits us. */
  #keepAlive: NodeJS.Timeout | null = null;
  #busy = 0;
  readonly #inProgress = new Set<Promise<unknown[]>>();
  #forced = false;

  constructor(code: ShippedCode, workers: number | readonly DaemonAddress[], options: ResolvedProcessorOptions) {
    this.#code = code;
    this.#options = options;
    this.#log = options.logger.child({ component: 'engine' });
    this.#scheduler = new Scheduler({ chunkSize: options.chunkSize });
    this.#ready = this.#start(workers);
    // Failures surface through map(); an unobserved start failure must not crash the app.
    this.#ready.catch(() => {});
  }

  get status(): EngineStatus {
    return this.#status;
  }

  get workerCount(): number {
    return this.#slots.size;
  }

  async #start(workers: number | readonly DaemonAddress[]): Promise<void> {
    let addresses: DaemonAddress[];
    let secret = this.#options.secret;
    if (typeof workers === 'number') {
      secret = randomBytes(32).toString('base64url');
      this.#localDaemon = new LocalDaemon(workers, secret, this.#options.logger, this.#options.localStartTimeoutMs);
      addresses = [parseAddress(await this.#localDaemon.address)];
    } else {
      addresses = [...workers];
    }
    const sessions = addresses.map((address) => new WorkerSession(address, {
      secret, connectTimeoutMs: this.#options.connectTimeoutMs, logger: this.#options.logger,
    }));
    this.#sessions.push(...sessions);
    const opened = await Promise.allSettled(sessions.map((session) => this.#open(session)));
    const failure = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) throw failure.reason;
    if (this.#status === 'starting') this.#status = 'running';
  }

  async #open(session: WorkerSession): Promise<void> {
    session.on('results', (message) => this.#onResults(session, message));
    session.on('lost', (reason) => this.#onLost(session, reason));
    const slots = await session.open(this.#code);
    const ids: number[] = [];
    for (let slot = 0; slot < slots; slot++) {
      const id = this.#nextSlotId++;
      this.#slots.set(id, { session, slot });
      this.#scheduler.addSlot(id);
      ids.push(id);
    }
    this.#sessionSlots.set(session, ids);
    this.#log.info({ event: 'worker-joined', worker: session.address.label, slots });
    this.#pump();
  }

  /** Runs `task` with the process held alive: the caller awaits it, so the app must not exit meanwhile. */
  async #whileBusy<T>(task: () => Promise<T>): Promise<T> {
    if (this.#busy++ === 0) this.#keepAlive = setInterval(() => {}, 1 << 30);
    try {
      return await task();
    } finally {
      if (--this.#busy === 0) clearInterval(this.#keepAlive!);
    }
  }

  /**
   * A map counts as running from the moment it is called: shutdown() waits for it even while its
   * jobs are still being collected or the workers are still starting.
   */
  map(jobs: Promise<readonly unknown[]>): Promise<unknown[]> {
    if (this.#status === 'closing' || this.#status === 'closed') {
      jobs.catch(() => {});
      return Promise.reject(new ProcessorClosedError('this Processor was shut down; create a new one'));
    }
    const result = this.#whileBusy(() => this.#map(jobs));
    this.#inProgress.add(result);
    const forget = () => this.#inProgress.delete(result);
    result.then(forget, forget);
    return result;
  }

  async #map(jobsPromise: Promise<readonly unknown[]>): Promise<unknown[]> {
    const jobs = await jobsPromise;
    await this.#ready;
    if (this.#forced) throw new ProcessorClosedError('the Processor was shut down while this map waited to start');
    const run = new MapRun(this.#nextRunId++, jobs);
    if (run.total === 0) return [];
    if (this.#slots.size === 0) throw new NoWorkersError(this.#lost);
    return new Promise((resolve, reject) => {
      this.#pending.set(run, { resolve, reject });
      this.#scheduler.addRun(run);
      this.#pump();
    });
  }

  /** Hands out every batch the scheduler has credit for; all writes of one pump share a tick (corked). */
  #pump(): void {
    for (const batch of this.#scheduler.nextDispatches()) this.#send(batch);
  }

  #send(batch: Batch): void {
    const ref = this.#slots.get(batch.slotId)!;
    const run = batch.run;
    const payload = this.#codec.pack(run.jobs.slice(batch.start, batch.end));
    this.#scheduler.observeEncoded(run, payload.length, batch.end - batch.start);
    ref.session.sendJobs(ref.slot, batch.id, payload);
  }

  #onResults(session: WorkerSession, message: ResultsMessage): void {
    const batch = this.#scheduler.batch(message.batch);
    const ref = batch && this.#slots.get(batch.slotId);
    if (!batch || !ref || ref.session !== session || ref.slot !== message.slot) {
      return; // a part for a batch already given up on (its slot was lost): already re-dispatched
    }
    let values: unknown;
    try {
      values = this.#codec.unpack(message.payload);
    } catch (error) {
      values = error;
    }
    if (!Array.isArray(values) || message.offset + values.length > batch.end - batch.start) {
      session.destroy();
      this.#onLost(session, new ProtocolError(`daemon ${session.address.label} sent malformed results for batch ${message.batch}`));
      return;
    }
    const outcome = this.#scheduler.onResults(message.batch, message.offset, values, message.errors, message.busyMs, message.final);
    this.#settle(outcome);
    this.#pump();
  }

  #settle(outcome: ResultOutcome): void {
    for (const run of outcome.completed) {
      this.#pending.get(run)?.resolve(run.results);
      this.#pending.delete(run);
    }
    for (const failure of outcome.failed) {
      const ref = this.#slots.get(failure.slotId);
      const address = ref ? ref.session.address.label : 'unknown';
      this.#pending.get(failure.run)?.reject(new JobError(failure.jobIndex, address, deserializeError(failure.error)));
      this.#pending.delete(failure.run);
    }
  }

  #onLost(session: WorkerSession, reason: MapScaleError): void {
    const ids = this.#sessionSlots.get(session) ?? [];
    this.#sessionSlots.delete(session);
    if (ids.length === 0) return;
    this.#lost.push({ address: session.address.label, reason });
    for (const id of ids) {
      this.#scheduler.removeSlot(id);
      this.#slots.delete(id);
    }
    this.#log.warn({ event: 'worker-lost', worker: session.address.label, code: reason.code, reason: reason.message });
    if (this.#slots.size === 0) {
      const error = new NoWorkersError(this.#lost);
      for (const run of [...this.#pending.keys()]) {
        this.#scheduler.endRun(run, 'failed');
        this.#pending.get(run)!.reject(error);
        this.#pending.delete(run);
      }
      return;
    }
    this.#pump();
  }

  /**
   * Lets running maps finish (unless `force`, which rejects them), then runs cleanup() on every
   * worker instance, closes every session and stops local daemons. Cleanup failures reject.
   */
  shutdown(force = false): Promise<void> {
    this.#shutdown ??= this.#whileBusy(() => this.#close(force));
    return this.#shutdown;
  }

  async #close(force: boolean): Promise<void> {
    this.#status = 'closing';
    if (force) {
      this.#forced = true;
      const error = new ProcessorClosedError('the Processor was shut down while this map ran');
      for (const [run, pending] of this.#pending) {
        this.#scheduler.endRun(run, 'failed');
        pending.reject(error);
      }
      this.#pending.clear();
    }
    await Promise.allSettled(this.#inProgress);
    await this.#ready.catch(() => {});
    const failures: { workerAddress: string; error: Error }[] = [];
    await Promise.all(this.#sessions.map(async (session) => {
      try {
        for (const { slot, error } of await session.shutdown()) failures.push({ workerAddress: `${session.address.label}#${slot}`, error });
      } catch (error) {
        this.#log.warn({ event: 'shutdown-incomplete', worker: session.address.label, reason: (error as Error).message });
        session.destroy();
      }
    }));
    await this.#localDaemon?.stop();
    this.#status = 'closed';
    if (failures.length > 0) throw new CleanupError(failures);
  }
}
