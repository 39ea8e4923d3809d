// Cold start (b), issue 13: a trivial MapScale app as a user writes it. bench/run.ts times
// `node bench/cold-app/mapscale.mjs <jobs> [child-daemon]` from spawn to exit; it prints its results
// as one JSON line. `child-daemon`: the workers in a child daemon process (inProcess: false).
// `timeline`: ms since this process started (performance.now()) when its imports had loaded, when
// the results came, and when shutdown() was done: where the whole time goes.
import { Processor } from 'mapscale';

const imported = performance.now();
const jobs = Array.from({ length: Number(process.argv[2] ?? 10) }, (_, i) => i);
const processor = new Processor((x) => x * x, 2, process.argv[3] === 'child-daemon' ? { inProcess: false } : {});
const results = await processor.map(jobs);
const mapped = performance.now();
await processor.shutdown();
console.log(JSON.stringify({ results, timeline: { imported, mapped, shutDown: performance.now() } }));
