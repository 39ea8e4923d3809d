import type { Logger } from 'pino';
import type { MapScaleError, OutputMessage, ResultsMessage, ShippedCode, SlotLostMessage } from '@mapscale/protocol';
import { createCodec } from '@mapscale/protocol';
import { CleanupError, InvalidOptionError, NoWorkersError, ProcessorClosedError } from './errors.js';
import { bundleModule } from './bundling.js';
import { Scheduler, type ResultOutcome, type SlotLoss } from './scheduler.js';
import { ArrayResults } from './result-stores.js';
import type { WorkerSession } from './worker-session.js';
import type { ResolvedProcessorOptions } from './options.js';
import { WorkerPool, isPermanent, type Endpoint, type WorkerSpec, type WorkerStats } from './engine/pool.js';
import { SlotTable } from './engine/slots.js';
import { Dispatcher } from './engine/dispatch.js';
import { Calls, type RunRequest } from './engine/calls.js';
import { writeWorkerOutput } from './engine/worker-output.js';
import { Dashboard, type DashboardAddress } from './dashboard/dashboard.js';

export type { WorkerSpec, WorkerStats } from './engine/pool.js';
export type { RunRequest } from './engine/calls.js';
export type { MapProgress } from './engine/progress.js';

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
 * Wires the coordinator's parts together and routes what happens between them: the pool brings
 * workers up and back (engine/pool.ts), the slot table knows which instances exist and which are
 * coming back (engine/slots.ts), the scheduler decides (scheduler.ts), the dispatcher sends
 * (engine/dispatch.ts), the calls settle (engine/calls.ts). Processor is its thin public face.
 */
export class Engine {
  #status: EngineStatus = 'starting';
  readonly #options: ResolvedProcessorOptions;
  readonly #log: Logger;
  #code: ShippedCode;
  #bundle: { hash: string; source: Uint8Array } | undefined;
  /** Settles once #code is what the workers get (bundled, if it is bundled); awaited before each setup. */
  readonly #shipping: Promise<void>;
  /** Settles #shipping: the start's bundling, begun once #code exists (after the first attempts have begun). */
  #shipped!: { resolve: () => void; reject: (error: Error) => void };
  readonly #codec = createCodec();
  readonly #scheduler: Scheduler;
  readonly #emit: (event: EngineEventName, payload: WorkerEvent) => void;
  readonly #pool: WorkerPool;
  readonly #slots = new SlotTable();
  readonly #dispatcher: Dispatcher;
  readonly #calls: Calls;
  readonly #lost: { address: string; reason: Error }[] = [];
  readonly #dashboard: Dashboard | null;
  #ready: Promise<void>;
  #shutdown: Promise<void> | null = null;
  /** Sockets and child processes are unref'd; this ref'd timer keeps the app alive only while a caller awaits us. */
  #keepAlive: NodeJS.Timeout | null = null;
  #busy = 0;
  #forced = false;

  /**
   * `ship`: what workers get, made here after the workers' first attempts have begun, so that local
   * workers load (a child daemon starting, or threads of this process) while this thread checks the
   * code (module-scope analysis parses it). If it throws, they are stopped and so is the constructor.
   */
  constructor(ship: () => ShippedCode, workers: readonly WorkerSpec[], options: ResolvedProcessorOptions,
    emit: (event: EngineEventName, payload: WorkerEvent) => void = () => {}) {
    this.#code = undefined as unknown as ShippedCode;
    // Created first: a remote endpoint's first attempt asks for the shipment at once, before #code exists.
    this.#shipping = new Promise<void>((resolve, reject) => (this.#shipped = { resolve, reject }));
    this.#shipping.catch(() => {});
    this.#options = options;
    this.#emit = (event, payload) => {
      this.#dashboard?.recorder.workerEvent(event, payload.address, payload.reason?.message);
      emit(event, payload);
    };
    this.#log = options.logger.child({ component: 'engine' });
    this.#scheduler = new Scheduler({ chunkSize: options.chunkSize });
    this.#dispatcher = new Dispatcher(this.#scheduler, this.#slots, (outcome, address, error) => this.#settle(outcome, () => address, error));
    const engine = this;
    this.#pool = new WorkerPool(options, this.#log, {
      get status() {
        return engine.#status;
      },
      wire: (endpoint, session) => this.#wire(endpoint, session),
      joined: (endpoint, session, slots) => this.#onJoined(endpoint, session, slots),
      retire: (endpoint, session) => this.#retire(endpoint, session),
      attemptFailed: () => this.#checkWorkersLeft(),
    }, () => this.#shipping.then(() => ({ code: this.#code, bundle: this.#bundle })));
    this.#calls = new Calls({
      checkOpen: () => this.#checkOpen(),
      get ready() {
        return engine.#ready;
      },
      get forced() {
        return engine.#forced;
      },
      noWorkers: () => (this.#workersLeftOrComing() ? null : new NoWorkersError(this.#lost)),
      hold: () => this.#hold(),
      failedOn: (slotId) => {
        const endpoint = this.#slots.get(slotId)?.endpoint;
        if (endpoint) endpoint.stats.failures++;
      },
    }, this.#scheduler, this.#dispatcher, options);
    for (const spec of workers) this.#pool.add(spec);
    const attempts = this.#pool.firstAttempts(() => this.#slots.size > 0);
    try {
      this.#code = ship();
    } catch (error) {
      this.#status = 'closed';
      this.#shipped.reject(error as Error);
      this.#pool.abortOpening();
      void this.#pool.closeAll();
      throw error;
    }
    this.#dashboard = options.dashboard ? new Dashboard(options.dashboard, {
      status: () => this.#status, runs: () => this.#scheduler.activeRuns, workers: () => this.stats(),
    }, options.logger) : null;
    this.#ready = this.#start(attempts);
    // Failures surface through map(); an unobserved start failure must not crash the app.
    this.#ready.catch(() => {});
  }

  get status(): EngineStatus {
    return this.#status;
  }

  get workerCount(): number {
    return this.#slots.size;
  }

  // ── Workers: joining, losing, coming back ───────────────────────────────

  async #start(attempts: Promise<Error[]>): Promise<void> {
    // Bundling runs while local daemons start (a Node process takes ~65 ms to come up) and daemons
    // are connected to and authenticated: only setup needs its result.
    this.#bundleCode().then(this.#shipped.resolve, this.#shipped.reject);
    // A dashboard that cannot listen fails the start at once, like a permanent worker failure.
    const [failures] = await Promise.all([attempts, this.#dashboard?.listening]);
    const permanent = failures.find(isPermanent);
    if (permanent) throw permanent;
    if (this.#slots.size === 0 && failures.length > 0) throw failures.length === 1 ? failures[0] : new NoWorkersError(this.#lost);
    if (this.#status === 'starting') this.#status = 'running';
    // Some answered, some not (yet): keep trying those in the background.
    for (const endpoint of this.#pool.endpoints) if (!endpoint.session) this.#pool.scheduleReconnect(endpoint);
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

  /** Adds workers to the pool, also while maps run; resolves once each has joined, or rejects with the first failure. */
  async addWorkers(workers: readonly WorkerSpec[]): Promise<void> {
    this.#checkOpen();
    await this.#ready.catch(() => {});
    const added = workers.map((spec) => this.#pool.add(spec));
    const outcomes = await Promise.allSettled(added.map((endpoint) => this.#pool.connect(endpoint)));
    const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * Takes daemons out of the pool, also while maps run: their jobs in flight go to the others, their
   * instances run cleanup(), and they are not reconnected.
   */
  async removeWorkers(addresses: readonly string[]): Promise<void> {
    await this.#pool.remove(addresses);
    this.#checkWorkersLeft();
  }

  /** Per worker, as the coordinator sees it. */
  stats(): WorkerStats[] {
    return this.#pool.endpoints.map((e) => {
      const ids = e.session ? this.#slots.idsOf(e.session) : [];
      return {
        ...e.stats, address: e.label, roundTripMs: e.session?.roundTripMs, directSlots: e.session?.directSlots ?? 0,
        daemonCpuPercent: e.session?.daemonLoad.cpuPercent, daemonRssBytes: e.session?.daemonLoad.rssBytes,
        credit: Math.max(0, ...ids.map((id) => this.#scheduler.creditOf(id))),
      };
    });
  }

  /** Where the dashboard is served, once it is; rejects with DashboardListenError if it cannot be. */
  dashboardAddress(): Promise<DashboardAddress> {
    return this.#dashboard?.listening ?? Promise.reject(new InvalidOptionError('this Processor has no dashboard: create it with { dashboard: { port } }'));
  }

  #wire(endpoint: Endpoint, session: WorkerSession): void {
    session.on('results', (message) => this.#onResults(session, message));
    session.on('slot-lost', (message) => this.#onSlotLost(session, message));
    session.on('slot-ready', (slot) => this.#onSlotReady(endpoint, session, slot));
    session.on('slot-failed', (slot, error) => this.#onSlotFailed(session, slot, error));
    session.on('goodbye', (reason) => this.#onGoodbye(endpoint, session, reason));
    session.on('output', (message) => this.#onOutput(endpoint, session, message));
    session.on('lost', (reason) => this.#onLost(endpoint, session, reason));
    session.on('round-trip', (ms) => this.#onRoundTrip(session, ms));
  }

  #onJoined(endpoint: Endpoint, session: WorkerSession, slots: number): void {
    this.#slots.open(session);
    for (let slot = 0; slot < slots; slot++) this.#addSlot(endpoint, session, slot);
    const event = endpoint.joinedOnce ? 'worker-rejoined' : 'worker-joined';
    this.#log.info({ event, worker: endpoint.label, slots });
    this.#emit(event, { address: endpoint.label, slots });
    this.#dispatcher.pump();
  }

  #addSlot(endpoint: Endpoint, session: WorkerSession, slot: number): void {
    const id = this.#slots.add(endpoint, session, slot);
    if (id === undefined) return;
    this.#scheduler.addSlot(id);
    if (session.roundTripMs !== undefined) this.#scheduler.observeRoundTrip(id, session.roundTripMs);
  }

  #onRoundTrip(session: WorkerSession, ms: number): void {
    for (const id of this.#slots.idsOf(session)) this.#scheduler.observeRoundTrip(id, ms);
    // A longer round trip may have raised the credit: fill it.
    this.#dispatcher.pump();
  }

  /** Takes every instance of a session out of service (lost, retiring, removed); `loss` says whom to blame. */
  #closeSession(endpoint: Endpoint, session: WorkerSession, loss: SlotLoss): void {
    for (const id of this.#slots.close(session)) this.#settle(this.#scheduler.removeSlot(id, loss), () => endpoint.label);
  }

  #retire(endpoint: Endpoint, session: WorkerSession): void {
    this.#closeSession(endpoint, session, { kind: 'retired' });
    this.#dispatcher.pump();
  }

  #onLost(endpoint: Endpoint, session: WorkerSession, reason: MapScaleError): void {
    this.#closeSession(endpoint, session, endpoint.retiring ? { kind: 'retired' } : { kind: 'disconnected' });
    if (endpoint.session === session) endpoint.session = null;
    if (endpoint.removed) return;
    endpoint.stats.state = 'lost';
    endpoint.stats.slots = 0;
    endpoint.stats.losses++;
    this.#lost.push({ address: endpoint.label, reason });
    this.#log.info({ event: 'worker-lost', worker: endpoint.label, code: reason.code, reason: reason.message });
    this.#emit('worker-lost', { address: endpoint.label, reason });
    if (endpoint.local) {
      // The local daemon is gone or unreachable: make sure it is dead, then start a new one.
      void endpoint.daemon?.stop();
      endpoint.daemon = null;
    }
    this.#pool.scheduleReconnect(endpoint);
    this.#checkWorkersLeft();
    this.#dispatcher.pump();
  }

  /** The daemon is stopping: hand its jobs to others now rather than wait for its last answers. */
  #onGoodbye(endpoint: Endpoint, session: WorkerSession, reason: string): void {
    this.#log.info({ event: 'worker-retiring', worker: endpoint.label, reason });
    endpoint.retiring = true;
    this.#closeSession(endpoint, session, { kind: 'retired' });
    this.#checkWorkersLeft();
    this.#dispatcher.pump();
  }

  #onSlotLost(session: WorkerSession, message: SlotLostMessage): void {
    // The daemon names the job the instance died on; one that died between jobs blames nobody.
    const loss: SlotLoss = message.batch === undefined || message.jobOffset === undefined
      ? { kind: 'retired' }
      : message.reason === 'timeout'
        ? { kind: 'timeout', batchId: message.batch, jobOffset: message.jobOffset }
        : { kind: 'crashed', batchId: message.batch, jobOffset: message.jobOffset, error: message.error };
    const address = session.address.label;
    // The daemon replaces the instance (or, for a broken data connection, offers a fresh one): it is coming back.
    this.#dashboard?.recorder.workerEvent('instance-lost', `${address}#${message.slot}`, message.reason);
    const id = this.#slots.remove(session, message.slot, true);
    if (id !== undefined) this.#settle(this.#scheduler.removeSlot(id, loss), () => address);
    this.#dispatcher.pump();
  }

  #onSlotReady(endpoint: Endpoint, session: WorkerSession, slot: number): void {
    this.#addSlot(endpoint, session, slot);
    this.#dispatcher.pump();
  }

  #onSlotFailed(session: WorkerSession, slot: number, error: Error): void {
    this.#slots.replacementFailed(session, slot);
    this.#log.error({ event: 'instance-replacement-failed', worker: session.address.label, slot, reason: error.message });
    this.#checkWorkersLeft();
  }

  /** Worker console output, tagged with host, worker instance and job index. */
  #onOutput(endpoint: Endpoint, session: WorkerSession, message: OutputMessage): void {
    const batch = message.batch === undefined ? undefined : this.#scheduler.batch(message.batch);
    const jobIndex = batch && message.jobOffset !== undefined ? batch.start + message.jobOffset : undefined;
    this.#dashboard?.recorder.workerOutput(endpoint.label, message, jobIndex);
    writeWorkerOutput(this.#options.workerOutput, this.#log, { label: endpoint.label, hostname: session.hostname }, message, jobIndex);
  }

  /** An instance in service, an instance being replaced inside a live daemon, or a local daemon (re)starting. */
  #workersLeftOrComing(): boolean {
    return this.#slots.size > 0 || this.#slots.anyReplacing || this.#pool.localComingBack;
  }

  /** With no worker left and none on its way back, nothing can finish: fail every call now. */
  #checkWorkersLeft(): void {
    if (this.#status !== 'running' || this.#calls.pending === 0 || this.#workersLeftOrComing()) return;
    this.#calls.abandonAll(new NoWorkersError(this.#lost));
  }

  // ── Results in ──────────────────────────────────────────────────────────

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
    this.#dashboard?.recorder.batchAnswered(ref.endpoint.label, message.slot, batch.run, (values as unknown[]).length, message.busyMs);
    this.#settle(outcome, () => ref.endpoint.label);
    this.#calls.answered(batch.run);
    this.#dispatcher.pump();
  }

  /** Settles what an event decided; `addressOf` names the worker a failed job ran on; `error`, if known, is the failure's. */
  #settle(outcome: ResultOutcome, addressOf: (slotId: number) => string = (id) => this.#slots.get(id)?.endpoint.label ?? 'unknown', error?: Error): void {
    if (outcome.failed.length > 0) this.#dashboard?.recorder.jobsFailed(outcome.failed, addressOf, error);
    this.#calls.settle(outcome, addressOf, error);
    for (const failure of outcome.failed) this.#calls.answered(failure.run);
  }

  // ── Calls ───────────────────────────────────────────────────────────────

  map(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest): Promise<unknown[]> {
    return this.#calls.map(jobs, request);
  }

  stream(jobs: Iterable<unknown> | AsyncIterable<unknown>, request: RunRequest, ordered: boolean): AsyncIterableIterator<unknown> {
    return this.#calls.stream(jobs, request, ordered);
  }

  /** Holds the process alive while a caller waits: returns the release. */
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

  async #closeAll(force: boolean): Promise<void> {
    this.#status = 'closing';
    const closed = new ProcessorClosedError('the Processor was shut down while this call ran');
    if (force) {
      this.#forced = true;
      this.#calls.abandonAll(closed);
      // Maps still waiting for their first workers end now too, not when a connect times out.
      this.#pool.abortOpening();
    } else {
      // Maps drain; a stream may have a consumer that stopped reading, so it is ended instead.
      this.#calls.abandonAll(closed, (results) => !(results instanceof ArrayResults));
    }
    await this.#calls.drained();
    // Nothing waits for the workers still being reached any more.
    this.#pool.abortOpening();
    await this.#ready.catch(() => {});
    const failures = await this.#pool.closeAll();
    this.#status = 'closed';
    await this.#dashboard?.close();
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    if (failures.length > 0) throw new CleanupError(failures);
  }
}
