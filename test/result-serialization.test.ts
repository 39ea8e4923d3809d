import { expect } from 'chai';
import { JobError, MapScaleError, Processor, ResultSerializationError, type Settled } from 'mapscale';
import { withDaemons } from './helpers/daemon.js';
import { within } from './helpers/bounded.js';

/**
 * Issue 12, item 1: a result msgpack cannot carry used to kill its instance thread, which was
 * replaced and the job retried, forever. Now that job fails at once, named and typed.
 */

/** What each job value returns; shipped by value, so self-contained. */
function unserializable(job: string): unknown {
  switch (job) {
    case 'symbol': return Symbol('nope');
    case 'circular': {
      const node: Record<string, unknown> = { name: 'loop', children: [] };
      (node.children as unknown[]).push({ parent: node });
      return node;
    }
    case 'function': return { items: [0, 1, 2, { label: 'x', cb: () => 1 }] };
    case 'bare-function': return function named() {};
    case 'map-symbol': return new Map<unknown, unknown>([['k', Symbol('deep')]]);
    case 'deep': {
      let chain: Record<string, unknown> = { end: true };
      for (let i = 0; i < 100_000; i++) chain = { next: chain };
      return chain;
    }
    case 'huge-bigint': return { n: 2n ** 200n };
    default: return { ok: job };
  }
}

function causeOf(settled: Settled<unknown> | undefined): Error & { code?: string; path?: string; valueType?: string } {
  expect(settled?.status).to.equal('rejected');
  const reason = (settled as { reason: unknown }).reason;
  expect(reason).to.be.instanceOf(JobError);
  return (reason as JobError).cause as Error & { code?: string; path?: string; valueType?: string };
}

for (const dataConnections of [true, false]) {
  describe(`results that cannot be serialized (${dataConnections ? 'data connections' : 'through the daemon port'})`, function () {
    this.timeout(60_000);

    it('fail only their own jobs, at once, with ResultSerializationError naming the type and the path; no instance dies', async () => {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        const mapper = new Processor(unserializable, [daemon!.address], { dataConnections, chunkSize: 3 });
        try {
          const jobs = ['a', 'symbol', 'b', 'circular', 'function', 'c', 'bare-function', 'map-symbol', 'deep', 'huge-bigint', 'd'];
          const settled = await within(mapper.map(jobs, { settle: true }), 20_000, 'a map with unserializable results');
          expect(settled.map((s) => s.status)).to.deep.equal([
            'fulfilled', 'rejected', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled', 'fulfilled',
          ]);
          expect(settled[0]).to.deep.equal({ status: 'fulfilled', value: { ok: 'a' } });
          expect(settled[9]).to.deep.equal({ status: 'fulfilled', value: { n: 2n ** 200n } });
          for (const index of [1, 3, 4, 6, 7, 8]) {
            const cause = causeOf(settled[index]);
            expect(cause.name).to.equal('ResultSerializationError');
            expect(cause.code).to.equal('MS_RESULT_NOT_SERIALIZABLE');
            // Raised on the worker, it still is what the app imports: the brand travels with it.
            expect(cause).to.be.instanceOf(ResultSerializationError);
            expect(cause).to.be.instanceOf(MapScaleError);
            expect(((settled[index] as { reason: unknown }).reason as JobError).jobIndex).to.equal(index);
          }
          expect(causeOf(settled[1])).to.include({ path: 'result', valueType: 'symbol' });
          expect(causeOf(settled[3])).to.include({ path: 'result.children[0].parent', valueType: 'circular' });
          expect(causeOf(settled[4])).to.include({ path: 'result.items[3].cb', valueType: 'function' });
          expect(causeOf(settled[4]).message).to.include('result.items[3].cb is a function');
          expect(causeOf(settled[6])).to.include({ path: 'result', valueType: 'function' });
          expect(causeOf(settled[7])).to.include({ path: 'result.get("k")', valueType: 'symbol' });
          expect(causeOf(settled[8]).valueType).to.equal('nesting too deep');
          // Nothing was taken for a crash: the instances live on and serve the next map.
          expect(daemon!.logs.filter((entry) => entry.event === 'instance-died')).to.have.length(0);
          expect(await within(mapper.map(['e', 'f']), 10_000, 'the next map')).to.deep.equal([{ ok: 'e' }, { ok: 'f' }]);
          expect(mapper.workerCount).to.equal(2);
        } finally {
          // Forced: after a failure the map may still hang, and the test must end with its own error.
          await mapper.shutdown({ force: true });
        }
      });
    });

    it('reject the map with a JobError for the lowest such job when not settling', async () => {
      await withDaemons(1, { workers: 1 }, async ([daemon]) => {
        const mapper = new Processor(unserializable, [daemon!.address], { dataConnections });
        try {
          const error = await within(mapper.map(['a', 'b', 'function', 'symbol']).then(() => null, (e: unknown) => e), 20_000, 'the map');
          expect(error).to.be.instanceOf(JobError);
          expect((error as JobError).jobIndex).to.equal(2);
          const cause = (error as JobError).cause as Error & { code?: string };
          expect(cause.code).to.equal(new ResultSerializationError('x', 'function').code);
          expect(await within(mapper.map(['z']), 10_000, 'the next map')).to.deep.equal([{ ok: 'z' }]);
        } finally {
          // Forced: after a failure the map may still hang, and the test must end with its own error.
          await mapper.shutdown({ force: true });
        }
      });
    });
  });
}
