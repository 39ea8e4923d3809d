/**
 * The daemon a coordinator starts for `new Processor(fn, N)`: loopback, a free port, the secret
 * from the environment, N instances. No argument parser to load (yargs alone costs ~65 ms of
 * start-up here), since its caller is code, not a person. argv[2]: the instance count;
 * argv[3], if given: the largest frame accepted (the coordinator's maxFrameBytes).
 *
 * Its instance threads are started first, before this thread loads the daemon's own modules: each
 * thread takes tens of milliseconds to load its code, and the app's first setup() waits for that, so
 * the two loads overlap instead of following one another (W4 in `pnpm bench`).
 */
import { resolve } from 'node:path';
import { SpareThreads } from './spare-threads.js';
import { localBundleDir, userCacheRoot } from './local-cache.js';

// Before the daemon's modules load: see ParentWatch.
const parentPid = process.ppid;

/** How long a stopping local daemon gives running jobs, then cleanup(), before it exits anyway. */
const LOCAL_STOP_GRACE_MS = 1000;
const LOCAL_STOP_DEADLINE_MS = 4000;
/**
 * cleanup() of an app that is gone gets this long, inside the stop deadline: its thread is then
 * terminated and the daemon exits cleanly (0), rather than being cut off by the deadline (1). An app
 * that calls shutdown() sends its own cleanupTimeoutMs, which applies instead.
 */
const LOCAL_CLEANUP_TIMEOUT_MS = 2500;

const workers = Number(process.argv[2]);
const spares = new SpareThreads(Number.isInteger(workers) && workers > 0 ? workers : 0);
const [{ pino }, { runDaemonProcess }] = await Promise.all([import('pino'), import('./daemon-process.js')]);
const logger = pino({ level: 'info' }, pino.destination({ dest: 1, sync: true }));
let cacheDir: string;
try {
  cacheDir = localBundleDir(process.cwd());
} catch (error) {
  // Bundles must go somewhere: where they went before there was a per-user cache.
  cacheDir = resolve('.mapscale-cache');
  logger.warn({ event: 'cache-dir-unusable', dir: userCacheRoot(), fallback: cacheDir, reason: (error as Error).message });
}
await runDaemonProcess({
  host: '127.0.0.1',
  port: 0,
  workers,
  maxFrameBytes: process.argv[3] === undefined ? undefined : Number(process.argv[3]),
  secret: process.env.MAPSCALE_SECRET || undefined,
  // Per user, not the app's current directory; external packages still resolve from there.
  cacheDir,
  // A local daemon stops when its app is gone, or after the app's shutdown: nobody waits for its jobs
  // then, and its app's user expects it gone within seconds (not the CLI's 20 s), cleanup() or not.
  stopGraceMs: LOCAL_STOP_GRACE_MS,
  stopDeadlineMs: LOCAL_STOP_DEADLINE_MS,
  cleanupTimeoutMs: LOCAL_CLEANUP_TIMEOUT_MS,
  logger,
}, { parentPid }, spares);
