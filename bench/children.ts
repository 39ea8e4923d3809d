import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/**
 * Every process the bench starts itself goes through here, so that each one is stopped at the end,
 * on failure, on a signal and when the watchdog fires. Children are also told to exit when their
 * stdin closes, so even a bench killed with SIGKILL leaves none behind.
 */
const live = new Set<ChildProcess>();

export interface ChildHandle {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** Warnings and errors the child logged (pino level ≥ 40), kept for the report on failure. */
  readonly complaints: string[];
  /** Resolves to the first JSON line on stdout with this `event`; rejects on exit or after `timeoutMs`. */
  waitForEvent(event: string, timeoutMs: number): Promise<Record<string, unknown>>;
}

export function spawnNode(args: string[], env: NodeJS.ProcessEnv = process.env): ChildHandle {
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
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
