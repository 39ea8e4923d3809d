import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { localBundleDir, userCacheRoot } from './local-cache.js';

/**
 * How a daemon a coordinator starts for its own local workers (`new Processor(fn, N)`) stops, whether
 * it runs as a child process (local-entry.ts) or inside the app's process (embedded-daemon.ts).
 * Nobody waits for its jobs once its app is gone or has shut down, and its app's user expects it
 * gone within seconds (not the CLI's 20 s), cleanup() or not.
 */
export const LOCAL_STOP = Object.freeze({
  /** How long a stopping local daemon gives running jobs, then cleanup(), before it exits anyway. */
  stopGraceMs: 1000,
  stopDeadlineMs: 4000,
  /**
   * cleanup() of an app that is gone gets this long, inside the stop deadline: its thread is then
   * terminated and the daemon exits cleanly (0), rather than being cut off by the deadline (1). An app
   * that calls shutdown() sends its own cleanupTimeoutMs, which applies instead.
   */
  cleanupTimeoutMs: 2500,
});

/**
 * Where a local daemon keeps bundles: per user, not the app's current directory (external packages
 * still resolve from there); if that cannot be made, where they went before there was a per-user cache.
 */
export function localCacheDir(logger: Logger, cwd: string = process.cwd()): string {
  try {
    return localBundleDir(cwd);
  } catch (error) {
    const fallback = resolve(cwd, '.mapscale-cache');
    logger.warn({ event: 'cache-dir-unusable', dir: userCacheRoot(), fallback, reason: (error as Error).message });
    return fallback;
  }
}
