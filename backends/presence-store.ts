import type { Urn } from "../core/urn.ts";

export type SessionProtocol = "ws" | "mqtt" | "sse";

export interface PresenceEntry {
  readonly sessionId: string;
  /** The instance holding the connection. */
  readonly instanceId: string;
  readonly protocol: SessionProtocol;
  /** Epoch ms. */
  readonly connectedAt: number;
}

/**
 * Who is online, where. One identity may hold many sessions (phone, laptop, several instances).
 *
 * Guarantees: `add` and `remove` are visible to `get` once they resolve. Entries are kept alive by
 * `heartbeat(instanceId)` and expire `ttlMs` after the last one, so an instance that dies leaves
 * no ghost presence beyond one TTL. `remove` is idempotent.
 */
export interface PresenceStore {
  add(urn: Urn, entry: PresenceEntry): Promise<void>;
  remove(urn: Urn, sessionId: string): Promise<void>;
  get(urn: Urn): Promise<PresenceEntry[]>;
  /** Refreshes every entry of this instance. */
  heartbeat(instanceId: string): Promise<void>;
  /**
   * The instance leaves on purpose (graceful stop): every entry it still holds is gone once this
   * resolves, instead of one TTL later. Idempotent.
   */
  release(instanceId: string): Promise<void>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}

export interface PresenceOptions {
  readonly ttlMs: number;
}
