import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { InvalidOptionError, Processor, WorkerCrashedError } from 'mapscale';
import { Recorder } from './fixtures/work-functions.js';
import { FaultyWork, type FaultJob } from './fixtures/fault-work.js';
import { tempDir } from './helpers/files.js';
import { within } from './helpers/bounded.js';
import { killIfAlive, spawnNode } from './helpers/processes.js';

const APP = fileURLToPath(new URL('./fixtures/in-process-app.js', import.meta.url));
const STUBBORN_APP = fileURLToPath(new URL('./fixtures/stubborn-cleanup-app.js', import.meta.url));
/** An app that hangs instead of exiting fails here, not at mocha's timeout. */
const EXIT_WITHIN_MS = 20_000;

/** Pids of this process's children that run a local daemon. */
function localDaemonChildren(): string[] {
  try {
    return execFileSync('pgrep', ['-P', String(process.pid), '-f', 'local-entry']).toString().trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

describe('local workers in the app\'s own process (inProcess)', () => {
  it('runs each instance as a thread of this process, setup() and cleanup() included, with no child daemon', async () => {
    const dir = tempDir('in-process-');
    const mapper = new Processor(new Recorder(dir.path), 2, { inProcess: true });
    try {
      const ids = await within(mapper.map(Array.from({ length: 200 }, (_, i) => i)), 20_000, 'the map');
      expect(new Set(ids).size, 'two instances answered').to.equal(2);
      expect(localDaemonChildren(), 'child daemons').to.deep.equal([]);
    } finally {
      await within(mapper.shutdown(), 20_000, 'shutdown');
    }
    const files = readdirSync(dir.path);
    const pids = (prefix: string) => files.filter((f) => f.startsWith(prefix)).map((f) => readFileSync(`${dir.path}/${f}`, 'utf8'));
    expect(pids('setup-')).to.deep.equal([String(process.pid), String(process.pid)]);
    expect(pids('cleanup-'), 'cleanup() ran in each instance, in this process').to.deep.equal([String(process.pid), String(process.pid)]);
    dir.remove();
  });

  for (const ending of ['shutdown', 'abandon'] as const) {
    it(`lets its app exit by itself once it ${ending === 'shutdown' ? 'has shut down' : 'returns without shutdown(), after running cleanup() as a child daemon would'}`, async () => {
      const dir = tempDir('in-process-app-');
      const app = spawnNode([APP, ending, dir.path]);
      try {
        const line = JSON.parse(await app.line((l) => l.startsWith('{'), EXIT_WITHIN_MS)) as { instances: number; children: string };
        expect(line.instances).to.equal(2);
        expect(line.children, 'the app has no child process').to.equal('');
        const code = await within(new Promise<number | null>((resolve) => {
          if (app.child.exitCode !== null) resolve(app.child.exitCode);
          else app.child.once('exit', (c) => resolve(c));
        }), EXIT_WITHIN_MS, 'the app to exit');
        expect(code, app.stderr()).to.equal(0);
        expect(readdirSync(dir.path).filter((f) => f.startsWith('cleanup-')), 'cleanup() of each instance').to.have.length(2);
      } finally {
        killIfAlive(app.child.pid);
        dir.remove();
      }
    });
  }

  for (const kind of ['hang', 'busy'] as const) {
    it(`lets an app that returns without shutdown() exit, even with a cleanup() that ${kind === 'hang' ? 'never returns' : 'loops forever'}: bounded as a local daemon's stop`, async () => {
      const app = spawnNode([STUBBORN_APP, 'return', kind], { env: { ...process.env, MAPSCALE_TEST_IN_PROCESS: '1' } });
      try {
        const { daemonPid } = JSON.parse(await app.line((l) => l.startsWith('{'), EXIT_WITHIN_MS)) as { daemonPid: number };
        expect(daemonPid, 'its instance is a thread of the app').to.equal(app.child.pid);
        const code = await within(new Promise<number | null>((resolve) => {
          if (app.child.exitCode !== null) resolve(app.child.exitCode);
          else app.child.once('exit', (c) => resolve(c));
        }), EXIT_WITHIN_MS, 'the app to exit');
        expect(code, app.stderr()).to.equal(0);
      } finally {
        killIfAlive(app.child.pid);
      }
    });
  }

  it('loses only the instance whose job ends its thread (process.exit in a job), and the app and its other maps go on', async () => {
    const mapper = new Processor<FaultJob, number>(new FaultyWork(), 2, { inProcess: true, maxJobRetries: 1 });
    try {
      const jobs: FaultJob[] = Array.from({ length: 50 }, (_, i) => ({ i, poison: i === 20 }));
      const settled = await within(mapper.map(jobs, { settle: true }), 30_000, 'the map with a poison job');
      expect(settled[20]!.status).to.equal("rejected");
      expect((settled[20] as { reason: Error }).reason).to.be.instanceOf(WorkerCrashedError);
      expect(settled.filter((s) => s.status === "fulfilled").map((s) => (s as { value: number }).value)).to.deep.equal(jobs.filter((j) => !j.poison).map((j) => j.i * 2));
      expect(await within(mapper.map([{ i: 1 }, { i: 2 }]), 20_000, 'the next map')).to.deep.equal([2, 4]);
    } finally {
      await within(mapper.shutdown(), 20_000, 'shutdown');
    }
  });

  it('refuses an inProcess that is not a boolean', () => {
    expect(() => new Processor((x: number) => x, 1, { inProcess: 'yes' as never })).to.throw(InvalidOptionError, /inProcess/);
  });
});
