import { hostname } from 'node:os';
import { MAPSCALE_VERSION } from '@mapscale/protocol';

/** Something that counts the jobs it answered (a worker instance: its thread keeps the counts). */
export interface JobCounter {
  readonly counts: { jobsDone: number; jobErrors: number };
  readonly ended: Promise<unknown>;
}

/** What `mapscale-worker status` reports: counters the daemon keeps over its whole life. */
export class DaemonStats {
  readonly startedAt = Date.now();
  /** Connections accepted since start, whatever came of them (status queries included). */
  sessionsTotal = 0;
  jobsDone = 0;
  jobErrors = 0;
  instanceDeaths = 0;
  protocolErrors = 0;
  readonly #live = new Set<JobCounter>();
  readonly #spareThreads: () => number;
  readonly #coordinatorSessions: () => number;

  /** `coordinatorSessions`: how many coordinators have a session open now, from the sessions themselves. */
  constructor(spareThreads: () => number = () => 0, coordinatorSessions: () => number = () => 0) {
    this.#spareThreads = spareThreads;
    this.#coordinatorSessions = coordinatorSessions;
  }

  /** Counts `counter`'s jobs while it lives, and adds its totals to the daemon's once it has ended. */
  track(counter: JobCounter): void {
    this.#live.add(counter);
    void counter.ended.then(() => {
      this.#live.delete(counter);
      const { jobsDone, jobErrors } = counter.counts;
      this.jobsDone += jobsDone;
      this.jobErrors += jobErrors;
    });
  }

  snapshot(workers: number): DaemonStatus {
    let jobsDone = this.jobsDone;
    let jobErrors = this.jobErrors;
    for (const counter of this.#live) {
      jobsDone += counter.counts.jobsDone;
      jobErrors += counter.counts.jobErrors;
    }
    return {
      version: MAPSCALE_VERSION,
      node: process.versions.node,
      hostname: hostname(),
      pid: process.pid,
      uptimeMs: Date.now() - this.startedAt,
      slotsPerSession: workers,
      spareThreads: this.#spareThreads(),
      sessionsOpen: this.#coordinatorSessions(),
      sessionsTotal: this.sessionsTotal,
      jobsDone,
      jobErrors,
      instanceDeaths: this.instanceDeaths,
      protocolErrors: this.protocolErrors,
    };
  }
}

export interface DaemonStatus {
  version: string;
  node: string;
  hostname: string;
  pid: number;
  uptimeMs: number;
  slotsPerSession: number;
  /** Instance threads loaded ahead of the next session (refilled once no session is left). */
  spareThreads: number;
  /** Coordinators served now: sessions that sent their work function (not status queries, not handshakes under way). */
  sessionsOpen: number;
  sessionsTotal: number;
  jobsDone: number;
  jobErrors: number;
  instanceDeaths: number;
  protocolErrors: number;
}
