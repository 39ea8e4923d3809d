import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Processor } from 'mapscale';
import { HostileWork, type HostileJob } from './fixtures/hostile-work.js';
import { within } from './helpers/bounded.js';
import { waitFor, withDaemons, type TestDaemon } from './helpers/daemon.js';

const APP = fileURLToPath(new URL('./fixtures/hostile-app.js', import.meta.url));

/** Starts the hostile app against `daemon`; resolves once its jobs run. */
async function hostileApp(daemon: TestDaemon, mode: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [APP, daemon.address, mode], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = createInterface({ input: child.stdout! });
  await within(new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => line === 'started' && resolve());
    child.once('exit', (code) => reject(new Error(`the hostile app exited with ${code} before starting`)));
  }), 20_000, 'the hostile app to start');
  return child;
}

function kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

const echoes = (n: number): HostileJob[] => Array.from({ length: n }, (_, value) => ({ kind: 'echo', value }));

describe('a daemon keeps serving other coordinators whatever one of them does (issue 12)', () => {
  for (const mode of ['unserializable', 'unserializable-relay']) {
    it(`while one floods it with results that cannot be serialized (${mode === 'unserializable' ? 'data connections' : 'the daemon port'})`, async () => {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        const flooder = await hostileApp(daemon!, mode);
        const mapper = new Processor(new HostileWork(), [daemon!.address]);
        try {
          for (let round = 0; round < 5; round++) {
            expect(await within(mapper.map(echoes(200)), 15_000, `round ${round}`)).to.deep.equal(echoes(200).map((_, i) => i));
          }
          expect(flooder.exitCode, 'the flooding app is still running').to.equal(null);
          expect(daemon!.logs.filter((l) => l.event === 'instance-died'), 'instances died for unserializable results').to.deep.equal([]);
        } finally {
          await kill(flooder);
          await within(mapper.shutdown(), 15_000, 'shutdown');
        }
      });
    });
  }

  it('after one vanishes mid-map with synchronous jobs: its threads are freed, the others are served', async () => {
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      const app = await hostileApp(daemon!, 'sync');
      const mapper = new Processor(new HostileWork(), [daemon!.address]);
      try {
        await waitFor(() => daemon!.logs.some((l) => l.event === 'session-authenticated'), 10_000, 'the app to connect');
        await kill(app);
        // Its queued jobs are dropped at once; the running ones get the stop grace, then the threads go.
        await within(waitFor(() => daemon!.logs.some((l) => l.event === 'cleaned-up'), 30_000, 'the vanished app\'s cleanup'), 31_000, 'cleanup');
        expect(await within(mapper.map(echoes(100)), 15_000, 'a map of another coordinator')).to.have.length(100);
      } finally {
        await kill(app);
        await within(mapper.shutdown(), 15_000, 'shutdown');
      }
    });
  });

  it('while one stalls (SIGSTOP) mid-map', async () => {
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      const app = await hostileApp(daemon!, 'sync');
      const mapper = new Processor(new HostileWork(), [daemon!.address]);
      try {
        app.kill('SIGSTOP');
        expect(await within(mapper.map(echoes(100)), 15_000, 'a map of another coordinator')).to.have.length(100);
      } finally {
        app.kill('SIGCONT');
        await kill(app);
        await within(mapper.shutdown(), 15_000, 'shutdown');
      }
    });
  });
});
