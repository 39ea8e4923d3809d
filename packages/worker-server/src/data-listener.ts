import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { AuthenticationError, DEFAULT_LIMITS, ProtocolError, type DataEndpoint, type MapScaleError } from '@mapscale/protocol';
import { DATA_KEEPALIVE_MS, FramedConnection, nodeTls } from '@mapscale/transport';
import { HandshakeTimeoutError } from './errors.js';
import { tlsServerOptions } from './options.js';
import type { DataConfig } from './instance-protocol.js';

/** Connections at once that have not yet presented the token: only one is ever expected. */
const MAX_PENDING = 4;
const TOKEN_BYTES = 32;

export interface DataListenerEvents {
  /** The coordinator presented the token: the connection is this instance's, at the full frame limit. */
  attached: (connection: FramedConnection) => void;
  /** A connection was turned away (wrong token, wrong first message, too slow). */
  refused: (peer: string, error: MapScaleError) => void;
}

/**
 * Where an instance thread offers its own data connection, so jobs and results skip the daemon's
 * main thread. It listens on a fresh port of the daemon's address for one connection that presents
 * a one-off token the coordinator got over its authenticated control connection, then stops
 * listening. The same pre-auth rules as the daemon's port hold here: frames of at most 16 KiB until
 * the token is checked (in constant time), a deadline, a cap on connections not yet attached, TLS
 * (and client certificates) exactly as the daemon is configured. Unused, it closes after
 * `handshakeTimeoutMs`: the slot is then served through the control connection.
 */
export class DataListener {
  readonly #server: Server;
  readonly #token = randomBytes(TOKEN_BYTES);
  readonly #pending = new Set<FramedConnection>();
  readonly #config: DataConfig;
  readonly #events: DataListenerEvents;
  #closed = false;
  #window: NodeJS.Timeout | null = null;

  private constructor(config: DataConfig, events: DataListenerEvents) {
    this.#config = config;
    this.#events = events;
    // The daemon port's own TLS settings: they were checked when it started.
    this.#server = config.tls ? nodeTls().createServer(tlsServerOptions(config.tls, config.handshakeTimeoutMs)) : createTcpServer();
    // Counted on the raw socket, before any byte (or TLS handshake) is spent on it.
    this.#server.on('connection', (socket: Socket) => {
      socket.on('error', () => {});
      if (this.#closed || this.#pending.size >= MAX_PENDING) socket.destroy();
      else if (!config.tls) this.#admit(socket);
    });
    if (config.tls) {
      this.#server.on('secureConnection', (socket: TLSSocket) => (this.#closed ? socket.destroy() : this.#admit(socket)));
      this.#server.on('tlsClientError', (_error, socket: TLSSocket) => socket.destroy());
    }
  }

  /**
   * Listens (on a free port of `config.ports`, when given, else on any free port); resolves to the
   * endpoint to announce, or null when no port could be opened (the slot is then served through the
   * daemon port).
   */
  static async open(config: DataConfig, events: DataListenerEvents): Promise<{ listener: DataListener; endpoint: DataEndpoint } | null> {
    const listener = new DataListener(config, events);
    const port = await listener.#listen(config.ports);
    if (port === null) {
      listener.close();
      return null;
    }
    // After listening, a server error (none is expected) just ends the offer; the slot keeps the daemon port.
    listener.#server.on('error', () => listener.close());
    listener.#window = setTimeout(() => listener.close(), config.handshakeTimeoutMs);
    return { listener, endpoint: { port, token: new Uint8Array(listener.#token) } };
  }

  /** Tries the range from a random point, so threads starting together do not all race for its first port. */
  async #listen(range: [number, number] | undefined): Promise<number | null> {
    const [low, high] = range ?? [0, 0];
    const size = high - low + 1;
    const first = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      const port = await new Promise<number | null>((resolve) => {
        const onError = () => resolve(null);
        this.#server.once('error', onError);
        this.#server.listen(range ? low + ((first + i) % size) : 0, this.#config.host, () => {
          this.#server.off('error', onError);
          resolve((this.#server.address() as AddressInfo).port);
        });
      });
      if (port !== null) return port;
    }
    return null;
  }

  /** Stops listening and drops connections still presenting themselves; an attached one is not touched. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#window) clearTimeout(this.#window);
    if (this.#server.listening) this.#server.close();
    for (const connection of this.#pending) connection.destroy();
    this.#pending.clear();
  }

  #admit(socket: Socket): void {
    const connection = new FramedConnection(socket, DEFAULT_LIMITS.preAuthFrameBytes);
    const peer = connection.remoteAddress;
    this.#pending.add(connection);
    const refuse = (error: MapScaleError) => {
      this.#events.refused(peer, error);
      connection.fail(error);
    };
    const deadline = setTimeout(() => refuse(new HandshakeTimeoutError(`no attach within ${this.#config.handshakeTimeoutMs} ms`)), this.#config.handshakeTimeoutMs);
    connection.on('close', () => {
      clearTimeout(deadline);
      this.#pending.delete(connection);
    });
    connection.once('message', (message) => {
      clearTimeout(deadline);
      if (this.#closed) return connection.destroy();
      if (message.type !== 'attach' || message.slot !== this.#config.slot) {
        return refuse(new ProtocolError(`a data connection must begin with "attach" for slot ${this.#config.slot}, not "${message.type}"`));
      }
      if (message.token.byteLength !== TOKEN_BYTES || !timingSafeEqual(message.token, this.#token)) {
        return refuse(new AuthenticationError('wrong data connection token'));
      }
      this.#pending.delete(connection);
      this.close();
      connection.maxFrameBytes = this.#config.maxFrameBytes;
      connection.keepAlive(DATA_KEEPALIVE_MS);
      connection.send({ type: 'attached', slot: this.#config.slot });
      this.#events.attached(connection);
    });
  }
}
