import {
  DEFAULT_LIMITS, MapScaleError, ProtocolError, RemoteProtocolError, clientHandshake,
  type DaemonMessage, type Message,
} from '@mapscale/protocol';
import { dialDaemon } from './transport.js';
import type { DaemonStatus } from './daemon-stats.js';

export interface StatusQuery {
  host: string;
  port: number;
  secret?: string;
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
  timeoutMs?: number;
}

/** Asks a daemon for its status over an authenticated connection (the same handshake coordinators use). */
export async function queryDaemonStatus(query: StatusQuery): Promise<DaemonStatus> {
  const timeoutMs = query.timeoutMs ?? 10_000;
  const label = `${query.host}:${query.port}`;
  const connection = await dialDaemon(query.host, query.port, timeoutMs, DEFAULT_LIMITS.preAuthFrameBytes, query.tls);
  const inbox: Message[] = [];
  let waiter: (() => void) | null = null;
  let closed: MapScaleError | null = null;
  connection.on('message', (message) => {
    inbox.push(message);
    waiter?.();
  });
  connection.on('close', (error) => {
    closed = error ?? new ProtocolError(`daemon ${label} closed the connection`);
    waiter?.();
  });
  const deadline = setTimeout(() => connection.destroy(), timeoutMs).unref();
  const receive = async (accept: (message: DaemonMessage) => boolean): Promise<DaemonMessage> => {
    for (;;) {
      const message = inbox.shift() as DaemonMessage | undefined;
      if (message) {
        if (message.type === 'error') throw new RemoteProtocolError(`daemon ${label} refused: ${message.message}`, message.code);
        if (accept(message)) return message;
        throw new ProtocolError(`daemon ${label} sent an unexpected "${message.type}" message`);
      }
      if (closed) throw closed;
      await new Promise<void>((resolve) => (waiter = resolve));
      waiter = null;
    }
  };
  try {
    await clientHandshake({ send: (m) => connection.send(m), receive }, query.secret, label);
    connection.send({ type: 'status-request' });
    const reply = await receive((m) => m.type === 'status');
    return (reply as unknown as { status: DaemonStatus }).status;
  } finally {
    clearTimeout(deadline);
    connection.end();
  }
}
