import { encodeMessage, serializeError, truncateText, type ResultsMessage, type SerializedError } from '@mapscale/protocol';
import { ResultTooLargeError } from './errors.js';

/**
 * A results frame whose payload is this far under the limit cannot be over it: the envelope's
 * other fields take tens of bytes. Only frames closer than that (or carrying job errors, whose
 * size is the thrower's choice) are measured exactly, by encoding them once more.
 */
const ENVELOPE_MARGIN = 64 * 1024;

/**
 * The results message to send for `message`: itself when it fits in a frame of `maxFrameBytes`;
 * otherwise the same part with every job in it failed by a ResultTooLargeError naming the size
 * and the limit, so those jobs fail and the connection (which the peer would close on an oversized
 * frame) stays up. The relay never decodes results: only the payload's array header is read.
 */
export function fitResultsFrame(message: ResultsMessage, maxFrameBytes: number): ResultsMessage {
  if (message.errors === undefined && message.payload.byteLength + ENVELOPE_MARGIN <= maxFrameBytes) return message;
  const size = encodeMessage(message).length;
  if (size <= maxFrameBytes) return message;
  const count = msgpackArrayLength(message.payload);
  // Not an array: cannot happen with payloads our instance threads pack; sent as is, the peer refuses it.
  if (count === undefined || count === 0) return message;
  const tooLarge: SerializedError = serializeError(new ResultTooLargeError(size, maxFrameBytes, count));
  // The relay's stack says nothing about the job; left out, the error stays small however many jobs share it.
  delete tooLarge.stack;
  // A job that threw keeps its own error; if those are what is too big, each keeps its name and the start of its message.
  const thrown = new Map(message.errors ?? []);
  const fitted = (keep: (error: SerializedError) => SerializedError): ResultsMessage => ({
    ...message,
    payload: msgpackNulls(count),
    errors: Array.from({ length: count }, (_, i): [number, SerializedError] => {
      const own = thrown.get(i);
      return [i, own ? keep(own) : tooLarge];
    }),
  });
  const whole = fitted((error) => error);
  if (thrown.size === 0 || encodeMessage(whole).length <= maxFrameBytes) return whole;
  return fitted((error) => ({ name: error.name, message: truncateText(error.message, COMPACT_MESSAGE_CHARS) }));
}

/** What is left of a job's own error when a part's errors together are too big for a frame. */
const COMPACT_MESSAGE_CHARS = 1024;

/** Element count from a msgpack array header (fixarray, array 16, array 32). */
export function msgpackArrayLength(bytes: Uint8Array): number | undefined {
  const first = bytes[0];
  if (first === undefined) return undefined;
  if (first >= 0x90 && first <= 0x9f) return first & 0x0f;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (first === 0xdc && bytes.length >= 3) return view.getUint16(1);
  if (first === 0xdd && bytes.length >= 5) return view.getUint32(1);
  return undefined;
}

/** msgpack of an array of `count` nils. */
function msgpackNulls(count: number): Uint8Array {
  const header = count <= 15 ? 1 : count <= 0xffff ? 3 : 5;
  const bytes = new Uint8Array(header + count).fill(0xc0, header);
  const view = new DataView(bytes.buffer);
  if (header === 1) {
    bytes[0] = 0x90 | count;
  } else if (header === 3) {
    bytes[0] = 0xdc;
    view.setUint16(1, count);
  } else {
    bytes[0] = 0xdd;
    view.setUint32(1, count);
  }
  return bytes;
}
