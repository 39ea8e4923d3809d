import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { Engine, type EngineStatus, type WorkerEvent, type WorkerSpec, type WorkerStats } from './engine.js';
import { InvalidOptionError } from './errors.js';
import { resolveMapOptions, resolveProcessorOptions, type MapOptions, type ProcessorOptions, type ResolvedProcessorOptions } from './options.js';
import { shipWorkFunction } from './shipping.js';
import { parseAddress } from '@mapscale/transport';
import type { Settled } from './result-stores.js';
import type { DashboardAddress } from './dashboard/dashboard.js';

/** A WorkFunction instance, or a plain function (no setup/cleanup). Job and Result are inferred from it. */
export type WorkFunctionInput<Job, Result> =
  | { call(job: Job): Result | Promise<Result> }
  | ((job: Job) => Result | Promise<Result>);

/**
 * Where the workers are: a number of local worker instances, "host:port" addresses of daemons, or
 * a mix (`[2, 'hostA:7100']`: two local instances and a daemon). Left out: one local instance per
 * CPU (`os.availableParallelism()`), as `multiprocessing.Pool()` and `mapscale run` do.
 */
export type WorkersInput = number | readonly (string | number)[];

export type Jobs<Job> = Iterable<Job> | AsyncIterable<Job>;

/** Events a Processor emits as its workers come and go. */
export interface ProcessorEvents {
  /** A daemon (or the local workers) connected and set up for the first time. */
  'worker-joined': [WorkerEvent];
  /** A daemon was lost (died, unreachable, silent, stopping); its jobs went elsewhere. */
  'worker-lost': [WorkerEvent];
  /** A lost daemon is back, set up again, and takes jobs. */
  'worker-rejoined': [WorkerEvent];
}

/**
 * A distributed `map`. Ships the work function once per worker, then maps job lists over every
 * worker instance, results in job order. Workers stay up between maps until `shutdown()`, which
 * `await using mapper = new Processor(…)` calls when the block ends.
 */
export class Processor<Job = unknown, Result = unknown> extends EventEmitter<ProcessorEvents> implements AsyncDisposable {
  readonly #engine: Engine;
  readonly #options: ResolvedProcessorOptions;

  // Functions first: a function also has a `call` property (Function.prototype.call), which would
  // otherwise win inference and make Result unknown.
  constructor(workFn: (job: Job) => Result | Promise<Result>, workers?: WorkersInput, options?: ProcessorOptions);
  constructor(workFn: { call(job: Job): Result | Promise<Result> }, workers?: WorkersInput, options?: ProcessorOptions);
  constructor(workFn: WorkFunctionInput<Job, Result>, workers?: WorkersInput, options: ProcessorOptions = {}) {
    super();
    const where = checkWorkers(workers);
    this.#options = resolveProcessorOptions(options);
    // Where the app made this Processor: a file to look for the work function's source in (see shipping).
    const calledAt: { stack?: string } = {};
    Error.captureStackTrace(calledAt, new.target);
    this.#engine = new Engine(() => shipWorkFunction(workFn as never, calledAt.stack), where, this.#options, (event, payload) => {
      this.emit(event, payload);
    });
  }

  /** 'starting' | 'running' | 'closing' | 'closed'. */
  get status(): EngineStatus {
    return this.#engine.status;
  }

  /** Worker instances currently connected and set up. */
  get workerCount(): number {
    return this.#engine.workerCount;
  }

  /**
   * Runs `call(job)` for every job across the workers; resolves to the results in job order.
   * Rejects on the first job that fails (JobError, JobTimeoutError, WorkerCrashedError), unless
   * `settle` is set; the workers stay up either way.
   */
  map(jobs: Jobs<Job>, options: MapOptions & { settle: true }): Promise<Settled<Result>[]>;
  map(jobs: Jobs<Job>, options?: MapOptions): Promise<Result[]>;
  map(jobs: Jobs<Job>, options?: MapOptions): Promise<unknown[]> {
    try {
      return this.#engine.map(checkJobs(jobs), resolveMapOptions(options, this.#options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Results as they are ready, in job order. Reads the jobs lazily, so memory stays bounded. */
  imap(jobs: Jobs<Job>, options: MapOptions & { settle: true }): AsyncIterableIterator<Settled<Result>>;
  imap(jobs: Jobs<Job>, options?: MapOptions): AsyncIterableIterator<Result>;
  imap(jobs: Jobs<Job>, options?: MapOptions): AsyncIterableIterator<unknown> {
    return this.#engine.stream(checkJobs(jobs), resolveMapOptions(options, this.#options), true);
  }

  /** Results as soon as each is ready, in no particular order. */
  imapUnordered(jobs: Jobs<Job>, options: MapOptions & { settle: true }): AsyncIterableIterator<Settled<Result>>;
  imapUnordered(jobs: Jobs<Job>, options?: MapOptions): AsyncIterableIterator<Result>;
  imapUnordered(jobs: Jobs<Job>, options?: MapOptions): AsyncIterableIterator<unknown> {
    return this.#engine.stream(checkJobs(jobs), resolveMapOptions(options, this.#options), false);
  }

  /** Adds daemons (or local instances) to the pool, also while maps run; resolves once they have joined. */
  addWorkers(workers: readonly (string | number)[]): Promise<void> {
    try {
      return this.#engine.addWorkers(checkWorkers(workers ?? []));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Takes daemons out of the pool, also while maps run: their jobs go to the others, their instances clean up. */
  removeWorkers(addresses: readonly string[]): Promise<void> {
    return this.#engine.removeWorkers(addresses);
  }

  /** Per worker, as this coordinator sees it: state, slots, jobs, busy time, failures, losses, reconnects. */
  stats(): WorkerStats[] {
    return this.#engine.stats();
  }

  /** Where `dashboard: { port }` serves its page ({ host, port, url }), once it does; rejects with DashboardListenError if it cannot. */
  dashboardAddress(): Promise<DashboardAddress> {
    return this.#engine.dashboardAddress();
  }

  /**
   * Waits for running maps, runs cleanup() on every worker instance, closes every connection and
   * stops local workers. With `force`, running maps are rejected with ProcessorClosedError instead;
   * open imap streams end with it either way. Rejects with CleanupError if any cleanup() threw.
   * Afterwards every map rejects at once.
   */
  shutdown(options: { force?: boolean } = {}): Promise<void> {
    return this.#engine.shutdown(options.force === true);
  }

  /** `await using mapper = new Processor(…)`: a shutdown (not forced) when the block is left. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

function checkWorkers(workers: WorkersInput | undefined): WorkerSpec[] {
  const list = workers === undefined ? [availableParallelism()] : typeof workers === 'number' ? [workers] : workers;
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidOptionError('workers must be a positive integer, or a non-empty list of "host:port" addresses and local counts');
  }
  return list.map((entry: unknown) => {
    if (typeof entry === 'string') return parseAddress(entry);
    if (typeof entry === 'number' && Number.isInteger(entry) && entry >= 1) return { local: entry };
    throw new InvalidOptionError(`workers: ${JSON.stringify(entry)} is neither a positive integer (local instances) nor a "host:port" address`);
  });
}

function checkJobs<T>(jobs: Jobs<T>): Jobs<T> {
  const ok = jobs !== null && typeof jobs === 'object' &&
    (typeof (jobs as Iterable<T>)[Symbol.iterator] === 'function' || typeof (jobs as AsyncIterable<T>)[Symbol.asyncIterator] === 'function');
  if (!ok && typeof jobs !== 'string') throw new InvalidOptionError('jobs must be an array or an (async) iterable of jobs');
  return jobs;
}
