import type { Worker } from 'node:worker_threads';
import { CleanupTimeoutError, serializeError, type DataEndpoint, type SerializedError, type ShippedCode } from '@mapscale/protocol';
import { COUNTERS, PROGRESS, publishCancel, publishHalt, type DataConfig, type FromInstance, type ToInstance } from './instance-protocol.js';

type ResultsFromInstance = Extract<FromInstance, { kind: 'results' }>;
export type OutputFromInstance = Extract<FromInstance, { kind: 'output' }>;
export type DataEventFromInstance = Extract<FromInstance, { kind: 'data-attached' | 'data-refused' | 'data-closed' }>;

/** What an instance tells its session. */
export interface InstanceEvents {
  /** Results that came through the main thread (none while a data connection is attached). */
  results: (slot: number, results: ResultsFromInstance) => void;
  death: (slot: number, death: InstanceDeath) => void;
  output: (slot: number, output: OutputFromInstance) => void;
  data: (slot: number, event: DataEventFromInstance) => void;
}

/** How an instance ended without being asked to, and the job it was running, if any. */
export interface InstanceDeath {
  reason: 'crashed' | 'timeout';
  batch?: number;
  jobOffset?: number;
  error: Error;
}

/**
 * One worker instance: a thread holding one restored work function. The thread is the unit of
 * parallelism (CPU-bound jobs use every core) and of isolation (one session's state is its own).
 * A job over its batch's time limit gets the thread terminated, which stops even a synchronous loop.
 */
export class WorkerInstance {
  readonly slot: number;
  #worker: Worker;
  #setUp = false;
  #setupDone: Promise<unknown> = Promise.resolve();
  #exited = false;
  #waiters: ((message: FromInstance | null) => void)[] = [];
  readonly #progress = new Int32Array(new SharedArrayBuffer(PROGRESS.length * Int32Array.BYTES_PER_ELEMENT));
  /** Jobs answered and jobs failed, bumped by the thread whichever way its results travel. */
  readonly #counters = new BigInt64Array(new SharedArrayBuffer(COUNTERS.length * BigInt64Array.BYTES_PER_ELEMENT));
  #watchdog: NodeJS.Timeout | null = null;
  #watchEvery = 0;
  /** Resolves once the thread has exited, whatever the reason. */
  readonly ended: Promise<void>;
  #lastJobsStarted = -1;
  #lastProgressAt = 0;

  constructor(
    slot: number,
    events: InstanceEvents,
    /** A thread from SpareThreads: loaded, or loading, and not yet initialised. */
    worker: Worker,
  ) {
    this.slot = slot;
    this.#worker = worker;
    this.ended = new Promise((resolve) => worker.once('exit', () => resolve()));
    const died = (reason: InstanceDeath['reason'], error: Error) => {
      if (this.#exited) return;
      this.#exited = true;
      this.#stopWatchdog();
      this.#flushWaiters();
      const batch = Atomics.load(this.#progress, PROGRESS.batch);
      events.death(slot, batch === 0 ? { reason, error } : { reason, error, batch, jobOffset: Atomics.load(this.#progress, PROGRESS.jobOffset) });
    };
    this.#worker.on('message', (message: FromInstance) => {
      switch (message.kind) {
        case 'results': return events.results(slot, message);
        case 'output': return events.output(slot, message);
        case 'watch': return this.#startWatchdog();
        case 'cleanup-started': return this.#cleanupStarted?.();
        case 'data-attached': case 'data-refused': case 'data-closed': return events.data(slot, message);
        default: this.#waiters.shift()?.(message);
      }
    });
    this.#worker.on('error', (error) => died('crashed', error));
    this.#worker.on('exit', (code) => died('crashed', new Error(`worker instance thread exited with code ${code}`)));
    this.#onTimeout = (error) => {
      died('timeout', error);
      void this.#worker.terminate();
    };
  }

  /** Leaves the process free to exit while this instance lives (an embedded daemon's threads). */
  unref(): void {
    this.#worker.unref();
  }

  #onTimeout: (error: Error) => void;

  get isSetUp(): boolean {
    return this.#setUp;
  }

  /** Jobs answered so far, and how many of them failed. */
  get counts(): { jobsDone: number; jobErrors: number } {
    return {
      jobsDone: Number(Atomics.load(this.#counters, COUNTERS.jobsDone)),
      jobErrors: Number(Atomics.load(this.#counters, COUNTERS.jobErrors)),
    };
  }

  /**
   * Restores the work function and runs setup(); resolves to the failure, or to the data endpoint
   * the thread offers (when `data` asks it to offer one and a port could be opened).
   */
  async setup(code: ShippedCode, flushMs: number, bundlePath?: string, data?: DataConfig): Promise<{ error: SerializedError } | { error: null; data?: DataEndpoint }> {
    const request = this.#request({
      kind: 'init', code, flushMs, bundlePath, data,
      progress: this.#progress.buffer as SharedArrayBuffer, counters: this.#counters.buffer as SharedArrayBuffer,
    });
    this.#setupDone = request;
    const reply = await request;
    if (reply?.kind === 'ready') {
      this.#setUp = true;
      return { error: null, data: reply.data };
    }
    if (reply?.kind === 'setup-failed') return { error: reply.error };
    return { error: serializeError(new Error('worker instance thread exited during setup')) };
  }

  /**
   * Hands a batch to the thread. An `owned` payload (its frame's buffer is used by nothing else) is
   * transferred as it is; any other is first copied into a buffer of its own.
   */
  runBatch(batch: number, payload: Uint8Array, timeoutMs?: number, owned = false): void {
    const own = owned && payload.buffer instanceof ArrayBuffer ? payload : new Uint8Array(payload);
    this.#send({ kind: 'batch', batch, payload: own, timeoutMs }, [own.buffer as ArrayBuffer]);
  }

  /**
   * Drops these batches if queued, and stops one that runs between its jobs. Through shared memory
   * first, which the thread reads between jobs even while a synchronous job keeps it from reading
   * messages; then as a message, which gets there whatever happened to the ring.
   */
  cancel(batches: number[]): void {
    if (this.#exited) return;
    for (const batch of batches) publishCancel(this.#progress, batch);
    this.#send({ kind: 'cancel', batches });
  }

  /** The session is over: every queued or arriving batch is dropped, a running one stops between jobs. */
  halt(): void {
    publishHalt(this.#progress);
  }

  /**
   * Runs cleanup() if setup succeeded, then ends the thread; resolves to the failure, or null.
   * Work still going (setup(), or a job: every batch is dropped by then, see halt) gets `jobGraceMs`
   * to end, then cleanup() gets `cleanupTimeoutMs`; past either, the thread is terminated and the
   * failure is a CleanupTimeoutError. So no session's end waits on user code forever.
   */
  async cleanup(bounds: CleanupBounds): Promise<SerializedError | null> {
    const failure = await this.#cleanupWithin(bounds);
    await this.terminate();
    return failure;
  }

  async #cleanupWithin({ jobGraceMs, cleanupTimeoutMs }: CleanupBounds): Promise<SerializedError | null> {
    const graceEnds = performance.now() + jobGraceMs;
    // A session closed mid-setup still owes cleanup() to the instances whose setup succeeds.
    if (await within(this.#setupDone, jobGraceMs) === OVERDUE) return timedOut(jobGraceMs, 'setup');
    if (!this.#setUp || this.#exited) return null;
    const started = new Promise<void>((resolve) => (this.#cleanupStarted = resolve));
    const cleaned = this.#request({ kind: 'cleanup' });
    if (await within(Promise.race([started, cleaned]), graceEnds - performance.now()) === OVERDUE) return timedOut(jobGraceMs, 'running job');
    const reply = await within(cleaned, cleanupTimeoutMs);
    if (reply === OVERDUE) return timedOut(cleanupTimeoutMs, 'cleanup');
    if (reply === null) return serializeError(new Error('worker instance thread exited before cleanup finished'));
    return reply.kind === 'cleaned' && reply.error ? reply.error : null;
  }

  /** Set while a cleanup waits for the thread to reach it (the thread says `cleanup-started`). */
  #cleanupStarted: (() => void) | null = null;

  async terminate(): Promise<void> {
    this.#exited = true;
    this.#stopWatchdog();
    this.#flushWaiters();
    await this.#worker.terminate();
  }

  /**
   * Samples the thread's job counter while it runs a batch with a time limit (the thread asks for
   * this with `watch`), at a tenth of the limit. A job is over time when the counter has not moved
   * for longer than the limit.
   */
  #startWatchdog(): void {
    const every = sampleEveryMs(Atomics.load(this.#progress, PROGRESS.limitMs));
    if (this.#watchdog && every === this.#watchEvery) return;
    if (this.#watchdog) clearInterval(this.#watchdog);
    else this.#lastProgressAt = performance.now();
    Atomics.store(this.#progress, PROGRESS.watching, 1);
    this.#watchEvery = every;
    this.#watchdog = setInterval(() => this.#check(), every);
    this.#watchdog.unref();
  }

  #check(): void {
    const now = performance.now();
    const started = Atomics.load(this.#progress, PROGRESS.jobsStarted);
    if (!this.#timedBatchRuns()) {
      // Nothing timed runs: stop, unless a timed batch started between the two reads (the thread
      // saw `watching` still 1 and did not ask again).
      Atomics.store(this.#progress, PROGRESS.watching, 0);
      if (!this.#timedBatchRuns()) return this.#stopWatchdog();
      Atomics.store(this.#progress, PROGRESS.watching, 1);
    }
    const limit = Atomics.load(this.#progress, PROGRESS.limitMs);
    if (started !== this.#lastJobsStarted) {
      this.#lastJobsStarted = started;
      this.#lastProgressAt = now;
      // A batch with another limit samples at its own pace.
      if (this.#watchEvery !== sampleEveryMs(limit)) this.#startWatchdog();
    } else if (limit > 0 && now - this.#lastProgressAt >= limit) {
      // (limit > 0: the batch may have ended since the check above.)
      this.#onTimeout(new Error(`job ran over its time limit of ${limit} ms`));
    }
  }

  #timedBatchRuns(): boolean {
    return Atomics.load(this.#progress, PROGRESS.batch) !== 0 && Atomics.load(this.#progress, PROGRESS.limitMs) !== 0;
  }

  #stopWatchdog(): void {
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
  }

  #send(message: ToInstance, transfer?: ArrayBuffer[]): void {
    if (!this.#exited) this.#worker.postMessage(message, transfer);
  }

  /** Replies come back in request order: the thread handles its queue strictly in sequence. */
  #request(message: ToInstance): Promise<FromInstance | null> {
    if (this.#exited) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#send(message);
    });
  }

  #flushWaiters(): void {
    for (const waiter of this.#waiters.splice(0)) waiter(null);
  }
}

/** How long an instance's end may wait on user code (see WorkerInstance.cleanup). */
export interface CleanupBounds {
  jobGraceMs: number;
  cleanupTimeoutMs: number;
}

const OVERDUE = Symbol('overdue');

/** `promise`'s value, or OVERDUE once `ms` have passed first (Infinity: no bound). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof OVERDUE> {
  if (!Number.isFinite(ms)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const overdue = new Promise<typeof OVERDUE>((resolve) => (timer = setTimeout(() => resolve(OVERDUE), Math.max(0, ms)).unref()));
  try {
    return await Promise.race([promise, overdue]);
  } finally {
    clearTimeout(timer);
  }
}

function timedOut(timeoutMs: number, waitingFor: 'cleanup' | 'running job' | 'setup'): SerializedError {
  const error = serializeError(new CleanupTimeoutError(timeoutMs, waitingFor));
  // Its stack is the daemon's timer: nothing of the user's.
  delete error.stack;
  return error;
}

/** How often a time limit of `limitMs` is checked: a tenth of it, within 5–250 ms. */
function sampleEveryMs(limitMs: number): number {
  return Math.min(250, Math.max(5, Math.floor((limitMs || 1000) / 10)));
}
