import { connect as netConnect, isIP, type Socket } from 'node:net';
import { nodeTls } from './lazy-tls.js';
import { ConnectError, ConnectionClosedError, FrameTooLargeError, notADaemon, refusedHint } from '@mapscale/protocol';
import { FramedConnection } from './framed-connection.js';
import { TLSError } from './errors.js';
import type { DaemonAddress } from './address.js';

/** TLS towards a daemon: whom to trust, and this side's client certificate if it needs one. */
export interface TlsClientOptions {
  /** CA certificate(s) that sign the daemons' certificates. Default: Node.js's bundled public CAs. */
  ca?: string | Buffer | (string | Buffer)[];
  /** A client certificate, for daemons that require one (--tls-ca). Needs `key`. */
  cert?: string | Buffer;
  /** The client certificate's private key. */
  key?: string | Buffer;
  /** Name the daemon's certificate must carry (and SNI). Default: the host of its address. */
  servername?: string;
}

/**
 * The one place a client (a coordinator, `mapscale-worker status`) opens a socket: opens it (and, with `tls`, completes the TLS
 * handshake, the daemon's certificate verified) within a deadline, and hands back a framed
 * message stream. Failures become ConnectError, or TLSError once TCP is up, naming the address.
 */
export function openConnection(
  address: DaemonAddress, timeoutMs: number, maxFrameBytes: number, tls?: TlsClientOptions, signal?: AbortSignal,
): Promise<FramedConnection> {
  return new Promise((resolve, reject) => {
    let tcpUp = false;
    const socket: Socket = tls
      ? nodeTls().connect({
        host: address.host,
        port: address.port,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        // An IP address is checked against the certificate's IP entries; SNI takes names only.
        servername: tls.servername ?? (isIP(address.host) ? undefined : address.host),
        minVersion: 'TLSv1.2',
      })
      : netConnect({ host: address.host, port: address.port });
    // A connection still being opened must not keep the app alive (a reconnect to an unreachable
    // host after shutdown, say); callers that wait for it hold the process themselves. Unref'ing is
    // not enough while the connect request is pending (libuv keeps the loop alive for it), so a
    // caller that gives up aborts, which destroys the socket.
    socket.unref();
    const onAbort = () => fail(undefined, 'the attempt was given up');
    if (signal?.aborted) queueMicrotask(onAbort);
    else signal?.addEventListener('abort', onAbort, { once: true });
    const fail = (error: Error | undefined, what: string) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(tls && tcpUp
        ? tlsFailure(address, error, what)
        : new ConnectError(`could not connect to ${address.label}: ${what}`, error ? { cause: error } : undefined));
    };
    const timer = setTimeout(() => {
      fail(undefined, tcpUp ? `no TLS handshake within ${timeoutMs} ms` : `no answer within ${timeoutMs} ms`);
    }, timeoutMs).unref();
    socket.once('error', (error) => fail(error, `${error.message}${refusedHint(error)}`));
    socket.once('close', () => fail(undefined, 'the connection closed'));
    socket.once('connect', () => {
      tcpUp = true;
    });
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      resolve(new FramedConnection(socket, maxFrameBytes));
    });
  });
}

/** Certificate verification failures, as Node.js names them (the ERR_SSL_/ERR_TLS_ ones are matched by prefix). */
const CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_REVOKED', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_CHAIN_TOO_LONG',
  'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED', 'HOSTNAME_MISMATCH', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
]);

/** The TLS error somewhere in `error`'s cause chain, if any. */
function tlsCause(error: unknown): (Error & { code?: string }) | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || CERTIFICATE_CODES.has(code))) return e;
    if (typeof (e as { library?: unknown }).library === 'string') return e; // OpenSSL's own errors
  }
  return undefined;
}

/** What to do about a TLS failure, from its code. */
function tlsHint(code: string | undefined): string {
  if (code === undefined) return 'the daemon may be over its connection limit, or may not speak TLS';
  if (CERTIFICATE_CODES.has(code) || code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return 'its certificate is not trusted here: give the CA that signed it as tls.ca, and the name it carries as tls.servername';
  }
  if (/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN/.test(code)) {
    return 'it requires a client certificate it trusts: give one as tls.cert and tls.key';
  }
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|RECORD_LAYER/.test(code)) {
    return 'it does not seem to speak TLS (started without --tls-cert?)';
  }
  return 'see the cause';
}

function tlsFailure(address: DaemonAddress, error: Error | undefined, what: string): TLSError {
  const cause = tlsCause(error) ?? error;
  const code = (cause as { code?: string } | undefined)?.code;
  const hint = tlsHint(tlsCause(error) ? code : undefined);
  return new TLSError(address.label, `TLS with daemon ${address.label} failed: ${what} (${hint})`, cause ? { cause } : undefined);
}

/**
 * Turns a handshake failure that is really a TLS problem into a TLSError naming the daemon:
 * with `tls`, a connection that failed on a TLS error (a daemon rejects a client certificate
 * only after this side's TLS handshake looks done); without, a daemon that answered with a TLS
 * record, or closed without a word during the handshake, as a TLS daemon does to plain bytes; and
 * a peer whose first bytes are no MapScale frame at all as NotADaemonError. Anything else is returned as it is.
 */
export function explainHandshakeFailure(error: unknown, address: DaemonAddress, tls: boolean, handshakeDone: boolean): unknown {
  // A daemon refuses with an error frame: a close without one, mid-handshake, is the transport's doing.
  const closedEarly = !handshakeDone && error instanceof ConnectionClosedError && !(error instanceof ConnectError);
  if (tls) {
    const cause = tlsCause(error);
    if (cause) return new TLSError(address.label, `TLS with daemon ${address.label} failed: ${cause.message} (${tlsHint(cause.code)})`, { cause });
    // A MapScale refusal comes as an error frame; a TLS daemon that rejects a client certificate
    // after this side's handshake is done may just close.
    if (closedEarly) {
      return new TLSError(address.label, `daemon ${address.label} closed the TLS connection during the handshake: ` +
        'it may not accept this coordinator\'s client certificate (tls.cert, tls.key), or it is over its connection limit', { cause: error });
    }
    return error;
  }
  // TLS records start with content type 20–23 and version 3.x: read as a length prefix, a huge frame.
  if (error instanceof FrameTooLargeError && error.size >>> 24 >= 0x14 && error.size >>> 24 <= 0x17 && (error.size >>> 16 & 0xff) === 0x03) {
    return new TLSError(address.label, `daemon ${address.label} answered with TLS: set the "tls" option to connect to it`, { cause: error });
  }
  const stranger = notADaemon(error, address.label);
  if (stranger) return stranger;
  if (closedEarly) {
    return new ConnectError(`daemon ${address.label} closed the connection during the handshake; ` +
      'if it serves TLS (--tls-cert), set the "tls" option', { cause: error });
  }
  return error;
}
