import { MapScaleError } from '@mapscale/protocol';

/**
 * TLS with a daemon failed: its certificate was not trusted or did not name it, it wanted a client
 * certificate this side did not have, or one side speaks TLS and the other does not.
 */
export class TLSError extends MapScaleError {
  static override readonly code = 'MS_TLS';
  constructor(readonly workerAddress: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
