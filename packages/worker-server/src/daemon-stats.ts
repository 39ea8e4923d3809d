import { hostname } from 'node:os';
import { MAPSCALE_VERSION } from '@mapscale/protocol';

/** What `mapscale-worker status` reports: counters the daemon keeps over its whole life. */
export class DaemonStats {
  readonly startedAt = Date.now();
  sessionsTotal = 0;
  sessionsOpen = 0;
  jobsDone = 0;
  jobErrors = 0;
  instanceDeaths = 0;
  protocolErrors = 0;

  snapshot(workers: number): DaemonStatus {
    return {
      version: MAPSCALE_VERSION,
      node: process.versions.node,
      hostname: hostname(),
      pid: process.pid,
      uptimeMs: Date.now() - this.startedAt,
      slotsPerSession: workers,
      sessionsOpen: this.sessionsOpen,
      sessionsTotal: this.sessionsTotal,
      jobsDone: this.jobsDone,
      jobErrors: this.jobErrors,
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
  sessionsOpen: number;
  sessionsTotal: number;
  jobsDone: number;
  jobErrors: number;
  instanceDeaths: number;
  protocolErrors: number;
}
