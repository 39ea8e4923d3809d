/** Sizes the protocol enforces. Frames are checked from their length prefix, before buffering. */
export const DEFAULT_LIMITS = Object.freeze({
  /** Largest frame accepted before the peer has authenticated: a handshake is small. */
  preAuthFrameBytes: 16 * 1024,
  /** Largest frame accepted after the handshake. */
  maxFrameBytes: 256 * 1024 * 1024,
});

/**
 * A frame limit a peer announces (setup, setup-done), as this side will honour it: an integer of at
 * least 1 KiB, else the default. Fitting frames to the peer's limit turns an oversized job or result
 * into that job's error instead of a connection the peer must close.
 */
export function peerFrameLimit(announced: unknown): number {
  return typeof announced === 'number' && Number.isInteger(announced) && announced >= 1024 ? announced : DEFAULT_LIMITS.maxFrameBytes;
}

/** Bytes of the length prefix in front of every frame. */
export const FRAME_HEADER_BYTES = 4;
