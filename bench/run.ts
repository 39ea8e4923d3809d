/**
 * The issue 3 benchmark: W1–W4 and latency for MapScale (local workers, and one daemon on
 * loopback) and, in the same run, Piscina (task per job, and batched by hand) and a raw
 * TCP + msgpackr reference; then coordinator capacity, many concurrent one-job maps on one
 * Processor (per-map cost against N: flat means the scheduler's state is indexed, not scanned),
 * the local transport, latency with every process on one CPU, and cold start (issue 13: every
 * contender fresh in processes of its own, bench/cold.ts). Prints one table of medians with
 * ratios and writes it to bench/RESULTS.md.
 *
 *   pnpm bench                  3 runs, the issue's sizes
 *   pnpm bench -- --runs 5
 *   pnpm bench -- --quick       1 run, small sizes: a smoke test (writes bench/.tmp/RESULTS.quick.md)
 *   pnpm bench -- --only w1,latency,capacity,concurrent,transport,pinned,cold
 *                               (cold = cold-local, (a) and (b), and cold-daemon, (c) and (d))
 *                               (writes bench/.tmp/RESULTS.w1-latency-….md: only a full run writes RESULTS.md)
 *
 * Every process it starts is stopped at the end, on failure and on SIGINT/SIGTERM; each
 * measurement has a deadline and the whole run a watchdog.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_PROCESSOR_OPTIONS } from 'mapscale';
import { childPids, killAllNow, liveCount, runForMeasurement } from './children.js';
import { startDaemon, type Daemon } from './daemons.js';
import { openMapScale, openProcessor } from './contenders/mapscale.js';
import { openPiscina } from './contenders/piscina.js';
import { openRaw } from './contenders/raw.js';
import { measureConcurrentMaps } from './concurrent.js';
import { measureColdStart } from './cold.js';
import { measureTransport } from './transport.js';
import { calibrateSpin, makeData, measureCold, measureWarm, median, WORKERS, type Measurement, type WorkloadData } from './measure.js';
import { renderResultsFile, renderTables, type BenchResults, type ReportMeta, type Series } from './report.js';
import { identity } from './work.js';
import {
  CONTENDER_IDS, FULL_SIZES, PINNED_IDS, QUICK_SIZES, WORKLOAD_IDS, workloadSpecs,
  type ContenderId, type Mapper, type Sizes, type WorkloadId, type WorkloadSpec,
} from './workloads.js';

const REPO_DIR = fileURLToPath(new URL('../', import.meta.url));
const BENCH_SOURCE_DIR = `${REPO_DIR}bench/`;
const PINNED_PATH = fileURLToPath(new URL('./pinned.js', import.meta.url));
const MP_POOL_PATH = `${BENCH_SOURCE_DIR}mp_pool.py`;
const CLOSE_DEADLINE_MS = 20_000;
const DAEMON_START_MS = 20_000;
const WORKERS_IN_THIS_PROCESS: ReadonlySet<ContenderId> = new Set(['piscina-task', 'piscina-batched', ...(DEFAULT_PROCESSOR_OPTIONS.inProcess ? ['ms-local' as const] : [])]);
/** Runs of the cold section's (a)/(b) and (c)/(d) without --runs (issue 13: medians of several). */
const COLD_DEFAULT_RUNS = Object.freeze({ start: 5, coordinator: 3 });

type Section = WorkloadId | 'capacity' | 'concurrent' | 'transport' | 'pinned' | 'cold-local' | 'cold-daemon';
/** Names --only takes for several sections at once. */
const SECTION_GROUPS: Readonly<Record<string, readonly Section[]>> = Object.freeze({ cold: ['cold-local', 'cold-daemon'] });

interface Args {
  runs: number;
  /** Whether --runs was given: the cold section then takes it too, else runs by its own defaults. */
  runsGiven: boolean;
  quick: boolean;
  out: string;
  only: Set<Section>;
}

function parseCli(): Args {
  // `pnpm bench -- --quick` may hand the script a literal "--" first.
  const argv = process.argv.slice(2);
  if (argv[0] === '--') argv.shift();
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write('usage: node bench-dist/run.js [--runs N] [--quick] [--only w1,w2,w3,w4,latency,capacity,concurrent,transport,pinned,cold-local,cold-daemon,cold] [--out FILE]\n');
    process.exit(0);
  }
  const runs = values.runs === undefined ? (values.quick ? 1 : 3) : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs must be an integer from 1 to 50, got ${values.runs}`);
  const known: Section[] = [...WORKLOAD_IDS, 'capacity', 'concurrent', 'transport', 'pinned', 'cold-local', 'cold-daemon'];
  const names = (values.only ?? known.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  const only = new Set<Section>();
  for (const name of names) {
    const sections = SECTION_GROUPS[name] ?? (known.includes(name as Section) ? [name as Section] : undefined);
    if (!sections) throw new Error(`--only: unknown section "${name}" (known: ${[...known, ...Object.keys(SECTION_GROUPS)].join(', ')})`);
    for (const section of sections) only.add(section);
  }
  // Only a full run replaces bench/RESULTS.md: `--only cold` must not leave it holding one section.
  const partial = known.some((name) => !only.has(name));
  const out = values.out ?? `${BENCH_SOURCE_DIR}${values.quick ? '.tmp/RESULTS.quick.md' : partial ? `.tmp/RESULTS.${names.join('-')}.md` : 'RESULTS.md'}`;
  return { runs, runsGiven: values.runs !== undefined, quick: values.quick, out, only };
}

/** Which MapScale was measured: the commit, and whether packages/ differed from it. */
function describeCode(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO_DIR, encoding: 'utf8', timeout: 5_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--', 'packages').length > 0 ? `${commit} with uncommitted changes in packages/` : commit;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

function log(fields: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify(fields)}\n`);
}

/** Rejects after `ms`; the task itself is left to the caller's cleanup (closing its mapper). */
function withDeadline<T>(task: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([task, deadline]).finally(() => clearTimeout(timer));
}

async function closeMapper(mapper: Mapper, force: boolean, label: string, failures: string[]): Promise<void> {
  try {
    await withDeadline(mapper.close(force), CLOSE_DEADLINE_MS, `closing ${label}`);
  } catch (error) {
    failures.push(`${label}: close failed: ${(error as Error).message}`);
  }
}

/** A Node contender is opened here and measured by measure.ts; a peer in another language measures itself, by the same method. */
type Contender = { id: ContenderId; supports(spec: WorkloadSpec): boolean } & (
  | { open(spec: WorkloadSpec): Mapper; measure?: undefined }
  | { measure(spec: WorkloadSpec, sizes: Sizes): Promise<Measurement>; open?: undefined });

/** Python's multiprocessing.Pool, in a python3 child that times itself (bench/mp_pool.py). */
async function measureMpPool(spec: WorkloadSpec, sizes: Sizes): Promise<Measurement> {
  return runForMeasurement('python3', [MP_POOL_PATH, JSON.stringify({ ...sizes, workload: spec.id, workers: WORKERS })], sizes.measureDeadlineMs);
}

function contenders(daemon: Daemon, secret: string, hasPython: boolean): Contender[] {
  const byId: Record<ContenderId, Contender> = {
    'ms-local': { id: 'ms-local', supports: () => true, open: (spec) => openMapScale(spec, WORKERS) },
    'ms-child-daemon': { id: 'ms-child-daemon', supports: () => true, open: (spec) => openMapScale(spec, WORKERS, undefined, { inProcess: false }) },
    'ms-daemon': { id: 'ms-daemon', supports: () => true, open: (spec) => openMapScale(spec, [daemon.address], secret) },
    'piscina-task': { id: 'piscina-task', supports: () => true, open: (spec) => openPiscina(spec) },
    'piscina-batched': {
      id: 'piscina-batched', supports: (spec) => spec.piscinaChunk !== undefined, open: (spec) => openPiscina(spec, spec.piscinaChunk),
    },
    'mp-pool': { id: 'mp-pool', supports: () => hasPython, measure: measureMpPool },
    raw: { id: 'raw', supports: () => true, open: (spec) => openRaw(spec, WORKERS) },
    'raw-thread': { id: 'raw-thread', supports: () => true, open: (spec) => openRaw(spec, WORKERS, 'thread') },
    'raw-thread-socket': { id: 'raw-thread-socket', supports: () => true, open: (spec) => openRaw(spec, WORKERS, 'thread-socket') },
  };
  return CONTENDER_IDS.map((id) => byId[id]);
}

/** One workload on one contender: opened, measured and closed within the deadline, whatever happens. */
async function measureOne(contender: Contender, spec: WorkloadSpec, sizes: Sizes, data: WorkloadData, failures: string[]): Promise<Measurement | undefined> {
  const label = `${spec.id} ${contender.id}`;
  let mapper: Mapper | undefined;
  let ok = false;
  try {
    const task = contender.measure ? contender.measure(spec, sizes)
      : spec.id === 'w4' ? measureCold(sizes, data, () => contender.open(spec), (m) => (mapper = m))
        : (mapper = contender.open(spec), measureWarm(spec.id, sizes, data, mapper));
    const measurement = await withDeadline(task, sizes.measureDeadlineMs, label);
    ok = true;
    return measurement;
  } catch (error) {
    failures.push(`${label}: ${(error as Error).stack ?? String(error)}`.slice(0, 2_000));
    log({ event: 'measure-failed', workload: spec.id, contender: contender.id, error: (error as Error).message });
    return undefined;
  } finally {
    if (mapper) await closeMapper(mapper, !ok, label, failures);
  }
}

/** Latency per contender with all its processes on CPU 0, each in a child started under taskset. */
async function measurePinned(args: Args, sizes: Sizes, failures: string[]): Promise<BenchResults['pinned']> {
  if (spawnSync('taskset', ['-V']).error) {
    failures.push('pinned: taskset (util-linux) is not installed; section skipped');
    return null;
  }
  const pinned: NonNullable<BenchResults['pinned']> = {};
  for (let run = 0; run < args.runs; run++) {
    // A rotating order, as for the workloads.
    for (let i = 0; i < PINNED_IDS.length; i++) {
      const id = PINNED_IDS[(i + run) % PINNED_IDS.length]!;
      try {
        const { value } = await runForMeasurement('taskset', ['-c', '0', process.execPath, PINNED_PATH, id, args.quick ? 'quick' : 'full'], sizes.measureDeadlineMs);
        (pinned[id] ??= [])[run] = value;
        log({ event: 'measured', run: run + 1, workload: 'pinned', contender: id, value, unit: 'ms' });
      } catch (error) {
        failures.push(`pinned ${id}: ${(error as Error).message}`.slice(0, 2_000));
      }
    }
  }
  return pinned;
}

/** One coordinator feeding many no-op instances: how large a fleet it can keep busy. */
async function measureCapacity(args: Args, sizes: Sizes, results: BenchResults, daemons: Daemon[], secret: string): Promise<void> {
  const series = { jobsPerSecond: [] as (number | undefined)[], cpuPerMillion: [] as (number | undefined)[] };
  results.capacity = series;
  const jobs = Array.from({ length: sizes.capacityJobs }, (_, i) => i);
  const check = (out: unknown[]) => {
    if (out.length !== jobs.length || out.some((v, i) => v !== i)) throw new Error('capacity: wrong results');
  };
  const mapper = openProcessor(identity, daemons.map((d) => d.address), secret);
  let ok = false;
  try {
    // Two untimed maps of the full size: the first timed one is otherwise still JIT-cold.
    for (let i = 0; i < 2; i++) check(await withDeadline(mapper.map(jobs), sizes.measureDeadlineMs, 'capacity warm-up'));
    for (let run = 0; run < args.runs; run++) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const out = await withDeadline(mapper.map(jobs), sizes.measureDeadlineMs, 'capacity');
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      check(out);
      series.jobsPerSecond[run] = jobs.length / seconds;
      series.cpuPerMillion[run] = ((cpu.user + cpu.system) / 1e6) * (1e6 / jobs.length);
      log({ event: 'measured', run: run + 1, workload: 'capacity', jobsPerSecond: Math.round(series.jobsPerSecond[run]!), cpuPerMillion: series.cpuPerMillion[run] });
    }
    ok = true;
  } catch (error) {
    results.failures.push(`capacity: ${(error as Error).message}`);
    log({ event: 'measure-failed', workload: 'capacity', error: (error as Error).message });
  } finally {
    await closeMapper(mapper, !ok, 'capacity', results.failures);
  }
}

/**
 * N one-job maps at once on one Processor with 2 local workers, for each N of the sizes: the wall
 * time of all N, run after run on the same warm Processor (untimed rounds first). A deadline
 * stops the section: the maps it left pending would skew every later figure.
 */
async function measureConcurrent(args: Args, sizes: Sizes, results: BenchResults): Promise<void> {
  const series = { maps: sizes.concurrentMaps, seconds: sizes.concurrentMaps.map((): Series => []) };
  results.concurrent = series;
  const mapper = openProcessor(identity, WORKERS);
  let ok = false;
  try {
    const warm = await withDeadline(mapper.map([0]), sizes.measureDeadlineMs, 'concurrent warm-up');
    if (warm.length !== 1 || warm[0] !== 0) throw new Error('concurrent: wrong warm-up result');
    // Untimed rounds first: a JIT-cold first round costs 2–3× per map what later ones do, which
    // would make the smallest N look dearest and hide a growing cost.
    const smallest = sizes.concurrentMaps[0]!;
    for (let done = 0; done < sizes.concurrentWarmupMaps; done += smallest) {
      await withDeadline(measureConcurrentMaps(mapper, smallest), sizes.measureDeadlineMs, 'concurrent warm-up round');
    }
    for (let run = 0; run < args.runs; run++) {
      for (const [k, n] of sizes.concurrentMaps.entries()) {
        const seconds = await withDeadline(measureConcurrentMaps(mapper, n), sizes.measureDeadlineMs, `concurrent ${n} maps`);
        series.seconds[k]![run] = seconds;
        log({ event: 'measured', run: run + 1, workload: 'concurrent', maps: n, seconds, usPerMap: (seconds * 1e6) / n });
      }
    }
    ok = true;
  } catch (error) {
    results.failures.push(`concurrent: ${(error as Error).message}`);
    log({ event: 'measure-failed', workload: 'concurrent', error: (error as Error).message });
  } finally {
    await closeMapper(mapper, !ok, 'concurrent', results.failures);
  }
}

async function main(args: Args, daemons: Daemon[]): Promise<void> {
  // Other work on this machine shows up here first: a load near the core count before the run means skewed figures.
  const loadBefore = loadavg()[0]!;
  const sizes = args.quick ? QUICK_SIZES : FULL_SIZES;
  const specs = workloadSpecs(sizes);
  const workloads = WORKLOAD_IDS.filter((w) => args.only.has(w));
  const secret = randomBytes(24).toString('base64url');
  const results: BenchResults = {
    values: { w1: {}, w2: {}, w3: {}, w4: {}, latency: {} },
    w1Cpu: {},
    latencyCold: {},
    capacity: null,
    concurrent: null,
    transport: null,
    pinned: null,
    cold: null,
    failures: [],
  };

  const spinIterations = calibrateSpin(sizes.w2JobMs);
  log({ event: 'calibrated', spinIterations, jobMs: sizes.w2JobMs });
  const data = makeData(sizes, spinIterations);
  const serials: number[] = [];

  if (workloads.length > 0) {
    const daemon = await startDaemon(WORKERS, secret, DAEMON_START_MS);
    daemons.push(daemon);
    log({ event: 'daemon-started', address: daemon.address, workers: WORKERS });
    const hasPython = spawnSync('python3', ['--version']).status === 0;
    if (!hasPython) results.failures.push('mp.Pool: python3 is not installed; its column is left empty');
    const all = contenders(daemon, secret, hasPython);
    for (let run = 0; run < args.runs; run++) {
      for (const w of workloads) {
        const spec = specs[w];
        // A rotating order, so no contender always runs first (cold caches) or last (a warm machine).
        const order = all.map((_, i) => all[(i + run) % all.length]!);
        for (const contender of order) {
          if (!contender.supports(spec)) continue;
          const series = (results.values[w][contender.id] ??= []);
          const measurement = await measureOne(contender, spec, sizes, data, results.failures);
          series[run] = measurement?.value;
          if (measurement?.serialSeconds !== undefined) serials.push(measurement.serialSeconds);
          if (measurement?.coldValue !== undefined) (results.latencyCold[contender.id] ??= [])[run] = measurement.coldValue;
          // Where the workers are threads of this process, its CPU is theirs too: not a coordinator's figure.
          if (measurement?.cpuPerMillion !== undefined && !WORKERS_IN_THIS_PROCESS.has(contender.id)) {
            (results.w1Cpu[contender.id] ??= [])[run] = measurement.cpuPerMillion;
          }
          log({ event: 'measured', run: run + 1, workload: w, contender: contender.id, value: measurement?.value, unit: spec.unit });
        }
      }
    }
    await daemon.stop();
    daemons.splice(daemons.indexOf(daemon), 1);
    for (const complaint of daemon.handle.complaints) results.failures.push(`daemon logged: ${complaint}`);
  }

  if (args.only.has('capacity')) {
    const started = await Promise.allSettled(Array.from({ length: sizes.capacityDaemons },
      () => startDaemon(sizes.capacityInstances, secret, DAEMON_START_MS)));
    for (const s of started) if (s.status === 'fulfilled') daemons.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) results.failures.push(`capacity: a daemon did not start: ${(failed.reason as Error).message}`);
    else await measureCapacity(args, sizes, results, daemons, secret);
    await Promise.all(daemons.splice(0).map((d) => d.stop()));
  }

  if (args.only.has('concurrent')) await measureConcurrent(args, sizes, results);

  if (args.only.has('transport')) {
    const transport = { tcp: { roundTripMs: [], mibPerSecond: [] }, unix: { roundTripMs: [], mibPerSecond: [] } } as NonNullable<BenchResults['transport']>;
    results.transport = transport;
    for (let run = 0; run < args.runs; run++) {
      for (const kind of run % 2 === 0 ? ['tcp', 'unix'] as const : ['unix', 'tcp'] as const) {
        try {
          const figures = await withDeadline(measureTransport(kind), sizes.measureDeadlineMs, `transport ${kind}`);
          transport[kind].roundTripMs[run] = figures.roundTripMs;
          transport[kind].mibPerSecond[run] = figures.mibPerSecond;
          log({ event: 'measured', run: run + 1, workload: 'transport', kind, ...figures });
        } catch (error) {
          results.failures.push(`transport ${kind}: ${(error as Error).message}`);
        }
      }
    }
  }

  if (args.only.has('pinned')) results.pinned = await measurePinned(args, sizes, results.failures);

  const coldParts = { local: args.only.has('cold-local'), daemon: args.only.has('cold-daemon') };
  if (coldParts.local || coldParts.daemon) {
    // Single fresh processes are noisier than warm maps: more runs of the quick ones by default.
    const runs = args.runsGiven || args.quick ? { start: args.runs, coordinator: args.runs } : COLD_DEFAULT_RUNS;
    results.cold = await measureColdStart({ runs, parts: coldParts, sizes, secret, daemons, failures: results.failures, log });
  }

  const cpuList = cpus();
  const meta: ReportMeta = {
    date: new Date().toISOString(),
    code: describeCode(),
    node: process.version,
    cpus: availableParallelism(),
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    runs: args.runs,
    quick: args.quick,
    sizes,
    spinIterations,
    serialJobMs: serials.length > 0 ? (median(serials)! * 1000) / sizes.w2Jobs : undefined,
    workloads,
    loadBefore,
    loadAfter: loadavg()[0]!,
  };
  const tables = renderTables(specs, results, meta);
  process.stdout.write(`\n${tables}\n\n`);
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, renderResultsFile(tables, meta));
  log({ event: 'written', file: args.out });
  if (results.failures.length > 0) process.exitCode = 1;
}

const args = parseCli();
const daemons: Daemon[] = [];
// Children of ours left at exit, whatever the path to it (they also exit when our pipes close).
process.on('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log({ event: 'signal', signal });
    killAllNow();
    process.exit(130);
  });
}
const sizes = args.quick ? QUICK_SIZES : FULL_SIZES;
const watchdogMs = 5 * 60_000 + args.runs * (args.quick ? 2 : 4) * 60_000 + sizes.measureDeadlineMs;
const watchdog = setTimeout(() => {
  log({ event: 'watchdog', afterMs: watchdogMs });
  killAllNow();
  process.exit(3);
}, watchdogMs);
watchdog.unref();

try {
  await main(args, daemons);
} catch (error) {
  log({ event: 'bench-failed', error: (error as Error).stack ?? String(error) });
  process.exitCode = 2;
} finally {
  await Promise.allSettled(daemons.map((d) => d.stop()));
  // Daemons that Processors started for `new Processor(fn, N)` are ours too: none may outlive the bench.
  const stray = childPids();
  if (stray.length > 0 || liveCount() > 0) {
    log({ event: 'stray-children', pids: stray, tracked: liveCount() });
    for (const pid of stray) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    process.exitCode ||= 4;
  }
  clearTimeout(watchdog);
  // Piscina or a socket left half-closed must not keep the process up once the report is written.
  setTimeout(() => process.exit(), 100).unref();
}
