import { AuthenticationError, ProtocolVersionError, RemoteProtocolError, type MapScaleError } from '@mapscale/protocol';

/**
 * A daemon's error frame as the error class a client's caller expects: a refused secret is an
 * AuthenticationError, an incompatible release a ProtocolVersionError, whoever the client is.
 */
export function refusalError(code: string, message: string, address: string): MapScaleError {
  const text = `daemon ${address} refused: ${message}`;
  switch (code) {
    case 'MS_AUTH_FAILED': return new AuthenticationError(text);
    case 'MS_PROTOCOL_VERSION': return new ProtocolVersionError(text);
    default: return new RemoteProtocolError(text, code);
  }
}
