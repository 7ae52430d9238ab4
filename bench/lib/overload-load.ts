/**
 * The overload generator (issue 14), shared by `bench/scenarios/overload.ts` and the kill -9 test:
 * WebSocket senders (one identity each), plus an HTTP and an MQTT QoS 1 share, against one running
 * service. It counts what each path's answer promised: a `sent` frame, a 202, a PUBACK. Those ids
 * are what must later be found in the mailboxes (nothing accepted may be lost).
 */
import mqtt, { type MqttClient } from "mqtt";
import WebSocket from "ws";

export interface LoadTarget {
  readonly httpUrl: string;
  readonly wsUrl: string;
  /** Embedded broker TCP URL; absent: no MQTT share. */
  readonly mqttUrl?: string;
}

export interface Senders {
  readonly sockets: readonly WebSocket[];
  readonly httpTokens: readonly string[];
  readonly mqttClients: readonly MqttClient[];
  readonly recipients: readonly string[];
  close(): Promise<void>;
}

/** Opens one WebSocket per sender token (and MQTT clients for the MQTT share). */
export async function openSenders(
  target: LoadTarget,
  senderTokens: readonly string[],
  mqttTokens: readonly string[],
  recipients: readonly string[],
): Promise<Senders> {
  const sockets = await Promise.all(
    senderTokens.map(
      (tok) =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(`${target.wsUrl}/connect`, { headers: { authorization: `Bearer ${tok}` }, perMessageDeflate: false });
          ws.once("open", () => resolve(ws));
          ws.once("error", reject);
          // The service may be killed under load (the crash test): a dead socket is no failure here.
          ws.on("error", () => {});
        }),
    ),
  );
  const mqttClients =
    target.mqttUrl === undefined
      ? []
      : await Promise.all(
          mqttTokens.map(
            (tok) =>
              new Promise<MqttClient>((resolve, reject) => {
                const c = mqtt.connect(target.mqttUrl as string, { username: "poke", password: tok, protocolVersion: 4, reconnectPeriod: 0 });
                c.once("connect", () => resolve(c));
                c.once("error", reject);
              }),
          ),
        );
  for (const c of mqttClients) c.on("error", () => {});
  return {
    sockets,
    httpTokens: senderTokens,
    mqttClients,
    recipients,
    async close() {
      for (const ws of sockets) ws.terminate();
      await Promise.all(mqttClients.map((c) => c.endAsync(true).catch(() => undefined)));
    },
  };
}

const PAYLOAD = Buffer.alloc(150, 7).toString("base64");

function envelopeJson(recipient: string, messageId: string): string {
  return `{"recipientId":"${recipient}","messageId":"${messageId}","encryptedData":"${PAYLOAD}"}`;
}

export interface OfferResult {
  /** Sends actually put on the wire, per path. */
  readonly offered: { ws: number; http: number; mqtt: number };
  /** What the generator could not offer (a socket's buffer full, the HTTP/MQTT in-flight cap). */
  readonly notOffered: number;
  /** Ids whose answer promised durability: `sent`, 202, PUBACK. */
  readonly accepted: string[];
  /** Refusals by code (HTTP status for HTTP ones without a code). */
  readonly refused: Record<string, number>;
  /** Send -> answer, ms, of accepted sends (all paths, then per path). */
  readonly latencies: Float64Array;
  readonly latenciesByPath: { readonly ws: Float64Array; readonly http: Float64Array; readonly mqtt: Float64Array };
  /** Sends with no answer yet when the offer ended (the process died, or still in flight). */
  readonly unanswered: number;
  readonly ms: number;
}

export interface OfferOptions {
  /** Total sends per second offered (open loop); Infinity with `window` for a closed loop. */
  readonly perSecond: number;
  readonly durationMs: number;
  /** Closed loop: sends in flight per WebSocket. */
  readonly window?: number;
  /** Shares of the HTTP and MQTT paths (the rest is WebSocket). */
  readonly httpShare?: number;
  readonly mqttShare?: number;
  /** Resolves early (e.g. the process was killed): the offer stops at once. */
  readonly stop?: Promise<void>;
  readonly tag: string;
}

/** Past this many bytes unsent on a socket the generator holds back (TCP pushes back: the service reads no faster). */
const MAX_SOCKET_BUFFER = 256 * 1024;
const MAX_HTTP_IN_FLIGHT = 256;
const MAX_MQTT_IN_FLIGHT = 64;

/**
 * Offers load and tallies the answers. Open loop: sends are scheduled at `perSecond` whatever the
 * service answers (a refusal is not retried: a client would, after Retry-After; here it shows the
 * refused share). Closed loop (`window`): each socket keeps `window` sends outstanding.
 */
export async function offer(senders: Senders, target: LoadTarget, options: OfferOptions): Promise<OfferResult> {
  const sentAt = new Map<string, number>();
  const accepted: string[] = [];
  const refused: Record<string, number> = {};
  const latencies: number[] = [];
  const byPath = { ws: [] as number[], http: [] as number[], mqtt: [] as number[] };
  const took = (path: "ws" | "http" | "mqtt", ms: number) => {
    latencies.push(ms);
    byPath[path].push(ms);
  };
  const offered = { ws: 0, http: 0, mqtt: 0 };
  let notOffered = 0;
  let seq = 0;
  let httpInFlight = 0;
  const mqttInFlight = new Map<MqttClient, number>();
  const outstanding = new Map<WebSocket, number>();
  let stopped = false;
  void options.stop?.then(() => (stopped = true));
  const refuse = (code: string) => (refused[code] = (refused[code] ?? 0) + 1);
  const nextId = () => `${options.tag}.${(seq++).toString(36)}`;
  const recipientOf = (n: number) => senders.recipients[n % senders.recipients.length];

  const onFrame = (ws: WebSocket) => (data: WebSocket.RawData) => {
    const text = data.toString();
    const frame = JSON.parse(text) as { type: string; ref?: string; messageId?: string; code?: string };
    if (frame.ref === undefined) return;
    const at = sentAt.get(frame.ref);
    if (at === undefined) return;
    sentAt.delete(frame.ref);
    outstanding.set(ws, (outstanding.get(ws) ?? 1) - 1);
    if (frame.type === "sent") {
      accepted.push(frame.ref);
      took("ws", performance.now() - at);
    } else if (frame.type === "error") refuse(frame.code ?? "error");
    if (options.window !== undefined && !stopped && performance.now() < end) sendWs(ws);
  };
  const listeners = senders.sockets.map((ws) => {
    const l = onFrame(ws);
    ws.on("message", l);
    return [ws, l] as const;
  });

  function sendWs(ws: WebSocket): boolean {
    if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_SOCKET_BUFFER) return false;
    const id = nextId();
    sentAt.set(id, performance.now());
    outstanding.set(ws, (outstanding.get(ws) ?? 0) + 1);
    ws.send(`{"type":"send","ref":"${id}","envelope":${envelopeJson(recipientOf(seq), id)}}`);
    offered.ws++;
    return true;
  }

  function sendHttp(): boolean {
    if (httpInFlight >= MAX_HTTP_IN_FLIGHT) return false;
    const id = nextId();
    const tok = senders.httpTokens[seq % senders.httpTokens.length];
    const at = performance.now();
    httpInFlight++;
    offered.http++;
    fetch(`${target.httpUrl}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${tok}`, "content-type": "application/json" },
      body: envelopeJson(recipientOf(seq), id),
    })
      .then(async (res) => {
        const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
        if (res.status === 202) {
          accepted.push(id);
          took("http", performance.now() - at);
        } else refuse(body.error?.code ?? `HTTP ${res.status}`);
      })
      .catch((err: unknown) => {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        refuse(`HTTP connection error (${cause?.code ?? cause?.message ?? "unknown"})`);
      })
      .finally(() => httpInFlight--);
    return true;
  }

  function sendMqtt(): boolean {
    const client = senders.mqttClients[seq % Math.max(1, senders.mqttClients.length)];
    if (client === undefined || !client.connected || (mqttInFlight.get(client) ?? 0) >= MAX_MQTT_IN_FLIGHT) return false;
    const id = nextId();
    const at = performance.now();
    mqttInFlight.set(client, (mqttInFlight.get(client) ?? 0) + 1);
    offered.mqtt++;
    client
      .publishAsync("envelopes/send", envelopeJson(recipientOf(seq), id), { qos: 1 })
      .then(() => {
        accepted.push(id);
        took("mqtt", performance.now() - at);
      })
      .catch(() => refuse("MQTT connection lost"))
      .finally(() => mqttInFlight.set(client, (mqttInFlight.get(client) ?? 1) - 1));
    return true;
  }

  const httpShare = options.httpShare ?? 0;
  const mqttShare = senders.mqttClients.length > 0 ? (options.mqttShare ?? 0) : 0;
  const began = performance.now();
  const end = began + options.durationMs;

  if (options.window !== undefined) {
    for (const ws of senders.sockets) for (let i = 0; i < options.window; i++) sendWs(ws);
    await Promise.race([new Promise((r) => setTimeout(r, options.durationMs)), options.stop]);
  } else {
    let issued = 0;
    let rr = 0;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        if (stopped || now >= end) {
          clearInterval(tick);
          resolve();
          return;
        }
        const due = Math.floor(((now - began) / 1000) * options.perSecond) - issued;
        for (let i = 0; i < due; i++) {
          issued++;
          const pick = (issued * 0.6180339887) % 1;
          let ok: boolean;
          if (pick < httpShare) ok = sendHttp();
          else if (pick < httpShare + mqttShare) ok = sendMqtt();
          else ok = sendWs(senders.sockets[rr++ % senders.sockets.length]);
          if (!ok) notOffered++;
        }
      }, 2);
    });
  }
  stopped = true;
  // Let answers to what is on the wire arrive (not for a killed process: there are none).
  const settleBy = performance.now() + 30_000;
  while ((sentAt.size > 0 || httpInFlight > 0 || [...mqttInFlight.values()].some((n) => n > 0)) && performance.now() < settleBy) {
    const gone = await Promise.race([new Promise((r) => setTimeout(() => r(false), 50)), options.stop?.then(() => true) ?? new Promise(() => {})]);
    if (gone && options.stop !== undefined) {
      // Killed: give answers already in the kernel a moment, then stop waiting.
      await new Promise((r) => setTimeout(r, 200));
      break;
    }
  }
  for (const [ws, l] of listeners) ws.off("message", l);
  return {
    offered,
    notOffered,
    accepted: [...accepted],
    // A copy: answers that arrive later (or requests failing when the service stops) must not change the figures.
    refused: { ...refused },
    latencies: Float64Array.from(latencies),
    latenciesByPath: { ws: Float64Array.from(byPath.ws), http: Float64Array.from(byPath.http), mqtt: Float64Array.from(byPath.mqtt) },
    unanswered: sentAt.size + httpInFlight,
    ms: performance.now() - began,
  };
}

/**
 * Pulls and acks every recipient's mailbox until `expected` are all found or nothing new arrived
 * for `quietMs` (routing may still be draining the bus when the load stops). Resolves what was found.
 */
export async function collectMailboxes(
  httpUrl: string,
  recipientTokens: readonly string[],
  expected: ReadonlySet<string>,
  quietMs = 30_000,
): Promise<Set<string>> {
  const found = new Set<string>();
  let lastNew = performance.now();
  let missing = [...expected].filter((id) => !found.has(id)).length;
  while (missing > 0 && performance.now() - lastNew < quietMs) {
    let gotAny = false;
    for (const tok of recipientTokens) {
      for (;;) {
        const res = await fetch(`${httpUrl}/messages?limit=500`, { headers: { authorization: `Bearer ${tok}` } });
        if (res.status !== 200) break;
        const body = (await res.json()) as { messages: Array<{ id: string }> };
        if (body.messages.length === 0) break;
        const ids = body.messages.map((m) => m.id);
        for (const id of ids) {
          if (!found.has(id)) gotAny = true;
          found.add(id);
        }
        await fetch(`${httpUrl}/messages/ack`, {
          method: "POST",
          headers: { authorization: `Bearer ${tok}`, "content-type": "application/json" },
          body: JSON.stringify({ messageIds: ids }),
        });
        if (ids.length < 500) break;
      }
    }
    if (gotAny) lastNew = performance.now();
    missing = 0;
    for (const id of expected) if (!found.has(id)) missing++;
    if (missing > 0 && !gotAny) await new Promise((r) => setTimeout(r, 250));
  }
  return found;
}
