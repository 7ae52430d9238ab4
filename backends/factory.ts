import type { Config } from "../config/schema.ts";
import type { DeviceStore } from "./device-store.ts";
import type { IngressBus } from "./ingress-bus.ts";
import type { Mailbox } from "./mailbox.ts";
import { createMemoryPresenceStore } from "./memory-presence-store.ts";
import type { PresenceStore } from "./presence-store.ts";
import type { PushQueue } from "./push-queue.ts";
import { createSqliteDeviceStore } from "./sqlite-device-store.ts";
import { openSqliteDb } from "./sqlite-db.ts";
import { createSqliteIngressBus } from "./sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "./sqlite-mailbox.ts";
import { createSqlitePushQueue } from "./sqlite-push-queue.ts";

/** Every backend role a node needs, chosen by the config. */
export interface Backends {
  readonly bus: IngressBus;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly pushQueue: PushQueue;
  readonly presence: PresenceStore;
  /** Every backend reachable (readiness). */
  ready(): Promise<boolean>;
  /** Closes every backend, the bus first so nothing new is routed into closed stores. */
  close(): Promise<void>;
}

/**
 * Builds the backends the config names. A plain switch per role: an unknown type stops start-up
 * (the config schema already refuses it; this is the second line of defence).
 */
export async function createBackends(config: Config): Promise<Backends> {
  switch (config.bus) {
    case "embedded":
      break;
    default:
      throw new Error(`unknown bus type: ${String(config.bus)}`);
  }
  switch (config.store) {
    case "embedded":
      break;
    default:
      throw new Error(`unknown store type: ${String(config.store)}`);
  }
  const db = openSqliteDb({ dataDir: config.dataDir, sync: config.sqliteSync });
  const bus = createSqliteIngressBus(db, { maxAttempts: config.busMaxAttempts, retryBaseMs: config.busRetryBaseMs });
  const mailbox = createSqliteMailbox(db, { dedupTtlMs: config.dedupTtlSeconds * 1000 });
  const devices = createSqliteDeviceStore(db);
  const pushQueue = createSqlitePushQueue(db);
  const presence = createMemoryPresenceStore({ ttlMs: config.presenceTtlSeconds * 1000 });
  const roles = [bus, mailbox, devices, presence] as const;
  return {
    bus,
    mailbox,
    devices,
    pushQueue,
    presence,
    ready: async () => (await Promise.all(roles.map((r) => r.ready()))).every(Boolean),
    close: async () => {
      await bus.close();
      await Promise.allSettled([mailbox.close(), devices.close(), pushQueue.close(), presence.close()]);
      db.close();
    },
  };
}
