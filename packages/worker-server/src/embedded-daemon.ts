/**
 * The daemon for `new Processor(fn, N)` when its instance threads run in the app's own process
 * (`inProcess`): the same server as a local child daemon's — loopback, a free port, a one-off
 * secret, N instances, the same stop bounds — minus the process. The coordinator still talks to it
 * over loopback TCP and each instance over its own data connection, so nothing else changes; what it
 * gives up is the process boundary (see the README's "Local workers in the app's process").
 *
 * The caller starts the threads (`SpareThreads` with `embedded`, from `@mapscale/worker-server/threads`)
 * before importing this module, so their loading overlaps this one's. Nothing of the daemon keeps the
 * app alive: its threads, listening socket and connections are unref'd.
 */
import type { Logger } from 'pino';
import { startWorkerServer, type WorkerServer } from './server.js';
import type { SpareThreads } from './spare-threads.js';
import { LOCAL_STOP, localCacheDir } from './local-defaults.js';

export type { WorkerServer };

export interface EmbeddedDaemonOptions {
  workers: number;
  secret: string;
  maxFrameBytes?: number;
  logger: Logger;
}

/** Starts the server on `spares` (an embedded set of threads); resolves once it listens. */
export function startEmbeddedDaemon(spares: SpareThreads, { workers, secret, maxFrameBytes, logger }: EmbeddedDaemonOptions): Promise<WorkerServer> {
  if (!spares.embedded) throw new TypeError('an embedded daemon needs embedded threads: new SpareThreads(n, { embedded: true })');
  return startWorkerServer({
    host: '127.0.0.1',
    port: 0,
    workers,
    secret,
    maxFrameBytes,
    cacheDir: localCacheDir(logger),
    ...LOCAL_STOP,
    logger,
  }, spares);
}
