import { connect } from 'node:net';
import { once } from 'node:events';
import { DEFAULT_LIMITS, clientHandshake, type DaemonMessage, type Message } from '@mapscale/protocol';
import { FramedConnection } from '@mapscale/transport';

/**
 * A coordinator written out by hand, message by message, on a real socket: for tests that must
 * do what `Processor` never would (cut one connection, present a wrong token).
 */
export interface ProtocolClient {
  readonly connection: FramedConnection;
  send(message: Message): void;
  /** The next message of this type; messages of other types stay queued. Rejects after `timeoutMs`. */
  next<T extends DaemonMessage['type']>(type: T, timeoutMs?: number): Promise<Extract<DaemonMessage, { type: T }>>;
  /** The next message that `accept` takes; messages it skips stay queued. */
  nextWhere(accept: (message: DaemonMessage) => boolean, timeoutMs?: number): Promise<DaemonMessage>;
  /** Resolves with the close reason's code (undefined: a clean close), within `timeoutMs`. */
  closed(timeoutMs?: number): Promise<string | undefined>;
}

export async function protocolClient(port: number, host = '127.0.0.1', maxFrameBytes = DEFAULT_LIMITS.maxFrameBytes): Promise<ProtocolClient> {
  const socket = connect({ host, port });
  await once(socket, 'connect');
  const connection = new FramedConnection(socket, maxFrameBytes);
  const inbox: DaemonMessage[] = [];
  let wake = () => {};
  connection.on('message', (message) => {
    inbox.push(message as DaemonMessage);
    wake();
  });
  const closed = new Promise<string | undefined>((resolve) => connection.once('close', (error) => resolve(error?.code)));
  const deadline = <T>(promise: Promise<T>, timeoutMs: number, what: string) => Promise.race([
    promise,
    new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs).unref()),
  ]);
  const nextWhere = async (accept: (message: DaemonMessage) => boolean, timeoutMs = 10_000, what = 'awaited message'): Promise<DaemonMessage> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const at = inbox.findIndex(accept);
      if (at >= 0) return inbox.splice(at, 1)[0]!;
      const got = inbox.map((m) => m.type).join(', ') || 'nothing';
      if (connection.closed) throw new Error(`connection closed while waiting for the ${what} (got ${got})`);
      if (Date.now() > until) throw new Error(`no ${what} within ${timeoutMs} ms (got ${got})`);
      await deadline(new Promise<void>((resolve) => (wake = resolve)), 100, 'message').catch(() => {});
    }
  };
  return {
    connection,
    send: (message) => connection.send(message),
    next: (type, timeoutMs) => nextWhere((m) => m.type === type, timeoutMs, `"${type}"`) as never,
    nextWhere,
    closed: (timeoutMs = 10_000) => deadline(closed, timeoutMs, 'close'),
  };
}

/** Handshake (no secret) and setup of `slots` instances of a plain function; resolves to setup-done. */
export async function setUpSession(client: ProtocolClient, source: string, slots: number) {
  await clientHandshake({ send: (m) => client.send(m), receive: (accept) => client.nextWhere(accept) }, undefined, 'test daemon');
  client.send({ type: 'setup', code: { kind: 'function', source }, slots });
  return client.next('setup-done');
}
