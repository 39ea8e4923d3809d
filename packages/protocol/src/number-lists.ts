import { addExtension } from 'msgpackr';

/**
 * A list of plain numbers — the jobs of most maps, and their results — travels as one msgpack ext
 * value ('N', 0x4e) holding their float64s little-endian, 8 bytes each, instead of one msgpack value
 * per number. Packing and unpacking it is a copy done by the engine's own builtins, fast from the
 * very first batch: msgpackr's per-value paths need thousands of values before V8 optimizes them,
 * which is most of a fresh process's first map (docs/ARCHITECTURE.md, "Cold start"). Exact: a
 * float64 is what a JS number is, -0 and NaN included. Any other list takes msgpackr's usual path.
 * The payload is still msgpack, and decodes through any codec of this module (the reader below).
 */
export const NUMBER_LIST_EXTENSION = 0x4e;

/** Below this many, per-value msgpack is as fast and smaller: not worth a separate path. */
const MIN_LENGTH = 16;
const HEADER_BYTES = 6;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `values[start..end)` packed as a number list, or undefined if they are not numbers worth packing so. */
export function packNumberList(values: readonly unknown[], start = 0, end = values.length): Buffer | undefined {
  const length = end - start;
  if (length < MIN_LENGTH || !LITTLE_ENDIAN || typeof values[start] !== 'number') return undefined;
  const bytes = length * 8;
  // ext 32: 0xc9, length (uint32, big-endian), type, data. Data starts at an offset of 8 into an
  // 8-aligned allocation, so the numbers are written through an aligned Float64Array.
  const buffer = Buffer.allocUnsafeSlow(bytes + 8);
  const numbers = new Float64Array(buffer.buffer, buffer.byteOffset + 8, length);
  // One pass that checks and copies; a non-number (rare, once the first one is a number) gives up.
  for (let i = 0; i < length; i++) {
    const value = values[start + i];
    if (typeof value !== 'number') return undefined;
    numbers[i] = value;
  }
  const out = buffer.subarray(8 - HEADER_BYTES);
  out[0] = 0xc9;
  out.writeUInt32BE(bytes, 1);
  out[5] = NUMBER_LIST_EXTENSION;
  return out;
}

/**
 * The reader: a plain array again (a typed array would not be what the app mapped). Copied in a
 * plain loop: Array.from(typedArray) goes through the iterator protocol and took ~3x as long in a
 * fresh process.
 */
function readNumberList(data: Uint8Array): number[] {
  const length = data.byteLength >>> 3;
  const values = new Array<number>(length);
  if (LITTLE_ENDIAN) {
    // Where the frame put the data, it may not be 8-aligned: copied once, aligned.
    const aligned = data.byteOffset % 8 === 0
      ? new Float64Array(data.buffer, data.byteOffset, length)
      : new Float64Array(data.buffer.slice(data.byteOffset, data.byteOffset + length * 8));
    for (let i = 0; i < length; i++) values[i] = aligned[i]!;
    return values;
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < length; i++) values[i] = view.getFloat64(i * 8, true);
  return values;
}

addExtension({ type: NUMBER_LIST_EXTENSION, unpack: readNumberList } as unknown as Parameters<typeof addExtension>[0]);
