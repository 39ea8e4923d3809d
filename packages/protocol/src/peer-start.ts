import { NotADaemonError, ProtocolError } from './errors.js';

/** How much of a stranger's first bytes a message quotes. */
const QUOTED_BYTES = 48;

/**
 * A peer's first bytes as a person reads them: its first line quoted (an HTTP status line, an SSH
 * banner), other bytes as \xNN, cut to QUOTED_BYTES. A TLS record is named as such.
 */
export function describePeerStart(bytes: Uint8Array): string {
  if (bytes.length >= 3 && bytes[0]! >= 0x14 && bytes[0]! <= 0x17 && bytes[1] === 0x03) return 'a TLS record (it serves TLS)';
  let text = '';
  let at = 0;
  for (; at < bytes.length && at < QUOTED_BYTES; at++) {
    const byte = bytes[at]!;
    if (byte === 0x0d || byte === 0x0a) {
      if (text.length > 0) break;
      continue;
    }
    const printable = byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x22;
    text += printable ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  // Cut mid-line: say so.
  const more = at < bytes.length && bytes[at] !== 0x0d && bytes[at] !== 0x0a;
  return `"${text}${more ? '…' : ''}"`;
}

/**
 * A handshake that failed because the peer's very first bytes were no MapScale frame, as the
 * NotADaemonError it is; null for any other failure (the caller keeps its own error then).
 */
export function notADaemon(error: unknown, address: string): NotADaemonError | null {
  if (!(error instanceof ProtocolError) || error.peerStart === undefined) return null;
  return new NotADaemonError(address, describePeerStart(error.peerStart), { cause: error });
}

/** For a connect that was refused: nothing listens there, which for a daemon address usually means it is not started. */
export function refusedHint(error: Error): string {
  return (error as { code?: string }).code === 'ECONNREFUSED' ? ' (is mapscale-worker running there?)' : '';
}
