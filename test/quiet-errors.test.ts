import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { humanLine } from '../packages/coordinator/dist/log-lines.js';
import { withDaemons } from './helpers/daemon.js';

const APP = fileURLToPath(new URL('./fixtures/quiet-app.js', import.meta.url));
const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale', import.meta.url));
const WORK = fileURLToPath(new URL('./fixtures/cli-work.js', import.meta.url));
const DEADLINE_MS = 30_000;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: Record<string, unknown>[];
}

/** Runs a child to its end (SIGKILL and a failure past the deadline); `onLine` sees each stdout line. */
function runChild(command: string, args: string[], env: Record<string, string> = {}, onLine?: (line: Record<string, unknown>, child: ChildProcess) => void): Promise<Outcome> {
  const childEnv: Record<string, string | undefined> = { ...process.env, ...env };
  delete childEnv.MAPSCALE_SECRET;
  const child = spawn(command, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const lines: Record<string, unknown>[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const before = stdout.split('\n').length - 1;
    stdout += chunk;
    for (const text of stdout.split('\n').slice(before, -1)) {
      try {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        onLine?.(line, child);
      } catch {
        // not a JSON line
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not exit within ${DEADLINE_MS} ms; stderr: ${stderr}`));
    }, DEADLINE_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, lines });
    });
  });
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('what the app is told is not printed on stderr too', () => {
  it('a wrong secret: the app catches AuthenticationError, stderr stays empty', async () => {
    await withDaemons(1, { secret: 'the daemon secret' }, async ([daemon]) => {
      const outcome = await runChild(process.execPath, [APP, 'wrong-secret'], { DAEMONS: daemon!.address });
      expect(outcome.lines).to.deep.include({ caught: 'AuthenticationError', code: 'MS_AUTH_FAILED' });
      expect(outcome.stderr).to.equal('');
      expect(outcome.code).to.equal(0);
    });
  });

  it('an unreachable daemon: the app catches ConnectError, stderr stays empty', async () => {
    const outcome = await runChild(process.execPath, [APP, 'unreachable'], { DAEMONS: `127.0.0.1:${await closedPort()}` });
    expect(outcome.lines).to.deep.include({ caught: 'ConnectError', code: 'MS_CONNECT_FAILED' });
    expect(outcome.stderr).to.equal('');
  });

  it('a failing setup(): the app catches SetupError, stderr stays empty', async () => {
    const outcome = await runChild(process.execPath, [APP, 'setup-fails']);
    expect(outcome.lines).to.deep.include({ caught: 'SetupError', code: 'MS_SETUP_FAILED' });
    expect(outcome.stderr).to.equal('');
  });

  it('a daemon lost mid-run: the app gets worker-lost, stderr stays empty', async () => {
    await withDaemons(2, {}, async (daemons) => {
      const outcome = await runChild(process.execPath, [APP, 'worker-lost'], { DAEMONS: daemons.map((d) => d.address).join(',') }, (line) => {
        if (line.ready) daemons[0]!.child.kill('SIGKILL');
      });
      expect(outcome.lines, outcome.stdout + outcome.stderr).to.deep.include({ lost: daemons[0]!.address, reason: 'ConnectionClosedError' });
      expect(outcome.lines).to.deep.include({ results: [16, 25] });
      expect(outcome.stderr).to.equal('');
    });
  });

  it('an app that gives a logger gets the events from it, as JSON', async () => {
    const port = await closedPort();
    const outcome = await runChild(process.execPath, [APP, 'logger'], { DAEMONS: `127.0.0.1:${port}` });
    expect(outcome.lines).to.deep.include({ caught: 'ConnectError', code: 'MS_CONNECT_FAILED' });
    const logged = outcome.lines.find((l) => l.event === 'connect-failed');
    expect(logged, outcome.stdout).to.include({ component: 'engine', worker: `127.0.0.1:${port}`, level: 30 });
    expect(outcome.stderr).to.equal('');
  });

  it('the mapscale CLI logs readable lines on a terminal and JSON lines otherwise', async function () {
    const port = await closedPort();
    const args = ['run', '--module', WORK, '--export', 'double', '--connect', `127.0.0.1:${port}`, '--connect-timeout-ms', '2000', '--log-level', 'info', '--jobs', '/dev/null'];
    const piped = await runChild(BIN, args);
    expect(piped.code).to.equal(1);
    const json = piped.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(json.some((l) => l.event === 'connect-failed'), piped.stderr).to.equal(true);
    // On a terminal: script(1) gives the CLI a pseudo-terminal (stdout and stderr both on it).
    const quoted = [BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
    const tty = await runChild('script', ['-qec', quoted, '/dev/null']);
    expect(tty.stdout, tty.stdout).to.match(/^mapscale info: connect-failed \(127\.0\.0\.1:\d+\): /m);
    expect(tty.stdout).to.not.include('"event":"connect-failed"');
  });

  it('reads a log record as one line: event, worker, reason, the rest, the hint', () => {
    expect(humanLine({ level: 40, time: 1, pid: 2, hostname: 'h', component: 'worker-session', worker: '10.0.0.1:7100', event: 'data-connection-failed', slot: 0, reason: 'connect ECONNREFUSED', hint: 'its jobs go through the daemon port instead' }))
      .to.equal('mapscale warning: data-connection-failed (10.0.0.1:7100): connect ECONNREFUSED [slot=0] — its jobs go through the daemon port instead\n');
  });
});
