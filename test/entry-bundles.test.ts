import { execFile } from 'node:child_process';
import { statSync, utimesSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { entryPath } from '@mapscale/worker-server';

const run = promisify(execFile);
const DIST = new URL('../packages/worker-server/dist/', import.meta.url);

/** In a fresh process (the choice is made once per process): where each entry starts from, and a 1-worker map through them. */
async function entriesInFreshProcess(): Promise<{ thread: string; local: string; squares: number[] }> {
  const script = `
    import { entryPath, localDaemonEntry } from '@mapscale/worker-server';
    import { Processor } from 'mapscale';
    const mapper = new Processor((x) => x * x, 1);
    const squares = await mapper.map([1, 2, 3]);
    await mapper.shutdown();
    console.log(JSON.stringify({ thread: entryPath('instance-thread').href, local: localDaemonEntry().href, squares }));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000, cwd: fileURLToPath(new URL('..', import.meta.url)) });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { thread: string; local: string; squares: number[] };
}

describe('bundled entry points (local daemon, instance threads)', () => {
  it('starts local daemons and instance threads from their bundles once the build made them', () => {
    expect(entryPath('instance-thread').pathname).to.match(/\/dist\/bundled\/instance-thread\.js$/);
    expect(entryPath('local-entry').pathname).to.match(/\/dist\/bundled\/local-entry\.js$/);
  });

  it('falls back to the plain modules when a file a bundle was made from is newer than the bundle, and they work', async () => {
    const input = new URL('session.js', DIST);
    const thread = new URL('instance-thread.js', DIST);
    const { atime, mtime } = statSync(input);
    const threadTimes = statSync(thread);
    const bundled = statSync(new URL('bundled/local-entry.js', DIST)).mtimeMs;
    try {
      // As after a `tsc -b` that did not run the bundle step.
      utimesSync(input, atime, new Date(bundled + 60_000));
      const stale = await entriesInFreshProcess();
      expect(stale.local).to.match(/\/dist\/local-entry\.js$/);
      // The thread bundle does not contain the session: it stays in use.
      expect(stale.thread).to.match(/\/dist\/bundled\/instance-thread\.js$/);
      expect(stale.squares).to.deep.equal([1, 4, 9]);
      utimesSync(thread, threadTimes.atime, new Date(bundled + 60_000));
      const plain = await entriesInFreshProcess();
      expect(plain.thread).to.match(/\/dist\/instance-thread\.js$/);
      expect(plain.squares).to.deep.equal([1, 4, 9]);
    } finally {
      utimesSync(input, atime, mtime);
      utimesSync(thread, threadTimes.atime, threadTimes.mtime);
    }
    const restored = await entriesInFreshProcess();
    expect(restored.local).to.match(/\/dist\/bundled\/local-entry\.js$/);
    expect(restored.thread).to.match(/\/dist\/bundled\/instance-thread\.js$/);
  });
});
