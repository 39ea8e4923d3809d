import { Packr, Unpackr } from 'msgpackr';
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
