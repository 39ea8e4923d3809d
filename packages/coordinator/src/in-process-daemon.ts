import type { Logger } from 'pino';
import { LOCAL_STOP, SpareThreads } from '@mapscale/worker-server/threads';
import type { WorkerServer } from '@mapscale/worker-server/embedded';
import { LocalDaemonError, type LocalWorkers } from './local-daemon.js';

/**
 * The local workers of `new Processor(fn, N, { inProcess: true })`: a daemon embedded in this
 * process (@mapscale/worker-server/embedded), reached over loopback like a child daemon, with N
 * instance threads of this process. Its threads start here, synchronously, so they load their code
 * while this thread goes on (the Processor's checks of the work function, the daemon's own modules);
 * the server's modules are imported only when a Processor asks for local workers in-process.
 */
/** The longest an app that forgot shutdown() is kept alive for its instances' cleanup(): a local daemon's stop bounds. */
const BEFORE_EXIT_STOP_MS = LOCAL_STOP.stopGraceMs + LOCAL_STOP.stopDeadlineMs;

export class InProcessDaemon implements LocalWorkers {
  readonly secret: string;
  readonly #server: Promise<WorkerServer>;
  readonly #address: Promise<string>;
  #stopped: Promise<void> | null = null;

  constructor(workers: number, secret: string, logger: Logger, startTimeoutMs: number, maxFrameBytes?: number) {
    this.secret = secret;
    const spares = new SpareThreads(workers, { embedded: true });
    const log = logger.child({ component: 'local-daemon' });
    // As with a child daemon, its log is detail: what goes wrong reaches the app as typed errors.
    const daemonLog = log.isLevelEnabled('debug') ? log : log.child({}, { level: 'silent' });
    this.#server = import('@mapscale/worker-server/embedded')
      .then(({ startEmbeddedDaemon }) => startEmbeddedDaemon(spares, { workers, secret, maxFrameBytes, logger: daemonLog }))
      .catch(async (error: Error) => {
        await spares.close();
        throw new LocalDaemonError(`cannot start the in-process worker daemon: ${error.message}`, { cause: error });
      });
    this.#address = withTimeout(this.#server.then((server) => `127.0.0.1:${server.port}`), startTimeoutMs,
      () => new LocalDaemonError(`the in-process worker daemon did not start within ${startTimeoutMs} ms`));
    // Nobody may be awaiting the address when a start fails (shutdown before it); that is no unhandled rejection.
    this.#address.catch(() => {});
    process.once('beforeExit', this.#onBeforeExit);
  }

  /**
   * An app that returns without shutdown(): as a child daemon does when its app is gone, the server
   * stops, running cleanup() of every instance (bounded: LOCAL_STOP), and then the app exits. Only
   * while that runs does anything of this daemon keep the process alive.
   */
  readonly #onBeforeExit = () => {
    if (this.#stopped) return;
    const keepAlive = setInterval(() => {}, 1000);
    const deadline = setTimeout(() => clearInterval(keepAlive), BEFORE_EXIT_STOP_MS).unref();
    void this.stop().finally(() => {
      clearInterval(keepAlive);
      clearTimeout(deadline);
    });
  };

  /** This process: its instances are threads of the app. */
  get pid(): number {
    return process.pid;
  }

  get address(): Promise<string> {
    return this.#address;
  }

  /** Closes the server: cleanup() of any instance left (bounded as a local daemon's stop is), threads terminated. */
  stop(): Promise<void> {
    process.off('beforeExit', this.#onBeforeExit);
    this.#stopped ??= this.#server.then((server) => server.close(), () => {});
    return this.#stopped;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(error()), ms).unref();
    promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    }, (reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}
