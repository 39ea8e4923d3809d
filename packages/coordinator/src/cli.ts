import { createReadStream, openSync, readFileSync } from 'node:fs';
import { availableParallelism, constants as osConstants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { pino, type LevelWithSilent } from 'pino';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { MAPSCALE_VERSION, MapScaleError } from '@mapscale/protocol';
import { WORK_FUNCTION_BASE } from '@mapscale/worker-server/runtime';
import { humanLogger } from './log-lines.js';
import { InvalidOptionError, ShippingError } from './errors.js';
import { DEFAULT_PROCESSOR_OPTIONS as D, type ProcessorOptions } from './options.js';
import { DEFAULT_DASHBOARD_OPTIONS } from './dashboard/options.js';
import { Processor, type WorkFunctionInput } from './processor.js';
import type { MapProgress } from './engine.js';
import type { Settled } from './result-stores.js';

// Exit codes. 2 means nothing should have been run as given (flags, module, export, jobs input);
// 1 means the map itself failed; a signal gives 128 + its number, like a shell.
const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
/** Where stdout went away (`mapscale … | head`): what a process killed by SIGPIPE reports. */
const EXIT_OUTPUT_CLOSED = 128 + osConstants.signals.SIGPIPE;

/** The command line, its module or its jobs input is wrong: exit 2. */
class UsageError extends MapScaleError {
  static override readonly code = 'MS_USAGE';
}

/** A line of the jobs input is not JSON. Names the input and the line, counted from 1 (blank lines count). */
class JobsInputError extends MapScaleError {
  static override readonly code = 'MS_JOBS_INPUT';
}

function runOptions(y: Argv) {
  return y
    .usage('$0 run --module FILE [--export NAME] [--args JSON] [--workers N | --connect HOST:PORT,…] [--jobs FILE]\n\n' +
      'Reads jobs as JSON lines (one JSON value per line, blank lines skipped) from --jobs or stdin, maps them over the ' +
      'workers and prints one JSON line per job to stdout, in job order.')
    .epilogue('Values JSON cannot carry are printed as: BigInt → decimal string, Map → [[key, value], …], Set and typed ' +
      'arrays (Buffer too) → arrays, Date → ISO string, undefined and NaN → null.\n\n' +
      'Exit codes: 0 every job succeeded; 1 a job failed (with --settle: after every job was printed) or the map could ' +
      'not run (daemon unreachable, setup failed); 2 bad usage, a module or export that cannot be used, or a malformed ' +
      'jobs line; 130/143 stopped by SIGINT/SIGTERM (a second one exits without waiting for cleanup); 141 stdout was closed.\n\n' +
      'Example: seq 100 | mapscale run -m ./work.js -e Power --args \'[2]\' -c hostA:7100,hostB:7100 --secret-file ./secret')
    .option('module', { alias: 'm', type: 'string', demandOption: true, describe: 'the work module: a path (relative to the current directory) or a file: URL' })
    .option('export', { alias: 'e', type: 'string', default: 'default', describe: 'the export to run: a WorkFunction subclass (constructed with --args), a WorkFunction instance, or a plain function (job) => result' })
    .option('args', { type: 'string', nargs: 1, default: '[]', describe: 'constructor arguments for a WorkFunction subclass, as a JSON array' })
    .option('workers', { alias: 'w', type: 'number', describe: 'worker instances to start on this host (one local daemon, stopped at the end)', defaultDescription: 'the CPU count, unless --connect is given' })
    .option('connect', { alias: 'c', type: 'string', array: true, describe: 'daemon addresses host:port, comma-separated or repeated; with --workers, the pool mixes both' })
    .option('jobs', { alias: 'j', type: 'string', nargs: 1, describe: 'JSON-lines file of jobs; "-" reads stdin', defaultDescription: 'stdin, unless it is a terminal' })
    .option('secret-file', { type: 'string', describe: 'file holding the daemons\' shared secret', defaultDescription: 'env MAPSCALE_SECRET' })
    .option('settle', { type: 'boolean', default: false, describe: 'do not stop at a failed job: print {"status":"fulfilled","value":…} or {"status":"rejected","reason":{"name":…,"message":…,"code":…,"jobIndex":…}} for each job' })
    .option('unordered', { type: 'boolean', default: false, describe: 'print results as they finish, not in job order; lines carry no job index (put an id in the job and return it if you need one)' })
    .option('job-timeout-ms', { type: 'number', describe: 'time limit per job; a job over it fails with MS_JOB_TIMEOUT', defaultDescription: 'none' })
    .option('chunk-size', { type: 'number', describe: 'jobs per batch sent to a worker', defaultDescription: 'adaptive' })
    .option('max-job-retries', { type: 'number', default: D.maxJobRetries, describe: 'times a job that crashes its worker is tried again, alone' })
    .option('connect-timeout-ms', { type: 'number', default: D.connectTimeoutMs, describe: 'deadline to connect to a daemon and finish the handshake' })
    .option('window', { type: 'number', default: D.window, describe: 'jobs read or in flight ahead of the oldest unanswered one (bounds memory)' })
    .option('worker-output', { type: 'string', choices: ['stderr', 'logger', 'off'] as const, default: D.workerOutput, describe: 'where console output of the work function on workers goes' })
    .option('progress', { type: 'boolean', describe: 'progress bar on stderr (--no-progress: never)', defaultDescription: 'when stderr is a terminal and stdout is not' })
    .option('dashboard', { type: 'number', describe: 'serve a live dashboard of the run on this port (0: a free one; its address is printed on stderr)', defaultDescription: 'none' })
    .option('dashboard-host', { type: 'string', describe: 'address the dashboard listens on (anything but loopback shows job errors and output to the network: see SECURITY.md)', defaultDescription: DEFAULT_DASHBOARD_OPTIONS.host, implies: 'dashboard' })
    .option('log-level', { type: 'string', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const, default: 'warn', describe: 'MapScale\'s own log on stderr: lines on a terminal, JSON otherwise' });
}

type RunArgv = ReturnType<ReturnType<typeof runOptions>['parseSync']>;

// ── What runs: the module's export ─────────────────────────────────────────

async function loadWorkFunction(modulePath: string, exportName: string, argsText: string): Promise<WorkFunctionInput<unknown, unknown>> {
  let args: unknown;
  try {
    args = JSON.parse(argsText);
  } catch {
    args = undefined;
  }
  if (!Array.isArray(args)) throw new UsageError(`--args must be a JSON array, e.g. --args '[2]'; got ${argsText}`);
  const url = /^file:/i.test(modulePath) ? modulePath : pathToFileURL(resolvePath(modulePath)).href;
  let namespace: Record<string, unknown>;
  try {
    namespace = await import(url) as Record<string, unknown>;
  } catch (error) {
    throw new UsageError(`cannot import --module ${modulePath}: ${(error as Error).message}`, { cause: error });
  }
  if (!Object.hasOwn(namespace, exportName)) {
    throw new UsageError(`--module ${modulePath} has no export "${exportName}"; it exports: ${Object.keys(namespace).join(', ') || 'nothing'}`);
  }
  const value = namespace[exportName];
  const what = `export "${exportName}" of ${modulePath}`;
  // The marker, not instanceof: the module may have loaded another copy of MapScale.
  if (typeof value === 'function' && (value as unknown as Record<symbol, unknown>)[WORK_FUNCTION_BASE] === true) {
    try {
      return new (value as new (...a: unknown[]) => WorkFunctionInput<unknown, unknown>)(...args);
    } catch (error) {
      throw new UsageError(`new ${exportName}(…--args) threw: ${(error as Error).message}`, { cause: error });
    }
  }
  if (args.length > 0) throw new UsageError(`--args is for a WorkFunction subclass, and ${what} is not one`);
  if (typeof value === 'function') {
    if (/^class\b/.test(Function.prototype.toString.call(value))) {
      throw new UsageError(`${what} is a class that does not extend WorkFunction (import { WorkFunction } from 'mapscale')`);
    }
    return value as (job: unknown) => unknown;
  }
  if (typeof value === 'object' && value !== null && typeof (value as { call?: unknown }).call === 'function') {
    return value as { call(job: unknown): unknown };
  }
  throw new UsageError(`${what} is ${value === null ? 'null' : `a ${typeof value}`}, not a WorkFunction subclass or instance, nor a function`);
}

// ── Jobs in: JSON lines ─────────────────────────────────────────────────────

interface JobsInput {
  jobs: AsyncGenerator<unknown>;
  /** Stops reading (an open stdin would otherwise keep waiting for input). */
  close(): void;
}

function openJobs(path: string | undefined): JobsInput {
  const fromStdin = path === undefined || path === '-';
  if (path === undefined && process.stdin.isTTY) {
    throw new UsageError('no jobs: give --jobs FILE, pipe JSON lines into stdin, or --jobs - to type them');
  }
  let stream: Readable;
  if (fromStdin) {
    stream = process.stdin;
  } else {
    // Opened now, so a missing file is a usage error before any worker starts; an fd also reads FIFOs (--jobs <(cmd)).
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw new UsageError(`cannot read --jobs file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    stream = createReadStream('', { fd });
  }
  const name = fromStdin ? 'stdin' : path;
  // readline's iterator pauses the stream when a thousand lines wait, so memory follows the map's window.
  async function* read(): AsyncGenerator<unknown> {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let lineNumber = 0;
    for await (const raw of lines) {
      lineNumber++;
      const line = lineNumber === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (line.trim() === '') continue;
      let job: unknown;
      try {
        job = JSON.parse(line);
      } catch (error) {
        throw new JobsInputError(`${name}, line ${lineNumber}: not a JSON value: ${(error as Error).message}`);
      }
      yield job;
    }
  }
  return { jobs: read(), close: () => stream.destroy() };
}

// ── Results out: JSON lines ─────────────────────────────────────────────────

/**
 * JSON for what msgpack carries and JSON does not. `this[key]` is the value before toJSON, so a
 * Buffer is seen as bytes rather than as { type: 'Buffer', data }.
 */
function jsonReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (typeof raw === 'bigint') return raw.toString();
  if (raw instanceof Map) return [...raw];
  if (raw instanceof Set) return [...raw];
  if (raw instanceof ArrayBuffer) return [...new Uint8Array(raw)];
  if (ArrayBuffer.isView(raw)) {
    if (raw instanceof DataView) return [...new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)];
    return Array.from(raw as unknown as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? x.toString() : x));
  }
  if (raw instanceof Error) return errorJson(raw);
  return value;
}

function toJsonLine(value: unknown): string {
  return JSON.stringify(value, jsonReplacer) ?? 'null';
}

function errorJson(error: Error): { name: string; message: string; code?: string; jobIndex?: number } {
  const { code, jobIndex } = error as { code?: unknown; jobIndex?: unknown };
  return {
    name: error.name, message: error.message,
    ...(typeof code === 'string' ? { code } : {}), ...(typeof jobIndex === 'number' ? { jobIndex } : {}),
  };
}

function settledJson(settled: Settled<unknown>): string {
  return toJsonLine(settled.status === 'fulfilled' ? settled : { status: 'rejected', reason: errorJson(settled.reason) });
}

/**
 * Result lines to stdout: one write per event-loop turn rather than per line, and when the reader
 * falls behind the map waits for it (so memory stays bounded by the window).
 */
class ResultWriter {
  readonly #stream: NodeJS.WritableStream;
  #pending: string[] = [];
  #size = 0;
  #scheduled = false;
  #drained: Promise<void> | null = null;
  closed = false;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
  }

  /** Resolves at once unless the reader is behind. */
  push(line: string): Promise<void> | undefined {
    if (this.closed) return undefined;
    this.#pending.push(line);
    this.#size += line.length + 1;
    if (this.#size >= 64 * 1024) this.#flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
    return this.#drained ?? undefined;
  }

  #flush(): void {
    if (this.#pending.length === 0 || this.closed) return;
    const chunk = this.#pending.join('\n') + '\n';
    this.#pending = [];
    this.#size = 0;
    if (!this.#stream.write(chunk) && !this.#drained) {
      this.#drained = new Promise((resolve) => {
        const done = () => {
          this.#drained = null;
          this.#stream.off('drain', done);
          this.#stream.off('close', done);
          resolve();
        };
        this.#stream.on('drain', done);
        this.#stream.on('close', done);
      });
    }
  }

  /** Writes what is still pending. */
  end(): void {
    this.#flush();
  }
}

// ── Progress on stderr ──────────────────────────────────────────────────────

interface ProgressDisplay {
  update(progress: MapProgress): void;
  stop(): void;
}

function progressDisplay(wanted: boolean | undefined): ProgressDisplay | null {
  const auto = process.stderr.isTTY === true && process.stdout.isTTY !== true;
  if (!(wanted ?? auto)) return null;
  const width = 30;
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    // Asked for with stderr not a terminal (a log file, CI): a line every 2 s instead of redrawing.
    noTTYOutput: wanted === true,
    format: (_options, params, payload: { total?: number; failed: number; rate: number }) => {
      const { total, failed, rate } = payload;
      const parts: string[] = [];
      if (total === undefined) {
        parts.push(`${params.value} jobs`);
      } else {
        const fraction = total === 0 ? 1 : Math.min(1, params.value / total);
        const filled = Math.round(fraction * width);
        parts.push(`[${'='.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(fraction * 100)}% ${params.value}/${total} jobs`);
      }
      parts.push(`${rate < 10 ? rate.toFixed(1) : Math.round(rate)} jobs/s`);
      if (failed > 0) parts.push(`${failed} failed`);
      if (total !== undefined && rate > 0 && params.value < total) parts.push(`ETA ${Math.ceil((total - params.value) / rate)} s`);
      return parts.join(' | ');
    },
  });
  bar.start(0, 0, { total: undefined, failed: 0, rate: 0 });
  return {
    update: (p) => {
      if (p.total !== undefined) bar.setTotal(p.total);
      bar.update(p.done, { total: p.total, failed: p.failed, rate: p.jobsPerSecond });
    },
    stop: () => bar.stop(),
  };
}

// ── Errors on stderr ────────────────────────────────────────────────────────

/** `mapscale: CODE, job N: message`, then the causes, one line each. */
function describeError(error: unknown): string {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    const e = current instanceof Error ? current : new Error(String(current));
    const { code, jobIndex } = e as { code?: unknown; jobIndex?: unknown };
    if (depth === 0) {
      // A usage error is about the command line, not MapScale: its code would only be noise.
      const tags = [typeof code === 'string' && !(e instanceof UsageError) ? code : undefined, typeof jobIndex === 'number' ? `job ${jobIndex}` : undefined].filter(Boolean);
      lines.push(`mapscale: ${tags.length > 0 ? `${tags.join(', ')}: ` : ''}${e.message}`);
    } else {
      lines.push(`  cause: ${e.name}${typeof code === 'string' ? ` (${code})` : ''}: ${e.message}`);
    }
    current = e.cause;
  }
  return lines.join('\n') + '\n';
}

/** The error itself or one of its causes, if it is of a type. */
function findCause<T extends Error>(error: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof type) return e;
  return undefined;
}

function positiveInteger(flag: string, value: number | undefined, min = 1): number | undefined {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new UsageError(`--${flag} must be an integer ≥ ${min}, got ${String(value)}`);
  }
  return value;
}

function processorOptions(argv: RunArgv): ProcessorOptions {
  let secret: string | undefined;
  if (argv['secret-file'] !== undefined) {
    try {
      secret = readFileSync(argv['secret-file'], 'utf8').trim();
    } catch (error) {
      throw new UsageError(`cannot read --secret-file ${argv['secret-file']}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (secret.length === 0) throw new UsageError(`--secret-file ${argv['secret-file']} is empty`);
  }
  return {
    secret,
    chunkSize: positiveInteger('chunk-size', argv['chunk-size']),
    jobTimeoutMs: positiveInteger('job-timeout-ms', argv['job-timeout-ms']),
    maxJobRetries: positiveInteger('max-job-retries', argv['max-job-retries'], 0),
    connectTimeoutMs: positiveInteger('connect-timeout-ms', argv['connect-timeout-ms']),
    window: positiveInteger('window', argv.window),
    workerOutput: argv['worker-output'],
    // Checked by the Processor (InvalidOptionError, a usage error here).
    dashboard: argv.dashboard === undefined ? undefined : { port: argv.dashboard, host: argv['dashboard-host'] },
    // A person at a terminal reads lines; a log file or a pipe gets JSON.
    logger: process.stderr.isTTY === true ? humanLogger(argv['log-level'] as LevelWithSilent) : pino({ level: argv['log-level'] }, pino.destination({ dest: 2, sync: true })),
  };
}

function workerList(argv: RunArgv): (string | number)[] {
  const addresses = (argv.connect ?? []).flatMap((entry) => String(entry).split(',')).map((a) => a.trim()).filter((a) => a !== '');
  if (argv.connect !== undefined && addresses.length === 0) throw new UsageError('--connect needs at least one host:port address');
  const local = positiveInteger('workers', argv.workers);
  if (local === undefined && addresses.length === 0) return [availableParallelism()];
  return [...(local === undefined ? [] : [local]), ...addresses];
}

// ── The run ─────────────────────────────────────────────────────────────────

/** How the run stopped early, when it did: a signal, or the reader of stdout went away. */
let stopReason: { exitCode: number } | null = null;
let stopRun: () => void = () => {};
/** A function, so the compiler does not narrow what signal handlers change behind its back. */
const stoppedWith = (): number | undefined => stopReason?.exitCode;

function onSignal(signal: NodeJS.Signals): void {
  const exitCode = 128 + osConstants.signals[signal];
  if (stopReason) {
    // A second signal: the user will not wait for cleanup. Local daemons exit on their own when our pipe closes.
    process.stderr.write(`mapscale: ${signal} again: exiting without waiting for cleanup\n`);
    process.exit(exitCode);
  }
  stopReason = { exitCode };
  stopRun();
  process.stderr.write(`mapscale: ${signal}: stopping and cleaning up the workers (${signal} again to exit at once)\n`);
}

async function run(argv: RunArgv): Promise<number> {
  const options = processorOptions(argv);
  const workers = workerList(argv);
  const workFn = await loadWorkFunction(argv.module, argv.export, argv.args);
  if (stoppedWith() !== undefined) return stoppedWith()!;
  const input = openJobs(argv.jobs);
  let mapper: Processor<unknown, unknown>;
  try {
    mapper = new Processor(workFn as (job: unknown) => unknown, workers, options);
  } catch (error) {
    input.close();
    if (error instanceof InvalidOptionError || error instanceof ShippingError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
  // Where the page is, once it is (a port that is taken fails the run, through its first result).
  if (options.dashboard) mapper.dashboardAddress().then((a) => process.stderr.write(`mapscale: dashboard at ${a.url}\n`), () => {});
  const writer = new ResultWriter(process.stdout);
  const progress = progressDisplay(argv.progress);
  const abort = new AbortController();
  stopRun = () => {
    // The bar first, so the messages that follow start on a line of their own.
    progress?.stop();
    abort.abort(new Error('stopped by the user'));
    // Forced: a map still waiting for its workers to start ends too.
    mapper.shutdown({ force: true }).catch(() => {});
  };
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    writer.closed = true;
    stopReason ??= { exitCode: error.code === 'EPIPE' ? EXIT_OUTPUT_CLOSED : EXIT_FAILED };
    stopRun();
    if (error.code !== 'EPIPE') process.stderr.write(`mapscale: cannot write results: ${error.message}\n`);
  });
  if (stoppedWith() !== undefined) stopRun();

  const mapOptions = { signal: abort.signal, onProgress: progress ? (p: MapProgress) => progress.update(p) : undefined };
  const results = argv.settle
    ? (argv.unordered ? mapper.imapUnordered(input.jobs, { ...mapOptions, settle: true }) : mapper.imap(input.jobs, { ...mapOptions, settle: true }))
    : (argv.unordered ? mapper.imapUnordered(input.jobs, mapOptions) : mapper.imap(input.jobs, mapOptions));
  let failure: unknown;
  let rejected = 0;
  try {
    for await (const result of results) {
      let line: string;
      if (argv.settle) {
        const settled = result as Settled<unknown>;
        if (settled.status === 'rejected') rejected++;
        line = settledJson(settled);
      } else {
        line = toJsonLine(result);
      }
      const behind = writer.push(line);
      if (behind) await behind;
    }
  } catch (error) {
    failure = error;
  }
  progress?.stop();
  input.close();
  writer.end();
  let exitCode = EXIT_OK;
  if (failure !== undefined && stoppedWith() === undefined) {
    const badInput = findCause(failure, JobsInputError);
    process.stderr.write(describeError(badInput ?? failure));
    exitCode = badInput ? EXIT_USAGE : EXIT_FAILED;
  } else if (rejected > 0) {
    process.stderr.write(`mapscale: ${rejected} job(s) failed; each is a "rejected" line on stdout\n`);
    exitCode = EXIT_FAILED;
  }
  try {
    await mapper.shutdown();
  } catch (error) {
    process.stderr.write(describeError(error));
    if (exitCode === EXIT_OK) exitCode = EXIT_FAILED;
  }
  return stoppedWith() ?? exitCode;
}

async function main(): Promise<number> {
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  let request: RunArgv | undefined;
  let usageFailure: string | undefined;
  await yargs(hideBin(process.argv))
    .scriptName('mapscale')
    .usage('$0 <command> [options]\n\nMapScale from the shell: map JSON-lines jobs over MapScale workers.')
    .command('run', 'map jobs (JSON lines from --jobs or stdin) over workers; results as JSON lines on stdout', runOptions, (argv) => {
      request = argv as unknown as RunArgv;
    })
    .demandCommand(1, 'give a command: run')
    .recommendCommands()
    .strict()
    .version(MAPSCALE_VERSION)
    .help()
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .fail((message, error) => {
      usageFailure = message ?? error?.message ?? 'bad usage';
    })
    .parseAsync();
  if (usageFailure !== undefined || request === undefined) {
    process.stderr.write(`mapscale: ${usageFailure ?? 'give a command: run'}\nmapscale --help, or mapscale run --help, shows the usage.\n`);
    return EXIT_USAGE;
  }
  try {
    return await run(request);
  } catch (error) {
    process.stderr.write(describeError(error));
    return error instanceof UsageError ? EXIT_USAGE : EXIT_FAILED;
  }
}

/** Resolves once what was written to `stream` is handed to the OS (at once if the stream is gone). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  return new Promise((resolve) => stream.write('', () => resolve()));
}

const exitCode = await main();
// Whatever still holds the event loop (an open stdin), the run is over.
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(exitCode);
