import { Processor, type ProcessorOptions, type WorkFunctionInput } from 'mapscale';
import { COMPUTE } from '../work.js';
import { SetupSquare } from '../work-classes.js';
import type { Mapper, WorkloadSpec } from '../workloads.js';

/** MapScale as a user writes it. `workers`: a number of local workers, or daemon addresses. */
export function openProcessor(fn: WorkFunctionInput<never, unknown>, workers: number | string[], secret?: string, options: ProcessorOptions = {}): Mapper {
  const processor = new Processor<unknown, unknown>(fn as WorkFunctionInput<unknown, unknown>, workers, { ...options, secret });
  return {
    map: (jobs) => processor.map(jobs),
    close: (force = false) => processor.shutdown({ force }),
  };
}

export function openMapScale(spec: WorkloadSpec, workers: number | string[], secret?: string, options?: ProcessorOptions): Mapper {
  return openProcessor(spec.setupMs > 0 ? new SetupSquare(spec.setupMs) : COMPUTE[spec.compute], workers, secret, options);
}
