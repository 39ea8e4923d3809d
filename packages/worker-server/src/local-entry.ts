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
import { SpareThreads } from './spare-threads.js';
import { LOCAL_STOP, localCacheDir } from './local-defaults.js';

// Before the daemon's modules load: see ParentWatch.
const parentPid = process.ppid;

const workers = Number(process.argv[2]);
const spares = new SpareThreads(Number.isInteger(workers) && workers > 0 ? workers : 0);
const [{ pino }, { runDaemonProcess }] = await Promise.all([import('pino'), import('./daemon-process.js')]);
const logger = pino({ level: 'info' }, pino.destination({ dest: 1, sync: true }));
await runDaemonProcess({
  host: '127.0.0.1',
  port: 0,
  workers,
  maxFrameBytes: process.argv[3] === undefined ? undefined : Number(process.argv[3]),
  secret: process.env.MAPSCALE_SECRET || undefined,
  cacheDir: localCacheDir(logger),
  ...LOCAL_STOP,
  logger,
}, { parentPid }, spares);
