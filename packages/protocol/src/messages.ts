import type { SerializedError } from './codec.js';
import { ProtocolError, type AuthRefusal } from './errors.js';

/**
 * How a work function travels. By value: the class sources from the user's class up to
 * (not including) WorkFunction, plus the instance's own state. By reference: a module URL
 * the worker imports and the export to take. Plain functions travel as source.
 * `state` is msgpack of the instance's own enumerable properties.
 */
export type ShippedCode =
  | { kind: 'function'; source: string; origin?: SourceOrigin; globals?: string[] }
  | { kind: 'class'; classes: { name: string; source: string; origin?: SourceOrigin }[]; state: Uint8Array; globals?: string[] }
  | { kind: 'module'; url: string; exportName: string; state: Uint8Array; external?: string[] }
  /**
   * The class's module bundled with its imports (ESM), named by the SHA-256 of its bytes; the daemon
   * asks for the bytes (`need-bundle`) only when its cache lacks them. `external` modules are
   * imported on the worker host as installed there.
   */
  | { kind: 'bundle'; hash: string; bytes: number; exportName: string; state: Uint8Array; external: string[] };

/**
 * Where source shipped by value was found in the app: its file's URL and, when found there, the
 * line (from 1) and column (from 0) it starts at. The worker names the evaluated source after it
 * (`//# sourceURL`) at those very lines, so stacks point into the user's file.
 * `globals` beside it: the globals the source reads (found when the Processor was constructed), which
 * the worker checks it has before setup.
 */
export interface SourceOrigin {
  url: string;
  line?: number;
  column?: number;
}

/** Coordinator → daemon, first frame: who it is and a fresh nonce to be proven against. */
export interface HelloMessage {
  type: 'hello';
  protocol: number;
  mapscale: string;
  node: string;
  nonce: Uint8Array;
}

/** Daemon → coordinator: its versions, capacity, nonce, and its own proof when it holds a secret. */
export interface WelcomeMessage {
  type: 'welcome';
  protocol: number;
  mapscale: string;
  node: string;
  nonce: Uint8Array;
  authRequired: boolean;
  proof?: Uint8Array;
  slots: number;
  hostname: string;
  pid: number;
}

/** Coordinator → daemon: proof of the secret over both nonces (empty when no secret is in use). */
export interface AuthMessage {
  type: 'auth';
  proof?: Uint8Array;
  /**
   * Instead of a proof: the coordinator will not go on, and why, so the daemon can log the failed
   * authentication (it would otherwise see only a closed connection). Never sent with a proof.
   */
  refused?: AuthRefusal;
}

/** Daemon → coordinator: the handshake is done. */
export interface ReadyMessage {
  type: 'ready';
}

/** Coordinator → daemon: build `slots` instances of this work function and run their setup(). */
export interface SetupMessage {
  type: 'setup';
  code: ShippedCode;
  slots: number;
  /** Send what user code prints to the coordinator too (it always goes to the daemon's log). */
  forwardOutput?: boolean;
  /** The largest frame the coordinator accepts: results are fitted to the smaller of this and the daemon's own limit. */
  maxFrameBytes?: number;
}

/** Client → daemon, after the handshake and instead of setup: report your status, then close. */
export interface StatusRequestMessage {
  type: 'status-request';
}

/** Daemon → client: version, uptime, capacity and counters (see the daemon's DaemonStats). */
export interface StatusMessage {
  type: 'status';
  status: Record<string, unknown>;
}

/** Daemon → coordinator: its bundle cache lacks this hash; send the bytes. */
export interface NeedBundleMessage {
  type: 'need-bundle';
  hash: string;
}

/** Coordinator → daemon: a bundle's bytes, checked against its hash before use. */
export interface BundleMessage {
  type: 'bundle';
  hash: string;
  source: Uint8Array;
}

/**
 * Where an instance thread listens for its own data connection: the port (on the host the
 * coordinator already reached) and a one-off token to present in `attach`. Jobs sent on it reach the
 * thread without passing the daemon's main thread, and its results come straight back.
 */
export interface DataEndpoint {
  port: number;
  token: Uint8Array;
}

/** Daemon → coordinator: every instance is set up. */
export interface SetupDoneMessage {
  type: 'setup-done';
  slots: number;
  /** The largest frame the daemon accepts: a batch of jobs must fit in it. */
  maxFrameBytes?: number;
  /** Per slot, its data endpoint (null: that slot is served through this connection only). Absent: none offered. */
  data?: (DataEndpoint | null)[];
}

/** Daemon → coordinator: an instance failed to restore or set up; the session stays usable for shutdown. */
export interface SetupFailedMessage {
  type: 'setup-failed';
  slot: number;
  error: SerializedError;
}

/** Coordinator → daemon: a batch of jobs for one instance. `payload` is the msgpack of the job array. */
export interface JobsMessage {
  type: 'jobs';
  slot: number;
  batch: number;
  payload: Uint8Array;
  /** A job of this batch running longer fails (slot-lost 'timeout') and its instance is replaced. */
  timeoutMs?: number;
}

/**
 * Coordinator → instance thread, first frame on a data connection: the token this slot's data
 * endpoint was announced with. Anything else, or a wrong token, closes the connection.
 */
export interface AttachMessage {
  type: 'attach';
  slot: number;
  token: Uint8Array;
}

/** Instance thread → coordinator: the data connection is this slot's; send its jobs here from now on. */
export interface AttachedMessage {
  type: 'attached';
  slot: number;
}

/** Coordinator → daemon: drop these batches (queued or running) of an instance; nobody waits for them. */
export interface CancelMessage {
  type: 'cancel';
  slot: number;
  batches: number[];
}

/** Coordinator → daemon: are you there? Answered at once by the daemon's main thread, never by a busy instance. */
export interface PingMessage {
  type: 'ping';
  seq: number;
}

/**
 * Daemon → coordinator: the answer to a ping. `cpuUs` (the daemon process's CPU time so far, user +
 * system, in µs) and `rssBytes` (its resident memory) let a coordinator show each daemon's load
 * without another connection; optional, so a daemon that does not send them still answers.
 */
export interface PongMessage {
  type: 'pong';
  seq: number;
  cpuUs?: number;
  rssBytes?: number;
}

/**
 * Daemon → coordinator: an instance died ('crashed': its thread exited or threw outside a job;
 * 'timeout': a job ran over its time and the instance was ended) or its data connection broke
 * ('disconnected': the instance lives on and blames no job). `batch`/`jobOffset` name the job it was
 * running, if any. Its batches are not answered; `slot-ready` follows once it takes jobs again.
 */
export interface SlotLostMessage {
  type: 'slot-lost';
  slot: number;
  reason: 'crashed' | 'timeout' | 'disconnected';
  batch?: number;
  jobOffset?: number;
  error?: SerializedError;
}

/**
 * Daemon → coordinator: what user code printed (console.log/error…) in setup, a job or cleanup.
 * `batch`/`jobOffset` name the job when it came from one.
 */
export interface OutputMessage {
  type: 'output';
  slot: number;
  stream: 'stdout' | 'stderr';
  text: string;
  phase: 'setup' | 'call' | 'cleanup';
  batch?: number;
  jobOffset?: number;
}

/** Daemon → coordinator: a replaced instance is set up and takes jobs again. */
export interface SlotReadyMessage {
  type: 'slot-ready';
  slot: number;
  /** Its new data endpoint, if it offers one. */
  data?: DataEndpoint;
}

/** Daemon → coordinator: a replaced instance failed its setup; that slot stays out of service. */
export interface SlotFailedMessage {
  type: 'slot-failed';
  slot: number;
  error: SerializedError;
}

/**
 * Daemon → coordinator: the daemon is stopping. Jobs in flight on it will not be answered: send
 * them elsewhere. It runs cleanup() and closes.
 */
export interface GoodbyeMessage {
  type: 'goodbye';
  reason: string;
}

/**
 * Daemon → coordinator: results `offset .. offset+n` of a batch (a batch may be answered in
 * several parts so one slow job does not hold back finished ones). `payload` is the msgpack of the
 * result array; a job that threw has `null` there and an entry in `errors` (its index within this part's payload).
 */
export interface ResultsMessage {
  type: 'results';
  slot: number;
  batch: number;
  offset: number;
  payload: Uint8Array;
  errors?: [number, SerializedError][];
  busyMs: number;
  final: boolean;
}

/** Coordinator → daemon: run cleanup() on every instance of this session, then close. */
export interface ShutdownMessage {
  type: 'shutdown';
  /**
   * How long each instance's cleanup() may take (and, after a forced shutdown, a job still running
   * before it) before its thread is terminated; absent: the daemon's --cleanup-timeout-ms.
   */
  cleanupTimeoutMs?: number;
}

/** A shutdown's `cleanupTimeoutMs` as the daemon honours it: a positive integer of ms, else undefined (the daemon's own). */
export function requestedCleanupTimeout(message: ShutdownMessage): number | undefined {
  const ms = message.cleanupTimeoutMs;
  return typeof ms === 'number' && Number.isInteger(ms) && ms > 0 ? ms : undefined;
}

/** Daemon → coordinator: cleanup ran; each failure is reported, none swallowed. */
export interface ShutdownDoneMessage {
  type: 'shutdown-done';
  errors: { slot: number; error: SerializedError }[];
}

/** Either side: a refusal or failure of the connection itself; the sender closes after it. */
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
}

export type CoordinatorMessage =
  | HelloMessage | AuthMessage | SetupMessage | StatusRequestMessage | BundleMessage | JobsMessage | CancelMessage | PingMessage | ShutdownMessage | ErrorMessage
  | AttachMessage;
export type DaemonMessage =
  | WelcomeMessage | ReadyMessage | StatusMessage | NeedBundleMessage | SetupDoneMessage | SetupFailedMessage | ResultsMessage | PongMessage | OutputMessage
  | SlotLostMessage | SlotReadyMessage | SlotFailedMessage | GoodbyeMessage | ShutdownDoneMessage | ErrorMessage | AttachedMessage;
export type Message = CoordinatorMessage | DaemonMessage;
export type MessageType = Message['type'];

type FieldKind = 'number' | 'string' | 'boolean' | 'bytes' | 'object' | 'array';
/** Required fields per message type; optional ones are checked where they are read. */
const REQUIRED_FIELDS: Record<MessageType, Record<string, FieldKind>> = {
  hello: { protocol: 'number', mapscale: 'string', node: 'string', nonce: 'bytes' },
  welcome: { protocol: 'number', mapscale: 'string', node: 'string', nonce: 'bytes', authRequired: 'boolean', slots: 'number', hostname: 'string', pid: 'number' },
  auth: {},
  ready: {},
  setup: { code: 'object', slots: 'number' },
  'status-request': {},
  status: { status: 'object' },
  'need-bundle': { hash: 'string' },
  bundle: { hash: 'string', source: 'bytes' },
  'setup-done': { slots: 'number' },
  'setup-failed': { slot: 'number', error: 'object' },
  jobs: { slot: 'number', batch: 'number', payload: 'bytes' },
  results: { slot: 'number', batch: 'number', offset: 'number', payload: 'bytes', busyMs: 'number', final: 'boolean' },
  cancel: { slot: 'number', batches: 'array' },
  ping: { seq: 'number' },
  pong: { seq: 'number' },
  'slot-lost': { slot: 'number', reason: 'string' },
  'slot-ready': { slot: 'number' },
  'slot-failed': { slot: 'number', error: 'object' },
  goodbye: { reason: 'string' },
  output: { slot: 'number', stream: 'string', text: 'string', phase: 'string' },
  shutdown: {},
  'shutdown-done': { errors: 'array' },
  error: { code: 'string', message: 'string' },
  attach: { slot: 'number', token: 'bytes' },
  attached: { slot: 'number' },
};

function hasKind(value: unknown, kind: FieldKind): boolean {
  switch (kind) {
    case 'bytes': return value instanceof Uint8Array;
    case 'array': return Array.isArray(value);
    case 'object': return typeof value === 'object' && value !== null && !Array.isArray(value);
    default: return typeof value === kind;
  }
}

/** Optional fields whose kind is checked when present (the rest are checked where they are read). */
const OPTIONAL_FIELDS: Partial<Record<MessageType, Record<string, FieldKind>>> = {
  shutdown: { cleanupTimeoutMs: 'number' },
  pong: { cpuUs: 'number', rssBytes: 'number' },
};

/**
 * Checks that a decoded frame is a known message with the fields its type requires.
 * Anything else is a ProtocolError: peers never act on a half-understood message.
 */
export function validateMessage(value: unknown): Message {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('frame is not a message object');
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !Object.hasOwn(REQUIRED_FIELDS, type)) {
    throw new ProtocolError(`unknown message type ${JSON.stringify(type)?.slice(0, 40)}`);
  }
  const fields = REQUIRED_FIELDS[type as MessageType];
  for (const name in fields) {
    if (!hasKind((value as Record<string, unknown>)[name], fields[name]!)) {
      throw new ProtocolError(`message "${type}" lacks a valid "${name}" (${fields[name]})`);
    }
  }
  const optional = OPTIONAL_FIELDS[type as MessageType];
  if (optional !== undefined) {
    for (const name in optional) {
      const field = (value as Record<string, unknown>)[name];
      if (field !== undefined && !hasKind(field, optional[name]!)) {
        throw new ProtocolError(`message "${type}" has an invalid "${name}" (not a ${optional[name]})`);
      }
    }
  }
  return value as Message;
}
