import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { expect } from 'chai';
import {
  AbortError, JobError, JobTimeoutError, NoWorkersError, Processor, WorkerCrashedError, type WorkerEvent,
} from 'mapscale';
import { FaultyWork, expected, jobs } from './fixtures/fault-work.js';
import { startDaemon, waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { filesStartingWith, tempDir } from './helpers/files.js';

/** Fast failure detection for tests; defaults are seconds, which is right for real fleets. */
const quick = { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 1000, reconnectDelayMs: 100, maxReconnectDelayMs: 500 };

/**
 * A moment to inject a fault mid-map: every daemon has joined and answered some jobs (a fixed sleep
 * could land before a daemon joined, and then there would be nothing to lose).
 */
async function midMap(mapper: Processor<never, unknown>): Promise<void> {
  await waitFor(() => mapper.stats().every((s) => s.state === 'ready' && s.jobs > 0), 15_000, 'every daemon to answer some jobs');
}

describe('fault tolerance', () => {
  it('re-dispatches the jobs of a daemon killed with SIGKILL mid-map: each result exactly once, in order', async () => {
    await withDaemons(2, { workers: 2 }, async (daemons) => {
      const mapper = new Processor(new FaultyWork(), daemons.map((d) => d.address), quick);
      const lost: WorkerEvent[] = [];
      mapper.on('worker-lost', (e) => lost.push(e));
      try {
        const running = mapper.map(jobs(3000, 1));
        await midMap(mapper as Processor<never, unknown>);
        daemons[0]!.child.kill('SIGKILL');
        expect(await running).to.deep.equal(expected(3000));
        expect(lost.map((e) => e.address)).to.deep.equal([daemons[0]!.address]);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('detects a silent daemon (SIGSTOP) by heartbeats, finishes elsewhere, and takes it back after SIGCONT', async () => {
    await withDaemons(2, { workers: 2 }, async (daemons) => {
      const mapper = new Processor(new FaultyWork(), daemons.map((d) => d.address), quick);
      try {
        const running = mapper.map(jobs(2000, 1));
        await midMap(mapper as Processor<never, unknown>);
        daemons[1]!.child.kill('SIGSTOP');
        const lost = once(mapper, 'worker-lost');
        expect(await running).to.deep.equal(expected(2000));
        const [event] = (await lost) as [WorkerEvent];
        expect(event.address).to.equal(daemons[1]!.address);
        expect((event.reason as Error & { code: string }).code).to.equal('MS_HEARTBEAT_TIMEOUT');
        const back = once(mapper, 'worker-rejoined');
        daemons[1]!.child.kill('SIGCONT');
        await back;
        expect(mapper.workerCount).to.equal(4);
        expect(await mapper.map(jobs(200))).to.deep.equal(expected(200));
      } finally {
        daemons[1]!.child.kill('SIGCONT');
        await mapper.shutdown();
      }
    });
  });

  it('does not mistake a slow job for a dead worker', async () => {
    await withDaemons(1, { workers: 1 }, async ([daemon]) => {
      const mapper = new Processor(new FaultyWork(), [daemon!.address], quick);
      const lost: unknown[] = [];
      mapper.on('worker-lost', (e) => lost.push(e));
      try {
        // One job that keeps its instance busy for three heartbeat timeouts.
        expect(await mapper.map([{ i: 7, ms: 3000 }])).to.deep.equal([14]);
        expect(lost).to.have.length(0);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('reconnects a lost daemon address when it comes back, also during a running map', async () => {
    const first = await startDaemon({ workers: 2 });
    let second: TestDaemon | null = null;
    const other = await startDaemon({ workers: 1 });
    const mapper = new Processor(new FaultyWork(), [first.address, other.address], quick);
    try {
      expect(await mapper.map(jobs(50))).to.deep.equal(expected(50));
      const lost = once(mapper, 'worker-lost');
      await first.stop('SIGKILL');
      await lost;
      const running = mapper.map(jobs(4000, 1));
      const rejoined = once(mapper, 'worker-rejoined');
      second = await startDaemon({ workers: 2, args: ['--port', String(first.port)] });
      const [event] = (await rejoined) as [WorkerEvent];
      expect(event.address).to.equal(first.address);
      expect(await running).to.deep.equal(expected(4000));
      expect(mapper.workerCount).to.equal(3);
    } finally {
      await mapper.shutdown();
      await Promise.all([first.stop(), other.stop(), second?.stop()]);
    }
  });

  it('restarts local workers whose child daemon dies', async () => {
    const mapper = new Processor(new FaultyWork(), 2, { ...quick, inProcess: false });
    try {
      expect(await mapper.map(jobs(10))).to.deep.equal(expected(10));
      const pid = Number(execFileSync('pgrep', ['-P', String(process.pid), '-f', 'worker-server/dist/(bundled/)?local-entry.js']).toString().trim().split('\n')[0]);
      const running = mapper.map(jobs(2000, 1));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const rejoined = once(mapper, 'worker-rejoined');
      process.kill(pid, 'SIGKILL');
      await rejoined;
      expect(await running).to.deep.equal(expected(2000));
    } finally {
      await mapper.shutdown();
    }
  });

  it('fails a poison job with WorkerCrashedError after maxJobRetries, without taking down the rest', async () => {
    const mapper = new Processor(new FaultyWork(), 2, { ...quick, maxJobRetries: 2 });
    try {
      const input = jobs(300, 0, (i) => (i === 123 ? { poison: true } : {}));
      const error = await mapper.map(input).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(WorkerCrashedError);
      expect((error as WorkerCrashedError).code).to.equal('MS_WORKER_CRASHED');
      expect((error as WorkerCrashedError).jobIndex).to.equal(123);
      expect((error as WorkerCrashedError).attempts).to.equal(3);
      const settled = await mapper.map(input, { settle: true });
      settled.forEach((s, i) => {
        if (i === 123) expect(s.status === 'rejected' && s.reason).to.be.instanceOf(WorkerCrashedError);
        else expect(s).to.deep.equal({ status: 'fulfilled', value: i * 2 });
      });
      expect(await mapper.map(jobs(100))).to.deep.equal(expected(100));
    } finally {
      await mapper.shutdown();
    }
  });

  it('fails a hung job with JobTimeoutError and replaces its instance, which runs setup() again', async () => {
    const dir = tempDir();
    const mapper = new Processor(new FaultyWork(dir.path), 2, { ...quick, jobTimeoutMs: 500 });
    try {
      await mapper.map(jobs(4));
      expect(filesStartingWith(dir.path, 'setup-')).to.have.length(2);
      const input = jobs(50, 0, (i) => (i === 20 ? { hang: true } : {}));
      const error = await mapper.map(input).then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(JobTimeoutError);
      expect((error as JobTimeoutError).jobIndex).to.equal(20);
      await waitFor(() => mapper.workerCount === 2, 10_000, 'the replaced instance');
      expect(filesStartingWith(dir.path, 'setup-')).to.have.length(3);
      // Per call, and with settle: only the hung job fails.
      const settled = await mapper.map(input, { settle: true, jobTimeoutMs: 300 });
      expect(settled.filter((s) => s.status === 'rejected')).to.have.length(1);
      expect((settled[20] as { reason: Error }).reason).to.be.instanceOf(JobTimeoutError);
      expect(await mapper.map(jobs(20))).to.deep.equal(expected(20));
    } finally {
      await mapper.shutdown();
      dir.remove();
    }
  });

  it('cancels a map through its AbortSignal with AbortError, and the workers are ready for the next', async () => {
    const mapper = new Processor(new FaultyWork(), 2, quick);
    try {
      await mapper.map(jobs(2));
      const controller = new AbortController();
      const running = mapper.map(jobs(100_000, 1), { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('user pressed stop')), 200);
      const error = await running.then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(AbortError);
      expect((error as AbortError).code).to.equal('MS_ABORTED');
      expect(((error as AbortError).cause as Error).message).to.equal('user pressed stop');
      expect(await mapper.map(jobs(100))).to.deep.equal(expected(100));
      const already = await mapper.map(jobs(3), { signal: AbortSignal.abort() }).then(() => null, (e: unknown) => e);
      expect(already).to.be.instanceOf(AbortError);
    } finally {
      await mapper.shutdown();
    }
  });

  it('returns one settled result per job with settle: true', async () => {
    const mapper = new Processor(new FaultyWork(), 2);
    try {
      const settled = await mapper.map(jobs(10, 0, (i) => ({ fail: i % 4 === 1 })), { settle: true });
      settled.forEach((s, i) => {
        if (i % 4 === 1) {
          expect(s.status).to.equal('rejected');
          expect((s as unknown as { reason: JobError }).reason).to.be.instanceOf(JobError).and.have.property('jobIndex', i);
        } else {
          expect(s).to.deep.equal({ status: 'fulfilled', value: i * 2 });
        }
      });
    } finally {
      await mapper.shutdown();
    }
  });

  it('moves the jobs of a daemon stopped with SIGTERM mid-map elsewhere; that daemon cleans up and exits 0', async () => {
    const dir = tempDir();
    await withDaemons(2, { workers: 2 }, async (daemons) => {
      const mapper = new Processor(new FaultyWork(dir.path), daemons.map((d) => d.address), quick);
      try {
        const running = mapper.map(jobs(3000, 1));
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(await daemons[0]!.stop('SIGTERM')).to.equal(0);
        expect(filesStartingWith(dir.path, 'cleanup-')).to.have.length(2);
        expect(await running).to.deep.equal(expected(3000));
      } finally {
        await mapper.shutdown();
      }
    });
    dir.remove();
  });

  it('rejects with NoWorkersError naming each lost worker when every worker dies, without hanging', async () => {
    await withDaemons(2, { workers: 1 }, async (daemons) => {
      const mapper = new Processor(new FaultyWork(), daemons.map((d) => d.address), quick);
      try {
        const running = mapper.map(jobs(5000, 1));
        // Both serving first (on a loaded machine one may still be setting up after any fixed sleep).
        await waitFor(() => mapper.workerCount === 2, 20_000, 'both workers to join');
        for (const daemon of daemons) daemon.child.kill('SIGKILL');
        const error = await running.then(() => null, (e: unknown) => e);
        expect(error).to.be.instanceOf(NoWorkersError);
        expect((error as NoWorkersError).workers.map((w) => w.address).sort()).to.deep.equal(daemons.map((d) => d.address).sort());
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('survives daemons killed and restarted at random moments during a long map (bounded chaos)', async () => {
    const seed = Date.now() % 100_000;
    let state = seed;
    const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const daemons = await Promise.all([0, 1, 2].map(() => startDaemon({ workers: 2 })));
    const mapper = new Processor(new FaultyWork(), daemons.map((d) => d.address), { ...quick, maxJobRetries: 10 });
    try {
      const n = 6000;
      const running = mapper.map(jobs(n, 1));
      for (let round = 0; round < 3; round++) {
        await new Promise((resolve) => setTimeout(resolve, 150 + random() * 300));
        const victim = Math.floor(random() * daemons.length);
        const { port } = daemons[victim]!;
        await daemons[victim]!.stop('SIGKILL');
        daemons[victim] = await startDaemon({ workers: 2, args: ['--port', String(port)] });
      }
      expect(await running, `seed ${seed}`).to.deep.equal(expected(n));
    } finally {
      await mapper.shutdown();
      await Promise.all(daemons.map((d) => d.stop()));
    }
  });
});

describe('cancellation while workers start', () => {
  it('honours an AbortSignal that fires before the workers are up (regression: the map used to run to the end)', async () => {
    const mapper = new Processor(new FaultyWork(), 2);
    try {
      const controller = new AbortController();
      const running = mapper.map(jobs(3), { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('changed my mind')), 5);
      const error = await running.then(() => null, (e: unknown) => e);
      expect(error).to.be.instanceOf(AbortError);
    } finally {
      await mapper.shutdown();
    }
  });
});
