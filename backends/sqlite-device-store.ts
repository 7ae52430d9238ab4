import type { Urn } from "../core/urn.ts";
import type { DeviceStore, DeviceToken, PushPlatform } from "./device-store.ts";
import type { DeviceStoreImplOptions } from "./memory-device-store.ts";
import { guarded } from "./guarded.ts";
import type { SqliteDb } from "./sqlite-db.ts";

export function createSqliteDeviceStore(db: SqliteDb, opts: DeviceStoreImplOptions = {}): DeviceStore {
  return new SqliteDeviceStore(db, opts);
}

interface TokenRow {
  readonly token: string;
  readonly platform: string;
  readonly registered_at: number;
}

class SqliteDeviceStore implements DeviceStore {
  #db: SqliteDb;
  #now: () => number;
  #open = true;
  #upsert;
  #unregister;
  #remove;
  #list;

  constructor(db: SqliteDb, opts: DeviceStoreImplOptions) {
    this.#db = db;
    this.#now = opts.now ?? Date.now;
    // The token is the key: registering it again refreshes it, for another owner it moves there.
    this.#upsert = db.statement<[string, Urn, PushPlatform, number]>(
      `INSERT INTO device_tokens (token, owner, platform, registered_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (token) DO UPDATE SET owner = excluded.owner, platform = excluded.platform, registered_at = excluded.registered_at`,
    );
    this.#unregister = db.statement<[string, Urn]>("DELETE FROM device_tokens WHERE token = ? AND owner = ?");
    this.#remove = db.statement<[string]>("DELETE FROM device_tokens WHERE token = ?");
    this.#list = db.statement<[Urn], TokenRow>("SELECT token, platform, registered_at FROM device_tokens WHERE owner = ? ORDER BY registered_at, token");
  }

  register(owner: Urn, token: string, platform: PushPlatform): Promise<void> {
    return guarded("device register", this.#open, () => {
      const now = this.#now();
      return this.#db.writeStatement(() => {
        this.#upsert.run(token, owner, platform, now);
      });
    });
  }

  unregister(owner: Urn, token: string): Promise<void> {
    return guarded("device unregister", this.#open, () =>
      this.#db.writeStatement(() => {
        this.#unregister.run(token, owner);
      }),
    );
  }

  removeToken(token: string): Promise<void> {
    return guarded("device remove", this.#open, () =>
      this.#db.writeStatement(() => {
        this.#remove.run(token);
      }),
    );
  }

  list(owner: Urn): Promise<DeviceToken[]> {
    return guarded("device list", this.#open, () =>
      this.#list.all(owner).map((row) => ({
        token: row.token,
        platform: row.platform as PushPlatform,
        registeredAt: row.registered_at,
      })),
    );
  }

  purge(owner: Urn): Promise<number> {
    return guarded("device purge", this.#open, () =>
      this.#db.writeStatement(() => this.#db.statement<[Urn]>("DELETE FROM device_tokens WHERE owner = ?").run(owner).changes),
    );
  }

  async ready(): Promise<boolean> {
    return this.#open && this.#db.open;
  }

  async close(): Promise<void> {
    this.#open = false;
  }
}
