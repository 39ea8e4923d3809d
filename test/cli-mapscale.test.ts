import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { DEFAULT_PROCESSOR_OPTIONS } from 'mapscale';
import { withDaemons, waitFor } from './helpers/daemon.js';
import { filesStartingWith, tempDir } from './helpers/files.js';

const BIN = fileURLToPath(new URL('../node_modules/.bin/mapscale', import.meta.url));
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const WORK = join(FIXTURES, 'cli-work.js');
const RUN_DEADLINE_MS = 30_000;

interface CliOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  /** Written to stdin, which is then closed (unless `keepStdinOpen`). */
  input?: string;
  /** Leaves stdin open, so the map never runs out of jobs by itself. */
  keepStdinOpen?: boolean;
  cwd?: string;
  /** Its own process group, so a test can signal the group as a terminal's Ctrl-C does. */
  detached?: boolean;
  /** Called on each stdout chunk while the CLI runs. */
  onStdout?: (child: ChildProcess, stdoutSoFar: string) => void;
}

/** Runs the installed `mapscale` bin; SIGKILLs it (and fails) past the deadline. */
function runCli(args: string[], options: CliOptions = {}): Promise<CliOutcome> {
  const env = { ...process.env };
  delete env.MAPSCALE_SECRET;
  const child = spawn(BIN, args, { cwd: options.cwd, env, detached: options.detached, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    options.onStdout?.(child, stdout);
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin!.on('error', () => {}); // the CLI may exit (bad usage) before reading its input
  if (options.input !== undefined) child.stdin!.write(options.input);
  if (!options.keepStdinOpen) child.stdin!.end();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mapscale ${args.join(' ')} did not exit within ${RUN_DEADLINE_MS} ms; stderr: ${stderr}`));
    }, RUN_DEADLINE_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      child.stdin!.destroy();
      resolve({ code, stdout, stderr });
    });
  });
}

const lines = (values: unknown[]): string => values.map((v) => JSON.stringify(v) + '\n').join('');
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * What the Recorder fixture left in `dir`: one cleanup per setup means shutdown() ran to the end;
 * the pids are those of the daemons its instances ran in.
 */
function recorded(dir: string): { setups: number; cleanups: number; pids: number[] } {
  const setups = filesStartingWith(dir, 'setup-');
  const pids = [...new Set(setups.map((name) => Number(readFileSync(join(dir, name), 'utf8'))))];
  return { setups: setups.length, cleanups: filesStartingWith(dir, 'cleanup-').length, pids };
}

async function expectLocalDaemonsGone(pids: number[]): Promise<void> {
  expect(pids).to.have.length.greaterThan(0);
  await waitFor(() => pids.every((pid) => !isAlive(pid)), 10_000, 'the local daemon to exit');
}

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('mapscale CLI (end to end)', () => {
  it('mapscale run --help documents every flag, with the library\'s defaults', async () => {
    const { code, stdout } = await runCli(['run', '--help'], { input: '' });
    expect(code).to.equal(0);
    for (const flag of ['--module', '--export', '--args', '--workers', '--connect', '--jobs', '--secret-file', '--settle',
      '--unordered', '--job-timeout-ms', '--chunk-size', '--max-job-retries', '--connect-timeout-ms', '--window', '--progress', '--log-level', '--dashboard', '--dashboard-host']) {
      expect(stdout).to.include(flag);
    }
    expect(stdout).to.include(`[default: ${DEFAULT_PROCESSOR_OPTIONS.connectTimeoutMs}]`);
    expect(stdout).to.include(`[default: ${DEFAULT_PROCESSOR_OPTIONS.maxJobRetries}]`);
    expect(stdout).to.include(`[default: ${DEFAULT_PROCESSOR_OPTIONS.window}]`);
    expect(stdout).to.include('Exit codes');
    const top = await runCli(['--help'], { input: '' });
    expect(top.code).to.equal(0);
    expect(top.stdout).to.include('mapscale run');
  });

  it('maps a jobs file over local workers: one JSON line per job, in job order, and no progress bar when stderr is not a terminal', async () => {
    const dir = tempDir();
    try {
      const jobs = range(300);
      // Blank lines (and a CRLF one) are skipped, not jobs.
      writeFileSync(join(dir.path, 'jobs.jsonl'), jobs.map((j) => (j % 50 === 0 ? `${j}\r\n\n` : `${j}\n`)).join('') + '\n');
      const { code, stdout, stderr } = await runCli(
        ['run', '--module', './cli-work.js', '--export', 'Power', '--args', '[2]', '--workers', '2', '--chunk-size', '7', '--jobs', join(dir.path, 'jobs.jsonl')],
        { cwd: FIXTURES, input: '' },
      );
      expect(stderr).to.equal('');
      expect(code).to.equal(0);
      expect(stdout).to.equal(lines(jobs.map((j) => j ** 2)));
    } finally {
      dir.remove();
    }
  });

  it('stops its local workers at the end: every instance cleaned up, the daemon process gone', async () => {
    const dir = tempDir();
    try {
      const { code, stdout } = await runCli(['run', '-m', WORK, '-e', 'Recorder', '--args', JSON.stringify([dir.path, 0]), '-w', '2'],
        { input: lines(range(20)) });
      expect(code).to.equal(0);
      expect(stdout).to.equal(lines(range(20)));
      const { setups, cleanups, pids } = recorded(dir.path);
      expect(setups).to.equal(2);
      expect(cleanups).to.equal(setups);
      await expectLocalDaemonsGone(pids);
    } finally {
      dir.remove();
    }
  });

  it('reads jobs from stdin and maps them over a running daemon, with the secret from --secret-file', async () => {
    const secrets = tempDir();
    try {
      writeFileSync(join(secrets.path, 'secret'), 'cli-test-secret\n', { mode: 0o600 });
      await withDaemons(1, { workers: 3, secret: 'cli-test-secret' }, async ([daemon]) => {
        const { code, stdout, stderr } = await runCli(
          ['run', '-m', pathToFileURL(WORK).href, '-e', 'Power', '--args', '[3]', '--connect', daemon!.address, '--secret-file', join(secrets.path, 'secret')],
          { input: '\n' + lines(range(100)) + '\n\n' },
        );
        expect(stderr).to.equal('');
        expect(code).to.equal(0);
        expect(stdout).to.equal(lines(range(100).map((j) => j ** 3)));
      });
    } finally {
      secrets.remove();
    }
  });

  it('runs a plain function export, and the default export when --export is not given', async () => {
    const named = await runCli(['run', '-m', WORK, '-e', 'double', '-w', '1'], { input: lines([1, 2, 3]) });
    expect(named.stderr).to.equal('');
    expect(named.code).to.equal(0);
    expect(named.stdout).to.equal(lines([2, 4, 6]));
    const byDefault = await runCli(['run', '-m', WORK, '-w', '1', '--jobs', '-'], { input: lines([1, 2, 3]) });
    expect(byDefault.code).to.equal(0);
    expect(byDefault.stdout).to.equal(lines([2, 3, 4]));
  });

  it('with no jobs prints nothing and exits 0', async () => {
    const { code, stdout } = await runCli(['run', '-m', WORK, '-e', 'double', '-w', '1'], { input: '\n\n' });
    expect(code).to.equal(0);
    expect(stdout).to.equal('');
  });

  it('prints values JSON lacks as documented: BigInt as a string, Map as entries, Set, typed arrays and bytes as arrays', async () => {
    const kinds = ['bigint', 'map', 'float64', 'bigint64', 'bytes', 'date', 'undefined', 'nan', 'other'];
    const { code, stdout } = await runCli(['run', '-m', WORK, '-e', 'Shapes', '-w', '1'], { input: lines(kinds) });
    expect(code).to.equal(0);
    expect(stdout.split('\n')).to.deep.equal([
      '"1180591620717411303424"',
      '[["a",1],[2,["b"]]]',
      '[1.5,-2]',
      '["-5"]',
      '[1,2,255]',
      '"1970-01-01T00:00:00.000Z"',
      'null',
      'null',
      '{"kind":"other","nested":["1",[7]]}',
      '',
    ]);
  });

  it('--unordered prints every result exactly once', async () => {
    const { code, stdout } = await runCli(['run', '-m', WORK, '-e', 'Power', '--args', '[2]', '-w', '3', '--chunk-size', '5', '--unordered'],
      { input: lines(range(200)) });
    expect(code).to.equal(0);
    const values = stdout.trimEnd().split('\n').map(Number);
    expect(values.sort((a, b) => a - b)).to.deep.equal(range(200).map((j) => j ** 2));
  });

  it('--settle prints one settled line per job, in job order, and exits 1 when any job failed', async () => {
    const jobs = range(8);
    const { code, stdout, stderr } = await runCli(['run', '-m', WORK, '-e', 'Refuses', '--args', '[[2, 5]]', '-w', '2', '--settle'],
      { input: lines(jobs) });
    expect(code).to.equal(1);
    expect(stderr).to.include('2 job(s) failed');
    const settled = stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, any>);
    expect(settled).to.have.length(jobs.length);
    settled.forEach((s, i) => {
      if (i === 2 || i === 5) {
        expect(s.status).to.equal('rejected');
        expect(s.reason).to.include({ name: 'JobError', code: 'MS_JOB_FAILED', jobIndex: i });
        expect(s.reason.message).to.be.a('string');
      } else {
        expect(s).to.deep.equal({ status: 'fulfilled', value: i + 1 });
      }
    });
  });

  it('a failing job exits 1, names its code and job index on stderr, and still cleans up every worker', async () => {
    const dir = tempDir();
    try {
      const { code, stdout, stderr } = await runCli(
        ['run', '-m', WORK, '-e', 'Recorder', '--args', JSON.stringify([dir.path, 0, 4]), '-w', '2', '--chunk-size', '1'],
        { input: lines(range(10)) },
      );
      expect(code).to.equal(1);
      expect(stderr).to.match(/MS_JOB_FAILED, job 4:/);
      expect(stderr).to.include('E_REFUSED');
      // What was printed is a prefix of the results: nothing of job 4 or after it.
      expect(lines(range(4))).to.include(stdout);
      const { setups, cleanups, pids } = recorded(dir.path);
      expect(cleanups).to.equal(setups);
      await expectLocalDaemonsGone(pids);
    } finally {
      dir.remove();
    }
  });

  it('a malformed jobs line exits 2 and names the file and the line', async () => {
    const dir = tempDir();
    try {
      const file = join(dir.path, 'jobs.jsonl');
      writeFileSync(file, '1\n\n{"oops": \n3\n');
      const { code, stderr } = await runCli(['run', '-m', WORK, '-e', 'double', '-w', '1', '--jobs', file], { input: '' });
      expect(code).to.equal(2);
      expect(stderr).to.include(`${file}, line 3: not a JSON value`);
    } finally {
      dir.remove();
    }
  });

  it('bad usage exits 2 with a message that says what is wrong, before any worker starts', async () => {
    const cases: [string[], string][] = [
      [[], 'give a command'],
      [['run'], 'module'],
      [['run', '-m', WORK, '--bogus-flag'], 'bogus-flag'],
      [['run', '-m', WORK, '-e', 'Power', '--args', '2'], '--args must be a JSON array'],
      [['run', '-m', WORK, '-e', 'Power', '--args', '[2]', '--workers', '0'], '--workers'],
      [['run', '-m', WORK, '-e', 'Power', '--args', '[2]', '--chunk-size', '1.5'], '--chunk-size'],
      [['run', '-m', WORK, '-e', 'Missing'], 'no export "Missing"; it exports: Impostor, Power, Recorder'],
      [['run', '-m', WORK, '-e', 'Impostor'], 'does not extend WorkFunction'],
      [['run', '-m', WORK, '-e', 'double', '--args', '[1]'], '--args is for a WorkFunction subclass'],
      [['run', '-m', join(FIXTURES, 'no-such-module.js')], 'cannot import --module'],
      [['run', '-m', WORK, '-e', 'double', '--jobs', join(FIXTURES, 'no-such-jobs.jsonl')], 'ENOENT'],
      [['run', '-m', WORK, '-e', 'double', '--connect', 'no-port-here'], 'no-port-here'],
    ];
    const outcomes = await Promise.all(cases.map(([args]) => runCli(args, { input: '1\n' })));
    outcomes.forEach((outcome, i) => {
      const [args, fragment] = cases[i]!;
      expect(outcome.code, `mapscale ${args.join(' ')}: ${outcome.stderr}`).to.equal(2);
      expect(outcome.stderr, `mapscale ${args.join(' ')}`).to.include(fragment);
      expect(outcome.stdout).to.equal('');
    });
  });

  it('a daemon nobody answers for exits 1 with MS_CONNECT_FAILED', async () => {
    const port = await closedPort();
    const { code, stderr } = await runCli(['run', '-m', WORK, '-e', 'double', '--connect', `127.0.0.1:${port}`, '--log-level', 'silent'],
      { input: lines([1]) });
    expect(code).to.equal(1);
    expect(stderr).to.include('MS_CONNECT_FAILED');
  });

  it('--progress draws the progress on stderr (forced here, as stderr is a pipe)', async () => {
    const { code, stdout, stderr } = await runCli(['run', '-m', WORK, '-e', 'double', '-w', '1', '--progress'], { input: lines(range(20)) });
    expect(code).to.equal(0);
    expect(stdout).to.equal(lines(range(20).map((j) => j * 2)));
    expect(stderr).to.match(/\[=+\] 100% 20\/20 jobs \| [\d.]+ jobs\/s/);
  });

  it('SIGINT to the process group (Ctrl-C) mid-map: stops, cleans up every local worker, exits 130', async () => {
    const dir = tempDir();
    try {
      let signalled = false;
      const { code, stderr } = await runCli(['run', '-m', WORK, '-e', 'Recorder', '--args', JSON.stringify([dir.path, 20]), '-w', '2'], {
        detached: true,
        onStdout: (child) => {
          if (signalled) return;
          signalled = true;
          process.kill(-child.pid!, 'SIGINT');
        },
        input: lines(range(1000)),
        keepStdinOpen: true,
      });
      expect(signalled).to.equal(true);
      expect(code).to.equal(130);
      expect(stderr).to.include('SIGINT');
      const { setups, cleanups, pids } = recorded(dir.path);
      expect(setups).to.be.greaterThan(0);
      expect(cleanups).to.equal(setups);
      await expectLocalDaemonsGone(pids);
    } finally {
      dir.remove();
    }
  });

  it('SIGINT mid-map against a daemon: its instances are cleaned up, and the daemon keeps serving', async () => {
    const dir = tempDir();
    try {
      await withDaemons(1, { workers: 2 }, async ([daemon]) => {
        let signalled = false;
        const stopped = await runCli(['run', '-m', WORK, '-e', 'Recorder', '--args', JSON.stringify([dir.path, 20]), '-c', daemon!.address], {
          onStdout: (child) => {
            if (signalled) return;
            signalled = true;
            child.kill('SIGINT');
          },
          input: lines(range(1000)),
          keepStdinOpen: true,
        });
        expect(stopped.code).to.equal(130);
        const { setups, cleanups } = recorded(dir.path);
        expect(setups).to.equal(2);
        expect(cleanups).to.equal(2);
        const again = await runCli(['run', '-m', WORK, '-e', 'double', '-c', daemon!.address], { input: lines([21]) });
        expect(again.code).to.equal(0);
        expect(again.stdout).to.equal(lines([42]));
      });
    } finally {
      dir.remove();
    }
  });
});
