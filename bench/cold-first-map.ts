/**
 * Cold start (a), issue 13: one fresh pool in this fresh process, its first map of `jobs` tiny jobs
 * (`x*x`), the pool closed, and out. run.ts times this process from spawn to exit (the figure the
 * targets use); this prints what it saw itself, as one JSON line:
 *   { "importMs", "mapMs" (pool created → first map's results), "checkMs", "closeMs" }
 *
 *   node bench-dist/cold-first-map.js <ms-local|ms-child-daemon|piscina-batched|raw> <jobs>
 *
 * The contender's module is imported here, after the clock starts: `import 'mapscale'` is part of
 * what a fresh user pays. Every result is checked; the parent takes the check's time off the wall
 * time, since each contender's check costs differently (Python's is a loop in Python).
 */
import { performance } from 'node:perf_hooks';
import { WORKERS } from './measure.js';
import { FULL_SIZES, workloadSpecs, type Mapper } from './workloads.js';

const started = performance.now();
const [id, jobsArg] = process.argv.slice(2);
const count = Number(jobsArg);
if (!Number.isInteger(count) || count < 1) throw new Error(`cold-first-map: bad job count ${jobsArg}`);
// W1's spec: `square`, 1,000 jobs per raw frame and per hand-made Piscina task.
const spec = workloadSpecs(FULL_SIZES).w1;

async function open(): Promise<() => Mapper> {
  switch (id) {
    case 'ms-local': {
      const { openMapScale } = await import('./contenders/mapscale.js');
      return () => openMapScale(spec, WORKERS);
    }
    case 'ms-child-daemon': {
      const { openMapScale } = await import('./contenders/mapscale.js');
      return () => openMapScale(spec, WORKERS, undefined, { inProcess: false });
    }
    case 'piscina-batched': {
      const { openPiscina } = await import('./contenders/piscina.js');
      return () => openPiscina(spec, spec.piscinaChunk);
    }
    case 'raw': {
      const { openRaw } = await import('./contenders/raw.js');
      return () => openRaw(spec, WORKERS);
    }
    default:
      throw new Error(`cold-first-map: unknown contender ${id}`);
  }
}

const jobs = Array.from({ length: count }, (_, i) => i);
const create = await open();
const imported = performance.now();
const mapper = create();
const results = await mapper.map(jobs);
const mapped = performance.now();
if (results.length !== count) throw new Error(`cold-first-map: ${results.length} results for ${count} jobs`);
for (let i = 0; i < count; i++) if (results[i] !== i * i) throw new Error(`cold-first-map: wrong result for job ${i}: ${String(results[i])}`);
const checkedAt = performance.now();
await mapper.close();
const closed = performance.now();
process.stdout.write(`${JSON.stringify({
  importMs: imported - started, mapMs: mapped - imported, checkMs: checkedAt - mapped, closeMs: closed - checkedAt,
})}\n`);
