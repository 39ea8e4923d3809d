import { Packr, Unpackr } from 'msgpackr';
import { ProtocolError } from './errors.js';
import { validateMessage, type Message } from './messages.js';

/**
 * Envelopes are encoded without records: they are small, and a stream of them must decode
 * frame by frame with no state shared between the peers' codecs.
 */
const envelopePackr = new Packr({ useRecords: false, moreTypes: true });
const envelopeUnpackr = new Unpackr({ useRecords: false, moreTypes: true, mapsAsObjects: true });

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
