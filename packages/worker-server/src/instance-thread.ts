/**
 * Entry of one worker instance's thread: restores the work function, runs setup(), answers
 * batches in order, runs cleanup(). Jobs run one after another; a sync call() is not wrapped
 * in a promise, so a batch of trivial jobs costs no per-job allocation beyond its result.
 */
import { parentPort } from 'node:worker_threads';
import { format } from 'node:util';
import { performance } from 'node:perf_hooks';
import { createCodec, serializeError, truncateText, type SerializedError } from '@mapscale/protocol';
import { explainScopeError, restoreWorkFunction, type RestoredWorkFunction } from './restore.js';
import { PROGRESS, type FromInstance, type ToInstance } from './instance-protocol.js';

const port = parentPort!;
const codec = createCodec();
let restored: RestoredWorkFunction | null = null;
let flushMs = 5;
let progress: Int32Array<ArrayBufferLike> = new Int32Array(PROGRESS.length);
/** Batches arrive while one runs; they are answered strictly in arrival order. */
const queue: ToInstance[] = [];
let draining = false;
/** Batches nobody waits for any more: skipped if queued, stopped between jobs if running. */
const cancelled = new Set<number>();

function post(message: FromInstance, transfer?: ArrayBuffer[]): void {
  port.postMessage(message, transfer);
}

/**
 * What user code prints goes to the daemon's main thread as a message, tagged with the phase and
 * job, instead of straight to the daemon's stdout (which carries its JSON log).
 */
let phase: 'setup' | 'call' | 'cleanup' = 'setup';
/** One console call's text is cut here: a huge dump must not become a frame the coordinator refuses. */
const MAX_OUTPUT_CHARS = 64 * 1024;
function captureConsole(): void {
  const streams: [keyof Console, 'stdout' | 'stderr'][] = [
    ['log', 'stdout'], ['info', 'stdout'], ['debug', 'stdout'], ['warn', 'stderr'], ['error', 'stderr'], ['trace', 'stderr'],
  ];
  for (const [method, stream] of streams) {
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      const batch = progress[PROGRESS.batch]!;
      post({
        kind: 'output', stream, text: truncateText(format(...args), MAX_OUTPUT_CHARS), phase,
        ...(phase === 'call' && batch !== 0 ? { batch, jobOffset: progress[PROGRESS.jobOffset]! } : {}),
      });
    };
  }
}
captureConsole();

function toWire(error: unknown): SerializedError {
  return serializeError(restored ? explainScopeError(error, restored) : error);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** Packs results into their own exact-size buffer so it can be transferred, not cloned. */
function packResults(values: unknown[]): Uint8Array {
  return new Uint8Array(codec.pack(values));
}

async function runBatch(batch: number, payload: Uint8Array): Promise<void> {
  if (cancelled.delete(batch)) return;
  // Decoding from a Buffer view makes msgpack bin values Buffers again (from a bare Uint8Array they would not be).
  const jobs = codec.unpack(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)) as unknown[];
  const fn = restored!.instance;
  let offset = 0;
  let values: unknown[] = [];
  let errors: [number, SerializedError][] | undefined;
  let sliceStart = performance.now();
  const flush = (final: boolean) => {
    const now = performance.now();
    const bytes = packResults(values);
    post({ kind: 'results', batch, offset, count: values.length, payload: bytes, errors, busyMs: now - sliceStart, final }, [bytes.buffer as ArrayBuffer]);
    offset += values.length;
    values = [];
    errors = undefined;
    sliceStart = now;
  };
  progress[PROGRESS.batch] = batch;
  // Reading the clock before every job costs ~8% of a trivial job; while jobs are fast it is read
  // every `stride` jobs instead, and every job again as soon as they are not.
  let stride = 1;
  let lastCheck = sliceStart;
  for (let i = 0; i < jobs.length; i++) {
    // Before starting another job, hand back what is done if it has waited long enough:
    // a slow job later in the batch must not hold finished results hostage.
    if (i % stride === 0 && values.length > 0) {
      const now = performance.now();
      if (now - sliceStart > flushMs) flush(false);
      stride = now - lastCheck < flushMs / 64 ? Math.min(stride * 2, 64) : 1;
      lastCheck = now;
    }
    if (cancelled.size > 0 && cancelled.has(batch)) {
      cancelled.delete(batch);
      progress[PROGRESS.batch] = 0;
      return;
    }
    progress[PROGRESS.jobOffset] = i;
    progress[PROGRESS.jobsStarted]!++;
    let value: unknown;
    try {
      value = fn.call(jobs[i]);
      if (isThenable(value)) value = await value;
    } catch (error) {
      value = null;
      (errors ??= []).push([values.length, toWire(error)]);
    }
    values.push(value);
  }
  progress[PROGRESS.batch] = 0;
  flush(true);
}

async function handle(message: ToInstance): Promise<void> {
  switch (message.kind) {
    case 'init': {
      flushMs = message.flushMs;
      progress = new Int32Array(message.progress);
      try {
        restored = await restoreWorkFunction(message.code, message.bundlePath);
        await restored.instance.setup?.();
        post({ kind: 'ready' });
      } catch (error) {
        post({ kind: 'setup-failed', error: toWire(error) });
        restored = null;
      }
      return;
    }
    case 'batch':
      phase = 'call';
      return runBatch(message.batch, message.payload);
    case 'cancel':
      return; // handled on arrival, see the listener
    case 'cleanup': {
      phase = 'cleanup';
      try {
        await restored?.instance.cleanup?.();
        post({ kind: 'cleaned' });
      } catch (error) {
        post({ kind: 'cleaned', error: toWire(error) });
      }
      return;
    }
  }
}

async function drain(): Promise<void> {
  draining = true;
  while (queue.length > 0) {
    await handle(queue.shift()!);
    // A turn of the event loop between batches lets cancel messages in before the next one starts.
    if (queue.length > 0) await new Promise((resolve) => setImmediate(resolve));
  }
  draining = false;
}

function cancel(batches: number[] | 'all'): void {
  const drop = batches === 'all' ? null : new Set(batches);
  for (let i = queue.length - 1; i >= 0; i--) {
    const queued = queue[i]!;
    if (queued.kind === 'batch' && (drop === null || drop.has(queued.batch))) queue.splice(i, 1);
  }
  const running = progress[PROGRESS.batch]!;
  if (running !== 0 && (drop === null || drop.has(running))) cancelled.add(running);
}

port.on('message', (message: ToInstance) => {
  if (message.kind === 'cancel') return cancel(message.batches);
  queue.push(message);
  if (!draining) void drain();
});
