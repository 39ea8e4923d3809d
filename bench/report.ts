import { median } from './measure.js';
import { cell, formatRatio, formatValue, present, ratio, type Series } from './figures.js';
import { renderColdStart } from './cold-report.js';
import { COLD_FIRST_MAPS, type ColdResults } from './cold.js';
import {
  CONTENDER_IDS, CONTENDER_LABELS, MAPSCALE_IDS, PEER_IDS, TARGETS,
  PINNED_IDS, type ContenderId, type PinnedId, type Sizes, type WorkloadId, type WorkloadSpec,
} from './workloads.js';

export type { Series };

export interface BenchResults {
  values: Record<WorkloadId, Partial<Record<ContenderId, Series>>>;
  /** W1: this (parent) process's CPU seconds per million jobs, for contenders whose workers run elsewhere. */
  w1Cpu: Partial<Record<ContenderId, Series>>;
  /** Latency p50 over a fresh contender's first round trips (the timed figure comes after its warm-up). */
  latencyCold: Partial<Record<ContenderId, Series>>;
  capacity: { jobsPerSecond: Series; cpuPerMillion: Series } | null;
  /** Wall seconds of `maps[k]` one-job maps at once on one Processor, per run in `seconds[k]`. */
  concurrent: { maps: readonly number[]; seconds: Series[] } | null;
  /** Loopback TCP against a Unix domain socket, between this process and a child. */
  transport: Record<'tcp' | 'unix', { roundTripMs: Series; mibPerSecond: Series }> | null;
  /** Latency p50 with every process of the contender on one CPU (bench/pinned.ts). */
  pinned: Partial<Record<PinnedId, Series>> | null;
  /** Cold start (issue 13): every figure from fresh processes (bench/cold.ts). */
  cold: ColdResults | null;
  failures: string[];
}

export interface ReportMeta {
  date: string;
  code: string;
  node: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  runs: number;
  quick: boolean;
  sizes: Sizes;
  spinIterations: number;
  serialJobMs: number | undefined;
  workloads: WorkloadId[];
  /** 1-minute load average before and after the run: other work on the machine skews every figure. */
  loadBefore: number;
  loadAfter: number;
}

function targetCell(workload: WorkloadId, results: BenchResults, id: ContenderId): string {
  const target = TARGETS[workload];
  const own = results.values[workload][id];
  const reached = target.against === 'raw' ? ratio(own, results.values[workload].raw) : median(present(own));
  if (reached === undefined) return '—';
  let met = target.op === '>=' ? reached >= target.value : reached <= target.value;
  // Three decimals here: 0.497 must not read as a missed 0.50.
  const shown = target.against === 'raw' ? `${reached.toFixed(3)}×` : formatValue(workload, reached);
  const wanted = target.against === 'raw' ? `${target.op === '>=' ? '≥' : '≤'} ${target.value}× raw` : `${target.op === '>=' ? '≥' : '≤'} ${target.value}`;
  const ahead = (target.aheadOf ?? []).map((peer) => {
    const r = ratio(own, results.values[workload][peer]);
    // A peer that was not measured cannot be shown beaten.
    met &&= r !== undefined && (target.op === '>=' ? r > 1 : r < 1);
    return `${formatRatio(r)} ${CONTENDER_LABELS[peer]}`;
  });
  return `${shown} (${wanted})${ahead.length > 0 ? `, ${ahead.join(', ')} (ahead of each)` : ''}: ${met ? 'met' : '**missed**'}`;
}

export function renderTables(specs: Record<WorkloadId, WorkloadSpec>, results: BenchResults, meta: ReportMeta): string {
  const lines: string[] = [];
  const runsNote = meta.runs > 1 ? `medians of ${meta.runs} runs (min–max)` : '1 run';
  if (meta.workloads.length > 0) {
    lines.push(`### Medians (${runsNote})`, '');
    lines.push(`| workload | unit | ${CONTENDER_IDS.map((id) => CONTENDER_LABELS[id]).join(' | ')} |`);
    lines.push(`|---|---|${CONTENDER_IDS.map(() => '---').join('|')}|`);
    for (const w of meta.workloads) {
      lines.push(`| ${specs[w].title} | ${specs[w].unit} | ${CONTENDER_IDS.map((id) => cell(w, results.values[w][id])).join(' | ')} |`);
    }
    lines.push('', '### MapScale / peer (median of same-run ratios)', '');
    lines.push('Above 1× is better for W1–W3 (throughput), below 1× is better for W4 and latency (time).', '');
    lines.push(`| workload | MapScale | ${PEER_IDS.map((id) => `vs ${CONTENDER_LABELS[id]}`).join(' | ')} | target (issue 13) |`);
    lines.push(`|---|---|${PEER_IDS.map(() => '---').join('|')}|---|`);
    for (const w of meta.workloads) {
      for (const id of MAPSCALE_IDS) {
        const own = results.values[w][id];
        lines.push(`| ${w === 'latency' ? 'latency' : w.toUpperCase()} (${specs[w].higherIsBetter ? 'higher' : 'lower'} is better) | ${CONTENDER_LABELS[id]} | ${
          PEER_IDS.map((peer) => formatRatio(ratio(own, results.values[w][peer]))).join(' | ')} | ${targetCell(w, results, id)} |`);
      }
    }
  }
  if (Object.keys(results.latencyCold).length > 0) {
    lines.push('', '### Latency of a fresh contender', '');
    lines.push(`The p50 of each contender's first ${meta.sizes.latencyColdSamples.toLocaleString('en-US')} round trips, while its JIT is still tiering up its path; the latency row above is timed after ${meta.sizes.latencyWarmup.toLocaleString('en-US')}.`, '');
    lines.push('| contender | first round trips, p50 (ms) | / raw bound, same run |', '|---|---|---|');
    for (const id of CONTENDER_IDS) {
      const cold = results.latencyCold[id];
      if (cold) lines.push(`| ${CONTENDER_LABELS[id]} | ${cell('latency', cold)} | ${id === 'raw' ? '1×' : formatRatio(ratio(cold, results.latencyCold.raw))} |`);
    }
  }
  if (results.capacity || Object.keys(results.w1Cpu).length > 0) {
    lines.push('', '### Coordinator', '');
    lines.push('| measure | value |', '|---|---|');
    const s = meta.sizes;
    if (results.capacity) {
      lines.push(`| capacity: ${s.capacityJobs.toLocaleString('en-US')} no-op jobs from one coordinator to ${s.capacityDaemons} daemons × ${s.capacityInstances} instances on loopback (jobs/s) | ${cell('capacity', results.capacity.jobsPerSecond)} |`);
      lines.push(`| coordinator CPU per million jobs, same map (s) | ${cell('cpu', results.capacity.cpuPerMillion)} |`);
    }
    for (const id of [...MAPSCALE_IDS, 'raw'] as ContenderId[]) {
      if (!results.w1Cpu[id]) continue;
      const who = id === 'raw' ? 'raw bound: parent process' : `${CONTENDER_LABELS[id]}: coordinator`;
      lines.push(`| W1, ${who} CPU per million jobs (s) | ${cell('cpu', results.w1Cpu[id])} |`);
    }
  }
  if (results.concurrent) {
    const { maps, seconds } = results.concurrent;
    const perMap = seconds.map((series, k) => series.map((v) => (v === undefined ? undefined : (v * 1e6) / maps[k]!)));
    lines.push('', '### Many maps at once', '');
    lines.push('N one-job `map([i])` calls started together on one Processor with 2 local workers (the identity function), then awaited together. The cost per map should not grow with N: flat means the scheduler\'s state is indexed, not scanned.', '');
    lines.push('| maps at once | wall time (s) | per map (µs) |', '|---|---|---|');
    for (const [k, n] of maps.entries()) lines.push(`| ${n.toLocaleString('en-US')} | ${cell('seconds', seconds[k])} | ${cell('micros', perMap[k])} |`);
    if (maps.length > 1) {
      const last = maps.length - 1;
      const quadratic = maps[last]! / maps[0]!;
      lines.push(`| per-map cost at ${maps[last]!.toLocaleString('en-US')} / at ${maps[0]!.toLocaleString('en-US')}, same run (flat: 1×; N² would be ${formatRatio(quadratic)}) | | ${formatRatio(ratio(perMap[last], perMap[0]))} |`);
    }
  }
  if (results.transport) {
    const { tcp, unix } = results.transport;
    lines.push('', '### Local transport: loopback TCP or a Unix socket', '');
    lines.push('| measure | loopback TCP | Unix socket | Unix / TCP |', '|---|---|---|---|');
    lines.push(`| 64-byte round trip between two processes, p50 (ms) | ${cell('latency', tcp.roundTripMs)} | ${cell('latency', unix.roundTripMs)} | ${formatRatio(ratio(unix.roundTripMs, tcp.roundTripMs))} |`);
    lines.push(`| bulk, 1 MiB writes (MiB/s) | ${cell('w3', tcp.mibPerSecond)} | ${cell('w3', unix.mibPerSecond)} | ${formatRatio(ratio(unix.mibPerSecond, tcp.mibPerSecond))} |`);
  }
  if (results.pinned) {
    const pinned = results.pinned;
    lines.push('', '### Latency with every process on one CPU', '');
    lines.push('Each contender alone under `taskset -c 0` (bench/pinned.ts): every wake-up is then a switch on one CPU, so these compare the software paths without the scheduler\'s choice of CPUs.', '');
    lines.push('| contender | 1-job round trip, p50 (ms) | / raw bound, pinned |', '|---|---|---|');
    for (const id of PINNED_IDS) {
      lines.push(`| ${CONTENDER_LABELS[id]} | ${cell('latency', pinned[id])} | ${id === 'raw' ? '1×' : formatRatio(ratio(pinned[id], pinned.raw))} |`);
    }
  }
  if (results.cold) lines.push(...renderColdStart(results.cold, meta.sizes));
  if (results.failures.length > 0) {
    lines.push('', '### Failures', '');
    for (const failure of results.failures) lines.push(`- ${failure.replace(/\n/g, ' ')}`);
  }
  return lines.join('\n');
}

export function renderResultsFile(tables: string, meta: ReportMeta): string {
  const s = meta.sizes;
  return [
    '# MapScale benchmark results (issue 3)',
    '',
    `- date: ${meta.date}; MapScale at commit ${meta.code}`,
    `- node ${meta.node}, ${meta.cpus} CPUs (${meta.cpuModel}), ${meta.memoryGiB} GiB memory`,
    `- ${meta.runs} run(s)${meta.quick ? ', **--quick sizes (smoke run, not comparable with full runs)**' : ''}; 2 workers for every contender`,
    `- W2 jobs: ${meta.spinIterations.toLocaleString('en-US')} iterations of \`spin\` (median ${meta.serialJobMs?.toFixed(1) ?? '?'} ms each, serially on the main thread); W4 setup is a ${s.w4SetupMs} ms timer per worker`,
    `- **This machine is shared and noisy**: absolute figures move from run to run, and other work on it can take a core away mid-run (1-minute load average ${meta.loadBefore.toFixed(2)} before this run, ${meta.loadAfter.toFixed(2)} after). Judge MapScale by the ratios against peers measured in the same run, never by absolute figures.`,
    '',
    'Run with `pnpm bench` (or `pnpm bench -- --runs 5`, `pnpm bench -- --quick`).',
    '',
    tables,
    '',
    '### Method',
    '',
    '- **MapScale local**: `new Processor(fn, 2)` as it comes (since issue 13 its 2 instance threads run in the app\'s own process, `inProcess: true`). **MapScale local, child daemon**: `new Processor(fn, 2, { inProcess: false })` (a local daemon child process with 2 instance threads). **MapScale, 1 daemon**: `new Processor(fn, [address])` against one `mapscale-worker --workers 2` the bench starts on 127.0.0.1.',
    '- **Piscina 1 task/job**: `minThreads = maxThreads = 2`, `Promise.all(jobs.map(run))`. **Piscina batched**: the same pool, jobs sliced by hand into tasks of 1,000 (W1) or half a map (W4); not run where batching by hand does not apply (—).',
    '- **Python mp.Pool**: `multiprocessing.Pool(2)` in a python3 child that times itself by the same method (bench/mp_pool.py): `pool.map(fn, jobs)` with its default chunksize, `pool.apply` per round trip for latency, W1–W3 and latency warm, W4 from creating the pool; every result checked. W2\'s job is a Python loop calibrated there to the same ~10 ms.',
    '- **Raw bound**: 2 child processes, each serving one loopback TCP connection; the parent streams length-prefixed msgpackr frames (1,000 jobs per frame for W1, 1 for W2 and latency, 4 MiB for W3, half a map for W4), 2 frames in flight per child, the next frame to whichever child answers. No envelope, handshake or scheduler.',
    `- **Many maps at once**: one \`new Processor(identity, 2)\`, warmed with one map and then ${s.concurrentWarmupMaps.toLocaleString('en-US')} untimed ones in rounds of the smallest N (per-map cost keeps falling over the first ~10,000, as the JIT tiers up the path: 2–3× in a first round), then for each N (${s.concurrentMaps.map((n) => n.toLocaleString('en-US')).join(', ')}) N calls \`map([i])\` started in one tick and awaited with \`Promise.all\`; the wall time from the first call to the last result, every result checked. Run after run on the same Processor; the ratio of per-map cost at the largest N to the smallest is taken within a run (issue 12: 10,000 took 0.52 s and 40,000 16.4 s when the scheduler scanned its runs).`,
    '- **Local transport**: this process and one child, over loopback TCP and over a Unix domain socket: the p50 of 20,000 round trips of 64 bytes (after 5,000 untimed), and 400 MiB sent in 1 MiB writes. It decides whether local workers should use a Unix socket (issue 3: "if measurement says it pays").',
    '- **Raw bound, jobs on a worker thread**: the same, except that each child computes on one worker thread (frames transferred to it and back, not copied), as a MapScale daemon runs jobs on instance threads. The gap between the two raw figures is what that thread hop costs by itself; MapScale against this one is what its own logic costs.',
    '- **Raw bound, socket and jobs on a worker thread**: one worker thread per child both serves the connection and computes (the main thread only watches): the shape of a MapScale instance thread with its own data connection (docs/ARCHITECTURE.md, "Connections"), without MapScale\'s envelope, scheduler and checks.',
    '- **Latency with every process on one CPU**: each contender in a child started under `taskset -c 0` (bench/pinned.ts), so all its processes and threads share CPU 0. On this VM a wake-up across CPUs costs ~3× one on the same CPU, and which one a contender gets is the scheduler\'s choice per run: the raw bound\'s unpinned round trip is ~0.033 ms in some runs and ~0.088 ms in others. Pinned, the figures compare the software paths alone.',
    '- W1–W3 and latency are timed warm: each contender first runs up to 8 untimed maps of the same jobs (fewer once 1.5 s is spent; W1 still got 20–40% faster up to its sixth map, the raw bound\'s too; W1 is then the median of 3 timed maps; a few jobs for W2, whose loops optimize within one call; 6,000 untimed round trips before latency: every contender\'s round trip keeps getting faster for its first 3,000–5,000, as the JIT tiers up its path, the longer paths later; the first 1,000 of them give the fresh-contender figure); W4 is timed cold, from creating the contender (processes, threads, 300 ms setup per worker) to the end of its last map. Every result is checked.',
    '- W2 efficiency = serial time of the same jobs on the main thread / (wall time × 2 workers). The speed of this machine drifts within a second, so the timed map of each contender is bracketed by the serial run: half of the jobs just before it, half just after.',
    `- **Cold start** (issue 13, bench/cold.ts): every figure from processes started for it alone, the bench timing each child from spawn to exit. (a) a child creates one pool (\`new Processor(fn, 2)\` as it comes, and with \`{ inProcess: false }\`: its instance threads in a child daemon; \`multiprocessing.Pool(2)\` with \`pool.map\`'s default chunksize; Piscina(2) with tasks of 1,000 jobs; the raw bound's 2 processes, 1,000 jobs a frame), runs one map of N \`x*x\` jobs, closes it and exits; its own check of every result is timed and taken off, and it reports import + pool + first map as it timed them itself. (a) and (b) also give the CPU seconds of the child's whole process tree (its own and its reaped descendants', from the bench's cutime + cstime in /proc/self/stat, to 10 ms): the figure another session's load moves least. (b) \`node bench/cold-app/mapscale.mjs\` (with \`child-daemon\`: the same with \`inProcess: false\`; or piscina.mjs, 1 task a job; mp_pool.py): 10 jobs on 2 local workers, results printed; the Node apps also print when (\`performance.now()\`, from their process's start) their imports had loaded, their results came and shutdown was done. (c) one daemon for the section (\`--workers 2\`), first served by one untimed coordinator; then a fresh coordinator process per run connects (reported apart), times its first ${COLD_FIRST_MAPS} maps of ${s.coldDaemonJobs.toLocaleString('en-US')} jobs one by one, runs ${s.coldSteadyAfter} more and takes the median of 3 after them as its steady rate; the raw bound the same, fresh on both ends (its own 2 processes), and for comparison a fresh local Processor (as it comes, and with a child daemon), whose workers are as fresh as it. (d) a fresh coordinator's first ${s.coldRoundTrips.toLocaleString('en-US')} one-job maps, one at a time, against the same daemon, and the raw bound's, fresh. Python runs as its interpreter's own path with \`-S\`: \`python3\` on this machine's PATH is a pyenv shim (~70 ms of shell before Python starts), and its site-packages holds a sandbox's .pth that imports certifi at every start (~50 ms). Before the timed runs, one untimed pass of (a) and (b) puts every file in the page cache.`,
    '- Contenders run in a rotating order, one run after another; ratios are taken within a run, then the median over runs.',
    '- Coordinator CPU: `process.cpuUsage()` of the bench process around the timed map (its workers live in other processes).',
    '',
  ].join('\n');
}
