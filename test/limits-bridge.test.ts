import { randomBytes, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { envelope, http, type QueuedMessageBody } from "./helpers/clients.ts";
import { mqttConnect } from "./helpers/mqtt.ts";
import { removeDir, startService, token } from "./helpers/service.ts";

/*
 * The send rate on the external-broker path (issue 14): the broker has PUBACKed the client already,
 * so the bridge refuses an envelope over its sender's rate with an `error` frame RATE_LIMITED on the
 * sender's receive topic (ref = the envelope's messageId, retryAfterMs), and never stores it.
 */
describe("send rate through an external broker (Mosquitto on 127.0.0.1:1883)", () => {
  it("refuses envelopes over the sender's rate with an error frame on its receive topic; the rest are stored", async () => {
    const run = randomBytes(4).toString("hex");
    const prefix = `test-${run}`;
    const svc = await startService({
      ROUTING_MQTT_URL: "mqtt://127.0.0.1:1883",
      ROUTING_MQTT_INGEST_TOPIC: `${prefix}/envelopes/send`,
      ROUTING_MQTT_RECEIVE_TOPIC: `${prefix}/clients/{urn}/receive`,
      ROUTING_MQTT_ACK_TOPIC: `${prefix}/clients/{urn}/ack`,
      ROUTING_MQTT_SHARE_GROUP: `limits-${run}`,
      ROUTING_INSTANCE_ID: `limits-${run}`,
      ROUTING_SEND_RATE_PER_SECOND: "5",
      ROUTING_SEND_BURST: "0",
    });
    try {
      const alice = `urn:sm:user:alice-${randomUUID()}`;
      const bob = `urn:sm:user:bob-${randomUUID()}`;
      const client = await mqttConnect("mqtt://127.0.0.1:1883", { clientId: `t-${run}` });
      await client.client.subscribeAsync(`${prefix}/clients/${alice}/receive`, { qos: 1 });
      const N = 20;
      const ids = Array.from({ length: N }, (_, i) => `rl-${run}-${i}`);
      await Promise.all(
        ids.map((id) => client.client.publishAsync(`${prefix}/envelopes/send/${alice}`, JSON.stringify(envelope(bob, { messageId: id })), { qos: 1 })),
      );
      const bobToken = await token(bob.slice("urn:sm:user:".length));
      // Wait until every envelope is accounted for: stored, or refused with a frame.
      let stored: QueuedMessageBody[] = [];
      for (let i = 0; i < 300; i++) {
        stored = (await http(svc.url, "GET", "/messages?limit=500", { token: bobToken })).body.messages ?? [];
        const refusedNow = client.frames("error").filter((f) => f.code === "RATE_LIMITED").length;
        if (stored.length + refusedNow === N) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const refused = client.frames("error").filter((f) => f.code === "RATE_LIMITED");
      expect(stored.length + refused.length).toBe(N);
      expect(refused.length).toBeGreaterThan(0);
      expect(stored.length).toBeGreaterThan(0);
      for (const f of refused) {
        expect(ids).toContain(f.ref);
        expect(f.retryAfterMs).toBeGreaterThan(0);
      }
      // Nothing refused was stored.
      const storedIds = new Set(stored.map((m) => m.id));
      for (const f of refused) expect(storedIds.has(f.ref as string)).toBe(false);
      await client.end();
    } finally {
      await svc.stop();
      removeDir(svc.dataDir);
    }
  }, 60_000);
});
