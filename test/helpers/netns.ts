import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WORKER_CLI_PATH } from '@mapscale/worker-server';
import { tempDir } from './files.js';

/*
 * Separate hosts on one machine, for tests of what crosses a network. Each host is a network
 * namespace (and, for its processes, a UTS namespace with its own hostname); a "lan" namespace
 * holds a bridge with one veth pair per host. The coordinator's app runs in a namespace of its own
 * on the same bridge, so the test subnet exists only inside namespaces this harness creates: no
 * interface, address or route is added to the machine's own namespace, no namespace has a default
 * route, and parallel runs cannot clash on addresses. Namespace names carry the test process's pid.
 *
 *   app    10.213.0.1  ── eth0 ═ veth ═ port "app"    ─┐
 *   host-1 10.213.0.11 ── eth0 ═ veth ═ port "host-1" ─┼─ br0, in the "lan" namespace
 *   host-2 10.213.0.12 ── eth0 ═ veth ═ port "host-2" ─┤
 *   …                                                  ┘
 */

const NAME_PREFIX = 'mapscale-test';
const SUBNET = '10.213.0';
const PREFIX_LENGTH = 24;
export const DAEMON_PORT = 7100;

const IP_COMMAND_TIMEOUT_MS = 10_000;
const DAEMON_START_DEADLINE_MS = 20_000;
const STOP_DEADLINE_MS = 10_000;
const KILL_DEADLINE_MS = 5_000;

/** Runs `ip` with `args` (bounded); throws with its stderr on failure. */
function ip(args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_COMMAND_TIMEOUT_MS });
  if (result.error) throw new Error(`ip ${args.join(' ')}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')} exited with ${result.status}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** Names of the network namespaces that exist now. */
export function listNamespaces(): string[] {
  return ip(['netns', 'list']).split('\n').map((line) => line.trim().split(/\s+/)[0]!).filter(Boolean);
}

/** This process's namespaces still in existence: empty after every teardown. */
export function leftoverNamespaces(): string[] {
  return listNamespaces().filter((name) => name.startsWith(`${NAME_PREFIX}-${process.pid}-`));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Names left by a test process that died without its teardown (SIGKILL). Only the names are
 * removed: daemons in them were started with --exit-with-parent, so they ended with that process.
 */
function removeStaleNamespaces(): void {
  for (const name of listNamespaces()) {
    const match = new RegExp(`^${NAME_PREFIX}-(\\d+)-`).exec(name);
    if (match && Number(match[1]) !== process.pid && !isAlive(Number(match[1]))) {
      try {
        ip(['netns', 'delete', name]);
      } catch {
        // Another run may be sweeping it at the same moment.
      }
    }
  }
}

/**
 * Why multi-host tests cannot run here, or null when they can: they need root and a working
 * `ip netns` (iproute2). The reason is meant to be printed beside the skip.
 */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) {
    return 'multi-host tests need root to create network namespaces (ip netns); CI runs as root and runs them';
  }
  const probe = `${NAME_PREFIX}-${process.pid}-probe`;
  try {
    ip(['netns', 'add', probe]);
  } catch (error) {
    return `multi-host tests cannot create a network namespace here: ${(error as Error).message}`;
  }
  try {
    ip(['netns', 'delete', probe]);
  } catch {
    // Teardown checks report it.
  }
  const unshare = spawnSync('unshare', ['--uts', '--mount', 'true'], { timeout: IP_COMMAND_TIMEOUT_MS });
  if (unshare.status !== 0) return `multi-host tests need unshare (util-linux) with UTS and mount namespaces: ${unshare.error?.message ?? unshare.stderr}`;
  return null;
}

/** A process started inside one of the lan's namespaces, with its output as lines. */
export interface LanProcess {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves to the exit code (or the signal's name) once it exited. */
  readonly exited: Promise<number | string>;
  /** Resolves to the first output line (either stream) that `predicate` accepts; rejects past `timeoutMs` or at exit. */
  waitForLine(predicate: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
}

/** One simulated machine on the lan. */
export interface TestHost {
  /** Its hostname inside its UTS namespace: `host-1`, `host-2`, … */
  readonly name: string;
  readonly namespace: string;
  /** Its IPv4 address on the lan. */
  readonly ip: string;
  /** Its own directory, as its disk: daemon cache, secret and certificate files. */
  readonly dir: string;
}

export interface LanDaemonOptions {
  /** File with the shared secret, passed as --secret-file. */
  secretFile: string;
  workers?: number;
  args?: string[];
  /** Directories this host must not see (an empty tmpfs over each): the app's files. */
  hide?: string[];
}

/** A `mapscale-worker` daemon running on a TestHost, listening on its lan address. */
export interface LanDaemon {
  readonly host: TestHost;
  /** "ip:port", as a coordinator names it. */
  readonly address: string;
  /** Its pid: `unshare`, `sh` and `ip netns exec` exec in place, so this is the daemon itself. */
  readonly pid: number;
  /** Its JSON log lines so far. */
  readonly logs: Record<string, unknown>[];
  readonly process: LanProcess;
}

let nextLanId = 1;

/** A bridge, an app namespace and `hostCount` host namespaces; see the comment at the top. */
export class TestLan {
  readonly app: { readonly namespace: string; readonly ip: string };
  readonly hosts: readonly TestHost[];
  readonly #lanNamespace: string;
  readonly #namespaces: string[] = [];
  readonly #processes = new Set<LanProcess>();
  readonly #dir = tempDir('mapscale-lan-');

  private constructor(hostCount: number) {
    const base = `${NAME_PREFIX}-${process.pid}-${nextLanId++}`;
    this.#lanNamespace = `${base}-lan`;
    this.app = { namespace: `${base}-app`, ip: `${SUBNET}.1` };
    this.hosts = Array.from({ length: hostCount }, (_, i) => {
      const dir = join(this.#dir.path, `host-${i + 1}`);
      mkdirSync(dir);
      return { name: `host-${i + 1}`, namespace: `${base}-h${i + 1}`, ip: `${SUBNET}.${11 + i}`, dir };
    });
  }

  /** Builds the network; on any failure tears down what was built and throws. */
  static async create(hostCount: number): Promise<TestLan> {
    removeStaleNamespaces();
    const lan = new TestLan(hostCount);
    try {
      lan.#addNamespace(lan.#lanNamespace);
      ip(['-n', lan.#lanNamespace, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', lan.#lanNamespace, 'link', 'set', 'br0', 'up']);
      lan.#attach(lan.app.namespace, 'app', lan.app.ip);
      for (const host of lan.hosts) lan.#attach(host.namespace, host.name, host.ip);
      return lan;
    } catch (error) {
      await lan.destroy().catch(() => {});
      throw error;
    }
  }

  #addNamespace(name: string): void {
    ip(['netns', 'add', name]);
    this.#namespaces.push(name);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /**
   * A namespace with `eth0` at `address`, cabled to the bridge through port `port`. Both ends of
   * the veth are created inside namespaces, so it never appears in the machine's own.
   */
  #attach(namespace: string, port: string, address: string): void {
    this.#addNamespace(namespace);
    ip(['-n', this.#lanNamespace, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', namespace]);
    ip(['-n', this.#lanNamespace, 'link', 'set', port, 'master', 'br0']);
    ip(['-n', this.#lanNamespace, 'link', 'set', port, 'up']);
    ip(['-n', namespace, 'addr', 'add', `${address}/${PREFIX_LENGTH}`, 'dev', 'eth0']);
    ip(['-n', namespace, 'link', 'set', 'eth0', 'up']);
  }

  /** Pulls the host's cable at the switch: its packets are dropped, its sockets see nothing. */
  cutLink(host: TestHost): void {
    ip(['-n', this.#lanNamespace, 'link', 'set', host.name, 'down']);
  }

  restoreLink(host: TestHost): void {
    ip(['-n', this.#lanNamespace, 'link', 'set', host.name, 'up']);
  }

  /** Writes `text` to a file only root can read, in the host's directory (or the lan's, for the app). */
  writePrivateFile(host: TestHost | 'app', name: string, text: string): string {
    const dir = host === 'app' ? this.#dir.path : host.dir;
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  }

  /**
   * Starts `mapscale-worker` on `host`, listening on its lan address, with its hostname set and
   * `hide` covered. Resolves once it logs `listening`.
   */
  async startDaemon(host: TestHost, options: LanDaemonOptions): Promise<LanDaemon> {
    const hide = options.hide ?? [];
    const script = 'printf %s "$MAPSCALE_TEST_HOSTNAME" > /proc/sys/kernel/hostname || exit 96; ' +
      'IFS=:; for d in $MAPSCALE_TEST_HIDE; do mount -t tmpfs tmpfs "$d" || exit 97; done; exec "$@"';
    const command = [
      'unshare', '--uts', ...(hide.length > 0 ? ['--mount', '--propagation', 'private'] : []), '--', 'sh', '-c', script, 'sh',
      process.execPath, fileURLToPath(WORKER_CLI_PATH),
      '--host', host.ip, '--port', String(DAEMON_PORT), '--workers', String(options.workers ?? 2),
      '--secret-file', options.secretFile, '--cache-dir', join(host.dir, 'cache'),
      // Its stdin is a pipe from this process: should the test process die, the daemon stops.
      '--exit-with-parent',
      ...(options.args ?? []),
    ];
    const proc = this.#spawn(host.namespace, command, {
      cwd: host.dir,
      env: { MAPSCALE_TEST_HOSTNAME: host.name, MAPSCALE_TEST_HIDE: hide.join(':') },
    });
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: proc.child.stdout! }).on('line', (line) => {
      try {
        logs.push(JSON.parse(line));
      } catch {
        // Not a log line.
      }
    });
    try {
      await proc.waitForLine((line) => line.includes('"event":"listening"'), DAEMON_START_DEADLINE_MS, `the daemon on ${host.name} to listen`);
    } catch (error) {
      throw new Error(`${(error as Error).message}; stderr: ${proc.stderr.join('\n')}; logs: ${proc.stdout.join('\n')}`);
    }
    return { host, address: `${host.ip}:${DAEMON_PORT}`, pid: proc.child.pid!, logs, process: proc };
  }

  /** Runs `node script ...args` in the app's namespace (working directory: this repository's root). */
  runApp(script: string, args: string[]): LanProcess {
    return this.#spawn(this.app.namespace, [process.execPath, script, ...args], { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
  }

  #spawn(namespace: string, command: string[], options: { cwd: string; env?: Record<string, string> }): LanProcess {
    const env: Record<string, string | undefined> = { ...process.env, ...options.env };
    // Every secret in these tests comes from a file, as in a fleet.
    delete env.MAPSCALE_SECRET;
    const child = spawn('ip', ['netns', 'exec', namespace, ...command], { cwd: options.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: string[] = [];
    const stderr: string[] = [];
    const watchers = new Set<(line: string) => void>();
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      // A process that could not be started never exits.
      child.once('error', (error) => resolve(`not started: ${error.message}`));
    });
    for (const [stream, lines] of [[child.stdout!, stdout], [child.stderr!, stderr]] as const) {
      createInterface({ input: stream }).on('line', (line) => {
        lines.push(line);
        for (const watcher of watchers) watcher(line);
      });
    }
    const proc: LanProcess = {
      child,
      stdout,
      stderr,
      exited,
      waitForLine(predicate, timeoutMs, what) {
        const seen = [...stdout, ...stderr].find(predicate);
        if (seen !== undefined) return Promise.resolve(seen);
        return new Promise((resolve, reject) => {
          const done = (error: Error | null, line?: string) => {
            clearTimeout(timer);
            watchers.delete(watcher);
            if (error) reject(error);
            else resolve(line!);
          };
          const watcher = (line: string) => {
            if (predicate(line)) done(null, line);
          };
          const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
          watchers.add(watcher);
          void exited.then((code) => done(new Error(`exited (${code}) while waiting for ${what}`)));
        });
      },
    };
    this.#processes.add(proc);
    return proc;
  }

  /** SIGTERM (then SIGKILL past a deadline); resolves to the exit code or signal. */
  async stop(proc: LanProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
    const { child } = proc;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timers: NodeJS.Timeout[] = [];
      timers.push(setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS));
      await Promise.race([proc.exited, new Promise((resolve) => timers.push(setTimeout(resolve, STOP_DEADLINE_MS + KILL_DEADLINE_MS)))]);
      timers.forEach(clearTimeout);
    }
    this.#processes.delete(proc);
    return Promise.race([proc.exited, Promise.resolve('did not exit')]);
  }

  /**
   * Stops every process it started, kills anything else left inside its namespaces, deletes the
   * namespaces (and with them every veth and the bridge) and its files. Does all of it even when
   * a step fails, then throws what failed.
   */
  async destroy(): Promise<void> {
    const problems: string[] = [];
    await Promise.all([...this.#processes].map(async (proc) => {
      const outcome = await this.stop(proc);
      if (outcome === 'did not exit') problems.push(`pid ${proc.child.pid} did not exit`);
    }));
    for (const namespace of [...this.#namespaces].reverse()) {
      try {
        // Only processes this lan started can be in its namespaces.
        for (const pid of ip(['netns', 'pids', namespace]).split('\n').filter(Boolean)) {
          problems.push(`pid ${pid} was still running in ${namespace}; killed`);
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // Gone meanwhile.
          }
        }
        ip(['netns', 'delete', namespace]);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    this.#namespaces.length = 0;
    this.#dir.remove();
    const left = listNamespaces().filter((name) => name.startsWith(this.#lanNamespace.slice(0, -'lan'.length)));
    if (left.length > 0) problems.push(`namespaces left behind: ${left.join(', ')}`);
    if (problems.length > 0) throw new Error(`lan teardown: ${problems.join('; ')}`);
  }
}

/**
 * Builds a lan of `hostCount` hosts, runs `body`, and tears everything down whatever happens.
 * A teardown failure fails the test, unless the body already failed (then it is printed).
 */
export async function withLan<T>(hostCount: number, body: (lan: TestLan) => Promise<T>): Promise<T> {
  const lan = await TestLan.create(hostCount);
  let failed = false;
  try {
    return await body(lan);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    await lan.destroy().catch((error: Error) => {
      if (!failed) throw error;
      console.error(`      ${error.message}`);
    });
  }
}
