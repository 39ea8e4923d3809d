import type { MapScaleError, Message } from '@mapscale/protocol';

/**
 * The one reply a request/response exchange waits for (a handshake step, setup, shutdown, a status
 * request): messages are offered to it as they arrive; the first it accepts settles it. A close (or a
 * deadline) rejects it with the reason, so no caller waits on a connection that is gone.
 */
export class ReplyWaiter<M extends Message = Message> {
  #waiter: { accept: (message: M) => boolean; resolve: (message: M) => void; reject: (error: MapScaleError) => void } | null = null;
  /** Once set, every later wait rejects with it at once. */
  #closed: MapScaleError | undefined;

  /** Waits for the first message `accept` takes. One wait at a time: the protocol has one request outstanding. */
  wait(accept: (message: M) => boolean): Promise<M> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#waiter = { accept, resolve, reject };
    });
  }

  /** Offers an arriving message; true when the waiter took it. */
  offer(message: M): boolean {
    const waiter = this.#waiter;
    if (!waiter?.accept(message)) return false;
    this.#waiter = null;
    waiter.resolve(message);
    return true;
  }

  /** Rejects the current wait (a deadline, say); later waits still work. */
  reject(error: MapScaleError): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(error);
  }

  /** The connection closed: the current wait and every later one reject with `reason`. */
  close(reason: MapScaleError): void {
    this.#closed ??= reason;
    this.reject(reason);
  }
}
