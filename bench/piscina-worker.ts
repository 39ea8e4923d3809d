/** Piscina's worker module: the workload's compute, one job or one hand-made batch per task. */
import { workerData } from 'node:worker_threads';
import { COMPUTE, setupDelay, type ComputeName } from './work.js';

const { compute, setupMs, batched } = workerData as { compute: ComputeName; setupMs: number; batched: boolean };
const fn = COMPUTE[compute] as (job: unknown) => unknown;

// Top-level await: Piscina hands this thread no task before the module has loaded, i.e. after setup.
if (setupMs > 0) await setupDelay(setupMs);

export default batched
  ? (jobs: unknown[]) => {
      const results = new Array(jobs.length);
      for (let i = 0; i < jobs.length; i++) results[i] = fn(jobs[i]);
      return results;
    }
  : fn;
