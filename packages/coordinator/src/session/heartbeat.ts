/**
 * Watches one daemon connection for life: pings at a steady pace, and declares the peer dead once
 * it has been silent for `timeoutMs` of the time this side was awake to hear it.
 *
 * Why "awake": when the app's own event loop stalls (a long synchronous computation, a SIGSTOP and
 * SIGCONT), the daemon's answers wait unread in the socket, and Node runs due timers before it reads
 * sockets: a plain "silent for too long" check would blame every healthy daemon for the app's own
 * pause (issue 12, item 8). So a tick that fires late counts its lateness as this side's pause, not
 * the peer's silence, the way Erlang's net_ticktime counts missed ticks rather than wall time. A peer
 * that really went silent is still found within `timeoutMs` of awake time.
 */
export interface HeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
  ping(): void;
  /** The peer was silent for `silentMs` of awake time: give the connection up. */
  dead(silentMs: number): void;
}

export class Heartbeat {
  readonly #options: HeartbeatOptions;
  readonly #everyMs: number;
  #timer: NodeJS.Timeout | null = null;
  /** When the peer was last heard from, moved forward by every pause of this side since. */
  #heardAt = 0;
  #tickAt = 0;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
    // At least two ticks per timeout, so a silence is seen within it.
    this.#everyMs = Math.max(1, Math.min(options.intervalMs, options.timeoutMs / 2));
  }

  start(): void {
    if (this.#timer) return;
    this.#heardAt = this.#tickAt = performance.now();
    this.#timer = setInterval(() => this.#tick(), this.#everyMs);
    this.#timer.unref();
  }

  /** Any message from the peer is a sign of life. */
  heard(): void {
    this.#heardAt = performance.now();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #tick(): void {
    const now = performance.now();
    // A tick due `everyMs` after the last that comes later than half a tick more than that: this
    // side was paused for the excess, and heard nothing in it through no fault of the peer.
    const paused = now - this.#tickAt - this.#everyMs;
    this.#tickAt = now;
    if (paused > this.#everyMs / 2) this.#heardAt = Math.min(now, this.#heardAt + paused);
    const silent = now - this.#heardAt;
    if (silent > this.#options.timeoutMs) {
      this.stop();
      this.#options.dead(silent);
      return;
    }
    this.#options.ping();
  }
}
