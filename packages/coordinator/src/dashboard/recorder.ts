import type { OutputMessage, SerializedError } from '@mapscale/protocol';
import type { JobFailure, RunView } from '../scheduler.js';
import { Ring } from './ring.js';

/** One results message of one instance: what it ran, from about when to when (its busy time before it arrived). */
export interface TaskSegment {
  instance: string;
  run: number;
  jobs: number;
  start: number;
  end: number;
}

export interface WorkerEventEntry {
  at: number;
  kind: 'worker-joined' | 'worker-lost' | 'worker-rejoined' | 'instance-lost';
  worker: string;
  detail?: string;
}

export interface JobErrorEntry {
  at: number;
  run: number;
  jobIndex: number;
  kind: JobFailure['kind'];
  worker: string;
  message: string;
}

export interface OutputEntry {
  at: number;
  worker: string;
  jobIndex?: number;
  stream: string;
  text: string;
}

/** How much of each kind the dashboard keeps (and so the most a page is ever sent of it at once). */
export const RECORDER_LIMITS = Object.freeze({ tasks: 8_192, events: 100, errors: 50, output: 100, textChars: 500, runsTouched: 16 });

/**
 * What the engine tells the dashboard as it happens, kept in bounded rings: per results message
 * (never per job), per failure, per worker event, per output line. No I/O and no timers: the
 * snapshot (snapshot.ts) reads it on its own pace. Each call is a few field writes, so the engine
 * may call it on its results path.
 */
export class DashboardRecorder {
  readonly tasks = new Ring<TaskSegment>(RECORDER_LIMITS.tasks);
  readonly events = new Ring<WorkerEventEntry>(RECORDER_LIMITS.events);
  readonly errors = new Ring<JobErrorEntry>(RECORDER_LIMITS.errors);
  readonly output = new Ring<OutputEntry>(RECORDER_LIMITS.output);
  /** Jobs answered and instance busy time, over all workers: the throughput chart's source. */
  jobsAnswered = 0;
  busyMs = 0;
  /** Failed jobs per run still shown (the snapshot drops runs it no longer shows). */
  readonly failuresByRun = new Map<number, number>();
  /**
   * Maps answered since the snapshot last took them, with when each was first: so a map that starts
   * and ends between two ticks is still listed among the ended ones. The newest few only.
   */
  readonly runsTouched = new Map<number, { run: RunView; firstAt: number }>();

  batchAnswered(worker: string, slot: number, run: RunView, jobs: number, busyMs: number): void {
    const end = Date.now();
    this.jobsAnswered += jobs;
    this.busyMs += busyMs;
    this.#touch(run, end);
    this.tasks.push({ instance: `${worker}#${slot}`, run: run.id, jobs, start: Math.round(end - busyMs), end });
  }

  #touch(run: RunView, at: number): void {
    if (this.runsTouched.has(run.id)) return;
    this.runsTouched.set(run.id, { run, firstAt: at });
    if (this.runsTouched.size > RECORDER_LIMITS.runsTouched) this.runsTouched.delete(this.runsTouched.keys().next().value!);
  }

  workerEvent(kind: WorkerEventEntry['kind'], worker: string, detail?: string): void {
    this.events.push({ at: Date.now(), kind, worker, detail: detail === undefined ? undefined : clip(detail) });
  }

  jobsFailed(failures: readonly JobFailure[], workerOf: (slotId: number) => string, known?: Error): void {
    const at = Date.now();
    for (const failure of failures) {
      this.#touch(failure.run, at);
      this.failuresByRun.set(failure.run.id, (this.failuresByRun.get(failure.run.id) ?? 0) + 1);
      this.errors.push({
        at, run: failure.run.id, jobIndex: failure.jobIndex, kind: failure.kind, worker: workerOf(failure.slotId),
        message: clip(known ? `${known.name}: ${known.message}` : describe(failure.kind, failure.error)),
      });
    }
  }

  workerOutput(worker: string, message: OutputMessage, jobIndex: number | undefined): void {
    this.output.push({ at: Date.now(), worker: `${worker}#${message.slot}`, jobIndex, stream: message.stream, text: clip(message.text) });
  }
}

function describe(kind: JobFailure['kind'], error: SerializedError | undefined): string {
  if (error) return `${error.name}: ${error.message}`;
  return kind === 'timeout' ? 'ran over its time limit' : kind === 'crash' ? 'crashed its worker' : 'failed';
}

function clip(text: string): string {
  return text.length > RECORDER_LIMITS.textChars ? `${text.slice(0, RECORDER_LIMITS.textChars)}…` : text;
}
