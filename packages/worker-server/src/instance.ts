import type { Worker } from 'node:worker_threads';
import { serializeError, type SerializedError, type ShippedCode } from '@mapscale/protocol';
import { PROGRESS, type FromInstance, type ToInstance } from './instance-protocol.js';


type ResultsFromInstance = Extract<FromInstance, { kind: 'results' }>;
export type OutputFromInstance = Extract<FromInstance, { kind: 'output' }>;

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
  /** Time limits of the batches handed over and not yet finished. */
  readonly #timeouts = new Map<number, number>();
  #watchdog: NodeJS.Timeout | null = null;
  #lastJobsStarted = -1;
  #lastProgressAt = 0;

  constructor(
    slot: number,
    onResults: (slot: number, results: ResultsFromInstance) => void,
    onDeath: (slot: number, death: InstanceDeath) => void,
    onOutput: (slot: number, output: OutputFromInstance) => void = () => {},
    /** A thread from SpareThreads: loaded, or loading, and not yet initialised. */
    worker: Worker,
  ) {
    this.slot = slot;
    this.#worker = worker;
    const died = (reason: InstanceDeath['reason'], error: Error) => {
      if (this.#exited) return;
      this.#exited = true;
      this.#stopWatchdog();
      this.#flushWaiters();
      const batch = Atomics.load(this.#progress, PROGRESS.batch);
      onDeath(slot, batch === 0 ? { reason, error } : { reason, error, batch, jobOffset: Atomics.load(this.#progress, PROGRESS.jobOffset) });
    };
    this.#worker.on('message', (message: FromInstance) => {
      if (message.kind === 'results') {
        if (message.final) this.#timeouts.delete(message.batch);
        onResults(slot, message);
      } else if (message.kind === 'output') {
        onOutput(slot, message);
      } else {
        this.#waiters.shift()?.(message);
      }
    });
    this.#worker.on('error', (error) => died('crashed', error));
    this.#worker.on('exit', (code) => died('crashed', new Error(`worker instance thread exited with code ${code}`)));
    this.#onTimeout = (error) => {
      died('timeout', error);
      void this.#worker.terminate();
    };
  }

  #onTimeout: (error: Error) => void;

  get isSetUp(): boolean {
    return this.#setUp;
  }

  /** Restores the work function and runs setup(); resolves to the failure, or null. */
  async setup(code: ShippedCode, flushMs: number, bundlePath?: string): Promise<SerializedError | null> {
    const request = this.#request({ kind: 'init', code, flushMs, progress: this.#progress.buffer as SharedArrayBuffer, bundlePath });
    this.#setupDone = request;
    const reply = await request;
    if (reply?.kind === 'ready') {
      this.#setUp = true;
      return null;
    }
    if (reply?.kind === 'setup-failed') return reply.error;
    return serializeError(new Error('worker instance thread exited during setup'));
  }

  /**
   * Hands a batch to the thread. An `owned` payload (its frame's buffer is used by nothing else) is
   * transferred as it is; any other is first copied into a buffer of its own.
   */
  runBatch(batch: number, payload: Uint8Array, timeoutMs?: number, owned = false): void {
    if (timeoutMs !== undefined) {
      this.#timeouts.set(batch, timeoutMs);
      this.#startWatchdog();
    }
    const own = owned && payload.buffer instanceof ArrayBuffer ? payload : new Uint8Array(payload);
    this.#send({ kind: 'batch', batch, payload: own }, [own.buffer as ArrayBuffer]);
  }

  /** Drops queued batches and stops a running one between jobs. */
  cancel(batches: number[] | 'all'): void {
    if (batches === 'all') this.#timeouts.clear();
    else for (const batch of batches) this.#timeouts.delete(batch);
    this.#send({ kind: 'cancel', batches });
  }

  /** Runs cleanup() if setup succeeded; resolves to its failure, or null. Then ends the thread. */
  async cleanup(graceMs = Infinity): Promise<SerializedError | null> {
    let failure: SerializedError | null = null;
    // A session closed mid-setup still owes cleanup() to the instances whose setup succeeds.
    await this.#setupDone;
    if (this.#setUp && !this.#exited) {
      let timer: NodeJS.Timeout | undefined;
      const overdue = new Promise<'overdue'>((resolve) => {
        if (Number.isFinite(graceMs)) timer = setTimeout(() => resolve('overdue'), graceMs).unref();
      });
      const reply = await Promise.race([this.#request({ kind: 'cleanup' }), overdue]);
      clearTimeout(timer);
      if (reply === 'overdue') failure = serializeError(new Error(`cleanup did not finish within ${graceMs} ms (the instance was still busy or cleanup hung)`));
      else if (reply?.kind === 'cleaned' && reply.error) failure = reply.error;
      else if (reply === null) failure = serializeError(new Error('worker instance thread exited before cleanup finished'));
    }
    await this.terminate();
    return failure;
  }

  async terminate(): Promise<void> {
    this.#exited = true;
    this.#stopWatchdog();
    this.#flushWaiters();
    await this.#worker.terminate();
  }

  /**
   * Samples the thread's job counter. A job is over time when the counter has not moved for
   * longer than its batch's limit while that batch runs. Runs only while limits are in play.
   */
  #startWatchdog(): void {
    if (this.#watchdog) return;
    const smallest = Math.min(...this.#timeouts.values());
    const every = Math.min(250, Math.max(5, Math.floor(smallest / 10)));
    this.#lastProgressAt = performance.now();
    this.#watchdog = setInterval(() => this.#check(), every);
    this.#watchdog.unref();
  }

  #check(): void {
    const now = performance.now();
    const started = Atomics.load(this.#progress, PROGRESS.jobsStarted);
    const batch = Atomics.load(this.#progress, PROGRESS.batch);
    if (started !== this.#lastJobsStarted || batch === 0) {
      this.#lastJobsStarted = started;
      this.#lastProgressAt = now;
      if (this.#timeouts.size === 0) this.#stopWatchdog();
      return;
    }
    const limit = this.#timeouts.get(batch);
    if (limit !== undefined && now - this.#lastProgressAt >= limit) {
      this.#onTimeout(new Error(`job ran over its time limit of ${limit} ms`));
    }
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
