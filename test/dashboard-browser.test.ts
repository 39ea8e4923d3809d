import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Processor, type Settled } from 'mapscale';
import { Steady } from './fixtures/dashboard-work.js';
import { startDaemon, type TestDaemon } from './helpers/daemon.js';
import { within } from './helpers/bounded.js';
import { tempDir } from './helpers/files.js';

// What the functions given to page.waitForFunction use: they run in the page, and this project compiles without the DOM library.
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): PageElement | null;
}
declare const document: { querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): { length: number } };

const CHROMIUM = '/usr/bin/chromium';
const root = fileURLToPath(new URL('..', import.meta.url));
/** Where CI keeps what a run leaves behind (gitignored). */
export const SCREENSHOT = join(root, 'test-artifacts', 'dashboard.png');
const WAIT_MS = 20_000;

/** The Chromium Debian ships, headless, with a profile of its own and nothing that phones home. */
async function launchChromium(profile: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1100 },
    timeout: WAIT_MS,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

async function workerState(page: Page, address: string): Promise<string | null> {
  return page.locator(`#workers tr[data-worker="${address}"] td.state`).textContent({ timeout: WAIT_MS });
}

describe('dashboard in a real browser', function () {
  this.timeout(90_000);
  const daemons: TestDaemon[] = [];
  let context: BrowserContext | undefined;
  let mapper: Processor<number, number> | undefined;
  let profile: { path: string; remove(): void } | undefined;

  before(function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`      skipped: ${CHROMIUM} is not installed (apt-get install chromium)`);
      this.skip();
    }
  });

  afterEach(async () => {
    await mapper?.shutdown({ force: true }).catch(() => {});
    await context?.close().catch(() => {});
    await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
    profile?.remove();
  });

  it('shows a 20,000-job map rising on two daemons, one of them lost after SIGKILL and back once restarted, with no console error and no request off the host', async () => {
    daemons.push(await startDaemon({ workers: 2 }), await startDaemon({ workers: 2 }));
    const [victim, survivor] = daemons as [TestDaemon, TestDaemon];
    mapper = new Processor(new Steady(), [victim.address, survivor.address], { dashboard: { port: 0 } });
    const { url } = await within(mapper.dashboardAddress(), WAIT_MS, 'the dashboard listening');
    const origin = new URL(url).origin;

    profile = tempDir('mapscale-chromium-');
    context = await launchChromium(profile.path);
    const page = context.pages()[0] ?? await context.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) => {
      // The event stream is cut when the Processor shuts down: that is its end, not a fault.
      if (!request.url().endsWith('/events')) problems.push(`request failed: ${request.url()}`);
    });
    page.on('request', (request) => requests.push(request.url()));
    await page.goto(url, { timeout: WAIT_MS });

    const jobs = Array.from({ length: 20_000 }, (_, i) => i);
    const running = mapper.map(jobs, { settle: true });
    running.catch(() => {});

    // Two worker rows, each ready, and the map's row counting up.
    await page.waitForFunction(() => document.querySelectorAll('#workers tr[data-worker]').length === 2, null, { timeout: WAIT_MS });
    await page.waitForFunction(() => Number(document.querySelector('#runs tr.running')?.getAttribute('data-done') ?? 0) > 0, null, { timeout: WAIT_MS });
    const first = Number(await page.locator('#runs tr.running').getAttribute('data-done', { timeout: WAIT_MS }));
    await page.waitForFunction((before) => Number(document.querySelector('#runs tr.running')?.getAttribute('data-done') ?? 0) > before,
      first, { timeout: WAIT_MS });
    const second = Number(await page.locator('#runs tr.running').getAttribute('data-done', { timeout: WAIT_MS }));
    expect(second).to.be.greaterThan(first);
    expect(await page.locator('#runs tr.running').getAttribute('data-total')).to.equal('20000');
    expect(await workerState(page, victim.address)).to.equal('ready');
    expect(await workerState(page, survivor.address)).to.equal('ready');
    // The daemons' CPU and RSS, carried by their heartbeat answers.
    await page.waitForFunction((address) => {
      const row = document.querySelector(`#workers tr[data-worker="${address}"]`);
      return row !== null && /MiB|GiB/.test(row.querySelector('td.rss')?.textContent ?? '') && /%/.test(row.querySelector('td.cpu')?.textContent ?? '');
    }, survivor.address, { timeout: WAIT_MS });

    // A quarter of the way, so the chart and the task stream have something to show before the loss.
    await page.waitForFunction(() => Number(document.querySelector('#runs tr.running')?.getAttribute('data-done') ?? 0) >= 5_000, null, { timeout: WAIT_MS });
    expect(Number(await page.locator('#runs tr.running').getAttribute('data-done'))).to.be.below(20_000, 'the map must still be running when the daemon is killed');
    victim.child.kill('SIGKILL');
    await page.waitForFunction((address) => document.querySelector(`#workers tr[data-worker="${address}"] td.state`)?.textContent === 'lost',
      victim.address, { timeout: WAIT_MS });
    expect(await workerState(page, survivor.address)).to.equal('ready');
    await page.waitForFunction(() => /worker-lost/.test(document.querySelector('#events')?.textContent ?? ''), null, { timeout: WAIT_MS });
    // The task stream drew batches; the throughput chart is uPlot's.
    expect(await page.locator('#throughput .uplot canvas').count()).to.be.greaterThan(0);
    mkdirSync(join(root, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: WAIT_MS });
    console.log(`      screenshot: ${SCREENSHOT}`);

    const results = await within(running, 60_000, 'the map') as Settled<number>[];
    expect(results).to.have.length(20_000);
    expect(results.filter((r) => r.status === 'rejected')).to.have.length(4);
    // The end reaches the page: the map among the finished ones, its errors and output listed.
    await page.waitForFunction(() => document.querySelector('#runs tr.ended')?.getAttribute('data-done') === '20000', null, { timeout: WAIT_MS });
    await page.waitForFunction(() => /out of range/.test(document.querySelector('#errors')?.textContent ?? '') &&
      /job 3 says hello/.test(document.querySelector('#output')?.textContent ?? ''), null, { timeout: WAIT_MS });

    // The killed daemon, started again on its port, is taken back: its row is ready again and the events say so.
    daemons.push(await startDaemon({ workers: 2, args: ['--port', String(victim.port)] }));
    await page.waitForFunction((address) => document.querySelector(`#workers tr[data-worker="${address}"] td.state`)?.textContent === 'ready' &&
      /worker-rejoined/.test(document.querySelector('#events')?.textContent ?? ''), victim.address, { timeout: WAIT_MS });

    await within(mapper.shutdown(), 30_000, 'shutdown');
    const gone = await fetch(url).then(() => 'answered', (error: Error) => error.message);
    expect(gone, 'the dashboard is stopped by shutdown()').to.not.equal('answered');

    expect(problems).to.deep.equal([]);
    expect(requests.length).to.be.greaterThan(3);
    for (const request of requests) expect(new URL(request).origin, request).to.equal(origin);
  });
});
