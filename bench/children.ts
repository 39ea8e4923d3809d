import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Measurement } from './measure.js';

/**
 * Every process the bench starts itself goes through here, so that each one is stopped at the end,
 * on failure, on a signal and when the watchdog fires. Children are also told to exit when their
 * stdin closes, so even a bench killed with SIGKILL leaves none behind.
 */
const live = new Set<ChildProcess>();
/** How long runToExit waits for a child's pipes to close after it exited. */
const PIPE_GRACE_MS = 2_000;

export interface ChildHandle {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Warnings and errors the child logged (pino level ≥ 40), kept for the report on failure. */
  readonly complaints: string[];
  /** Resolves to the first JSON line on stdout with this `event`; rejects on exit or after `timeoutMs`. */
  waitForEvent(event: string, timeoutMs: number): Promise<Record<string, unknown>>;
}

/** Starts a child tracked by this module: killed at the end whatever happens. */
function spawnTracked(file: string, args: string[], env: NodeJS.ProcessEnv, stderr: 'inherit' | 'pipe'): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', stderr] });
  live.add(child);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    });
    child.once('error', () => {
      live.delete(child);
      resolve(null);
    });
  });
  return { child, exited };
}

export function spawnNode(args: string[], env: NodeJS.ProcessEnv = process.env): ChildHandle {
  const { child, exited } = spawnTracked(process.execPath, args, env, 'inherit');
  const complaints: string[] = [];
  const waiters = new Map<string, (entry: Record<string, unknown>) => void>();
  // Always read stdout to the end: a child blocked on a full pipe would skew what we measure.
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof entry.level === 'number' && entry.level >= 40 && complaints.length < 20) complaints.push(line);
    const waiter = typeof entry.event === 'string' ? waiters.get(entry.event) : undefined;
    if (waiter) {
      waiters.delete(entry.event as string);
      waiter(entry);
    }
  });
  return {
    child,
    exited,
    complaints,
    waitForEvent(event, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child ${child.pid} did not log "${event}" within ${timeoutMs} ms`)), timeoutMs);
        waiters.set(event, (entry) => {
          clearTimeout(timer);
          resolve(entry);
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`child ${child.pid} exited with code ${code} before logging "${event}"`));
        });
      });
    },
  };
}

export interface ChildRun<T> {
  /** The last line of the child's stdout, parsed. */
  readonly json: T;
  /** From just before spawning it to its exit, as this process saw it: the whole wall time of a fresh process. */
  readonly wallSeconds: number;
  /**
   * CPU seconds (user + system) of the child and of every descendant it waited for, as the kernel
   * counted them when this process reaped it; to 10 ms, Linux only. Unlike wall time, another
   * session's load barely moves it. Only right while no other child of this process ends meanwhile.
   */
  readonly cpuSeconds: number | undefined;
}

/** Clock ticks per second of /proc's CPU times. */
let clockTicks: number | undefined;

/** CPU seconds of this process's reaped children so far (cutime + cstime of /proc/self/stat), or undefined off Linux. */
function reapedChildrenCpuSeconds(): number | undefined {
  try {
    // Before reading: getconf is a child too, and must not count in anyone's figure.
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5_000 }).trim()) || 100;
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command's closing parenthesis start at field 3; cutime and cstime are fields 16 and 17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[13]) + Number(fields[14])) / clockTicks;
  } catch {
    return undefined;
  }
}

/**
 * Runs a child that measures (or does) something by itself and prints one JSON line last on its
 * stdout: resolves when it has exited with code 0, rejects on any other exit or after `timeoutMs`
 * (then it is killed). Its stdin stays open until it exits: the bench's own children exit when
 * their stdin closes, so a killed bench leaves none behind.
 */
export async function runToExit<T>(file: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<ChildRun<T>> {
  const cpuBefore = reapedChildrenCpuSeconds();
  const started = performance.now();
  const { child, exited } = spawnTracked(file, args, env, 'pipe');
  const closed = new Promise((resolve) => child.once('close', resolve));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  // Only the tail: it is for the error message.
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2_000)));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const code = await Promise.race([exited, deadline]);
  const wallSeconds = (performance.now() - started) / 1000;
  const cpuAfter = reapedChildrenCpuSeconds();
  const cpuSeconds = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
  clearTimeout(timer);
  const what = `${file} ${args.join(' ')}`.slice(0, 300);
  if (code === 'timeout') {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${what}: did not exit within ${timeoutMs} ms; stderr: ${stderr.trim()}`);
  }
  // 'exit' can come before the last stdout chunk: wait for the pipes to close, but not for a
  // grandchild that holds them open.
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, PIPE_GRACE_MS).unref())]);
  if (code !== 0) throw new Error(`${what}: exited with code ${code}; stderr: ${stderr.trim()}`);
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    return { json: JSON.parse(last) as T, wallSeconds, cpuSeconds };
  } catch {
    throw new Error(`${what}: its last line is not JSON: ${last.slice(0, 200)}; stderr: ${stderr.trim()}`);
  }
}

/** A child that measures by itself and prints its Measurement as the last line of its stdout. */
export async function runForMeasurement(file: string, args: string[], timeoutMs: number): Promise<Measurement> {
  return (await runToExit<Measurement>(file, args, timeoutMs)).json;
}

/** SIGTERM, then SIGKILL if it overstays `graceMs`. */
export async function stopChild(handle: ChildHandle, graceMs = 5_000): Promise<void> {
  const { child } = handle;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await handle.exited;
  clearTimeout(timer);
}

/** Last resort (exit, signal, watchdog): synchronous, so it works from an 'exit' handler. */
export function killAllNow(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function liveCount(): number {
  return live.size;
}

/**
 * Pids of this process's children still alive, as the kernel sees them: catches daemons that a
 * Processor started for `new Processor(fn, N)` too, which this module does not track.
 */
export function childPids(): number[] {
  const pids: number[] = [];
  try {
    for (const task of readdirSync('/proc/self/task')) {
      const text = readFileSync(`/proc/self/task/${task}/children`, 'utf8').trim();
      if (text) pids.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // not Linux: nothing to check
  }
  return pids;
}
