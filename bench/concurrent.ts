/**
 * Many maps at once on one Processor (issue 12, item 10): N single-job `map([i])` calls started
 * together and awaited together. The scheduler used to rebuild its run list and scan every batch
 * when a run ended, and search runs linearly for the next one to serve, so N maps cost N²
 * (10,000 took 0.52 s, 40,000 16.4 s); with runs indexed, the cost per map should not depend on N.
 */
import { performance } from 'node:perf_hooks';
import type { Mapper } from './workloads.js';

/** Wall seconds for `n` concurrent one-job maps of the identity function, every result checked. */
export async function measureConcurrentMaps(mapper: Mapper, n: number): Promise<number> {
  const t0 = performance.now();
  const maps: Promise<unknown[]>[] = new Array(n);
  for (let i = 0; i < n; i++) maps[i] = mapper.map([i]);
  const out = await Promise.all(maps);
  const seconds = (performance.now() - t0) / 1000;
  for (let i = 0; i < n; i++) {
    const result = out[i]!;
    if (result.length !== 1 || result[0] !== i) throw new Error(`concurrent: map ${i} of ${n} returned ${JSON.stringify(result)}`);
  }
  return seconds;
}
