import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { withDaemons } from './helpers/daemon.js';

const run = promisify(execFile);
const APP = fileURLToPath(new URL('./fixtures/chatty-app.js', import.meta.url));

describe('worker output', () => {
  it('forwards console output from setup, call and cleanup, tagged with host, worker and job, and keeps it in the daemon log', async () => {
    await withDaemons(1, { workers: 1 }, async ([daemon]) => {
      const { stdout, stderr } = await run(process.execPath, [APP, daemon!.address, 'stderr'], { timeout: 30_000 });
      // What a job prints reaches the app before the map's results do.
      expect(JSON.parse(stdout)).to.deep.equal({ results: [1, 2, 3, 4], linesBeforeResults: 4 });
      const lines = stderr.split('\n').filter((l) => l.startsWith('['));
      const tag = `${daemon!.address}#0`;
      expect(lines).to.include(`[${hostname()} ${tag} setup] warming up`);
      expect(lines.some((l) => l.includes(`${tag} job 2] odd one: 3`))).to.equal(true);
      expect(lines.some((l) => l.includes(`${tag} job 0] job says { x: 1 }`))).to.equal(true);
      expect(lines.some((l) => l.includes(`${tag} cleanup] bye`))).to.equal(true);
      const logged = daemon!.logs.filter((l) => l.event === 'worker-output').map((l) => l.text);
      expect(logged).to.include.members(['warming up', 'odd one: 3', 'bye']);
    });
  });

  it('can be turned off: nothing reaches the app, the daemon still logs it', async () => {
    await withDaemons(1, { workers: 1 }, async ([daemon]) => {
      const { stderr } = await run(process.execPath, [APP, daemon!.address, 'off'], { timeout: 30_000 });
      expect(stderr).to.not.include('job says');
      expect(daemon!.logs.some((l) => l.event === 'worker-output' && l.text === 'bye')).to.equal(true);
    });
  });
});
