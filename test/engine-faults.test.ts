import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { NoWorkersError, Processor, type WorkerEvent } from 'mapscale';
import { DiesThenSlowSetup, Sleeper } from './fixtures/recovery-work.js';
import { within } from './helpers/bounded.js';
import { waitFor, withDaemons } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';

/** Fast failure detection, as in faults.test.ts. */
const quick = { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 1000, reconnectDelayMs: 100, maxReconnectDelayMs: 500 };

/** Blocks this process's event loop for `ms`, as a synchronous computation in an app does. */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* busy */ }
}

describe('the engine never waits for workers that cannot come (issue 12)', () => {
  it('fails the map with NoWorkersError when the daemon dies while one of its instances is being replaced (item 5)', async () => {
    const dir = tempDir();
    try {
      await withDaemons(1, { workers: 1 }, async ([daemon]) => {
        const marker = join(dir.path, 'died');
        const mapper = new Processor(new DiesThenSlowSetup(marker, 30_000), [daemon!.address], quick);
        try {
          await mapper.map(['warm']);
          const running = mapper.map(['die', 'a', 'b'], { settle: true });
          running.catch(() => {});
          // The job killed its instance; the replacement now sits in its slow setup().
          await waitFor(() => existsSync(marker) && daemon!.logs.some((l) => l.event === 'instance-died'), 10_000, 'the instance to die');
          daemon!.child.kill('SIGKILL');
          const error = await within(running.then(() => null, (e: unknown) => e), 10_000, 'the map');
          expect(error).to.be.instanceOf(NoWorkersError);
          expect((error as NoWorkersError).code).to.equal('MS_NO_WORKERS');
        } finally {
          await within(mapper.shutdown({ force: true }), 10_000, 'shutdown');
        }
      });
    } finally {
      dir.remove();
    }
  });

  it('does not blame healthy daemons for a stall of the app itself (item 8): the map finishes, no worker is lost', async () => {
    await withDaemons(2, { workers: 1 }, async (daemons) => {
      const mapper = new Processor(new Sleeper(20), daemons.map((d) => d.address), quick);
      const lost: WorkerEvent[] = [];
      mapper.on('worker-lost', (event) => lost.push(event));
      try {
        await mapper.map([0]);
        const running = mapper.map(Array.from({ length: 100 }, (_, i) => i));
        await waitFor(() => mapper.stats().every((s) => s.jobs > 1), 10_000, 'both daemons to answer jobs');
        // Three heartbeat timeouts long: every daemon's answers wait unread meanwhile.
        blockEventLoop(3_000);
        const results = await within(running, 20_000, 'the map after the stall');
        expect(results).to.deep.equal(Array.from({ length: 100 }, (_, i) => i * 2));
        expect(lost, 'workers declared lost').to.deep.equal([]);
        expect(mapper.workerCount).to.equal(2);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('still finds a daemon that really went silent (SIGSTOP) after the app itself stalled', async () => {
    await withDaemons(2, { workers: 1 }, async (daemons) => {
      const mapper = new Processor(new Sleeper(5), daemons.map((d) => d.address), quick);
      try {
        await mapper.map([0]);
        blockEventLoop(2_500);
        const running = mapper.map(Array.from({ length: 400 }, (_, i) => i));
        await waitFor(() => mapper.stats().every((s) => s.jobs > 1), 10_000, 'both daemons to answer jobs');
        daemons[1]!.child.kill('SIGSTOP');
        const results = await within(running, 20_000, 'the map with a silent daemon');
        expect(results).to.have.length(400);
        await waitFor(() => mapper.stats().some((s) => s.state === 'lost'), 10_000, 'the silent daemon to be found');
      } finally {
        daemons[1]!.child.kill('SIGCONT');
        await mapper.shutdown();
      }
    });
  });
});
