import type { Logger } from 'pino';
import { startWorkerServer } from './server.js';
import type { WorkerServerOptions } from './options.js';
import type { SpareThreads } from './spare-threads.js';

/**
 * A daemon as a process: starts the server, stops it cleanly on SIGINT/SIGTERM (cleanup() of every
 * live instance, exit 0) and, for daemons a coordinator starts, when stdin closes (its parent died).
 * Shared by the CLI and the lean entry coordinators use for local workers.
 */
export async function runDaemonProcess(options: WorkerServerOptions & { logger: Logger }, exitWithParent: boolean, spares?: SpareThreads): Promise<void> {
  const logger = options.logger;
  try {
    const server = await startWorkerServer(options, spares);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'signal', signal });
      server.close().then(() => process.exit(0), (error) => {
        logger.fatal({ event: 'stop-failed', err: error });
        process.exit(1);
      });
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    if (exitWithParent) {
      process.stdin.on('end', () => stop('parent-exited'));
      process.stdin.on('error', () => stop('parent-exited'));
      process.stdin.resume();
    }
  } catch (error) {
    logger.fatal({ event: 'start-failed', err: error });
    process.exit(1);
  }
}
