import { Worker } from 'node:worker_threads';

const THREAD_ENTRY = new URL('./instance-thread.js', import.meta.url);
const REFILL_DELAY_MS = 2_000;

/**
 * Instance threads started ahead of need. A thread spends tens of milliseconds loading its code
 * before it can restore a work function; keeping `count` of them ready takes that off every
 * session's setup (and off each replacement after a crash or timeout).
 */
export class SpareThreads {
  readonly #count: number;
  #ready: Worker[] = [];
  #closed = false;
  #refillTimer: NodeJS.Timeout | null = null;

  constructor(count: number) {
    this.#count = count;
    this.#refill();
  }

  /** A thread that has loaded (or is loading) its code; a fresh one if none is spare. */
  take(): Worker {
    const worker = this.#ready.shift() ?? this.#spawn();
    // Refill once the taker's setup is likely done: loading spares meanwhile would compete with it
    // for the same cores.
    if (!this.#refillTimer) {
      this.#refillTimer = setTimeout(() => {
        this.#refillTimer = null;
        this.#refill();
      }, REFILL_DELAY_MS);
      this.#refillTimer.unref();
    }
    return worker;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#refillTimer) clearTimeout(this.#refillTimer);
    const spares = this.#ready.splice(0);
    await Promise.all(spares.map((worker) => worker.terminate()));
  }

  #spawn(): Worker {
    return new Worker(THREAD_ENTRY);
  }

  #refill(): void {
    while (!this.#closed && this.#ready.length < this.#count) {
      const worker = this.#spawn();
      // A spare that dies unused is simply dropped; an error here is no session's business.
      worker.once('error', () => {});
      worker.once('exit', () => {
        this.#ready = this.#ready.filter((w) => w !== worker);
      });
      this.#ready.push(worker);
    }
  }
}
