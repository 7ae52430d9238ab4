import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { shardOf } from "../shards/directory.ts";
import { rendezvousOwner } from "../shards/rendezvous.ts";
import { connect, http } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { token } from "./helpers/service.ts";
import { deleteRedisKeys } from "./helpers/shared-servers.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * MOVED on both gateway engines: in-process sharded nodes on Redis leases (embedded bus and store
 * each, Redis presence). A WebSocket on a node that does not own the caller's shard is closed 4010
 * with the owner's URL; a session whose shard moves to a joining node is closed 4010 too.
 */
const SHARDS = 8;

for (const engine of ["uws", "ws"] as const) {
  describe(`MOVED, ${engine} engine`, () => {
    const run = randomBytes(4).toString("hex");
    const nodes: InProcessNode[] = [];
    const env = (id: string) => ({
      ROUTING_GATEWAY_ENGINE: engine,
      ROUTING_DELIVERY_STRATEGY: "sharded",
      ROUTING_SHARD_COUNT: String(SHARDS),
      // Long enough that a loaded machine never lets a lease lapse here: the join hands shards over explicitly.
      ROUTING_SHARD_LEASE_SECONDS: "10",
      ROUTING_PRESENCE: "redis",
      ROUTING_REDIS_PREFIX: `test-${run}:`,
      ROUTING_INSTANCE_ID: `${id}-${run}`,
    });
    afterAll(async () => {
      for (const n of nodes) await n.stop().catch(() => {});
      const redis = new Redis("redis://127.0.0.1:6379");
      await deleteRedisKeys(redis, `test-${run}:`);
      await redis.quit();
    }, 60_000);

    /** Owner (instance id) of the caller's shard as `node` answers GET /route. */
    const routeOf = async (node: InProcessNode, urn: string) => {
      const res = await http(node.url, "GET", "/route", { token: await token(urn) });
      return res.status === 200 ? (res.body as { shard: number; owner: string; url: string }) : undefined;
    };

    it("a socket on a non-owner is closed 4010 with the owner's URL; one on the owner stays; a shard moving to a joining node takes its sessions along", async () => {
      nodes.push(await startInProcess(env("n1")));
      nodes.push(await startInProcess(env("n2")));
      const [n1, n2] = nodes;
      const urns = Array.from({ length: 200 }, (_, i) => `urn:sm:user:m${i}-${run}`);
      // Both nodes own shards (rendezvous over the two) and agree on every owner.
      const owners = await waitFor(
        async () => {
          const views = await Promise.all([n1, n2].map((n) => Promise.all(urns.map((u) => routeOf(n, u)))));
          const ok = views.every((v) => v.every((r) => r !== undefined)) && views[0].every((r, i) => r!.owner === views[1][i]!.owner);
          const ids = new Set(views[0].map((r) => r?.owner));
          return ok && ids.size === 2 ? views[0].map((r) => r!) : undefined;
        },
        30_000,
        "both nodes own shards",
      );
      const i2 = owners.findIndex((r) => r.owner === `n2-${run}`);
      expect(owners[i2]).toEqual({ shard: shardOf(urns[i2], SHARDS), owner: `n2-${run}`, url: n2.url });
      const tok = await token(urns[i2]);
      const away = await connect(n1.port, { token: tok });
      expect(await away.closed).toEqual({ code: 4010, reason: n2.url });
      const home = await connect(n2.port, { token: tok });

      // A third node joins: the shards rendezvous hashing now gives it leave n1/n2, and their sessions go with them.
      const sockets = await Promise.all(
        urns.slice(0, 40).map(async (urn, i) => {
          const owner = owners[i].owner === `n1-${run}` ? n1 : n2;
          return { urn, socket: await connect(owner.port, { token: await token(urn) }) };
        }),
      );
      nodes.push(await startInProcess(env("n3")));
      const n3 = nodes[2];
      // Settled: n3's view gives every socket's shard the owner rendezvous hashing over the three names.
      const three = [`n1-${run}`, `n2-${run}`, `n3-${run}`];
      const expected = sockets.map((s) => rendezvousOwner(three, shardOf(s.urn, SHARDS)));
      await waitFor(
        async () => {
          const now = await Promise.all(sockets.map((s) => routeOf(n3, s.urn)));
          return now.every((r, i) => r?.owner === expected[i]) ? true : undefined;
        },
        30_000,
        "the joining node took its shards",
      );
      const moved = sockets.filter((_, i) => expected[i] === `n3-${run}`);
      expect(moved.length).toBeGreaterThan(0);
      for (const { socket } of moved) {
        const closed = await socket.closed;
        expect(closed.code).toBe(4010);
        expect(["", n3.url]).toContain(closed.reason);
      }
      // The others stay (checked after the moved ones closed).
      const stayed = sockets.filter((s) => !moved.includes(s));
      for (const { urn, socket } of stayed)
        expect(socket.ws.readyState, `${urn}: ${JSON.stringify(socket.ws.readyState === socket.ws.OPEN ? "" : await socket.closed)}`).toBe(socket.ws.OPEN);
      // The moved user reconnects where GET /route now says and stays.
      const again = await connect(n3.port, { token: await token(moved[0].urn) });
      expect(again.ws.readyState).toBe(again.ws.OPEN);
      for (const s of [home, again, ...stayed.map((x) => x.socket)]) s.ws.terminate();
    }, 90_000);
  });
}
