import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { pino, type Logger } from 'pino';
import { DEFAULT_LIMITS, encodeFrame, encodeMessage } from '@mapscale/protocol';
import { FramedConnection, nodeTls } from '@mapscale/transport';
import { CoordinatorSession } from './session.js';
import { BundleCache } from './bundle-cache.js';
import { DaemonStats } from './daemon-stats.js';
import { SpareThreads } from './spare-threads.js';
import { ListenError, WorkerServerConfigError } from './errors.js';
import { isLoopbackHost, resolveWorkerServerOptions, tlsServerOptions, type ResolvedWorkerServerOptions, type WorkerServerOptions } from './options.js';

/** A running daemon. */
export interface WorkerServer {
  readonly host: string;
  readonly port: number;
  /** "host:port", as coordinators name it. */
  readonly address: string;
  readonly options: Readonly<Omit<ResolvedWorkerServerOptions, 'logger' | 'secret' | 'tls'>>;
  /** Sessions currently connected. */
  readonly sessionCount: number;
  /** The sessions not ended yet (their cleanup() may still run): what a stop that gives up names. */
  openSessions(): { session: number; peer: string; state: string }[];
  /** Stops accepting, runs cleanup() of every live instance, closes every connection. */
  close(): Promise<void>;
}

/**
 * Session states of a coordinator being served: it sent its work function. A status query never
 * gets past `authenticated`, so `status` does not count the connection that asks.
 */
const COORDINATOR_STATES: ReadonlySet<string> = new Set(['awaiting-bundle', 'setting-up', 'serving', 'shutting-down']);

/** Session states in which the peer has not proven anything yet. */
const PRE_AUTH_STATES: ReadonlySet<string> = new Set(['awaiting-hello', 'awaiting-auth']);

/** A refused peer gets this long to read its error frame before the socket is destroyed. */
const REFUSAL_LINGER_MS = 500;

/** Errors that only mean the client went away mid-handshake: noise, not news. */
const TLS_HANGUPS: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE']);

/** Starts a worker daemon; resolves once it is listening. */
export async function startWorkerServer(options: WorkerServerOptions = {}, startedSpares?: SpareThreads): Promise<WorkerServer> {
  const rootLogger = options.logger ?? pino({ level: 'info' });
  let resolved: ResolvedWorkerServerOptions;
  try {
    resolved = resolveWorkerServerOptions(options, rootLogger);
  } catch (error) {
    await startedSpares?.close();
    throw error;
  }
  const log = rootLogger.child({ component: 'worker-server' });
  /** Every session until it ends, with its peer's address. */
  const sessions = new Map<CoordinatorSession, string>();
  const bundles = new BundleCache(resolved.cacheDir, resolved.cacheMaxBytes, rootLogger);
  const spares = startedSpares ?? new SpareThreads(resolved.workers);
  const stats = new DaemonStats(() => spares.count, () => {
    let count = 0;
    for (const session of sessions.keys()) if (COORDINATOR_STATES.has(session.state)) count++;
    return count;
  });
  /** Every accepted TCP connection until it closes, TLS handshakes included: what the caps count. */
  const sockets = new Set<Socket>();
  let nextSessionId = 1;
  let closing: Promise<void> | null = null;

  const refusals = {
    total: refusalFrame(`too many connections: this daemon serves at most ${resolved.maxConnections} at once`),
    unauthenticated: refusalFrame(`too many connections in their handshake: this daemon allows at most ${resolved.maxUnauthenticated} at once`),
  };

  /** Which cap a new connection would break, if any. O(sessions), bounded by maxConnections. */
  const overCap = (): keyof typeof refusals | null => {
    if (sockets.size >= resolved.maxConnections) return 'total';
    let authenticated = 0;
    for (const session of sessions.keys()) if (!PRE_AUTH_STATES.has(session.state) && session.state !== 'closed') authenticated++;
    return sockets.size - authenticated >= resolved.maxUnauthenticated ? 'unauthenticated' : null;
  };

  const startSession = (socket: Socket) => {
    const connection = new FramedConnection(socket, DEFAULT_LIMITS.preAuthFrameBytes);
    if (spares.embedded) connection.unref();
    const session = new CoordinatorSession(nextSessionId++, connection, resolved, rootLogger.child({ component: 'session' }), bundles, stats, spares);
    sessions.set(session, connection.remoteAddress);
    stats.sessionsTotal++;
    void session.ended.then(() => {
      sessions.delete(session);
      // Only once no session is left: loading threads takes CPU from the jobs of any session still running.
      if (!closing && sessions.size === 0) spares.refill();
    });
  };

  const server: Server = resolved.tls ? createTls(resolved) : createTcpServer();
  // Runs for the raw TCP socket of every connection, before any byte of it is read (for TLS, its
  // handshake included), so the caps hold however far a connection gets.
  server.on('connection', (socket: Socket) => {
    // Errors of a refused or half-open socket must not become an uncaught exception.
    socket.on('error', () => {});
    if (closing) {
      socket.destroy();
      return;
    }
    const cap = overCap();
    if (cap) {
      log.warn({ event: 'connection-refused', reason: cap === 'total' ? 'max-connections' : 'max-unauthenticated', peer: `${socket.remoteAddress}:${socket.remotePort}` });
      if (resolved.tls) {
        // No plaintext frame can reach a TLS client, and a TLS handshake is what a flood would cost us.
        socket.destroy();
      } else {
        socket.resume();
        socket.end(refusals[cap]);
        setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
      }
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (!resolved.tls) startSession(socket);
  });
  if (resolved.tls) {
    server.on('secureConnection', (socket: TLSSocket) => {
      if (closing) socket.destroy();
      else startSession(socket);
    });
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket) => {
      const fields = { event: 'tls-failed', peer: `${socket.remoteAddress}:${socket.remotePort}`, code: error.code, reason: error.message };
      if (TLS_HANGUPS.has(error.code ?? '')) log.debug(fields);
      else log.warn(fields);
      // Node leaves a socket whose handshake timed out open; nothing more can happen on it.
      socket.destroy();
    });
  }
  if (resolved.insecure) warnInsecure(resolved, log);
  try {
    await listen(server, resolved);
  } catch (error) {
    await spares.close();
    throw error;
  }
  // Errors of accepted sockets are handled per connection; this is the listening socket, once it listens
  // (a failure to listen is the caller's error, not a log line as well).
  server.on('error', (error) => log.error({ event: 'server-error', err: error }));
  // An embedded daemon lives in its coordinator's process and must not keep it alive.
  if (spares.embedded) server.unref();
  const address = server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  log.info({
    event: 'listening', host: address.address, port: address.port, workers: resolved.workers, auth: resolved.secret !== undefined,
    tls: resolved.tls !== undefined, clientCertificates: resolved.tls?.ca !== undefined,
    maxConnections: resolved.maxConnections, maxUnauthenticated: resolved.maxUnauthenticated,
  });

  // Neither the secret nor the TLS key is ever handed out (or logged) past this point.
  const { logger: _logger, secret: _secret, tls: _tls, ...publicOptions } = resolved;
  return {
    host: address.address,
    port: address.port,
    address: `${host}:${address.port}`,
    options: Object.freeze(publicOptions),
    get sessionCount() {
      return sessions.size;
    },
    openSessions() {
      return [...sessions].map(([session, peer]) => ({ session: session.id, peer, state: session.state }));
    },
    close() {
      closing ??= (async () => {
        log.info({ event: 'stopping', sessions: sessions.size });
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...sessions.keys()].map((session) => session.stop(resolved.stopGraceMs)));
        await spares.close();
        // What is left never got a session (a TLS handshake under way): nothing to clean up.
        for (const socket of sockets) socket.destroy();
        await stopped;
        log.info({ event: 'stopped' });
      })();
      return closing;
    },
  };
}

function refusalFrame(message: string): Buffer {
  return encodeFrame(encodeMessage({ type: 'error', code: 'MS_TOO_MANY_CONNECTIONS', message }));
}

function createTls(options: ResolvedWorkerServerOptions): Server {
  try {
    return nodeTls().createServer(tlsServerOptions(options.tls!, options.handshakeTimeoutMs));
  } catch (error) {
    // OpenSSL's reason (bad PEM, key not matching the certificate); never the key itself.
    throw new WorkerServerConfigError(`cannot use the TLS certificate and key: ${(error as Error).message}`, { cause: error });
  }
}

function warnInsecure(options: ResolvedWorkerServerOptions, log: Logger): void {
  if (options.secret === undefined && !isLoopbackHost(options.host)) {
    log.error({
      event: 'insecure', host: options.host,
      reason: 'listening on a non-loopback address without a secret (--insecure): anyone who can reach this port can run any code as this user',
    });
  } else {
    log.warn({ event: 'insecure', host: options.host, reason: '--insecure was given; it changes nothing here (loopback address, or a secret is set)' });
  }
}

function listen(server: Server, options: ResolvedWorkerServerOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => reject(listenError(error, options));
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Why the daemon cannot listen, and what to do about it. */
function listenError(error: NodeJS.ErrnoException, options: ResolvedWorkerServerOptions): ListenError {
  const where = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const why: Record<string, string> = {
    EADDRINUSE: 'the port is in use (another daemon or program listens there): stop it, or give another --port (0 picks a free one)',
    EADDRNOTAVAIL: 'that is not an address of this host: give one of its addresses as --host',
    EACCES: 'permission denied (ports below 1024 need privileges): give a --port of 1024 or more',
  };
  return new ListenError(`cannot listen on ${where}: ${why[error.code ?? ''] ?? error.message}${error.code ? ` (${error.code})` : ''}`, { cause: error });
}
