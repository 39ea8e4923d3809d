import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { DashboardListenError, InvalidOptionError, Processor } from 'mapscale';
import { ProtocolError, validateMessage } from '@mapscale/protocol';
import { DashboardRecorder, RECORDER_LIMITS } from '../packages/coordinator/dist/dashboard/recorder.js';
import { SnapshotBuilder, SNAPSHOT_LIMITS, type DashboardSource } from '../packages/coordinator/dist/dashboard/snapshot.js';
import { DaemonLoad } from '../packages/coordinator/dist/session/daemon-load.js';
import type { RunView } from '../packages/coordinator/dist/map-run.js';
import type { WorkerStats } from 'mapscale';
import { Power } from './fixtures/work-functions.js';
import { within } from './helpers/bounded.js';
import { waitFor } from './helpers/daemon.js';

const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale', import.meta.url));
const WORK = fileURLToPath(new URL('./fixtures/cli-work.js', import.meta.url));

/** A GET with a Host header of the test's choosing (fetch does not let one set it). */
function get(port: number, path: string, host = `127.0.0.1:${port}`, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return within(new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
        // An event stream never ends by itself: its first event is enough.
        if (path === '/events' && body.includes('\n\n', body.indexOf('data:'))) res.destroy();
      });
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  }), 10_000, `GET ${path}`);
}

function occupiedPort(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

describe('dashboard', () => {
  it('serves its page, uPlot and an event stream on loopback, answers only to its own Host names, and is stopped by shutdown()', async () => {
    const mapper = new Processor(new Power(2), 1, { dashboard: { port: 0 } });
    try {
      const { host, port, url } = await within(mapper.dashboardAddress(), 15_000, 'the dashboard');
      expect(host).to.equal('127.0.0.1');
      expect(url).to.equal(`http://127.0.0.1:${port}/`);
      expect(await mapper.map([1, 2, 3])).to.deep.equal([1, 4, 9]);
      const page = await get(port, '/');
      expect(page.status).to.equal(200);
      expect(page.headers['content-security-policy']).to.include("default-src 'self'");
      expect(page.body).to.include('/vendor/uPlot.iife.min.js');
      const uplot = await get(port, '/vendor/uPlot.iife.min.js');
      expect(uplot.status).to.equal(200);
      expect(uplot.body).to.include('uPlot');
      // Ticks come every 400 ms: the next one after the map has the worker ready.
      await waitFor(async () => JSON.parse((await get(port, '/snapshot')).body).workers[0]?.state === 'ready', 10_000, 'a tick with the worker ready');
      const events = await get(port, '/events');
      expect(events.headers['content-type']).to.equal('text/event-stream');
      const first = JSON.parse(events.body.slice(events.body.indexOf('data: ') + 6).split('\n\n')[0]!);
      expect(first.reset).to.equal(true);
      expect(first.workers).to.have.length(1);
      expect(first.workers[0].state).to.equal('ready');
      expect((await get(port, '/', 'localhost:' + port)).status).to.equal(200);
      // A page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) is refused.
      expect((await get(port, '/snapshot', `attacker.example:${port}`)).status).to.equal(421);
      expect((await get(port, '/nothing-here')).status).to.equal(404);
      expect((await get(port, '/', undefined, 'POST')).status).to.equal(405);
      await within(mapper.shutdown(), 30_000, 'shutdown');
      const after = await get(port, '/').then(() => 'answered', (error: NodeJS.ErrnoException) => error.code);
      expect(after).to.equal('ECONNREFUSED');
    } finally {
      await mapper.shutdown({ force: true }).catch(() => {});
    }
  });

  it('a port in use fails the first map and dashboardAddress() with DashboardListenError, at once, and shutdown() still works', async () => {
    const { server, port } = await occupiedPort();
    const mapper = new Processor(new Power(2), 1, { dashboard: { port } });
    try {
      const error = await within(mapper.map([1]).then(() => null, (e: unknown) => e), 15_000, 'the map');
      expect(error).to.be.instanceOf(DashboardListenError);
      expect((error as DashboardListenError).code).to.equal('MS_DASHBOARD_LISTEN_FAILED');
      expect((error as DashboardListenError).port).to.equal(port);
      expect((error as Error).message).to.include('in use');
      const again = await mapper.dashboardAddress().then(() => null, (e: unknown) => e);
      expect(again).to.equal(error);
      await within(mapper.shutdown(), 30_000, 'shutdown');
    } finally {
      await mapper.shutdown({ force: true }).catch(() => {});
      server.close();
    }
  });

  it('checks its options: a bad port or host is an InvalidOptionError from the constructor; no dashboard, no address', async () => {
    for (const dashboard of [{ port: -1 }, { port: 70_000 }, { port: 1.5 }, { port: '80' }, { port: 0, host: '' }, 'yes']) {
      expect(() => new Processor(new Power(2), 1, { dashboard } as never), JSON.stringify(dashboard)).to.throw(InvalidOptionError);
    }
    const mapper = new Processor(new Power(2), 1);
    try {
      expect(await mapper.dashboardAddress().then(() => null, (e: unknown) => e)).to.be.instanceOf(InvalidOptionError);
    } finally {
      await mapper.shutdown();
    }
  });

  it('keeps every message bounded whatever the job count: 1,000,000 jobs in 200,000 batches, 100,000 failures, 10,000 long output lines', () => {
    const recorder = new DashboardRecorder();
    const run = { id: 1, status: 'running', done: 0, fetched: 1_000_000, exhausted: true } as unknown as RunView;
    const workers: WorkerStats[] = Array.from({ length: 1_000 }, (_, i) => ({
      address: `10.0.${i >> 8}.${i & 255}:7100`, state: 'ready', slots: 8, jobs: 1_000, busyMs: 1_000, failures: 100, losses: 0, reconnects: 0,
      roundTripMs: 0.5, credit: 2, directSlots: 8, daemonCpuPercent: 180, daemonRssBytes: 2 ** 28,
    }));
    const source: DashboardSource = { status: () => 'running', runs: () => [run], workers: () => workers };
    const builder = new SnapshotBuilder(source, recorder);
    const sizes: number[] = [];
    for (let tick = 0; tick < 10; tick++) {
      for (let batch = 0; batch < 20_000; batch++) recorder.batchAnswered(workers[batch % 1_000]!.address, batch % 8, run, 5, 2);
      const failures = Array.from({ length: 10_000 }, (_, i) => ({ run, jobIndex: tick * 10_000 + i, slotId: 1, kind: 'error' as const, error: { name: 'Error', message: 'x'.repeat(5_000) } }));
      recorder.jobsFailed(failures, () => 'w:1');
      for (let line = 0; line < 1_000; line++) recorder.workerOutput('w:1', { type: 'output', slot: 0, stream: 'stdout', phase: 'call', text: 'y'.repeat(5_000) }, line);
      (run as { done: number }).done += 100_000;
      sizes.push(JSON.stringify(builder.tick(Date.now() + tick * 400)).length);
    }
    const reset = builder.reset();
    expect(reset.tasks.length).to.be.at.most(SNAPSHOT_LIMITS.tasksPerTick);
    expect(reset.errors.length).to.equal(SNAPSHOT_LIMITS.errorsPerTick);
    expect(reset.output.every((o) => o.text.length <= RECORDER_LIMITS.textChars + 1)).to.equal(true);
    expect(reset.workers.length).to.equal(SNAPSHOT_LIMITS.workers);
    expect(reset.workersTotal).to.equal(1_000);
    expect(reset.errorsTotal).to.equal(100_000);
    expect(reset.runs[0]!.done).to.equal(1_000_000);
    // The same cap for the first tick and the tenth: the size follows the limits, not the work.
    const limit = 150_000;
    for (const size of sizes) expect(size).to.be.below(limit);
    expect(JSON.stringify(reset).length).to.be.below(limit);
    expect(Math.max(...sizes) - Math.min(...sizes)).to.be.below(20_000);
  });

  it('lists a map that started and ended between two ticks among the ended ones, with its failures', () => {
    const recorder = new DashboardRecorder();
    const builder = new SnapshotBuilder({ status: () => 'running', runs: () => [], workers: () => [] }, recorder);
    builder.tick();
    const quick = { id: 7, status: 'succeeded', done: 12, fetched: 12, exhausted: true } as unknown as RunView;
    recorder.batchAnswered('w:1', 0, quick, 12, 3);
    recorder.jobsFailed([{ run: quick, jobIndex: 4, slotId: 1, kind: 'error', error: { name: 'Error', message: 'no' } }], () => 'w:1');
    const tick = builder.tick();
    expect(tick.runs).to.deep.equal([]);
    expect(tick.finished).to.have.length(1);
    expect(tick.finished[0]).to.include({ id: 7, status: 'succeeded', done: 12, total: 12, failed: 1 });
    expect(tick.tasks).to.deep.include({ instance: 'w:1#0', run: 7, jobs: 12, start: tick.tasks[0]!.start, end: tick.tasks[0]!.end });
    expect(builder.tick().finished).to.have.length(1);
  });

  it('pong carries the daemon\'s CPU time and RSS as optional fields: absent is fine (an old daemon), malformed is a ProtocolError', () => {
    expect(validateMessage({ type: 'pong', seq: 1 })).to.deep.equal({ type: 'pong', seq: 1 });
    expect(validateMessage({ type: 'pong', seq: 1, cpuUs: 5, rssBytes: 7 })).to.include({ cpuUs: 5, rssBytes: 7 });
    expect(() => validateMessage({ type: 'pong', seq: 1, cpuUs: '5' })).to.throw(ProtocolError);
    const load = new DaemonLoad();
    load.observe({});
    load.observe({ cpuUs: Number.NaN, rssBytes: -1 });
    expect(load.cpuPercent).to.equal(undefined);
    expect(load.rssBytes).to.equal(undefined);
  });

  it('mapscale run --dashboard 0 prints where the page is; a port in use fails the run with MS_DASHBOARD_LISTEN_FAILED', async () => {
    const run = promisify(execFile);
    const ok = run(BIN, ['run', '-m', WORK, '-e', 'Power', '--args', '[2]', '--workers', '1', '--dashboard', '0', '--jobs', '-'], { timeout: 30_000 });
    ok.child.stdin!.end('1\n2\n');
    const { stdout, stderr } = await ok;
    expect(stdout).to.equal('1\n4\n');
    expect(stderr).to.match(/dashboard at http:\/\/127\.0\.0\.1:\d+\//);
    const { server, port } = await occupiedPort();
    try {
      const taken = run(BIN, ['run', '-m', WORK, '-e', 'Power', '--args', '[2]', '--workers', '1', '--dashboard', String(port), '--jobs', '-'], { timeout: 30_000 });
      taken.child.stdin!.end('1\n');
      const failed = await taken.then(() => null, (e: { code: number; stderr: string }) => e);
      expect(failed?.code).to.equal(1);
      expect(failed?.stderr).to.include('MS_DASHBOARD_LISTEN_FAILED');
    } finally {
      server.close();
    }
  });
});
