import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import type { DeviceStore, DeviceToken, PushPlatform } from "./device-store.ts";

export interface DeviceStoreImplOptions {
  /** Clock for `registeredAt` (tests inject one). */
  readonly now?: () => number;
}

/** The reference device store (not durable). */
export function createMemoryDeviceStore(opts: DeviceStoreImplOptions = {}): DeviceStore {
  return new MemoryDeviceStore(opts);
}

/** List order shared by every implementation: oldest registration first, then token. */
export function byRegistration(a: DeviceToken, b: DeviceToken): number {
  return a.registeredAt - b.registeredAt || (a.token < b.token ? -1 : a.token > b.token ? 1 : 0);
}

interface Held extends DeviceToken {
  readonly owner: Urn;
}

class MemoryDeviceStore implements DeviceStore {
  #now: () => number;
  #open = true;
  #tokens = new Map<string, Held>();
  #byOwner = new Map<Urn, Set<string>>();

  constructor(opts: DeviceStoreImplOptions) {
    this.#now = opts.now ?? Date.now;
  }

  async register(owner: Urn, token: string, platform: PushPlatform): Promise<void> {
    this.#check("device register");
    this.#drop(token);
    this.#tokens.set(token, { owner, token, platform, registeredAt: this.#now() });
    let owned = this.#byOwner.get(owner);
    if (owned === undefined) this.#byOwner.set(owner, (owned = new Set()));
    owned.add(token);
  }

  async unregister(owner: Urn, token: string): Promise<void> {
    this.#check("device unregister");
    if (this.#tokens.get(token)?.owner === owner) this.#drop(token);
  }

  async removeToken(token: string): Promise<void> {
    this.#check("device remove");
    this.#drop(token);
  }

  async list(owner: Urn): Promise<DeviceToken[]> {
    this.#check("device list");
    const tokens: DeviceToken[] = [];
    for (const token of this.#byOwner.get(owner) ?? []) {
      const held = this.#tokens.get(token);
      if (held !== undefined) tokens.push({ token: held.token, platform: held.platform, registeredAt: held.registeredAt });
    }
    return tokens.sort(byRegistration);
  }

  async purge(owner: Urn): Promise<number> {
    this.#check("device purge");
    const tokens = [...(this.#byOwner.get(owner) ?? [])];
    for (const token of tokens) this.#drop(token);
    return tokens.length;
  }

  async ready(): Promise<boolean> {
    return this.#open;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  #drop(token: string): void {
    const held = this.#tokens.get(token);
    if (held === undefined) return;
    this.#tokens.delete(token);
    const owned = this.#byOwner.get(held.owner);
    owned?.delete(token);
    if (owned?.size === 0) this.#byOwner.delete(held.owner);
  }

  #check(what: string): void {
    if (!this.#open) throw new RoutingError("BACKEND_UNAVAILABLE", `${what}: closed`);
  }
}
