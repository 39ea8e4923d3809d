/**
 * Property-based fuzzing of a live daemon child process with fast-check: thousands of random and
 * mutated byte streams (mutated valid hellos, length prefixes near the limits, truncated frames,
 * message-shaped objects with wrong fields), before and after authentication. Bounded in count
 * and in time. Then the daemon must be alive, its memory bounded, and a real coordinator's map
 * correct. A failure prints fast-check's seed and path; replay them with MAPSCALE_FUZZ_SEED and
 * MAPSCALE_FUZZ_PATH. The last test does the same to a data port of a serving instance.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { expect } from 'chai';
import fc from 'fast-check';
import { Processor } from 'mapscale';
import {
  DEFAULT_LIMITS, FrameDecoder, MAPSCALE_VERSION, PROTOCOL_VERSION, computeProof, createCodec, createNonce,
  decodeMessage, encodeFrame, encodeMessage, frameHeader, type Message, type WelcomeMessage,
} from '@mapscale/protocol';
import { Power } from './fixtures/work-functions.js';
import { withDaemons, type TestDaemon } from './helpers/daemon.js';
import { protocolClient, setUpSession } from './helpers/protocol-client.js';

const secret = 'fuzz secret';
/** Streams thrown at once in one property run. */
const PARALLEL = 4;
/** A stream whose connection the daemon has not closed by then (after this side ended it) is a failure. */
const CLOSE_DEADLINE_MS = 5_000;
/**
 * Growth of the daemon's resident memory (peak over the run, against before it) that still passes.
 * Before authentication a connection may hold one 16 KiB frame; what grows is V8's heap of
 * short-lived garbage. After it, each session may start worker threads (PARALLEL at a time),
 * whose memory the OS gets back lazily. A leak (a buffer or a thread per connection) goes far past both.
 */
const PRE_AUTH_RSS_GROWTH_LIMIT = 128 * 1024 * 1024;
const POST_AUTH_RSS_GROWTH_LIMIT = 320 * 1024 * 1024;

const replay = process.env.MAPSCALE_FUZZ_SEED === undefined
  ? {}
  : { seed: Number(process.env.MAPSCALE_FUZZ_SEED), path: process.env.MAPSCALE_FUZZ_PATH };

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Samples the daemon's RSS until stopped; resolves to the peak. */
function watchRss(pid: number): { stop(): number } {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // The process is gone: the alive check after the run reports it.
    }
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssBytes(pid));
    },
  };
}

function alive(daemon: TestDaemon): boolean {
  if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return false;
  try {
    process.kill(daemon.child.pid!, 0);
    return true;
  } catch {
    return false;
  }
}

const hello = (): Message => ({ type: 'hello', protocol: PROTOCOL_VERSION, mapscale: MAPSCALE_VERSION, node: process.versions.node, nonce: createNonce() });
const frame = (message: unknown) => encodeFrame(encodeMessage(message as Message));

/** Lengths around every limit the daemon enforces, and the extremes of the prefix. */
const EDGE_SIZES = [
  0, 1, 2, 3, 4, 5, 255, 256, DEFAULT_LIMITS.preAuthFrameBytes - 1, DEFAULT_LIMITS.preAuthFrameBytes,
  DEFAULT_LIMITS.preAuthFrameBytes + 1, 65_535, 65_536, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1,
  2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
];

const MESSAGE_TYPES = [
  'hello', 'welcome', 'auth', 'ready', 'setup', 'setup-done', 'setup-failed', 'jobs', 'results', 'cancel', 'ping', 'pong',
  'slot-lost', 'slot-ready', 'slot-failed', 'goodbye', 'output', 'shutdown', 'shutdown-done', 'error', 'status', 'bundle',
  'attach', 'attached', '', 'HELLO', '__proto__', 'constructor', 'toString',
];
const FIELD_NAMES = [
  'type', 'protocol', 'mapscale', 'node', 'nonce', 'proof', 'slots', 'slot', 'batch', 'batches', 'payload', 'code', 'seq',
  'timeoutMs', 'offset', 'final', 'errors', 'message', 'kind', 'source', 'url', 'exportName', 'state', 'token', '__proto__', 'constructor',
];

const fieldValue = fc.oneof(
  fc.anything({ maxDepth: 2, maxKeys: 4 }),
  fc.uint8Array({ maxLength: 64 }),
  fc.constantFrom<unknown>(PROTOCOL_VERSION, PROTOCOL_VERSION + 1, MAPSCALE_VERSION, '9.9.9', process.versions.node, -1, 0, 2 ** 53, NaN, Infinity, null),
);

/** An object shaped like a message: a known (or near) type, fields of any name and any value. */
const messageLike = fc.tuple(
  fc.constantFrom(...MESSAGE_TYPES),
  fc.dictionary(fc.oneof(fc.constantFrom(...FIELD_NAMES), fc.string({ maxLength: 12 })), fieldValue, { maxKeys: 8 }),
).map(([type, fields]) => {
  try {
    return frame({ ...fields, type });
  } catch {
    return frame({ type });
  }
});

const edit = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('length' as const), size: fc.constantFrom(...EDGE_SIZES) }),
);
type Edit = typeof edit extends fc.Arbitrary<infer E> ? E : never;

function applyEdit(bytes: Buffer, e: Edit): Buffer {
  const at = bytes.length === 0 ? 0 : ('at' in e ? e.at % bytes.length : 0);
  switch (e.kind) {
    case 'set': {
      const out = Buffer.from(bytes);
      if (out.length > 0) out[at] = e.byte;
      return out;
    }
    case 'truncate': return bytes.subarray(0, at);
    case 'insert': return Buffer.concat([bytes.subarray(0, at), e.bytes, bytes.subarray(at)]);
    case 'delete': return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + e.count)]);
    case 'length': return Buffer.concat([frameHeader(e.size), bytes.subarray(4)]);
  }
}

/** A valid frame (a hello, or any message-like one) with a few edits: flipped bytes, cuts, a rewritten length prefix. */
const mutatedFrame = fc.tuple(fc.oneof(fc.constant(null), messageLike), fc.array(edit, { minLength: 1, maxLength: 4 }))
  .map(([base, edits]) => edits.reduce(applyEdit, base ?? frame(hello())));

/** A length prefix near a limit, followed by fewer, as many or more bytes than it announces. */
const edgePrefix = fc.tuple(fc.oneof(fc.constantFrom(...EDGE_SIZES), fc.integer({ min: 0, max: 2 ** 32 - 1 })), fc.uint8Array({ maxLength: 2048 }))
  .map(([size, body]) => Buffer.concat([frameHeader(size), body]));

/** A valid hello, then an auth with a proof of any length (never the right one: this side has no secret). */
const guessedAuth = fc.oneof(fc.constant(undefined), fc.uint8Array({ maxLength: 64 }))
  .map((proof) => Buffer.concat([frame(hello()), frame({ type: 'auth', proof })]));

const piece = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)), weight: 2 },
  { arbitrary: edgePrefix, weight: 2 },
  { arbitrary: mutatedFrame, weight: 4 },
  { arbitrary: messageLike, weight: 2 },
  { arbitrary: guessedAuth, weight: 1 },
);

/** One connection's byte stream: a few pieces back to back, cut into chunks at arbitrary points. */
const stream = fc.tuple(fc.array(piece, { minLength: 1, maxLength: 4 }), fc.array(fc.nat(), { maxLength: 4 }))
  .map(([pieces, cuts]) => {
    const bytes = Buffer.concat(pieces);
    const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
    return [0, ...points].map((start, i) => bytes.subarray(start, i < points.length ? points[i] : bytes.length)).filter((c) => c.length > 0);
  });

interface Outcome {
  messages: Message[];
  /** Bytes the daemon sent that do not decode as frames of valid messages. */
  garbage: string | null;
}

/**
 * Opens a connection, runs `talk` on it, ends this side and waits for the daemon to close. Any
 * frame the daemon sends must be a valid message.
 */
function exchange(port: number, talk: (send: (bytes: Uint8Array) => void, received: Message[]) => Promise<void> | void): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    const messages: Message[] = [];
    let garbage: string | null = null;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the daemon did not close a connection within ${CLOSE_DEADLINE_MS} ms after it ended`));
    }, CLOSE_DEADLINE_MS * 2);
    socket.on('data', (chunk) => {
      if (garbage !== null) return;
      try {
        decoder.push(chunk, (body) => messages.push(decodeMessage(body)));
      } catch (error) {
        garbage = (error as Error).message;
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ messages, garbage });
    });
    socket.once('connect', async () => {
      try {
        await talk((bytes) => {
          if (!socket.destroyed) socket.write(bytes);
        }, messages);
      } finally {
        socket.end();
      }
    });
  });
}

function waitForMessage(received: Message[], type: string, timeoutMs = 5_000): Promise<Message | undefined> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const poll = () => {
      const found = received.find((m) => m.type === type || m.type === 'error');
      if (found || Date.now() > deadline) resolve(found?.type === type ? found : undefined);
      else setTimeout(poll, 2);
    };
    poll();
  });
}

async function mapCorrectly(daemon: TestDaemon, count: number): Promise<void> {
  const mapper = new Processor(new Power(2), [daemon.address], { secret });
  try {
    const jobs = Array.from({ length: count }, (_, i) => i);
    expect(await mapper.map(jobs)).to.deep.equal(jobs.map((x) => x * x));
  } finally {
    await mapper.shutdown();
  }
}

describe('security: fuzzing a live daemon (fast-check)', function () {
  this.timeout(60_000);

  it('survives thousands of random and mutated byte streams before authentication, never authenticating one', async () => {
    await withDaemons(1, { secret, workers: 2, args: ['--handshake-timeout-ms', '2000'] }, async ([daemon]) => {
      await mapCorrectly(daemon!, 100);
      const baseline = rssBytes(daemon!.child.pid!);
      const rss = watchRss(daemon!.child.pid!);
      let streams = 0;
      let answered = 0;
      let peak: number;
      try {
        await fc.assert(fc.asyncProperty(fc.array(stream, { minLength: PARALLEL, maxLength: PARALLEL }), async (batch) => {
          const outcomes = await Promise.all(batch.map((chunks) => exchange(daemon!.port, (send) => chunks.forEach(send))));
          streams += batch.length;
          for (const outcome of outcomes) {
            expect(outcome.garbage, 'the daemon sent a malformed frame').to.equal(null);
            // Nothing but a welcome (to a valid hello) and an error frame, ever: no stream gets past authentication.
            expect(outcome.messages.map((m) => m.type).filter((t) => t !== 'welcome' && t !== 'error')).to.deep.equal([]);
            if (outcome.messages.length > 0) answered++;
          }
        }), { numRuns: 2500, ...replay, plugins: [fc.interruptAfterTimeLimit(20_000)] });
      } finally {
        peak = rss.stop();
      }
      expect(streams, 'streams thrown').to.be.at.least(2000);
      expect(answered, 'streams the daemon answered').to.be.above(0);
      expect(alive(daemon!), 'the daemon is alive').to.equal(true);
      expect(peak - baseline, `RSS grew from ${baseline} to a peak of ${peak} bytes`).to.be.below(PRE_AUTH_RSS_GROWTH_LIMIT);
      await mapCorrectly(daemon!, 2000);
    });
  });

  it('survives random and mutated frames from an authenticated peer, and still maps correctly', async () => {
    await withDaemons(1, { secret, workers: 1, args: ['--max-frame-bytes', String(1024 * 1024)] }, async ([daemon]) => {
      const codec = createCodec();
      const baseline = rssBytes(daemon!.child.pid!);
      const rss = watchRss(daemon!.child.pid!);
      const slot = fc.oneof(fc.constantFrom(0, 1, -1, 0.5, 2 ** 31), fc.integer());
      const payload = fc.oneof(
        fc.uint8Array({ maxLength: 512 }),
        fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 8 }).map((jobs) => {
          try {
            return new Uint8Array(codec.pack(jobs));
          } catch {
            return new Uint8Array([0x90]);
          }
        }),
      );
      const afterAuth = fc.oneof(
        { arbitrary: fc.record({ type: fc.constant('jobs'), slot, batch: fc.integer(), payload, timeoutMs: fc.option(fc.integer()) }).map(frame), weight: 4 },
        { arbitrary: fc.record({ type: fc.constant('cancel'), slot, batches: fc.array(fc.oneof(fc.integer(), fc.string()), { maxLength: 4 }) }).map(frame), weight: 2 },
        { arbitrary: fc.record({ type: fc.constant('ping'), seq: fc.double() }).map(frame), weight: 1 },
        { arbitrary: fc.record({ type: fc.constant('setup'), slots: fc.oneof(fc.integer(), fc.double()), code: fc.oneof(
          fc.constant({ kind: 'function', source: '(x) => x' }),
          fc.record({ kind: fc.constantFrom('function', 'class', 'module', 'bogus'), source: fc.string({ maxLength: 40 }) }),
          fc.anything({ maxDepth: 1 }).filter((v) => typeof v === 'object' && v !== null && !Array.isArray(v)),
        ) }).map(frame), weight: 1 },
        { arbitrary: messageLike, weight: 2 },
        { arbitrary: mutatedFrame, weight: 2 },
        { arbitrary: edgePrefix, weight: 1 },
      );
      let streams = 0;
      let peak: number;
      try {
        const session = fc.record({ setUp: fc.boolean(), frames: fc.array(afterAuth, { minLength: 1, maxLength: 6 }) });
        await fc.assert(fc.asyncProperty(fc.array(session, { minLength: PARALLEL, maxLength: PARALLEL }), async (batch) => {
          const outcomes = await Promise.all(batch.map(({ setUp, frames }) => exchange(daemon!.port, async (send, received) => {
            const nonce = createNonce();
            send(frame({ type: 'hello', protocol: PROTOCOL_VERSION, mapscale: MAPSCALE_VERSION, node: process.versions.node, nonce }));
            const welcome = await waitForMessage(received, 'welcome') as WelcomeMessage | undefined;
            expect(welcome, 'a welcome').to.not.equal(undefined);
            send(frame({ type: 'auth', proof: computeProof(secret, 'coordinator', nonce, welcome!.nonce) }));
            expect(await waitForMessage(received, 'ready'), 'ready').to.not.equal(undefined);
            if (setUp) {
              // Half the sessions are serving before the fuzz starts, so jobs reach an instance thread.
              send(frame({ type: 'setup', slots: 1, code: { kind: 'function', source: '(x) => x' } }));
              expect(await waitForMessage(received, 'setup-done', 10_000), 'setup-done').to.not.equal(undefined);
            }
            for (const bytes of frames) send(bytes);
            // Give a serving session's instance a moment with what it was sent before this side ends.
            if (setUp) await new Promise((resolve) => setTimeout(resolve, 20));
          })));
          streams += batch.length;
          for (const outcome of outcomes) expect(outcome.garbage, 'the daemon sent a malformed frame').to.equal(null);
        }), { numRuns: 250, ...replay, plugins: [fc.interruptAfterTimeLimit(8_000)] });
      } finally {
        peak = rss.stop();
      }
      expect(streams, 'streams thrown').to.be.at.least(PARALLEL * 10);
      expect(alive(daemon!), 'the daemon is alive').to.equal(true);
      expect(peak - baseline, `RSS grew from ${baseline} to a peak of ${peak} bytes`).to.be.below(POST_AUTH_RSS_GROWTH_LIMIT);
      await mapCorrectly(daemon!, 2000);
    });
  });

  it('turns away random, mutated and guessed-token streams on a data port; the real token still attaches', async () => {
    await withDaemons(1, { workers: 1, args: ['--handshake-timeout-ms', '30000'] }, async ([daemon]) => {
      const control = await protocolClient(daemon!.port);
      try {
        const done = await setUpSession(control, '(x) => x + 1', 1);
        const endpoint = done.data![0]!;
        const guessedAttach = fc.record({ slot: fc.constantFrom(0, 1, -1), token: fc.uint8Array({ maxLength: 64 }) })
          .map(({ slot, token }) => frame({ type: 'attach', slot, token }));
        const dataPiece = fc.oneof(piece, { arbitrary: guessedAttach, weight: 3 });
        const dataStream = fc.array(dataPiece, { minLength: 1, maxLength: 3 }).map((pieces) => [Buffer.concat(pieces)]);
        let streams = 0;
        await fc.assert(fc.asyncProperty(fc.array(dataStream, { minLength: PARALLEL, maxLength: PARALLEL }), async (batch) => {
          const outcomes = await Promise.all(batch.map((chunks) => exchange(endpoint.port, (send) => chunks.forEach(send))));
          streams += batch.length;
          for (const outcome of outcomes) {
            expect(outcome.garbage, 'the instance sent a malformed frame').to.equal(null);
            expect(outcome.messages.map((m) => m.type).filter((t) => t !== 'error')).to.deep.equal([]);
          }
        }), { numRuns: 1000, ...replay, plugins: [fc.interruptAfterTimeLimit(10_000)] });
        expect(streams, 'streams thrown').to.be.at.least(400);
        expect(daemon!.logs.filter((l) => l.event === 'instance-died')).to.deep.equal([]);
        const data = await protocolClient(endpoint.port);
        data.send({ type: 'attach', slot: 0, token: endpoint.token });
        await data.next('attached');
        data.send({ type: 'jobs', slot: 0, batch: 1, payload: createCodec().pack([41]) });
        const results = await data.next('results');
        expect(createCodec().unpack(results.payload as Buffer)).to.deep.equal([42]);
        data.connection.end();
      } finally {
        control.connection.destroy();
      }
    });
  });
});
