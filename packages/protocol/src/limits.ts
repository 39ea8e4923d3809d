/** Sizes the protocol enforces. Frames are checked from their length prefix, before buffering. */
export const DEFAULT_LIMITS = Object.freeze({
  /** Largest frame accepted before the peer has authenticated: a handshake is small. */
  preAuthFrameBytes: 16 * 1024,
  /** Largest frame accepted after the handshake. */
  maxFrameBytes: 256 * 1024 * 1024,
});

/** Bytes of the length prefix in front of every frame. */
export const FRAME_HEADER_BYTES = 4;
