import { expect } from 'chai';
import { JobError, JobTooLargeError, Processor, SetupError, WorkFunction } from 'mapscale';
import { createCodec, decodeMessage, encodeMessage, type Message } from '@mapscale/protocol';
import { withDaemons } from './helpers/daemon.js';

const LIMIT = 1024 * 1024;

/** Returns a string of `n` characters: a result as large as the job says. */
class Bloat extends WorkFunction<number, string> {
  call(n: number): string {
    return 'x'.repeat(n);
  }
}

/** What a careless job does with big data: throws it, prints it, fails setup with it. */
class Oversharing extends WorkFunction<{ throwMessage?: number; throwProp?: number; print?: number; many?: boolean }, string> {
  constructor(private readonly setupMessage = 0) {
    super();
  }
  override setup(): void {
    if (this.setupMessage > 0) throw new Error('s'.repeat(this.setupMessage));
  }
  call(job: { throwMessage?: number; throwProp?: number; print?: number }): string {
    if (job.print) console.log('p'.repeat(job.print));
    if (job.throwMessage) throw new Error('m'.repeat(job.throwMessage));
    if (job.throwProp) throw Object.assign(new Error('a big property'), { data: Buffer.alloc(job.throwProp, 1), code: 'E_BIG' });
    return 'ok';
  }
}

const HOSTILE_JSON = '{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}';

/** Reports, from inside the worker, what a job with hostile keys looks like there; answers with hostile keys too. */
class ProtoProbe extends WorkFunction<unknown, Record<string, unknown>> {
  call(job: unknown): Record<string, unknown> {
    const fresh = {} as Record<string, unknown>;
    const record = job as Record<string, unknown>;
    return {
      prototypeIsObject: Object.getPrototypeOf(record) === Object.prototype,
      keys: Object.keys(record),
      constructorIsOwnData: Object.getOwnPropertyDescriptor(record, 'constructor')?.value !== undefined,
      polluted: fresh.polluted !== undefined || (Object.prototype as Record<string, unknown>).polluted !== undefined,
      answer: JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}'),
      mapKeys: job instanceof Map ? [...job.keys()] : null,
    };
  }
}

/** Throws an error whose own properties are named __proto__ and constructor. */
class OddError extends WorkFunction<number, number> {
  call(): number {
    const error = new Error('an error with hostile property names');
    Object.defineProperty(error, '__proto__', { value: { polluted: 'yes' }, enumerable: true, configurable: true, writable: true });
    Object.defineProperty(error, 'constructor', { value: { polluted: 'yes' }, enumerable: true, configurable: true, writable: true });
    throw error;
  }
}

function expectUnpolluted(): void {
  expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
  expect((Object.prototype as Record<string, unknown>).polluted).to.equal(undefined);
  expect(([] as unknown as Record<string, unknown>).polluted).to.equal(undefined);
}

describe('security: data after authentication', () => {
  describe('a result too large for a frame', () => {
    it('fails that job with JobError naming the size and the limit; the connection and the workers stay up', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const mapper = new Processor(new Bloat(), [daemon!.address], { chunkSize: 1 });
        const lost: unknown[] = [];
        mapper.on('worker-lost', (event) => lost.push(event));
        try {
          const error = await mapper.map([10, 2 * LIMIT, 10]).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(JobError);
          const jobError = error as JobError;
          expect(jobError.jobIndex).to.equal(1);
          const cause = jobError.cause as Error & { code: string; size: number; limit: number };
          expect(cause.name).to.equal('ResultTooLargeError');
          expect(cause.code).to.equal('MS_RESULT_TOO_LARGE');
          expect(cause.limit).to.equal(LIMIT);
          expect(cause.size).to.be.above(2 * LIMIT);
          expect(cause.message).to.include(String(cause.size)).and.include(String(LIMIT));
          // Same connection, same instance: the next map just works.
          expect(await mapper.map([3, 4])).to.deep.equal(['xxx', 'xxxx']);
          expect(mapper.workerCount).to.equal(1);
          expect(lost).to.deep.equal([]);
          expect(daemon!.logs.filter((l) => l.event === 'session-authenticated')).to.have.length(1);
          expect(daemon!.logs.some((l) => l.event === 'session-failed')).to.equal(false);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('with settle, rejects only that job and fulfils the others', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const mapper = new Processor(new Bloat(), [daemon!.address], { chunkSize: 1 });
        try {
          const settled = await mapper.map([1, 2 * LIMIT, 2], { settle: true }) as unknown as { status: string; value?: string; reason?: JobError }[];
          expect(settled.map((s) => s.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
          expect(settled[0]!.value).to.equal('x');
          expect(settled[2]!.value).to.equal('xx');
          expect((settled[1]!.reason!.cause as { code: string }).code).to.equal('MS_RESULT_TOO_LARGE');
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('fails the jobs whose results together overflow one message, each under the limit alone', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        // Eight fast jobs of one batch are answered together (a part is sent early only after 5 ms).
        const mapper = new Processor(new Bloat(), [daemon!.address], { chunkSize: 8 });
        try {
          const error = await mapper.map(Array(8).fill(300_000)).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(JobError);
          const cause = (error as JobError).cause as Error & { code: string; jobs: number; limit: number };
          expect(cause.code).to.equal('MS_RESULT_TOO_LARGE');
          expect(cause.jobs).to.be.at.least(4);
          expect(cause.message).to.include('answered with it');
          expect(await mapper.map([1, 2])).to.deep.equal(['x', 'xx']);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('refuses a coordinator maxFrameBytes below 1 KiB', () => {
      expect(() => new Processor(new Bloat(), ['127.0.0.1:1'], { maxFrameBytes: 100 })).to.throw(/maxFrameBytes/);
    });
  });

  describe('frame limits told to the peer at setup', () => {
    it('fails a job larger than the daemon\'s frame limit with JobTooLargeError, never sending it; the others are answered', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const mapper = new Processor((s: string) => s.length, [daemon!.address]);
        const lost: unknown[] = [];
        mapper.on('worker-lost', (event) => lost.push(event));
        try {
          const settled = await mapper.map(['a', 'x'.repeat(2 * LIMIT), 'bcd'], { settle: true }) as unknown as { status: string; value?: number; reason?: JobError }[];
          expect(settled.map((s) => s.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
          expect([settled[0]!.value, settled[2]!.value]).to.deep.equal([1, 3]);
          const cause = settled[1]!.reason!.cause as Error & { code: string; limit: number; size: number };
          expect(cause.name).to.equal('JobTooLargeError');
          expect(cause.code).to.equal(new JobTooLargeError(1, 1).code);
          expect(cause.limit).to.equal(LIMIT);
          expect(cause.size).to.be.above(2 * LIMIT);
          // A batch too large as a whole, each job fitting alone: split until it fits, every job answered.
          const pieces = Array.from({ length: 8 }, (_, i) => String(i).repeat(300_000));
          expect(await mapper.map(pieces)).to.deep.equal(pieces.map(() => 300_000));
          expect(lost).to.deep.equal([]);
          expect(daemon!.logs.filter((l) => l.event === 'session-authenticated')).to.have.length(1);
          expect(daemon!.logs.some((l) => l.event === 'disconnected')).to.equal(false);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('fits results to the coordinator\'s smaller frame limit: ResultTooLargeError naming it, the connection stays up', async () => {
      await withDaemons(1, { workers: 1 }, async ([daemon]) => {
        const mapper = new Processor(new Bloat(), [daemon!.address], { maxFrameBytes: LIMIT });
        const lost: unknown[] = [];
        mapper.on('worker-lost', (event) => lost.push(event));
        try {
          const error = await mapper.map([2 * LIMIT]).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(JobError);
          const cause = (error as JobError).cause as Error & { code: string; limit: number };
          expect(cause.code).to.equal('MS_RESULT_TOO_LARGE');
          expect(cause.limit).to.equal(LIMIT);
          expect(await mapper.map([5])).to.deep.equal(['xxxxx']);
          expect(lost).to.deep.equal([]);
        } finally {
          await mapper.shutdown();
        }
      });
    });
  });

  describe('errors and output bigger than a frame', () => {
    it('cuts what a job throws to a size that travels: a JobError, the connection and the workers stay up', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const mapper = new Processor(new Oversharing(), [daemon!.address], { chunkSize: 1, workerOutput: 'off' });
        const lost: unknown[] = [];
        mapper.on('worker-lost', (event) => lost.push(event));
        try {
          const error = await mapper.map([{}, { throwMessage: 4 * LIMIT }]).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(JobError);
          const cause = (error as JobError).cause as Error;
          expect(cause.message.startsWith('mmmm')).to.equal(true);
          expect(cause.message).to.match(/more characters cut\]$/);
          expect(cause.message.length).to.be.below(LIMIT);

          const propError = await mapper.map([{ throwProp: 4 * LIMIT }]).then(() => null, (e: unknown) => e);
          const propCause = (propError as JobError).cause as Error & { code: string; data: unknown };
          expect(propCause.code).to.equal('E_BIG');
          expect(propCause.data).to.be.a('string').and.match(/^\[left out: /);

          // Many errors of one part, together over the limit: each job still fails with its own name and message.
          const batched = new Processor(new Oversharing(), [daemon!.address], { chunkSize: 40 });
          const settled = await batched.map(Array.from({ length: 40 }, () => ({ throwMessage: 60_000 })), { settle: true })
            .finally(() => batched.shutdown()) as unknown as { status: string; reason: JobError }[];
          expect(settled.every((s) => s.status === 'rejected' && (s.reason.cause as Error).message.startsWith('mmmm'))).to.equal(true);

          expect(await mapper.map([{}, { print: 4 * LIMIT }])).to.deep.equal(['ok', 'ok']);
          expect(lost).to.deep.equal([]);
          expect(daemon!.logs.some((l) => l.event === 'session-failed')).to.equal(false);
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('forwards a huge console.log cut to 64 Ki characters, to the app\'s stderr', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const printed: string[] = [];
        const original = process.stderr.write.bind(process.stderr);
        const mapper = new Processor(new Oversharing(), [daemon!.address]);
        try {
          process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
            if (String(chunk).includes('ppp')) printed.push(String(chunk));
            else return (original as (...args: unknown[]) => boolean)(chunk, ...rest);
            return true;
          }) as typeof process.stderr.write;
          expect(await mapper.map([{ print: 4 * LIMIT }])).to.deep.equal(['ok']);
        } finally {
          process.stderr.write = original;
          await mapper.shutdown();
        }
        expect(printed).to.have.length(1);
        expect(printed[0]).to.include(`${4 * LIMIT - 64 * 1024} more characters cut]`);
      });
    });

    it('fails a setup that throws a huge error with SetupError, not a broken connection', async () => {
      await withDaemons(1, { workers: 1, args: ['--max-frame-bytes', String(LIMIT)] }, async ([daemon]) => {
        const mapper = new Processor(new Oversharing(4 * LIMIT), [daemon!.address]);
        try {
          const error = await mapper.map([{}]).then(() => null, (e: unknown) => e);
          expect(error).to.be.instanceOf(SetupError);
          expect(((error as SetupError).cause as Error).message).to.match(/^s+… \[\d+ more characters cut\]$/);
        } finally {
          await mapper.shutdown();
        }
      });
    });
  });

  describe('__proto__ and constructor keys', () => {
    // msgpackr 2.1.4 decodes a "__proto__" key as "__proto_" (an own data property), never as a
    // prototype, and offers no option to keep the name; SECURITY.md and the README state this limit.
    it('stay plain data in jobs, in results and in the worker; nothing is polluted on either side', async () => {
      await withDaemons(1, { workers: 1 }, async ([daemon]) => {
        const mapper = new Processor(new ProtoProbe(), [daemon!.address]);
        try {
          const jobs: unknown[] = [
            JSON.parse(HOSTILE_JSON),
            { nested: [JSON.parse(HOSTILE_JSON)] },
            new Map<string, unknown>([['__proto__', { polluted: 'yes' }], ['constructor', 1]]),
          ];
          const [flat, nested, map] = await mapper.map(jobs);
          for (const out of [flat!, nested!, map!]) {
            expect(out.polluted, 'polluted in the worker').to.equal(false);
            const answer = out.answer as Record<string, unknown>;
            expect(Object.getPrototypeOf(answer)).to.equal(Object.prototype);
            expect(Object.keys(answer)).to.deep.equal(['__proto_', 'constructor']);
            expect(Object.getOwnPropertyDescriptor(answer, 'constructor')!.value).to.deep.equal({ prototype: { polluted: 'yes' } });
          }
          expect(flat!.prototypeIsObject).to.equal(true);
          expect(flat!.keys).to.deep.equal(['__proto_', 'constructor']);
          expect(flat!.constructorIsOwnData).to.equal(true);
          // A Map keeps any key exactly, "__proto__" included: the way to carry such names.
          expect(map!.mapKeys).to.deep.equal(['__proto__', 'constructor']);
          expectUnpolluted();
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('stay plain data in the own properties of an error a job throws', async () => {
      await withDaemons(1, { workers: 1 }, async ([daemon]) => {
        const mapper = new Processor(new OddError(), [daemon!.address]);
        try {
          const error = (await mapper.map([1]).catch((e: unknown) => e)) as JobError;
          expect(error).to.be.instanceOf(JobError);
          expect(Object.getPrototypeOf(error.cause)).to.equal(Error.prototype);
          expectUnpolluted();
        } finally {
          await mapper.shutdown();
        }
      });
    });

    it('stay plain data in message envelopes and in the value codec', () => {
      const envelope = decodeMessage(encodeMessage(JSON.parse(`{"type": "ping", "seq": 1, ${HOSTILE_JSON.slice(1)}`) as Message));
      expect(Object.getPrototypeOf(envelope)).to.equal(Object.prototype);
      expect(Object.keys(envelope)).to.include('__proto_').and.include('constructor');
      const codec = createCodec();
      const values = codec.unpack(codec.pack([JSON.parse(HOSTILE_JSON), JSON.parse(HOSTILE_JSON)])) as Record<string, unknown>[];
      for (const value of values) {
        expect(Object.getPrototypeOf(value)).to.equal(Object.prototype);
        expect(Object.keys(value)).to.deep.equal(['__proto_', 'constructor']);
      }
      expectUnpolluted();
    });
  });
});
