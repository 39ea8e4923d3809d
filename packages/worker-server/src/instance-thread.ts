/**
 * Entry of one worker instance's thread: restores the work function, runs setup(), answers
 * batches in order, runs cleanup(). Jobs run one after another; a sync call() is not wrapped
 * in a promise, so a batch of trivial jobs costs no per-job allocation beyond its result.
 */
import { parentPort } from 'node:worker_threads';
import { format } from 'node:util';
import { performance } from 'node:perf_hooks';
import { ProtocolError, createCodec, serializeError, truncateText, type DataEndpoint, type Message, type SerializedError } from '@mapscale/protocol';
import { explainScopeError, restoreWorkFunction, type RestoredWorkFunction } from './restore.js';
import { COUNTERS, PROGRESS, readCancels, type DataConfig, type FromInstance, type ToInstance } from './instance-protocol.js';
import { DataListener } from './data-listener.js';
import { fitResultsFrame } from './result-frame.js';
import { packEachJob } from './result-encoding.js';
import type { FramedConnection } from '@mapscale/transport';

const port = parentPort!;
// Results with a function in them fail that job instead of arriving with undefined in its place.
const codec = createCodec({ refuseFunctions: true });
let restored: RestoredWorkFunction | null = null;
let flushMs = 5;
let progress: Int32Array<ArrayBufferLike> = new Int32Array(PROGRESS.length);
let counters: BigInt64Array<ArrayBufferLike> = new BigInt64Array(COUNTERS.length);
/** Batches arrive while one runs (from the main thread or the data connection); answered strictly in arrival order. */
const queue: ToInstance[] = [];
let draining = false;
/** The batch being run, or 0. */
let running = 0;
/** The running batch was cancelled: it stops before its next job. */
let stopRunning = false;
/** This instance's session is over (the main thread said so through shared memory): no batch runs any more. */
let halted = false;
/** How many cancels the main thread had published when this thread last looked (PROGRESS.cancels). */
let cancelsSeen = 0;
/**
 * Batches cancelled through shared memory before their jobs reached this thread (still in a socket
 * or port it has not read): dropped when they come. Bounded: one that never comes (it had finished
 * when the cancel was sent) must not stay forever, and past the bound the cancel message that
 * follows its jobs still drops it, only later.
 */
const cancelledAhead = new Set<number>();
const CANCELLED_AHEAD_MAX = 1024;

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
      const output = {
        stream, text: truncateText(format(...args), MAX_OUTPUT_CHARS), phase,
        ...(phase === 'call' && batch !== 0 ? { batch, jobOffset: progress[PROGRESS.jobOffset]! } : {}),
      };
      // On the data connection it stays in step with the results of the job that printed it.
      const forwarded = data !== null && data.config.forwardOutput;
      if (forwarded) data!.connection.sendNow({ type: 'output', slot: data!.config.slot, ...output });
      post({ kind: 'output', ...output, forwarded });
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

/**
 * Answers a part of a batch: straight to the coordinator on the data connection when one is
 * attached, else through the main thread (packed into a buffer of its own so it is transferred, not cloned).
 */
function sendResults(batch: number, offset: number, values: unknown[], errors: [number, SerializedError][] | undefined, busyMs: number, final: boolean): void {
  let payload: Buffer;
  try {
    payload = codec.packList(values);
  } catch (error) {
    ({ payload, errors } = packEachJob(codec, values, errors, error));
  }
  Atomics.add(counters, COUNTERS.jobsDone, BigInt(values.length));
  if (errors) Atomics.add(counters, COUNTERS.jobErrors, BigInt(errors.length));
  if (data) {
    // At once: a part flushed between jobs must leave before the next job starts, since a
    // synchronous job keeps this thread (and the end of its tick) until it returns.
    data.connection.sendNow(fitResultsFrame({
      type: 'results', slot: data.config.slot, batch, offset, payload, errors, busyMs, final,
    }, data.config.resultsFrameLimit));
    return;
  }
  const bytes = new Uint8Array(payload);
  post({ kind: 'results', batch, offset, count: values.length, payload: bytes, errors, busyMs, final }, [bytes.buffer as ArrayBuffer]);
}

/** The time limit is published before the batch id, so a watchdog that sees the batch sees its limit. */
function startBatch(batch: number, timeoutMs: number | undefined): void {
  const limit = timeoutMs !== undefined && timeoutMs > 0 ? Math.min(Math.ceil(timeoutMs), 0x7fffffff) : 0;
  Atomics.store(progress, PROGRESS.limitMs, limit);
  Atomics.store(progress, PROGRESS.batch, batch);
  if (limit > 0 && Atomics.compareExchange(progress, PROGRESS.watching, 0, 1) === 0) post({ kind: 'watch' });
}

function endBatch(): void {
  running = 0;
  Atomics.store(progress, PROGRESS.batch, 0);
  Atomics.store(progress, PROGRESS.limitMs, 0);
}

async function runBatch(batch: number, payload: Uint8Array, timeoutMs: number | undefined): Promise<void> {
  if (progress[PROGRESS.cancels] !== cancelsSeen) takeSharedCancels();
  if (halted || (cancelledAhead.size > 0 && cancelledAhead.delete(batch))) return;
  // Decoding from a Buffer view makes msgpack bin values Buffers again (from a bare Uint8Array they would not be).
  const jobs = codec.unpack(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)) as unknown[];
  const fn = restored!.instance;
  let offset = 0;
  let values: unknown[] = [];
  let errors: [number, SerializedError][] | undefined;
  let sliceStart = performance.now();
  const flush = (final: boolean) => {
    const now = performance.now();
    sendResults(batch, offset, values, errors, now - sliceStart, final);
    offset += values.length;
    values = [];
    errors = undefined;
    sliceStart = now;
  };
  running = batch;
  stopRunning = false;
  startBatch(batch, timeoutMs);
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
    // One shared-memory read per job: a cancel gets here even while every job is synchronous. A plain
    // read (~3 ns a job; Atomics.load cost ~12 in a loop of trivial jobs): it cannot be hoisted past
    // the call to user code, and readCancels reads what it found with Atomics.
    if (progress[PROGRESS.cancels] !== cancelsSeen) takeSharedCancels();
    if (stopRunning) {
      endBatch();
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
  endBatch();
  flush(true);
}

async function handle(message: ToInstance): Promise<void> {
  switch (message.kind) {
    case 'init': {
      flushMs = message.flushMs;
      progress = new Int32Array(message.progress);
      counters = new BigInt64Array(message.counters);
      dataConfig = message.data;
      try {
        restored = await restoreWorkFunction(message.code, message.bundlePath);
        await restored.instance.setup?.();
        post({ kind: 'ready', data: await offerData() });
      } catch (error) {
        post({ kind: 'setup-failed', error: toWire(error) });
        restored = null;
      }
      return;
    }
    case 'batch':
      phase = 'call';
      return runBatch(message.batch, message.payload, message.timeoutMs);
    case 'cancel':
      return; // handled on arrival, see the listener
    case 'cleanup': {
      phase = 'cleanup';
      closeData();
      // From here cleanup() runs under its own time bound, no longer a job's grace.
      post({ kind: 'cleanup-started' });
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

/**
 * A cancel message, read in order behind the jobs it names (on the data connection, or relayed by
 * the main thread): drops those queued, stops the running one. 'all': the data connection closed.
 */
function cancel(batches: number[] | 'all'): void {
  const drop = batches === 'all' ? null : new Set(batches);
  for (let i = queue.length - 1; i >= 0; i--) {
    const queued = queue[i]!;
    if (queued.kind === 'batch' && (drop === null || drop.has(queued.batch))) queue.splice(i, 1);
  }
  if (running !== 0 && (drop === null || drop.has(running))) stopRunning = true;
}

/** Reads what the main thread published since last time: cancelled batch ids, and the halt. */
function takeSharedCancels(): void {
  cancelsSeen = readCancels(progress, cancelsSeen, cancelAhead);
  if (!halted && Atomics.load(progress, PROGRESS.halted) === 1) {
    halted = true;
    cancel('all');
  }
}

/** A batch cancelled through shared memory: its jobs may not even have reached this thread yet. */
function cancelAhead(batch: number): void {
  if (batch === running) {
    stopRunning = true;
    return;
  }
  const at = queue.findIndex((queued) => queued.kind === 'batch' && queued.batch === batch);
  if (at >= 0) {
    queue.splice(at, 1);
    return;
  }
  cancelledAhead.add(batch);
  if (cancelledAhead.size > CANCELLED_AHEAD_MAX) cancelledAhead.delete(cancelledAhead.values().next().value!);
}

function enqueue(message: ToInstance): void {
  queue.push(message);
  if (!draining) void drain();
}

port.on('message', (message: ToInstance) => {
  if (message.kind === 'cancel') return cancel(message.batches);
  enqueue(message);
});

// ── The data connection: jobs straight from the coordinator, results straight back ──

let dataConfig: DataConfig | undefined;
let listener: DataListener | null = null;
let data: { connection: FramedConnection; config: DataConfig } | null = null;
/** Set once cleanup starts: a data connection that closes then is expected, and none is offered again. */
let dataEnded = false;

/** Opens a listener for this instance's data connection; the endpoint goes to the coordinator through the main thread. */
async function offerData(): Promise<DataEndpoint | undefined> {
  const config = dataConfig;
  if (!config || dataEnded) return undefined;
  const opened = await DataListener.open(config, {
    attached: (connection) => attach(connection, config),
    refused: (peer, error) => post({ kind: 'data-refused', peer, code: error.code, reason: error.message }),
  });
  if (!opened) return undefined;
  listener?.close();
  // Cleanup may have begun while the port was being opened: then nobody is to attach any more.
  if (dataEnded) {
    opened.listener.close();
    return undefined;
  }
  listener = opened.listener;
  return opened.endpoint;
}

function attach(connection: FramedConnection, config: DataConfig): void {
  listener = null;
  data = { connection, config };
  post({ kind: 'data-attached', peer: connection.remoteAddress });
  connection.on('message', (message: Message) => {
    switch (message.type) {
      case 'jobs':
        if (message.slot !== config.slot) break;
        return enqueue({ kind: 'batch', batch: message.batch, payload: message.payload, timeoutMs: typeof message.timeoutMs === 'number' ? message.timeoutMs : undefined });
      case 'cancel':
        if (message.slot !== config.slot) break;
        return cancel(message.batches.filter((b): b is number => typeof b === 'number'));
      case 'error':
        return connection.end();
    }
    connection.fail(new ProtocolError(`unexpected "${message.type}" for slot ${(message as { slot?: unknown }).slot} on slot ${config.slot}'s data connection`));
  });
  connection.on('close', (error) => void detach(connection, error));
}

/**
 * The data connection closed while this instance lives on. Whatever came through it is dropped
 * (the coordinator counts this slot's batches as lost) and a fresh endpoint is offered.
 */
async function detach(connection: FramedConnection, error: { code: string; message: string } | undefined): Promise<void> {
  if (data?.connection !== connection) return;
  data = null;
  if (dataEnded) return;
  cancel('all');
  post({ kind: 'data-closed', code: error?.code, reason: error?.message ?? 'the coordinator closed it', data: await offerData() });
}

function closeData(): void {
  dataEnded = true;
  listener?.close();
  listener = null;
  // What cleanup() prints goes through the main thread from here on.
  data?.connection.end();
  data = null;
}
