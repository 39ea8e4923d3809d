import { Engine, type EngineStatus } from './engine.js';
import { InvalidOptionError } from './errors.js';
import { resolveProcessorOptions, type ProcessorOptions } from './options.js';
import { shipWorkFunction } from './shipping.js';
import { parseAddress, type DaemonAddress } from './transport.js';

/** A WorkFunction instance, or a plain function (no setup/cleanup). Job and Result are inferred from it. */
export type WorkFunctionInput<Job, Result> =
  | { call(job: Job): Result | Promise<Result> }
  | ((job: Job) => Result | Promise<Result>);

/** Where the workers are: a number of local worker instances, or "host:port" addresses of daemons. */
export type WorkersInput = number | readonly string[];

/**
 * A distributed `map`. Ships the work function once per worker, then maps job lists over every
 * worker instance, results in job order. Workers stay up between maps until `shutdown()`.
 */
export class Processor<Job = unknown, Result = unknown> {
  readonly #engine: Engine;

  // Functions first: a function also has a `call` property (Function.prototype.call), which would
  // otherwise win inference and make Result unknown.
  constructor(workFn: (job: Job) => Result | Promise<Result>, workers: WorkersInput, options?: ProcessorOptions);
  constructor(workFn: { call(job: Job): Result | Promise<Result> }, workers: WorkersInput, options?: ProcessorOptions);
  constructor(workFn: WorkFunctionInput<Job, Result>, workers: WorkersInput, options: ProcessorOptions = {}) {
    const where = checkWorkers(workers);
    const resolved = resolveProcessorOptions(options);
    this.#engine = new Engine(shipWorkFunction(workFn as never), where, resolved);
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
   * Rejects with JobError on the first job that throws (the workers stay up).
   */
  map(jobs: Iterable<Job> | AsyncIterable<Job>): Promise<Result[]> {
    return this.#engine.map(collect(jobs)) as Promise<Result[]>;
  }

  /**
   * Waits for running maps, runs cleanup() on every worker instance, closes every connection and
   * stops local workers. With `force`, running maps are rejected with ProcessorClosedError instead.
   * Rejects with CleanupError if any cleanup() threw. Afterwards every map rejects at once.
   */
  shutdown(options: { force?: boolean } = {}): Promise<void> {
    return this.#engine.shutdown(options.force === true);
  }
}

function checkWorkers(workers: WorkersInput): number | DaemonAddress[] {
  if (typeof workers === 'number') {
    if (!Number.isInteger(workers) || workers < 1) {
      throw new InvalidOptionError(`workers must be a positive integer or a list of "host:port" addresses, got ${workers}`);
    }
    return workers;
  }
  if (!Array.isArray(workers) || workers.length === 0 || workers.some((w) => typeof w !== 'string')) {
    throw new InvalidOptionError('workers must be a positive integer or a non-empty list of "host:port" addresses');
  }
  return workers.map(parseAddress);
}

async function collect<T>(jobs: Iterable<T> | AsyncIterable<T>): Promise<readonly T[]> {
  if (Array.isArray(jobs)) return jobs;
  if (jobs && typeof (jobs as Iterable<T>)[Symbol.iterator] === 'function') return Array.from(jobs as Iterable<T>);
  if (jobs && typeof (jobs as AsyncIterable<T>)[Symbol.asyncIterator] === 'function') {
    const out: T[] = [];
    for await (const job of jobs as AsyncIterable<T>) out.push(job);
    return out;
  }
  throw new InvalidOptionError('map(jobs) takes an array or an (async) iterable of jobs');
}
