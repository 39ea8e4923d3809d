import { hostname } from 'node:os';
import type { Logger } from 'pino';
import {
  AuthenticationError, ProtocolError, ProtocolVersionError, MapScaleError,
  computeProof, createNonce, localVersions, nodeMismatch, verifyProof, versionMismatch,
  serializeError, peerFrameLimit,
  type AuthMessage, type CancelMessage, type HelloMessage, type JobsMessage, type Message, type SetupMessage, type SerializedError, type ShutdownMessage,
  type ShippedCode, type BundleMessage, type DataEndpoint, isAuthRefusal, requestedCleanupTimeout,
} from '@mapscale/protocol';
import type { FramedConnection } from '@mapscale/transport';
import { WorkerInstance, type CleanupBounds, type DataEventFromInstance, type InstanceDeath } from './instance.js';
import type { DataConfig } from './instance-protocol.js';
import type { BundleCache } from './bundle-cache.js';
import type { DaemonStats } from './daemon-stats.js';
import type { SpareThreads } from './spare-threads.js';
import type { ResolvedWorkerServerOptions } from './options.js';
import { fitResultsFrame } from './result-frame.js';
import { HandshakeTimeoutError } from './errors.js';
import { processLoad } from './process-load.js';

/**
 * A session's life. Each state accepts exactly the messages listed in `handle`; anything else
 * is a protocol error that closes this connection and no other.
 */
type SessionState =
  | 'awaiting-hello' | 'awaiting-auth' | 'authenticated' | 'awaiting-bundle' | 'setting-up' | 'serving' | 'shutting-down' | 'closed';

/** One coordinator's connection to this daemon, with the worker instances it owns. */
export class CoordinatorSession {
  readonly id: number;
  #state: SessionState = 'awaiting-hello';
  #connection: FramedConnection;
  #options: ResolvedWorkerServerOptions;
  #log: Logger;
  #instances: WorkerInstance[] = [];
  #code: ShippedCode | null = null;
  #forwardOutput = false;
  #coordinatorNonce: Uint8Array | null = null;
  #daemonNonce = createNonce();
  #handshakeTimer: NodeJS.Timeout;
  #ended: Promise<void>;
  #resolveEnded!: () => void;
  #cleanup: Promise<{ slot: number; error: SerializedError }[]> | null = null;

  readonly #bundles: BundleCache;
  #bundleArrived: ((message: BundleMessage) => void) | null = null;

  readonly #stats: DaemonStats;

  readonly #spares: SpareThreads;

  constructor(
    id: number, connection: FramedConnection, options: ResolvedWorkerServerOptions, log: Logger,
    bundles: BundleCache, stats: DaemonStats, spares: SpareThreads,
  ) {
    this.#spares = spares;
    this.#resultsFrameLimit = options.maxFrameBytes;
    this.#bundles = bundles;
    this.#stats = stats;
    this.id = id;
    this.#connection = connection;
    this.#options = options;
    this.#log = log.child({ session: id, peer: connection.remoteAddress });
    this.#ended = new Promise((resolve) => (this.#resolveEnded = resolve));
    this.#handshakeTimer = setTimeout(() => {
      this.#fail(new HandshakeTimeoutError(`handshake not finished within ${options.handshakeTimeoutMs} ms`));
    }, options.handshakeTimeoutMs).unref();
    connection.on('message', (message, owned) => this.#handle(message, owned));
    connection.on('close', (error) => void this.#onClose(error));
    this.#log.debug({ event: 'connected' });
  }

  get state(): SessionState {
    return this.#state;
  }

  /** Resolves once the connection is closed and every instance has been cleaned up. */
  get ended(): Promise<void> {
    return this.#ended;
  }

  /**
   * Daemon stopping: tell the coordinator to send this session's jobs elsewhere, drop what is
   * queued, let running jobs finish within `graceMs`, run cleanup() (within --cleanup-timeout-ms), close.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.#state === 'closed') return this.#ended;
    if (this.#state === 'serving') this.#connection.send({ type: 'goodbye', reason: 'the daemon is stopping' });
    this.#state = 'shutting-down';
    for (const instance of this.#instances) instance.halt();
    await this.#cleanupInstances({ jobGraceMs: graceMs, cleanupTimeoutMs: this.#options.cleanupTimeoutMs });
    this.#connection.end();
    return this.#ended;
  }

  #handle(message: Message, owned = false): void {
    switch (message.type) {
      case 'hello':
        if (this.#expect('awaiting-hello', message)) this.#onHello(message);
        return;
      case 'auth':
        if (this.#expect('awaiting-auth', message)) this.#onAuth(message);
        return;
      case 'setup':
        if (this.#expect('authenticated', message)) void this.#onSetup(message);
        return;
      case 'status-request':
        if (this.#expect('authenticated', message)) {
          this.#connection.send({ type: 'status', status: { ...this.#stats.snapshot(this.#options.workers) } });
          this.#connection.end();
        }
        return;
      case 'bundle':
        if (this.#expect('awaiting-bundle', message)) this.#bundleArrived?.(message);
        return;
      case 'jobs':
        // Jobs sent before the coordinator read our goodbye are dropped: it hands them to others.
        if (this.#state === 'shutting-down') return;
        if (this.#expect('serving', message)) this.#onJobs(message, owned);
        return;
      case 'cancel':
        // Cancels may cross a shutdown or goodbye in flight: harmless then, so not an error.
        if (this.#state === 'serving') this.#onCancel(message);
        return;
      case 'ping':
        if (this.#state !== 'awaiting-hello' && this.#state !== 'awaiting-auth') this.#connection.send({ type: 'pong', seq: message.seq, ...processLoad() });
        return;
      case 'shutdown':
        if (this.#state === 'serving' || this.#state === 'authenticated') return void this.#onShutdown(message);
        if (this.#state === 'shutting-down') return;
        return void this.#unexpected(message);
      case 'error':
        this.#log.warn({ event: 'peer-error', code: message.code, reason: message.message });
        this.#connection.end();
        return;
      default:
        return void this.#unexpected(message);
    }
  }

  #expect(state: SessionState, message: Message): boolean {
    if (this.#state === state) return true;
    this.#unexpected(message);
    return false;
  }

  #unexpected(message: Message): void {
    this.#fail(new ProtocolError(`unexpected "${message.type}" message while ${this.#state}`));
  }

  #fail(error: MapScaleError): void {
    this.#log.warn({ event: 'session-failed', code: error.code, reason: error.message });
    this.#connection.fail(error);
  }

  // Handshake: hello → welcome (+ daemon proof) → auth (coordinator proof) → ready.

  #onHello(message: HelloMessage): void {
    const local = localVersions();
    const mismatch = versionMismatch(local, message);
    if (mismatch) return this.#fail(new ProtocolVersionError(mismatch));
    const nodeDiff = nodeMismatch(local, message);
    if (nodeDiff) this.#log.warn({ event: 'node-version-differs', detail: nodeDiff });
    this.#coordinatorNonce = message.nonce;
    const secret = this.#options.secret;
    this.#connection.send({
      type: 'welcome', ...local, nonce: this.#daemonNonce,
      authRequired: secret !== undefined,
      proof: secret === undefined ? undefined : computeProof(secret, 'daemon', message.nonce, this.#daemonNonce),
      slots: this.#options.workers, hostname: hostname(), pid: process.pid,
    });
    this.#state = 'awaiting-auth';
  }

  #onAuth(message: AuthMessage): void {
    const secret = this.#options.secret;
    // Every failed authentication is logged (`auth-failed`; the peer's address is bound to this
    // session's logger): what an operator greps for. A coordinator that refused our welcome says why.
    if (message.refused !== undefined) {
      const refusal = isAuthRefusal(message.refused) ? message.refused : 'unknown';
      this.#log.warn({ event: 'auth-failed', reason: 'refused-by-coordinator', refusal });
      return this.#connection.fail(new AuthenticationError(`the coordinator refused this daemon's welcome (${refusal})`));
    }
    if (secret !== undefined) {
      const expected = computeProof(secret, 'coordinator', this.#coordinatorNonce!, this.#daemonNonce);
      if (!verifyProof(expected, message.proof)) {
        const reason = message.proof ? 'wrong-secret' : 'no-secret';
        this.#log.warn({ event: 'auth-failed', reason });
        return this.#connection.fail(new AuthenticationError(message.proof
          ? 'the secrets do not match: the coordinator\'s proof does not match this daemon\'s secret'
          : 'this daemon requires a secret: give the coordinator the same secret as the daemon'));
      }
    }
    clearTimeout(this.#handshakeTimer);
    this.#connection.maxFrameBytes = this.#options.maxFrameBytes;
    this.#state = 'authenticated';
    this.#connection.send({ type: 'ready' });
    this.#log.info({ event: 'session-authenticated' });
  }

  // Setup: one instance (thread) per slot, each restores the work function and runs setup().

  /** Results frames fit the smaller of this daemon's limit and the one the coordinator announced at setup. */
  #resultsFrameLimit: number;

  async #onSetup(message: SetupMessage): Promise<void> {
    this.#state = 'setting-up';
    if (message.maxFrameBytes !== undefined) this.#resultsFrameLimit = Math.min(this.#options.maxFrameBytes, peerFrameLimit(message.maxFrameBytes));
    this.#code = message.code;
    this.#forwardOutput = message.forwardOutput === true;
    if (message.code.kind === 'bundle') {
      try {
        this.#bundlePath = await this.#fetchBundle(message.code.hash);
      } catch (error) {
        return this.#fail(error instanceof MapScaleError ? error : new ProtocolError(`cannot store the bundle: ${(error as Error).message}`));
      }
      if (this.#state !== 'setting-up') return;
    }
    const slots = Math.min(Math.max(1, Math.floor(message.slots) || this.#options.workers), this.#options.workers);
    this.#instances = Array.from({ length: slots }, (_, slot) => this.#createInstance(slot));
    const outcomes = await Promise.all(this.#instances.map((instance) => this.#setUpInstance(instance)));
    if (this.#state !== 'setting-up') return;
    const failed = outcomes.findIndex((outcome) => outcome.error !== null);
    if (failed >= 0) {
      this.#log.warn({ event: 'setup-failed', slot: failed, error: outcomes[failed]!.error });
      this.#state = 'authenticated';
      this.#connection.send({ type: 'setup-failed', slot: failed, error: outcomes[failed]!.error! });
      return;
    }
    this.#state = 'serving';
    // Per slot, the data endpoint its instance offers (none: with --no-data-connections, or no free port).
    const data = outcomes.map((outcome) => (outcome.error === null && outcome.data) || null);
    const offered = data.filter((endpoint) => endpoint !== null).length;
    this.#log.info({ event: 'setup-done', slots, dataConnections: offered });
    this.#connection.send({ type: 'setup-done', slots, maxFrameBytes: this.#options.maxFrameBytes, data: offered > 0 ? data : undefined });
  }

  #setUpInstance(instance: WorkerInstance): ReturnType<WorkerInstance['setup']> {
    return instance.setup(this.#code!, this.#options.resultFlushMs, this.#bundlePath, this.#dataConfig(instance.slot));
  }

  /** What an instance needs to offer its own data connection, unless this daemon serves jobs through the main thread only. */
  #dataConfig(slot: number): DataConfig | undefined {
    if (!this.#options.dataConnections) return undefined;
    return {
      slot, host: this.#options.host, ports: this.#options.dataPorts, tls: this.#options.tls, handshakeTimeoutMs: this.#options.handshakeTimeoutMs,
      maxFrameBytes: this.#options.maxFrameBytes, resultsFrameLimit: this.#resultsFrameLimit, forwardOutput: this.#forwardOutput,
    };
  }

  #bundlePath: string | undefined;

  /** The bundle from the cache, or from the coordinator when the cache lacks it. */
  async #fetchBundle(hash: string): Promise<string> {
    const path = this.#bundles.path(hash);
    if (await this.#bundles.has(hash)) {
      this.#log.info({ event: 'bundle-cached', hash });
      return path;
    }
    this.#state = 'awaiting-bundle';
    const arrived = new Promise<BundleMessage>((resolve) => (this.#bundleArrived = resolve));
    this.#connection.send({ type: 'need-bundle', hash });
    const bundle = await arrived;
    this.#bundleArrived = null;
    if (bundle.hash !== hash) throw new ProtocolError(`sent bundle ${bundle.hash.slice(0, 12)}… instead of ${hash.slice(0, 12)}…`);
    await this.#bundles.put(hash, bundle.source);
    this.#log.info({ event: 'bundle-received', hash, bytes: bundle.source.length });
    this.#state = 'setting-up';
    return path;
  }

  #createInstance(slot: number): WorkerInstance {
    const instance = new WorkerInstance(slot, {
      results: (s, r) => {
        this.#connection.send(fitResultsFrame({
          type: 'results', slot: s, batch: r.batch, offset: r.offset, payload: r.payload, errors: r.errors, busyMs: r.busyMs, final: r.final,
        }, this.#resultsFrameLimit));
      },
      death: (s, death) => void this.#onInstanceDeath(s, death),
      output: (s, output) => {
        // Always in the daemon's own log; to the coordinator too when it asked.
        this.#log.info({ event: 'worker-output', slot: s, stream: output.stream, phase: output.phase, batch: output.batch, jobOffset: output.jobOffset, text: output.text });
        if (this.#forwardOutput && !output.forwarded) {
          this.#connection.send({
            type: 'output', slot: s, stream: output.stream, text: output.text, phase: output.phase, batch: output.batch, jobOffset: output.jobOffset,
          });
        }
      },
      data: (s, event) => this.#onDataEvent(s, event),
    }, this.#spares.take());
    // A 'message' listener refs a thread's port again: an embedded daemon's must stay unref'd.
    if (this.#spares.embedded) instance.unref();
    this.#stats.track(instance);
    return instance;
  }

  /**
   * A data connection's news. One that closes while its instance lives blames no job: the
   * coordinator hears the slot lost (its batches there are dropped) and ready again at the fresh
   * endpoint the instance offers.
   */
  #onDataEvent(slot: number, event: DataEventFromInstance): void {
    switch (event.kind) {
      case 'data-attached':
        this.#log.debug({ event: 'data-attached', slot, peer: event.peer });
        return;
      case 'data-refused':
        this.#stats.protocolErrors++;
        this.#log.warn({ event: 'data-refused', slot, peer: event.peer, code: event.code, reason: event.reason });
        return;
      case 'data-closed':
        if (this.#state !== 'serving') return;
        this.#log.warn({ event: 'data-connection-lost', slot, code: event.code, reason: event.reason });
        this.#connection.send({ type: 'slot-lost', slot, reason: 'disconnected' });
        this.#connection.send({ type: 'slot-ready', slot, data: event.data });
    }
  }

  /**
   * An instance died (its thread exited, threw outside a job, or ran a job over time). The
   * coordinator hears which job it was on and re-sends the rest; a fresh instance takes the slot.
   */
  async #onInstanceDeath(slot: number, death: InstanceDeath): Promise<void> {
    if (this.#state !== 'serving' && this.#state !== 'setting-up') return;
    this.#stats.instanceDeaths++;
    this.#log.warn({ event: 'instance-died', slot, reason: death.reason, batch: death.batch, jobOffset: death.jobOffset, err: death.error });
    if (this.#state === 'setting-up') return; // its setup() reply reports the failure
    this.#connection.send({
      type: 'slot-lost', slot, reason: death.reason, batch: death.batch, jobOffset: death.jobOffset,
      error: death.reason === 'crashed' ? serializeError(death.error) : undefined,
    });
    const replacement = this.#createInstance(slot);
    this.#instances[slot] = replacement;
    const outcome = await this.#setUpInstance(replacement);
    if (this.#state !== 'serving' || this.#instances[slot] !== replacement) return;
    if (outcome.error) {
      this.#log.error({ event: 'instance-replacement-failed', slot, error: outcome.error });
      this.#connection.send({ type: 'slot-failed', slot, error: outcome.error });
    } else {
      this.#log.info({ event: 'instance-replaced', slot });
      this.#connection.send({ type: 'slot-ready', slot, data: outcome.data });
    }
  }

  #onCancel(message: CancelMessage): void {
    const instance = this.#instances[message.slot];
    if (!instance) return this.#fail(new ProtocolError(`no worker instance ${message.slot} in this session`));
    const batches = message.batches.filter((b): b is number => typeof b === 'number');
    if (batches.length > 0) instance.cancel(batches);
  }

  // Jobs: routed to their slot's thread untouched; results come back through the instance callback.

  #onJobs(message: JobsMessage, owned: boolean): void {
    const instance = this.#instances[message.slot];
    if (!instance || !Number.isInteger(message.slot)) {
      return this.#fail(new ProtocolError(`no worker instance ${message.slot} in this session (it has ${this.#instances.length})`));
    }
    const timeoutMs = typeof message.timeoutMs === 'number' && message.timeoutMs > 0 ? message.timeoutMs : undefined;
    instance.runBatch(message.batch, message.payload, timeoutMs, owned);
  }

  // Shutdown: cleanup() on every instance, report each failure, close.

  async #onShutdown(message: ShutdownMessage): Promise<void> {
    this.#state = 'shutting-down';
    // Nothing is waited for any more (a forced shutdown left batches queued): cleanup() need not wait behind them.
    for (const instance of this.#instances) instance.halt();
    // The coordinator's own bound (it waits for the answer about twice that): for a job a forced
    // shutdown left running, then for cleanup().
    const timeoutMs = requestedCleanupTimeout(message) ?? this.#options.cleanupTimeoutMs;
    const errors = await this.#cleanupInstances({ jobGraceMs: timeoutMs, cleanupTimeoutMs: timeoutMs });
    this.#connection.send({ type: 'shutdown-done', errors });
    this.#connection.end();
  }

  /** Runs at most once per session, whichever of shutdown, disconnect or daemon stop comes first. */
  #cleanupInstances(bounds: CleanupBounds): Promise<{ slot: number; error: SerializedError }[]> {
    this.#cleanup ??= this.#runCleanup(bounds);
    return this.#cleanup;
  }

  async #runCleanup(bounds: CleanupBounds): Promise<{ slot: number; error: SerializedError }[]> {
    const results = await Promise.all(this.#instances.map(async (instance) => ({ slot: instance.slot, error: await instance.cleanup(bounds) })));
    const errors = results.filter((r): r is { slot: number; error: NonNullable<typeof r.error> } => r.error !== null);
    for (const { slot, error } of errors) this.#log.error({ event: 'cleanup-failed', slot, error });
    this.#log.info({ event: 'cleaned-up', instances: this.#instances.length, failures: errors.length });
    return errors;
  }

  async #onClose(error: MapScaleError | undefined): Promise<void> {
    clearTimeout(this.#handshakeTimer);
    this.#state = 'closed';
    if (error instanceof ProtocolError) this.#stats.protocolErrors++;
    if (error) this.#log.warn({ event: 'disconnected', code: error.code, reason: error.message });
    else this.#log.debug({ event: 'disconnected' });
    // A coordinator that went away without shutdown still gets its instances' cleanup() run,
    // after what it had queued is dropped: nobody waits for those results. A job still running
    // gets --stop-grace-ms, cleanup() --cleanup-timeout-ms: a vanished coordinator must not leave
    // its threads burning CPU.
    for (const instance of this.#instances) instance.halt();
    await this.#cleanupInstances({ jobGraceMs: this.#options.stopGraceMs, cleanupTimeoutMs: this.#options.cleanupTimeoutMs });
    this.#resolveEnded();
  }
}

