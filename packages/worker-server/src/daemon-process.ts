import type { Logger } from 'pino';
import { MapScaleError } from '@mapscale/protocol';
import { startWorkerServer, type WorkerServer } from './server.js';
import type { WorkerServerOptions } from './options.js';
import type { SpareThreads } from './spare-threads.js';

/**
 * How often a daemon a coordinator started checks that its parent still runs. The stdin pipe
 * closing is the prompt signal; this is the backup for when it does not close (another process
 * inherited its write end): a parent gone, the daemon is reparented and its ppid changes.
 */
const PARENT_CHECK_MS = 1000;

/**
 * For a daemon a coordinator starts: its parent's pid, read first thing at start (the parent may exit
 * while this process loads its modules; by then the ppid would already be the reaper's).
 */
export interface ParentWatch {
  parentPid: number;
}

/**
 * A daemon as a process: starts the server, stops it cleanly on SIGINT/SIGTERM (cleanup() of every
 * live instance, exit 0) and, for daemons a coordinator starts, when its parent is gone (stdin
 * closes, or the ppid changes). Shared by the CLI and the lean entry coordinators use for local workers.
 *
 * A stop is bounded: the process exits `stopGraceMs + stopDeadlineMs` after it began whatever is
 * still running (a cleanup() that never returns, one that loops), and a second SIGINT/SIGTERM exits
 * at once; both with code 1, logging the sessions given up on.
 */
export async function runDaemonProcess(
  options: WorkerServerOptions & { logger: Logger }, exitWithParent: ParentWatch | null, spares?: SpareThreads,
): Promise<void> {
  const logger = options.logger;
  let server: WorkerServer;
  try {
    server = await startWorkerServer(options, spares);
  } catch (error) {
    // A person started this daemon, unless a coordinator did (it reads the log, and hears of it anyway).
    reportStartFailure(logger, error, exitWithParent === null);
    process.exit(1);
  }
  let stopping: string | null = null;
  const stop = (reason: string, bySignal: boolean) => {
    if (stopping !== null) {
      // A second signal: whoever sends it will not wait for the cleanup under way.
      if (!bySignal) return;
      logger.warn({ event: 'stop-forced', signal: reason, stopping, sessions: server.openSessions() });
      process.exit(1);
    }
    stopping = reason;
    logger.info({ event: 'signal', signal: reason });
    const deadlineMs = server.options.stopGraceMs + server.options.stopDeadlineMs;
    // Ref'd on purpose: the process must reach it, whatever else keeps (or stops keeping) its loop alive.
    setTimeout(() => {
      logger.error({
        event: 'stop-overdue', waitedMs: deadlineMs, sessions: server.openSessions(),
        reason: 'cleanup() of these sessions did not finish in time; exiting without it',
      });
      process.exit(1);
    }, deadlineMs);
    server.close().then(() => process.exit(0), (error) => {
      logger.fatal({ event: 'stop-failed', err: error });
      process.exit(1);
    });
  };
  process.on('SIGINT', () => stop('SIGINT', true));
  process.on('SIGTERM', () => stop('SIGTERM', true));
  if (exitWithParent) {
    process.stdin.on('end', () => stop('parent-exited', false));
    process.stdin.on('error', () => stop('parent-exited', false));
    process.stdin.resume();
    setInterval(() => {
      if (process.ppid !== exitWithParent.parentPid) stop('parent-exited', false);
    }, PARENT_CHECK_MS).unref();
  }
}

/**
 * A daemon that cannot start says so once: one `start-failed` log line and, for a person (`plain`),
 * one plain line on stderr. An expected failure (a MapScaleError: a bad option, the port taken) is
 * logged without its stack, which says nothing the message does not; anything else keeps it.
 */
export function reportStartFailure(logger: Logger, error: unknown, plain: boolean): void {
  // Same prototype (the log's `type` is its class), without the stack or the cause's.
  const err = error instanceof MapScaleError
    ? Object.assign(Object.create(Object.getPrototypeOf(error) as object) as object, { message: error.message, code: error.code })
    : error;
  logger.fatal({ event: 'start-failed', err });
  if (plain) process.stderr.write(`mapscale-worker: ${error instanceof Error ? error.message : String(error)}\n`);
}
