import type { Socket } from 'node:net';

/**
 * The raw-transport reference's whole wire format: a 4-byte big-endian length, then a msgpackr
 * body. Deliberately bare (no envelope, no validation, no handshake): what the wire allows
 * before any product logic.
 */
export class FrameReader {
  #header = Buffer.alloc(4);
  #headerFill = 0;
  #body: Buffer | null = null;
  #bodyFill = 0;

  push(chunk: Buffer, onFrame: (body: Buffer) => void): void {
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
          onFrame(body);
        }
      } else if (this.#headerFill === 0 && chunk.length - offset >= 4) {
        const size = chunk.readUInt32BE(offset);
        offset += 4;
        if (chunk.length - offset >= size) {
          onFrame(chunk.subarray(offset, offset + size));
          offset += size;
        } else {
          this.#body = Buffer.allocUnsafe(size);
        }
      } else {
        while (this.#headerFill < 4 && offset < chunk.length) this.#header[this.#headerFill++] = chunk[offset++]!;
        if (this.#headerFill === 4) {
          this.#headerFill = 0;
          this.#body = Buffer.allocUnsafe(this.#header.readUInt32BE(0));
        }
      }
    }
  }
}

/** Writes made in one tick go out corked, in one syscall, as MapScale's transport does. */
export class FrameWriter {
  #socket: Socket;
  #corked = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  write(body: Uint8Array): void {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(body.length, 0);
    this.#socket.write(header);
    this.#socket.write(body);
  }
}
