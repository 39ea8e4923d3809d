/**
 * Cold start (c) and (d), issue 13: a fresh coordinator in this fresh process, against a daemon
 * that has served other coordinators before (`ms-daemon`), or the raw bound, fresh on both ends
 * (`raw`: its own 2 child processes), or for comparison a fresh local Processor (`ms-local`: its own
 * workers, by default in its process; `ms-child-daemon`: a child daemon of its own). Prints one JSON line:
 *   maps:        { connectMs, firstRates: jobs/s of maps 1, 2, 3…, steadyRate }
 *   round-trips: { connectMs, p50Ms } over the first `roundTrips` one-job maps
 *
 *   node bench-dist/cold-coordinator.js '{"mode":"maps","contender":"ms-daemon","address":"127.0.0.1:N",
 *     "jobs":100000,"firstMaps":3,"steadyAfter":8,"roundTrips":1000}'
 *
 * The daemon's secret comes in MAPSCALE_SECRET, which a Processor reads by itself. The clock of the
 * first map starts once the coordinator is connected and set up (`connectMs`, reported apart):
 * what is measured is how fast its maps run while its paths are still cold.
 */
import { performance } from 'node:perf_hooks';
import { once } from 'node:events';
import { Processor } from 'mapscale';
import { openRaw } from './contenders/raw.js';
import { median, roundTripP50, WORKERS } from './measure.js';
import { square } from './work.js';
import { FULL_SIZES, workloadSpecs, type Mapper } from './workloads.js';

interface Args {
  mode: 'maps' | 'round-trips';
  contender: 'ms-daemon' | 'raw' | 'ms-local' | 'ms-child-daemon';
  address?: string;
  jobs: number;
  firstMaps: number;
  steadyAfter: number;
  roundTrips: number;
}

const STEADY_TIMED_MAPS = 3;
const JOIN_TIMEOUT_MS = 20_000;

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const CONTENDERS = ['ms-daemon', 'raw', 'ms-local', 'ms-child-daemon'];
if ((args.mode !== 'maps' && args.mode !== 'round-trips') || !CONTENDERS.includes(args.contender) || (args.contender === 'ms-daemon' && !args.address)) {
  throw new Error(`cold-coordinator: bad arguments ${process.argv[2]}`);
}

/** Opened and connected: MapScale once its daemon (or its local workers) has joined (connected, authenticated, set up), the raw bound once both sockets are. */
async function connect(): Promise<Mapper> {
  if (args.contender === 'raw') {
    // 1,000 jobs per frame, as in W1 and for 1-job maps one frame each.
    const mapper = openRaw(workloadSpecs(FULL_SIZES).w1, WORKERS);
    await mapper.map([]); // resolves once both children listen and are connected, sending nothing
    return mapper;
  }
  const processor = args.contender === 'ms-daemon' ? new Processor(square, [args.address!])
    : new Processor(square, WORKERS, args.contender === 'ms-child-daemon' ? { inProcess: false } : {});
  // A Processor's sockets are unref'd, and so is AbortSignal.timeout's timer: this one keeps the process up meanwhile.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`cold-coordinator: the daemon did not join within ${JOIN_TIMEOUT_MS} ms`)), JOIN_TIMEOUT_MS);
  });
  try {
    await Promise.race([once(processor, 'worker-joined'), timeout]);
  } catch (error) {
    await processor.shutdown({ force: true });
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return { map: (jobs) => processor.map(jobs as number[]), close: (force = false) => processor.shutdown({ force }) };
}

async function timedRate(mapper: Mapper, jobs: number[]): Promise<number> {
  const t0 = performance.now();
  const results = await mapper.map(jobs);
  const seconds = (performance.now() - t0) / 1000;
  if (results.length !== jobs.length) throw new Error(`cold-coordinator: ${results.length} results for ${jobs.length} jobs`);
  for (let i = 0; i < jobs.length; i++) if (results[i] !== i * i) throw new Error(`cold-coordinator: wrong result for job ${i}: ${String(results[i])}`);
  return jobs.length / seconds;
}

const t0 = performance.now();
const mapper = await connect();
const connectMs = performance.now() - t0;
let ok = false;
try {
  if (args.mode === 'round-trips') {
    const p50Ms = await roundTripP50(mapper, args.roundTrips);
    process.stdout.write(`${JSON.stringify({ connectMs, p50Ms })}\n`);
  } else {
    const jobs = Array.from({ length: args.jobs }, (_, i) => i);
    const firstRates: number[] = [];
    for (let m = 0; m < args.firstMaps; m++) firstRates.push(await timedRate(mapper, jobs));
    for (let m = 0; m < args.steadyAfter; m++) await timedRate(mapper, jobs);
    const steady: number[] = [];
    for (let m = 0; m < STEADY_TIMED_MAPS; m++) steady.push(await timedRate(mapper, jobs));
    process.stdout.write(`${JSON.stringify({ connectMs, firstRates, steadyRate: median(steady) })}\n`);
  }
  ok = true;
} finally {
  await mapper.close(!ok);
}
