import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  AuthenticationError, MapScaleError, ProtocolVersionError, createCodec, deserializeError, serializeError,
  type OutputMessage, type ResultsMessage, type ShippedCode, type SlotLostMessage,
} from '@mapscale/protocol';
import {
  AbortError, CleanupError, TLSError, JobError, JobTimeoutError, JobTooLargeError, NoWorkersError, ProcessorClosedError, SetupError, ShippingError,
  WorkerCrashedError,
} from './errors.js';
import { LocalDaemon } from './local-daemon.js';
import { bundleModule } from './bundling.js';
import { MapRun, Scheduler, type Batch, type JobFailure, type ResultOutcome, type SlotLoss } from './scheduler.js';
import { ArrayResults, OrderedResults, UnorderedResults, type ResultStore } from './result-stores.js';
import { parseAddress, type DaemonAddress } from '@mapscale/transport';
import { WorkerSession } from './worker-session.js';
import type { ResolvedProcessorOptions } from './options.js';

/** A Processor's life; only 'running' takes new maps. */
export type EngineStatus = 'starting' | 'running' | 'closing' | 'closed';

/** What the Processor re-emits to the app. */
export interface WorkerEvent {
  address: string;
  slots?: number;
  reason?: Error;
}
export type EngineEventName = 'worker-joined' | 'worker-lost' | 'worker-rejoined';

/**
 * A place workers come from: a daemon address, or a local daemon the engine starts (and restarts
 * when it dies). It keeps being reconnected, with backoff, until shutdown.
 */
interface Endpoint {
  readonly local: boolean;
  /** For a local endpoint: worker instances its daemon runs. */
  readonly localWorkers: number;
  label: string;
  address: DaemonAddress | null;
  daemon: LocalDaemon | null;
  session: WorkerSession | null;
  /** Consecutive failed attempts, for the backoff. */
  failures: number;
  joinedOnce: boolean;
  retry: NodeJS.Timeout | null;
  /** The daemon said goodbye: its slots were handed back already. */
  retiring: boolean;
  /** Taken out of the pool by removeWorkers(): never reconnected. */
  removed: boolean;
  readonly stats: WorkerStats;
}

/** What the coordinator saw of one worker (a daemon address, or the local workers). */
export interface WorkerStats {
  address: string;
  state: 'connecting' | 'ready' | 'lost' | 'removed';
  slots: number;
  /** Jobs answered by it (results and job errors). */
  jobs: number;
  /** Time its instances spent running jobs, summed over instances. */
  busyMs: number;
  /** Jobs that threw, crashed their instance, or timed out on it. */
  failures: number;
  /** Times it was lost, and times it came back. */
  losses: number;
  reconnects: number;
  /** The last heartbeat's round trip to it, in ms; undefined until one is answered. */
  roundTripMs: number | undefined;
  /**
   * Batches each of its instances may have in flight now: one running, the next in hand, and more
   * where the round trip is long next to a batch's run time (see Scheduler). 0 while it has none.
   */
  credit: number;
  /**
   * Of its instances, how many take their jobs over a data connection of their own (straight to the
   * instance's thread); the others are served through the daemon's port. See ARCHITECTURE.md.
   */
  directSlots: number;
}

/** Where workers come from: a local daemon with N instances, or a daemon address. */
export type WorkerSpec = { local: number } | DaemonAddress;

/** `map(jobs, { onProgress })` is called with this, at most every PROGRESS_INTERVAL_MS and once at the end. */
export interface MapProgress {
  done: number;
  /** Undefined while a streamed input is still being read. */
  total: number | undefined;
  failed: number;
  jobsPerSecond: number;
  elapsedMs: number;
}

const PROGRESS_INTERVAL_MS = 100;
/** Room for a jobs message's envelope (type, slot, batch, time limit) beside its payload. */
const JOBS_ENVELOPE_BYTES = 256;

interface SlotRef {
  endpoint: Endpoint;
  session: WorkerSession;
  slot: number;
}

export interface RunRequest {
  settle: boolean;
  jobTimeoutMs: number | undefined;
  signal: AbortSignal | undefined;
  onProgress?: ((progress: MapProgress) => void) | undefined;
}

/** One map/imap call: its run, where its input comes from, and who waits for it. */
interface RunHandle {
  readonly run: MapRun;
  readonly input: Iterator<unknown> | AsyncIterator<unknown> | null;
  feeding: boolean;
  error: Error | null;
  /** Settles an array map; streams use `wake`. */
  resolve?: (results: unknown[]) => void;
  reject?: (error: Error) => void;
  wake: (() => void) | null;
  detach: () => void;
  progress: ProgressReporter | null;
}

/** Calls the user's onProgress, throttled, and once more at the end. */
class ProgressReporter {
  readonly #callback: (progress: MapProgress) => void;
  readonly #started = performance.now();
  #last = 0;
  failed = 0;

  constructor(callback: (progress: MapProgress) => void) {
    this.#callback = callback;
  }

  report(run: MapRun, final = false): void {
    const now = performance.now();
    if (!final && now - this.#last < PROGRESS_INTERVAL_MS) return;
    this.#last = now;
    const elapsedMs = now - this.#started;
    try {
      this.#callback({
        done: run.done, total: run.exhausted ? run.fetched : undefined, failed: this.failed,
        jobsPerSecond: elapsedMs > 0 ? (run.done * 1000) / elapsedMs : 0, elapsedMs,
      });
    } catch {
      // A throwing progress callback must not break the map it reports on.
    }
  }
}

/** Errors that no retry can fix: the configuration or the code is wrong. */
function isPermanent(error: unknown): boolean {
  return error instanceof AuthenticationError || error instanceof ProtocolVersionError ||
    error instanceof SetupError || error instanceof ShippingError || error instanceof TLSError;
}

/**
 * Carries out what the Scheduler decides: owns the endpoints (daemon connections and local
 * daemons) and their recovery, encodes batches, decodes results, settles each call. Processor is
 * its thin public face.
 */
export class Engine {
  #status: EngineStatus = 'starting';
  readonly #options: ResolvedProcessorOptions;
  readonly #log: Logger;
  #code: ShippedCode;
  #bundle: { hash: string; source: Uint8Array } | undefined;
  /** Settles once #code is what the workers get (bundled, if it is bundled); awaited before each setup. */
  #shipping: Promise<void> = Promise.resolve();
  readonly #codec = createCodec();
  readonly #scheduler: Scheduler;
  readonly #emit: (event: EngineEventName, payload: WorkerEvent) => void;
  readonly #endpoints: Endpoint[] = [];
  readonly #slots = new Map<number, SlotRef>();
  readonly #sessionSlots = new Map<WorkerSession, Map<number, number>>();
  readonly #handles = new Map<MapRun, RunHandle>();
  readonly #lost: { address: string; reason: Error }[] = [];
  /** Instances being replaced inside live daemons, and local daemons being restarted: workers still to come. */
  #recovering = 0;
  #nextSlotId = 1;
  #nextRunId = 1;
  #ready: Promise<void>;
  #shutdown: Promise<void> | null = null;
  /** Sockets and child processes are unref'd; this ref'd timer keeps the app alive only while a caller awaits us. */
  #keepAlive: NodeJS.Timeout | null = null;
  #busy = 0;
  readonly #inProgress = new Set<Promise<unknown>>();
  #forced = false;

  constructor(code: ShippedCode, workers: readonly WorkerSpec[], options: ResolvedProcessorOptions,
    emit: (event: EngineEventName, payload: WorkerEvent) => void = () => {}) {
    this.#code = code;
    this.#options = options;
    this.#emit = emit;
    this.#log = options.logger.child({ component: 'engine' });
    this.#scheduler = new Scheduler({ chunkSize: options.chunkSize });
    this.#ready = this.#start(workers);
    // Failures surface through map(); an unobserved start failure must not crash the app.
    this.#ready.catch(() => {});
  }

  get status(): EngineStatus {
    return this.#status;
  }

  get workerCount(): number {
    return this.#slots.size;
  }

  // ── Endpoints: connecting, losing, rejoining ─────────────────────────────

  async #start(workers: readonly WorkerSpec[]): Promise<void> {
    for (const spec of workers) this.#endpoints.push(this.#endpoint(spec));
    // Bundling runs while local daemons start (a Node process takes ~65 ms to come up) and daemons
    // are connected to and authenticated: only setup needs its result.
    this.#shipping = this.#bundleCode();
    this.#shipping.catch(() => {});
    const failures = await this.#firstAttempts();
    const permanent = failures.find(isPermanent);
    if (permanent) throw permanent;
    if (this.#slots.size === 0 && failures.length > 0) throw failures.length === 1 ? failures[0] : new NoWorkersError(this.#lost);
    if (this.#status === 'starting') this.#status = 'running';
    // Some answered, some not (yet): keep trying those in the background.
    for (const endpoint of this.#endpoints) if (!endpoint.session) this.#scheduleReconnect(endpoint);
  }

  /** Once per Processor: every daemon gets the same bytes, or only their hash if it has them. */
  async #bundleCode(): Promise<void> {
    const code = this.#code;
    if (code.kind !== 'module' || !this.#options.bundle) return;
    const bundle = await bundleModule(code.url, code.exportName, code.external ?? []);
    this.#bundle = { hash: bundle.hash, source: bundle.source };
    this.#code = { kind: 'bundle', hash: bundle.hash, bytes: bundle.source.length, exportName: code.exportName, state: code.state, external: bundle.external };
    this.#log.info({ event: 'bundled', hash: bundle.hash, bytes: bundle.source.length, external: bundle.external });
  }

  #endpoint(spec: WorkerSpec): Endpoint {
    const local = 'local' in spec;
    const label = local ? 'local' : spec.label;
    return {
      local, localWorkers: local ? spec.local : 0, label, address: local ? null : spec, daemon: null, session: null,
      failures: 0, joinedOnce: false, retry: null, retiring: false, removed: false,
      stats: { address: label, state: 'connecting', slots: 0, jobs: 0, busyMs: 0, failures: 0, losses: 0, reconnects: 0, roundTripMs: undefined, credit: 0, directSlots: 0 },
    };
  }

  /**
   * The first connection attempt of every endpoint, awaited until each has settled, except that a
   * host not even reachable yet (its TCP connect still waiting, as when its link is down) holds
   * nothing up once another worker is ready: it keeps trying and joins when it can. A reachable host
   * is always awaited, so a wrong secret, another release or a failing setup() still fails the first
   * map. Resolves to the failures.
   */
  #firstAttempts(): Promise<Error[]> {
    return new Promise((resolve) => {
      const attempts = this.#endpoints.map((endpoint) => ({ reachable: endpoint.local, error: null as Error | null, settled: false }));
      const check = () => {
        const someReady = this.#slots.size > 0;
        if (attempts.every((a) => a.settled || (someReady && !a.reachable))) {
          resolve(attempts.flatMap((a) => (a.error ? [a.error] : [])));
        }
      };
      this.#endpoints.forEach((endpoint, i) => {
        const attempt = attempts[i]!;
        this.#connect(endpoint, () => (attempt.reachable = true))
          .catch((error: Error) => (attempt.error = error))
          .then(() => {
            attempt.settled = true;
            check();
          });
      });
    });
  }

  /** Adds workers to the pool, also while maps run; resolves once each has joined, or rejects with the first failure. */
  async addWorkers(workers: readonly WorkerSpec[]): Promise<void> {
    this.#checkOpen();
    await this.#ready.catch(() => {});
    const added = workers.map((spec) => this.#endpoint(spec));
    this.#endpoints.push(...added);
    const outcomes = await Promise.allSettled(added.map((endpoint) => this.#connect(endpoint)));
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * Takes daemons out of the pool, also while maps run: their jobs in flight go to the others, their
   * instances run cleanup(), and they are not reconnected.
   */
  async removeWorkers(addresses: readonly string[]): Promise<void> {
    const wanted = new Set(addresses);
    const removed = this.#endpoints.filter((e) => !e.removed && (wanted.has(e.label) || (e.address !== null && wanted.has(e.address.label))));
    await Promise.all(removed.map(async (endpoint) => {
      endpoint.removed = true;
      endpoint.stats.state = 'removed';
      endpoint.stats.slots = 0;
      if (endpoint.retry) clearTimeout(endpoint.retry);
      endpoint.retry = null;
      const session = endpoint.session;
      if (session) {
        for (const slot of [...(this.#sessionSlots.get(session)?.keys() ?? [])]) this.#removeSlot(session, slot, { kind: 'retired' });
        this.#sessionSlots.delete(session);
        this.#pump();
        await session.shutdown().catch(() => session.destroy());
      }
      await endpoint.daemon?.stop();
    }));
    this.#checkWorkersLeft();
  }

  /** Per worker, as the coordinator sees it. */
  stats(): WorkerStats[] {
    return this.#endpoints.map((e) => {
      const ids = e.session ? [...(this.#sessionSlots.get(e.session)?.values() ?? [])] : [];
      return {
        ...e.stats, address: e.label, roundTripMs: e.session?.roundTripMs, directSlots: e.session?.directSlots ?? 0,
        credit: Math.max(0, ...ids.map((id) => this.#scheduler.creditOf(id))),
      };
    });
  }

  /** One attempt to bring an endpoint up; on a passing failure it schedules the next. */
  async #connect(endpoint: Endpoint, onReachable?: () => void): Promise<void> {
    endpoint.retry = null;
    let secret = this.#options.secret;
    try {
      if (endpoint.local) {
        secret = randomBytes(32).toString('base64url');
        endpoint.daemon = new LocalDaemon(endpoint.localWorkers, secret, this.#options.logger, this.#options.localStartTimeoutMs);
        endpoint.address = parseAddress(await endpoint.daemon.address);
        endpoint.label = endpoint.address.label;
      }
      const session = new WorkerSession(endpoint.address!, {
        secret,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        logger: this.#options.logger,
        heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
        heartbeatTimeoutMs: this.#options.heartbeatTimeoutMs,
        forwardOutput: this.#options.workerOutput !== 'off',
        // Local daemons listen on loopback only, without TLS.
        tls: endpoint.local ? undefined : this.#options.tls,
        maxFrameBytes: this.#options.maxFrameBytes,
        dataConnections: this.#options.dataConnections,
      });
      endpoint.session = session;
      endpoint.retiring = false;
      session.on('results', (message) => this.#onResults(session, message));
      session.on('slot-lost', (message) => this.#onSlotLost(session, message));
      session.on('slot-ready', (slot) => this.#onSlotReady(endpoint, session, slot));
      session.on('slot-failed', (slot, error) => this.#onSlotFailed(session, slot, error));
      session.on('goodbye', (reason) => this.#onGoodbye(endpoint, session, reason));
      session.on('output', (message) => this.#onOutput(endpoint, session, message));
      session.on('lost', (reason) => this.#onLost(endpoint, session, reason));
      session.on('round-trip', (ms) => this.#onRoundTrip(session, ms));
      if (onReachable) session.once('connected', onReachable);
      const slots = await session.open(this.#shipping.then(() => ({ code: this.#code, bundle: this.#bundle })));
      // While closing, maps that were called before shutdown() still need these workers.
      if (this.#status === 'closed' || endpoint.removed) {
        await session.shutdown().catch(() => session.destroy());
        await endpoint.daemon?.stop();
        return;
      }
      const ids = new Map<number, number>();
      this.#sessionSlots.set(session, ids);
      for (let slot = 0; slot < slots; slot++) this.#addSlot(endpoint, session, slot);
      endpoint.failures = 0;
      endpoint.stats.state = 'ready';
      endpoint.stats.slots = slots;
      if (endpoint.joinedOnce) endpoint.stats.reconnects++;
      const event = endpoint.joinedOnce ? 'worker-rejoined' : 'worker-joined';
      endpoint.joinedOnce = true;
      this.#log.info({ event, worker: endpoint.label, slots });
      this.#emit(event, { address: endpoint.label, slots });
      this.#pump();
    } catch (error) {
      endpoint.session?.destroy();
      endpoint.session = null;
      await endpoint.daemon?.stop();
      endpoint.daemon = null;
      if (this.#status === 'closing' || this.#status === 'closed') return;
      endpoint.failures++;
      this.#log.warn({ event: 'connect-failed', worker: endpoint.label, attempt: endpoint.failures, reason: (error as Error).message });
      // A wrong secret or incompatible release will not fix itself. Start-up failures are decided in #start.
      if (!isPermanent(error) && this.#status === 'running') this.#scheduleReconnect(endpoint);
      throw error;
    }
  }

  #scheduleReconnect(endpoint: Endpoint): void {
    if (endpoint.retry || endpoint.removed || this.#status === 'closing' || this.#status === 'closed') return;
    const { reconnectDelayMs, maxReconnectDelayMs } = this.#options;
    const delay = Math.min(maxReconnectDelayMs, reconnectDelayMs * 2 ** Math.min(endpoint.failures, 16)) * (0.5 + Math.random() / 2);
    if (endpoint.local) this.#recovering++;
    endpoint.retry = setTimeout(() => {
      if (endpoint.local) this.#recovering--;
      this.#connect(endpoint).catch(() => this.#checkWorkersLeft());
    }, delay);
    endpoint.retry.unref();
  }

  #addSlot(endpoint: Endpoint, session: WorkerSession, slot: number): void {
    const id = this.#nextSlotId++;
    this.#slots.set(id, { endpoint, session, slot });
    this.#sessionSlots.get(session)?.set(slot, id);
    this.#scheduler.addSlot(id);
    if (session.roundTripMs !== undefined) this.#scheduler.observeRoundTrip(id, session.roundTripMs);
  }

  #onRoundTrip(session: WorkerSession, ms: number): void {
    for (const id of this.#sessionSlots.get(session)?.values() ?? []) this.#scheduler.observeRoundTrip(id, ms);
    // A longer round trip may have raised the credit: fill it.
    this.#pump();
  }

  /** Takes a slot out of service; `loss` says whom to blame for the job it was running. */
  #removeSlot(session: WorkerSession, slot: number, loss: SlotLoss): void {
    const ids = this.#sessionSlots.get(session);
    const id = ids?.get(slot);
    if (id === undefined) return;
    ids!.delete(slot);
    const address = this.#slots.get(id)!.endpoint.label;
    this.#slots.delete(id);
    this.#settle(this.#scheduler.removeSlot(id, loss), () => address);
  }

  #onLost(endpoint: Endpoint, session: WorkerSession, reason: MapScaleError): void {
    const ids = this.#sessionSlots.get(session);
    if (ids) {
      for (const slot of [...ids.keys()]) this.#removeSlot(session, slot, endpoint.retiring ? { kind: 'retired' } : { kind: 'disconnected' });
      this.#sessionSlots.delete(session);
    }
    if (endpoint.session === session) endpoint.session = null;
    if (endpoint.removed) return;
    endpoint.stats.state = 'lost';
    endpoint.stats.slots = 0;
    endpoint.stats.losses++;
    this.#lost.push({ address: endpoint.label, reason });
    this.#log.warn({ event: 'worker-lost', worker: endpoint.label, code: reason.code, reason: reason.message });
    this.#emit('worker-lost', { address: endpoint.label, reason });
    if (endpoint.local) {
      // The local daemon is gone or unreachable: make sure it is dead, then start a new one.
      void endpoint.daemon?.stop();
      endpoint.daemon = null;
    }
    this.#scheduleReconnect(endpoint);
    this.#checkWorkersLeft();
    this.#pump();
  }

  /** The daemon is stopping: hand its jobs to others now rather than wait for its last answers. */
  #onGoodbye(endpoint: Endpoint, session: WorkerSession, reason: string): void {
    this.#log.info({ event: 'worker-retiring', worker: endpoint.label, reason });
    endpoint.retiring = true;
    const ids = this.#sessionSlots.get(session);
    for (const slot of [...(ids?.keys() ?? [])]) this.#removeSlot(session, slot, { kind: 'retired' });
    this.#checkWorkersLeft();
    this.#pump();
  }

  #onSlotLost(session: WorkerSession, message: SlotLostMessage): void {
    // The daemon names the job the instance died on; one that died between jobs blames nobody.
    const loss: SlotLoss = message.batch === undefined || message.jobOffset === undefined
      ? { kind: 'retired' }
      : message.reason === 'timeout'
        ? { kind: 'timeout', batchId: message.batch, jobOffset: message.jobOffset }
        : { kind: 'crashed', batchId: message.batch, jobOffset: message.jobOffset, error: message.error };
    this.#removeSlot(session, message.slot, loss);
    this.#recovering++;
    this.#pump();
  }

  /** Worker console output, tagged with host, worker instance and job index. */
  #onOutput(endpoint: Endpoint, session: WorkerSession, message: OutputMessage): void {
    const batch = message.batch === undefined ? undefined : this.#scheduler.batch(message.batch);
    const jobIndex = batch && message.jobOffset !== undefined ? batch.start + message.jobOffset : undefined;
    const worker = `${endpoint.label}#${message.slot}`;
    if (this.#options.workerOutput === 'logger') {
      this.#log.info({ event: 'worker-output', host: session.hostname, worker, jobIndex, phase: message.phase, stream: message.stream, text: message.text });
      return;
    }
    const where = jobIndex !== undefined ? `job ${jobIndex}` : message.phase;
    const prefix = `[${session.hostname ?? endpoint.label} ${worker} ${where}] `;
    process.stderr.write(message.text.split('\n').map((line) => prefix + line).join('\n') + '\n');
  }

  #onSlotReady(endpoint: Endpoint, session: WorkerSession, slot: number): void {
    this.#recovering = Math.max(0, this.#recovering - 1);
    if (!this.#sessionSlots.has(session)) return;
    this.#addSlot(endpoint, session, slot);
    this.#pump();
  }

  #onSlotFailed(session: WorkerSession, slot: number, error: Error): void {
    this.#recovering = Math.max(0, this.#recovering - 1);
    this.#log.error({ event: 'instance-replacement-failed', worker: session.address.label, slot, reason: error.message });
    this.#checkWorkersLeft();
  }

  /** With no worker left and none on its way back, nothing can finish: fail every call now. */
  #checkWorkersLeft(): void {
    if (this.#slots.size > 0 || this.#recovering > 0 || this.#status !== 'running') return;
    if (this.#handles.size === 0) return;
    const error = new NoWorkersError(this.#lost);
    for (const handle of [...this.#handles.values()]) this.#abandon(handle, error);
  }

  // ── Calls: map, imap, imapUnordered ─────────────────────────────────────

  /** Runs `task` with the process held alive: the caller awaits it, so the app must not exit meanwhile. */
  #hold(): () => void {
    // One timer for the Processor's life, ref'd only while held: a timer per map costs more than the map's own logic.
    if (this.#busy++ === 0) (this.#keepAlive ??= setInterval(() => {}, 1 << 30)).ref();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#busy === 0) this.#keepAlive?.unref();
    };
  }

  #checkOpen(): void {
    if (this.#status === 'closing' || this.#status === 'closed') {
      throw new ProcessorClosedError('this Processor was shut down; create a new one');
    }
  }

  /**
   * A map counts as running from the moment it is called: shutdown() waits for it even while its
   * workers are still starting.
   */
  map(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest): Promise<unknown[]> {
    try {
      this.#checkOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    const release = this.#hold();
    const result = this.#startRun(jobs, request, new ArrayResults(Array.isArray(jobs) ? jobs.length : 0))
      .then((handle) => new Promise<unknown[]>((resolve, reject) => {
        if (handle.error) return reject(handle.error);
        if (handle.run.status === 'succeeded') return resolve((handle.run.results as ArrayResults).values);
        handle.resolve = resolve;
        handle.reject = reject;
      }));
    this.#inProgress.add(result);
    const done = () => {
      this.#inProgress.delete(result);
      release();
    };
    result.then(done, done);
    return result;
  }

  /** Results as an async iterator, in job order (`ordered`) or as they come. */
  stream(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest, ordered: boolean): AsyncIterableIterator<unknown> {
    this.#checkOpen();
    const release = this.#hold();
    const store = ordered ? new OrderedResults() : new UnorderedResults();
    const started = this.#startRun(jobs, request, store);
    started.catch(() => {});
    let ready: unknown[] = [];
    let finished = false;
    const finish = (handle?: RunHandle) => {
      if (finished) return;
      finished = true;
      if (handle && handle.run.status === 'running') this.#abandon(handle, null);
      release();
    };
    const iterator: AsyncIterableIterator<unknown> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        if (finished && ready.length === 0) return { done: true, value: undefined };
        let handle: RunHandle;
        try {
          handle = await started;
        } catch (error) {
          finish();
          throw error;
        }
        for (;;) {
          if (ready.length > 0) return { done: false, value: ready.shift() };
          ready = store.takeReady();
          if (ready.length > 0) {
            // Room freed in the window: dispatch and read more.
            this.#scheduler.onConsumed(handle.run);
            this.#pump();
            this.#resumeFeed(handle);
            continue;
          }
          if (handle.error) {
            const error = handle.error;
            handle.error = null;
            finish(handle);
            throw error;
          }
          if (handle.run.status !== 'running' || finished) {
            finish(handle);
            return { done: true, value: undefined };
          }
          await new Promise<void>((wake) => (handle.wake = wake));
        }
      },
      return: async () => {
        finish(await started.catch(() => undefined));
        ready = [];
        return { done: true, value: undefined };
      },
    };
    return iterator;
  }

  async #startRun(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest, store: ResultStore): Promise<RunHandle> {
    if (request.signal?.aborted) throw new AbortError('the map was aborted before it started', { cause: request.signal.reason });
    await this.#ready;
    if (this.#forced) throw new ProcessorClosedError('the Processor was shut down while this map waited to start');
    // The signal may have fired while the workers were starting: no listener was there to see it.
    if (request.signal?.aborted) throw new AbortError('the map was aborted before it started', { cause: request.signal.reason });
    if (this.#slots.size === 0 && this.#recovering === 0) throw new NoWorkersError(this.#lost);
    const options = {
      settle: request.settle,
      timeoutMs: request.jobTimeoutMs,
      maxJobRetries: this.#options.maxJobRetries,
      window: Array.isArray(jobs) ? Infinity : this.#options.window,
    };
    const run = new MapRun(this.#nextRunId++, Array.isArray(jobs) ? jobs : undefined, options, store);
    let input: Iterator<unknown> | AsyncIterator<unknown> | null = null;
    if (!Array.isArray(jobs)) {
      input = typeof (jobs as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
        ? (jobs as AsyncIterable<unknown>)[Symbol.asyncIterator]()
        : (jobs as Iterable<unknown>)[Symbol.iterator]();
    }
    const handle: RunHandle = {
      run, input, feeding: false, error: null, wake: null, detach: () => {},
      progress: request.onProgress ? new ProgressReporter(request.onProgress) : null,
    };
    if (request.signal) {
      const signal = request.signal;
      const onAbort = () => this.#abandon(handle, new AbortError('the map was aborted', { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
      handle.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#handles.set(run, handle);
    this.#settle(this.#scheduler.addRun(run));
    if (input) this.#resumeFeed(handle);
    this.#pump();
    return handle;
  }

  #resumeFeed(handle: RunHandle): void {
    if (!handle.feeding && handle.input && handle.run.wantsJobs) void this.#feed(handle);
  }

  /** Reads the input while the run's window has room; each job read may be dispatched at once. */
  async #feed(handle: RunHandle): Promise<void> {
    const { run, input } = handle;
    handle.feeding = true;
    try {
      while (run.wantsJobs) {
        const step = input!.next();
        const item = step instanceof Promise ? await step : (step as IteratorResult<unknown>);
        if (run.status !== 'running') return;
        if (item.done) {
          this.#settle(this.#scheduler.inputEnded(run));
          return;
        }
        this.#scheduler.onJobRead(run, item.value);
        if (step instanceof Promise) this.#pump();
      }
    } catch (error) {
      this.#abandon(handle, new MapScaleError(`reading the jobs failed: ${(error as Error).message}`, { cause: error }));
    } finally {
      handle.feeding = false;
      this.#pump();
    }
  }

  /**
   * Ends a call before its jobs are all answered: `error` for its caller (null when the caller
   * itself stopped reading). Workers are told to drop its queued batches.
   */
  #abandon(handle: RunHandle, error: Error | null): void {
    const dropped = this.#scheduler.endRun(handle.run, 'failed');
    this.#cancelOnWorkers(dropped);
    this.#close(handle, error);
    void (handle.input as AsyncIterator<unknown> | null)?.return?.();
    this.#pump();
  }

  #cancelOnWorkers(batches: Batch[]): void {
    if (batches.length === 0) return;
    const bySlot = new Map<number, number[]>();
    for (const batch of batches) {
      const list = bySlot.get(batch.slotId) ?? [];
      list.push(batch.id);
      bySlot.set(batch.slotId, list);
    }
    for (const [slotId, ids] of bySlot) {
      const ref = this.#slots.get(slotId);
      ref?.session.cancel(ref.slot, ids);
    }
  }

  /** A call is over: tell whoever waits. */
  #close(handle: RunHandle, error: Error | null): void {
    if (!this.#handles.delete(handle.run)) return;
    handle.detach();
    handle.progress?.report(handle.run, true);
    if (error) {
      handle.error = error;
      handle.reject?.(error);
    } else if (handle.run.status === 'succeeded') {
      handle.resolve?.((handle.run.results as ArrayResults).values);
    }
    handle.wake?.();
  }

  // ── Batches out, results in ─────────────────────────────────────────────

  /** Hands out every batch the scheduler has credit for; the frames of one pump go out in one write per connection. */
  #pump(): void {
    for (;;) {
      let tooLarge: { batch: Batch; size: number; limit: number }[] | undefined;
      for (const batch of this.#scheduler.nextDispatches()) {
        const refused = this.#send(batch);
        if (refused) (tooLarge ??= []).push({ batch, ...refused });
      }
      if (!tooLarge) return;
      // Halves go back to be dispatched again; a job too large alone fails as its own error. Either
      // way the scheduler changed, so hand out again.
      for (const { batch, size, limit } of tooLarge) {
        if (!this.#scheduler.splitBack(batch.id)) this.#failTooLarge(batch, size, limit);
      }
    }
  }

  /** Sends a batch, unless its frame would be over the daemon's limit: then it says by how much. */
  #send(batch: Batch): { size: number; limit: number } | null {
    const ref = this.#slots.get(batch.slotId)!;
    const run = batch.run;
    const payload = this.#codec.pack(run.jobs(batch.start, batch.end));
    this.#scheduler.observeEncoded(run, payload.length, batch.end - batch.start);
    const limit = ref.session.daemonFrameBytes;
    if (payload.length + JOBS_ENVELOPE_BYTES > limit) return { size: payload.length, limit };
    ref.session.sendJobs(ref.slot, batch.id, payload, run.options.timeoutMs);
    return null;
  }

  /** A one-job batch that no daemon frame can carry is answered here, with that job's error. */
  #failTooLarge(batch: Batch, size: number, limit: number): void {
    const error = serializeError(new JobTooLargeError(size, limit));
    delete error.stack;
    const address = this.#slots.get(batch.slotId)?.endpoint.label ?? 'unknown';
    this.#settle(this.#scheduler.onUnsendable(batch.id, error), () => address);
    const handle = this.#handles.get(batch.run);
    handle?.progress?.report(batch.run);
    handle?.wake?.();
  }

  #onResults(session: WorkerSession, message: ResultsMessage): void {
    const batch = this.#scheduler.batch(message.batch);
    const ref = batch && this.#slots.get(batch.slotId);
    if (!batch || !ref || ref.session !== session || ref.slot !== message.slot) {
      return; // a part for a batch already given up on (lost or cancelled): answered elsewhere or unwanted
    }
    let values: unknown;
    try {
      values = this.#codec.unpack(message.payload);
    } catch (error) {
      values = error;
    }
    const outcome = Array.isArray(values)
      ? this.#scheduler.onResults(message.batch, message.offset, values, message.errors, message.busyMs, message.final)
      : { completed: [], failed: [], cancelled: [], malformed: true };
    if (outcome.malformed) {
      session.destroy();
      return;
    }
    const stats = ref.endpoint.stats;
    stats.jobs += (values as unknown[]).length;
    stats.busyMs += message.busyMs;
    this.#settle(outcome, () => ref.endpoint.label);
    const handle = this.#handles.get(batch.run);
    handle?.progress?.report(batch.run);
    handle?.wake?.();
    if (handle) this.#resumeFeed(handle);
    this.#pump();
  }

  /** Settles what an event decided: failed jobs become errors (or settled reasons), finished calls resolve. */
  #settle(outcome: ResultOutcome, addressOf: (slotId: number) => string = (id) => this.#slots.get(id)?.endpoint.label ?? 'unknown'): void {
    this.#cancelOnWorkers(outcome.cancelled);
    for (const failure of outcome.failed) {
      const handle = this.#handles.get(failure.run);
      if (!handle) continue;
      const endpoint = this.#slots.get(failure.slotId)?.endpoint;
      if (endpoint) endpoint.stats.failures++;
      if (handle.progress) handle.progress.failed++;
      const error = this.#failureError(failure, addressOf(failure.slotId));
      if (failure.run.options.settle) failure.run.results.put(failure.jobIndex, { status: 'rejected', reason: error });
      else this.#abandon(handle, error);
    }
    for (const run of outcome.completed) {
      const handle = this.#handles.get(run);
      if (handle) this.#close(handle, null);
    }
  }

  #failureError(failure: JobFailure, address: string): Error {
    const cause = failure.error ? deserializeError(failure.error) : undefined;
    switch (failure.kind) {
      case 'error': return new JobError(failure.jobIndex, address, cause!);
      case 'timeout': return new JobTimeoutError(failure.jobIndex, failure.run.options.timeoutMs ?? 0, address);
      case 'crash': return new WorkerCrashedError(failure.jobIndex, failure.attempts ?? 0, address, cause);
    }
  }

  // ── Shutdown ────────────────────────────────────────────────────────────

  /**
   * Lets running maps finish (unless `force`, which rejects them), then runs cleanup() on every
   * worker instance, closes every session and stops local daemons. Cleanup failures reject.
   * Open streams (imap) are ended with ProcessorClosedError.
   */
  shutdown(force = false): Promise<void> {
    if (!this.#shutdown) {
      const release = this.#hold();
      this.#shutdown = this.#closeAll(force).finally(release);
    }
    return this.#shutdown;
  }

  /** Gives up every connection still being opened (and local daemon still starting): their attempts fail at once. */
  #abortOpening(): void {
    for (const endpoint of this.#endpoints) {
      if (endpoint.session && endpoint.session.state !== 'ready') endpoint.session.destroy();
      else if (!endpoint.session && endpoint.daemon) void endpoint.daemon.stop();
    }
  }

  async #closeAll(force: boolean): Promise<void> {
    this.#status = 'closing';
    const closed = new ProcessorClosedError('the Processor was shut down while this call ran');
    if (force) {
      this.#forced = true;
      for (const handle of [...this.#handles.values()]) this.#abandon(handle, closed);
      // Maps still waiting for their first workers end now too, not when a connect times out.
      this.#abortOpening();
    } else {
      // Maps drain; a stream may have a consumer that stopped reading, so it is ended instead.
      for (const handle of [...this.#handles.values()]) {
        if (!(handle.run.results instanceof ArrayResults)) this.#abandon(handle, closed);
      }
    }
    await Promise.allSettled(this.#inProgress);
    // Nothing waits for the workers still being reached any more.
    this.#abortOpening();
    await this.#ready.catch(() => {});
    for (const endpoint of this.#endpoints) {
      if (endpoint.retry) clearTimeout(endpoint.retry);
      endpoint.retry = null;
    }
    const failures: { workerAddress: string; error: Error }[] = [];
    await Promise.all(this.#endpoints.map(async (endpoint) => {
      const session = endpoint.session;
      if (session) {
        try {
          for (const { slot, error } of await session.shutdown()) failures.push({ workerAddress: `${endpoint.label}#${slot}`, error });
        } catch (error) {
          this.#log.warn({ event: 'shutdown-incomplete', worker: endpoint.label, reason: (error as Error).message });
          session.destroy();
        }
      }
      await endpoint.daemon?.stop();
    }));
    this.#status = 'closed';
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    if (failures.length > 0) throw new CleanupError(failures);
  }
}
