import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { localDaemonEntry } from '@mapscale/worker-server';
import { startDaemon, waitFor, type TestDaemon } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';
import { alive, killIfAlive, spawnNode } from './helpers/processes.js';

const APP = fileURLToPath(new URL('./fixtures/stubborn-cleanup-app.js', import.meta.url));

/** A local daemon must be gone well within this (it gives up on cleanup() after 5 s); a hang fails the test. */
const GONE_WITHIN_MS = 20_000;

type Ending = 'return' | 'exit-during-shutdown' | 'SIGTERM' | 'SIGKILL';

/** Runs the app with local workers whose cleanup() never returns, ends it as `ending` says; resolves once its daemon is gone. */
async function endAppAndAwaitItsDaemon(ending: Ending, kind: 'hang' | 'busy'): Promise<void> {
  const mode = ending === 'SIGTERM' || ending === 'SIGKILL' ? 'wait' : ending;
  const app = spawnNode([APP, mode, kind]);
  let daemonPid: number | undefined;
  try {
    daemonPid = (JSON.parse(await app.line((l) => l.startsWith('{'))) as { daemonPid: number }).daemonPid;
    expect(daemonPid).to.be.a('number').and.not.equal(app.child.pid);
    if (ending === 'SIGTERM' || ending === 'SIGKILL') app.child.kill(ending);
    await waitFor(() => !alive(app.child.pid!), GONE_WITHIN_MS, `the app (${ending}) to exit`);
    await waitFor(() => !alive(daemonPid!), GONE_WITHIN_MS, `the local daemon ${daemonPid} of an app ended by ${ending} (cleanup: ${kind}) to exit`);
  } finally {
    killIfAlive(app.child.pid);
    killIfAlive(daemonPid);
  }
}

describe('a daemon stops, however long cleanup() takes', () => {
  for (const kind of ['hang', 'busy'] as const) {
    it(`a local daemon dies with its app, with a cleanup() that ${kind === 'hang' ? 'never returns' : 'loops forever'}: app returns, exits during shutdown(), SIGTERM, SIGKILL`, async () => {
      // At once: each case spends most of its time waiting for a daemon to give up.
      const endings: Ending[] = ['return', 'exit-during-shutdown', 'SIGTERM', 'SIGKILL'];
      await Promise.all(endings.map((ending) => endAppAndAwaitItsDaemon(ending, kind)));
    });
  }

  it('a SIGTERM ends a local daemon whose cleanup() never returns, while its app still waits on shutdown()', async () => {
    const marks = tempDir();
    const app = spawnNode([APP, 'shutdown-and-wait', 'hang'], { env: { ...process.env, MAPSCALE_TEST_MARKS: marks.path } });
    let daemonPid: number | undefined;
    try {
      daemonPid = (JSON.parse(await app.line((l) => l.startsWith('{'))) as { daemonPid: number }).daemonPid;
      await waitFor(() => existsSync(join(marks.path, `cleanup-started-${daemonPid}`)), GONE_WITHIN_MS, 'cleanup() to start');
      process.kill(daemonPid, 'SIGTERM');
      await waitFor(() => !alive(daemonPid!), GONE_WITHIN_MS, `the local daemon ${daemonPid} to exit on SIGTERM`);
    } finally {
      killIfAlive(app.child.pid);
      killIfAlive(daemonPid);
      marks.remove();
    }
  });

  it('a local daemon whose stdin stays open (another process holds the pipe) still stops once its parent is gone', async () => {
    // sh starts the daemon with fd 3 as its stdin (a pipe this test holds open) and exits when told,
    // leaving the daemon reparented with a stdin that never ends.
    const script = 'node "$1" 1 <&3 & echo "daemon $!"; read go';
    const parent = spawn('sh', ['-c', script, 'sh', fileURLToPath(localDaemonEntry())], {
      env: { ...process.env, MAPSCALE_SECRET: 'parent-check-secret' }, stdio: ['pipe', 'pipe', 'inherit', 'pipe'],
    });
    const lines = createInterface({ input: parent.stdout! });
    let daemonPid: number | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the daemon did not start listening')), GONE_WITHIN_MS);
        lines.on('line', (line) => {
          if (line.startsWith('daemon ')) daemonPid = Number(line.slice(7));
          else if (line.includes('"listening"')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      parent.stdin!.end('\n');
      await waitFor(() => !alive(parent.pid!), GONE_WITHIN_MS, 'the parent shell to exit');
      expect(alive(daemonPid!), 'the daemon outlived its parent for now').to.equal(true);
      await waitFor(() => !alive(daemonPid!), GONE_WITHIN_MS, `the daemon ${daemonPid} to notice its parent is gone`);
    } finally {
      killIfAlive(parent.pid);
      killIfAlive(daemonPid);
      (parent.stdio[3] as NodeJS.WritableStream & { destroy(): void } | null)?.destroy();
    }
  });

  describe('a daemon whose coordinator vanished while cleanup() never returns', () => {
    /** Starts a daemon, has an app map on it and exit without shutdown(); resolves once the daemon runs that cleanup(). */
    async function orphanedCleanup(args: string[]): Promise<{ daemon: TestDaemon; marks: ReturnType<typeof tempDir> }> {
      const marks = tempDir();
      const daemon = await startDaemon({ workers: 1, args, env: { MAPSCALE_TEST_MARKS: marks.path } });
      const app = spawnNode([APP, 'return', 'hang', daemon.address]);
      try {
        await app.line((l) => l.startsWith('{'));
        await waitFor(() => existsSync(join(marks.path, `cleanup-started-${daemon.child.pid}`)), GONE_WITHIN_MS, 'cleanup() to start');
      } finally {
        killIfAlive(app.child.pid);
      }
      return { daemon, marks };
    }

    function exitWithin(daemon: TestDaemon, ms: number, what: string): Promise<number | null> {
      let timer: NodeJS.Timeout | undefined;
      const overdue = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the daemon did not exit ${what} within ${ms} ms`)), ms);
      });
      return Promise.race([daemon.exited, overdue]).finally(() => clearTimeout(timer));
    }

    it('ends on SIGTERM once --stop-grace-ms + --stop-deadline-ms are over, exit 1, logging the session it gave up on', async () => {
      const { daemon, marks } = await orphanedCleanup(['--stop-grace-ms', '200', '--stop-deadline-ms', '1000']);
      try {
        daemon.child.kill('SIGTERM');
        expect(await exitWithin(daemon, GONE_WITHIN_MS, 'after its stop deadline')).to.equal(1);
        const overdue = daemon.logs.find((l) => l.event === 'stop-overdue') as { sessions?: { peer: string; state: string }[] } | undefined;
        expect(overdue?.sessions).to.have.length(1);
        expect(overdue!.sessions![0]!.peer).to.match(/^127\.0\.0\.1:\d+$/);
      } finally {
        await daemon.stop('SIGKILL');
        marks.remove();
      }
    });

    it('ends at once on a second SIGTERM, however long its stop deadline', async () => {
      const { daemon, marks } = await orphanedCleanup(['--stop-deadline-ms', '600000']);
      try {
        daemon.child.kill('SIGTERM');
        await waitFor(() => daemon.logs.some((l) => l.event === 'signal'), 10_000, 'the daemon to begin stopping');
        daemon.child.kill('SIGTERM');
        expect(await exitWithin(daemon, GONE_WITHIN_MS, 'on the second SIGTERM')).to.equal(1);
        expect(daemon.logs.some((l) => l.event === 'stop-forced')).to.equal(true);
      } finally {
        await daemon.stop('SIGKILL');
        marks.remove();
      }
    });
  });
});
