import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { waitFor } from './helpers/daemon.js';

const run = promisify(execFile);
const APP = fileURLToPath(new URL('./fixtures/local-app.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the app process around a Processor', () => {
  for (const mode of ['shutdown', 'abandon']) {
    it(`exits on its own after mapping (${mode}), and leaves no local daemon behind`, async () => {
      // execFile's timeout kills a hung app, which fails the test: the app must exit by itself.
      const { stdout } = await run(process.execPath, [APP, mode], { timeout: 30_000 });
      const { results, daemonPid } = JSON.parse(stdout.trim()) as { results: number[]; daemonPid: number };
      expect(results).to.deep.equal([1, 4, 9]);
      expect(daemonPid).to.be.above(0);
      await waitFor(() => !alive(daemonPid), 15_000, `local daemon ${daemonPid} to exit`);
    });
  }
});
