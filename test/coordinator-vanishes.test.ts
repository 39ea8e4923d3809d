import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Processor } from 'mapscale';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';
import { within } from './helpers/bounded.js';
import { tempDir } from './helpers/files.js';
import { startedJobs } from './fixtures/spin-work.js';
import { Power } from './fixtures/work-functions.js';

/**
 * Issue 12, item 7: a coordinator SIGKILLed mid-map left its daemon running the queued synchronous
 * jobs for minutes (no `cleaned-up` within 190 s). Now its queued jobs are dropped at once, a job
 * still running gets --stop-grace-ms, cleanup() runs within --cleanup-timeout-ms, the threads go.
 */

const WORKERS = 2;

/** Starts the app, mapping synchronous jobs of `jobMs` on `daemon`; resolves once `minStarted` of them started. */
async function startApp(daemon: TestDaemon, file: string, jobMs: number, minStarted: number): Promise<ReturnType<typeof spawn>> {
  const app = fileURLToPath(new URL('./fixtures/vanishing-app.js', import.meta.url));
  const child = spawn(process.execPath, [app, daemon.address, 'spin', file, String(jobMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await within(new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => line === 'mapping' && resolve());
      void exited.then(() => reject(new Error('the app exited before mapping')));
    }), 20_000, 'the app to start mapping');
    await waitFor(() => startedJobs(file).length >= minStarted, 20_000, `${minStarted} jobs to start`);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return child;
}

async function kill(child: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await exited;
}

describe('a coordinator that dies mid-map', function () {
  this.timeout(60_000);

  it('leaves no work behind: queued jobs are dropped, running ones end, cleanup() runs and the threads go', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'started');
    try {
      await withDaemons(1, { workers: WORKERS, args: ['--stop-grace-ms', '3000', '--cleanup-timeout-ms', '3000'] }, async ([daemon]) => {
        const app = await startApp(daemon!, file, 1_000, 3);
        const startedAtKill = startedJobs(file).length;
        await kill(app);
        await waitFor(() => daemon!.logs.some((l) => l.event === 'cleaned-up'), 10_000, 'the daemon to log cleaned-up');
        const cleaned = daemon!.logs.find((l) => l.event === 'cleaned-up') as { instances: number; failures: number };
        expect(cleaned).to.include({ instances: WORKERS, failures: 0 });
        // Once cleaned up, nothing of that coordinator runs: what started after the kill is at most
        // one job per instance (between reading the file and the connection's close reaching the daemon).
        expect(startedJobs(file).length, `started ${startedJobs(file).length}, ${startedAtKill} at the kill`).to.be.at.most(startedAtKill + WORKERS);
        // And the daemon serves the next coordinator.
        const next = new Processor(new Power(2), [daemon!.address]);
        try {
          expect(await within(next.map([4]), 10_000, 'the next coordinator\'s map')).to.deep.equal([16]);
        } finally {
          await next.shutdown();
        }
      });
    } finally {
      dir.remove();
    }
  });

  it('terminates a job still running after --stop-grace-ms, and still logs cleaned-up', async () => {
    const dir = tempDir();
    const file = join(dir.path, 'started');
    try {
      await withDaemons(1, { workers: WORKERS, args: ['--stop-grace-ms', '300'] }, async ([daemon]) => {
        // Jobs of 10 minutes: only terminating their threads ends them.
        const app = await startApp(daemon!, file, 600_000, WORKERS);
        await kill(app);
        await waitFor(() => daemon!.logs.some((l) => l.event === 'cleaned-up'), 10_000, 'the daemon to log cleaned-up');
        const cleaned = daemon!.logs.find((l) => l.event === 'cleaned-up') as { instances: number; failures: number };
        expect(cleaned).to.include({ instances: WORKERS, failures: WORKERS });
        const failure = daemon!.logs.find((l) => l.event === 'cleanup-failed') as { error: { name: string; props?: { waitingFor?: string } } };
        expect(failure.error.name).to.equal('CleanupTimeoutError');
        expect(failure.error.props?.waitingFor).to.equal('running job');
        expect(startedJobs(file)).to.have.length(WORKERS);
      });
    } finally {
      dir.remove();
    }
  });
});
