import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { PresenceEntry } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import { createNatsSignalBridge, type DeliveryStrategy } from "../routing/nats-signal-bridge.ts";
import { createSignalReceiver, decodeSignal, encodeSignal, type LocalDelivery, type Signal, type SignalBridge } from "../routing/signals.ts";

const bob = "urn:sm:user:bob" as Urn;
const signal: Signal = {
  record: {
    recipientId: bob,
    messageId: "m1",
    isEphemeral: false,
    priority: 5,
    acceptedAt: 1,
    path: "http",
    envelope: '{"recipientId":"urn:sm:user:bob","encryptedData":"QUJD\\n=="}',
  },
  queuedAt: 2,
};
const entry = (instanceId: string): PresenceEntry => ({ sessionId: `s-${instanceId}`, instanceId, protocol: "ws", connectedAt: 0 });

describe("signal wire form", () => {
  it("round-trips the header and keeps the envelope bytes as they were", () => {
    expect(decodeSignal(encodeSignal(signal))).toEqual(signal);
  });
});

describe("NATS signal bridge (real NATS on 127.0.0.1:4222)", () => {
  const open: SignalBridge[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });

  async function instance(id: string, prefix: string, strategy: DeliveryStrategy, online: Set<Urn>) {
    const seen: Signal[] = [];
    const counts = { received: 0, delivered: 0 };
    const local: LocalDelivery = {
      deliver: (recipient, s) => {
        if (!online.has(recipient)) return 0;
        seen.push(s);
        return 1;
      },
    };
    const bridge = await createNatsSignalBridge(
      { servers: "127.0.0.1:4222", subjectPrefix: prefix, instanceId: id, strategy, requestTimeoutMs: 500 },
      createSignalReceiver(local, { received: () => counts.received++, delivered: () => counts.delivered++ }),
    );
    open.push(bridge);
    return { bridge, seen, counts };
  }

  it("targeted: only the named instance receives; a gone instance counts 0", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}`;
    const a = await instance("a", prefix, "targeted", new Set());
    const b = await instance("b", prefix, "targeted", new Set([bob]));
    expect(await a.bridge.signal(bob, signal, [entry("b")])).toBe(1);
    expect(b.seen).toEqual([signal]);
    expect(a.counts.received).toBe(0);
    expect(await a.bridge.signal(bob, signal, [entry("gone")])).toBe(0);
    expect(b.counts).toEqual({ received: 1, delivered: 1 });
  });

  it("broadcast: every instance receives; those without the session count noise", async () => {
    const prefix = `test-${randomBytes(4).toString("hex")}`;
    const nodes = [
      await instance("a", prefix, "broadcast", new Set()),
      await instance("b", prefix, "broadcast", new Set([bob])),
      await instance("c", prefix, "broadcast", new Set()),
    ];
    expect(await nodes[0].bridge.signal(bob, signal, [entry("b")])).toBe(1);
    for (let i = 0; i < 50 && nodes.some((n) => n.counts.received === 0); i++) await new Promise((r) => setTimeout(r, 20));
    expect(nodes.map((n) => n.counts)).toEqual([
      { received: 1, delivered: 0 },
      { received: 1, delivered: 1 },
      { received: 1, delivered: 0 },
    ]);
  });
});
