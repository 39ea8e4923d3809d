import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { CleanupError, CleanupTimeoutError, DEFAULT_PROCESSOR_OPTIONS, InvalidOptionError, Processor } from 'mapscale';
import { DEFAULT_WORKER_SERVER_OPTIONS } from '@mapscale/worker-server';
import { FrameDecoder, createNonce, decodeMessage, encodeFrame, encodeMessage, type Message } from '@mapscale/protocol';
import { waitFor, withDaemons } from './helpers/daemon.js';
import { runDaemonToExit } from './helpers/daemon-exit.js';
import { within } from './helpers/bounded.js';
import { HangingCleanup, Power, SpinningCleanup } from './fixtures/work-functions.js';

const run = promisify(execFile);

/**
 * Issue 12, item 3: a cleanup() that never returns used to hang shutdown() forever, even forced.
 * Now each instance gets `cleanupTimeoutMs`, then its thread is terminated and shutdown() rejects
 * with a CleanupError naming it; a daemon that does not answer at all is given up on too.
 */

function expectTimedOut(error: unknown, instances: number, waitingFor: string): void {
  expect(error).to.be.instanceOf(CleanupError);
  const { errors } = error as CleanupError;
  expect(errors).to.have.length(instances);
  for (const { workerAddress, error: cause } of errors) {
    expect(workerAddress).to.match(/^127\.0\.0\.1:\d+#\d+$/);
    expect(cause.name).to.equal('CleanupTimeoutError');
    expect((cause as Error & { code?: string }).code).to.equal('MS_CLEANUP_TIMEOUT');
    expect((cause as Error & { waitingFor?: string }).waitingFor).to.equal(waitingFor);
  }
  expect(new Set(errors.map((e) => e.workerAddress)).size).to.equal(instances);
}

describe('cleanup() that never returns', function () {
  this.timeout(60_000);

  it('shutdown() rejects with CleanupError naming each instance whose awaited cleanup() never settled, after cleanupTimeoutMs', async () => {
    const mapper = new Processor(new HangingCleanup(), 2, { cleanupTimeoutMs: 300 });
    expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 2, 3]);
    const error = await within(mapper.shutdown().then(() => null, (e: unknown) => e), 15_000, 'shutdown()');
    expectTimedOut(error, 2, 'cleanup');
    expect(mapper.status).to.equal('closed');
  });

  it('shutdown({ force: true }) ends a busy-looping cleanup() by terminating its thread; the daemon serves on', async () => {
    await withDaemons(1, { workers: 2 }, async ([daemon]) => {
      const mapper = new Processor(new SpinningCleanup(), [daemon!.address], { cleanupTimeoutMs: 300 });
      expect(await mapper.map([1, 2])).to.deep.equal([1, 2]);
      const error = await within(mapper.shutdown({ force: true }).then(() => null, (e: unknown) => e), 15_000, 'shutdown({ force: true })');
      expectTimedOut(error, 2, 'cleanup');
      await waitFor(() => daemon!.logs.some((l) => l.event === 'cleaned-up' && l.failures === 2), 5_000, 'the daemon to log cleaned-up');
      const next = new Processor(new Power(2), [daemon!.address]);
      try {
        expect(await within(next.map([3]), 10_000, 'the next coordinator\'s map')).to.deep.equal([9]);
      } finally {
        await next.shutdown();
      }
    });
  });

  it('a daemon bounds the cleanup() of a coordinator that vanished by --cleanup-timeout-ms', async () => {
    await withDaemons(1, { workers: 1, args: ['--cleanup-timeout-ms', '300'] }, async ([daemon]) => {
      const app = fileURLToPath(new URL('./fixtures/vanishing-app.js', import.meta.url));
      const { stdout } = await run(process.execPath, [app, daemon!.address, 'hanging-cleanup'], { timeout: 30_000 });
      expect(stdout).to.include('mapped');
      await waitFor(() => daemon!.logs.some((l) => l.event === 'cleaned-up'), 10_000, 'the daemon to log cleaned-up');
      const failed = daemon!.logs.find((l) => l.event === 'cleanup-failed') as { error?: { name?: string } } | undefined;
      expect(failed?.error?.name).to.equal('CleanupTimeoutError');
    });
  });

  it('gives up on a daemon that never answers shutdown: CleanupError with a CleanupTimeoutError per instance', async () => {
    // A daemon that sets up and answers pings, but never shutdown.
    const server = createServer((socket) => {
      const decoder = new FrameDecoder(1 << 20);
      const send = (message: Message) => socket.write(encodeFrame(encodeMessage(message)));
      socket.on('error', () => {});
      socket.on('data', (chunk) => decoder.push(chunk, (body) => {
        const message = decodeMessage(body);
        if (message.type === 'hello') {
          send({
            type: 'welcome', protocol: message.protocol, mapscale: message.mapscale, node: process.versions.node, nonce: createNonce(),
            authRequired: false, slots: 2, hostname: 'mute', pid: 1,
          });
        } else if (message.type === 'auth') send({ type: 'ready' });
        else if (message.type === 'setup') send({ type: 'setup-done', slots: 2 });
        else if (message.type === 'ping') send({ type: 'pong', seq: message.seq });
      }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const mapper = new Processor(new Power(2), [`127.0.0.1:${port}`], { cleanupTimeoutMs: 300 });
      await waitFor(() => mapper.workerCount === 2, 10_000, 'the session to be set up');
      const error = await within(mapper.shutdown().then(() => null, (e: unknown) => e), 20_000, 'shutdown()');
      expectTimedOut(error, 2, 'daemon');
    } finally {
      server.close();
    }
  });

  it('cleanupTimeoutMs is an option with a documented default; --cleanup-timeout-ms too, both validated', async () => {
    expect(DEFAULT_PROCESSOR_OPTIONS.cleanupTimeoutMs).to.equal(10_000);
    expect(DEFAULT_WORKER_SERVER_OPTIONS.cleanupTimeoutMs).to.equal(10_000);
    for (const bad of [0, -1, 1.5, '300']) {
      expect(() => new Processor(new Power(2), 1, { cleanupTimeoutMs: bad as number }), String(bad)).to.throw(InvalidOptionError, /cleanupTimeoutMs/);
    }
    expect(new CleanupTimeoutError(5, 'cleanup').code).to.equal('MS_CLEANUP_TIMEOUT');
    const exit = await runDaemonToExit(['--port', '0', '--cleanup-timeout-ms', '0']);
    expect(exit.code).to.equal(1);
    expect((exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string } }).err.code).to.equal('MS_DAEMON_CONFIG');
  });
});
