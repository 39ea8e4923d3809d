import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WORKER_CLI_PATH } from '@mapscale/worker-server';

/** A real `mapscale-worker` child process on a free loopback port, as a test starts and stops it. */
export interface TestDaemon {
  readonly address: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Every JSON log line it printed so far. */
  readonly logs: Record<string, unknown>[];
  /** SIGTERM and wait for exit (SIGKILL after a deadline); resolves to the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export interface TestDaemonOptions {
  workers?: number;
  secret?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /**
   * Directories the daemon must not see: it runs in a mount namespace of its own with an empty
   * tmpfs over each (needs root, as CI has).
   */
  hide?: string[];
  /** A small disk: a tmpfs of `bytes` mounted over `dir` (an existing directory), in a mount namespace as for `hide`. */
  smallDisk?: { dir: string; bytes: number };
}

const START_DEADLINE_MS = 15_000;
const STOP_DEADLINE_MS = 15_000;
const running = new Set<TestDaemon>();

export function startDaemon(options: TestDaemonOptions = {}): Promise<TestDaemon> {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  delete env.MAPSCALE_SECRET;
  if (options.secret !== undefined) env.MAPSCALE_SECRET = options.secret;
  const hide = options.hide ?? [];
  if (hide.length > 0) env.MAPSCALE_TEST_HIDE = hide.join(':');
  if (options.smallDisk) Object.assign(env, { MAPSCALE_TEST_DISK: options.smallDisk.dir, MAPSCALE_TEST_DISK_BYTES: String(options.smallDisk.bytes) });
  // unshare and sh exec in place, so the child's pid stays the daemon's.
  const prefix = hide.length === 0 && !options.smallDisk ? [] : [
    'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c',
    'IFS=:; for d in $MAPSCALE_TEST_HIDE; do mount -t tmpfs tmpfs "$d" || exit 97; done; ' +
    'if [ -n "$MAPSCALE_TEST_DISK" ]; then mount -t tmpfs -o "size=$MAPSCALE_TEST_DISK_BYTES" tmpfs "$MAPSCALE_TEST_DISK" || exit 97; fi; exec "$@"', 'sh',
  ];
  const command = [...prefix, process.execPath,
    fileURLToPath(WORKER_CLI_PATH), ...(options.args?.includes('--port') ? [] : ['--port', '0']),
    '--workers', String(options.workers ?? 2), ...(options.args ?? []),
  ];
  const child = spawn(command[0]!, command.slice(1), { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon did not start within ${START_DEADLINE_MS} ms; stderr: ${stderr}`));
    }, START_DEADLINE_MS);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before listening; stderr: ${stderr}; logs: ${JSON.stringify(logs)}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.event === 'listening') {
        clearTimeout(timer);
        const daemon: TestDaemon = {
          address: `127.0.0.1:${entry.port}`,
          port: entry.port as number,
          child,
          logs,
          exited,
          async stop(signal = 'SIGTERM') {
            running.delete(daemon);
            if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
            child.kill(signal);
            const kill = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
            const code = await exited;
            clearTimeout(kill);
            return code;
          },
        };
        running.add(daemon);
        resolve(daemon);
      }
    });
  });
}

/** Starts `count` daemons, runs `body`, and stops them all whatever happens. */
export async function withDaemons<T>(count: number, options: TestDaemonOptions, body: (daemons: TestDaemon[]) => Promise<T>): Promise<T> {
  const daemons: TestDaemon[] = [];
  try {
    for (let i = 0; i < count; i++) daemons.push(await startDaemon(options));
    return await body(daemons);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
  }
}

/** For a root hook: any daemon a failed test left behind is stopped. */
export async function stopAllDaemons(): Promise<void> {
  await Promise.all([...running].map((d) => d.stop('SIGKILL')));
}

/** Waits until `predicate` holds, polling; throws after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
