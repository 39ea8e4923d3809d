import { execFile } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Processor, WorkFunction } from 'mapscale';
import { WorkerServerConfigError, startWorkerServer, DEFAULT_WORKER_SERVER_OPTIONS } from '@mapscale/worker-server';
import { Power } from './fixtures/work-functions.js';
import { withDaemons } from './helpers/daemon.js';
import { runDaemonToExit } from './helpers/daemon-exit.js';
import { tempDir } from './helpers/files.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale-worker', import.meta.url));

/** What the daemon's environment holds, seen from a work function. */
class EnvProbe extends WorkFunction<string, string | null> {
  call(name: string): string | null {
    return process.env[name] ?? null;
  }
}

/** A logger that drops everything, shaped like the pino logger startWorkerServer takes. */
function silentLogger(): never {
  const logger = { child: () => logger, level: 'silent' } as Record<string, unknown>;
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) logger[level] = () => {};
  return logger as never;
}

function hasIpv6Loopback(): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address === '::1'));
}

describe('security: safe by default at start-up', () => {
  it('refuses to start on 0.0.0.0 without a secret, saying why, and never listens', async () => {
    const exit = await runDaemonToExit(['--host', '0.0.0.0', '--port', '0']);
    expect(exit.code).to.equal(1);
    expect(exit.logs.some((l) => l.event === 'listening')).to.equal(false);
    const failure = exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string; type: string; message: string } };
    expect(failure.err.code).to.equal('MS_DAEMON_CONFIG');
    expect(failure.err.type).to.equal('WorkerServerConfigError');
    expect(failure.err.message).to.include('0.0.0.0').and.include('without a secret').and.include('--insecure');
  });

  it('refuses every non-loopback address without a secret, before binding anything', async () => {
    const external = Object.values(networkInterfaces()).flatMap((list) => list ?? [])
      .filter((i) => !i.internal).map((i) => i.address).slice(0, 2);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.1.2.3', 'example.com', 'localhost.example', ...external]) {
      const error = await startWorkerServer({ host, port: 0, logger: silentLogger() }).then(
        async (server) => {
          await server.close();
          return null;
        },
        (e: unknown) => e);
      expect(error, host).to.be.instanceOf(WorkerServerConfigError);
      expect((error as WorkerServerConfigError).code).to.equal('MS_DAEMON_CONFIG');
    }
  });

  it('counts 127.0.0.0/8, ::1 and localhost as loopback, where no secret is needed', async () => {
    const hosts = ['127.0.0.1', '127.0.0.2', 'localhost', ...(hasIpv6Loopback() ? ['::1'] : [])];
    for (const host of hosts) {
      const server = await startWorkerServer({ host, port: 0, workers: 1, logger: silentLogger() });
      await server.close();
    }
    expect(DEFAULT_WORKER_SERVER_OPTIONS.host).to.equal('127.0.0.1');
    expect(DEFAULT_WORKER_SERVER_OPTIONS.insecure).to.equal(false);
  });

  it('listens on 0.0.0.0 without a secret only with --insecure, logged as an error-level "insecure" event', async () => {
    await withDaemons(1, { args: ['--host', '0.0.0.0', '--insecure'] }, async ([daemon]) => {
      expect(daemon!.logs.find((l) => l.event === 'listening')!.host).to.equal('0.0.0.0');
      const warning = daemon!.logs.find((l) => l.event === 'insecure') as { level: number; reason: string };
      expect(warning.level).to.be.at.least(50);
      expect(warning.reason).to.include('any code');
      // Only loopback traffic, even though it listens everywhere.
      const mapper = new Processor(new Power(2), [daemon!.address]);
      try {
        expect(await mapper.map([5])).to.deep.equal([25]);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  describe('the secret', () => {
    const secret = 'a secret that must never appear in a log line';

    it('is given on the command line only as --secret-file: --secret is an unknown option', async () => {
      const error = await run(BIN, ['--port', '0', '--secret', secret], { timeout: 20_000 }).then(() => null, (e: { code?: number; stderr?: string }) => e);
      expect(error?.code).to.be.a('number').and.not.equal(0);
      expect(error?.stderr).to.include('Unknown argument');
    });

    it('refuses an empty --secret-file, and one that cannot be read, without starting', async () => {
      const dir = tempDir();
      try {
        const empty = join(dir.path, 'empty');
        writeFileSync(empty, '\n', { mode: 0o600 });
        for (const file of [empty, join(dir.path, 'missing')]) {
          const exit = await runDaemonToExit(['--port', '0', '--secret-file', file]);
          expect(exit.code, file).to.equal(1);
          expect((exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string } }).err.code).to.equal('MS_DAEMON_CONFIG');
        }
      } finally {
        dir.remove();
      }
    });

    it('never appears in the daemon\'s logs, through start, good and bad handshakes and stop; work functions do not see it', async () => {
      const dir = tempDir();
      try {
        const file = join(dir.path, 'secret');
        writeFileSync(file, `${secret}\n`);
        chmodSync(file, 0o644);
        await withDaemons(1, { args: ['--secret-file', file, '--log-level', 'trace'] }, async ([daemon]) => {
          expect(daemon!.logs.some((l) => l.event === 'file-permissions')).to.equal(true);
          const good = new Processor(new EnvProbe(), [daemon!.address], { secret });
          try {
            expect(await good.map(['MAPSCALE_SECRET'])).to.deep.equal([null]);
          } finally {
            await good.shutdown();
          }
          const bad = new Processor(new EnvProbe(), [daemon!.address], { secret: 'wrong' });
          await bad.map(['x']).catch(() => {});
          await bad.shutdown();
          await daemon!.stop();
          expect(JSON.stringify(daemon!.logs)).to.not.include(secret);
        });
        // From the environment, too.
        await withDaemons(1, { secret, args: ['--log-level', 'trace'] }, async ([daemon]) => {
          const good = new Processor(new EnvProbe(), [daemon!.address], { secret });
          try {
            expect(await good.map(['MAPSCALE_SECRET'])).to.deep.equal([null]);
          } finally {
            await good.shutdown();
          }
          await daemon!.stop();
          expect(JSON.stringify(daemon!.logs)).to.not.include(secret);
        });
      } finally {
        dir.remove();
      }
    });
  });
});
