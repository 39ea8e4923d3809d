import { createServer, type AddressInfo, type Server } from 'node:net';
import { pino, type Logger } from 'pino';
import { DEFAULT_LIMITS } from '@mapscale/protocol';
import { FramedConnection } from './transport.js';
import { CoordinatorSession } from './session.js';
import { resolveWorkerServerOptions, type ResolvedWorkerServerOptions, type WorkerServerOptions } from './options.js';

/** A running daemon. */
export interface WorkerServer {
  readonly host: string;
  readonly port: number;
  /** "host:port", as coordinators name it. */
  readonly address: string;
  readonly options: Readonly<Omit<ResolvedWorkerServerOptions, 'logger' | 'secret'>>;
  /** Sessions currently connected. */
  readonly sessionCount: number;
  /** Stops accepting, runs cleanup() of every live instance, closes every connection. */
  close(): Promise<void>;
}

/** Starts a worker daemon; resolves once it is listening. */
export async function startWorkerServer(options: WorkerServerOptions = {}): Promise<WorkerServer> {
  const rootLogger = options.logger ?? pino({ level: 'info' });
  const resolved = resolveWorkerServerOptions(options, rootLogger);
  const log = rootLogger.child({ component: 'worker-server' });
  const sessions = new Set<CoordinatorSession>();
  let nextSessionId = 1;
  let closing: Promise<void> | null = null;

  const server: Server = createServer((socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    const connection = new FramedConnection(socket, DEFAULT_LIMITS.preAuthFrameBytes);
    const session = new CoordinatorSession(nextSessionId++, connection, resolved, rootLogger.child({ component: 'session' }));
    sessions.add(session);
    void session.ended.then(() => sessions.delete(session));
  });
  // Errors of accepted sockets are handled per connection; this is the listening socket.
  server.on('error', (error) => log.error({ event: 'server-error', err: error }));

  await listen(server, resolved, log);
  const address = server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  log.info({ event: 'listening', host: address.address, port: address.port, workers: resolved.workers, auth: resolved.secret !== undefined });

  const { logger: _logger, secret: _secret, ...publicOptions } = resolved;
  return {
    host: address.address,
    port: address.port,
    address: `${host}:${address.port}`,
    options: Object.freeze(publicOptions),
    get sessionCount() {
      return sessions.size;
    },
    close() {
      closing ??= (async () => {
        log.info({ event: 'stopping', sessions: sessions.size });
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...sessions].map((session) => session.stop(resolved.stopGraceMs)));
        await stopped;
        log.info({ event: 'stopped' });
      })();
      return closing;
    },
  };
}

function listen(server: Server, options: ResolvedWorkerServerOptions, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      log.error({ event: 'listen-failed', host: options.host, port: options.port, err: error });
      reject(error);
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
