import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  ConnectError, ConnectionClosedError, DEFAULT_LIMITS, MapScaleError, ProtocolError, clientHandshake, deserializeError,
  type DaemonMessage, type Message, type ResultsMessage, type SerializedError, type ShippedCode, type WelcomeMessage,
  type SlotLostMessage, type OutputMessage, type SetupDoneMessage, peerFrameLimit,
} from '@mapscale/protocol';
import {
  ReplyWaiter, explainHandshakeFailure, openConnection, refusalError, type DaemonAddress, type FramedConnection,
} from '@mapscale/transport';
import { DEFAULT_PROCESSOR_OPTIONS, type ProcessorTlsOptions } from './options.js';
import { answerWithin, shutdownAnswerDeadlineMs, unansweredCleanups } from './shutdown-deadline.js';
import { HeartbeatTimeoutError, SetupError } from './errors.js';
import { Heartbeat } from './session/heartbeat.js';
import { DataConnections } from './session/data-connections.js';
import { RoundTrip } from './session/round-trip.js';
import { DaemonLoad, type DaemonLoadSample } from './session/daemon-load.js';

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
  /** Sent with `shutdown` (absent: the daemon's own); the answer is awaited about twice that. */
  cleanupTimeoutMs?: number;
}

/**
 * The coordinator's side of one daemon connection: handshake, setup, a stream of result
 * messages, shutdown. Which jobs go where is not its business (see Scheduler). Its heartbeat
 * (session/heartbeat.ts), round-trip filter (session/round-trip.ts) and per-slot data connections
 * (session/data-connections.ts) are parts of their own.
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
  #heartbeat: Heartbeat | null = null;
  /** Aborted when the session is given up while its connection is still being opened. */
  readonly #opening = new AbortController();
  readonly #roundTrip = new RoundTrip();
  readonly #load = new DaemonLoad();
  #daemonFrameBytes: number = DEFAULT_LIMITS.maxFrameBytes;
  readonly #data: DataConnections;
  /** The one reply this side is waiting for, if any: handshake, setup and shutdown are request/response. */
  readonly #replies = new ReplyWaiter<DaemonMessage>();

  constructor(address: DaemonAddress, options: WorkerSessionOptions) {
    super();
    this.address = address;
    this.#options = options;
    this.#log = options.logger.child({ component: 'worker-session', worker: address.label });
    this.#data = new DataConnections(address, {
      connectTimeoutMs: options.connectTimeoutMs, maxFrameBytes: options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes, tls: options.tls,
    }, this.#log, {
      results: (message) => {
        if (this.#state === 'ready') this.emit('results', message);
      },
      output: (message) => this.emit('output', message),
    }, () => this.#state === 'ready');
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
    return this.#roundTrip.ms;
  }

  /** The daemon's CPU and memory, as its heartbeat answers carry them. */
  get daemonLoad(): DaemonLoadSample {
    return this.#load;
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
    // Awaited only after the handshake; its failure is this session's (below), not an unhandled rejection meanwhile.
    shipping.catch(() => {});
    const connection = await openConnection(this.address, this.#options.connectTimeoutMs, DEFAULT_LIMITS.preAuthFrameBytes, this.#options.tls, this.#opening.signal);
    this.#connection = connection;
    connection.unref();
    this.emit('connected');
    connection.on('message', (message) => this.#onMessage(message));
    connection.on('close', (error) => this.#onClose(error));
    this.#state = 'handshaking';
    const deadline = setTimeout(() => {
      this.#replies.reject(new ConnectError(`daemon ${this.address.label} did not finish the handshake within ${this.#options.connectTimeoutMs} ms`));
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
    this.#roundTrip.ping(connection);
    // The work function may still be being bundled: the connection and handshake did not wait for it.
    const { code, bundle } = await shipping;
    // The connection may have closed meanwhile, with nobody waiting for a reply to hear it.
    if (this.#closeReason) throw this.#closeReason;
    connection.send({
      type: 'setup', code, slots: this.#welcome!.slots, forwardOutput: this.#options.forwardOutput,
      maxFrameBytes: this.#options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes,
    });
    let reply = await this.#replies.wait((m) => m.type === 'setup-done' || m.type === 'setup-failed' || m.type === 'need-bundle');
    if (reply.type === 'need-bundle') {
      if (!bundle || reply.hash !== bundle.hash) throw new ProtocolError(`daemon ${this.address.label} asked for a bundle this coordinator did not offer`);
      this.#log.debug({ event: 'bundle-sent', hash: bundle.hash, bytes: bundle.source.length });
      connection.send({ type: 'bundle', hash: bundle.hash, source: bundle.source });
      reply = await this.#replies.wait((m) => m.type === 'setup-done' || m.type === 'setup-failed');
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

  #attach(slot: number, endpoint: unknown): void {
    if (this.#options.dataConnections !== false && slot < this.#slots) this.#data.attach(slot, endpoint);
  }

  async #handshake(connection: FramedConnection): Promise<void> {
    this.#welcome = await clientHandshake({
      // At once: after a refusal the connection is closed right away, and the daemon should read why.
      send: (message) => connection.sendNow(message),
      receive: (accept) => this.#replies.wait(accept),
      warn: (detail) => this.#log.warn({ event: 'node-version-differs', detail }),
    }, this.#options.secret, this.address.label);
    connection.maxFrameBytes = this.#options.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes;
  }

  sendJobs(slot: number, batch: number, payload: Uint8Array, timeoutMs?: number): void {
    (this.#data.connectionOf(slot) ?? this.#connection)?.send({ type: 'jobs', slot, batch, payload, timeoutMs });
  }

  cancel(slot: number, batches: number[]): void {
    if (this.#state !== 'ready') return;
    // On the path its jobs took (a cancel that overtook them would find nothing to drop), and on the
    // control connection too: the daemon's main thread, never blocked by a job, tells the instance
    // through shared memory, read between jobs even while a synchronous one holds its thread.
    this.#data.connectionOf(slot)?.send({ type: 'cancel', slot, batches });
    this.#connection?.send({ type: 'cancel', slot, batches });
  }

  /**
   * Pings at a steady pace; any message counts as a sign of life. The daemon's main thread answers
   * pings even while every instance is busy, so a slow job never looks like a dead daemon, and a
   * stopped or cut-off one is found within heartbeatTimeoutMs (of this side's awake time: see Heartbeat).
   */
  #startHeartbeat(connection: FramedConnection): void {
    this.#heartbeat = new Heartbeat({
      intervalMs: this.#options.heartbeatIntervalMs,
      timeoutMs: this.#options.heartbeatTimeoutMs,
      ping: () => this.#roundTrip.ping(connection),
      dead: (silentMs) => {
        this.#pendingError ??= new HeartbeatTimeoutError(`daemon ${this.address.label} did not answer for ${Math.round(silentMs)} ms`);
        connection.destroy();
      },
    });
    this.#heartbeat.start();
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
    const { cleanupTimeoutMs = DEFAULT_PROCESSOR_OPTIONS.cleanupTimeoutMs } = this.#options;
    connection.send({ type: 'shutdown', cleanupTimeoutMs });
    const deadline = shutdownAnswerDeadlineMs(cleanupTimeoutMs);
    const reply = await answerWithin(this.#replies.wait((m) => m.type === 'shutdown-done'), deadline);
    this.#data.detachAll();
    if (reply === undefined) {
      connection.destroy();
      return unansweredCleanups(this.#slots, deadline);
    }
    connection.end();
    return (reply as { errors: { slot: number; error: SerializedError }[] }).errors
      .map(({ slot, error }) => ({ slot, error: deserializeError(error) }));
  }

  /** Drops the connection at once; used when the session is no longer wanted. */
  destroy(): void {
    this.#opening.abort();
    this.#data.detachAll();
    this.#connection?.destroy();
  }

  #onMessage(message: Message): void {
    this.#heartbeat?.heard();
    const daemonMessage = message as DaemonMessage;
    if (daemonMessage.type === 'pong') {
      this.#load.observe(daemonMessage);
      const ms = this.#roundTrip.pong(daemonMessage.seq);
      if (ms !== undefined) this.emit('round-trip', ms);
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
          this.#data.detach(daemonMessage.slot);
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
      const error = refusalError(daemonMessage.code, daemonMessage.message, this.address.label);
      this.#log.info({ event: 'daemon-error', code: daemonMessage.code, reason: daemonMessage.message });
      this.#fail(error, false);
      return;
    }
    if (this.#replies.offer(daemonMessage)) return;
    this.#fail(new ProtocolError(`daemon ${this.address.label} sent an unexpected "${daemonMessage.type}" message while ${this.#state}`));
  }

  /** Ends the connection with `error` as the reason everyone waiting on it sees. */
  #fail(error: MapScaleError, tellPeer = true): void {
    this.#pendingError ??= error;
    if (tellPeer) this.#connection?.fail(error);
    else this.#connection?.destroy();
  }

  #onClose(error: MapScaleError | undefined): void {
    this.#heartbeat?.stop();
    this.#data.detachAll();
    const previous = this.#state;
    this.#state = 'closed';
    const reason = this.#pendingError ?? error ??
      new ConnectionClosedError(`daemon ${this.address.label} closed the connection`);
    this.#closeReason = reason;
    this.#replies.close(reason);
    if (previous === 'ready') this.emit('lost', reason);
  }
}
