/**
 * The mark an error of class `code` carries. `Symbol.for` is one registry per process (per realm),
 * so two copies of MapScale in one app (two versions in node_modules, a bundled and an installed
 * copy) mint the same symbol and recognise each other's errors, as undici does with its
 * `Symbol.for('undici.error.UND_ERR_…')` brands. Keyed by code, not by class name: a minifier
 * renames classes, and codes are unique (a test holds every exported class to that).
 */
export function errorBrand(code: string): symbol {
  return Symbol.for(`mapscale.error.${code}`);
}

const ordinaryInstanceOf = Function.prototype[Symbol.hasInstance];

/**
 * Every error MapScale raises is a MapScaleError with a stable `code`.
 * Callers branch on `code` or `instanceof`, never on message text.
 *
 * A subclass declares its code once, as `static readonly code`; the constructor copies it onto the
 * instance (an own, enumerable property, so it travels with a serialized error) and brands the
 * instance with the code of every class of its chain. `instanceof` checks that brand, so it holds
 * for an error made by another copy of the library. The base's own code, MS_ERROR, is never raised.
 */
export class MapScaleError extends Error {
  static readonly code: string = 'MS_ERROR';
  readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = (new.target as typeof MapScaleError).code;
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c)) {
      if (Object.hasOwn(c, 'code')) Object.defineProperty(this, errorBrand((c as typeof MapScaleError).code), { value: true });
    }
  }

  static override [Symbol.hasInstance](this: Function, value: unknown): boolean {
    if (ordinaryInstanceOf.call(this, value)) return true;
    // A user's subclass that declares no code of its own is checked the ordinary way only.
    if (!Object.hasOwn(this, 'code') || typeof value !== 'object' || value === null) return false;
    return (value as Record<symbol, unknown>)[errorBrand((this as unknown as typeof MapScaleError).code)] === true;
  }
}

/** A peer sent bytes that are not a valid MapScale frame or message. */
export class ProtocolError extends MapScaleError {
  static override readonly code: string = 'MS_PROTOCOL';
  /**
   * When the very first bytes of the stream could not be read (no frame came before): the start of
   * them, which says who answered (an HTTP server, say). Set by the connection, only on failure.
   */
  peerStart?: Uint8Array;
}

/** A frame's length prefix is over the limit in force; nothing of it was buffered. */
export class FrameTooLargeError extends ProtocolError {
  static override readonly code = 'MS_FRAME_TOO_LARGE';
  constructor(readonly size: number, readonly limit: number) {
    super(`frame of ${size} bytes is over the limit of ${limit} bytes`);
  }
}

/** The peers cannot talk: protocol or MapScale versions differ. */
export class ProtocolVersionError extends MapScaleError {
  static override readonly code = 'MS_PROTOCOL_VERSION';
}

/**
 * Why a coordinator stops at a daemon's welcome: it has no secret and the daemon wants one; the
 * daemon's proof does not match its secret (the two secrets differ); or it has a secret and the
 * daemon checks none (so it cannot be the daemon that secret is for).
 */
export type AuthRefusal = 'no-secret' | 'secrets-differ' | 'daemon-has-no-secret';

/**
 * The shared-secret challenge-response failed, in either direction. `reason`: why, when this side
 * found it (see AuthRefusal); undefined when the daemon refused this side's proof.
 */
export class AuthenticationError extends MapScaleError {
  static override readonly code = 'MS_AUTH_FAILED';
  readonly reason: AuthRefusal | undefined;
  constructor(message: string, options?: { cause?: unknown; reason?: AuthRefusal }) {
    super(message, options);
    this.reason = options?.reason;
  }
}

/** The connection closed or failed; pending work on it is lost. */
export class ConnectionClosedError extends MapScaleError {
  static override readonly code: string = 'MS_CONNECTION_CLOSED';
}

/** The connection could not be opened (refused, unreachable, timed out). */
export class ConnectError extends ConnectionClosedError {
  static override readonly code = 'MS_CONNECT_FAILED';
}

/** The peer answered with an error frame; `remoteCode` is its code. */
export class RemoteProtocolError extends MapScaleError {
  static override readonly code = 'MS_REMOTE_REFUSED';
  constructor(message: string, readonly remoteCode: string) {
    super(message);
  }
}

/**
 * The work function cannot be shipped to workers as written; the message says what to change.
 * Here rather than in `mapscale` because the daemon's ModuleScopeError is one.
 */
export class ShippingError extends MapScaleError {
  static override readonly code: string = 'MS_SHIPPING';
}

/** An option or argument is invalid; the message names it. */
export class InvalidOptionError extends MapScaleError {
  static override readonly code = 'MS_INVALID_OPTION';
}

/**
 * What answered at `address` does not speak MapScale: its first bytes are no MapScale frame (an HTTP
 * or SSH server on that port, say). `received`: the printable start of what it sent.
 */
export class NotADaemonError extends MapScaleError {
  static override readonly code = 'MS_NOT_A_DAEMON';
  constructor(readonly address: string, readonly received: string, options?: { cause?: unknown }) {
    super(`${address} is not a MapScale daemon (it answered with ${received}): check the address and port`, options);
  }
}

/**
 * (In a CleanupError's `errors`.) An instance did not finish in time when its session ended:
 * `waitingFor` says on what. `'cleanup'`: its cleanup() ran past `timeoutMs`; `'running job'` or
 * `'setup'`: a job (or setup()) still ran after `timeoutMs`, so cleanup() never started; either
 * way its thread was terminated. `'daemon'`: the daemon did not answer shutdown within `timeoutMs`,
 * and the coordinator closed its connection.
 */
export class CleanupTimeoutError extends MapScaleError {
  static override readonly code = 'MS_CLEANUP_TIMEOUT';
  constructor(readonly timeoutMs: number, readonly waitingFor: 'cleanup' | 'running job' | 'setup' | 'daemon') {
    super(waitingFor === 'cleanup' ? `cleanup() did not finish within ${timeoutMs} ms; the instance's thread was terminated`
      : waitingFor === 'daemon' ? `the daemon did not answer shutdown within ${timeoutMs} ms; its connection was closed`
        : `${waitingFor === 'setup' ? 'setup()' : 'a job'} still ran ${timeoutMs} ms after the session ended, so cleanup() did not run; the instance's thread was terminated`);
  }
}
