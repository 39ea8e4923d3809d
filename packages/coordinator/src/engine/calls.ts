import { deserializeError } from '@mapscale/protocol';
import { AbortError, InputError, JobError, JobTimeoutError, ProcessorClosedError, WorkerCrashedError } from '../errors.js';
import type { JobFailure, ResultOutcome, RunView, Scheduler } from '../scheduler.js';
import { ArrayResults, OrderedResults, UnorderedResults, type ResultStore } from '../result-stores.js';
import type { ResolvedProcessorOptions } from '../options.js';
import type { Dispatcher } from './dispatch.js';
import { ProgressReporter, type MapProgress } from './progress.js';

export interface RunRequest {
  settle: boolean;
  jobTimeoutMs: number | undefined;
  signal: AbortSignal | undefined;
  onProgress?: ((progress: MapProgress) => void) | undefined;
}

/** One map/imap call: its run, where its input comes from, and who waits for it. */
interface RunHandle {
  readonly run: RunView;
  readonly input: Iterator<unknown> | AsyncIterator<unknown> | null;
  feeding: boolean;
  error: Error | null;
  /** Settles an array map; streams use `wake`. */
  resolve?: (results: unknown[]) => void;
  reject?: (error: Error) => void;
  wake: (() => void) | null;
  detach: () => void;
  progress: ProgressReporter | null;
}

/** What the calls need of the engine around them. */
export interface CallsOwner {
  /** Throws ProcessorClosedError once shutdown has begun. */
  checkOpen(): void;
  /** Settles once the first workers are up (or could not be). */
  readonly ready: Promise<void>;
  /** shutdown({ force: true }) was called. */
  readonly forced: boolean;
  /** The error for a map that has no worker left and none on its way back, or null while there is one. */
  noWorkers(): Error | null;
  /** Holds the process alive while a caller waits; returns the release. */
  hold(): () => void;
  /** The worker that answered (or failed) for a slot: counts a failure against it. */
  failedOn(slotId: number): void;
}

/**
 * The calls: map (settled as one array), imap and imapUnordered (streams), their inputs read
 * lazily within their window, abort signals, progress, and how each failure the scheduler decides
 * becomes the caller's error.
 */
export class Calls {
  readonly #owner: CallsOwner;
  readonly #scheduler: Scheduler;
  readonly #dispatcher: Dispatcher;
  readonly #options: ResolvedProcessorOptions;
  readonly #handles = new Map<RunView, RunHandle>();
  readonly #inProgress = new Set<Promise<unknown>>();

  constructor(owner: CallsOwner, scheduler: Scheduler, dispatcher: Dispatcher, options: ResolvedProcessorOptions) {
    this.#owner = owner;
    this.#scheduler = scheduler;
    this.#dispatcher = dispatcher;
    this.#options = options;
  }

  /** Calls waiting for their jobs to be answered. */
  get pending(): number {
    return this.#handles.size;
  }

  /** Settles once every array map called so far has settled. */
  async drained(): Promise<void> {
    await Promise.allSettled(this.#inProgress);
  }

  /**
   * A map counts as running from the moment it is called: shutdown() waits for it even while its
   * workers are still starting.
   */
  map(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest): Promise<unknown[]> {
    try {
      this.#owner.checkOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    const release = this.#owner.hold();
    const result = this.#startRun(jobs, request, new ArrayResults(Array.isArray(jobs) ? jobs.length : 0))
      .then((handle) => new Promise<unknown[]>((resolve, reject) => {
        if (handle.error) return reject(handle.error);
        if (handle.run.status === 'succeeded') return resolve((handle.run.results as ArrayResults).values);
        handle.resolve = resolve;
        handle.reject = reject;
      }));
    this.#inProgress.add(result);
    const done = () => {
      this.#inProgress.delete(result);
      release();
    };
    result.then(done, done);
    return result;
  }

  /** Results as an async iterator, in job order (`ordered`) or as they come. */
  stream(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest, ordered: boolean): AsyncIterableIterator<unknown> {
    this.#owner.checkOpen();
    const release = this.#owner.hold();
    const store = ordered ? new OrderedResults() : new UnorderedResults();
    const started = this.#startRun(jobs, request, store);
    started.catch(() => {});
    let ready: unknown[] = [];
    let finished = false;
    const finish = (handle?: RunHandle) => {
      if (finished) return;
      finished = true;
      if (handle && handle.run.status === 'running') this.abandon(handle.run, null);
      release();
    };
    const iterator: AsyncIterableIterator<unknown> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        if (finished && ready.length === 0) return { done: true, value: undefined };
        let handle: RunHandle;
        try {
          handle = await started;
        } catch (error) {
          finish();
          throw error;
        }
        for (;;) {
          if (ready.length > 0) return { done: false, value: ready.shift() };
          ready = store.takeReady();
          if (ready.length > 0) {
            // Room freed in the window: dispatch and read more.
            this.#scheduler.onConsumed(handle.run);
            this.#dispatcher.pump();
            this.#resumeFeed(handle);
            continue;
          }
          if (handle.error) {
            const error = handle.error;
            handle.error = null;
            finish(handle);
            throw error;
          }
          if (handle.run.status !== 'running' || finished) {
            finish(handle);
            return { done: true, value: undefined };
          }
          await new Promise<void>((wake) => (handle.wake = wake));
        }
      },
      return: async () => {
        finish(await started.catch(() => undefined));
        ready = [];
        return { done: true, value: undefined };
      },
    };
    return iterator;
  }

  async #startRun(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest, store: ResultStore): Promise<RunHandle> {
    if (request.signal?.aborted) throw new AbortError('the map was aborted before it started', { cause: request.signal.reason });
    await this.#owner.ready;
    if (this.#owner.forced) throw new ProcessorClosedError('the Processor was shut down while this map waited to start');
    // The signal may have fired while the workers were starting: no listener was there to see it.
    if (request.signal?.aborted) throw new AbortError('the map was aborted before it started', { cause: request.signal.reason });
    const noWorkers = this.#owner.noWorkers();
    if (noWorkers) throw noWorkers;
    const options = {
      settle: request.settle,
      timeoutMs: request.jobTimeoutMs,
      maxJobRetries: this.#options.maxJobRetries,
      window: Array.isArray(jobs) ? Infinity : this.#options.window,
    };
    const { run, outcome } = this.#scheduler.openRun(Array.isArray(jobs) ? jobs : undefined, options, store);
    let input: Iterator<unknown> | AsyncIterator<unknown> | null = null;
    if (!Array.isArray(jobs)) {
      input = typeof (jobs as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
        ? (jobs as AsyncIterable<unknown>)[Symbol.asyncIterator]()
        : (jobs as Iterable<unknown>)[Symbol.iterator]();
    }
    const handle: RunHandle = {
      run, input, feeding: false, error: null, wake: null, detach: () => {},
      progress: request.onProgress ? new ProgressReporter(request.onProgress) : null,
    };
    if (request.signal) {
      const signal = request.signal;
      const onAbort = () => this.abandon(run, new AbortError('the map was aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      handle.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#handles.set(run, handle);
    this.settle(outcome);
    if (input) this.#resumeFeed(handle);
    this.#dispatcher.pump();
    return handle;
  }

  #resumeFeed(handle: RunHandle): void {
    if (!handle.feeding && handle.input && handle.run.wantsJobs) void this.#feed(handle);
  }

  /** Reads the input while the run's window has room; each job read may be dispatched at once. */
  async #feed(handle: RunHandle): Promise<void> {
    const { run, input } = handle;
    handle.feeding = true;
    try {
      while (run.wantsJobs) {
        const step = input!.next();
        const item = step instanceof Promise ? await step : (step as IteratorResult<unknown>);
        if (run.status !== 'running') return;
        if (item.done) {
          this.settle(this.#scheduler.inputEnded(run));
          return;
        }
        this.#scheduler.onJobRead(run, item.value);
        if (step instanceof Promise) this.#dispatcher.pump();
      }
    } catch (error) {
      this.abandon(run, new InputError(`reading the jobs failed: ${(error as Error).message}`, { cause: error }));
    } finally {
      handle.feeding = false;
      this.#dispatcher.pump();
    }
  }

  /** Results of `run` arrived: report progress, wake its reader, read more of its input. */
  answered(run: RunView): void {
    const handle = this.#handles.get(run);
    if (!handle) return;
    handle.progress?.report(run);
    handle.wake?.();
    this.#resumeFeed(handle);
  }

  /**
   * Ends a call before its jobs are all answered: `error` for its caller (null when the caller
   * itself stopped reading). Workers are told to drop its queued batches.
   */
  abandon(run: RunView, error: Error | null): void {
    const handle = this.#handles.get(run);
    if (!handle) return;
    this.#dispatcher.cancel(this.#scheduler.endRun(run, 'failed'));
    this.#close(handle, error);
    void (handle.input as AsyncIterator<unknown> | null)?.return?.();
    this.#dispatcher.pump();
  }

  /** Ends every call (with `error`), or with `only`, those it picks. */
  abandonAll(error: Error, only: (results: ResultStore) => boolean = () => true): void {
    for (const handle of [...this.#handles.values()]) if (only(handle.run.results)) this.abandon(handle.run, error);
  }

  /** A call is over: tell whoever waits. */
  #close(handle: RunHandle, error: Error | null): void {
    if (!this.#handles.delete(handle.run)) return;
    handle.detach();
    handle.progress?.report(handle.run, true);
    if (error) {
      handle.error = error;
      handle.reject?.(error);
    } else if (handle.run.status === 'succeeded') {
      handle.resolve?.((handle.run.results as ArrayResults).values);
    }
    handle.wake?.();
  }

  /**
   * Carries out what an event decided: failed jobs become errors (or settled reasons), finished
   * calls resolve. `known`: the error itself, for a failure decided on this side (a job never sent).
   */
  settle(outcome: ResultOutcome, addressOf: (slotId: number) => string = () => 'unknown', known?: Error): void {
    this.#dispatcher.cancel(outcome.cancelled);
    for (const failure of outcome.failed) {
      const handle = this.#handles.get(failure.run);
      if (!handle) continue;
      this.#owner.failedOn(failure.slotId);
      if (handle.progress) handle.progress.failed++;
      const error = known ?? failureError(failure, addressOf(failure.slotId));
      if (failure.run.options.settle) failure.run.results.put(failure.jobIndex, { status: 'rejected', reason: error });
      else this.abandon(failure.run, error);
    }
    for (const run of outcome.completed) {
      const handle = this.#handles.get(run);
      if (handle) this.#close(handle, null);
    }
  }
}

function failureError(failure: JobFailure, address: string): Error {
  const cause = failure.error ? deserializeError(failure.error) : undefined;
  switch (failure.kind) {
    case 'error': return new JobError(failure.jobIndex, address, cause!);
    case 'timeout': return new JobTimeoutError(failure.jobIndex, failure.run.options.timeoutMs ?? 0, address);
    case 'crash': return new WorkerCrashedError(failure.jobIndex, failure.attempts ?? 0, address, cause);
  }
}
