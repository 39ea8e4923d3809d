import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import {
  ConnectionClosedError, FrameDecoder, MapScaleError, ProtocolError,
  decodeMessage, encodeFrameParts, type Message,
} from '@mapscale/protocol';

export interface FramedConnectionEvents {
  /** `owned`: the frame's bytes are in a buffer nothing else uses, so its byte fields may be transferred. */
  message: [Message, boolean];
  /** Emitted once. `error` is set when the close was not asked for by this side. */
  close: [MapScaleError | undefined];
}

/** Keep-alive on an attached data connection: it idles between maps, and only the kernel can answer for it during a long job. */
export const DATA_KEEPALIVE_MS = 10_000;

/** How much of a peer's unreadable first bytes a ProtocolError keeps (`peerStart`). */
const PEER_START_BYTES = 64;

/** Frames sent in one tick that together are smaller than this are copied into one buffer. */
const JOIN_BELOW_BYTES = 64 * 1024;

/**
 * The one place a socket is seen: frames out, validated messages in. Socket and decode errors are
 * turned into MapScale errors here, so everything above works with a message stream only.
 * Frames sent in one tick are written together, in one syscall, at its end (or at once, with flush()).
 */
export class FramedConnection extends EventEmitter<FramedConnectionEvents> {
  readonly remoteAddress: string;
  #socket: Socket;
  #decoder: FrameDecoder;
  #closed = false;
  /** Frames sent in this tick, written together at its end. */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #flushScheduled = false;
  readonly #flushAtTickEnd = () => {
    this.#flushScheduled = false;
    this.flush();
  };
  #closeError: MapScaleError | undefined;
  /** Whether a chunk was read without error: after that, a bad frame is a peer's fault, not a stranger's answer. */
  #readSome = false;

  constructor(socket: Socket, maxFrameBytes: number) {
    super();
    this.#socket = socket;
    this.#decoder = new FrameDecoder(maxFrameBytes);
    this.remoteAddress = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'local';
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.#onData(chunk));
    socket.on('error', (error) => {
      this.#closeError ??= new ConnectionClosedError(`connection to ${this.remoteAddress} failed: ${error.message}`, { cause: error });
    });
    socket.on('close', () => this.#finish());
  }

  get closed(): boolean {
    return this.#closed;
  }

  set maxFrameBytes(value: number) {
    this.#decoder.maxFrameBytes = value;
  }

  /** Queues `message`, to be written with the rest of this tick's frames at its end. */
  send(message: Message): void {
    if (!this.#queue(message) || this.#flushScheduled) return;
    this.#flushScheduled = true;
    process.nextTick(this.#flushAtTickEnd);
  }

  /**
   * Writes `message` (and whatever this tick queued before it) now: for a sender about to block its
   * thread (an instance thread starting a synchronous job), whose tick would otherwise end only after that.
   */
  sendNow(message: Message): void {
    if (this.#queue(message)) this.flush();
  }

  #queue(message: Message): boolean {
    // After end(), a late message (a pong to a ping that crossed our shutdown-done) has nobody to read it.
    if (this.#closed || this.#socket.destroyed || this.#socket.writableEnded) return false;
    for (const part of encodeFrameParts(message)) {
      this.#pending.push(part);
      this.#pendingBytes += part.length;
    }
    return true;
  }

  /**
   * Writes what is queued: small frames joined into one buffer (a copy costs less than the stream's
   * per-chunk bookkeeping), large ones together in one writev.
   */
  flush(): void {
    const pending = this.#pending;
    const bytes = this.#pendingBytes;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (pending.length === 0 || this.#socket.destroyed || this.#socket.writableEnded) return;
    if (pending.length === 1) {
      this.#socket.write(pending[0]!);
    } else if (bytes <= JOIN_BELOW_BYTES) {
      this.#socket.write(Buffer.concat(pending, bytes));
    } else {
      this.#socket.cork();
      for (const part of pending) this.#socket.write(part);
      this.#socket.uncork();
    }
  }

  /** Tells the peer why (an error frame), then closes. Listeners see `error` as the close reason. */
  fail(error: MapScaleError): void {
    if (this.#closed) return;
    this.#closeError ??= error;
    this.sendNow({ type: 'error', code: error.code, message: error.message });
    this.#socket.end();
    // A peer that never reads must not keep the socket open forever.
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  /** Closes after pending writes; an expected end, so listeners see no error. */
  end(): void {
    if (this.#closed) return;
    this.flush();
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /**
   * TCP keep-alive after `idleMs` of silence (then up to 10 probes a second apart): for a connection
   * that may idle between maps while nothing above it can ping (an instance thread busy in a job), so
   * a middlebox does not forget it and a dead path is found by the kernel.
   */
  keepAlive(idleMs: number): void {
    this.#socket.setKeepAlive(true, idleMs);
  }

  /** Lets the process exit while this connection is idle (the owner keeps it alive while work is pending). */
  unref(): void {
    this.#socket.unref();
  }

  /** Keeps the process alive while this connection is open (openConnection hands sockets back unref'd). */
  ref(): void {
    this.#socket.ref();
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      this.#decoder.push(chunk, (body, owned) => this.emit('message', decodeMessage(body), owned));
      this.#readSome = true;
    } catch (error) {
      if (error instanceof ProtocolError) {
        // Unreadable from its first bytes on: those say who answered (see notADaemon).
        if (!this.#readSome) error.peerStart ??= Buffer.from(chunk.subarray(0, PEER_START_BYTES));
        this.fail(error);
        this.#finish();
      } else {
        // A listener threw: not the peer's fault, but this connection's state is now unknown.
        this.#closeError ??= new ConnectionClosedError(`message handler failed: ${(error as Error).message}`, { cause: error });
        this.#socket.destroy();
      }
    }
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.removeAllListeners('data');
    this.emit('close', this.#closeError);
  }
}
