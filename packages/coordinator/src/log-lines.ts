import { writeSync } from 'node:fs';
import { pino, type Logger, type LevelWithSilent } from 'pino';

const LABELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };
/** Fields every pino line has, which a person does not need to read. */
const NOISE = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'v']);

/**
 * One pino log record as a line a person reads:
 * `mapscale warning: data-connection-failed (127.0.0.1:7100): connect ECONNREFUSED … [slot=0] — its jobs go through the daemon port instead`.
 */
export function humanLine(record: Record<string, unknown>): string {
  const { level, event, worker, reason, hint, component, msg } = record;
  const rest = Object.entries(record)
    .filter(([key, value]) => !NOISE.has(key) && !['event', 'worker', 'reason', 'hint', 'component'].includes(key) && value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const what = typeof event === 'string' ? event : typeof msg === 'string' ? msg : String(component ?? 'log');
  return `mapscale ${LABELS[level as number] ?? String(level)}: ${what}` +
    (worker !== undefined ? ` (${String(worker)})` : '') +
    (reason !== undefined ? `: ${String(reason)}` : '') +
    (rest.length > 0 ? ` [${rest.join(' ')}]` : '') +
    (hint !== undefined ? ` — ${String(hint)}` : '') + '\n';
}

/**
 * A pino logger that writes `humanLine`s to stderr, synchronously (a line must not be lost when the
 * app exits right after). For where a person reads: the default when the app gives no logger, and
 * the `mapscale` CLI on a terminal. An app that gives a logger gets JSON events from it instead.
 */
export function humanLogger(level: LevelWithSilent, fd = 2): Logger {
  return pino({ level }, {
    write(line: string) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        writeSync(fd, line);
        return;
      }
      writeSync(fd, humanLine(record));
    },
  });
}
