/**
 * One process of the raw-transport reference: listens on loopback, serves exactly one connection,
 * answers each frame of jobs with a frame of results, then exits. Run as
 * `node raw-child.js <compute> <setupMs>`; prints {"event":"listening","port":N} when ready.
 */
import { createServer } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { COMPUTE, setupDelay, type ComputeName } from './work.js';
import { FrameReader, FrameWriter } from './raw-frames.js';

const [computeName, setupMsArg] = process.argv.slice(2);
const fn = COMPUTE[computeName as ComputeName] as ((job: unknown) => unknown) | undefined;
if (!fn) {
  process.stderr.write(`raw-child: unknown compute ${computeName}\n`);
  process.exit(2);
}
// Same msgpackr configuration as MapScale's codec, so both carry typed arrays as binary.
const packr = new Packr({ moreTypes: true });
const unpackr = new Unpackr({ moreTypes: true });

// Never outlive the bench, even if it is killed outright.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

await setupDelay(Number(setupMsArg) || 0);

const server = createServer({ noDelay: true }, (socket) => {
  server.close();
  const reader = new FrameReader();
  const writer = new FrameWriter(socket);
  socket.on('data', (chunk) => reader.push(chunk, (body) => {
    const jobs = unpackr.unpack(body) as unknown[];
    const results = new Array(jobs.length);
    for (let i = 0; i < jobs.length; i++) results[i] = fn(jobs[i]);
    writer.write(packr.pack(results));
  }));
  socket.on('error', () => process.exit(1));
  socket.on('close', () => process.exit(0));
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
