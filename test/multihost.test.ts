import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { FleetAppConfig } from './fixtures/fleet-app.js';
import { describe as describeValue } from './fixtures/bundled/helper.js';
import { expected } from './fixtures/fault-work.js';
import { leftoverNamespaces, netnsUnavailable, withLan, type LanDaemon, type LanProcess, type TestHost, type TestLan } from './helpers/netns.js';
import { makeTestPki, type TestPki } from './helpers/tls.js';

/** The README's fleet example; it runs in the lan's app namespace, the coordinator's host. */
const FLEET_APP = fileURLToPath(new URL('./fixtures/fleet-app.js', import.meta.url));
const FLEET_APP_SOURCE = new URL('../test/fixtures/fleet-app.ts', import.meta.url);
const README = new URL('../README.md', import.meta.url);
/** The app's files (its sources and the compiled modules it runs): no worker host has them. */
const APP_FILES = [fileURLToPath(new URL('.', import.meta.url)), fileURLToPath(new URL('../test/', import.meta.url))];
const SHIPPED_MODULE = fileURLToPath(new URL('./fixtures/bundled/work.js', import.meta.url));

const APP_DEADLINE_MS = 45_000;
const OPENSSL_TIMEOUT_MS = 20_000;

interface Fleet {
  lan: TestLan;
  daemons: LanDaemon[];
  /** The app's copy of the secret. */
  secretFile: string;
}

/**
 * One daemon per host, each with its own copy of a fresh secret (mode 600) and none of the app's
 * files, listening on the host's lan address.
 */
async function startFleet(lan: TestLan, args: (host: TestHost) => string[] = () => []): Promise<Fleet> {
  const secret = randomBytes(24).toString('base64');
  const daemons = await Promise.all(lan.hosts.map((host) => lan.startDaemon(host, {
    secretFile: lan.writePrivateFile(host, 'secret', `${secret}\n`),
    hide: APP_FILES,
    args: args(host),
  })));
  return { lan, daemons, secretFile: lan.writePrivateFile('app', 'secret', `${secret}\n`) };
}

/** Runs the fleet app to its end (bounded); resolves to the results it printed and its stderr lines. */
async function runFleetApp(fleet: Fleet, config: Omit<FleetAppConfig, 'hosts' | 'secretFile'>, during?: (app: LanProcess) => Promise<void>): Promise<{ results: unknown[]; stderr: string[] }> {
  const app = fleet.lan.runApp(FLEET_APP, [JSON.stringify({ hosts: fleet.daemons.map((d) => d.address), secretFile: fleet.secretFile, ...config })]);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('deadline'), APP_DEADLINE_MS)));
  try {
    await during?.(app);
    const code = await Promise.race([app.exited, deadline]);
    expect(code, 'the fleet app\'s exit code').to.equal(0);
    return { results: JSON.parse(app.stdout.at(-1)!) as unknown[], stderr: app.stderr };
  } catch (error) {
    // What the app printed is what explains a failure here.
    (error as Error).message += `\n      fleet app stderr:\n${app.stderr.join('\n')}`;
    throw error;
  } finally {
    clearTimeout(timer);
    await fleet.lan.stop(app, 'SIGKILL');
  }
}

/** Every daemon served one session, opened from the app's lan address: the traffic crossed the bridge. */
function expectSessionsFromApp(fleet: Fleet): void {
  for (const daemon of fleet.daemons) {
    const sessions = daemon.logs.filter((l) => l.event === 'session-authenticated');
    expect(sessions.map((l) => String(l.peer).split(':')[0]), daemon.host.name).to.deep.equal([fleet.lan.app.ip]);
  }
}

/** A certificate for `host` signed by the test CA, naming only its lan address. */
function hostCertificate(pki: TestPki, host: TestHost): { certFile: string; keyFile: string } {
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: host.dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: OPENSSL_TIMEOUT_MS });
  writeFileSync(join(host.dir, 'tls.ext'), `basicConstraints=CA:FALSE\nsubjectAltName=IP:${host.ip}\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'tls.key', '-out', 'tls.csr', '-subj', `/CN=${host.name}`]);
  openssl(['x509', '-req', '-in', 'tls.csr', '-CA', pki.ca.certFile, '-CAkey', pki.ca.keyFile, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '2', '-out', 'tls.crt', '-extfile', 'tls.ext']);
  chmodSync(join(host.dir, 'tls.key'), 0o600);
  return { certFile: join(host.dir, 'tls.crt'), keyFile: join(host.dir, 'tls.key') };
}

describe('multi-host (network namespaces)', () => {
  it('runs the README\'s "Running a fleet" example word for word', () => {
    const section = readFileSync(README, 'utf8').split(/^## /m).find((s) => s.startsWith('Running a fleet'));
    expect(section, 'a "Running a fleet" section in README.md').to.be.a('string');
    const block = /```ts\n([\s\S]*?)```/.exec(section!)?.[1] ?? '';
    const body = block.slice(block.indexOf('const mapper'));
    expect(body).to.match(/^const mapper = new Processor/);
    expect(readFileSync(FLEET_APP_SOURCE, 'utf8')).to.include(body);
  });

  describe('a coordinator and daemons on separate hosts', function () {
    let available = false;

    before(function () {
      const reason = netnsUnavailable();
      if (reason) {
        console.warn(`      skipped: ${reason}`);
        this.skip();
      }
      available = true;
    });

    after(() => {
      if (available) expect(leftoverNamespaces(), 'network namespaces left behind').to.deep.equal([]);
    });

    it('maps across 3 hosts: every host takes jobs, results come back in job order', async () => {
      await withLan(3, async (lan) => {
        const fleet = await startFleet(lan);
        const n = 600;
        const { results } = await runFleetApp(fleet, { work: 'whereabouts', jobs: Array.from({ length: n }, (_, i) => i) });
        const answers = results as { value: number; host: string }[];
        expect(answers.map((r) => r.value)).to.deep.equal(expected(n));
        expect([...new Set(answers.map((r) => r.host))].sort()).to.deep.equal(['host-1', 'host-2', 'host-3']);
        expect(answers.map((r) => r.host)).not.to.include(hostname());
        expectSessionsFromApp(fleet);
      });
    });

    it('ships a module\'s class with its local and npm imports to hosts that do not have the app\'s files', async () => {
      await withLan(3, async (lan) => {
        const fleet = await startFleet(lan);
        expect(existsSync(SHIPPED_MODULE)).to.equal(true);
        for (const daemon of fleet.daemons) {
          // The daemon's own view of the file system: the module the class comes from is not there.
          expect(existsSync(`/proc/${daemon.pid}/root${SHIPPED_MODULE}`), daemon.host.name).to.equal(false);
        }
        const jobs = Array.from({ length: 90 }, (_, i) => (i % 3 === 0 ? `w${i}` : i % 3 === 1 ? i : String(i)));
        const { results } = await runFleetApp(fleet, { work: 'describer', jobs });
        expect(results).to.deep.equal(jobs.map((v) => `> ${describeValue(v)}`));
        for (const daemon of fleet.daemons) {
          expect(daemon.logs.filter((l) => l.event === 'bundle-received'), daemon.host.name).to.have.length(1);
        }
        expectSessionsFromApp(fleet);
      });
    });

    it('re-dispatches the jobs of a host whose link is cut mid-map: each result exactly once, in order', async () => {
      await withLan(3, async (lan) => {
        const fleet = await startFleet(lan);
        const victim = fleet.daemons[1]!;
        const n = 4000;
        const { results, stderr } = await runFleetApp(fleet, { work: 'faulty', jobs: { n, ms: 2 } }, async (app) => {
          await app.waitForLine((line) => Number(/^(\d+)\/\d+ done$/.exec(line)?.[1]) >= n / 5, 20_000, 'a fifth of the jobs done');
          lan.cutLink(victim.host);
        });
        expect(results).to.deep.equal(expected(n));
        expect(stderr.filter((line) => line.startsWith('worker lost:'))).to.deep.equal([`worker lost: ${victim.address} (HeartbeatTimeoutError)`]);
        // The daemon itself is fine: only its link went.
        expect(victim.process.child.exitCode).to.equal(null);
        expectSessionsFromApp(fleet);
      });
    });

    it('maps over TLS across hosts, each daemon\'s certificate checked against the address it is reached at', async () => {
      const pki = makeTestPki();
      try {
        await withLan(3, async (lan) => {
          const fleet = await startFleet(lan, (host) => {
            const { certFile, keyFile } = hostCertificate(pki, host);
            return ['--tls-cert', certFile, '--tls-key', keyFile];
          });
          for (const daemon of fleet.daemons) expect(daemon.logs.find((l) => l.event === 'listening')?.tls, daemon.host.name).to.equal(true);
          const n = 300;
          const { results } = await runFleetApp(fleet, { work: 'whereabouts', jobs: Array.from({ length: n }, (_, i) => i), caFile: pki.ca.certFile });
          const answers = results as { value: number; host: string }[];
          expect(answers.map((r) => r.value)).to.deep.equal(expected(n));
          expect([...new Set(answers.map((r) => r.host))].sort()).to.deep.equal(['host-1', 'host-2', 'host-3']);
          expectSessionsFromApp(fleet);
        });
      } finally {
        pki.remove();
      }
    });
  });
});
