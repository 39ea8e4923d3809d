import { expect } from 'chai';
import { JobSerializationError, MapScaleError, Processor, WorkFunction } from 'mapscale';
import { findUnserializable } from '@mapscale/protocol';
import { encodeJobs } from '../packages/coordinator/dist/job-encoding.js';

/** Counts the jobs its instance was given: job 'count' answers how many came before it. */
class Counter extends WorkFunction<unknown, unknown> {
  seen = 0;
  call(job: unknown): unknown {
    if (job === 'count') return this.seen;
    this.seen++;
    return job;
  }
}

function circular(): Record<string, unknown> {
  const inner: Record<string, unknown> = { name: 'inner' };
  const job = { list: [1, { inner }] };
  inner.parent = job;
  return job;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the map to reject');
}

describe('jobs that cannot be serialized', () => {
  it('fails the map with JobSerializationError naming the job and the path to a function in it, sends nothing of its batch, and stays usable', async () => {
    const mapper = new Processor(new Counter(), 1, { chunkSize: 10 });
    try {
      const error = await rejection(mapper.map([1, 2, { options: { onDone: function onDone() {} } }, 4]));
      expect(error).to.be.instanceOf(JobSerializationError).and.instanceOf(MapScaleError);
      const e = error as JobSerializationError;
      expect(e.code).to.equal('MS_JOB_NOT_SERIALIZABLE');
      expect(e.jobIndex).to.equal(2);
      expect(e.path).to.equal('job.options.onDone');
      expect(e.valueType).to.equal('function');
      // The function did not travel as undefined, and no job of that batch reached the worker.
      expect(await mapper.map(['count'])).to.deep.equal([0]);
      expect(await mapper.map([5, 6])).to.deep.equal([5, 6]);
    } finally {
      await mapper.shutdown();
    }
  });

  it('names a Symbol, and a reference back to an enclosing object, with where each is', async () => {
    const mapper = new Processor((x: unknown) => x, 1);
    try {
      const symbol = (await rejection(mapper.map(['a', { tags: new Set(['x', Symbol('mine')]) }]))) as JobSerializationError;
      expect(symbol).to.be.instanceOf(JobSerializationError);
      expect([symbol.jobIndex, symbol.path, symbol.valueType]).to.deep.equal([1, 'job.tags.values()[1]', 'symbol']);
      const cycle = (await rejection(mapper.map([circular()]))) as JobSerializationError;
      expect(cycle).to.be.instanceOf(JobSerializationError);
      expect([cycle.jobIndex, cycle.path, cycle.valueType]).to.deep.equal([0, 'job.list[1].inner.parent', 'circular']);
      expect(cycle.message).to.include('the job itself');
      const bare = (await rejection(mapper.map([1, 2, 3, Symbol('alone')]))) as JobSerializationError;
      expect([bare.jobIndex, bare.path]).to.deep.equal([3, 'job']);
      expect(await mapper.map([1, 2])).to.deep.equal([1, 2]);
    } finally {
      await mapper.shutdown();
    }
  });

  it('with settle, rejects only that job\'s entry and answers every other job', async () => {
    const mapper = new Processor((x: unknown) => x, 2, { chunkSize: 16 });
    try {
      const jobs: unknown[] = Array.from({ length: 100 }, (_, i) => i);
      jobs[37] = Symbol('bad');
      jobs[80] = { fn: () => 1 };
      const settled = await mapper.map(jobs, { settle: true });
      expect(settled).to.have.length(100);
      for (let i = 0; i < 100; i++) {
        const entry = settled[i]!;
        if (i === 37 || i === 80) {
          expect(entry.status, String(i)).to.equal('rejected');
          const reason = (entry as PromiseRejectedResult).reason as JobSerializationError;
          expect(reason).to.be.instanceOf(JobSerializationError);
          expect(reason.jobIndex).to.equal(i);
        } else {
          expect(entry, String(i)).to.deep.equal({ status: 'fulfilled', value: i });
        }
      }
    } finally {
      await mapper.shutdown();
    }
  });

  it('fails an imap over a lazily read input the same way', async () => {
    const mapper = new Processor((x: unknown) => x, 1);
    async function* jobs(): AsyncGenerator<unknown> {
      yield 1;
      yield 2;
      yield { when: new Date(0), onDone: () => 3 };
    }
    try {
      const seen: unknown[] = [];
      const consume = async (): Promise<void> => {
        for await (const result of mapper.imap(jobs())) seen.push(result);
      };
      const error = await rejection(consume());
      expect(error).to.be.instanceOf(JobSerializationError);
      expect((error as JobSerializationError).jobIndex).to.equal(2);
      expect((error as JobSerializationError).path).to.equal('job.onDone');
      expect(await mapper.map([7])).to.deep.equal([7]);
    } finally {
      await mapper.shutdown();
    }
  });

  describe('finding the culprit (pure)', () => {
    it('encodes a batch that packs as it is, and says which job of one that does not', () => {
      expect(Buffer.isBuffer(encodeJobs([1, 'two', { three: [3] }], 0))).to.equal(true);
      const error = encodeJobs([1, new Map<unknown, unknown>([['k', { deep: [0, () => 0] }]])], 40) as JobSerializationError;
      expect(error).to.be.instanceOf(JobSerializationError);
      expect([error.jobIndex, error.path]).to.deep.equal([41, 'job.get("k").deep[1]']);
    });

    it('reports a job nested too deeply to pack without a path, and overflows no stack itself', () => {
      let deep: unknown = 0;
      for (let i = 0; i < 200_000; i++) deep = [deep];
      expect(findUnserializable(deep, 'job')).to.equal(undefined);
      const error = encodeJobs([deep], 0) as JobSerializationError;
      expect(error).to.be.instanceOf(JobSerializationError);
      expect(error.path).to.equal(undefined);
      expect(error.message).to.include('nested too deeply');
    });

    it('lets shared (not circular) references through', () => {
      const shared = { x: 1 };
      expect(findUnserializable({ a: shared, b: [shared, shared] }, 'job')).to.equal(undefined);
      expect(Buffer.isBuffer(encodeJobs([{ a: shared, b: shared }], 0))).to.equal(true);
    });
  });
});
