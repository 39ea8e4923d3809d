// Cold start (b), issue 13: the same trivial app with Piscina, a task per job, as its docs show.
// bench/run.ts times `node bench/cold-app/piscina.mjs <jobs>` from spawn to exit; `timeline` as in
// mapscale.mjs.
import { Piscina } from 'piscina';

const imported = performance.now();
const jobs = Array.from({ length: Number(process.argv[2] ?? 10) }, (_, i) => i);
const pool = new Piscina({ filename: new URL('./piscina-worker.mjs', import.meta.url).href, minThreads: 2, maxThreads: 2 });
const results = await Promise.all(jobs.map((job) => pool.run(job)));
const mapped = performance.now();
await pool.destroy();
console.log(JSON.stringify({ results, timeline: { imported, mapped, shutDown: performance.now() } }));
