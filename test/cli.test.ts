import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { expect } from 'chai';
import { ListenError, startWorkerServer } from '@mapscale/worker-server';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale-worker', import.meta.url));

/** A logger that drops everything, shaped like the pino logger startWorkerServer takes. */
function silentLogger(): never {
  const logger = { child: () => logger, level: 'silent' } as Record<string, unknown>;
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) logger[level] = () => {};
  return logger as never;
}

describe('command line and plain node', () => {
  it('mapscale-worker --help lists its options with their defaults', async () => {
    const { stdout } = await run(BIN, ['--help'], { timeout: 20_000 });
    for (const flag of ['--host', '--port', '--workers', '--secret-file', '--log-level']) expect(stdout).to.include(flag);
    expect(stdout).to.include('127.0.0.1').and.include('7100');
  });

  it('mapscale-worker rejects an unknown option with a non-zero exit', async () => {
    const error = await run(BIN, ['--no-such-flag'], { timeout: 20_000 }).then(() => null, (e: { code?: number }) => e);
    expect(error?.code).to.be.a('number').and.not.equal(0);
  });

  it('mapscale-worker on a port already in use: one plain line on stderr, one start-failed log line without a stack, exit 1', async () => {
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const port = (taken.address() as AddressInfo).port;
      const failed = await run(BIN, ['--port', String(port), '--workers', '1'], { timeout: 20_000 })
        .then(() => null, (e: { code?: number; stdout: string; stderr: string }) => e);
      expect(failed?.code).to.equal(1);
      const errLines = failed!.stderr.trim().split('\n');
      expect(errLines).to.have.length(1);
      expect(errLines[0]).to.match(/^mapscale-worker: /).and.include(`127.0.0.1:${port}`).and.include('EADDRINUSE');
      const logs = failed!.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event: string; err: { code: string; stack: string } });
      expect(logs.map((l) => l.event)).to.deep.equal(['start-failed']);
      expect(logs[0]!.err.code).to.equal('MS_LISTEN_FAILED');
      expect(logs[0]!.err.stack).to.equal('');
      // The same as a typed error for code that starts a daemon itself.
      const error = await startWorkerServer({ port, workers: 1, logger: silentLogger() }).then(async (server) => {
        await server.close();
        return null;
      }, (e: unknown) => e);
      expect(error).to.be.instanceOf(ListenError);
      expect((error as ListenError).code).to.equal('MS_LISTEN_FAILED');
    } finally {
      taken.close();
    }
  });

  it('runs the README demo with plain node from the repository root', async () => {
    const { stdout } = await run(process.execPath, ['examples/demo.mjs'], { cwd: ROOT, timeout: 30_000 });
    expect(stdout).to.include('[ 0, 1, 4, 9, 16 ]');
  });
});
