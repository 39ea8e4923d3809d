import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
import { FRAME_HEADER_BYTES } from './limits.js';
import { ProtocolError } from './errors.js';
import { validateMessage, type Message } from './messages.js';

/**
 * Envelopes are encoded without records (they are small, and each frame must decode on its own,
 * with no state shared between the peers' codecs) and without typed-array extensions, so byte
 * payloads travel as msgpack bin and decode as zero-copy Buffer views.
 */
const envelopePackr = new Packr({ useRecords: false });
const envelopeUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export function encodeMessage(message: Message): Buffer {
  return envelopePackr.pack(message);
}

/** Decodes and validates one frame body; any failure is a ProtocolError. */
export function decodeMessage(body: Uint8Array): Message {
  let value: unknown;
  try {
    value = envelopeUnpackr.unpack(body);
  } catch (error) {
    throw new ProtocolError('frame body is not valid msgpack', { cause: error });
  }
  return validateMessage(value);
}

/**
 * One message as a whole frame, ready to write: its length prefix and body, in as few buffers as
 * possible. A small message is one buffer (msgpackr leaves room for the prefix in front of the
 * body, so nothing is copied); a large payload is its own part, as in encodeMessageParts.
 */
export function encodeFrameParts(message: Message): Uint8Array[] {
  const parts = encodeMessageParts(message, true);
  if (parts.length === 1) {
    const frame = parts[0] as Buffer;
    frame.writeUInt32BE(frame.length - FRAME_HEADER_BYTES, 0);
    return parts;
  }
  const [head, payload] = parts as [Buffer, Uint8Array];
  head.writeUInt32BE(head.length - FRAME_HEADER_BYTES + payload.length, 0);
  return parts;
}

/** The whole message in one buffer, `room` bytes left free in front of it (for a frame's length prefix). */
function packWhole(message: Message, room: number): Buffer {
  return room ? envelopePackr.pack(message, RESERVE_START_SPACE | room) : encodeMessage(message);
}

/** Payloads at least this large are written beside their envelope instead of copied into it. */
const SPLIT_PAYLOAD_BYTES = 16 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * The body of a message as parts to write one after the other. A large `payload` (jobs or results,
 * already msgpack) is not copied into the envelope: the envelope is encoded with an empty payload
 * as its last field, whose bin8 header is swapped for a bin32 header of the real length: the same
 * message as encodeMessage() gives, its payload moved to the end.
 */
export function encodeMessageParts(message: Message, withHeaderRoom = false): Uint8Array[] {
  const room = withHeaderRoom ? FRAME_HEADER_BYTES : 0;
  const payload = (message as { payload?: unknown }).payload;
  if (!(payload instanceof Uint8Array) || payload.length < SPLIT_PAYLOAD_BYTES) return [packWhole(message, room)];
  const { payload: _payload, ...rest } = message as Message & { payload: Uint8Array };
  const head = envelopePackr.pack({ ...rest, payload: EMPTY });
  // `payload` is the last key, so the envelope ends with its empty bin8: 0xc4 0x00.
  if (head[head.length - 2] !== 0xc4 || head[head.length - 1] !== 0x00) return [packWhole(message, room)];
  const prefix = Buffer.allocUnsafe(room + head.length - 2 + 5);
  prefix.set(head.subarray(0, head.length - 2), room);
  prefix[room + head.length - 2] = 0xc6;
  prefix.writeUInt32BE(payload.length, room + head.length - 1);
  return [prefix, payload];
}
