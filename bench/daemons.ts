import { fileURLToPath } from 'node:url';
import { WORKER_CLI_PATH } from '@mapscale/worker-server';
import { spawnNode, stopChild, type ChildHandle } from './children.js';

export interface Daemon {
  /** "127.0.0.1:port", as a Processor takes it. */
  readonly address: string;
  readonly handle: ChildHandle;
  stop(): Promise<void>;
}

/** A mapscale-worker daemon on loopback, as a user would run one (`--workers N`), with a secret. */
export async function startDaemon(workers: number, secret: string, timeoutMs: number): Promise<Daemon> {
  const handle = spawnNode([
    fileURLToPath(WORKER_CLI_PATH), '--host', '127.0.0.1', '--port', '0', '--workers', String(workers), '--exit-with-parent',
  ], { ...process.env, MAPSCALE_SECRET: secret });
  try {
    const listening = await handle.waitForEvent('listening', timeoutMs);
    return { address: `127.0.0.1:${listening.port as number}`, handle, stop: () => stopChild(handle, 10_000) };
  } catch (error) {
    await stopChild(handle, 1_000);
    throw error;
  }
}
