import type { ComputeName } from './work.js';

export type WorkloadId = 'w1' | 'w2' | 'w3' | 'w4' | 'latency';
export const WORKLOAD_IDS: readonly WorkloadId[] = ['w1', 'w2', 'w3', 'w4', 'latency'];

/** What every contender has to offer: a map over a fixed pool of 2 workers, results in job order. */
export interface Mapper {
  map(jobs: readonly unknown[]): Promise<unknown[]>;
  /** Stops every thread, process and socket it started. `force`: after a failure or a deadline. */
  close(force?: boolean): Promise<void>;
}

export interface WorkloadSpec {
  readonly id: WorkloadId;
  readonly title: string;
  readonly unit: string;
  readonly higherIsBetter: boolean;
  readonly compute: ComputeName;
  /** Setup each worker runs before its first job (W4 only). */
  readonly setupMs: number;
  /** Jobs per frame of the raw reference: ~1,000 for cheap jobs, fewer where jobs are big or slow. */
  readonly rawFrameJobs: number;
  /** Jobs per task of hand-batched Piscina; undefined where batching by hand makes no sense. */
  readonly piscinaChunk: number | undefined;
}

export interface Sizes {
  readonly w1Jobs: number;
  readonly w2Jobs: number;
  readonly w2JobMs: number;
  readonly w3Jobs: number;
  readonly w3JobBytes: number;
  readonly w4SetupMs: number;
  readonly w4Maps: number;
  readonly w4JobsPerMap: number;
  readonly latencySamples: number;
  /** Untimed round trips before the timed ones; the first `latencyColdSamples` of them give the cold figure. */
  readonly latencyWarmup: number;
  readonly latencyColdSamples: number;
  readonly capacityJobs: number;
  readonly capacityDaemons: number;
  readonly capacityInstances: number;
  /** How many one-job maps run at once, one figure per entry: per-map cost should not grow with N. */
  readonly concurrentMaps: readonly number[];
  /**
   * Untimed one-job maps before the first timed round, in rounds of the smallest N: per-map cost
   * keeps falling over the first ~10,000 (1,000 at a time: ~200 µs, then ~100, ~60, ~30), as the JIT
   * tiers up the path.
   */
  readonly concurrentWarmupMaps: number;
  /** Cold start (issue 13): the job counts of a fresh pool's first map, one figure each (the targets name the first two). */
  readonly coldMapJobs: readonly number[];
  /** Jobs of the trivial app, started and run to its exit. */
  readonly coldAppJobs: number;
  /** Jobs per map of a fresh coordinator against a warm daemon; its first maps are timed one by one. */
  readonly coldDaemonJobs: number;
  /** Untimed maps after those before the same Processor's steady-state rate is timed. */
  readonly coldSteadyAfter: number;
  /** A fresh coordinator's first one-job round trips, of which the p50 is the figure. */
  readonly coldRoundTrips: number;
  /** Upper bound of one measurement, startup and teardown included. */
  readonly measureDeadlineMs: number;
}

/** The sizes issue 3 names. */
export const FULL_SIZES: Sizes = Object.freeze({
  w1Jobs: 100_000,
  w2Jobs: 200,
  w2JobMs: 10,
  w3Jobs: 200,
  w3JobBytes: 1024 * 1024,
  w4SetupMs: 300,
  w4Maps: 5,
  w4JobsPerMap: 1_000,
  latencySamples: 2_000,
  // Every contender's round trip keeps getting faster for its first 3,000–5,000 (the JIT tiers up its
  // whole path, longer paths later): the timed ones come after that, where long-lived workers live.
  latencyWarmup: 6_000,
  latencyColdSamples: 1_000,
  capacityJobs: 1_000_000,
  capacityDaemons: 4,
  capacityInstances: 4,
  concurrentMaps: Object.freeze([10_000, 20_000, 40_000]),
  concurrentWarmupMaps: 20_000,
  coldMapJobs: Object.freeze([100_000, 1_000_000]),
  coldAppJobs: 10,
  coldDaemonJobs: 100_000,
  coldSteadyAfter: 8,
  coldRoundTrips: 1_000,
  measureDeadlineMs: 120_000,
});

/** A smoke run: every code path, a fraction of the work. Figures are not comparable with full runs. */
export const QUICK_SIZES: Sizes = Object.freeze({
  ...FULL_SIZES,
  w1Jobs: 20_000,
  w2Jobs: 40,
  w3Jobs: 40,
  w4Maps: 2,
  latencySamples: 100,
  latencyWarmup: 300,
  latencyColdSamples: 100,
  capacityJobs: 200_000,
  concurrentMaps: Object.freeze([1_000, 2_000, 4_000]),
  coldMapJobs: Object.freeze([20_000, 200_000]),
  coldDaemonJobs: 20_000,
  coldSteadyAfter: 4,
  coldRoundTrips: 200,
  measureDeadlineMs: 60_000,
});

export function workloadSpecs(sizes: Sizes): Record<WorkloadId, WorkloadSpec> {
  return {
    w1: {
      id: 'w1', title: `W1: ${sizes.w1Jobs.toLocaleString('en-US')} jobs \`x*x\`, ordered`, unit: 'jobs/s', higherIsBetter: true,
      compute: 'square', setupMs: 0, rawFrameJobs: 1_000, piscinaChunk: 1_000,
    },
    w2: {
      // One job per frame: a frame of ten-millisecond jobs already dwarfs its transport cost, and
      // anything coarser leaves a worker idle at the end of 200 jobs.
      id: 'w2', title: `W2: ${sizes.w2Jobs} CPU jobs of ~${sizes.w2JobMs} ms`, unit: 'efficiency vs serial', higherIsBetter: true,
      compute: 'spin', setupMs: 0, rawFrameJobs: 1, piscinaChunk: undefined,
    },
    w3: {
      // 4 MiB frames, like MapScale's default byte bound per batch.
      id: 'w3', title: `W3: ${sizes.w3Jobs} × ${sizes.w3JobBytes / 1024 / 1024} MiB Float64Array → sum`, unit: 'MiB/s', higherIsBetter: true,
      compute: 'sum', setupMs: 0, rawFrameJobs: 4, piscinaChunk: undefined,
    },
    w4: {
      // Half a map per task/frame, so both workers share each map.
      id: 'w4', title: `W4: ${sizes.w4SetupMs} ms setup, ${sizes.w4Maps} maps × ${sizes.w4JobsPerMap.toLocaleString('en-US')} jobs`,
      unit: 's incl. setup', higherIsBetter: false,
      compute: 'square', setupMs: sizes.w4SetupMs, rawFrameJobs: Math.ceil(sizes.w4JobsPerMap / 2), piscinaChunk: Math.ceil(sizes.w4JobsPerMap / 2),
    },
    latency: {
      id: 'latency', title: 'latency: 1-job map round trip, p50', unit: 'ms', higherIsBetter: false,
      compute: 'square', setupMs: 0, rawFrameJobs: 1, piscinaChunk: undefined,
    },
  };
}

export type ContenderId = 'ms-local' | 'ms-child-daemon' | 'ms-daemon' | 'piscina-task' | 'piscina-batched' | 'mp-pool' | 'raw' | 'raw-thread' | 'raw-thread-socket';
export const CONTENDER_IDS: readonly ContenderId[] = ['ms-local', 'ms-child-daemon', 'ms-daemon', 'piscina-task', 'piscina-batched', 'mp-pool', 'raw', 'raw-thread', 'raw-thread-socket'];
export const MAPSCALE_IDS: readonly ContenderId[] = ['ms-local', 'ms-child-daemon', 'ms-daemon'];
export const PEER_IDS: readonly ContenderId[] = ['piscina-task', 'piscina-batched', 'mp-pool', 'raw', 'raw-thread', 'raw-thread-socket'];
/** Contenders whose latency is also measured with every process on one CPU (bench/pinned.ts). */
export const PINNED_IDS = ['ms-local', 'ms-daemon', 'raw', 'raw-thread-socket'] as const satisfies readonly ContenderId[];
export type PinnedId = (typeof PINNED_IDS)[number];

export const CONTENDER_LABELS: Readonly<Record<ContenderId, string>> = Object.freeze({
  'ms-local': 'MapScale local',
  'ms-child-daemon': 'MapScale local, child daemon',
  'ms-daemon': 'MapScale, 1 daemon on loopback',
  'piscina-task': 'Piscina 1 task/job',
  'piscina-batched': 'Piscina, batched by hand',
  'mp-pool': 'Python mp.Pool',
  raw: 'raw TCP + msgpackr bound',
  'raw-thread': 'raw bound, jobs on a worker thread',
  'raw-thread-socket': 'raw bound, socket and jobs on a worker thread',
});

/** What issues 3 and 13 ask of MapScale at steady state, per workload. */
export interface Target {
  /** Against the raw bound's figure of the same run, or the workload's own figure. */
  against: 'raw' | 'absolute';
  op: '>=' | '<=';
  value: number;
  /** Peers MapScale must also beat in the same run. */
  aheadOf?: readonly ContenderId[];
}

export const TARGETS: Readonly<Record<WorkloadId, Target>> = Object.freeze({
  w1: { against: 'raw', op: '>=', value: 0.5, aheadOf: ['mp-pool', 'piscina-batched'] },
  // Issue 13: 0.97× the raw bound's efficiency in the same run, instead of an absolute 0.95 that the raw bound itself misses here.
  w2: { against: 'raw', op: '>=', value: 0.97 },
  w3: { against: 'raw', op: '>=', value: 0.75 },
  w4: { against: 'raw', op: '<=', value: 1.15 },
  latency: { against: 'raw', op: '<=', value: 2 },
});
