import type { Config } from "../config/schema.ts";
import type { DeviceStore } from "./device-store.ts";
import { createFirestoreDeviceStore } from "./firestore-device-store.ts";
import { openFirestore } from "./firestore-client.ts";
import { createFirestoreMailbox } from "./firestore-mailbox.ts";
import type { IngressBus } from "./ingress-bus.ts";
import type { Mailbox } from "./mailbox.ts";
import { createMemoryPresenceStore } from "./memory-presence-store.ts";
import { openNatsIngressBus } from "./nats-ingress-bus.ts";
import type { PresenceStore } from "./presence-store.ts";
import { openPubSubIngressBus } from "./pubsub-ingress-bus.ts";
import type { PushQueue } from "./push-queue.ts";
import { createRedisMailbox } from "./redis-mailbox.ts";
import { createRedisPresenceStore } from "./redis-presence-store.ts";
import { createSqliteDeviceStore } from "./sqlite-device-store.ts";
import { openSqliteDb, type SqliteDb } from "./sqlite-db.ts";
import { createSqliteIngressBus } from "./sqlite-ingress-bus.ts";
import { createSqliteMailbox } from "./sqlite-mailbox.ts";
import { createSqlitePushQueue } from "./sqlite-push-queue.ts";
import { createRedisTicketStore } from "./redis-ticket-store.ts";
import { createSqliteTicketStore } from "./sqlite-ticket-store.ts";
import type { TicketStore } from "./ticket-store.ts";

/** Every backend role a node needs, chosen by the config. */
export interface Backends {
  readonly bus: IngressBus;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly pushQueue: PushQueue;
  readonly presence: PresenceStore;
  /** `GET /events` tickets: Redis when the cluster has Redis (presence or store), else the embedded database. */
  readonly tickets: TicketStore;
  /** Every backend reachable (readiness). */
  ready(): Promise<boolean>;
  /** Closes every backend, the bus first so nothing new is routed into closed stores. */
  close(): Promise<void>;
}

/*
 * One plain factory per role: a switch ending in "unknown ... type". The config schema already
 * refuses unknown names at start-up; the default branches are the second line of defence.
 */

async function createBus(config: Config, db: SqliteDb): Promise<IngressBus> {
  const retry = { maxAttempts: config.busMaxAttempts, retryBaseMs: config.busRetryBaseMs };
  switch (config.bus) {
    case "embedded":
      return createSqliteIngressBus(db, retry);
    case "nats":
      return openNatsIngressBus({
        ...retry,
        servers: config.natsUrl.split(","),
        stream: `${config.natsPrefix}_INGRESS`,
        consumer: `${config.natsPrefix}_router`,
        subjectPrefix: config.natsPrefix,
        ackWaitMs: config.busAckWaitMs,
        batchSize: Math.min(256, config.routerMaxInFlight),
      });
    case "pubsub":
      return openPubSubIngressBus({
        ...retry,
        projectId: config.gcpProjectId,
        emulatorHost: config.pubsubEndpoint,
        topic: config.pubsubTopic,
        subscription: `${config.pubsubTopic}-router`,
        maxMessages: config.routerMaxInFlight,
      });
    default:
      throw new Error(`unknown bus type: ${String(config.bus)}`);
  }
}

/** What the composition root wants to hear from the backends (metrics). */
export interface BackendHooks {
  /** Expired messages a fetch removed on its way (the retention sweep counts its own). */
  readonly onExpired?: (count: number) => void;
}

function createMailbox(config: Config, db: SqliteDb, firestore: () => ReturnType<typeof openFirestore>, hooks: BackendHooks): Mailbox {
  const life = { dedupTtlMs: config.dedupTtlSeconds * 1000, retentionMs: config.mailboxRetentionSeconds * 1000, onExpired: hooks.onExpired };
  switch (config.store) {
    case "embedded":
      return createSqliteMailbox(db, life);
    case "redis":
      return createRedisMailbox({ ...life, redis: config.redisUrl, keyPrefix: config.redisPrefix });
    case "firestore":
      return createFirestoreMailbox({ ...life, firestore: firestore() });
    default:
      throw new Error(`unknown store type: ${String(config.store)}`);
  }
}

function createDeviceStore(config: Config, db: SqliteDb, firestore: () => ReturnType<typeof openFirestore>): DeviceStore {
  switch (config.deviceStore) {
    case "embedded":
      return createSqliteDeviceStore(db);
    case "firestore":
      return createFirestoreDeviceStore({ firestore: firestore() });
    default:
      throw new Error(`unknown device store type: ${String(config.deviceStore)}`);
  }
}

function createPresence(config: Config): PresenceStore {
  const ttlMs = config.presenceTtlSeconds * 1000;
  switch (config.presence) {
    case "memory":
      return createMemoryPresenceStore({ ttlMs });
    case "redis":
      return createRedisPresenceStore({ ttlMs, redis: config.redisUrl, keyPrefix: config.redisPrefix });
    default:
      throw new Error(`unknown presence type: ${String(config.presence)}`);
  }
}

/**
 * Builds the backends the config names. The node's own SQLite database always opens: it holds the
 * embedded roles and the node's push queue (each node pushes what its router decided).
 */
export async function createBackends(config: Config, hooks: BackendHooks = {}): Promise<Backends> {
  const db = openSqliteDb({ dataDir: config.dataDir, sync: config.sqliteSync });
  let firestoreClient: ReturnType<typeof openFirestore> | undefined;
  const firestore = () => (firestoreClient ??= openFirestore({ projectId: config.gcpProjectId, emulatorHost: config.firestoreEndpoint }));
  let bus: IngressBus;
  try {
    bus = await createBus(config, db);
  } catch (err) {
    db.close();
    throw err;
  }
  const mailbox = createMailbox(config, db, firestore, hooks);
  const devices = createDeviceStore(config, db, firestore);
  const pushQueue = createSqlitePushQueue(db);
  const presence = createPresence(config);
  const tickets =
    config.presence === "redis" || config.store === "redis"
      ? createRedisTicketStore({ redis: config.redisUrl, keyPrefix: config.redisPrefix })
      : createSqliteTicketStore(db);
  const roles = [bus, mailbox, devices, presence, tickets] as const;
  let closing: Promise<void> | undefined;
  return {
    bus,
    mailbox,
    devices,
    pushQueue,
    presence,
    tickets,
    ready: async () => (await Promise.all(roles.map((r) => r.ready().catch(() => false)))).every(Boolean),
    // Idempotent: the backends service closes them at stop; a failed start-up closes them too.
    close: () =>
      (closing ??= (async () => {
        await bus.close();
        await Promise.allSettled([mailbox.close(), devices.close(), pushQueue.close(), presence.close(), tickets.close()]);
        await firestoreClient?.terminate();
        db.close();
      })()),
  };
}
