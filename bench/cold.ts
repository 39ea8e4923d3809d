/**
 * The cold-start section (issue 13): users mostly meet MapScale fresh (one `new Processor`, one big
 * map, done; or a fresh coordinator against daemons up for days), not after the warm-up the other
 * sections give every contender. So here every figure comes from a process started for it alone:
 *  (a) a fresh pool and its first map of N tiny jobs, spawn to exit (bench/cold-first-map.ts,
 *      bench/cold_first_map.py);
 *  (b) a trivial app of 10 jobs on 2 local workers, spawn to exit (bench/cold-app/);
 *  (c) a fresh coordinator against a daemon that has served coordinators before: its first maps'
 *      rates beside its own steady rate, and the raw bound's first maps, fresh on both ends
 *      (bench/cold-coordinator.ts);
 *  (d) the p50 of the same fresh coordinator's first round trips, and the raw bound's.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runToExit } from './children.js';
import { startDaemon, type Daemon } from './daemons.js';
import type { Series } from './figures.js';
import { WORKERS } from './measure.js';
import type { Sizes } from './workloads.js';

/** `ms-local`: `new Processor(fn, 2)`, as it comes; `ms-child-daemon`: with `{ inProcess: false }`, its workers in a child daemon process. */
export const FIRST_MAP_IDS = ['ms-local', 'ms-child-daemon', 'piscina-batched', 'mp-pool', 'raw'] as const;
export type FirstMapId = (typeof FIRST_MAP_IDS)[number];
export const APP_IDS = ['ms-local', 'ms-child-daemon', 'piscina-task', 'mp-pool'] as const;
export type AppId = (typeof APP_IDS)[number];
export const APP_MARKS = ['imported', 'mapped', 'shutDown'] as const;
export type AppMark = (typeof APP_MARKS)[number];
/** (d)'s contenders: a fresh coordinator against the warm daemon, and the raw bound, fresh. */
export const COORDINATOR_IDS = ['ms-daemon', 'raw'] as const;
/** (c)'s: those, and for comparison (no target) a fresh local Processor, its workers as fresh as it. */
export const MAP_CURVE_IDS = [...COORDINATOR_IDS, 'ms-local', 'ms-child-daemon'] as const;
export type CoordinatorId = (typeof MAP_CURVE_IDS)[number];
/** Timed maps of a fresh coordinator, one by one, before its steady state. */
export const COLD_FIRST_MAPS = 3;

export interface ColdResults {
  /** Which parts were measured: `local`, (a) and (b); `daemon`, (c) and (d). */
  parts: ColdOptions['parts'];
  /** Runs of (a) and (b), and of (c) and (d). */
  runs: { start: number; coordinator: number };
  /** Spawn to exit of `node -e 0` and `python3 -c pass`, for scale (s). */
  empty: { node: Series; python: Series };
  /**
   * (a), per job count: spawn to exit less the child's own result check (s), import + pool + first
   * map as the child timed it (s), and the CPU seconds of the child's whole process tree (less the check).
   */
  firstMap: { jobs: number; whole: Partial<Record<FirstMapId, Series>>; inChild: Partial<Record<FirstMapId, Series>>; cpu: Partial<Record<FirstMapId, Series>> }[];
  /** (b): spawn to exit (s), and the CPU seconds of the app's whole process tree. */
  app: Partial<Record<AppId, Series>>;
  appCpu: Partial<Record<AppId, Series>>;
  /** (b), Node apps: seconds from their process's start (performance.now()) to imports loaded, results, shutdown done. */
  appTimeline: Partial<Record<AppId, Record<AppMark, Series>>>;
  /** (c): connect + setup (ms), jobs/s of maps 1…COLD_FIRST_MAPS (`first[k]`), and the same coordinator's steady jobs/s. */
  maps: Partial<Record<CoordinatorId, { connectMs: Series; first: Series[]; steady: Series }>>;
  /** (d): p50 of the first round trips (ms). */
  roundTrips: Partial<Record<CoordinatorId, Series>>;
}

export interface ColdOptions {
  runs: { start: number; coordinator: number };
  /** `local`: (a) and (b); `daemon`: (c) and (d). */
  parts: { readonly local: boolean; readonly daemon: boolean };
  sizes: Sizes;
  secret: string;
  /** Daemons the caller stops on any way out; the section's daemon is listed here while it runs. */
  daemons: Daemon[];
  failures: string[];
  log(fields: Record<string, unknown>): void;
}

const BENCH_SOURCE_DIR = fileURLToPath(new URL('../bench/', import.meta.url));
const FIRST_MAP_PATH = fileURLToPath(new URL('./cold-first-map.js', import.meta.url));
const COORDINATOR_PATH = fileURLToPath(new URL('./cold-coordinator.js', import.meta.url));
const FIRST_MAP_PY = `${BENCH_SOURCE_DIR}cold_first_map.py`;
/** Each app's script, and what follows the job count on its command line. */
const APP_SCRIPTS: Readonly<Record<AppId, readonly [string, ...string[]]>> = Object.freeze({
  'ms-local': [`${BENCH_SOURCE_DIR}cold-app/mapscale.mjs`],
  'ms-child-daemon': [`${BENCH_SOURCE_DIR}cold-app/mapscale.mjs`, 'child-daemon'],
  'piscina-task': [`${BENCH_SOURCE_DIR}cold-app/piscina.mjs`],
  'mp-pool': [`${BENCH_SOURCE_DIR}cold-app/mp_pool.py`],
});
/**
 * How Python is started here. The interpreter itself, not `python3` on PATH: that is a pyenv shim
 * on this machine, a shell script that costs ~70 ms before Python starts. And -S (no site module):
 * this machine's site-packages holds a sandbox's .pth file that imports certifi at every start
 * (~50 ms); the pools need nothing outside the standard library.
 */
const PYTHON_FLAGS = ['-S'];
const DAEMON_START_MS = 20_000;

interface FirstMapReport {
  importMs: number;
  mapMs: number;
  checkMs: number;
  closeMs: number;
}

/** `ids` in an order that rotates with the run, so none always goes first. */
function rotated<T>(ids: readonly T[], run: number): T[] {
  return ids.map((_, i) => ids[(i + run) % ids.length]!);
}

/** The python3 interpreter's own path, or undefined if there is none. */
function findPython(): string | undefined {
  const probe = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8', timeout: 10_000 });
  return probe.status === 0 && probe.stdout.trim() ? probe.stdout.trim() : undefined;
}

type Attempt = (label: string, task: () => Promise<void>) => Promise<void>;

export async function measureColdStart(options: ColdOptions): Promise<ColdResults> {
  const { runs, parts, sizes, failures, log } = options;
  const results: ColdResults = {
    parts,
    runs,
    empty: { node: [], python: [] },
    firstMap: sizes.coldMapJobs.map((jobs) => ({ jobs, whole: {}, inChild: {}, cpu: {} })),
    app: {},
    appCpu: {},
    appTimeline: {},
    maps: {},
    roundTrips: {},
  };
  /** One measurement; a failure is reported and leaves a hole in its series, never stops the section. */
  const attempt: Attempt = async (label, task) => {
    try {
      await task();
    } catch (error) {
      failures.push(`cold ${label}: ${(error as Error).message}`.slice(0, 2_000));
      log({ event: 'measure-failed', workload: 'cold', what: label, error: (error as Error).message });
    }
  };
  if (parts.local) await measureFreshPools(options, results, attempt);
  if (parts.daemon) await attempt('fresh coordinators', () => measureCoordinators(options, results, attempt));
  return results;
}

/** (a) and (b): a process per measurement, each contender in a rotating order. */
async function measureFreshPools(options: ColdOptions, results: ColdResults, attempt: Attempt): Promise<void> {
  const { runs, sizes, failures, log } = options;
  const deadline = sizes.measureDeadlineMs;
  const python = findPython();
  if (!python) failures.push('cold: python3 is not installed; its columns are left empty');
  const firstMapIds = FIRST_MAP_IDS.filter((id) => id !== 'mp-pool' || python);
  const appIds = APP_IDS.filter((id) => id !== 'mp-pool' || python);

  const firstMap = async (id: FirstMapId, jobs: number): Promise<{ whole: number; inChild: number; cpu: number | undefined }> => {
    const { json, wallSeconds, cpuSeconds } = id === 'mp-pool'
      ? await runToExit<FirstMapReport>(python!, [...PYTHON_FLAGS, FIRST_MAP_PY, String(jobs), String(WORKERS)], deadline)
      : await runToExit<FirstMapReport>(process.execPath, [FIRST_MAP_PATH, id, String(jobs)], deadline);
    // The check is ours, not the contender's, and costs each language differently.
    const check = json.checkMs / 1000;
    return { whole: wallSeconds - check, inChild: (json.importMs + json.mapMs) / 1000, cpu: cpuSeconds === undefined ? undefined : cpuSeconds - check };
  };

  const app = async (id: AppId): Promise<{ seconds: number; cpu: number | undefined; timeline?: Record<AppMark, number> }> => {
    const [file, flags] = id === 'mp-pool' ? [python!, PYTHON_FLAGS] : [process.execPath, []];
    const [script, ...extra] = APP_SCRIPTS[id];
    const { json, wallSeconds, cpuSeconds } = await runToExit<{ results: unknown; timeline?: Record<AppMark, number> }>(file, [...flags, script, String(sizes.coldAppJobs), ...extra], deadline);
    const expected = Array.from({ length: sizes.coldAppJobs }, (_, i) => i * i);
    if (JSON.stringify(json.results) !== JSON.stringify(expected)) throw new Error(`${id} app printed ${JSON.stringify(json.results)}`);
    return { seconds: wallSeconds, cpu: cpuSeconds, timeline: json.timeline };
  };

  // One untimed pass first: every later process then finds its files in the page cache, as a
  // user's second start would; its JIT and everything else starts cold all the same.
  await attempt('page-cache pass', async () => {
    for (const id of firstMapIds) await firstMap(id, sizes.coldMapJobs[0]!);
    for (const id of appIds) await app(id);
  });

  for (let run = 0; run < runs.start; run++) {
    await attempt('empty node', async () => {
      results.empty.node[run] = (await runToExit<unknown>(process.execPath, ['-e', 'console.log("{}")'], deadline)).wallSeconds;
    });
    if (python) {
      await attempt('empty python', async () => {
        results.empty.python[run] = (await runToExit<unknown>(python, [...PYTHON_FLAGS, '-c', 'print("{}")'], deadline)).wallSeconds;
      });
    }
    for (const entry of results.firstMap) {
      for (const id of rotated(firstMapIds, run)) {
        await attempt(`first map of ${entry.jobs} ${id}`, async () => {
          const { whole, inChild, cpu } = await firstMap(id, entry.jobs);
          (entry.whole[id] ??= [])[run] = whole;
          (entry.inChild[id] ??= [])[run] = inChild;
          (entry.cpu[id] ??= [])[run] = cpu;
          log({ event: 'measured', run: run + 1, workload: 'cold-first-map', contender: id, jobs: entry.jobs, seconds: whole, inChildSeconds: inChild, cpuSeconds: cpu });
        });
      }
    }
    for (const id of rotated(appIds, run)) {
      await attempt(`app ${id}`, async () => {
        const { seconds, cpu, timeline } = await app(id);
        (results.app[id] ??= [])[run] = seconds;
        (results.appCpu[id] ??= [])[run] = cpu;
        if (timeline) {
          const series = (results.appTimeline[id] ??= { imported: [], mapped: [], shutDown: [] });
          for (const mark of APP_MARKS) series[mark][run] = timeline[mark] / 1000;
        }
        log({ event: 'measured', run: run + 1, workload: 'cold-app', contender: id, seconds, cpuSeconds: cpu, timeline });
      });
    }
  }
}

/** (c) and (d): one daemon for the section, warmed by one untimed coordinator, then a fresh coordinator process per measurement. */
async function measureCoordinators(options: ColdOptions, results: ColdResults, attempt: Attempt): Promise<void> {
  const { runs, sizes, secret, daemons, failures, log } = options;
  const daemon = await startDaemon(WORKERS, secret, DAEMON_START_MS);
  daemons.push(daemon);
  const env = { ...process.env, MAPSCALE_SECRET: secret };
  const coordinator = <T>(mode: 'maps' | 'round-trips', contender: CoordinatorId) => runToExit<T>(process.execPath, [COORDINATOR_PATH, JSON.stringify({
    mode, contender, address: daemon.address, jobs: sizes.coldDaemonJobs, firstMaps: COLD_FIRST_MAPS,
    steadyAfter: sizes.coldSteadyAfter, roundTrips: sizes.coldRoundTrips,
  })], sizes.measureDeadlineMs, env);
  try {
    // The daemon has served a coordinator before any timed one: its instance threads are no longer fresh.
    await coordinator('maps', 'ms-daemon');
    await coordinator('round-trips', 'ms-daemon');
    for (let run = 0; run < runs.coordinator; run++) {
      for (const id of rotated(MAP_CURVE_IDS, run)) {
        await attempt(`maps ${id}`, async () => {
          const { json } = await coordinator<{ connectMs: number; firstRates: number[]; steadyRate: number }>('maps', id);
          const series = (results.maps[id] ??= { connectMs: [], first: Array.from({ length: COLD_FIRST_MAPS }, (): Series => []), steady: [] });
          series.connectMs[run] = json.connectMs;
          json.firstRates.forEach((rate, k) => (series.first[k]![run] = rate));
          series.steady[run] = json.steadyRate;
          log({ event: 'measured', run: run + 1, workload: 'cold-maps', contender: id, ...json });
        });
      }
      for (const id of rotated(COORDINATOR_IDS, run)) {
        await attempt(`round trips ${id}`, async () => {
          const { json } = await coordinator<{ connectMs: number; p50Ms: number }>('round-trips', id);
          (results.roundTrips[id] ??= [])[run] = json.p50Ms;
          log({ event: 'measured', run: run + 1, workload: 'cold-round-trips', contender: id, ...json });
        });
      }
    }
  } finally {
    await daemon.stop();
    daemons.splice(daemons.indexOf(daemon), 1);
    for (const complaint of daemon.handle.complaints) failures.push(`cold: daemon logged: ${complaint}`);
  }
}
