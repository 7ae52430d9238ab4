import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { PresenceEntry, PresenceOptions, PresenceStore } from "./presence-store.ts";

export interface MemoryPresenceOptions extends PresenceOptions {
  /** Clock for expiry (tests inject one). */
  readonly now?: () => number;
  /** How often expired entries are swept; default ttlMs. Reads expire lazily in between. */
  readonly sweepIntervalMs?: number;
}

/** Presence for a single instance; a multi-instance deployment needs a shared store. */
export function createMemoryPresenceStore(opts: MemoryPresenceOptions): PresenceStore {
  return new MemoryPresenceStore(opts);
}

interface Session {
  readonly entry: PresenceEntry;
  /** When it was added; a later heartbeat of its instance extends it. */
  readonly addedAt: number;
}

class MemoryPresenceStore implements PresenceStore {
  #ttlMs: number;
  #now: () => number;
  #open = true;
  #sessions = new Map<Urn, Map<string, Session>>();
  /** instanceId -> last heartbeat: one write refreshes every entry of the instance. */
  #beats = new Map<string, number>();
  #sweepTimer: NodeJS.Timeout;

  constructor(opts: MemoryPresenceOptions) {
    this.#ttlMs = opts.ttlMs;
    this.#now = opts.now ?? Date.now;
    this.#sweepTimer = setInterval(() => this.#sweep(), opts.sweepIntervalMs ?? opts.ttlMs);
    this.#sweepTimer.unref();
  }

  async add(urn: Urn, entry: PresenceEntry): Promise<void> {
    this.#check("presence add");
    let sessions = this.#sessions.get(urn);
    if (sessions === undefined) this.#sessions.set(urn, (sessions = new Map()));
    sessions.set(entry.sessionId, { entry: { ...entry }, addedAt: this.#now() });
  }

  async remove(urn: Urn, sessionId: string): Promise<void> {
    this.#check("presence remove");
    const sessions = this.#sessions.get(urn);
    sessions?.delete(sessionId);
    if (sessions?.size === 0) this.#sessions.delete(urn);
  }

  async get(urn: Urn): Promise<PresenceEntry[]> {
    this.#check("presence get");
    const sessions = this.#sessions.get(urn);
    if (sessions === undefined) return [];
    const now = this.#now();
    const live: PresenceEntry[] = [];
    for (const [id, session] of sessions) {
      if (this.#alive(session, now)) live.push({ ...session.entry });
      else sessions.delete(id);
    }
    if (sessions.size === 0) this.#sessions.delete(urn);
    return live;
  }

  async heartbeat(instanceId: string): Promise<void> {
    this.#check("presence heartbeat");
    this.#beats.set(instanceId, this.#now());
  }

  async release(instanceId: string): Promise<void> {
    this.#check("presence release");
    for (const [urn, sessions] of this.#sessions) {
      for (const [id, session] of sessions) if (session.entry.instanceId === instanceId) sessions.delete(id);
      if (sessions.size === 0) this.#sessions.delete(urn);
    }
    this.#beats.delete(instanceId);
  }

  async ready(): Promise<boolean> {
    return this.#open;
  }

  async close(): Promise<void> {
    this.#open = false;
    clearInterval(this.#sweepTimer);
  }

  #alive(session: Session, now: number): boolean {
    const beat = this.#beats.get(session.entry.instanceId) ?? session.addedAt;
    return now - Math.max(beat, session.addedAt) < this.#ttlMs;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [urn, sessions] of this.#sessions) {
      for (const [id, session] of sessions) if (!this.#alive(session, now)) sessions.delete(id);
      if (sessions.size === 0) this.#sessions.delete(urn);
    }
    // A beat older than the TTL keeps nothing alive any more.
    for (const [instance, beat] of this.#beats) if (now - beat >= this.#ttlMs) this.#beats.delete(instance);
  }

  #check(what: string): void {
    if (!this.#open) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
  }
}
