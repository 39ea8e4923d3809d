import { expect } from 'chai';
import { Processor } from 'mapscale';
import { FaultyWork, expected, jobs } from './fixtures/fault-work.js';
import { withDaemons } from './helpers/daemon.js';
import { openSlowLink } from './helpers/slow-link.js';

/*
 * How many batches each instance has in flight is measured, not fixed: enough to cover the round
 * trip to its daemon. Over a link with a long round trip the credit grows, so the worker is not
 * left waiting for its next batch; on loopback it stays at one running and one in hand.
 */
describe('credit sized from the measured round trip', () => {
  it('keeps more batches in flight across a 40 ms round trip than on loopback, with every result in order', async () => {
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      const link = await openSlowLink({ host: '127.0.0.1', port: daemon!.port }, 20);
      const far = new Processor(new FaultyWork(), [link.address]);
      const near = new Processor(new FaultyWork(), [daemon!.address]);
      try {
        const n = 1500;
        expect(await far.map(jobs(n, 0.5))).to.deep.equal(expected(n));
        expect(await near.map(jobs(n, 0.5))).to.deep.equal(expected(n));
        const [farStats] = far.stats();
        const [nearStats] = near.stats();
        expect(farStats!.roundTripMs, 'round trip across the slow link').to.be.at.least(40);
        expect(nearStats!.roundTripMs, 'round trip on loopback').to.be.below(40);
        // 1 + ceil(40 ms / ~4 ms batches) ≈ 11, more than the 2 that loopback needs; on a loaded machine
        // batches take longer than their 4 ms of work (threads wait for a CPU), so the credit is less.
        expect(farStats!.credit, 'batches in flight per instance, far').to.be.at.least(3);
        expect(nearStats!.credit, 'batches in flight per instance, near').to.be.below(farStats!.credit);
      } finally {
        await Promise.all([far.shutdown(), near.shutdown()]);
        await link.close();
      }
    });
  });
});
