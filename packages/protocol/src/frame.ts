import { FRAME_HEADER_BYTES } from './limits.js';
import { FrameTooLargeError, ProtocolError } from './errors.js';

/** The 4-byte big-endian length prefix for a frame body. */
export function frameHeader(bodyLength: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(bodyLength, 0);
  return header;
}

/** Header and body in one buffer, for callers that want a single write. */
export function encodeFrame(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Splits a byte stream into frame bodies. Chunks may hold part of a frame or many frames.
 * The length prefix is checked against `maxFrameBytes` before anything of the body is kept,
 * so an oversized prefix costs four bytes of memory, not the size it claims.
 */
export class FrameDecoder {
  #maxFrameBytes: number;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #headerFill = 0;
  /** The body being filled when a frame spans chunks: allocated once at its announced size. */
  #body: Buffer | null = null;
  #bodyFill = 0;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Raise or lower the limit, e.g. after authentication. */
  set maxFrameBytes(value: number) {
    this.#maxFrameBytes = value;
  }

  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.#headerFill + this.#bodyFill;
  }

  /**
   * Feeds a chunk; calls `onFrame` for each complete body. A body that arrived whole in one chunk
   * is a view into that chunk (copy it to keep it past the callback); a body that spanned chunks
   * was copied once into its own buffer. Throws FrameTooLargeError or ProtocolError.
   */
  push(chunk: Buffer, onFrame: (body: Buffer, owned: boolean) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#body) {
        const n = Math.min(this.#body.length - this.#bodyFill, chunk.length - offset);
        chunk.copy(this.#body, this.#bodyFill, offset, offset + n);
        this.#bodyFill += n;
        offset += n;
        if (this.#bodyFill === this.#body.length) {
          const body = this.#body;
          this.#body = null;
          this.#bodyFill = 0;
          // Assembled here in a buffer of its own: the receiver may keep it, or transfer it.
          onFrame(body, true);
        }
        continue;
      }
      if (this.#headerFill === 0 && chunk.length - offset >= FRAME_HEADER_BYTES) {
        const size = this.#checkSize(chunk.readUInt32BE(offset));
        offset += FRAME_HEADER_BYTES;
        if (chunk.length - offset >= size) {
          onFrame(chunk.subarray(offset, offset + size), false);
          offset += size;
        } else {
          this.#body = Buffer.allocUnsafeSlow(size);
        }
        continue;
      }
      while (this.#headerFill < FRAME_HEADER_BYTES && offset < chunk.length) {
        this.#header[this.#headerFill++] = chunk[offset++]!;
      }
      if (this.#headerFill === FRAME_HEADER_BYTES) {
        this.#headerFill = 0;
        this.#body = Buffer.allocUnsafeSlow(this.#checkSize(this.#header.readUInt32BE(0)));
      }
    }
  }

  #checkSize(size: number): number {
    if (size > this.#maxFrameBytes) throw new FrameTooLargeError(size, this.#maxFrameBytes);
    if (size === 0) throw new ProtocolError('empty frame: a frame body holds at least one byte');
    return size;
  }
}
