import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  AuthenticationError, ConnectError, ConnectionClosedError, DEFAULT_LIMITS, MapScaleError, ProtocolError,
  ProtocolVersionError, RemoteProtocolError, clientHandshake, deserializeError,
  type DaemonMessage, type Message, type ResultsMessage, type SerializedError, type ShippedCode, type WelcomeMessage,
  type SlotLostMessage, type OutputMessage, type SetupDoneMessage, type DataEndpoint, peerFrameLimit,
} from '@mapscale/protocol';
import { DATA_KEEPALIVE_MS, explainHandshakeFailure, openConnection, type DaemonAddress, type FramedConnection } from '@mapscale/transport';
import type { ProcessorTlsOptions } from './options.js';
import { HeartbeatTimeoutError, SetupError } from './errors.js';

/** Pings whose least round trip is taken as the round trip (about the last 8 s at the default pace). */
const ROUND_TRIP_SAMPLES = 8;

export type WorkerSessionState = 'connecting' | 'handshaking' | 'setting-up' | 'ready' | 'shutting-down' | 'closed';

export interface WorkerSessionEvents {
  results: [ResultsMessage];
  /** An instance died; the daemon is replacing it. */
  'slot-lost': [SlotLostMessage];
  /** A replaced instance is set up again. */
  'slot-ready': [number];
  /** A replaced instance failed its setup and stays out of service. */
  'slot-failed': [number, Error];
  /** User code printed something on a worker. */
  output: [OutputMessage];
  /** The daemon is stopping: its jobs in flight will not be answered. */
  goodbye: [string];
  /** The connection ended while it was expected to stay up. */
  lost: [MapScaleError];
  /** The TCP (and TLS) connection is up: the host is reachable; the handshake follows. */
  connected: [];
  /** A ping was answered after this many ms: what the scheduler sizes its credit from. */
  'round-trip': [number];
}

export interface WorkerSessionOptions {
  secret: string | undefined;
  connectTimeoutMs: number;
  logger: Logger;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  forwardOutput: boolean;
  /** TLS to this daemon; undefined: plain TCP. */
  tls?: ProcessorTlsOptions;
  /** Largest frame accepted once authenticated. Default: DEFAULT_LIMITS.maxFrameBytes. */
  maxFrameBytes?: number;
  /** Attach to the data endpoints the daemon offers (default true). */
  dataConnections?: boolean;
}

/** Maps a daemon's error frame to the error class the coordinator's caller expects. */
function errorFromDaemon(code: string, message: string, address: string): MapScaleError {
  const text = `daemon ${address} refused: ${message}`;
  switch (code) {
    case 'MS_AUTH_FAILED': return new AuthenticationError(text);
    case 'MS_PROTOCOL_VERSION': return new ProtocolVersionError(text);
    default: return new RemoteProtocolError(text, code);
  }
}

/**
 * The coordinator's side of one daemon connection: handshake, setup, a stream of result
 * messages, shutdown. Which jobs go where is not its business (see Scheduler).
 */
export class WorkerSession extends EventEmitter<WorkerSessionEvents> {
  readonly address: DaemonAddress;
  #options: WorkerSessionOptions;
  #log: Logger;
  #state: WorkerSessionState = 'connecting';
  #connection: FramedConnection | null = null;
  #slots = 0;
  #welcome: WelcomeMessage | null = null;
  #pendingError: MapScaleError | undefined;
  /** Why the connection closed, once it has. */
  #closeReason: MapScaleError | undefined;
  #heartbeat: NodeJS.Timeout | null = null;
  #lastHeard = 0;
  /** Aborted when the session is given up while its connection is still being opened. */
  readonly #opening = new AbortController();
  /** The ping waiting for its pong, if any. */
  #ping: { seq: number; sentAt: number } | null = null;
  #roundTripMs: number | undefined;
  #roundTrips: number[] = [];
  #daemonFrameBytes: number = DEFAULT_LIMITS.maxFrameBytes;
  #lastPingSeq = 0;
  /** Per slot, its data connection once attached: its jobs go there, straight to the instance's thread. */
  readonly #data = new Map<number, FramedConnection>();
  /** Per slot, the data connection being opened, to give up when the slot is lost or the session ends. */
  readonly #attaching = new Map<number, AbortController>();
  /** The one reply this side is waiting for, if any: handshake, setup and shutdown are request/response. */
  #waiter: { accept: (message: DaemonMessage) => boolean; reject: (error: MapScaleError) => void } | null = null;

  constructor(address: DaemonAddress, options: WorkerSessionOptions) {
    super();
    this.address = address;
    this.#options = options;
    this.#log = options.logger.child({ component: 'worker-session', worker: address.label });
  }

  get state(): WorkerSessionState {
    return this.#state;
  }

  get slots(): number {
    return this.#slots;
  }

  /** The largest frame the daemon accepts (as it announced at setup): every jobs frame must fit. */
  get daemonFrameBytes(): number {
    return this.#daemonFrameBytes;
  }

  /** The round trip to the daemon (the least of the last pings), once one was answered. */
  get roundTripMs(): number | undefined {
    return this.#roundTripMs;
  }

  get hostname(): string | undefined {
    return this.#welcome?.hostname;
  }

  /** Slots whose jobs travel on a data connection of their own. */
  get directSlots(): number {
    return this.#data.size;
  }

  /**
   * Connects, authenticates both ways, ships the work function (and its bundle, if the daemon asks
   * for it) and waits for every instance's setup().
   */
  async open(shipping: Promise<{ code: ShippedCode; bundle?: { hash: string; source: Uint8Array } }>): Promise<number> {
    const connection = await openConnection(this.address, this.#options.connectTimeoutMs, DEFAULT_LIMITS.preAuthFrameBytes, this.#options.tls, this.#opening.signal);
    this.#connection = connection;
    connection.unref();
    this.emit('connected');
    connection.on('message', (message) => this.#onMessage(message));
    connection.on('close', (error) => this.#onClose(error));
    this.#state = 'handshaking';
    const deadline = setTimeout(() => {
      this.#rejectWaiter(new ConnectError(`daemon ${this.address.label} did not finish the handshake within ${this.#options.connectTimeoutMs} ms`));
      connection.destroy();
    }, this.#options.connectTimeoutMs).unref();
    try {
      await this.#handshake(connection);
    } catch (error) {
      throw explainHandshakeFailure(error, this.address, this.#options.tls !== undefined, this.#welcome !== null);
    } finally {
      clearTimeout(deadline);
    }
    this.#state = 'setting-up';
    // Measured now, while the daemon is idle, the round trip sizes the first batches' credit.
    this.#sendPing(connection);
    // The work function may still be being bundled: the connection and handshake did not wait for it.
    const { code, bundle } = await shipping;
    // The connection may have closed meanwhile, with nobody waiting for a reply to hear it.
    if (this.#closeReason) throw this.#closeReason;
    connection.send({
      type: 'setup', code, slots: this.#welcome!.slots, forwardOutput: this.#options.forwardOutput,
      maxFrameBytes: this.#options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes,
    });
    let reply = await this.#reply((m) => m.type === 'setup-done' || m.type === 'setup-failed' || m.type === 'need-bundle');
    if (reply.type === 'need-bundle') {
      if (!bundle || reply.hash !== bundle.hash) throw new ProtocolError(`daemon ${this.address.label} asked for a bundle this coordinator did not offer`);
      this.#log.debug({ event: 'bundle-sent', hash: bundle.hash, bytes: bundle.source.length });
      connection.send({ type: 'bundle', hash: bundle.hash, source: bundle.source });
      reply = await this.#reply((m) => m.type === 'setup-done' || m.type === 'setup-failed');
    }
    if (reply.type === 'setup-failed') {
      throw new SetupError(`${this.address.label}#${reply.slot}`, deserializeError(reply.error));
    }
    const done = reply as SetupDoneMessage;
    this.#slots = done.slots;
    this.#daemonFrameBytes = peerFrameLimit(done.maxFrameBytes);
    this.#state = 'ready';
    this.#startHeartbeat(connection);
    this.#log.debug({ event: 'ready', slots: this.#slots });
    if (Array.isArray(done.data)) done.data.forEach((endpoint, slot) => this.#attach(slot, endpoint));
    return this.#slots;
  }

  /**
   * Opens `slot`'s data connection in the background; until it is attached (or if it never is: a
   * firewall, say) the slot's jobs go through the daemon's port, so nothing waits for it.
   */
  #attach(slot: number, endpoint: DataEndpoint | null | undefined): void {
    if (this.#options.dataConnections === false || !isDataEndpoint(endpoint) || slot >= this.#slots) return;
    this.#detach(slot);
    const attempt = new AbortController();
    this.#attaching.set(slot, attempt);
    const address = { host: this.address.host, port: endpoint.port, label: `${this.address.label} (slot ${slot}'s data port ${endpoint.port})` };
    const frameBytes = this.#options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes;
    const adopt = (connection: FramedConnection): boolean => {
      if (this.#attaching.get(slot) !== attempt || this.#state !== 'ready') return false;
      this.#attaching.delete(slot);
      this.#data.set(slot, connection);
      // It may idle for long between maps (a NAT forgets idle flows) and cannot be pinged while its instance runs a job.
      connection.keepAlive(DATA_KEEPALIVE_MS);
      connection.on('close', (error) => {
        if (this.#data.get(slot) !== connection) return;
        // The daemon reports the slot lost (its batches here dropped) and offers a new endpoint.
        this.#data.delete(slot);
        this.#log.debug({ event: 'data-connection-closed', slot, reason: error?.message });
      });
      this.#log.debug({ event: 'data-attached', slot, port: endpoint.port });
      return true;
    };
    openConnection(address, this.#options.connectTimeoutMs, frameBytes, this.#options.tls, attempt.signal)
      .then((connection) => attachAs(connection, slot, endpoint.token, this.#options.connectTimeoutMs, attempt.signal, adopt,
        (message) => this.#onDataMessage(slot, connection, message)))
      .catch((error: Error) => {
        if (this.#attaching.get(slot) === attempt) this.#attaching.delete(slot);
        if (attempt.signal.aborted || this.#state !== 'ready') return;
        this.#log.warn({ event: 'data-connection-failed', slot, reason: error.message, hint: 'its jobs go through the daemon port instead' });
      });
  }

  /** Forgets `slot`'s data connection (and any attempt at one). */
  #detach(slot: number): void {
    this.#attaching.get(slot)?.abort();
    this.#attaching.delete(slot);
    this.#data.get(slot)?.destroy();
    this.#data.delete(slot);
  }

  #detachAll(): void {
    for (const slot of [...this.#attaching.keys(), ...this.#data.keys()]) this.#detach(slot);
  }

  #onDataMessage(slot: number, connection: FramedConnection, message: Message): void {
    if (this.#data.get(slot) !== connection) return;
    const daemonMessage = message as DaemonMessage;
    if (daemonMessage.type === 'results' && daemonMessage.slot === slot) {
      if (this.#state === 'ready') this.emit('results', daemonMessage);
      return;
    }
    if (daemonMessage.type === 'output' && daemonMessage.slot === slot) {
      this.emit('output', daemonMessage);
      return;
    }
    if (daemonMessage.type === 'error') {
      this.#log.warn({ event: 'data-connection-error', slot, code: daemonMessage.code, reason: daemonMessage.message });
      connection.destroy();
      return;
    }
    connection.fail(new ProtocolError(`daemon ${this.address.label} sent an unexpected "${daemonMessage.type}" on slot ${slot}'s data connection`));
  }

  async #handshake(connection: FramedConnection): Promise<void> {
    this.#welcome = await clientHandshake({
      send: (message) => connection.send(message),
      receive: (accept) => this.#reply(accept),
      warn: (detail) => this.#log.warn({ event: 'node-version-differs', detail }),
    }, this.#options.secret, this.address.label);
    connection.maxFrameBytes = this.#options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes;
  }

  sendJobs(slot: number, batch: number, payload: Uint8Array, timeoutMs?: number): void {
    (this.#data.get(slot) ?? this.#connection)?.send({ type: 'jobs', slot, batch, payload, timeoutMs });
  }

  cancel(slot: number, batches: number[]): void {
    // On the path its jobs took: a cancel that overtook them would find nothing to drop.
    if (this.#state === 'ready') (this.#data.get(slot) ?? this.#connection)?.send({ type: 'cancel', slot, batches });
  }

  /**
   * Pings at a steady pace; any message counts as a sign of life. The daemon's main thread answers
   * pings even while every instance is busy, so a slow job never looks like a dead daemon, and a
   * stopped or cut-off one is found within heartbeatTimeoutMs.
   */
  #startHeartbeat(connection: FramedConnection): void {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.#options;
    this.#lastHeard = performance.now();
    this.#heartbeat = setInterval(() => {
      const silentFor = performance.now() - this.#lastHeard;
      if (silentFor > heartbeatTimeoutMs) {
        this.#pendingError ??= new HeartbeatTimeoutError(`daemon ${this.address.label} did not answer for ${Math.round(silentFor)} ms`);
        connection.destroy();
        return;
      }
      this.#sendPing(connection);
    }, Math.min(heartbeatIntervalMs, heartbeatTimeoutMs / 2));
    this.#heartbeat.unref();
  }

  #sendPing(connection: FramedConnection): void {
    // Only the newest ping is timed: an older one's pong, arriving late, measures nothing useful.
    const seq = ++this.#lastPingSeq;
    this.#ping = { seq, sentAt: performance.now() };
    connection.send({ type: 'ping', seq });
  }

  /**
   * The round trip is the least of the last few pings: a ping that waited behind a busy event
   * loop or a big frame measures queueing, which more batches in flight would only lengthen.
   */
  #observeRoundTrip(ms: number): void {
    this.#roundTrips.push(ms);
    if (this.#roundTrips.length > ROUND_TRIP_SAMPLES) this.#roundTrips.shift();
    this.#roundTripMs = Math.min(...this.#roundTrips);
    this.emit('round-trip', this.#roundTripMs);
  }

  /** Runs cleanup() on every instance of this session; resolves to the failures, then closes. */
  async shutdown(): Promise<{ slot: number; error: Error }[]> {
    const connection = this.#connection;
    if (!connection) this.#opening.abort();
    if (!connection || this.#state === 'closed') return [];
    if (this.#state !== 'ready') {
      connection.destroy();
      return [];
    }
    this.#state = 'shutting-down';
    connection.send({ type: 'shutdown' });
    const reply = await this.#reply((m) => m.type === 'shutdown-done');
    this.#detachAll();
    connection.end();
    return (reply as { errors: { slot: number; error: SerializedError }[] }).errors
      .map(({ slot, error }) => ({ slot, error: deserializeError(error) }));
  }

  /** Drops the connection at once; used when the session is no longer wanted. */
  destroy(): void {
    this.#opening.abort();
    this.#detachAll();
    this.#connection?.destroy();
  }

  #reply(accept: (message: DaemonMessage) => boolean): Promise<DaemonMessage> {
    return new Promise((resolve, reject) => {
      this.#waiter = {
        accept: (message) => {
          if (!accept(message)) return false;
          this.#waiter = null;
          resolve(message);
          return true;
        },
        reject: (error) => {
          this.#waiter = null;
          reject(error);
        },
      };
    });
  }

  #rejectWaiter(error: MapScaleError): void {
    this.#waiter?.reject(error);
  }

  #onMessage(message: Message): void {
    this.#lastHeard = performance.now();
    const daemonMessage = message as DaemonMessage;
    if (daemonMessage.type === 'pong') {
      if (this.#ping?.seq === daemonMessage.seq) {
        this.#observeRoundTrip(this.#lastHeard - this.#ping.sentAt);
        this.#ping = null;
      }
      return;
    }
    if (daemonMessage.type === 'output') {
      // Setup and cleanup print too, before 'ready' and after 'shutdown'.
      this.emit('output', daemonMessage);
      return;
    }
    if (this.#state === 'ready' || this.#state === 'shutting-down') {
      switch (daemonMessage.type) {
        case 'results':
          if (this.#state === 'ready') this.emit('results', daemonMessage);
          return;
        case 'slot-lost':
          // Whatever its data connection still carries belongs to batches now counted lost.
          this.#detach(daemonMessage.slot);
          if (this.#state === 'ready') this.emit('slot-lost', daemonMessage);
          return;
        case 'slot-ready':
          if (this.#state === 'ready') {
            this.#attach(daemonMessage.slot, daemonMessage.data);
            this.emit('slot-ready', daemonMessage.slot);
          }
          return;
        case 'slot-failed':
          if (this.#state === 'ready') this.emit('slot-failed', daemonMessage.slot, deserializeError(daemonMessage.error));
          return;
        case 'goodbye':
          if (this.#state === 'ready') this.emit('goodbye', daemonMessage.reason);
          return;
      }
    }
    if (daemonMessage.type === 'error') {
      const error = errorFromDaemon(daemonMessage.code, daemonMessage.message, this.address.label);
      this.#log.warn({ event: 'daemon-error', code: daemonMessage.code, reason: daemonMessage.message });
      this.#fail(error, false);
      return;
    }
    if (this.#waiter?.accept(daemonMessage)) return;
    this.#fail(new ProtocolError(`daemon ${this.address.label} sent an unexpected "${daemonMessage.type}" message while ${this.#state}`));
  }

  /** Ends the connection with `error` as the reason everyone waiting on it sees. */
  #fail(error: MapScaleError, tellPeer = true): void {
    this.#pendingError ??= error;
    if (tellPeer) this.#connection?.fail(error);
    else this.#connection?.destroy();
  }

  #onClose(error: MapScaleError | undefined): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#detachAll();
    const previous = this.#state;
    this.#state = 'closed';
    const reason = this.#pendingError ?? error ??
      new ConnectionClosedError(`daemon ${this.address.label} closed the connection`);
    this.#closeReason = reason;
    this.#rejectWaiter(reason);
    if (previous === 'ready') this.emit('lost', reason);
  }
}

function isDataEndpoint(value: unknown): value is DataEndpoint {
  const endpoint = value as DataEndpoint | null | undefined;
  return typeof endpoint === 'object' && endpoint !== null && Number.isInteger(endpoint.port) && endpoint.port > 0 && endpoint.port <= 65535 &&
    endpoint.token instanceof Uint8Array;
}

/**
 * Presents `token` and waits for `attached`. The connection is adopted in the same tick the answer
 * is read, because the instance may send results right behind it (for batches that went through the
 * daemon port meanwhile), in the same chunk. Rejects on any other answer, a close, the deadline or `signal`.
 */
function attachAs(
  connection: FramedConnection, slot: number, token: Uint8Array, timeoutMs: number, signal: AbortSignal,
  adopt: (connection: FramedConnection) => boolean, onMessage: (message: Message) => void,
): Promise<void> {
  connection.unref();
  return new Promise((resolve, reject) => {
    let attached = false;
    const settle = (error?: Error) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      connection.off('close', onClose);
      if (!error) return resolve();
      connection.destroy();
      reject(error);
    };
    const onClose = (error: MapScaleError | undefined) => settle(error ?? new ConnectionClosedError('closed before attaching'));
    const onAbort = () => settle(new ConnectionClosedError('given up'));
    const timer = setTimeout(() => settle(new ConnectError(`no answer to attach within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
    connection.on('close', onClose);
    connection.on('message', (message) => {
      if (attached) return onMessage(message);
      if (message.type !== 'attached' || message.slot !== slot) {
        return settle(new ProtocolError(message.type === 'error' ? `refused: ${message.message}` : `answered attach with "${message.type}"`));
      }
      attached = true;
      if (adopt(connection)) settle();
      else settle(new ConnectionClosedError('no longer wanted'));
    });
    connection.send({ type: 'attach', slot, token });
  });
}
