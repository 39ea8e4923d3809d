import type { WorkerSession } from '../worker-session.js';
import type { Endpoint } from './pool.js';

/** One worker instance in service: the endpoint and session it belongs to, and its slot there. */
export interface SlotRef {
  readonly endpoint: Endpoint;
  readonly session: WorkerSession;
  readonly slot: number;
}

/** A live session's instances: those in service (slot → scheduler id), and those being replaced inside the daemon. */
interface SessionSlots {
  readonly ids: Map<number, number>;
  readonly replacing: Set<number>;
}

/**
 * Which worker instances exist, and which are on their way back, kept in one place and indexed
 * both ways (scheduler id → slot, session → its slots). An instance is, in turn:
 *
 *   ready/running (here, in service) ─lost─▶ replacing (its daemon sets up a fresh one) ─▶ ready again
 *                                     │                                                  └▶ failed: gone
 *                                     └─ its session lost, retired or removed: gone, with everything it was replacing
 *
 * "Is any instance left or coming back?" is computed from these facts when asked, never counted by
 * hand: a daemon lost while one of its instances was being replaced takes that replacement with it
 * (issue 12, item 5: a hand-kept counter was raised there and never lowered, so a map waited forever).
 */
export class SlotTable {
  readonly #byId = new Map<number, SlotRef>();
  readonly #sessions = new Map<WorkerSession, SessionSlots>();
  #nextId = 1;

  /** Instances in service. */
  get size(): number {
    return this.#byId.size;
  }

  /** Whether a live daemon is setting up a replacement for one of its instances. */
  get anyReplacing(): boolean {
    for (const { replacing } of this.#sessions.values()) if (replacing.size > 0) return true;
    return false;
  }

  get(id: number): SlotRef | undefined {
    return this.#byId.get(id);
  }

  /** Scheduler ids of a session's instances in service. */
  idsOf(session: WorkerSession): number[] {
    return [...(this.#sessions.get(session)?.ids.values() ?? [])];
  }

  /** A session joined: its instances come into service through add(). */
  open(session: WorkerSession): void {
    if (!this.#sessions.has(session)) this.#sessions.set(session, { ids: new Map(), replacing: new Set() });
  }

  /** Puts `slot` of a live session in service (again); its new scheduler id, or undefined for a session no longer live. */
  add(endpoint: Endpoint, session: WorkerSession, slot: number): number | undefined {
    const entry = this.#sessions.get(session);
    if (!entry) return undefined;
    entry.replacing.delete(slot);
    const id = this.#nextId++;
    entry.ids.set(slot, id);
    this.#byId.set(id, { endpoint, session, slot });
    return id;
  }

  /** Takes `slot` out of service; with `replacing`, its daemon is setting up a fresh instance for it. */
  remove(session: WorkerSession, slot: number, replacing = false): number | undefined {
    const entry = this.#sessions.get(session);
    if (!entry) return undefined;
    if (replacing) entry.replacing.add(slot);
    const id = entry.ids.get(slot);
    if (id === undefined) return undefined;
    entry.ids.delete(slot);
    this.#byId.delete(id);
    return id;
  }

  /** A replacement failed its setup: that slot is gone for good. */
  replacementFailed(session: WorkerSession, slot: number): void {
    this.#sessions.get(session)?.replacing.delete(slot);
  }

  /** A session is over (lost, retired, removed, shut down): its instances and replacements with it. Returns the ids taken out of service. */
  close(session: WorkerSession): number[] {
    const entry = this.#sessions.get(session);
    if (!entry) return [];
    this.#sessions.delete(session);
    const ids = [...entry.ids.values()];
    for (const id of ids) this.#byId.delete(id);
    return ids;
  }
}
