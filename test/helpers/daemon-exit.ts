import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WORKER_CLI_PATH } from '@mapscale/worker-server';

export interface DaemonExit {
  code: number | null;
  /** Every JSON log line it printed. */
  logs: Record<string, unknown>[];
  stderr: string;
}

/**
 * Runs `mapscale-worker` with `args` for a daemon expected to refuse to start: resolves with its
 * exit code and logs once it exits. A daemon that starts listening instead is killed at once and
 * the promise rejects, as it does past `timeoutMs`.
 */
export function runDaemonToExit(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<DaemonExit> {
  const fullEnv: Record<string, string | undefined> = { ...process.env, ...env };
  if (!('MAPSCALE_SECRET' in env)) delete fullEnv.MAPSCALE_SECRET;
  const child = spawn(process.execPath, [fileURLToPath(WORKER_CLI_PATH), ...args], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const parse = () => stdout.split('\n').filter(Boolean).flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon did not exit within ${timeoutMs} ms; logs: ${stdout}`));
    }, timeoutMs);
    child.stdout!.on('data', () => {
      if (parse().some((l) => l.event === 'listening')) {
        child.kill('SIGKILL');
        clearTimeout(timer);
        reject(new Error(`daemon started listening although it should have refused: ${stdout}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, logs: parse(), stderr });
    });
  });
}
