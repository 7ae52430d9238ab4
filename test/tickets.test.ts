import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import type { Urn } from "../core/urn.ts";
import { createTickets } from "../gateway/sse/tickets.ts";
import { manualClock } from "./contracts/fixture.ts";
import { createMemoryTicketStore } from "../backends/memory-ticket-store.ts";
import { createRedisTicketStore } from "../backends/redis-ticket-store.ts";
import { openSqliteDb, type SqliteDb } from "../backends/sqlite-db.ts";
import { createSqliteTicketStore } from "../backends/sqlite-ticket-store.ts";
import type { TicketStore } from "../backends/ticket-store.ts";
import { describeTicketStoreContract } from "./contracts/ticket-store.contract.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";

/** The TicketStore contract over memory, the embedded SQLite database and a real Redis. */

const REDIS_URL = process.env.ROUTING_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
afterAll(async () => {
  await admin.quit().catch(() => admin.disconnect());
});

describeTicketStoreContract(
  "memory",
  async () => {
    const opened: TicketStore[] = [];
    return {
      open: async () => {
        const store = createMemoryTicketStore();
        opened.push(store);
        return store;
      },
      teardown: async () => {
        for (const s of opened) await s.close();
      },
    };
  },
  { shared: false },
);

describeTicketStoreContract(
  "sqlite",
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "routing-tickets-"));
    const dbs: SqliteDb[] = [];
    const opened: TicketStore[] = [];
    return {
      open: async () => {
        const db = openSqliteDb({ dataDir: dir, sync: "normal" });
        dbs.push(db);
        const store = createSqliteTicketStore(db);
        opened.push(store);
        return store;
      },
      teardown: async () => {
        for (const s of opened) await s.close();
        for (const db of dbs) db.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  { shared: true },
);

describeTicketStoreContract(
  "redis",
  async () => {
    const keyPrefix = `routing-test:${randomUUID()}:`;
    const opened: TicketStore[] = [];
    return {
      open: async () => {
        const store = createRedisTicketStore({ redis: REDIS_URL, keyPrefix });
        opened.push(store);
        return store;
      },
      teardown: async () => {
        for (const s of opened) await s.close();
        await deleteRedisKeys(admin, keyPrefix);
      },
    };
  },
  { shared: true },
);

describe.each([
  ["memory", async () => ({ store: createMemoryTicketStore(), done: async () => {} })],
  [
    "redis",
    async () => {
      const keyPrefix = `routing-test:${randomUUID()}:`;
      const store = createRedisTicketStore({ redis: REDIS_URL, keyPrefix });
      return { store, done: async () => (await store.close(), await deleteRedisKeys(admin, keyPrefix)) };
    },
  ],
] as const)("tickets as POST /tickets issues them (%s store, a clock moved by hand)", (_name, make) => {
  it("a ticket names its identity and token expiry, works once, and not after 30 s", async () => {
    const { store, done } = await make();
    const clock = manualClock(Date.now());
    const tickets = createTickets({ store, now: clock.now });
    const principal = { identity: "urn:sm:user:bob" as Urn, expiresAt: clock.now() + 3_600_000 };
    const a = await tickets.issue(principal);
    const b = await tickets.issue(principal);
    expect(a.expiresIn).toBe(30);
    expect(a.ticket).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.ticket).not.toBe(b.ticket);
    clock.advance(29_999);
    expect(await tickets.redeem(a.ticket)).toEqual(principal);
    await expect(tickets.redeem(a.ticket)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
    clock.advance(1);
    await expect(tickets.redeem(b.ticket)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
    await done();
  });
});
