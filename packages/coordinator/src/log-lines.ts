import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger, LevelWithSilent } from 'pino';

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
 *
 * pino itself is loaded with the first line written (a warning, by default): ~20 ms of a fresh
 * process's start that most apps, which log nothing, never pay (docs/ARCHITECTURE.md, "Cold start").
 * Until then this is a stand-in that knows the level and the bindings of its children.
 */
export function humanLogger(level: LevelWithSilent, fd = 2): Logger {
  const root = () => loadPino()({ level }, {
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
  return new DeferredLogger(root, level) as unknown as Logger;
}

let pinoFactory: typeof import('pino').pino | undefined;
function loadPino(): typeof import('pino').pino {
  pinoFactory ??= (createRequire(import.meta.url)('pino') as typeof import('pino')).pino;
  return pinoFactory;
}

const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** The part of pino's Logger the coordinator (and an embedded daemon) uses, the real one made on first use. */
class DeferredLogger {
  readonly #make: () => Logger;
  #real: Logger | undefined;
  #level: string;

  constructor(make: () => Logger, level: string) {
    this.#make = make;
    this.#level = level;
  }

  #logger(): Logger {
    this.#real ??= this.#make();
    return this.#real;
  }

  get level(): string {
    return this.#level;
  }

  set level(level: string) {
    this.#level = level;
    if (this.#real) this.#real.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return (LEVELS[level] ?? 0) >= (LEVELS[this.#level] ?? 30);
  }

  child(bindings: Record<string, unknown>, options?: { level?: string }): DeferredLogger {
    return new DeferredLogger(() => this.#logger().child(bindings, options as never), options?.level ?? this.#level);
  }

  #write(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', args: unknown[]): void {
    if (this.isLevelEnabled(level)) (this.#logger()[level] as (...a: unknown[]) => void)(...args);
  }

  trace(...args: unknown[]): void { this.#write('trace', args); }
  debug(...args: unknown[]): void { this.#write('debug', args); }
  info(...args: unknown[]): void { this.#write('info', args); }
  warn(...args: unknown[]): void { this.#write('warn', args); }
  error(...args: unknown[]): void { this.#write('error', args); }
  fatal(...args: unknown[]): void { this.#write('fatal', args); }
}
