import type { MapRun } from './map-run.js';

/**
 * The runs that may have jobs to hand out, oldest first (runs are served first-come first-served).
 * A binary heap on run id, so finding the next run to serve costs log n however many maps run at
 * once, where a scan of every run made N concurrent maps cost N² (issue 12, item 10). A run leaves
 * the queue when it is found with nothing to hand out, and comes back with the event that gives it
 * more (jobs read, jobs lost with a worker, room in its window).
 */
export class RunQueue {
  readonly #heap: MapRun[] = [];
  readonly #queued = new Set<MapRun>();

  /** Queues `run` unless it is queued already. */
  add(run: MapRun): void {
    if (this.#queued.has(run)) return;
    this.#queued.add(run);
    const heap = this.#heap;
    heap.push(run);
    for (let i = heap.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.id <= run.id) break;
      heap[i] = heap[parent]!;
      heap[parent] = run;
      i = parent;
    }
  }

  /** The oldest run that has jobs to hand out now; runs found without any leave the queue. */
  next(): MapRun | undefined {
    for (;;) {
      const run = this.#heap[0];
      if (!run || (run.status === 'running' && run.unassigned > 0)) return run;
      this.#pop();
    }
  }

  #pop(): void {
    const heap = this.#heap;
    this.#queued.delete(heap[0]!);
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    for (let i = 0; ;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && heap[left]!.id < heap[least]!.id) least = left;
      if (right < heap.length && heap[right]!.id < heap[least]!.id) least = right;
      if (least === i) return;
      [heap[i], heap[least]] = [heap[least]!, heap[i]!];
      i = least;
    }
  }
}
