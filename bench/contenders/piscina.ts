import { Piscina } from 'piscina';
import type { Mapper, WorkloadSpec } from '../workloads.js';

const WORKER_URL = new URL('../piscina-worker.js', import.meta.url).href;

/**
 * Piscina as its docs suggest: a fixed pool of 2 threads, `run()` per task. With `chunk`, jobs
 * are batched by hand into tasks of that many jobs (one task returns an array of results).
 */
export function openPiscina(spec: WorkloadSpec, chunk?: number): Mapper {
  const pool = new Piscina({
    filename: WORKER_URL, minThreads: 2, maxThreads: 2,
    workerData: { compute: spec.compute, setupMs: spec.setupMs, batched: chunk !== undefined },
  });
  return {
    async map(jobs) {
      if (chunk === undefined) return Promise.all(jobs.map((job) => pool.run(job)));
      const tasks: Promise<unknown[]>[] = [];
      for (let start = 0; start < jobs.length; start += chunk) tasks.push(pool.run(jobs.slice(start, start + chunk)));
      return (await Promise.all(tasks)).flat();
    },
    close: () => pool.destroy(),
  };
}
