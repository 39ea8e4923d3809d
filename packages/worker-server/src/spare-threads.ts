import { Worker } from 'node:worker_threads';
import { entryPath } from './entry.js';

/**
 * Instance threads started ahead of need. A thread spends tens of milliseconds loading its code
 * before it can restore a work function; keeping `count` of them ready takes that off a
 * session's setup (and off an instance's replacement, while a spare is left).
 */
export class SpareThreads {
  readonly #count: number;
  readonly #unref: boolean;
  #ready: Worker[] = [];
  #closed = false;

  /**
   * `unref`: for a daemon inside its coordinator's process (embedded), whose threads must not keep
   * that process alive; the coordinator keeps it alive while a map runs.
   */
  constructor(count: number, { unref = false }: { unref?: boolean } = {}) {
    this.#count = count;
    this.#unref = unref;
    this.refill();
  }

  /** A thread that has loaded (or is loading) its code; a fresh one if none is spare. */
  take(): Worker {
    return this.#ready.shift() ?? this.#spawn();
  }

  /**
   * Tops the spares up again. Called when the last session ends, not when one takes a thread:
   * loading threads while sessions run jobs would take CPU from those jobs.
   */
  refill(): void {
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

  /** Threads loaded (or loading) and waiting for a session. */
  get count(): number {
    return this.#ready.length;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const spares = this.#ready.splice(0);
    await Promise.all(spares.map((worker) => worker.terminate()));
  }

  #spawn(): Worker {
    const worker = new Worker(entryPath('instance-thread'));
    if (this.#unref) worker.unref();
    return worker;
  }

  /** Whether its threads leave the process free to exit (an embedded daemon's). */
  get unref(): boolean {
    return this.#unref;
  }
}
