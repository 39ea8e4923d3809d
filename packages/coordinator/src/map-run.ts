import type { ResultStore } from './result-stores.js';
import { JobCost } from './batch-sizing.js';
import { ArrayResults } from './result-stores.js';

export type RunStatus = 'running' | 'succeeded' | 'failed';

export interface RunOptions {
  /** Per-job failures become results instead of failing the run (`map(jobs, { settle: true })`). */
  settle: boolean;
  /** A job running longer fails with JobTimeoutError and its instance is replaced. */
  timeoutMs: number | undefined;
  /** At most this many jobs are read or dispatched ahead of the lowest unanswered one. */
  window: number;
  /** A job that kills its worker this many times more than once fails with WorkerCrashedError. */
  maxJobRetries: number;
}

export const DEFAULT_RUN_OPTIONS: Readonly<RunOptions> = Object.freeze({
  settle: false,
  timeoutMs: undefined,
  window: Infinity,
  maxJobRetries: 2,
});

/**
 * The jobs of a run that may still be needed: every job from the lowest unanswered one on (a lost
 * worker's jobs are sent again). An array is used as it is; a streamed input is buffered and its
 * answered prefix dropped, so memory follows the window, not the input's length.
 */
class JobBuffer {
  #items: unknown[];
  #base = 0;
  readonly #owned: boolean;

  constructor(items?: readonly unknown[]) {
    this.#items = items ? (items as unknown[]) : [];
    this.#owned = items === undefined;
  }

  get fetched(): number {
    return this.#base + this.#items.length;
  }

  push(job: unknown): void {
    this.#items.push(job);
  }

  slice(start: number, end: number): unknown[] {
    return this.#items.slice(start - this.#base, end - this.#base);
  }

  /** Jobs [start, end) where they are, without a copy: `items[from..to)`. Read it at once: the buffer may move. */
  view(start: number, end: number): JobsView {
    return { items: this.#items, from: start - this.#base, to: end - this.#base };
  }

  /** Jobs below `upTo` are answered for good; a streamed buffer lets them go in large steps. */
  release(upTo: number): void {
    if (!this.#owned) return;
    const drop = upTo - this.#base;
    if (drop >= 1024 && drop * 2 >= this.#items.length) {
      this.#items.splice(0, drop);
      this.#base = upTo;
    }
  }
}

/** Which job indices are answered: everything below `lowest`, plus disjoint sorted ranges above it. */
class AnsweredRanges {
  lowest = 0;
  #above: [number, number][] = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    if (start === this.lowest) {
      this.lowest = end;
    } else {
      let i = this.#above.length;
      while (i > 0 && this.#above[i - 1]![0] > start) i--;
      this.#above.splice(i, 0, [start, end]);
    }
    // Ranges never overlap (each job is answered once), so merging is a walk from the front.
    while (this.#above.length > 0 && this.#above[0]![0] <= this.lowest) {
      this.lowest = Math.max(this.lowest, this.#above.shift()![1]);
    }
  }
}

/**
 * What the rest of the coordinator may see of a run: the scheduler owns MapRun and alone changes
 * it (events in, decisions out); everything else reads through this.
 */
export interface RunView {
  readonly id: number;
  readonly status: RunStatus;
  readonly options: Readonly<RunOptions>;
  readonly results: ResultStore;
  /** Jobs answered so far (failures of a settling run included). */
  readonly done: number;
  /** Jobs read from the input so far. */
  readonly fetched: number;
  readonly exhausted: boolean;
  /** Whether the feeder should read more input now. */
  readonly wantsJobs: boolean;
  jobs(start: number, end: number): unknown[];
  /** The same jobs without a copy (encoding reads them at once). */
  jobsView(start: number, end: number): JobsView;
}

/** Jobs as they lie in a run's buffer: items[from..to). */
export interface JobsView {
  readonly items: readonly unknown[];
  readonly from: number;
  readonly to: number;
}

/** One `map`/`imap` call as the scheduler sees it. */
export class MapRun implements RunView {
  readonly id: number;
  readonly options: RunOptions;
  readonly results: ResultStore;
  status: RunStatus = 'running';
  /** Jobs answered so far (failures of a settling run included). */
  done = 0;
  /** Next job index never handed out. */
  next = 0;
  /** Ranges handed out once, lost with their worker, to be handed out again first. */
  readonly retry: [number, number][] = [];
  /**
   * Ranges that were running when a whole worker died: one of their jobs may have killed it.
   * They go out in halves, down to single jobs, so a poison job is found without blaming others.
   */
  readonly suspects: [number, number][] = [];
  /** How often each job was running alone on a worker that died. */
  readonly crashes = new Map<number, number>();
  /** Measured cost per job (see JobCost), from the workers' busy time; what batch sizing reads. */
  perJobMs: number | undefined;
  /** What perJobMs is measured from. */
  jobCost = new JobCost();
  /** Measured payload bytes per job (EWMA), from observeEncoded. */
  perJobBytes: number | undefined;
  batchesSent = 0;
  readonly #jobs: JobBuffer;
  readonly #answered = new AnsweredRanges();
  #exhausted: boolean;

  /** With `jobs`, the input is complete; without, feed it with pushJob() and endInput(). */
  constructor(id: number, jobs?: readonly unknown[], options: Partial<RunOptions> = {}, results?: ResultStore) {
    this.id = id;
    this.options = { ...DEFAULT_RUN_OPTIONS, ...options };
    this.#jobs = new JobBuffer(jobs);
    this.#exhausted = jobs !== undefined;
    this.results = results ?? new ArrayResults(jobs?.length ?? 0);
  }

  /** Jobs read from the input so far. */
  get fetched(): number {
    return this.#jobs.fetched;
  }

  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** The number of jobs, once the input has ended; Infinity before. */
  get total(): number {
    return this.#exhausted ? this.#jobs.fetched : Infinity;
  }

  /** Lowest job index not yet answered. */
  get lowestUnanswered(): number {
    return this.#answered.lowest;
  }

  /** Whether the feeder should read more input now. */
  get wantsJobs(): boolean {
    return this.status === 'running' && !this.#exhausted && this.fetched < this.#answered.lowest + this.options.window;
  }

  /** Jobs that may be handed out now: read, inside the window, and not held up by a slow consumer. */
  get dispatchLimit(): number {
    if (this.results.backlog >= this.options.window) return this.next;
    return Math.min(this.fetched, this.#answered.lowest + this.options.window);
  }

  /** Fresh jobs and lost ones waiting to be handed out. */
  get unassigned(): number {
    let n = Math.max(0, this.dispatchLimit - this.next);
    for (const [start, end] of this.retry) n += end - start;
    for (const [start, end] of this.suspects) n += end - start;
    return n;
  }

  get isComplete(): boolean {
    return this.#exhausted && this.done >= this.#jobs.fetched;
  }

  pushJob(job: unknown): void {
    this.#jobs.push(job);
  }

  endInput(): void {
    this.#exhausted = true;
  }

  jobs(start: number, end: number): unknown[] {
    return this.#jobs.slice(start, end);
  }

  jobsView(start: number, end: number): JobsView {
    return this.#jobs.view(start, end);
  }

  /** Jobs [start, end) are answered (with results or failures). */
  markAnswered(start: number, end: number): void {
    this.#answered.add(start, end);
    this.done += end - start;
    this.#jobs.release(this.#answered.lowest);
  }
}
