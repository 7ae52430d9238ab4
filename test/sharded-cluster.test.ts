import { randomBytes } from "node:crypto";
import net from "node:net";
import { generate, parser as mqttParser, type Packet } from "mqtt-packet";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../shards/directory.ts";
import { rendezvousOwner } from "../shards/rendezvous.ts";
import { connect, envelope, http } from "./helpers/clients.ts";
import { startFirestoreEmulator, startPubSubEmulator, type Emulator } from "./helpers/emulators.ts";
import { MovedClient } from "./helpers/moved-client.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";
import { cleanUpRun } from "./helpers/shared-servers.ts";
import { waitFor } from "./helpers/wait.ts";

/**
 * Sharded delivery (issue 15) on three real node processes: Redis shard leases, the Moleculer NATS
 * transporter, and either NATS bus + signals with Redis store, or Pub/Sub + Firestore (emulators).
 * Short leases, so a kill -9 is recovered from within seconds.
 */
type Profile = "nats-redis" | "pubsub-firestore";
const SHARDS = 16;
// Short, so a kill -9 is recovered from within seconds; not shorter: a node whose event loop stalls past
// two thirds of a lease (a loaded CI machine) lets its own lease lapse and sends its sessions away (4010).
const LEASE_S = 3;
let pubsub: Emulator | undefined;
let firestore: Emulator | undefined;

beforeAll(async () => {
  [pubsub, firestore] = await Promise.all([startPubSubEmulator(), startFirestoreEmulator()]);
}, 120_000);
afterAll(async () => {
  await Promise.all([pubsub?.stop(), firestore?.stop()]);
});

function profileEnv(profile: Profile, run: string): Record<string, string> {
  const common = {
    ROUTING_DELIVERY_STRATEGY: "sharded",
    ROUTING_SHARD_COUNT: String(SHARDS),
    ROUTING_SHARD_LEASE_SECONDS: String(LEASE_S),
    ROUTING_PRESENCE: "redis",
    ROUTING_REDIS_PREFIX: `test-${run}:`,
    ROUTING_NATS_PREFIX: `test_${run}`,
    ROUTING_TRANSPORTER: "nats://127.0.0.1:4222",
    ROUTING_NAMESPACE: `test-${run}`,
    ROUTING_PRESENCE_TTL_SECONDS: "3",
    ROUTING_BUS_ACK_WAIT_MS: "3000",
    ROUTING_BUS_RETRY_BASE_MS: "50",
    ROUTING_SEND_RATE_PER_SECOND: "0",
  };
  if (profile === "nats-redis") return { ...common, ROUTING_BUS: "nats", ROUTING_STORE: "redis", ROUTING_SIGNALS: "nats" };
  return {
    ...common,
    ROUTING_BUS: "pubsub",
    ROUTING_STORE: "firestore",
    ROUTING_DEVICE_STORE: "firestore",
    ROUTING_SIGNALS: "pubsub",
    ROUTING_GCP_PROJECT_ID: `test-${run}`,
    ROUTING_PUBSUB_ENDPOINT: pubsub!.host,
    ROUTING_FIRESTORE_ENDPOINT: firestore!.host,
    ROUTING_PUBSUB_TOPIC: `ingress-${run}`,
    ROUTING_PUBSUB_SIGNAL_TOPIC: `signals-${run}`,
  };
}

/** One URN per shard, found by trying names. */
function urnPerShard(run: string): string[] {
  const urns: string[] = [];
  for (let i = 0; urns.filter(Boolean).length < SHARDS; i++) {
    const urn = `urn:sm:user:u${i}-${run}`;
    const shard = shardOf(urn, SHARDS);
    urns[shard] ??= urn;
  }
  return urns;
}

/**
 * Instance ids for the three nodes, chosen so that C owns shards which, once C is dead, go to B
 * and to A (the kill test follows a user of each). Rendezvous hashing over random ids leaves this
 * to chance otherwise (about one run in 30 gave B none of C's shards).
 */
function nodeIds(run: string): { a: string; b: string; c: string } {
  for (let k = 0; ; k++) {
    const ids = { a: `node-a-${run}-${k}`, b: `node-b-${run}-${k}`, c: `node-c-${run}-${k}` };
    const cShards = Array.from({ length: SHARDS }, (_, s) => s).filter((s) => rendezvousOwner(Object.values(ids), s) === ids.c);
    const heirs = new Set(cShards.map((s) => rendezvousOwner([ids.a, ids.b], s)));
    if (heirs.has(ids.a) && heirs.has(ids.b)) return ids;
  }
}

/** MQTT CONNECT over raw TCP; resolves the CONNACK packet. */
function mqttConnack(
  port: number,
  protocolVersion: 4 | 5,
  password: string,
): Promise<Packet & { returnCode?: number; reasonCode?: number; properties?: { serverReference?: string } }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const parse = mqttParser({ protocolVersion });
    parse.on("packet", (packet) => {
      socket.destroy();
      resolve(packet as never);
    });
    parse.on("error", reject);
    socket.on("data", (d) => parse.parse(d));
    socket.on("error", reject);
    socket.on("connect", () =>
      socket.write(
        generate(
          {
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion,
            clean: true,
            clientId: `c-${randomBytes(3).toString("hex")}`,
            keepalive: 30,
            username: "poke",
            password: Buffer.from(password),
          },
          { protocolVersion },
        ),
      ),
    );
  });
}

for (const profile of ["nats-redis", "pubsub-firestore"] as const) {
  describe(`sharded delivery, three nodes, ${profile} (Redis leases)`, () => {
    const run = randomBytes(4).toString("hex");
    const ids = nodeIds(run);
    const nodes = {} as Record<"a" | "b" | "c", RunningService>;
    const urns = urnPerShard(run);
    const clients: MovedClient[] = [];

    /** Node `from`'s view of every shard's owner (GET /route), undefined entries while ownerless. */
    async function owners(from: RunningService): Promise<Array<string | undefined>> {
      return Promise.all(
        urns.map(async (urn) => {
          const res = await http(from.url, "GET", "/route", { token: await token(urn) });
          return res.status === 200 ? (res.body.owner as string) : undefined;
        }),
      );
    }

    beforeAll(async () => {
      const env = profileEnv(profile, run);
      const [a, b, c] = await Promise.all(
        (["a", "b", "c"] as const).map((n) => startService({ ...env, ROUTING_INSTANCE_ID: ids[n] }, undefined, { readyTimeoutMs: 90_000 })),
      );
      Object.assign(nodes, { a, b, c });
      // Settled: every node sees every shard owned as rendezvous hashing over the three assigns it.
      const expected = urns.map((_, shard) => rendezvousOwner(Object.values(ids), shard));
      for (const node of [a, b, c])
        await waitFor(async () => ((await owners(node)).every((o, i) => o === expected[i]) ? true : undefined), 30_000, "shards settled");
    }, 150_000);
    afterAll(async () => {
      for (const client of clients) client.close();
      for (const node of Object.values(nodes)) {
        await node.stop();
        removeDir(node.dataDir);
      }
      await cleanUpRun(run);
    }, 60_000);

    it("GET /route names the owner on every node; a WebSocket elsewhere is closed 4010 MOVED with its URL; MQTT 3.1.1 CONNACK 3, MQTT 5 CONNACK 0x9C with Server Reference", async () => {
      const shard = urns.findIndex((_, s) => rendezvousOwner(Object.values(ids), s) === ids.c);
      const urn = urns[shard];
      const tok = await token(urn);
      for (const node of Object.values(nodes)) {
        const res = await http(node.url, "GET", "/route", { token: tok });
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ shard, owner: ids.c, url: nodes.c.url });
      }
      expect((await http(nodes.a.url, "GET", "/route")).status).toBe(401);
      const away = await connect(nodes.a.port, { token: tok });
      expect(await away.closed).toEqual({ code: 4010, reason: nodes.c.url });
      const home = await connect(nodes.c.port, { token: tok });
      await waitFor(async () => ((await http(nodes.c.url, "GET", "/status.json")).status === 200 ? true : undefined));
      expect(home.ws.readyState).toBe(home.ws.OPEN);
      home.ws.terminate();
      expect((await mqttConnack(nodes.a.mqttPort!, 4, tok)).returnCode).toBe(3);
      const v5 = await mqttConnack(nodes.a.mqttPort!, 5, tok);
      expect(v5.reasonCode).toBe(0x9c);
      expect(v5.properties?.serverReference).toBe(nodes.c.url);
      // On the owner the MQTT 3.1.1 CONNECT is accepted.
      expect((await mqttConnack(nodes.c.mqttPort!, 4, tok)).returnCode).toBe(0);
    }, 60_000);

    it("kill -9 of a node under a steady stream: every shard owned again within the lease + 1 s; its users follow MOVED to the new owners and get every accepted message, none twice", async () => {
      const survivors = [ids.a, ids.b];
      // Users on C's shards: one whose shard goes to B after C dies (its client, retrying A first, is MOVED there), one to A.
      const cShards = urns.map((_, s) => s).filter((s) => rendezvousOwner(Object.values(ids), s) === ids.c);
      const toB = cShards.find((s) => rendezvousOwner(survivors, s) === ids.b);
      const toA = cShards.find((s) => rendezvousOwner(survivors, s) === ids.a);
      const victims = [toB, toA].filter((s): s is number => s !== undefined).map((s) => urns[s]);
      expect(toB).toBeDefined();
      expect(toA).toBeDefined();
      const nodeUrls = [nodes.a.url, nodes.b.url, nodes.c.url];
      const users = await Promise.all(
        victims.map(async (urn) => {
          const client = new MovedClient(nodes.a.url, nodeUrls, await token(urn));
          clients.push(client);
          client.start();
          return { urn, client, accepted: [] as string[] };
        }),
      );
      // Each client starts at A and is MOVED to C, the owner.
      for (const u of users) await waitFor(() => (u.client.opened.includes(nodes.c.url) ? true : undefined), 15_000, "client on C");
      for (const u of users) expect(u.client.moved[0]).toBe(nodes.c.url);

      const alice = await token(`urn:sm:user:alice-${run}`);
      let stop = false;
      let sent = 0;
      const stream = (async () => {
        for (let i = 0; !stop; i++) {
          const u = users[i % users.length];
          const res = await http(nodes.a.url, "POST", "/send", { token: alice, body: envelope(u.urn, { messageId: `s-${i}` }) });
          if (res.status === 202) u.accepted.push(res.body.messageId as string);
          sent++;
          await new Promise((r) => setTimeout(r, 15));
        }
      })();
      await waitFor(() => (sent >= 40 ? true : undefined));
      const killedAt = Date.now();
      await nodes.c.crash();
      // Every shard owned again (by a live node) within ROUTING_SHARD_LEASE_SECONDS + 1 s, as A sees it.
      await waitFor(
        async () => ((await owners(nodes.a)).every((o) => o !== undefined && survivors.includes(o)) ? true : undefined),
        (LEASE_S + 5) * 1000,
        "every shard owned again",
        50,
      );
      const reownedMs = Date.now() - killedAt;
      console.log(`${profile}: every shard owned again ${reownedMs} ms after kill -9 (lease ${LEASE_S} s)`);
      expect(reownedMs).toBeLessThanOrEqual((LEASE_S + 1) * 1000);
      const sentAtReown = sent;
      await waitFor(() => (sent >= sentAtReown + 40 ? true : undefined));
      stop = true;
      await stream;

      // Every accepted message reaches its user's client (a fetch returned it; none came back after a
      // confirmed ack), which followed MOVED to the new owner. A message
      // routed while the client was between nodes is push due (no session to poke): a real client hears of
      // it by a push notification and pulls, which the probe does every 2 s (and counts). Records the killed
      // node held unacked come back only after the bus's ack deadline (Pub/Sub: the client library's lease).
      for (const u of users) {
        let last = Date.now();
        await waitFor(
          () => {
            if (u.accepted.every((id) => u.client.received.has(id))) return true;
            if (Date.now() - last > 2000) {
              last = Date.now();
              u.client.wake();
            }
            return undefined;
          },
          90_000,
          `${u.urn}: every accepted message`,
        ).catch((err: Error) => {
          const missing = u.accepted.filter((id) => !u.client.received.has(id));
          throw new Error(
            `${err.message}; missing ${missing.length}/${u.accepted.length}: ${missing.slice(0, 10).join(",")}; opened ${u.client.opened.join(" ")}; closes ${u.client.closes.join(" | ")}`,
          );
        });
        expect(u.client.duplicates).toEqual([]);
        expect(u.accepted.length).toBeGreaterThan(10);
      }
      const movedToB = users.find((u) => rendezvousOwner(survivors, shardOf(u.urn, SHARDS)) === ids.b)!;
      const urlName = (u: string) => Object.entries(nodes).find(([, n]) => n.url === u)?.[0] ?? u;
      console.log(
        `${profile}: client moving to B: moved ${movedToB.client.moved.map(urlName).join(",")}; opened ${movedToB.client.opened.map(urlName).join(",")}; closes ${movedToB.client.closes.join(" | ")}`,
      );
      expect(movedToB.client.moved).toContain(nodes.b.url);
      expect(movedToB.client.opened.at(-1)).toBe(nodes.b.url);
      const movedToA = users.find((u) => rendezvousOwner(survivors, shardOf(u.urn, SHARDS)) === ids.a)!;
      expect(movedToA.client.opened.at(-1)).toBe(nodes.a.url);
      console.log(
        `${profile}: ${users.map((u) => `${u.accepted.length} accepted, ${u.client.received.size} received, ${u.client.acked.size} acked, moved ${u.client.moved.length}x, push wake-ups ${u.client.wakes}`).join("; ")}`,
      );
    }, 180_000);
  });
}
