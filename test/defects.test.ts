import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config/load.ts";
import { createMetrics } from "../metrics/registry.ts";
import { connect, envelope, http } from "./helpers/clients.ts";
import { startInProcess, type InProcessNode } from "./helpers/in-process.ts";
import { parseProm, sample } from "./helpers/prom.ts";
import { token } from "./helpers/service.ts";

/*
 * The small defects of issue 19, one test each; every one of them failed before its fix.
 */

async function metrics(url: string) {
  return parseProm(await (await fetch(`${url}/metrics`)).text());
}

for (const engine of ["uws", "ws"] as const) {
  describe(`oversized input (${engine} engine)`, () => {
    let n: InProcessNode;
    beforeAll(async () => {
      n = await startInProcess({ ROUTING_GATEWAY_ENGINE: engine });
    });
    afterAll(async () => {
      await n?.stop();
    });

    it("an 80 KB WebSocket frame closes the socket with 1009, not a bare 1006", async () => {
      const socket = await connect(n.port, { token: await token("urn:sm:user:big-frame") });
      socket.send({ type: "send", ref: "big", envelope: envelope("urn:sm:user:nobody", { encryptedData: "A".repeat(80 * 1024) }) });
      expect((await socket.closed).code).toBe(1009);
    });

    it("WebSocket frames refused as bad JSON or too large, and HTTP bodies over the cap, are counted in routing_envelopes_rejected_total", async () => {
      const before = await metrics(n.url);
      const t = await token("urn:sm:user:rejected-sender");
      const socket = await connect(n.port, { token: t });
      socket.send('{"type":"send","ref":"j1","envelope":{');
      expect(await socket.nextOfType("error")).toMatchObject({ code: "INVALID_JSON" });
      // Past the envelope limit, under the engine's cap: an error frame.
      socket.send({ type: "send", ref: "l1", envelope: envelope("urn:sm:user:nobody", { encryptedData: "A".repeat(66_000) }) });
      expect(await socket.nextOfType("error")).toMatchObject({ code: "ENVELOPE_TOO_LARGE", ref: "l1" });
      // A send frame that is not one: refused as INVALID_FRAME (its envelope never reached the ingress).
      socket.send({ type: "send", envelope: envelope("urn:sm:user:nobody") });
      expect(await socket.nextOfType("error")).toMatchObject({ code: "INVALID_FRAME" });
      // Past the engine's cap: the socket is closed.
      const big = await connect(n.port, { token: t });
      big.send({ type: "send", ref: "b1", envelope: envelope("urn:sm:user:nobody", { encryptedData: "A".repeat(80 * 1024) }) });
      expect((await big.closed).code).toBe(1009);
      // An HTTP body past the engine's cap: 413 from the engine itself.
      const res = await http(n.url, "POST", "/send", { token: t, raw: JSON.stringify(envelope("urn:sm:user:nobody", { encryptedData: "A".repeat(100_000) })) });
      expect(res.status).toBe(413);
      await socket.close();

      const after = await metrics(n.url);
      const delta = (labels: Record<string, string>) =>
        sample(after, "routing_envelopes_rejected_total", labels) - sample(before, "routing_envelopes_rejected_total", labels);
      expect(delta({ path: "ws", code: "INVALID_JSON" })).toBe(1);
      expect(delta({ path: "ws", code: "ENVELOPE_TOO_LARGE" })).toBe(2);
      expect(delta({ path: "ws", code: "INVALID_FRAME" })).toBe(1);
      expect(delta({ path: "http", code: "ENVELOPE_TOO_LARGE" })).toBe(1);
    });

    it("the AsyncAPI document advertises the ports this node bound, not the defaults", async () => {
      const mqttPort = n.node.mqttPort!;
      expect(mqttPort).toBeGreaterThan(0);
      expect(mqttPort).not.toBe(1883);
      const doc = (await (await fetch(`${n.url}/asyncapi.json`)).json()) as { servers: Record<string, { host: string }> };
      expect(doc.servers.mqtt!.host).toBe(`localhost:${mqttPort}`);
      expect(doc.servers.websocket!.host).toBe(`localhost:${n.port}`);
    });
  });
}

describe("process metrics", () => {
  it("are named routing_process_* and routing_nodejs_*, never routing_process_process_*", async () => {
    const names = (await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toContain("routing_process_cpu_user_seconds_total");
    expect(names).toContain("routing_process_resident_memory_bytes");
    expect(names).toContain("routing_nodejs_eventloop_lag_seconds");
    expect(names.filter((n) => n.includes("process_process") || n.includes("process_nodejs"))).toEqual([]);
  });
});

describe("an invalid enum setting", () => {
  it("names the allowed values", () => {
    expect(() => loadConfig({ ROUTING_GATEWAY_ENGINE: "uwebsockets", ROUTING_BUS: "kafka" })).toThrow(
      /ROUTING_GATEWAY_ENGINE="uwebsockets": must be one of `uws`, `ws`[\s\S]*ROUTING_BUS="kafka": must be one of `embedded`, `nats`, `pubsub`/,
    );
    expect(() => loadConfig({ ROUTING_LOG_LEVEL: "loud" })).toThrow(
      'ROUTING_LOG_LEVEL="loud": must be one of `fatal`, `error`, `warn`, `info`, `debug`, `trace`',
    );
  });
});
