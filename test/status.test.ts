import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { DEFAULT_LIMITS, clientHandshake, type DaemonMessage } from '@mapscale/protocol';
import { FramedConnection } from '@mapscale/transport';
import { queryDaemonStatus } from '@mapscale/worker-server';
import { Processor } from 'mapscale';
import { FaultyWork, jobs } from './fixtures/fault-work.js';
import { waitFor, withDaemons } from './helpers/daemon.js';
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
          // Open: the coordinator's session; the status query's own connection is not one.
          expect(status).to.include({ version: '0.1.0', slotsPerSession: 3, sessionsOpen: 1, jobsDone: 250, jobErrors: 5, pid: daemon!.child.pid });
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

  it('keeps spare threads loaded for the next session, refilled only once no session is left running jobs', async () => {
    await withDaemons(1, { workers: 2, secret }, async ([daemon]) => {
      const status = () => queryDaemonStatus({ host: '127.0.0.1', port: daemon!.port, secret });
      await waitFor(async () => (await status()).spareThreads === 2, 10_000, 'the spares loaded at start');
      const first = new Processor(new FaultyWork(), [daemon!.address], { secret });
      const second = new Processor(new FaultyWork(), [daemon!.address], { secret });
      try {
        expect(await first.map(jobs(10))).to.have.length(10);
        expect(await second.map(jobs(10))).to.have.length(10);
        // The first session took the spares, the second started threads of its own.
        expect((await status()).spareThreads).to.equal(0);
        await first.shutdown();
        // Open: the second coordinator's session (this status query's own connection is not counted).
        await waitFor(async () => (await status()).sessionsOpen === 1, 10_000, 'the first session to end');
        // Another session still runs jobs: no thread is loaded behind its back.
        await sleep(300);
        expect((await status()).spareThreads).to.equal(0);
        await second.shutdown();
        await waitFor(async () => (await status()).spareThreads === 2, 10_000, 'the spares refilled once no session is left');
      } finally {
        await first.shutdown();
        await second.shutdown();
      }
    });
  });

  it('refuses without the right secret: exit 1 naming the authentication failure', async () => {
    await withDaemons(1, { secret }, async ([daemon]) => {
      const error = await run(BIN, ['status', daemon!.address], { timeout: 20_000, env: { ...process.env, MAPSCALE_SECRET: 'wrong' } })
        .then(() => null, (e: { code?: number; stderr?: string }) => e);
      expect(error?.code).to.equal(1);
      expect(error?.stderr).to.include('MS_AUTH_FAILED');
    });
  });

  it('without a secret, tells the user to give --secret-file (the option this command has)', async () => {
    await withDaemons(1, { secret }, async ([daemon]) => {
      const env = { ...process.env };
      delete env.MAPSCALE_SECRET;
      const error = await run(BIN, ['status', daemon!.address], { timeout: 20_000, env }).then(() => null, (e: { code?: number; stderr?: string }) => e);
      expect(error?.code).to.equal(1);
      expect(error?.stderr).to.include('MS_AUTH_FAILED').and.include('--secret-file').and.not.include('"secret" option');
    });
  });

  it('takes a ping that crosses its end of the connection quietly: no write after end, no warning', async () => {
    await withDaemons(1, { workers: 1, secret }, async ([daemon]) => {
      const socket = connect({ host: '127.0.0.1', port: daemon!.port });
      await once(socket, 'connect');
      const connection = new FramedConnection(socket, DEFAULT_LIMITS.maxFrameBytes);
      const inbox: DaemonMessage[] = [];
      let wake = () => {};
      connection.on('message', (message) => {
        inbox.push(message as DaemonMessage);
        wake();
      });
      const closed = once(connection, 'close');
      const receive = async (accept: (m: DaemonMessage) => boolean): Promise<DaemonMessage> => {
        for (let waited = 0; inbox.length === 0; waited++) {
          if (waited > 100) throw new Error('the daemon did not answer');
          await Promise.race([new Promise<void>((resolve) => (wake = resolve)), sleep(100)]);
        }
        const message = inbox.shift()!;
        expect(accept(message), `unexpected ${message.type}`).to.equal(true);
        return message;
      };
      await clientHandshake({ send: (m) => connection.send(m), receive }, secret, daemon!.address);
      connection.send({ type: 'status-request' });
      await receive((m) => m.type === 'status');
      // The daemon ends the connection after the status; this ping reaches it after that.
      connection.send({ type: 'ping', seq: 1 });
      setTimeout(() => connection.end(), 50).unref();
      await closed;
      await sleep(300);
      expect(daemon!.logs.filter((l) => l.event === 'disconnected')).to.deep.equal([]);
    });
  });
});
