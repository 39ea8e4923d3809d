// Cold start (b), issue 13: a trivial MapScale app as a user writes it. bench/run.ts times
// `node bench/cold-app/mapscale.mjs <jobs>` from spawn to exit; it prints its results as one JSON line.
import { Processor } from 'mapscale';

const jobs = Array.from({ length: Number(process.argv[2] ?? 10) }, (_, i) => i);
const processor = new Processor((x) => x * x, 2);
const results = await processor.map(jobs);
await processor.shutdown();
console.log(JSON.stringify({ results }));
