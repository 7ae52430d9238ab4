/**
 * `npx tsx bench/mqtt.ts`: MQTT-to-MQTT throughput through the service next to Mosquitto alone, in
 * one run on one machine.
 *
 * - mosquitto: a publisher sends N messages (QoS 1) to a subscriber directly through the local
 *   Mosquitto (127.0.0.1:1883, a topic unique to this run).
 * - service: the service as its own process (embedded default: SQLite bus and mailbox, fsync per
 *   group commit); a publisher sends N SecureEnvelopes (QoS 1) to `envelopes/send`, a push-mode
 *   subscriber gets each as a `message` frame on its receive topic (QoS 1). Every message is
 *   durably accepted, routed, stored and delivered.
 *
 * Both: one publisher, one subscriber, the same payload bytes, the same window: at most WINDOW
 * messages published and not yet delivered (Mosquitto drops QoS 1 messages past a subscriber's
 * `max_queued_messages`, 1000 by default, so an unbounded flood would measure its drops). Clock
 * from the first publish to the last delivery. Figures are relative: compare the two within one
 * run, not across machines.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import { removeDir, startService, token } from "../test/helpers/service.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const PAYLOAD_BYTES = Number(process.env.BENCH_PAYLOAD_BYTES ?? 200);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 200);
const MOSQUITTO = process.env.BENCH_MOSQUITTO_URL ?? "mqtt://127.0.0.1:1883";
const TIMEOUT_MS = 120_000;

interface Result {
  readonly name: string;
  readonly messages: number;
  readonly seconds: number;
  readonly msgPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

async function client(url: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * Publishes `payloads` (each carries its index as messageId) and resolves once the subscriber saw
 * all of them; `indexOf` finds the index in what the subscriber received.
 */
async function measure(
  name: string,
  publisher: MqttClient,
  subscriber: MqttClient,
  topic: string,
  payloads: readonly string[],
  indexOf: (received: string) => number | undefined,
): Promise<Result> {
  const sentAt: number[] = [];
  const latencies: number[] = [];
  const acks: Array<Promise<unknown>> = [];
  let received = 0;
  let sent = 0;
  const pump = (): void => {
    while (sent < payloads.length && sent - received < WINDOW) {
      const i = sent++;
      sentAt[i] = performance.now();
      acks.push(publisher.publishAsync(topic, payloads[i], { qos: 1 }));
    }
  };
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: only ${received}/${payloads.length} delivered`)), TIMEOUT_MS);
    subscriber.on("message", (_topic, payload) => {
      const i = indexOf(payload.toString("utf8"));
      if (i === undefined) return;
      latencies.push(performance.now() - sentAt[i]);
      if (++received === payloads.length) {
        clearTimeout(timer);
        resolve();
      }
      pump();
    });
  });
  const started = performance.now();
  pump();
  await done;
  await Promise.all(acks);
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    messages: payloads.length,
    seconds: +seconds.toFixed(2),
    msgPerSec: Math.round(payloads.length / seconds),
    p50Ms: +percentile(latencies, 50).toFixed(1),
    p99Ms: +percentile(latencies, 99).toFixed(1),
  };
}

function envelopes(recipientId: string, run: string): string[] {
  const data = randomBytes(PAYLOAD_BYTES).toString("base64").slice(0, PAYLOAD_BYTES);
  return Array.from({ length: MESSAGES }, (_, i) => JSON.stringify({ recipientId, messageId: `b-${run}-${i}`, encryptedData: data }));
}

const indexIn = (run: string) => {
  const pattern = new RegExp(`"messageId":"b-${run}-(\\d+)"`);
  return (text: string): number | undefined => {
    const m = pattern.exec(text);
    return m ? Number(m[1]) : undefined;
  };
};

async function mosquittoAlone(): Promise<Result> {
  const run = randomBytes(4).toString("hex");
  const topic = `bench-${run}/direct`;
  const subscriber = await client(MOSQUITTO, { clientId: `bench-sub-${run}` });
  const publisher = await client(MOSQUITTO, { clientId: `bench-pub-${run}` });
  try {
    await subscriber.subscribeAsync(topic, { qos: 1 });
    return await measure("mosquitto (direct)", publisher, subscriber, topic, envelopes("urn:sm:user:bench-bob", run), indexIn(run));
  } finally {
    await Promise.all([publisher.endAsync(), subscriber.endAsync()]);
  }
}

async function throughService(): Promise<Result> {
  const svc = await startService({ ROUTING_GATEWAY_ENGINE: "uws" });
  const run = randomBytes(4).toString("hex");
  const bob = `urn:sm:user:bench-bob-${run}`;
  const url = `mqtt://127.0.0.1:${svc.mqttPort}`;
  try {
    const subscriber = await client(url, { username: "push", password: await token(bob) });
    const publisher = await client(url, { username: "poke", password: await token(`urn:sm:user:bench-alice-${run}`) });
    await subscriber.subscribeAsync(`clients/${bob}/receive`, { qos: 1 });
    try {
      return await measure("service (embedded broker, durable)", publisher, subscriber, "envelopes/send", envelopes(bob, run), indexIn(run));
    } finally {
      await Promise.all([publisher.endAsync(), subscriber.endAsync()]);
    }
  } finally {
    await svc.stop();
    removeDir(svc.dataDir);
  }
}

const direct = await mosquittoAlone();
const service = await throughService();
console.log(`MQTT -> MQTT, ${MESSAGES} msgs, QoS 1 both ways, ${PAYLOAD_BYTES} B payload, 1 publisher -> 1 subscriber, window ${WINDOW}`);
console.log("| path | msg/s | vs mosquitto | seconds | p50 ms | p99 ms |\n|---|---|---|---|---|---|");
for (const r of [direct, service]) {
  console.log(`| ${r.name} | ${r.msgPerSec} | ${(r.msgPerSec / direct.msgPerSec).toFixed(2)}x | ${r.seconds} | ${r.p50Ms} | ${r.p99Ms} |`);
}
writeFileSync(
  new URL(`./results/mqtt-${Date.now()}.json`, import.meta.url),
  JSON.stringify({ at: new Date().toISOString(), messages: MESSAGES, payloadBytes: PAYLOAD_BYTES, window: WINDOW, results: [direct, service] }, null, 2),
);
process.exit(0);
