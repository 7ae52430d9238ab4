import { randomBytes } from "node:crypto";
import { PubSub } from "@google-cloud/pubsub";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createMemoryMailbox } from "../backends/memory-mailbox.ts";
import { createMemoryPresenceStore } from "../backends/memory-presence-store.ts";
import { createMemoryPushQueue } from "../backends/memory-push-queue.ts";
import type { PresenceEntry } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { createNatsSignalBridge, type DeliveryStrategy } from "../routing/nats-signal-bridge.ts";
import { createOwnerReceiver } from "../routing/owner-decision.ts";
import { createPubSubSignalBridge } from "../routing/pubsub-signal-bridge.ts";
import { shardFilter, shardSubscriptionName } from "../routing/pubsub-shard-signals.ts";
import { createRouter } from "../routing/router.ts";
import { createSignalReceiver, decodeSignal, encodeSignal, OWNER_DECIDES, type LocalDelivery, type Signal, type SignalBridge } from "../routing/signals.ts";
import type { ShardDirectory } from "../shards/directory.ts";
import { startPubSubEmulator, type Emulator } from "./helpers/emulators.ts";
import { createShardTable } from "./helpers/static-shards.ts";

const SHARDS = 4;
const entry = (instanceId: string): PresenceEntry => ({ sessionId: `s-${instanceId}`, instanceId, protocol: "ws", connectedAt: 0 });
const signalFor = (recipient: Urn, messageId = "m1", isEphemeral = false): Signal => ({
  record: {
    recipientId: recipient,
    messageId,
    isEphemeral,
    priority: 5,
    acceptedAt: 1,
    path: "http",
    envelope: `{"recipientId":"${recipient}","encryptedData":"QUJD"}`,
  },
  queuedAt: 2,
});

/** A node's local sessions: the recipients in `online` take every signal. */
function localNode(online: Set<Urn>) {
  const seen: Signal[] = [];
  const counts = { received: 0, delivered: 0 };
  const local: LocalDelivery = {
    deliver: (recipient, s) => {
      if (!online.has(recipient)) return 0;
      seen.push(s);
      return 1;
    },
  };
  const counters = { received: () => counts.received++, delivered: () => counts.delivered++ };
  return { local, seen, counts, counters };
}

async function until(probe: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("signal wire form carries the shard", () => {
  it("round-trips the shard in the header", () => {
    const s = { ...signalFor("urn:sm:user:bob" as Urn), shard: 3 };
    expect(decodeSignal(encodeSignal(s))).toEqual(s);
  });
});

describe("NATS signals (real NATS on 127.0.0.1:4222)", () => {
  const open: SignalBridge[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });

  async function natsNode(id: string, prefix: string, strategy: DeliveryStrategy, online: Set<Urn>, shards?: ShardDirectory) {
    const node = localNode(online);
    const bridge = await createNatsSignalBridge(
      { servers: "127.0.0.1:4222", subjectPrefix: prefix, instanceId: id, strategy, requestTimeoutMs: 300, shards },
      createSignalReceiver(node.local, node.counters),
    );
    open.push(bridge);
    return { ...node, bridge };
  }

  it("sharded: only the owner of the recipient's shard gets the signal and answers what it reached; ownership moves follow onChange", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}`;
    const table = createShardTable(SHARDS);
    for (let s = 0; s < SHARDS; s++) table.assign(s, s < 2 ? "a" : "b");
    const bob = table.urnIn(3, "bob");
    const carol = table.urnIn(2, "carol");
    const a = await natsNode("a", prefix, "sharded", new Set([bob]), table.directory("a"));
    const b = await natsNode("b", prefix, "sharded", new Set([bob]), table.directory("b"));
    // Bob's shard 3 is b's: b delivers and answers 1; a never sees it (not even as noise).
    expect(await a.bridge.signal(bob, signalFor(bob), [entry("b")])).toBe(1);
    expect(b.seen.map((s) => [s.record.messageId, s.shard])).toEqual([["m1", 3]]);
    // Carol (shard 2, b's) has no session at b: the owner answers 0, so the router records a push.
    expect(await a.bridge.signal(carol, signalFor(carol), [entry("gone")])).toBe(0);
    expect(b.counts).toEqual({ received: 2, delivered: 1 });
    expect(a.counts).toEqual({ received: 0, delivered: 0 });
    // Shard 3 moves to a: a subscribes, b unsubscribes. Settled once a's subscription is in place at
    // the server: an ephemeral probe from b is answered (b's own unsubscribe went out before it).
    table.assign(3, "a");
    for (let i = 0; (await b.bridge.signal(bob, signalFor(bob, `probe-${i}`, true), [entry("a")])) !== 1; i++) {
      if (i >= 200) throw new Error("a never subscribed to shard 3");
      await new Promise((r) => setTimeout(r, 20));
    }
    const probes = a.counts.received;
    expect(await b.bridge.signal(bob, signalFor(bob, "m2"), [entry("a")])).toBe(1);
    expect(a.seen.map((s) => s.record.messageId).filter((id) => !id.startsWith("probe-"))).toEqual(["m2"]);
    expect(b.counts.received).toBe(2);
    // No owner: nobody answers (no responders), 0.
    table.assign(3, undefined);
    expect(await b.bridge.signal(bob, signalFor(bob, "m3"), [entry("a")])).toBe(0);
    expect(a.counts.received).toBe(probes + 1);
  });

  it("broadcast: reach is what the holding instances answer, so a session on a dead instance counts 0", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}`;
    const bob = "urn:sm:user:bob" as Urn;
    const a = await natsNode("a", prefix, "broadcast", new Set());
    const b = await natsNode("b", prefix, "broadcast", new Set([bob]));
    const dave = "urn:sm:user:dave" as Urn;
    expect(await a.bridge.signal(bob, signalFor(bob), [entry("b")])).toBe(1);
    // Presence still names instance c, which died with Dave's session: nobody reaches him.
    expect(await a.bridge.signal(dave, signalFor(dave, "d1"), [entry("c")])).toBe(0);
    expect(await a.bridge.signal(bob, signalFor(bob, "m3"), [entry("b"), entry("c")])).toBe(1);
    expect(b.counts).toEqual({ received: 3, delivered: 2 });
  });

  it("router, broadcast: a message for a user whose node died is push due, not delivered online", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}`;
    const dave = "urn:sm:user:dave" as Urn;
    const a = await natsNode("a", prefix, "broadcast", new Set());
    await natsNode("b", prefix, "broadcast", new Set());
    const presence = createMemoryPresenceStore({ ttlMs: 60_000 });
    // Dave's session was on node c, killed: its presence entry outlives it until the TTL.
    await presence.add(dave, { sessionId: "s1", instanceId: "c", protocol: "ws", connectedAt: Date.now() });
    const pushQueue = createMemoryPushQueue();
    const route = createRouter({ mailbox: createMemoryMailbox({ dedupTtlMs: 60_000 }), presence, signals: a.bridge, pushQueue });
    const outcome = await route({ recipientId: dave, messageId: "d1", isEphemeral: false, priority: 5, acceptedAt: Date.now(), path: "http", envelope: "{}" });
    expect(outcome).toBe("push_due");
    expect((await pushQueue.pending(10)).map((p) => p.messageId)).toEqual(["d1"]);
  });
});

describe("Pub/Sub sharded signals (emulator)", () => {
  let emulator: Emulator | undefined;
  beforeAll(async () => {
    emulator = await startPubSubEmulator();
  }, 120_000);
  afterAll(async () => {
    await emulator?.stop();
  });

  for (const strategy of ["broadcast", "targeted"] as const) {
    it(`${strategy}: reach is what the holding instances answer, so a session on a dead instance counts 0`, async () => {
      const run = randomBytes(4).toString("hex");
      const projectId = `test-${run}`;
      const topic = `signals-${run}`;
      const bob = "urn:sm:user:bob" as Urn;
      const dave = "urn:sm:user:dave" as Urn;
      const nodes = await Promise.all(
        [`a-${run}`, `b-${run}`, `c-${run}`].map(async (id, i) => {
          const node = localNode(new Set(i === 0 ? [] : i === 1 ? [bob] : [dave]));
          const bridge = await createPubSubSignalBridge(
            { projectId, apiEndpoint: emulator!.host, instanceId: id, strategy, broadcastTopic: topic, answerWaitMs: 1500 },
            createSignalReceiver(node.local, node.counters),
          );
          return { ...node, bridge, id };
        }),
      );
      const [a, b, c] = nodes;
      const admin = new PubSub({ projectId, apiEndpoint: emulator!.host, emulatorMode: true });
      try {
        expect(await a.bridge.signal(bob, signalFor(bob, "m1"), [entry(b.id)])).toBe(1);
        expect(await a.bridge.signal(dave, signalFor(dave, "d1"), [entry(c.id)])).toBe(1);
        // Node c "dies": its subscriptions stop consuming, but its topics stay (kill -9 deletes nothing).
        await c.bridge.close();
        await admin
          .topic(`delivery-${c.id}`)
          .create()
          .catch(() => {});
        expect(await a.bridge.signal(dave, signalFor(dave, "d2"), [entry(c.id)])).toBe(0);
        expect(await a.bridge.signal(bob, signalFor(bob, "m2"), [entry(b.id)])).toBe(1);
        expect(b.seen.map((s) => s.record.messageId)).toEqual(["m1", "m2"]);
        expect(c.seen.map((s) => s.record.messageId)).toEqual(["d1"]);
      } finally {
        await Promise.all([a.bridge.close(), b.bridge.close()]);
        for (const name of [topic, `delivery-${c.id}`])
          await admin
            .topic(name)
            .delete()
            .catch(() => {});
        await admin.close();
      }
    }, 60_000);
  }

  it("one filtered subscription per shard, consumed by its owner; the owner decides: delivered, or push due", async () => {
    const run = randomBytes(4).toString("hex");
    const projectId = `test-${run}`;
    const topic = `signals-${run}`;
    const table = createShardTable(SHARDS);
    for (let s = 0; s < SHARDS; s++) table.assign(s, s < 2 ? "a" : "b");
    const bob = table.urnIn(3, "bob");
    const carol = table.urnIn(2, "carol");
    const erin = table.urnIn(0, "erin");
    const nodes = await Promise.all(
      (["a", "b"] as const).map(async (id) => {
        const node = localNode(new Set([bob, erin]));
        const pushQueue = createMemoryPushQueue();
        const bridge = await createPubSubSignalBridge(
          {
            projectId,
            apiEndpoint: emulator!.host,
            instanceId: id,
            strategy: "sharded",
            broadcastTopic: topic,
            sharded: { shards: table.directory(id), receive: createOwnerReceiver(node.local, node.counters, pushQueue) },
          },
          createSignalReceiver(node.local, node.counters),
        );
        return { ...node, bridge, pushQueue };
      }),
    );
    const [a, b] = nodes;
    const admin = new PubSub({ projectId, apiEndpoint: emulator!.host, emulatorMode: true });
    try {
      // The filters, read back from the subscriptions themselves (the emulator does not apply them).
      for (let s = 0; s < SHARDS; s++) {
        const sub = admin.subscription(shardSubscriptionName(topic, s));
        let metadata: { filter?: string | null } | undefined;
        const end = Date.now() + 10_000;
        while (metadata === undefined && Date.now() < end) {
          const [exists] = await sub.exists();
          if (exists) [metadata] = await sub.getMetadata();
          else await new Promise((r) => setTimeout(r, 50));
        }
        expect(metadata?.filter).toBe(shardFilter(s));
      }
      expect(await a.bridge.signal(bob, signalFor(bob, "to-bob"), [entry("b")])).toBe(OWNER_DECIDES);
      expect(await a.bridge.signal(carol, signalFor(carol, "to-carol"), [entry("b")])).toBe(OWNER_DECIDES);
      expect(await b.bridge.signal(erin, signalFor(erin, "to-erin"), [entry("a")])).toBe(OWNER_DECIDES);
      await until(() => b.counts.received === 2 && a.counts.received === 1, "the owners received their shards' signals");
      // Bob (shard 3) delivered by b; Carol (shard 2, no session at b): push due recorded by b; Erin (shard 0) by a.
      expect(b.seen.map((s) => s.record.messageId)).toEqual(["to-bob"]);
      expect((await b.pushQueue.pending(10)).map((p) => p.messageId)).toEqual(["to-carol"]);
      expect(a.seen.map((s) => s.record.messageId)).toEqual(["to-erin"]);
      expect(await a.pushQueue.pending(10)).toEqual([]);
      // Each owner counted only its own shards' signals, though every subscription got every message.
      expect(a.counts).toEqual({ received: 1, delivered: 1 });
      expect(b.counts).toEqual({ received: 2, delivered: 1 });
      // Shard 3 moves to a: the next signal for Bob is a's.
      table.assign(3, "a");
      expect(await b.bridge.signal(bob, signalFor(bob, "to-bob-2"), [entry("a")])).toBe(OWNER_DECIDES);
      await until(() => a.seen.some((s) => s.record.messageId === "to-bob-2"), "the new owner got it");
      expect(b.seen.map((s) => s.record.messageId)).toEqual(["to-bob"]);
    } finally {
      await Promise.all(nodes.map((n) => n.bridge.close()));
      for (let s = 0; s < SHARDS; s++)
        await admin
          .subscription(shardSubscriptionName(topic, s))
          .delete()
          .catch(() => {});
      await admin
        .topic(topic)
        .delete()
        .catch(() => {});
      await admin.close();
    }
  }, 60_000);
});
