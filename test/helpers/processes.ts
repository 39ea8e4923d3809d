import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** Whether `pid` runs (a zombie, dead but not yet reaped, counts as gone). */
export function alive(pid: number): boolean {
  try {
    // The state follows the command name, which is in parentheses and may hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILL, if it still runs: for `finally` blocks. */
export function killIfAlive(pid: number | undefined): void {
  if (pid === undefined || !alive(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

/** A child node process whose stdout lines a test waits for. */
export interface LineChild {
  readonly child: ChildProcess;
  /** Resolves with the first line (so far or to come) that `match` takes; rejects past `timeoutMs` or at exit. */
  line(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  readonly stderr: () => string;
}

export function spawnNode(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): LineChild {
  const child = spawn(process.execPath, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let exited = false;
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const reader = createInterface({ input: child.stdout! });
  reader.on('line', (line) => {
    lines.push(line);
    for (const wake of waiters) wake();
  });
  // Not the child's 'exit': lines may still be on their way then.
  reader.once('close', () => {
    exited = true;
    for (const wake of waiters) wake();
  });
  return {
    child,
    stderr: () => stderr,
    line(match, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(match);
          if (found !== undefined || exited) {
            waiters.delete(check);
            clearTimeout(timer);
            if (found !== undefined) resolve(found);
            else reject(new Error(`process exited without the line awaited; stdout: ${lines.join('\n')}; stderr: ${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no awaited line within ${timeoutMs} ms; stdout: ${lines.join('\n')}; stderr: ${stderr}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
