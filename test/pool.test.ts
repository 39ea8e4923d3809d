import { expect } from 'chai';
import { Processor, type MapProgress } from 'mapscale';
import { FaultyWork, expected, jobs } from './fixtures/fault-work.js';
import { withDaemons } from './helpers/daemon.js';

describe('mixed and elastic pools, progress, stats', () => {
  it('combines local workers and a daemon in one Processor', async () => {
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      const mapper = new Processor((x: number) => ({ x: x * 2, pid: process.pid }), [1, daemon!.address], { chunkSize: 5 });
      try {
        const out = await mapper.map(Array.from({ length: 600 }, (_, i) => i));
        expect(out.map((o) => o.x)).to.deep.equal(Array.from({ length: 600 }, (_, i) => i * 2));
        expect(mapper.workerCount).to.equal(3);
        expect(new Set(out.map((o) => o.pid)).size).to.equal(2);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('adds and removes daemons while a map runs, losing no job', async () => {
    await withDaemons(2, { workers: 1 }, async ([a, b]) => {
      const mapper = new Processor(new FaultyWork(), [a!.address]);
      try {
        const running = mapper.map(jobs(1500, 1));
        await mapper.addWorkers([b!.address]);
        expect(mapper.workerCount).to.equal(2);
        await mapper.removeWorkers([a!.address]);
        expect(mapper.workerCount).to.equal(1);
        expect(await running).to.deep.equal(expected(1500));
        const stats = mapper.stats();
        expect(stats.map((s) => [s.address, s.state])).to.deep.equal([[a!.address, 'removed'], [b!.address, 'ready']]);
        expect(stats[0]!.jobs + stats[1]!.jobs).to.be.at.least(1500);
        expect(stats[1]!.jobs).to.be.above(0);
        expect(stats[1]!.busyMs).to.be.above(0);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('reports progress: done, total, failed and throughput, ending with everything done', async () => {
    const mapper = new Processor(new FaultyWork(), 2);
    try {
      const seen: MapProgress[] = [];
      const settled = await mapper.map(jobs(400, 1, (i) => ({ fail: i % 100 === 0 })), { settle: true, onProgress: (p) => seen.push(p) });
      expect(settled).to.have.length(400);
      const last = seen[seen.length - 1]!;
      expect(last).to.include({ done: 400, total: 400, failed: 4 });
      expect(last.jobsPerSecond).to.be.above(0);
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.done).to.be.at.least(seen[i - 1]!.done);
    } finally {
      await mapper.shutdown();
    }
  });
});
