import type { FramedConnection } from '@mapscale/transport';

/** Pings whose least round trip is taken as the round trip (about the last 8 s at the default pace). */
const SAMPLES = 8;

/**
 * The round trip to a daemon, from its pongs: the least of the last few pings, because a ping that
 * waited behind a busy event loop or a big frame measures queueing, which more batches in flight
 * would only lengthen (the min-RTT filter of BBR). Only the newest ping is timed: an older one's
 * pong, arriving late, measures nothing useful.
 */
export class RoundTrip {
  #samples: number[] = [];
  #pending: { seq: number; sentAt: number } | null = null;
  #lastSeq = 0;
  #ms: number | undefined;

  /** The filtered round trip, once a ping was answered. */
  get ms(): number | undefined {
    return this.#ms;
  }

  ping(connection: FramedConnection): void {
    const seq = ++this.#lastSeq;
    this.#pending = { seq, sentAt: performance.now() };
    connection.send({ type: 'ping', seq });
  }

  /** A pong arrived: the new filtered round trip if it answered the newest ping, else undefined. */
  pong(seq: number): number | undefined {
    if (this.#pending?.seq !== seq) return undefined;
    this.#samples.push(performance.now() - this.#pending.sentAt);
    this.#pending = null;
    if (this.#samples.length > SAMPLES) this.#samples.shift();
    this.#ms = Math.min(...this.#samples);
    return this.#ms;
  }
}
