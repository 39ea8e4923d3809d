import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Processor } from 'mapscale';
import { FaultyWork, jobs } from './fixtures/fault-work.js';
import { withDaemons } from './helpers/daemon.js';
import { tempDir } from './helpers/files.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale-worker', import.meta.url));

describe('mapscale-worker status', () => {
  const secret = 'status-secret-for-tests';

  it('prints version, uptime, slots, sessions, jobs done and errors, after authenticating', async () => {
    const dir = tempDir();
    try {
      const secretFile = join(dir.path, 'secret');
      writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
      await withDaemons(1, { workers: 3, secret }, async ([daemon]) => {
        const mapper = new Processor(new FaultyWork(), [daemon!.address], { secret });
        try {
          await mapper.map(jobs(250, 0, (i) => ({ fail: i % 50 === 0 })), { settle: true });
          const { stdout } = await run(BIN, ['status', daemon!.address, '--secret-file', secretFile, '--json'], { timeout: 20_000 });
          const status = JSON.parse(stdout) as Record<string, unknown>;
          expect(status).to.include({ version: '0.1.0', slotsPerSession: 3, sessionsOpen: 2, jobsDone: 250, jobErrors: 5, pid: daemon!.child.pid });
          expect(status.uptimeMs).to.be.a('number').and.above(0);
          const text = await run(BIN, ['status', daemon!.address, '--secret-file', secretFile], { timeout: 20_000 });
          expect(text.stdout).to.match(/jobsDone\s+250/);
        } finally {
          await mapper.shutdown();
        }
      });
    } finally {
      dir.remove();
    }
  });

  it('refuses without the right secret: exit 1 naming the authentication failure', async () => {
    await withDaemons(1, { secret }, async ([daemon]) => {
      const error = await run(BIN, ['status', daemon!.address], { timeout: 20_000, env: { ...process.env, MAPSCALE_SECRET: 'wrong' } })
        .then(() => null, (e: { code?: number; stderr?: string }) => e);
      expect(error?.code).to.equal(1);
      expect(error?.stderr).to.include('MS_AUTH_FAILED');
    });
  });
});
