import { expect } from 'chai';
import { Processor, ProcessorClosedError } from 'mapscale';
import { Power } from './fixtures/work-functions.js';
import { withDaemons } from './helpers/daemon.js';
import { openBlackHole } from './helpers/blackhole.js';

/*
 * A host whose link is down answers nothing: a TCP connect to it just waits (here up to a
 * connectTimeoutMs of a minute, longer than each test's own deadline). Such a host must neither hold
 * up the maps the other hosts can serve nor keep shutdown() or the app waiting.
 */
describe('an unreachable host in the pool', () => {
  const slow = { connectTimeoutMs: 60_000 };

  it('does not hold up the first map: the reachable daemons serve it while the connect waits', async function () {
    this.timeout(20_000);
    const hole = await openBlackHole();
    try {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        const mapper = new Processor(new Power(2), [hole.address, daemon!.address], slow);
        try {
          expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
          expect(mapper.stats().map((s) => s.state)).to.deep.equal(['connecting', 'ready']);
        } finally {
          await mapper.shutdown();
        }
      });
    } finally {
      hole.close();
    }
  });

  it('lets shutdown({ force }) end a map still waiting for its only, unreachable worker', async function () {
    this.timeout(20_000);
    const hole = await openBlackHole();
    try {
      const mapper = new Processor(new Power(2), [hole.address], slow);
      const waiting = mapper.map([1]).then(() => null, (e: unknown) => e);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await mapper.shutdown({ force: true });
      expect(await waiting).to.be.instanceOf(ProcessorClosedError);
    } finally {
      hole.close();
    }
  });
});
