/**
 * The latency workload for one contender with every process and thread of it on one CPU. run.ts
 * starts this under `taskset -c 0`, and everything it starts inherits that CPU.
 *
 * Why: on this 2-vCPU VM a round trip between two threads costs ~0.022 ms when both sit on one CPU
 * and ~0.064 ms across two (a wake-up across CPUs is an IPI the hypervisor handles), and the
 * scheduler picks either for any contender in any run. Pinned, every contender pays the same
 * wake-ups, so the figures compare the software paths alone.
 *
 *   node bench-dist/pinned.js <ms-local|ms-daemon|raw|raw-thread-socket> [quick]
 * prints one JSON line: { "value": p50 in ms }.
 */
import { randomBytes } from 'node:crypto';
import { openMapScale } from './contenders/mapscale.js';
import { openRaw } from './contenders/raw.js';
import { startDaemon, type Daemon } from './daemons.js';
import { WORKERS, measureWarm, type WorkloadData } from './measure.js';
import { FULL_SIZES, PINNED_IDS, QUICK_SIZES, workloadSpecs, type Mapper, type PinnedId } from './workloads.js';

const [id, mode] = process.argv.slice(2) as [PinnedId, string | undefined];
if (!PINNED_IDS.includes(id)) throw new Error(`pinned: unknown contender ${id}`);
const sizes = mode === 'quick' ? QUICK_SIZES : FULL_SIZES;
const spec = workloadSpecs(sizes).latency;
// The latency workload makes its own 1-job maps and reads none of the shared data.
const noData = { w1Jobs: [], w2Jobs: [], w2Expected: 0, w3Jobs: [], w3Expected: [], w4Jobs: [] } satisfies WorkloadData;
const secret = randomBytes(24).toString('base64url');

let daemon: Daemon | undefined;
let mapper: Mapper | undefined;
try {
  if (id === 'ms-daemon') daemon = await startDaemon(WORKERS, secret, 20_000);
  mapper = id === 'ms-local' ? openMapScale(spec, WORKERS)
    : id === 'ms-daemon' ? openMapScale(spec, [daemon!.address], secret)
      : openRaw(spec, WORKERS, id === 'raw' ? null : 'thread-socket');
  const { value } = await measureWarm('latency', sizes, noData, mapper);
  process.stdout.write(`${JSON.stringify({ value })}\n`);
} finally {
  await mapper?.close();
  await daemon?.stop();
}
