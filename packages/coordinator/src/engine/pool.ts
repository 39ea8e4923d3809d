import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { AuthenticationError, NotADaemonError, ProtocolVersionError, type ShippedCode } from '@mapscale/protocol';
import { parseAddress, TLSError, type DaemonAddress } from '@mapscale/transport';
import { LocalDaemon, type LocalWorkers } from '../local-daemon.js';
import { InProcessDaemon } from '../in-process-daemon.js';
import { SetupError, ShippingError } from '../errors.js';
import { WorkerSession } from '../worker-session.js';
import type { ResolvedProcessorOptions } from '../options.js';

/** Where workers come from: a local daemon with N instances, or a daemon address. */
export type WorkerSpec = { local: number } | DaemonAddress;

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
  /** The daemon process's CPU (% of one core) and resident memory, from its heartbeat answers; undefined until known (or from a daemon too old to send them). */
  daemonCpuPercent: number | undefined;
  daemonRssBytes: number | undefined;
}

/**
 * A place workers come from: a daemon address, or a local daemon the pool starts (and restarts
 * when it dies). It keeps being reconnected, with backoff, until shutdown.
 */
export interface Endpoint {
  readonly local: boolean;
  /** For a local endpoint: worker instances its daemon runs. */
  readonly localWorkers: number;
  label: string;
  address: DaemonAddress | null;
  daemon: LocalWorkers | null;
  session: WorkerSession | null;
  /** An attempt to bring it up is under way (connecting, handshaking, setting up, or a local daemon starting). */
  connecting: boolean;
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

/** Errors that no retry can fix: the configuration or the code is wrong (or the address is not a daemon's at all). */
export function isPermanent(error: unknown): boolean {
  return error instanceof AuthenticationError || error instanceof ProtocolVersionError || error instanceof NotADaemonError ||
    error instanceof SetupError || error instanceof ShippingError || error instanceof TLSError;
}

/** What the pool needs of the engine that owns it. */
export interface PoolOwner {
  /** Only a running engine reconnects; once closing, a failed attempt is nobody's concern, and once closed a session that comes up is closed again. */
  readonly status: 'starting' | 'running' | 'closing' | 'closed';
  /** Subscribes to a new session's events, before it opens. */
  wire(endpoint: Endpoint, session: WorkerSession): void;
  /** The session is set up with `slots` instances: put them in service. */
  joined(endpoint: Endpoint, session: WorkerSession, slots: number): void;
  /** The endpoint is being removed: take its session's instances out of service, blaming nobody. */
  retire(endpoint: Endpoint, session: WorkerSession): void;
  /** An attempt failed; maps may have nobody left to wait for. */
  attemptFailed(): void;
}

/**
 * The endpoints: connecting, reconnecting with exponential backoff and jitter, starting and
 * restarting local daemons, adding and removing them. What their instances do is the engine's.
 */
export class WorkerPool {
  readonly endpoints: Endpoint[] = [];
  readonly #options: ResolvedProcessorOptions;
  readonly #log: Logger;
  readonly #owner: PoolOwner;
  readonly #shipping: () => Promise<{ code: ShippedCode; bundle?: { hash: string; source: Uint8Array } }>;

  constructor(options: ResolvedProcessorOptions, log: Logger, owner: PoolOwner,
    shipping: () => Promise<{ code: ShippedCode; bundle?: { hash: string; source: Uint8Array } }>) {
    this.#options = options;
    this.#log = log;
    this.#owner = owner;
    this.#shipping = shipping;
  }

  /** Whether a local daemon is being started or restarted: its instances are still to come. */
  get localComingBack(): boolean {
    return this.endpoints.some((e) => e.local && !e.removed && (e.connecting || e.retry !== null));
  }

  add(spec: WorkerSpec): Endpoint {
    const local = 'local' in spec;
    const label = local ? 'local' : spec.label;
    const endpoint: Endpoint = {
      local, localWorkers: local ? spec.local : 0, label, address: local ? null : spec, daemon: null, session: null,
      connecting: false, failures: 0, joinedOnce: false, retry: null, retiring: false, removed: false,
      stats: { address: label, state: 'connecting', slots: 0, jobs: 0, busyMs: 0, failures: 0, losses: 0, reconnects: 0, roundTripMs: undefined, credit: 0, directSlots: 0, daemonCpuPercent: undefined, daemonRssBytes: undefined },
    };
    this.endpoints.push(endpoint);
    return endpoint;
  }

  /**
   * The first connection attempt of every endpoint, awaited until each has settled, except that a
   * host not even reachable yet (its TCP connect still waiting, as when its link is down) holds
   * nothing up once another worker is ready: it keeps trying and joins when it can. A reachable host
   * is always awaited, so a wrong secret, another release or a failing setup() still fails the first
   * map. Resolves to the failures.
   */
  firstAttempts(someReady: () => boolean): Promise<Error[]> {
    return new Promise((resolve) => {
      const attempts = this.endpoints.map((endpoint) => ({ reachable: endpoint.local, error: null as Error | null, settled: false }));
      const check = () => {
        if (attempts.every((a) => a.settled || (someReady() && !a.reachable))) {
          resolve(attempts.flatMap((a) => (a.error ? [a.error] : [])));
        }
      };
      this.endpoints.forEach((endpoint, i) => {
        const attempt = attempts[i]!;
        this.connect(endpoint, () => (attempt.reachable = true))
          .catch((error: Error) => (attempt.error = error))
          .then(() => {
            attempt.settled = true;
            check();
          });
      });
    });
  }

  /** Takes endpoints out of the pool: their instances clean up, they are not reconnected. */
  async remove(addresses: readonly string[]): Promise<void> {
    const wanted = new Set(addresses);
    const removed = this.endpoints.filter((e) => !e.removed && (wanted.has(e.label) || (e.address !== null && wanted.has(e.address.label))));
    await Promise.all(removed.map(async (endpoint) => {
      endpoint.removed = true;
      endpoint.stats.state = 'removed';
      endpoint.stats.slots = 0;
      this.#cancelRetry(endpoint);
      const session = endpoint.session;
      if (session) {
        this.#owner.retire(endpoint, session);
        await session.shutdown().catch(() => session.destroy());
      }
      await endpoint.daemon?.stop();
    }));
  }

  /** One attempt to bring an endpoint up; on a passing failure it schedules the next. */
  async connect(endpoint: Endpoint, onReachable?: () => void): Promise<void> {
    endpoint.retry = null;
    endpoint.connecting = true;
    let secret = this.#options.secret;
    try {
      if (endpoint.local) {
        secret = randomBytes(32).toString('base64url');
        const Daemon = this.#options.inProcess ? InProcessDaemon : LocalDaemon;
        endpoint.daemon = new Daemon(endpoint.localWorkers, secret, this.#options.logger, this.#options.localStartTimeoutMs, this.#options.maxFrameBytes);
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
        cleanupTimeoutMs: this.#options.cleanupTimeoutMs,
      });
      endpoint.session = session;
      endpoint.retiring = false;
      this.#owner.wire(endpoint, session);
      if (onReachable) session.once('connected', onReachable);
      const slots = await session.open(this.#shipping());
      endpoint.connecting = false;
      // While closing, maps that were called before shutdown() still need these workers.
      if (this.#owner.status === 'closed' || endpoint.removed) {
        await session.shutdown().catch(() => session.destroy());
        await endpoint.daemon?.stop();
        return;
      }
      endpoint.failures = 0;
      endpoint.stats.state = 'ready';
      endpoint.stats.slots = slots;
      if (endpoint.joinedOnce) endpoint.stats.reconnects++;
      this.#owner.joined(endpoint, session, slots);
      endpoint.joinedOnce = true;
    } catch (error) {
      endpoint.session?.destroy();
      endpoint.session = null;
      await endpoint.daemon?.stop();
      endpoint.daemon = null;
      endpoint.connecting = false;
      if (this.#owner.status === 'closing' || this.#owner.status === 'closed') return;
      endpoint.failures++;
      this.#log.info({ event: 'connect-failed', worker: endpoint.label, attempt: endpoint.failures, reason: (error as Error).message });
      // A wrong secret or incompatible release will not fix itself. Start-up failures are decided by the engine.
      if (!isPermanent(error) && this.#owner.status === 'running') this.scheduleReconnect(endpoint);
      throw error;
    }
  }

  scheduleReconnect(endpoint: Endpoint): void {
    if (endpoint.retry || endpoint.removed || this.#owner.status === 'closing' || this.#owner.status === 'closed') return;
    const { reconnectDelayMs, maxReconnectDelayMs } = this.#options;
    const delay = Math.min(maxReconnectDelayMs, reconnectDelayMs * 2 ** Math.min(endpoint.failures, 16)) * (0.5 + Math.random() / 2);
    endpoint.retry = setTimeout(() => {
      this.connect(endpoint).catch(() => this.#owner.attemptFailed());
    }, delay);
    endpoint.retry.unref();
  }

  #cancelRetry(endpoint: Endpoint): void {
    if (endpoint.retry) clearTimeout(endpoint.retry);
    endpoint.retry = null;
  }

  /** Gives up every connection still being opened (and local daemon still starting): their attempts fail at once. */
  abortOpening(): void {
    for (const endpoint of this.endpoints) {
      if (endpoint.session && endpoint.session.state !== 'ready') endpoint.session.destroy();
      else if (!endpoint.session && endpoint.daemon) void endpoint.daemon.stop();
    }
  }

  /** Stops reconnecting, runs cleanup() on every session, stops local daemons; resolves to the cleanup failures. */
  async closeAll(): Promise<{ workerAddress: string; error: Error }[]> {
    for (const endpoint of this.endpoints) this.#cancelRetry(endpoint);
    const failures: { workerAddress: string; error: Error }[] = [];
    await Promise.all(this.endpoints.map(async (endpoint) => {
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
    return failures;
  }
}
