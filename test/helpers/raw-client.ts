import { connect, type Socket } from 'node:net';
import { FrameDecoder, decodeMessage, encodeFrame, encodeMessage, type Message } from '@mapscale/protocol';

/** A bare TCP client for hostile-input tests: sends exactly the bytes it is given. */
export interface RawClient {
  socket: Socket;
  send(bytes: Uint8Array): void;
  sendMessage(message: Message): void;
  /** Messages the daemon sent, decoded. */
  received: Message[];
  /** Resolves when the daemon closes the connection (rejects after `timeoutMs`). */
  closed(timeoutMs?: number): Promise<void>;
}

export function rawConnect(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    const received: Message[] = [];
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.on('data', (chunk) => {
      try {
        decoder.push(chunk, (body) => received.push(decodeMessage(body)));
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.once('connect', () => resolve({
      socket,
      received,
      send: (bytes) => socket.write(bytes),
      sendMessage: (message) => socket.write(encodeFrame(encodeMessage(message))),
      closed: (timeoutMs = 10_000) => Promise.race([
        closed,
        new Promise<void>((_, fail) => setTimeout(() => fail(new Error(`daemon did not close within ${timeoutMs} ms`)), timeoutMs).unref()),
      ]),
    }));
    socket.once('error', reject);
  });
}
