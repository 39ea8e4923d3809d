import { execFile } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'chai';
import { createCodec, frameHeader, type DataEndpoint } from '@mapscale/protocol';
import { JobTimeoutError, Processor } from 'mapscale';
import { FaultyWork, expected, jobs } from './fixtures/fault-work.js';
import { startDaemon, waitFor, withDaemons } from './helpers/daemon.js';
import { protocolClient, setUpSession, type ProtocolClient } from './helpers/protocol-client.js';
import { openSlowLink } from './helpers/slow-link.js';
import { runDaemonToExit } from './helpers/daemon-exit.js';
import { rawConnect } from './helpers/raw-client.js';
import { canKillConnections, killConnections } from './helpers/socket-kill.js';

const codec = createCodec();
const run = promisify(execFile);

/** A logger shaped like pino's that keeps what is logged at warn and above. */
function capturingLogger(into: Record<string, unknown>[]): Record<string, unknown> {
  const logger: Record<string, unknown> = { child: () => logger, level: 'warn' };
  for (const level of ['trace', 'debug', 'info']) logger[level] = () => {};
  for (const level of ['warn', 'error', 'fatal']) logger[level] = (fields: Record<string, unknown>) => void into.push({ level, ...fields });
  return logger;
}
const DOUBLE = '(x) => x * 2';

/** What a plain TCP connect to `port` on loopback gets: its error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Attaches to a slot's data endpoint as a coordinator would; resolves once the instance accepted. */
async function attach(port: number, slot: number, endpoint: DataEndpoint): Promise<ProtocolClient> {
  const data = await protocolClient(endpoint.port);
  data.send({ type: 'attach', slot, token: endpoint.token });
  const attached = await data.next('attached');
  expect(attached.slot).to.equal(slot);
  expect(endpoint.port).to.not.equal(port);
  return data;
}

/** Sends a batch on `via` and collects its results until the final part. */
async function runBatch(via: ProtocolClient, slot: number, batch: number, values: number[]): Promise<unknown[]> {
  via.send({ type: 'jobs', slot, batch, payload: codec.pack(values) });
  const results: unknown[] = [];
  for (;;) {
    const part = await via.nextWhere((m) => m.type === 'results' && m.batch === batch);
    if (part.type !== 'results') throw new Error('unreachable');
    results.push(...(codec.unpack(part.payload as Buffer) as unknown[]));
    if (part.final) return results;
  }
}

describe('data connections: each worker instance takes its jobs on a connection of its own', () => {
  it('attaches every instance, and maps run over those connections with the same results', async () => {
    await withDaemons(1, { workers: 2, args: ['--log-level', 'debug'] }, async ([daemon]) => {
      const mapper = new Processor(new FaultyWork(), [daemon!.address]);
      try {
        expect(await mapper.map(jobs(1000))).to.deep.equal(expected(1000));
        await waitFor(() => mapper.stats()[0]!.directSlots === 2, 10_000, 'both instances to attach');
        expect(await mapper.map(jobs(20_000))).to.deep.equal(expected(20_000));
        // The daemon's log reaches this test through a pipe of its own, behind the coordinator's view.
        const attachedLogs = () => daemon!.logs.filter((l) => l.event === 'data-attached');
        await waitFor(() => attachedLogs().length >= 2, 5_000, 'the daemon to log both attaches');
        const attached = attachedLogs();
        expect(attached.map((l) => l.slot).sort()).to.deep.equal([0, 1]);
        // Both ends keep idle data connections alive at the TCP level (they are never pinged).
        // (While bytes are unacknowledged ss shows the retransmission timer instead: ask again until idle.)
        for (const { peer } of attached) {
          const port = String(peer).slice(String(peer).lastIndexOf(':') + 1);
          await waitFor(async () => {
            const { stdout } = await run('ss', ['-tnoH', 'state', 'established', `( sport = :${port} or dport = :${port} )`], { timeout: 10_000 });
            const ends = stdout.trim().split('\n');
            return ends.length === 2 && ends.every((end) => end.includes('timer:(keepalive'));
          }, 5_000, 'keep-alive timers on both ends of the data connection');
        }
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('serves every job through the daemon port with --no-data-connections', async () => {
    await withDaemons(1, { workers: 2, args: ['--no-data-connections'] }, async ([daemon]) => {
      const mapper = new Processor(new FaultyWork(), [daemon!.address]);
      try {
        expect(await mapper.map(jobs(5000))).to.deep.equal(expected(5000));
        await sleep(200);
        expect(await mapper.map(jobs(500))).to.deep.equal(expected(500));
        expect(mapper.stats()[0]!.directSlots).to.equal(0);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('sends everything through the daemon port with the dataConnections: false option', async () => {
    await withDaemons(1, { workers: 2, args: ['--log-level', 'debug'] }, async ([daemon]) => {
      const mapper = new Processor(new FaultyWork(), [daemon!.address], { dataConnections: false });
      try {
        expect(await mapper.map(jobs(3000))).to.deep.equal(expected(3000));
        await sleep(200);
        expect(mapper.stats()[0]!.directSlots).to.equal(0);
        expect(daemon!.logs.filter((l) => l.event === 'data-attached')).to.deep.equal([]);
      } finally {
        await mapper.shutdown();
      }
      expect(() => new Processor(new FaultyWork(), 1, { dataConnections: 'no' as never })).to.throw(/"dataConnections" must be a boolean/);
    });
  });

  it('falls back to the daemon port, with a warning, when the data ports cannot be reached', async () => {
    // The daemon listens on 127.0.0.2; the coordinator reaches it through a relay on 127.0.0.1,
    // where nothing listens on the data ports: as with a firewall that opens the daemon port only.
    const daemon = await startDaemon({ workers: 2, args: ['--host', '127.0.0.2'] });
    const relay = await openSlowLink({ host: '127.0.0.2', port: daemon.port }, 0);
    const warnings: Record<string, unknown>[] = [];
    const mapper = new Processor(new FaultyWork(), [relay.address], { logger: capturingLogger(warnings) as never });
    try {
      expect(await mapper.map(jobs(2000))).to.deep.equal(expected(2000));
      await waitFor(() => warnings.filter((w) => w.event === 'data-connection-failed').length === 2, 10_000, 'both attach attempts to fail');
      expect(await mapper.map(jobs(2000, 0, (i) => ({ i: i + 1 })))).to.deep.equal(expected(2001).slice(1));
      expect(mapper.stats()[0]!.directSlots).to.equal(0);
    } finally {
      await mapper.shutdown();
      await relay.close();
      await daemon.stop();
    }
  });

  it('loses no job when a data connection is cut mid-map: its batches are sent again, and the instance attaches anew', async function () {
    if (!(await canKillConnections())) {
      console.warn('      (skipped: `ss -K` cannot destroy sockets here: needs iproute2 and a kernel with SOCK_DESTROY)');
      this.skip();
    }
    await withDaemons(1, { workers: 2, args: ['--log-level', 'debug'] }, async ([daemon]) => {
      const mapper = new Processor(new FaultyWork(), [daemon!.address]);
      const events: string[] = [];
      mapper.on('worker-lost', () => events.push('worker-lost'));
      try {
        await mapper.map(jobs(100));
        await waitFor(() => mapper.stats()[0]!.directSlots === 2, 10_000, 'both instances to attach');
        const slot0 = () => daemon!.logs.find((l) => l.event === 'data-attached' && l.slot === 0);
        await waitFor(() => slot0() !== undefined, 5_000, 'the daemon to log slot 0 attaching');
        const peer = String(slot0()!.peer);
        const port = peer.slice(peer.lastIndexOf(':') + 1);
        const running = mapper.map(jobs(300, 3));
        await sleep(150);
        await killConnections(port);
        expect(await running).to.deep.equal(expected(300));
        // The daemon logs the loss before it tells the coordinator, but its log comes through its own pipe.
        await waitFor(() => daemon!.logs.some((l) => l.event === 'data-connection-lost' && l.slot === 0), 5_000, 'the daemon to log the lost data connection');
        expect(daemon!.logs.filter((l) => l.event === 'instance-died')).to.deep.equal([]);
        await waitFor(() => mapper.stats()[0]!.directSlots === 2, 10_000, 'slot 0 to attach again');
        expect(await mapper.map(jobs(1000))).to.deep.equal(expected(1000));
        expect(events).to.deep.equal([]);
      } finally {
        await mapper.shutdown();
      }
    });
  });

  it('keeps job time limits whichever path a batch takes', async () => {
    for (const args of [[], ['--no-data-connections']]) {
      await withDaemons(1, { workers: 1, args }, async ([daemon]) => {
        const mapper = new Processor(new FaultyWork(), [daemon!.address], { jobTimeoutMs: 400 });
        try {
          await mapper.map(jobs(10));
          if (args.length === 0) await waitFor(() => mapper.stats()[0]!.directSlots === 1, 10_000, 'the instance to attach');
          const error = await mapper.map(jobs(30, 0, (i) => (i === 12 ? { hang: true } : {}))).then(() => null, (e: unknown) => e);
          expect(error, args.join(' ') || 'data connection').to.be.instanceOf(JobTimeoutError);
          expect((error as JobTimeoutError).jobIndex).to.equal(12);
          await waitFor(() => mapper.workerCount === 1, 10_000, 'the replaced instance');
          expect(await mapper.map(jobs(50))).to.deep.equal(expected(50));
        } finally {
          await mapper.shutdown();
        }
      });
    }
  });

  describe('on the wire', () => {
    it('a data connection that breaks loses nothing: the slot is reported lost without blame, and offered again at a fresh port', async () => {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        const control = await protocolClient(daemon!.port);
        try {
          const done = await setUpSession(control, DOUBLE, 2);
          expect(done.data).to.have.length(2);
          const [first, second] = done.data as DataEndpoint[];
          const data0 = await attach(daemon!.port, 0, first!);
          const data1 = await attach(daemon!.port, 1, second!);
          expect(await runBatch(data0, 0, 1, [1, 2, 3])).to.deep.equal([2, 4, 6]);
          // Batches sent through the daemon port are answered on the data connection once one is attached.
          control.send({ type: 'jobs', slot: 1, batch: 2, payload: codec.pack([10, 20]) });
          const viaData = await data1.nextWhere((m) => m.type === 'results' && m.batch === 2);
          expect(codec.unpack((viaData as unknown as { payload: Buffer }).payload)).to.deep.equal([20, 40]);

          data0.connection.destroy();
          const lost = await control.next('slot-lost');
          expect(lost).to.include({ slot: 0, reason: 'disconnected' });
          expect(lost.batch).to.equal(undefined);
          const ready = await control.next('slot-ready');
          expect(ready.slot).to.equal(0);
          expect(ready.data!.port).to.not.equal(first!.port);
          await waitFor(() => daemon!.logs.some((l) => l.event === 'data-connection-lost' && l.slot === 0), 5_000, 'the daemon to log the lost data connection');

          // The old endpoint is gone; the new one serves the same instance (no setup again).
          expect(await tryConnect(first!.port)).to.equal('ECONNREFUSED');
          const again = await attach(daemon!.port, 0, ready.data!);
          expect(await runBatch(again, 0, 3, [5])).to.deep.equal([10]);
          expect(await runBatch(data1, 1, 4, [6])).to.deep.equal([12]);
          expect(daemon!.logs.filter((l) => l.event === 'instance-died')).to.deep.equal([]);
          again.connection.end();
          data1.connection.end();
        } finally {
          control.connection.destroy();
        }
      });
    });

    it('turns away a wrong token, another slot\'s token and a first message other than attach; the right one still attaches', async () => {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        const control = await protocolClient(daemon!.port);
        try {
          const done = await setUpSession(control, DOUBLE, 2);
          const [endpoint, other] = done.data as DataEndpoint[];

          const wrong = await protocolClient(endpoint!.port);
          wrong.send({ type: 'attach', slot: 0, token: new Uint8Array(32).fill(7) });
          expect((await wrong.next('error')).code).to.equal('MS_AUTH_FAILED');
          await wrong.closed();

          const swapped = await protocolClient(endpoint!.port);
          swapped.send({ type: 'attach', slot: 0, token: other!.token });
          expect((await swapped.next('error')).code).to.equal('MS_AUTH_FAILED');

          const jobsFirst = await protocolClient(endpoint!.port);
          jobsFirst.send({ type: 'jobs', slot: 0, batch: 1, payload: codec.pack([1]) });
          expect((await jobsFirst.next('error')).code).to.equal('MS_PROTOCOL');

          // Before attaching, frames are held to the pre-auth limit, checked from the length prefix.
          const raw = await rawConnect(endpoint!.port);
          raw.send(frameHeader(17 * 1024));
          await raw.closed();

          await waitFor(() => daemon!.logs.filter((l) => l.event === 'data-refused').length >= 3, 5_000, 'the daemon to log the three refusals');
          const data = await attach(daemon!.port, 0, endpoint!);
          expect(await runBatch(data, 0, 1, [21])).to.deep.equal([42]);
          // Attached, the port is closed to anyone else.
          expect(await tryConnect(endpoint!.port)).to.equal('ECONNREFUSED');
          data.connection.end();
        } finally {
          control.connection.destroy();
        }
      });
    });

    it('closes a data port nobody attached to after --handshake-timeout-ms; the daemon port still serves that slot', async () => {
      await withDaemons(1, { workers: 1, args: ['--handshake-timeout-ms', '500'] }, async ([daemon]) => {
        const control = await protocolClient(daemon!.port);
        try {
          const done = await setUpSession(control, DOUBLE, 1);
          const endpoint = done.data![0]!;
          await sleep(900);
          expect(await tryConnect(endpoint.port)).to.equal('ECONNREFUSED');
          expect(await runBatch(control, 0, 1, [4, 5])).to.deep.equal([8, 10]);
        } finally {
          control.connection.destroy();
        }
      });
    });

    it('takes data ports from --data-ports only; an instance that finds none free is served through the daemon port', async () => {
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const free = (probe.address() as AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      await withDaemons(1, { workers: 2, args: ['--data-ports', `${free}-${free}`] }, async ([daemon]) => {
        const control = await protocolClient(daemon!.port);
        try {
          const done = await setUpSession(control, DOUBLE, 2);
          const offered = done.data!.filter((d): d is DataEndpoint => d !== null);
          expect(offered.map((d) => d.port)).to.deep.equal([free]);
          const direct = done.data!.indexOf(offered[0]!);
          const data = await attach(daemon!.port, direct, offered[0]!);
          expect(await runBatch(data, direct, 1, [3])).to.deep.equal([6]);
          expect(await runBatch(control, 1 - direct, 2, [4])).to.deep.equal([8]);
          data.connection.end();
        } finally {
          control.connection.destroy();
        }
      });
    });

    it('refuses to start with a --data-ports that is not a range of ports', async () => {
      for (const range of ['7200', '7300-7200', '0-10', '65000-70000']) {
        const exit = await runDaemonToExit(['--port', '0', '--data-ports', range]);
        expect(exit.code, range).to.equal(1);
        expect((exit.logs.find((l) => l.event === 'start-failed') as { err: { code: string } }).err.code, range).to.equal('MS_DAEMON_CONFIG');
      }
    });

    it('offers no data endpoint with --no-data-connections', async () => {
      await withDaemons(1, { workers: 1, args: ['--no-data-connections'] }, async ([daemon]) => {
        const control = await protocolClient(daemon!.port);
        try {
          const done = await setUpSession(control, DOUBLE, 1);
          expect(done.data).to.equal(undefined);
          expect(await runBatch(control, 0, 1, [1])).to.deep.equal([2]);
          // A frame on the daemon port is not an attach either.
          control.connection.destroy();
          const raw = await rawConnect(daemon!.port);
          raw.sendMessage({ type: 'attach', slot: 0, token: new Uint8Array(32) });
          await raw.closed();
        } finally {
          control.connection.destroy();
        }
      });
    });
  });
});
