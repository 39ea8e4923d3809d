/**
 * One process of the raw-transport reference: listens on loopback, serves exactly one connection,
 * answers each frame of jobs with a frame of results, then exits. Run as
 * `node raw-child.js <compute> <setupMs> [thread|thread-socket]`; prints {"event":"listening","port":N}
 * when ready.
 * - `thread`: the socket is served on the main thread, frames are computed on one worker thread (see
 *   raw-thread.ts): the hop a MapScale daemon makes from its main thread to an instance thread.
 * - `thread-socket`: one worker thread both serves the socket and computes, the main thread only
 *   watches: what MapScale would reach if each instance thread served its own data connection.
 */
import { createServer } from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Packr, Unpackr } from 'msgpackr';
import { COMPUTE, setupDelay, type ComputeName } from './work.js';
import { FrameReader, FrameWriter } from './raw-frames.js';

const [computeName, setupMsArg, mode] = isMainThread ? process.argv.slice(2) : (workerData as { args: string[] }).args;
const fn = COMPUTE[computeName as ComputeName] as ((job: unknown) => unknown) | undefined;
if (!fn) {
  process.stderr.write(`raw-child: unknown compute ${computeName}\n`);
  process.exit(2);
}
// Same msgpackr configuration as MapScale's codec, so both carry typed arrays as binary.
const packr = new Packr({ moreTypes: true });
const unpackr = new Unpackr({ moreTypes: true });
const setupMs = Number(setupMsArg) || 0;

function announce(port: number): void {
  process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`);
}

/** Serves one connection: each frame of jobs answered here, or by `thread` if given. */
function serve(thread: Worker | null, onListening: (port: number) => void, onEnd: (code: number) => void): void {
  const server = createServer({ noDelay: true }, (socket) => {
    server.close();
    const reader = new FrameReader();
    const writer = new FrameWriter(socket);
    // The thread answers frames in order; each answer goes straight out.
    thread?.on('message', (out: Uint8Array) => writer.write(Buffer.from(out.buffer, out.byteOffset, out.byteLength)));
    socket.on('data', (chunk) => reader.push(chunk, (body) => {
      if (thread) {
        // A whole frame body has a buffer of its own (FrameReader allocates it): transfer, not copy.
        const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : Buffer.from(body);
        thread.postMessage(own, [own.buffer as ArrayBuffer]);
        return;
      }
      const jobs = unpackr.unpack(body) as unknown[];
      const results = new Array(jobs.length);
      for (let i = 0; i < jobs.length; i++) results[i] = fn!(jobs[i]);
      writer.write(packr.pack(results));
    }));
    socket.on('error', () => onEnd(1));
    socket.on('close', () => onEnd(0));
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    onListening(typeof address === 'object' && address ? address.port : 0);
  });
}

if (!isMainThread) {
  // The thread-socket case, inside the worker thread.
  await setupDelay(setupMs);
  serve(null, (port) => parentPort!.postMessage(port), (code) => process.exit(code));
} else {
  // Never outlive the bench, even if it is killed outright.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  if (mode === 'thread-socket') {
    const server = new Worker(new URL(import.meta.url), { workerData: { args: [computeName, setupMsArg] } });
    server.once('message', (port: number) => announce(port));
    server.once('error', () => process.exit(1));
    server.once('exit', (code) => process.exit(code));
  } else {
    let thread: Worker | null = null;
    if (mode === 'thread') {
      thread = new Worker(new URL('./raw-thread.js', import.meta.url), { workerData: { compute: computeName, setupMs } });
      await new Promise((resolve, reject) => {
        thread!.once('message', resolve);
        thread!.once('error', reject);
      });
    } else {
      await setupDelay(setupMs);
    }
    serve(thread, announce, (code) => process.exit(code));
  }
}
