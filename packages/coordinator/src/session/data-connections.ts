import type { Logger } from 'pino';
import {
  ConnectError, ConnectionClosedError, ProtocolError,
  type DaemonMessage, type DataEndpoint, type MapScaleError, type Message, type OutputMessage, type ResultsMessage,
} from '@mapscale/protocol';
import { DATA_KEEPALIVE_MS, openConnection, type DaemonAddress, type FramedConnection, type TlsClientOptions } from '@mapscale/transport';

/** How long a failed data connection waits to see whether its whole daemon went (then it says nothing). */
const LOSS_GRACE_MS = 250;

export interface DataConnectionOptions {
  connectTimeoutMs: number;
  /** Largest frame accepted once attached. */
  maxFrameBytes: number;
  tls: TlsClientOptions | undefined;
}

/** What arrives on data connections, for the session to pass on. */
export interface DataConnectionEvents {
  results(message: ResultsMessage): void;
  output(message: OutputMessage): void;
}

/**
 * A session's per-slot data connections: each attached one carries that slot's jobs and results
 * straight to and from the instance's thread. Opened in the background; until one is attached (or
 * if it never is: a firewall, say) the slot's jobs go through the daemon's port, so nothing waits.
 */
export class DataConnections {
  readonly #address: DaemonAddress;
  readonly #options: DataConnectionOptions;
  readonly #log: Logger;
  readonly #events: DataConnectionEvents;
  /** Whether the session still takes new data connections (it is ready, not closing). */
  readonly #wanted: () => boolean;
  /** Per slot, its data connection once attached. */
  readonly #attached = new Map<number, FramedConnection>();
  /** Per slot, the data connection being opened, to give up when the slot is lost or the session ends. */
  readonly #attaching = new Map<number, AbortController>();

  constructor(address: DaemonAddress, options: DataConnectionOptions, log: Logger, events: DataConnectionEvents, wanted: () => boolean) {
    this.#address = address;
    this.#options = options;
    this.#log = log;
    this.#events = events;
    this.#wanted = wanted;
  }

  /** Slots whose jobs travel on a data connection of their own. */
  get size(): number {
    return this.#attached.size;
  }

  /** Where `slot`'s jobs and cancels go: its data connection, or undefined for the daemon port. */
  connectionOf(slot: number): FramedConnection | undefined {
    return this.#attached.get(slot);
  }

  /** Opens `slot`'s data connection at `endpoint` in the background, replacing any it had. */
  attach(slot: number, endpoint: unknown): void {
    if (!isDataEndpoint(endpoint)) return;
    this.detach(slot);
    const attempt = new AbortController();
    this.#attaching.set(slot, attempt);
    const address = { host: this.#address.host, port: endpoint.port, label: `${this.#address.label} (slot ${slot}'s data port ${endpoint.port})` };
    const adopt = (connection: FramedConnection): boolean => {
      if (this.#attaching.get(slot) !== attempt || !this.#wanted()) return false;
      this.#attaching.delete(slot);
      this.#attached.set(slot, connection);
      // It may idle for long between maps (a NAT forgets idle flows) and cannot be pinged while its instance runs a job.
      connection.keepAlive(DATA_KEEPALIVE_MS);
      connection.on('close', (error) => {
        if (this.#attached.get(slot) !== connection) return;
        // The daemon reports the slot lost (its batches here dropped) and offers a new endpoint.
        this.#attached.delete(slot);
        this.#log.debug({ event: 'data-connection-closed', slot, reason: error?.message });
      });
      this.#log.debug({ event: 'data-attached', slot, port: endpoint.port });
      return true;
    };
    const { connectTimeoutMs, maxFrameBytes, tls } = this.#options;
    openConnection(address, connectTimeoutMs, maxFrameBytes, tls, attempt.signal)
      .then((connection) => attachAs(connection, slot, endpoint.token, connectTimeoutMs, attempt.signal, adopt,
        (message) => this.#onMessage(slot, connection, message)))
      .catch((error: Error) => {
        if (this.#attaching.get(slot) === attempt) this.#attaching.delete(slot);
        if (attempt.signal.aborted || !this.#wanted()) return;
        // A data port refused because its daemon just died is part of that loss, which the app hears
        // as worker-lost once the control connection's close is read: warn only if the session outlives it.
        setTimeout(() => {
          if (this.#wanted()) this.#log.warn({ event: 'data-connection-failed', slot, reason: error.message, hint: 'its jobs go through the daemon port instead' });
        }, LOSS_GRACE_MS).unref();
      });
  }

  /** Forgets `slot`'s data connection (and any attempt at one). */
  detach(slot: number): void {
    this.#attaching.get(slot)?.abort();
    this.#attaching.delete(slot);
    this.#attached.get(slot)?.destroy();
    this.#attached.delete(slot);
  }

  detachAll(): void {
    for (const slot of [...this.#attaching.keys(), ...this.#attached.keys()]) this.detach(slot);
  }

  #onMessage(slot: number, connection: FramedConnection, message: Message): void {
    if (this.#attached.get(slot) !== connection) return;
    const daemonMessage = message as DaemonMessage;
    if (daemonMessage.type === 'results' && daemonMessage.slot === slot) return this.#events.results(daemonMessage);
    if (daemonMessage.type === 'output' && daemonMessage.slot === slot) return this.#events.output(daemonMessage);
    if (daemonMessage.type === 'error') {
      this.#log.warn({ event: 'data-connection-error', slot, code: daemonMessage.code, reason: daemonMessage.message });
      connection.destroy();
      return;
    }
    connection.fail(new ProtocolError(`daemon ${this.#address.label} sent an unexpected "${daemonMessage.type}" on slot ${slot}'s data connection`));
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
