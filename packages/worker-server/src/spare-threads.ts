import { Worker } from 'node:worker_threads';
import { entryPath } from './entry.js';

/**
 * Instance threads started ahead of need. A thread spends tens of milliseconds loading its code
 * before it can restore a work function; keeping `count` of them ready takes that off a
 * session's setup (and off an instance's replacement, while a spare is left).
 */
export class SpareThreads {
  readonly #count: number;
  readonly #embedded: boolean;
  #ready: Worker[] = [];
  #closed = false;

  /**
   * `embedded`: for a daemon inside its coordinator's process. Its threads must not keep that process
   * alive (the coordinator does, while a map runs), and they start as a child daemon's would, without
   * the app's own Node flags (execArgv: an app run with `--input-type=module -e` cannot start a thread
   * from a file with it); NODE_OPTIONS applies to both alike.
   */
  constructor(count: number, { embedded = false }: { embedded?: boolean } = {}) {
    this.#count = count;
    this.#embedded = embedded;
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
    const worker = new Worker(entryPath('instance-thread'), this.#embedded ? { execArgv: [] } : undefined);
    if (this.#embedded) worker.unref();
    return worker;
  }

  /** Whether these are an embedded daemon's threads (see the constructor). */
  get embedded(): boolean {
    return this.#embedded;
  }
}
