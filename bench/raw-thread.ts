/**
 * The thread of the raw-plus-thread reference: what the raw child does with a frame (unpack, compute,
 * pack), moved off the socket's thread, as MapScale's daemons run jobs on instance threads. Frames
 * come and go as transferred ArrayBuffers; nothing else crosses.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Packr, Unpackr } from 'msgpackr';
import { COMPUTE, setupDelay, type ComputeName } from './work.js';

const { compute, setupMs } = workerData as { compute: ComputeName; setupMs: number };
const fn = COMPUTE[compute] as (job: unknown) => unknown;
const packr = new Packr({ moreTypes: true });
const unpackr = new Unpackr({ moreTypes: true });

await setupDelay(setupMs);
parentPort!.postMessage('ready');
parentPort!.on('message', (body: Uint8Array) => {
  const jobs = unpackr.unpack(Buffer.from(body.buffer, body.byteOffset, body.byteLength)) as unknown[];
  const results = new Array(jobs.length);
  for (let i = 0; i < jobs.length; i++) results[i] = fn(jobs[i]);
  const out = new Uint8Array(packr.pack(results));
  parentPort!.postMessage(out, [out.buffer]);
});
