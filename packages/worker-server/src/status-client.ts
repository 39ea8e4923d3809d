import { DEFAULT_LIMITS, ProtocolError, clientHandshake, type DaemonMessage } from '@mapscale/protocol';
import { ReplyWaiter, explainHandshakeFailure, openConnection, refusalError, type TlsClientOptions } from '@mapscale/transport';
import type { DaemonStatus } from './daemon-stats.js';

export interface StatusQuery {
  host: string;
  port: number;
  secret?: string;
  tls?: TlsClientOptions;
  timeoutMs?: number;
  /** How the caller's user gives a secret, for the error when the daemon wants one (a CLI names its flag). */
  secretHint?: string;
}

/**
 * Asks a daemon for its status over an authenticated connection: the same dialling, handshake and
 * failure diagnosis coordinators use, so a TLS mismatch or a refused secret reads the same here.
 */
export async function queryDaemonStatus(query: StatusQuery): Promise<DaemonStatus> {
  const timeoutMs = query.timeoutMs ?? 10_000;
  const address = { host: query.host, port: query.port, label: `${query.host}:${query.port}` };
  const connection = await openConnection(address, timeoutMs, DEFAULT_LIMITS.preAuthFrameBytes, query.tls);
  // A command waits for nothing else: the open connection is what keeps it running.
  connection.ref();
  const replies = new ReplyWaiter<DaemonMessage>();
  connection.on('message', (message) => {
    const reply = message as DaemonMessage;
    if (reply.type === 'error') return replies.close(refusalError(reply.code, reply.message, address.label));
    if (!replies.offer(reply)) replies.close(new ProtocolError(`daemon ${address.label} sent an unexpected "${reply.type}" message`));
  });
  connection.on('close', (error) => replies.close(error ?? new ProtocolError(`daemon ${address.label} closed the connection`)));
  const deadline = setTimeout(() => connection.destroy(), timeoutMs).unref();
  try {
    try {
      await clientHandshake({ send: (m) => connection.send(m), receive: (accept) => replies.wait(accept) }, query.secret, address.label,
        query.secretHint ?? 'give the query a "secret"');
    } catch (error) {
      throw explainHandshakeFailure(error, address, query.tls !== undefined, false);
    }
    connection.send({ type: 'status-request' });
    const reply = await replies.wait((m) => m.type === 'status');
    return (reply as unknown as { status: DaemonStatus }).status;
  } finally {
    clearTimeout(deadline);
    connection.end();
  }
}
