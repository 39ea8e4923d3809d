/**
 * Where a run's results go as they arrive. `map` keeps them all in job order (ArrayResults);
 * `imap` hands them out in job order and forgets them (OrderedResults); `imapUnordered` hands them
 * out as they come (UnorderedResults). The streaming stores count what waits to be consumed
 * (`backlog`), which the scheduler reads to stop dispatching for a consumer that falls behind.
 */
export type Settled<R> = { status: 'fulfilled'; value: R } | { status: 'rejected'; reason: Error };

export interface ResultStore {
  /** A job's result (already wrapped as a Settled when the run settles). */
  put(index: number, value: unknown): void;
  /**
   * Results of the jobs from `first` on, in order: a results part at once. One tight loop per
   * store, rather than a call per value through this interface (the stores differ, so such a call
   * stays slow until V8 has seen enough of it: a fresh process's first map).
   */
  putAll(first: number, values: readonly unknown[]): void;
  /** Results held that the consumer has not taken. */
  readonly backlog: number;
}

export class ArrayResults implements ResultStore {
  readonly values: unknown[];
  constructor(expected = 0) {
    this.values = new Array(expected);
  }
  put(index: number, value: unknown): void {
    this.values[index] = value;
  }
  putAll(first: number, values: readonly unknown[]): void {
    const into = this.values;
    for (let i = 0; i < values.length; i++) into[first + i] = values[i];
  }
  get backlog(): number {
    return 0;
  }
}

/** A hole in the ordered buffer: that job has not been answered yet. */
const PENDING: unique symbol = Symbol('pending');

export class OrderedResults implements ResultStore {
  #buffer: unknown[] = [];
  /** Index of #buffer[0]: the next result to hand out. */
  #base = 0;
  #held = 0;

  put(index: number, value: unknown): void {
    const at = index - this.#base;
    while (this.#buffer.length <= at) this.#buffer.push(PENDING);
    this.#buffer[at] = value;
    this.#held++;
  }

  putAll(first: number, values: readonly unknown[]): void {
    for (let i = 0; i < values.length; i++) this.put(first + i, values[i]);
  }

  get backlog(): number {
    return this.#held;
  }

  /** Index of the next result to hand out. */
  get nextIndex(): number {
    return this.#base;
  }

  /** Takes every result ready in order, or none. */
  takeReady(): unknown[] {
    let n = 0;
    while (n < this.#buffer.length && this.#buffer[n] !== PENDING) n++;
    if (n === 0) return [];
    const ready = this.#buffer.splice(0, n);
    this.#base += n;
    this.#held -= n;
    return ready;
  }
}

export class UnorderedResults implements ResultStore {
  #queue: unknown[] = [];
  put(_index: number, value: unknown): void {
    this.#queue.push(value);
  }
  putAll(_first: number, values: readonly unknown[]): void {
    for (let i = 0; i < values.length; i++) this.#queue.push(values[i]);
  }
  get backlog(): number {
    return this.#queue.length;
  }
  takeReady(): unknown[] {
    const ready = this.#queue;
    this.#queue = [];
    return ready;
  }
}
