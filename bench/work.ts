/**
 * The compute of every workload, shared by all contenders so they run the very same code.
 * Each is a self-contained arrow function: MapScale ships it by source, Piscina's worker and the
 * raw-transport child import it from here.
 */

/** W1 and latency: the cheapest job there is, so only per-job overhead shows. */
export const square = (x: number): number => x * x;

/** W2: about `n` iterations of floating-point work; the bench calibrates n to ~10 ms. */
export const spin = (n: number): number => {
  let acc = 0;
  for (let i = 0; i < n; i++) acc = (acc + Math.sqrt(i)) % 1e9;
  return acc;
};

/** W3: a 1 MiB Float64Array in, one number out: the cost is moving the bytes. */
export const sum = (values: Float64Array): number => {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i]!;
  return total;
};

/** Coordinator capacity: no work at all. */
export const identity = (x: number): number => x;

export type ComputeName = 'square' | 'spin' | 'sum' | 'identity';

export const COMPUTE: Readonly<Record<ComputeName, (job: never) => unknown>> = Object.freeze({ square, spin, sum, identity });

/** W4's setup as the peers run it: the same wait MapScale's SetupSquare.setup() does. */
export function setupDelay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
