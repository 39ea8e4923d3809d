import { Worker } from 'node:worker_threads';
import { serializeError, type SerializedError, type ShippedCode } from '@mapscale/protocol';
import type { FromInstance, ToInstance } from './instance-protocol.js';

const THREAD_ENTRY = new URL('./instance-thread.js', import.meta.url);

type ResultsFromInstance = Extract<FromInstance, { kind: 'results' }>;

/**
 * One worker instance: a thread holding one restored work function. The thread is the unit of
 * parallelism (CPU-bound jobs use every core) and of isolation (one session's state is its own).
 */
export class WorkerInstance {
  readonly slot: number;
  #worker: Worker;
  #setUp = false;
  #setupDone: Promise<unknown> = Promise.resolve();
  #exited = false;
  #waiters: ((message: FromInstance | null) => void)[] = [];

  constructor(slot: number, onResults: (slot: number, results: ResultsFromInstance) => void, onExit: (slot: number, error: Error) => void) {
    this.slot = slot;
    this.#worker = new Worker(THREAD_ENTRY, { workerData: { slot } });
    this.#worker.on('message', (message: FromInstance) => {
      if (message.kind === 'results') onResults(slot, message);
      else this.#waiters.shift()?.(message);
    });
    this.#worker.on('error', (error) => {
      this.#exited = true;
      this.#flushWaiters();
      onExit(slot, error);
    });
    this.#worker.on('exit', (code) => {
      if (this.#exited) return;
      this.#exited = true;
      this.#flushWaiters();
      onExit(slot, new Error(`worker instance thread exited with code ${code}`));
    });
  }

  get isSetUp(): boolean {
    return this.#setUp;
  }

  /** Restores the work function and runs setup(); resolves to the failure, or null. */
  async setup(code: ShippedCode, flushMs: number): Promise<SerializedError | null> {
    const request = this.#request({ kind: 'init', code, flushMs });
    this.#setupDone = request;
    const reply = await request;
    if (reply?.kind === 'ready') {
      this.#setUp = true;
      return null;
    }
    if (reply?.kind === 'setup-failed') return reply.error;
    return serializeError(new Error('worker instance thread exited during setup'));
  }

  /** Hands a batch to the thread; `payload` is copied to a buffer of its own and transferred. */
  runBatch(batch: number, payload: Uint8Array): void {
    const own = new Uint8Array(payload);
    this.#send({ kind: 'batch', batch, payload: own }, [own.buffer as ArrayBuffer]);
  }

  /** Runs cleanup() if setup succeeded; resolves to its failure, or null. Then ends the thread. */
  async cleanup(): Promise<SerializedError | null> {
    let failure: SerializedError | null = null;
    // A session closed mid-setup still owes cleanup() to the instances whose setup succeeds.
    await this.#setupDone;
    if (this.#setUp && !this.#exited) {
      const reply = await this.#request({ kind: 'cleanup' });
      if (reply?.kind === 'cleaned' && reply.error) failure = reply.error;
      if (reply === null) failure = serializeError(new Error('worker instance thread exited before cleanup finished'));
    }
    await this.terminate();
    return failure;
  }

  async terminate(): Promise<void> {
    this.#exited = true;
    this.#flushWaiters();
    await this.#worker.terminate();
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
