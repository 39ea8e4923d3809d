import { performance } from 'node:perf_hooks';
import { spin, square, sum } from './work.js';
import type { Mapper, Sizes, WorkloadId } from './workloads.js';

/** The jobs of every workload, made once and shared by all contenders and runs. */
export interface WorkloadData {
  w1Jobs: number[];
  w2Jobs: number[];
  w2Expected: number;
  w3Jobs: Float64Array[];
  w3Expected: number[];
  w4Jobs: number[];
}

export interface Measurement {
  /** In the workload's unit (jobs/s, efficiency, MiB/s, s, ms). */
  value: number;
  /** This process's CPU seconds per million jobs during the timed map (W1 only). */
  cpuPerMillion?: number;
  /** W2: the serial time the efficiency was computed from. */
  serialSeconds?: number;
  /** Latency: the p50 of a fresh contender's first round trips, before its JIT has settled. */
  coldValue?: number;
}

export const WORKERS = 2;

export function makeData(sizes: Sizes, spinIterations: number): WorkloadData {
  const w1Jobs = Array.from({ length: sizes.w1Jobs }, (_, i) => i);
  const w3Jobs = Array.from({ length: sizes.w3Jobs }, (_, j) => {
    const values = new Float64Array(sizes.w3JobBytes / 8);
    for (let i = 0; i < values.length; i++) values[i] = (i % 1000) * 0.5 + j;
    return values;
  });
  return {
    w1Jobs,
    w2Jobs: new Array<number>(sizes.w2Jobs).fill(spinIterations),
    w2Expected: spin(spinIterations),
    w3Jobs,
    w3Expected: w3Jobs.map(sum),
    w4Jobs: Array.from({ length: sizes.w4JobsPerMap }, (_, i) => i),
  };
}

/** Iterations of `spin` that take about `targetMs` on this machine, on the main thread. */
export function calibrateSpin(targetMs: number): number {
  const probe = 2_000_000;
  for (let i = 0; i < 5; i++) spin(probe); // let the JIT settle first
  const samples: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    spin(probe);
    samples.push(performance.now() - t0);
  }
  return Math.max(1_000, Math.round((probe * targetMs) / median(samples)!));
}

/**
 * The W2 baseline: jobs [from, to) one after another on this thread. This machine's speed drifts
 * within a second, so each contender's timed map is bracketed by two halves of the serial run.
 */
function serialSeconds(data: WorkloadData, from: number, to: number): number {
  const t0 = performance.now();
  let wrong = 0;
  for (let i = from; i < to; i++) if (spin(data.w2Jobs[i]!) !== data.w2Expected) wrong++;
  const seconds = (performance.now() - t0) / 1000;
  if (wrong > 0) throw new Error(`serial W2 computed ${wrong} different results`);
  return seconds;
}

/**
 * W1–W3 and latency on one contender, measured warm, as long-lived workers run: untimed maps of the
 * same jobs first (every contender needs a few before its JIT settles, the raw bound included),
 * then the timed one. Every result is checked, so a fast wrong answer cannot pass.
 */
export async function measureWarm(workload: Exclude<WorkloadId, 'w4'>, sizes: Sizes, data: WorkloadData, mapper: Mapper): Promise<Measurement> {
  switch (workload) {
    case 'w1': {
      await warmUp(() => checked(workload, mapper, data.w1Jobs, (j) => square(j as number)));
      // One W1 map takes ~10–25 ms: the median of a few, so one hiccup of the machine is not the figure.
      const cpu0 = process.cpuUsage();
      const seconds: number[] = [];
      for (let i = 0; i < W1_TIMED_MAPS; i++) seconds.push(await timed(() => checked(workload, mapper, data.w1Jobs, (j) => square(j as number))));
      const cpu = process.cpuUsage(cpu0);
      return { value: data.w1Jobs.length / median(seconds)!, cpuPerMillion: ((cpu.user + cpu.system) / 1e6) * (1e6 / (data.w1Jobs.length * W1_TIMED_MAPS)) };
    }
    case 'w2': {
      // Ten-millisecond loops are optimized within their first call (on-stack replacement): a few jobs warm them.
      await checked(workload, mapper, data.w2Jobs.slice(0, WORKERS * 4), () => data.w2Expected);
      const half = data.w2Jobs.length >> 1;
      const before = serialSeconds(data, 0, half);
      const seconds = await timed(() => checked(workload, mapper, data.w2Jobs, () => data.w2Expected));
      const serial = before + serialSeconds(data, half, data.w2Jobs.length);
      return { value: serial / (seconds * WORKERS), serialSeconds: serial };
    }
    case 'w3': {
      const expected = new Map(data.w3Jobs.map((job, i) => [job, data.w3Expected[i]!]));
      await warmUp(() => checked(workload, mapper, data.w3Jobs, (j) => expected.get(j as Float64Array)));
      const seconds = await timed(() => checked(workload, mapper, data.w3Jobs, (j) => expected.get(j as Float64Array)));
      return { value: (data.w3Jobs.length * sizes.w3JobBytes) / (1024 * 1024) / seconds };
    }
    case 'latency': {
      const coldValue = await roundTripP50(mapper, sizes.latencyColdSamples);
      for (let i = sizes.latencyColdSamples; i < sizes.latencyWarmup; i++) await checked(workload, mapper, [i], (j) => square(j as number));
      return { value: await roundTripP50(mapper, sizes.latencySamples), coldValue };
    }
  }
}

/** The p50 in ms of `count` one-job maps of `square`, one at a time, every result checked. */
export async function roundTripP50(mapper: Mapper, count: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const [result] = await mapper.map([i]);
    samples.push(performance.now() - t0);
    if (result !== i * i) throw new Error(`latency: wrong result for job ${i}: ${String(result)}`);
  }
  return median(samples)!;
}

/**
 * W4, measured cold: from the contender's creation (processes, threads, setup) to the end of its
 * last map. `adopt` hands the mapper to the caller at once, so it is closed even on a deadline.
 */
export async function measureCold(sizes: Sizes, data: WorkloadData, open: () => Mapper, adopt: (mapper: Mapper) => void): Promise<Measurement> {
  const t0 = performance.now();
  const mapper = open();
  adopt(mapper);
  for (let m = 0; m < sizes.w4Maps; m++) await checked('w4', mapper, data.w4Jobs, (j) => square(j as number));
  return { value: (performance.now() - t0) / 1000 };
}

/**
 * Up to WARM_UP_MAPS untimed maps, fewer once WARM_UP_BUDGET_MS is spent (a slow contender needs no
 * more). W1's fourth map still ran 20–40% below the steady rate for MapScale and the raw bound alike
 * (their per-batch code is not optimized yet after a hundred batches); from the sixth on, both are steady.
 */
const WARM_UP_MAPS = 8;
const W1_TIMED_MAPS = 3;
const WARM_UP_BUDGET_MS = 1_500;

async function warmUp(map: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < WARM_UP_MAPS && performance.now() - t0 < WARM_UP_BUDGET_MS; i++) await map();
}

async function timed(task: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await task();
  return (performance.now() - t0) / 1000;
}

async function checked(workload: WorkloadId, mapper: Mapper, jobs: readonly unknown[], expect: (job: unknown) => unknown): Promise<void> {
  const results = await mapper.map(jobs);
  if (!Array.isArray(results) || results.length !== jobs.length) {
    throw new Error(`${workload}: expected ${jobs.length} results, got ${Array.isArray(results) ? results.length : typeof results}`);
  }
  for (let i = 0; i < jobs.length; i++) {
    if (results[i] !== expect(jobs[i])) throw new Error(`${workload}: wrong result for job ${i}: ${String(results[i])}`);
  }
}

export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
