import { randomUUID } from "node:crypto";
import net from "node:net";
import fc from "fast-check";
import { generate, parser as mqttParser, type Packet } from "mqtt-packet";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOSE } from "../core/close-codes.ts";
import { ERRORS } from "../core/errors.ts";
import { envelope, http } from "./helpers/clients.ts";
import { mqttConnect } from "./helpers/mqtt.ts";
import { removeDir, startService, token, type RunningService } from "./helpers/service.ts";

/*
 * Property-based fuzzing (fast-check) against the LIVE service (issue 14): envelopes over HTTP,
 * every client frame over WebSocket, and MQTT packets over raw TCP: malformed, truncated,
 * oversized, wrong types, unicode, deep nesting. Every input gets a contract error code or is
 * served; the process never crashes; a probe client keeps being served.
 *
 * FUZZ_RUNS sets the cases per property: CI runs a bounded number (default 60); `npm run fuzz`
 * runs 1,000,000 (hours on a small machine).
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const TIMEOUT_MS = Math.max(120_000, RUNS * 200);
const CODES = new Set(Object.keys(ERRORS));
const CLOSE_CODES = new Set<number>(Object.values(CLOSE));
const MAX_ENVELOPE = 4096;

// ---- arbitraries --------------------------------------------------------------------------------

const b64 = fc.base64String({ maxLength: 64 });
const urn = fc.oneof(fc.constant("urn:sm:user:fuzz-sink"), fc.string({ maxLength: 40 }), fc.constantFrom("urn:sm:user:", "urn::user:x", "urn:sm:user:a:b"));
const wrong = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.object({ maxDepth: 2 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
);

/** Envelope-shaped objects: each field right, missing or of a wrong type; unicode anywhere. */
const envelopeLike = fc.record(
  {
    recipientId: fc.oneof(urn, wrong),
    messageId: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), fc.string({ unit: "grapheme", maxLength: 200 }), wrong),
    senderId: fc.oneof(urn, wrong),
    isEphemeral: fc.oneof(fc.boolean(), wrong),
    priority: fc.oneof(fc.integer({ min: -5, max: 15 }), wrong),
    encryptedData: fc.oneof(b64, fc.string({ unit: "binary", maxLength: 50 }), wrong),
    encryptedSymmetricKey: fc.oneof(b64, wrong),
    signature: fc.oneof(b64, wrong),
    extra: wrong,
  },
  { requiredKeys: [] },
);

const deepNesting = fc
  .tuple(fc.integer({ min: 20, max: 3000 }), fc.constantFrom("[", '{"a":'))
  .map(([n, open]) => open.repeat(n) + "1" + (open === "[" ? "]" : "}").repeat(n));
const truncated = fc.tuple(envelopeLike, fc.nat()).map(([e, cut]) => {
  const s = JSON.stringify(e);
  return s.slice(0, cut % (s.length + 1));
});
const oversized = fc
  .integer({ min: MAX_ENVELOPE, max: 3 * MAX_ENVELOPE })
  .map((n) => JSON.stringify({ recipientId: "urn:sm:user:fuzz-sink", encryptedData: "A".repeat(n) }));

/** Any text a client could send as an envelope body. */
const envelopeText = fc.oneof(
  envelopeLike.map((e) => JSON.stringify(e)),
  fc.json({ maxDepth: 4 }),
  fc.string({ unit: "grapheme", maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  deepNesting,
  truncated,
  oversized,
);

/**
 * Any client frame: each type, right or wrong fields, plus junk. Frames stay under the engine's
 * hard frame cap (envelope limit + 2 KiB): past it uWS drops the socket with 1006 instead of 1009,
 * a known defect issue 19 owns ("80 KB WS frame drops socket with 1006"); envelopes between the
 * limit and the cap are here (ENVELOPE_TOO_LARGE).
 */
const frameOversized = fc
  .integer({ min: MAX_ENVELOPE, max: MAX_ENVELOPE + 1500 })
  .map((n) => JSON.stringify({ recipientId: "urn:sm:user:fuzz-sink", encryptedData: "A".repeat(n) }));
const frameDeepNesting = fc
  .tuple(fc.integer({ min: 20, max: 900 }), fc.constantFrom("[", '{"a":'))
  .map(([n, open]) => open.repeat(n) + "1" + (open === "[" ? "]" : "}").repeat(n));
const frameEnvelopeText = fc.oneof(
  envelopeLike.map((e) => JSON.stringify(e)),
  fc.json({ maxDepth: 4 }),
  fc.string({ unit: "grapheme", maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 300 }),
  frameDeepNesting,
  truncated,
  frameOversized,
);
const frameText = fc.oneof(
  fc
    .record(
      { type: fc.constant("send"), ref: fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), wrong), envelope: fc.oneof(envelopeLike, wrong) },
      { requiredKeys: [] },
    )
    .map((f) => JSON.stringify(f)),
  fc
    .record(
      { type: fc.constant("fetch"), ref: fc.oneof(fc.string({ maxLength: 20 }), wrong), limit: fc.oneof(fc.integer({ min: -10, max: 1000 }), wrong) },
      { requiredKeys: [] },
    )
    .map((f) => JSON.stringify(f)),
  fc
    .record(
      {
        type: fc.constant("ack"),
        ref: fc.oneof(fc.string({ maxLength: 20 }), wrong),
        messageIds: fc.oneof(fc.array(fc.string({ maxLength: 200 }), { maxLength: 600 }), wrong),
      },
      { requiredKeys: [] },
    )
    .map((f) => JSON.stringify(f)),
  fc.record({ type: fc.oneof(fc.string({ maxLength: 10 }), wrong), ref: wrong }, { requiredKeys: [] }).map((f) => JSON.stringify(f)),
  frameOversized.map((e) => `{"type":"send","ref":"big","envelope":${e}}`),
  frameEnvelopeText,
);

// ---- the live service and its probe ----------------------------------------------------------------

let svc: RunningService;
let sender: string;
let senderToken: string;
let probeToken: string;

beforeAll(async () => {
  svc = await startService({ ROUTING_MAX_ENVELOPE_BYTES: String(MAX_ENVELOPE), ROUTING_SEND_RATE_PER_SECOND: "0" });
  sender = `fuzz-${randomUUID()}`;
  senderToken = await token(sender);
  probeToken = await token(`probe-${randomUUID()}`);
}, 60_000);

afterAll(async () => {
  expect(svc.proc.exitCode).toBeNull();
  await svc?.stop();
  if (svc) removeDir(svc.dataDir);
});

/** The process is alive and a well-behaved client is served end to end (send, then find it in the mailbox). */
async function probeServed(): Promise<void> {
  expect(svc.proc.exitCode).toBeNull();
  const recipient = `probe-sink-${randomUUID()}`;
  const sent = await http(svc.url, "POST", "/send", { token: probeToken, body: envelope(`urn:sm:user:${recipient}`) });
  expect(sent.status).toBe(202);
  const rtok = await token(recipient);
  for (let i = 0; i < 200; i++) {
    const box = await http(svc.url, "GET", "/messages", { token: rtok });
    if (box.body.messages?.some((m) => m.id === sent.body.messageId)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the probe's message never reached its mailbox");
}

function expectContractError(body: unknown): void {
  const code = (body as { error?: { code?: unknown } }).error?.code;
  expect(typeof code === "string" && CODES.has(code), `error code ${String(code)}`).toBe(true);
}

// ---- properties -----------------------------------------------------------------------------------

describe("fuzzing the live service", () => {
  it(
    "POST /send: every body is served (202) or answered with a contract error code",
    async () => {
      await fc.assert(
        fc.asyncProperty(envelopeText, async (text) => {
          const res = await http(svc.url, "POST", "/send", { token: senderToken, raw: text });
          if (res.status === 202) {
            expect(typeof res.body.messageId).toBe("string");
            return;
          }
          expect([400, 403, 413, 429, 503]).toContain(res.status);
          expectContractError(res.body);
        }),
        { numRuns: RUNS },
      );
      await probeServed();
    },
    TIMEOUT_MS,
  );

  it(
    "WebSocket: every client frame is answered with a contract frame or closes with a named code",
    async () => {
      const tok = senderToken;
      let socket: WebSocket | undefined;
      let frames: Array<{ type: string; ref?: string; code?: string }> = [];
      let closedWith: number | undefined;
      const open = async (): Promise<WebSocket> => {
        const ws = new WebSocket(`ws://127.0.0.1:${svc.port}/connect`, { headers: { authorization: `Bearer ${tok}` } });
        closedWith = undefined;
        ws.on("message", (data, isBinary) => {
          expect(isBinary).toBe(false);
          frames.push(JSON.parse(data.toString()));
        });
        ws.on("close", (code) => (closedWith = code));
        ws.on("error", () => {});
        await new Promise((resolve, reject) => {
          ws.once("open", resolve);
          ws.once("error", reject);
        });
        return ws;
      };
      let probe = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            frameText.map((t) => ({ text: t, binary: false })),
            fc.uint8Array({ maxLength: 64 }).map((b) => ({ text: Buffer.from(b).toString("latin1"), binary: true })),
          ),
          async ({ text, binary }) => {
            if (socket === undefined || socket.readyState !== WebSocket.OPEN) socket = await open();
            const ws = socket;
            frames = [];
            ws.send(binary ? Buffer.from(text, "latin1") : text, { binary });
            // A fetch after it: its answer arriving means the fuzz frame was handled (frames are read in order).
            const ref = `probe-${probe++}`;
            ws.send(JSON.stringify({ type: "fetch", ref, limit: 1 }));
            await new Promise<void>((resolve) => {
              const check = () => {
                if (frames.some((f) => f.type === "messages" && f.ref === ref) || ws.readyState !== WebSocket.OPEN) {
                  clearInterval(timer);
                  ws.off("close", check);
                  resolve();
                }
              };
              const timer = setInterval(check, 2);
              ws.on("close", check);
            });
            if (ws.readyState !== WebSocket.OPEN) {
              await new Promise((r) => (closedWith === undefined ? ws.once("close", r) : r(undefined)));
              expect(CLOSE_CODES.has(closedWith ?? 0), `close code ${closedWith}`).toBe(true);
              return;
            }
            for (const f of frames) {
              expect(["sent", "messages", "error", "poke", "message"]).toContain(f.type);
              if (f.type === "error") expect(CODES.has(f.code ?? "")).toBe(true);
            }
          },
        ),
        { numRuns: RUNS },
      );
      socket?.terminate();
      await probeServed();
    },
    TIMEOUT_MS,
  );

  it(
    "MQTT: malformed, truncated, oversized and wrong-typed packets never stop the broker serving others",
    async () => {
      const mqttPort = svc.mqttPort as number;
      const probe = await mqttConnect(`mqtt://127.0.0.1:${mqttPort}`, { username: "poke", password: probeToken, protocolVersion: 4 });
      const connect = generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: `fuzz-${randomUUID().slice(0, 8)}`,
        clean: true,
        keepalive: 1,
        username: "poke",
        password: Buffer.from(senderToken),
      } as Packet);
      const publishOf = (payload: Buffer, topic: string): Buffer =>
        generate({ cmd: "publish", topic, payload, qos: 1, messageId: 7, retain: false, dup: false } as Packet);
      const packetCase = fc.oneof(
        // A PUBLISH of any envelope text to the ingest topic: must be PUBACKed (accepted or refused with an error frame).
        envelopeText.map((t) => ({ kind: "publish" as const, bytes: publishOf(Buffer.from(t, "utf8"), "envelopes/send") })),
        // Wrong topics, unicode topics.
        fc
          .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
          // eslint-disable-next-line no-control-regex -- NUL is one of the characters a topic may not carry
          .map((topic) => ({ kind: "any" as const, bytes: publishOf(Buffer.from("{}"), topic.replace(/[#+\u0000]/g, "x") || "x") })),
        // A valid packet cut short, or random bytes.
        fc.tuple(envelopeText, fc.nat()).map(([t, cut]) => {
          const b = publishOf(Buffer.from(t, "utf8"), "envelopes/send");
          return { kind: "any" as const, bytes: b.subarray(0, 1 + (cut % b.length)) };
        }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => ({ kind: "any" as const, bytes: Buffer.from(b) })),
        // Declares a packet far over the limit.
        fc.integer({ min: 200_000, max: 268_435_455 }).map((len) => {
          const head = [0x32];
          let n = len;
          do {
            let byte = n % 128;
            n = Math.floor(n / 128);
            if (n > 0) byte |= 0x80;
            head.push(byte);
          } while (n > 0);
          return { kind: "any" as const, bytes: Buffer.from(head) };
        }),
      );
      let pubacked = 0;
      await fc.assert(
        fc.asyncProperty(packetCase, async ({ kind, bytes }) => {
          const socket = net.connect(mqttPort, "127.0.0.1");
          socket.on("error", () => {});
          const parser = mqttParser({ protocolVersion: 4 });
          const seen: string[] = [];
          socket.on("data", (d) => parser.parse(d));
          const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
          const answered = new Promise<void>((resolve) => {
            parser.on("packet", (p: Packet) => {
              seen.push(p.cmd);
              if (p.cmd === "connack") {
                socket.write(bytes);
                // A PINGREQ after the case: its PINGRESP means the case was handled and the connection lives.
                socket.write(generate({ cmd: "pingreq" } as Packet));
              }
              // A publish to the ingest topic is answered by its PUBACK (accepted, or refused with an
              // error frame); anything else by the PINGRESP sent after it. aedes handles the packets
              // of one read together, so the PINGRESP may come before the PUBACK.
              if (kind === "publish" ? p.cmd === "puback" : p.cmd === "pingresp") resolve();
            });
          });
          socket.write(connect);
          // An incomplete packet leaves the broker waiting for its rest: keepalive 1 s drops it within 1.5 s.
          await Promise.race([answered, closed]);
          // Not answered means the broker dropped the connection (a retryable refusal, a packet it
          // cannot parse, or an incomplete one left past the keepalive): allowed, the probe decides.
          if (kind === "publish" && seen.includes("puback")) pubacked++;
          socket.destroy();
          await closed;
        }),
        { numRuns: RUNS },
      );
      // Publishes of any payload to the ingest topic are answered, not dropped.
      expect(pubacked).toBeGreaterThan(0);
      // The probe MQTT client is still served.
      await probe.client.publishAsync("envelopes/send", JSON.stringify(envelope(`urn:sm:user:mqtt-probe-${randomUUID()}`)), { qos: 1 });
      await probe.end();
      await probeServed();
    },
    TIMEOUT_MS,
  );
});
