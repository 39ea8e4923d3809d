import { expect } from 'chai';
import {
  DEFAULT_LIMITS,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameTooLargeError,
  MapScaleError,
  ProtocolError,
  decodeMessage,
  encodeFrame,
  encodeMessage,
  frameHeader,
  serializeError,
  type Message,
  type MessageType,
  type ShippedCode,
} from '@mapscale/protocol';
import { prng } from './helpers/prng.js';


function bodyOf(length: number, seed = length): Buffer {
  const rand = prng(seed);
  const body = Buffer.alloc(length);
  for (let i = 0; i < length; i++) body[i] = Math.floor(rand() * 256);
  return body;
}

/** Bodies may be views into the pushed chunk: copy each before the callback returns. */
function feed(decoder: FrameDecoder, chunks: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const chunk of chunks) decoder.push(chunk, (body) => out.push(Buffer.from(body)));
  return out;
}

function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

function oneByteChunks(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

function randomCuts(bytes: Buffer, rand: () => number, count: number): Buffer[] {
  const cuts = Array.from({ length: count }, () => Math.floor(rand() * (bytes.length + 1)));
  return splitAt(bytes, cuts);
}

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

function expectProtocolError(error: unknown): void {
  expect(error).to.be.instanceOf(ProtocolError);
  expect(error).to.be.instanceOf(MapScaleError);
  expect(error).to.not.be.instanceOf(FrameTooLargeError);
  expect(error).to.have.property('code', 'MS_PROTOCOL');
}

const LIMIT = 1024;

describe('frameHeader and encodeFrame', () => {
  it('frameHeader writes the body length as a 4-byte big-endian prefix', () => {
    expect(FRAME_HEADER_BYTES).to.equal(4);
    expect([...frameHeader(0x01020304)]).to.deep.equal([1, 2, 3, 4]);
    expect([...frameHeader(1)]).to.deep.equal([0, 0, 0, 1]);
    expect([...frameHeader(0xffffffff)]).to.deep.equal([255, 255, 255, 255]);
  });

  it('encodeFrame is the header followed by the body', () => {
    const body = bodyOf(37);
    const frame = encodeFrame(body);
    expect(frame.length).to.equal(FRAME_HEADER_BYTES + body.length);
    expect(frame.equals(Buffer.concat([frameHeader(body.length), body]))).to.equal(true);
  });

  it('encodeFrame accepts a plain Uint8Array body', () => {
    const body = new Uint8Array([9, 8, 7]);
    expect([...encodeFrame(body)]).to.deep.equal([0, 0, 0, 3, 9, 8, 7]);
  });

  it('encodeFrame carries lengths past 16 bits', () => {
    const body = bodyOf(70_000);
    const frame = encodeFrame(body);
    expect(frame.readUInt32BE(0)).to.equal(70_000);
    expect(frame.subarray(FRAME_HEADER_BYTES).equals(body)).to.equal(true);
  });
});

describe('FrameDecoder', () => {
  describe('splitting a stream into frames', () => {
    it('decodes one frame that arrives whole in one chunk', () => {
      const body = bodyOf(100);
      const decoder = new FrameDecoder(LIMIT);
      const out = feed(decoder, [encodeFrame(body)]);
      expect(out).to.have.length(1);
      expect(out[0]!.equals(body)).to.equal(true);
      expect(decoder.bufferedBytes).to.equal(0);
    });

    it('decodes a one-byte frame', () => {
      const out = feed(new FrameDecoder(LIMIT), [encodeFrame(Buffer.from([42]))]);
      expect(out.map((b) => [...b])).to.deep.equal([[42]]);
    });

    it('decodes a frame split in two at every possible point, including inside the length prefix', () => {
      const body = bodyOf(20);
      const frame = encodeFrame(body);
      for (let cut = 1; cut < frame.length; cut++) {
        const decoder = new FrameDecoder(LIMIT);
        const out = feed(decoder, splitAt(frame, [cut]));
        expect(out, `cut at ${cut}`).to.have.length(1);
        expect(out[0]!.equals(body), `cut at ${cut}`).to.equal(true);
        expect(decoder.bufferedBytes, `cut at ${cut}`).to.equal(0);
      }
    });

    it('decodes a frame whose length prefix arrives in 1+1+1+1 bytes before the body', () => {
      const body = bodyOf(300);
      const frame = encodeFrame(body);
      const decoder = new FrameDecoder(LIMIT);
      const out = feed(decoder, splitAt(frame, [1, 2, 3, 4]));
      expect(out).to.have.length(1);
      expect(out[0]!.equals(body)).to.equal(true);
    });

    it('decodes a frame fed one byte at a time, counting the prefix bytes and then the body bytes held', () => {
      const body = bodyOf(64);
      const frame = encodeFrame(body);
      const decoder = new FrameDecoder(LIMIT);
      const out: Buffer[] = [];
      frame.forEach((byte, i) => {
        decoder.push(Buffer.from([byte]), (b) => out.push(Buffer.from(b)));
        if (i < frame.length - 1) expect(out).to.have.length(0);
        if (i < FRAME_HEADER_BYTES - 1) expect(decoder.bufferedBytes, `byte ${i}`).to.equal(i + 1);
        if (i >= FRAME_HEADER_BYTES && i < frame.length - 1) {
          expect(decoder.bufferedBytes, `byte ${i}`).to.equal(i + 1 - FRAME_HEADER_BYTES);
        }
      });
      expect(out).to.have.length(1);
      expect(out[0]!.equals(body)).to.equal(true);
      expect(decoder.bufferedBytes).to.equal(0);
    });

    it('decodes a frame split across many chunks of varied sizes', () => {
      const body = bodyOf(5000);
      const frame = encodeFrame(body);
      for (let seed = 1; seed <= 10; seed++) {
        const out = feed(new FrameDecoder(8192), randomCuts(frame, prng(seed), 40));
        expect(out, `seed ${seed}`).to.have.length(1);
        expect(out[0]!.equals(body), `seed ${seed}`).to.equal(true);
      }
    });

    it('tolerates empty chunks anywhere in the stream', () => {
      const body = bodyOf(10);
      const frame = encodeFrame(body);
      const empty = Buffer.alloc(0);
      const decoder = new FrameDecoder(LIMIT);
      const out = feed(decoder, [empty, frame.subarray(0, 2), empty, frame.subarray(2, 7), empty, frame.subarray(7), empty]);
      expect(out).to.have.length(1);
      expect(out[0]!.equals(body)).to.equal(true);
    });

    it('decodes many frames arriving in one chunk, in order', () => {
      const bodies = Array.from({ length: 50 }, (_, i) => bodyOf(1 + i * 3, i + 1));
      const chunk = Buffer.concat(bodies.map((b) => encodeFrame(b)));
      const decoder = new FrameDecoder(LIMIT);
      const out = feed(decoder, [chunk]);
      expect(out).to.have.length(bodies.length);
      out.forEach((b, i) => expect(b.equals(bodies[i]!), `frame ${i}`).to.equal(true));
      expect(decoder.bufferedBytes).to.equal(0);
    });

    it('decodes a chunk that ends one frame, holds several whole ones and starts the next', () => {
      const bodies = [bodyOf(30, 1), bodyOf(5, 2), bodyOf(6, 3), bodyOf(40, 4)];
      const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));
      // First chunk stops inside frame 0's body; second runs from there into frame 3's length prefix.
      const cutA = 10;
      const cutB = FRAME_HEADER_BYTES * 3 + 30 + 5 + 6 + 2;
      const decoder = new FrameDecoder(LIMIT);
      const out: Buffer[] = [];
      decoder.push(stream.subarray(0, cutA), (b) => out.push(Buffer.from(b)));
      expect(out).to.have.length(0);
      decoder.push(stream.subarray(cutA, cutB), (b) => out.push(Buffer.from(b)));
      expect(out).to.have.length(3);
      expect(decoder.bufferedBytes).to.equal(2);
      decoder.push(stream.subarray(cutB), (b) => out.push(Buffer.from(b)));
      expect(out).to.have.length(4);
      out.forEach((b, i) => expect(b.equals(bodies[i]!), `frame ${i}`).to.equal(true));
    });

    it('decodes a mix of frame sizes cut at random points, for several seeds', () => {
      for (let seed = 1; seed <= 25; seed++) {
        const rand = prng(seed);
        const bodies = Array.from({ length: 1 + Math.floor(rand() * 30) }, (_, i) =>
          bodyOf(1 + Math.floor(rand() * (rand() < 0.2 ? 3000 : 20)), seed * 1000 + i));
        const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));
        const decoder = new FrameDecoder(4096);
        const out = feed(decoder, randomCuts(stream, rand, Math.floor(rand() * 60)));
        expect(out.length, `seed ${seed}`).to.equal(bodies.length);
        out.forEach((b, i) => expect(b.equals(bodies[i]!), `seed ${seed} frame ${i}`).to.equal(true));
        expect(decoder.bufferedBytes, `seed ${seed}`).to.equal(0);
      }
    });

    it('decodes a stream of mixed frames fed one byte at a time', () => {
      const bodies = [bodyOf(1, 1), bodyOf(17, 2), bodyOf(4, 3), bodyOf(260, 4), bodyOf(2, 5)];
      const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));
      const out = feed(new FrameDecoder(LIMIT), oneByteChunks(stream));
      expect(out).to.have.length(bodies.length);
      out.forEach((b, i) => expect(b.equals(bodies[i]!), `frame ${i}`).to.equal(true));
    });

    it('gives a body that spanned chunks its own copy, unaffected by later reuse of the chunks', () => {
      const body = bodyOf(50);
      const frame = encodeFrame(body);
      const first = Buffer.from(frame.subarray(0, 20));
      const second = Buffer.from(frame.subarray(20));
      let delivered: Buffer | undefined;
      const decoder = new FrameDecoder(LIMIT);
      decoder.push(first, () => expect.fail('no frame is complete yet'));
      decoder.push(second, (b) => { delivered = b; });
      first.fill(0);
      second.fill(0);
      expect(delivered).to.not.equal(undefined);
      expect(delivered!.equals(body)).to.equal(true);
    });
  });

  describe('limits', () => {
    it('throws FrameTooLargeError from the length prefix alone, before buffering any body', () => {
      const decoder = new FrameDecoder(LIMIT);
      const error = thrownBy(() => decoder.push(frameHeader(0x7fffffff), () => expect.fail('no frame expected')));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(error).to.be.instanceOf(ProtocolError);
      expect(error).to.be.instanceOf(MapScaleError);
      expect(error).to.have.property('code', 'MS_FRAME_TOO_LARGE');
      expect(error).to.have.property('size', 0x7fffffff);
      expect(error).to.have.property('limit', LIMIT);
      expect(decoder.bufferedBytes).to.be.at.most(FRAME_HEADER_BYTES);
    });

    it('throws FrameTooLargeError for a 0xFFFFFFFF prefix followed by body bytes', () => {
      const decoder = new FrameDecoder(LIMIT);
      const chunk = Buffer.concat([frameHeader(0xffffffff), bodyOf(100)]);
      const error = thrownBy(() => decoder.push(chunk, () => expect.fail('no frame expected')));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(error).to.have.property('code', 'MS_FRAME_TOO_LARGE');
      expect(error).to.have.property('size', 0xffffffff);
      expect(decoder.bufferedBytes).to.be.at.most(FRAME_HEADER_BYTES);
    });

    it('throws FrameTooLargeError when an oversized prefix arrives split across chunks', () => {
      for (const cuts of [[1], [2], [3], [1, 2, 3]]) {
        const decoder = new FrameDecoder(LIMIT);
        const chunks = splitAt(frameHeader(LIMIT * 1000), cuts);
        const last = chunks.pop()!;
        feed(decoder, chunks);
        expect(decoder.bufferedBytes, `cuts ${cuts}`).to.be.below(FRAME_HEADER_BYTES);
        const error = thrownBy(() => decoder.push(last, () => expect.fail('no frame expected')));
        expect(error, `cuts ${cuts}`).to.be.instanceOf(FrameTooLargeError);
        expect(error).to.have.property('code', 'MS_FRAME_TOO_LARGE');
        expect(decoder.bufferedBytes, `cuts ${cuts}`).to.be.at.most(FRAME_HEADER_BYTES);
      }
    });

    it('delivers the frames before an oversized one in the same chunk, then throws', () => {
      const good = [bodyOf(10, 1), bodyOf(20, 2)];
      const chunk = Buffer.concat([...good.map((b) => encodeFrame(b)), frameHeader(LIMIT + 1)]);
      const out: Buffer[] = [];
      const decoder = new FrameDecoder(LIMIT);
      const error = thrownBy(() => decoder.push(chunk, (b) => out.push(Buffer.from(b))));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(out).to.have.length(2);
      out.forEach((b, i) => expect(b.equals(good[i]!)).to.equal(true));
    });

    it('accepts a frame of exactly maxFrameBytes and rejects one byte more', () => {
      const exact = bodyOf(LIMIT);
      const out = feed(new FrameDecoder(LIMIT), [encodeFrame(exact)]);
      expect(out).to.have.length(1);
      expect(out[0]!.equals(exact)).to.equal(true);

      const error = thrownBy(() => feed(new FrameDecoder(LIMIT), [encodeFrame(bodyOf(LIMIT + 1))]));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(error).to.have.property('size', LIMIT + 1);
    });

    it('rejects a frame over the pre-authentication limit', () => {
      const decoder = new FrameDecoder(DEFAULT_LIMITS.preAuthFrameBytes);
      const error = thrownBy(() => decoder.push(frameHeader(DEFAULT_LIMITS.preAuthFrameBytes + 1), () => {}));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(error).to.have.property('limit', DEFAULT_LIMITS.preAuthFrameBytes);
    });

    it('throws ProtocolError for a zero-length frame', () => {
      const decoder = new FrameDecoder(LIMIT);
      const error = thrownBy(() => decoder.push(frameHeader(0), () => expect.fail('no frame expected')));
      expectProtocolError(error);
    });

    it('throws ProtocolError for a zero-length frame whose prefix arrives byte by byte', () => {
      const decoder = new FrameDecoder(LIMIT);
      const bytes = oneByteChunks(frameHeader(0));
      feed(decoder, bytes.slice(0, 3));
      const error = thrownBy(() => decoder.push(bytes[3]!, () => expect.fail('no frame expected')));
      expectProtocolError(error);
    });

    it('throws ProtocolError for a zero-length frame after good frames in the same chunk', () => {
      const out: Buffer[] = [];
      const chunk = Buffer.concat([encodeFrame(bodyOf(3)), frameHeader(0), encodeFrame(bodyOf(4))]);
      const error = thrownBy(() => new FrameDecoder(LIMIT).push(chunk, (b) => out.push(Buffer.from(b))));
      expectProtocolError(error);
      expect(out).to.have.length(1);
    });

    it('lets a larger frame through after maxFrameBytes is raised', () => {
      const decoder = new FrameDecoder(16);
      expect(decoder.maxFrameBytes).to.equal(16);
      const small = bodyOf(16);
      expect(feed(decoder, [encodeFrame(small)])[0]!.equals(small)).to.equal(true);

      decoder.maxFrameBytes = 100_000;
      expect(decoder.maxFrameBytes).to.equal(100_000);
      const large = bodyOf(50_000);
      const out = feed(decoder, randomCuts(encodeFrame(large), prng(7), 10));
      expect(out).to.have.length(1);
      expect(out[0]!.equals(large)).to.equal(true);
    });

    it('applies a raised limit to a frame whose prefix is still incomplete', () => {
      const decoder = new FrameDecoder(16);
      const body = bodyOf(200);
      const frame = encodeFrame(body);
      feed(decoder, [frame.subarray(0, 2)]);
      decoder.maxFrameBytes = 1000;
      const out = feed(decoder, [frame.subarray(2)]);
      expect(out).to.have.length(1);
      expect(out[0]!.equals(body)).to.equal(true);
    });

    it('applies a lowered limit to the next frame', () => {
      const decoder = new FrameDecoder(1000);
      feed(decoder, [encodeFrame(bodyOf(500))]);
      decoder.maxFrameBytes = 100;
      const error = thrownBy(() => feed(decoder, [encodeFrame(bodyOf(500))]));
      expect(error).to.be.instanceOf(FrameTooLargeError);
      expect(error).to.have.property('limit', 100);
    });
  });
});

const nonce = (seed: number) => new Uint8Array(bodyOf(32, seed));
const remoteError = serializeError(Object.assign(new TypeError('bad input'), { code: 'E_BAD' }));

/** One valid instance of every message type, with optional fields filled where there are some. */
const SAMPLES: Record<MessageType, Message> = {
  hello: { type: 'hello', protocol: 1, mapscale: '0.1.0', node: '20.19.0', nonce: nonce(1) },
  welcome: {
    type: 'welcome', protocol: 1, mapscale: '0.1.0', node: '20.19.0', nonce: nonce(2), authRequired: true,
    proof: nonce(3), slots: 4, hostname: 'worker-1', pid: 4242,
  },
  auth: { type: 'auth', proof: nonce(4) },
  ready: { type: 'ready' },
  setup: { type: 'setup', code: { kind: 'function', source: '(x) => x * 2' }, slots: 2, forwardOutput: true },
  'setup-done': { type: 'setup-done', slots: 2, maxFrameBytes: 1 << 20, data: [{ port: 41000, token: nonce(5) }, null] },
  'setup-failed': { type: 'setup-failed', slot: 1, error: remoteError },
  jobs: { type: 'jobs', slot: 0, batch: 17, payload: new Uint8Array([1, 2, 3]), timeoutMs: 30_000 },
  results: {
    type: 'results', slot: 0, batch: 17, offset: 3, payload: new Uint8Array([4, 5]),
    errors: [[1, remoteError]], busyMs: 1.5, final: true,
  },
  cancel: { type: 'cancel', slot: 2, batches: [17, 18] },
  ping: { type: 'ping', seq: 7 },
  pong: { type: 'pong', seq: 7 },
  'slot-lost': { type: 'slot-lost', slot: 3, reason: 'crashed', batch: 18, jobOffset: 5, error: remoteError },
  'slot-ready': { type: 'slot-ready', slot: 3, data: { port: 41001, token: nonce(6) } },
  'slot-failed': { type: 'slot-failed', slot: 3, error: remoteError },
  attach: { type: 'attach', slot: 3, token: nonce(7) },
  attached: { type: 'attached', slot: 3 },
  goodbye: { type: 'goodbye', reason: 'SIGTERM' },
  'need-bundle': { type: 'need-bundle', hash: 'ab'.repeat(32) },
  'status-request': { type: 'status-request' },
  status: { type: 'status', status: { version: '0.1.0', jobsDone: 3 } },
  bundle: { type: 'bundle', hash: 'ab'.repeat(32), source: new Uint8Array(bodyOf(64, 5)) },
  output: { type: 'output', slot: 1, stream: 'stderr', text: 'warning: slow job\n', phase: 'call', batch: 18, jobOffset: 2 },
  shutdown: { type: 'shutdown' },
  'shutdown-done': { type: 'shutdown-done', errors: [{ slot: 0, error: remoteError }] },
  error: { type: 'error', code: 'MS_AUTH_FAILED', message: 'proof did not verify' },
};

/** What each message type must carry, and a value of the wrong kind for each field. */
const REQUIRED: Record<MessageType, Record<string, unknown[]>> = {
  hello: { protocol: ['1'], mapscale: [1], node: [20], nonce: ['abc', [1, 2]] },
  welcome: {
    protocol: ['1'], mapscale: [1], node: [20], nonce: ['abc', [1, 2]], authRequired: ['true', 1],
    slots: ['4'], hostname: [1], pid: [true],
  },
  auth: {},
  ready: {},
  setup: { code: [[], null, 'source'], slots: ['2'] },
  'setup-done': { slots: ['2'] },
  'setup-failed': { slot: ['1'], error: [[], null, 'boom'] },
  jobs: { slot: ['0'], batch: ['17'], payload: ['bytes', [1, 2, 3], { 0: 1 }] },
  results: {
    slot: ['0'], batch: [null], offset: ['3'], payload: [[4, 5]], busyMs: ['1.5'], final: [1, 'true'],
  },
  cancel: { slot: ['2'], batches: [17, '17', { 0: 17 }, null] },
  ping: { seq: ['7', null] },
  pong: { seq: ['7', null] },
  'slot-lost': { slot: ['3'], reason: [1, null] },
  'slot-ready': { slot: ['3', null] },
  'slot-failed': { slot: ['3'], error: [[], null, 'boom'] },
  attach: { slot: ['3', null], token: ['token', [1, 2]] },
  attached: { slot: ['3', null] },
  goodbye: { reason: [0, null] },
  'need-bundle': { hash: [1, null] },
  'status-request': {},
  status: { status: [[], null, 'up'] },
  bundle: { hash: [2, null], source: ['bytes?', 3] },
  output: { slot: ['1'], stream: [1, null], text: [[104, 105], null], phase: [0, {}] },
  shutdown: {},
  'shutdown-done': { errors: [{}, 'none', null] },
  error: { code: [1], message: [{}] },
};

function encodeRaw(value: unknown): Buffer {
  return encodeMessage(value as Message);
}

describe('encodeMessage and decodeMessage', () => {
  for (const [type, message] of Object.entries(SAMPLES)) {
    it(`round trips a "${type}" message`, () => {
      expect(decodeMessage(encodeMessage(message))).to.deep.equal(message);
    });
  }

  it('round trips messages without their optional fields', () => {
    const auth: Message = { type: 'auth' };
    const { proof: _proof, ...welcome } = SAMPLES.welcome as Extract<Message, { type: 'welcome' }>;
    const { errors: _errors, ...results } = SAMPLES.results as Extract<Message, { type: 'results' }>;
    const { timeoutMs: _timeoutMs, ...jobs } = SAMPLES.jobs as Extract<Message, { type: 'jobs' }>;
    const slotLost: Message = { type: 'slot-lost', slot: 1, reason: 'timeout' };
    const output: Message = { type: 'output', slot: 0, stream: 'stdout', text: 'ready', phase: 'setup' };
    for (const message of [auth, { ...welcome, authRequired: false }, results, jobs, slotLost, output] as Message[]) {
      expect(decodeMessage(encodeMessage(message))).to.deep.equal(message);
    }
  });

  it('round trips every shipped-code kind in a setup message', () => {
    const state = new Uint8Array([0x80]);
    const codes: ShippedCode[] = [
      { kind: 'function', source: 'function double(x) { return 2 * x; }' },
      { kind: 'class', classes: [{ name: 'Base', source: 'class Base {}' }, { name: 'Doubler', source: 'class Doubler extends Base {}' }], state },
      { kind: 'module', url: 'file:///srv/work.js', exportName: 'Doubler', state },
    ];
    for (const code of codes) {
      const message: Message = { type: 'setup', code, slots: 3 };
      expect(decodeMessage(encodeMessage(message))).to.deep.equal(message);
    }
  });

  it('delivers bytes fields as Uint8Array', () => {
    const hello = decodeMessage(encodeMessage(SAMPLES.hello)) as Extract<Message, { type: 'hello' }>;
    expect(hello.nonce).to.be.instanceOf(Uint8Array);
    expect([...hello.nonce]).to.deep.equal([...(SAMPLES.hello as Extract<Message, { type: 'hello' }>).nonce]);
    const jobs = decodeMessage(encodeMessage({ type: 'jobs', slot: 1, batch: 2, payload: Buffer.from([7, 8]) }));
    expect((jobs as Extract<Message, { type: 'jobs' }>).payload).to.be.instanceOf(Uint8Array);
  });

  it('decodes a framed stream of every message type, fed one byte at a time, in order', () => {
    const messages = Object.values(SAMPLES);
    const stream = Buffer.concat(messages.map((m) => encodeFrame(encodeMessage(m))));
    const decoded = feed(new FrameDecoder(DEFAULT_LIMITS.preAuthFrameBytes), oneByteChunks(stream)).map((b) => decodeMessage(b));
    expect(decoded).to.deep.equal(messages);
  });

  it('decodes a framed stream of many messages in one chunk and in random chunks', () => {
    const messages: Message[] = Array.from({ length: 200 }, (_, i) => ({
      type: 'results', slot: i % 4, batch: i, offset: 0, payload: bodyOf(i % 50 + 1, i), busyMs: i / 8, final: i % 2 === 0,
    }));
    const stream = Buffer.concat(messages.map((m) => encodeFrame(encodeMessage(m))));
    const whole = feed(new FrameDecoder(LIMIT), [stream]).map((b) => decodeMessage(b));
    expect(whole).to.deep.equal(messages);
    const cut = feed(new FrameDecoder(LIMIT), randomCuts(stream, prng(3), 150)).map((b) => decodeMessage(b));
    expect(cut).to.deep.equal(messages);
  });

  describe('rejecting what is not a valid message', () => {
    const garbage: [string, number[]][] = [
      ['a reserved msgpack byte', [0xc1]],
      ['a truncated array', [0x92, 0x01]],
      ['a truncated map', [0x81]],
      ['a truncated string', [0xdb, 0, 0, 0, 9, 0x61]],
      ['an unknown extension', [0xd4]],
      ['two stray bytes', [0xff, 0xff]],
      ['a valid message followed by junk', [...encodeMessage({ type: 'ready' }), 0xc1]],
    ];
    for (const [what, bytes] of garbage) {
      it(`throws ProtocolError for ${what}`, () => {
        expectProtocolError(thrownBy(() => decodeMessage(Buffer.from(bytes))));
      });
    }

    it('throws ProtocolError for random bytes, for many seeds', () => {
      for (let seed = 1; seed <= 50; seed++) {
        const bytes = bodyOf(1 + (seed % 40), seed);
        let decoded: unknown;
        try {
          decoded = decodeMessage(bytes);
        } catch (error) {
          expectProtocolError(error);
          continue;
        }
        // Random bytes that happen to form a valid message must really be one.
        expect(decoded, `seed ${seed}`).to.be.an('object');
        expect(Object.keys(SAMPLES)).to.include((decoded as Message).type);
      }
    });

    const nonObjects: [string, unknown][] = [
      ['a number', 42], ['a string', 'hello'], ['null', null], ['a boolean', true],
      ['an array', [{ type: 'ready' }]], ['an empty array', []],
    ];
    for (const [what, value] of nonObjects) {
      it(`throws ProtocolError for ${what} instead of a message object`, () => {
        expectProtocolError(thrownBy(() => decodeMessage(encodeRaw(value))));
      });
    }

    const badTypes: [string, unknown][] = [
      ['an unknown type name', { type: 'nope' }],
      ['a numeric type', { type: 5 }],
      ['a missing type', { slot: 1 }],
      ['an empty object', {}],
      ['a type named after an Object.prototype key', { type: 'toString' }],
      ['a type named "constructor"', { type: 'constructor' }],
      ['a type named "hasOwnProperty"', { type: 'hasOwnProperty' }],
      ['a differently cased type', { type: 'HELLO' }],
    ];
    for (const [what, value] of badTypes) {
      it(`throws ProtocolError for ${what}`, () => {
        expectProtocolError(thrownBy(() => decodeMessage(encodeRaw(value))));
      });
    }

    for (const [type, fields] of Object.entries(REQUIRED)) {
      for (const [field, wrongValues] of Object.entries(fields)) {
        it(`throws ProtocolError for a "${type}" message lacking "${field}"`, () => {
          const message = { ...SAMPLES[type as MessageType] } as Record<string, unknown>;
          delete message[field];
          expectProtocolError(thrownBy(() => decodeMessage(encodeRaw(message))));
        });

        it(`throws ProtocolError for a "${type}" message whose "${field}" has the wrong kind`, () => {
          for (const wrong of wrongValues) {
            const message = { ...SAMPLES[type as MessageType], [field]: wrong };
            expectProtocolError(thrownBy(() => decodeMessage(encodeRaw(message))));
          }
        });
      }
    }
  });
});

describe('encodeMessageParts', () => {
  it('writes a large payload beside its envelope, decoding to the same message', async () => {
    const { encodeMessageParts: parts, decodeMessage: decode } = await import('@mapscale/protocol');
    const payload = new Uint8Array(100_000).map((_, i) => (i * 7) % 251);
    for (const message of [
      { type: 'jobs' as const, slot: 1, batch: 7, payload, timeoutMs: 50 },
      { type: 'results' as const, slot: 0, batch: 3, offset: 2, payload, busyMs: 1.5, final: true, errors: [[0, { name: 'E', message: 'x' }]] as [number, { name: string; message: string }][] },
    ]) {
      const written = parts(message);
      expect(written).to.have.length(2);
      expect(written[1]).to.equal(payload); // the payload itself, not a copy
      const decoded = decode(Buffer.concat(written.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length)))) as unknown as Record<string, unknown>;
      expect({ ...decoded, payload: Buffer.from(decoded.payload as Uint8Array).equals(Buffer.from(payload)) }).to.deep.equal({ ...message, payload: true });
    }
    expect(parts({ type: 'jobs', slot: 0, batch: 1, payload: new Uint8Array(10) })).to.have.length(1);
  });
});

describe('encodeFrameParts', () => {
  it('gives whole frames, length prefix included, that a FrameDecoder reads back as the same messages', async () => {
    const { encodeFrameParts } = await import('@mapscale/protocol');
    const payload = new Uint8Array(100_000).map((_, i) => (i * 11) % 253);
    const messages: Message[] = [
      { type: 'ping', seq: 41 },
      { type: 'jobs', slot: 0, batch: 1, payload: new Uint8Array([1, 2, 3]) },
      { type: 'jobs', slot: 1, batch: 7, payload, timeoutMs: 50 },
      { type: 'results', slot: 0, batch: 3, offset: 2, payload: new Uint8Array([0x91, 0x07]), busyMs: 0.25, final: true },
    ];
    const written = messages.map((message) => encodeFrameParts(message));
    // A small message is one buffer; a large payload travels as its own part, not copied.
    expect(written.map((parts) => parts.length)).to.deep.equal([1, 1, 2, 1]);
    expect(written[2]![1]).to.equal(payload);
    const stream = Buffer.concat(written.flat().map((p) => Buffer.from(p.buffer, p.byteOffset, p.length)));
    const decoded = feed(new FrameDecoder(DEFAULT_LIMITS.maxFrameBytes), [stream]).map((body) => decodeMessage(body));
    expect(decoded).to.have.length(messages.length);
    decoded.forEach((message, i) => {
      const sent = messages[i] as Message & { payload?: Uint8Array };
      const got = message as Message & { payload?: Uint8Array };
      if (sent.payload) expect(Buffer.from(got.payload!).equals(Buffer.from(sent.payload))).to.equal(true);
      expect({ ...got, payload: undefined }).to.deep.equal({ ...sent, payload: undefined });
    });
  });
});
