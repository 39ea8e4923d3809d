import type { RunView } from '../map-run.js';
import type { WorkerStats } from '../engine/pool.js';
import type { DashboardRecorder, JobErrorEntry, OutputEntry, TaskSegment, WorkerEventEntry } from './recorder.js';

/** What the dashboard reads of the engine, when it takes a snapshot (never on the engine's own paths). */
export interface DashboardSource {
  status(): string;
  runs(): readonly RunView[];
  workers(): WorkerStats[];
}

export interface RunRow {
  id: number;
  status: RunView['status'];
  done: number;
  /** Undefined while a streamed input is still being read. */
  total: number | undefined;
  failed: number;
  jobsPerSecond: number;
  /** Undefined while the total or the rate is unknown. */
  etaMs: number | undefined;
  elapsedMs: number;
}

export interface WorkerRow {
  address: string;
  state: WorkerStats['state'];
  instances: number;
  jobs: number;
  busyPercent: number;
  roundTripMs: number | undefined;
  credit: number;
  failures: number;
  losses: number;
  reconnects: number;
  cpuPercent: number | undefined;
  rssBytes: number | undefined;
}

/** One point of the throughput chart: time (s since the epoch, as uPlot wants), jobs/s, busy % of the instances in service. */
export type ThroughputPoint = [number, number, number];

/**
 * One message to the page. `reset` (the first a page gets) carries what is kept of the past; the
 * others only what is new since the previous tick. Every list is capped, so a message's size does
 * not grow with the number of jobs, maps or failures.
 */
export interface DashboardTick {
  reset: boolean;
  at: number;
  status: string;
  point: ThroughputPoint;
  history?: ThroughputPoint[];
  runs: RunRow[];
  runsActive: number;
  finished: RunRow[];
  workers: WorkerRow[];
  workersTotal: number;
  tasks: TaskSegment[];
  events: WorkerEventEntry[];
  errors: JobErrorEntry[];
  errorsTotal: number;
  output: OutputEntry[];
}

export const SNAPSHOT_LIMITS = Object.freeze({
  runs: 20, finished: 5, workers: 200, history: 600, rateSmoothing: 0.3,
  tasksPerTick: 500, eventsPerTick: 30, errorsPerTick: 20, outputPerTick: 30,
  /** Batches of one instance and map less than this apart are drawn as one bar. */
  taskGapMs: 2,
});

interface RunMemory {
  /** The scheduler's view of the run, which it keeps up to date; read once more after the run ended. */
  view: RunView;
  startedAt: number;
  lastDone: number;
  rate: number;
}

/**
 * Turns the engine's state and the recorder's rings into ticks: rates from the difference between
 * two ticks (so nothing is timed per job), the throughput history, and a cursor into each ring.
 */
export class SnapshotBuilder {
  readonly #source: DashboardSource;
  readonly #recorder: DashboardRecorder;
  readonly #history: ThroughputPoint[] = [];
  readonly #runs = new Map<number, RunMemory>();
  readonly #finished: RunRow[] = [];
  readonly #busyByWorker = new Map<string, number>();
  #last: { at: number; jobs: number; busyMs: number } = { at: Date.now(), jobs: 0, busyMs: 0 };
  #cursor = { tasks: 0, events: 0, errors: 0, output: 0 };
  #latest: DashboardTick | null = null;

  constructor(source: DashboardSource, recorder: DashboardRecorder) {
    this.#source = source;
    this.#recorder = recorder;
  }

  /** Takes the next tick: what is new since the previous one. */
  tick(now = Date.now()): DashboardTick {
    const dt = Math.max(1, now - this.#last.at);
    const recorder = this.#recorder;
    const workers = this.#workerRows(this.#source.workers(), dt);
    const inService = workers.reduce((n, w) => n + (w.state === 'ready' ? w.instances : 0), 0);
    const jobsPerSecond = ((recorder.jobsAnswered - this.#last.jobs) * 1000) / dt;
    const busy = inService > 0 ? Math.min(100, ((recorder.busyMs - this.#last.busyMs) / (dt * inService)) * 100) : 0;
    this.#last = { at: now, jobs: recorder.jobsAnswered, busyMs: recorder.busyMs };
    const point: ThroughputPoint = [now / 1000, round(jobsPerSecond), round(busy)];
    this.#history.push(point);
    if (this.#history.length > SNAPSHOT_LIMITS.history) this.#history.shift();
    const runs = this.#runRows(now, dt);
    const cursor = this.#cursor;
    const tick: DashboardTick = {
      reset: false, at: now, status: this.#source.status(), point,
      runs: runs.slice(-SNAPSHOT_LIMITS.runs), runsActive: runs.length, finished: [...this.#finished],
      workers: workers.slice(0, SNAPSHOT_LIMITS.workers), workersTotal: workers.length,
      tasks: coalesce(recorder.tasks.since(cursor.tasks)).slice(-SNAPSHOT_LIMITS.tasksPerTick),
      events: recorder.events.since(cursor.events, SNAPSHOT_LIMITS.eventsPerTick),
      errors: recorder.errors.since(cursor.errors, SNAPSHOT_LIMITS.errorsPerTick),
      errorsTotal: recorder.errors.pushed,
      output: recorder.output.since(cursor.output, SNAPSHOT_LIMITS.outputPerTick),
    };
    this.#cursor = { tasks: recorder.tasks.pushed, events: recorder.events.pushed, errors: recorder.errors.pushed, output: recorder.output.pushed };
    this.#latest = tick;
    return tick;
  }

  /** For a page that just connected: the latest tick with what is kept of the past instead of the news. */
  reset(): DashboardTick {
    const latest = this.#latest ?? this.tick();
    const recorder = this.#recorder;
    return {
      ...latest, reset: true, history: [...this.#history],
      tasks: coalesce(recorder.tasks.since(0)).slice(-SNAPSHOT_LIMITS.tasksPerTick), events: recorder.events.since(0, SNAPSHOT_LIMITS.eventsPerTick),
      errors: recorder.errors.since(0, SNAPSHOT_LIMITS.errorsPerTick), output: recorder.output.since(0, SNAPSHOT_LIMITS.outputPerTick),
    };
  }

  #workerRows(stats: WorkerStats[], dt: number): WorkerRow[] {
    const seen = new Set<string>();
    const rows = stats.map((s) => {
      seen.add(s.address);
      const before = this.#busyByWorker.get(s.address) ?? s.busyMs;
      this.#busyByWorker.set(s.address, s.busyMs);
      // busyMs arrives with each batch's results, so a tick may hold more than its share: capped.
      const busyPercent = s.slots > 0 && s.state === 'ready' ? Math.min(100, ((s.busyMs - before) / (dt * s.slots)) * 100) : 0;
      return {
        address: s.address, state: s.state, instances: s.slots, jobs: s.jobs, busyPercent: round(busyPercent),
        roundTripMs: s.roundTripMs === undefined ? undefined : round(s.roundTripMs, 3), credit: s.credit, failures: s.failures,
        losses: s.losses, reconnects: s.reconnects,
        cpuPercent: s.daemonCpuPercent === undefined ? undefined : round(s.daemonCpuPercent), rssBytes: s.daemonRssBytes,
      };
    });
    for (const address of this.#busyByWorker.keys()) if (!seen.has(address)) this.#busyByWorker.delete(address);
    return rows;
  }

  #runRows(now: number, dt: number): RunRow[] {
    const active = this.#source.runs();
    const ids = new Set(active.map((run) => run.id));
    // Maps answered since the last tick: one may have started and ended in between.
    for (const { run, firstAt } of this.#recorder.runsTouched.values()) {
      if (!this.#runs.has(run.id)) this.#runs.set(run.id, { view: run, startedAt: firstAt, lastDone: 0, rate: 0 });
    }
    this.#recorder.runsTouched.clear();
    const rows = active.map((run) => {
      let memory = this.#runs.get(run.id);
      if (!memory) this.#runs.set(run.id, (memory = { view: run, startedAt: now, lastDone: 0, rate: 0 }));
      const rate = ((run.done - memory.lastDone) * 1000) / dt;
      memory.rate = memory.rate === 0 ? rate : memory.rate + SNAPSHOT_LIMITS.rateSmoothing * (rate - memory.rate);
      memory.lastDone = run.done;
      return this.#row(run, memory, now);
    });
    // Runs no longer active have ended: keep the last few, as they ended.
    for (const [id, memory] of this.#runs) {
      if (ids.has(id)) continue;
      this.#runs.delete(id);
      const row = this.#row(memory.view, memory, now);
      this.#finished.push({ ...row, jobsPerSecond: row.elapsedMs > 0 ? round((row.done * 1000) / row.elapsedMs) : 0, etaMs: 0 });
      if (this.#finished.length > SNAPSHOT_LIMITS.finished) this.#finished.shift();
    }
    for (const id of this.#recorder.failuresByRun.keys()) if (!ids.has(id)) this.#recorder.failuresByRun.delete(id);
    return rows;
  }

  #row(run: RunView, memory: RunMemory, now: number): RunRow {
    const total = run.exhausted ? run.fetched : undefined;
    const etaMs = total !== undefined && memory.rate > 0 ? Math.round(((total - run.done) / memory.rate) * 1000) : undefined;
    return {
      id: run.id, status: run.status, done: run.done, total, failed: this.#recorder.failuresByRun.get(run.id) ?? 0,
      jobsPerSecond: round(memory.rate), etaMs, elapsedMs: now - memory.startedAt,
    };
  }
}

/**
 * A busy instance answers hundreds of batches a second: back-to-back batches of one map on one
 * instance become one bar (with their jobs summed), so a tick's task list follows the number of
 * instances and gaps, not of batches.
 */
function coalesce(segments: TaskSegment[]): TaskSegment[] {
  const open = new Map<string, TaskSegment>();
  const out: TaskSegment[] = [];
  for (const segment of segments) {
    const last = open.get(segment.instance);
    if (last && last.run === segment.run && segment.start - last.end <= SNAPSHOT_LIMITS.taskGapMs) {
      last.end = Math.max(last.end, segment.end);
      last.jobs += segment.jobs;
      continue;
    }
    const copy = { ...segment };
    open.set(segment.instance, copy);
    out.push(copy);
  }
  return out;
}

function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
