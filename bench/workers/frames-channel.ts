/**
 * The service's wire protocol (and the relays', which speak the same frames without auth):
 * receivers on /connect in push or poke mode, senders with `send` frames or POST /send.
 * Frames are built from templates and read with Buffer.indexOf, so the generator spends its CPU
 * on sockets, not on JSON.
 */
import { Pool } from "undici";
import WebSocket from "ws";
import { messageIdIn, openAll, payloadOf, type Channel, type ChannelOptions } from "./channel.ts";
import type { Party, TargetSpec } from "./messages.ts";

type FramesTarget = Extract<TargetSpec, { protocol: "frames" }>;

/** Acks are batched like a real client would: at most this many ids, or every ACK_FLUSH_MS. */
const ACK_BATCH = 200;
const ACK_FLUSH_MS = 20;
const FETCH_LIMIT = 500;
const QUEUED_ID_KEY = Buffer.from('"id":"');

function socketUrl(target: FramesTarget, party: Party, mode: string): string {
  const id = target.auth === "query" ? `&id=${encodeURIComponent(party.urn)}` : "";
  return `${target.wsUrl}/connect?delivery=${mode}${id}`;
}

/** Set once the harness closes its sockets; any close before that is reported. */
let closing = false;
/** How long a fresh socket must stay open to count as established (see `stabilize`). */
const SETTLE_MS = 250;

/**
 * Reopens sockets that closed right after their handshake, until all stay open for SETTLE_MS;
 * resolves how many were reopened. The uws engine's asynchronous upgrade (`res.cork(() =>
 * res.upgrade())` after the token check) hits a uWebSockets bug: cork() can misread the upgraded
 * socket's memory as an HTTP response flagged "Connection: close" and shut it down just after
 * the 101 (uNetworking/uWebSockets PR #1929). A client reconnects; so does the harness, and
 * counts it, so the figure is reported rather than silently turned into lost messages.
 */
async function stabilize(sockets: WebSocket[], reopen: (i: number) => Promise<WebSocket>): Promise<number> {
  let reopened = 0;
  for (let pass = 0; pass < 10; pass++) {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const dead = sockets.flatMap((ws, i) => (ws.readyState === WebSocket.OPEN ? [] : [i]));
    if (dead.length === 0) return reopened;
    reopened += dead.length;
    for (const i of dead) sockets[i] = await reopen(i);
  }
  throw new Error("sockets keep closing right after their handshake");
}

function openSocket(target: FramesTarget, party: Party, mode: string): Promise<WebSocket> {
  const headers: Record<string, string> = target.auth === "jwt" ? { authorization: `Bearer ${party.token}` } : {};
  const ws = new WebSocket(socketUrl(target, party, mode), { headers, perMessageDeflate: false, skipUTF8Validation: true });
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.on("error", (err) => console.error(`bench: ${party.urn} socket error: ${err.message}`));
      const openedAt = performance.now();
      ws.once("close", (code, reason) => {
        // Closes within the settle time are the handshake bug above, handled by stabilize().
        if (!closing && performance.now() - openedAt > SETTLE_MS) console.error(`bench: ${party.urn} closed mid-run: ${code} ${reason.toString()}`);
      });
      resolve(ws);
    });
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

function typeOf(data: Buffer): string {
  // '{"type":"' is 9 bytes; the longest type we tell apart is 8.
  const head = data.toString("latin1", 9, 17);
  if (head.startsWith("poke")) return "poke";
  if (head.startsWith("messages")) return "messages";
  if (head.startsWith("sent")) return "sent";
  if (head.startsWith("error")) return "error";
  return "other";
}

export async function openFramesChannel(o: ChannelOptions): Promise<Channel> {
  const target = o.target as FramesTarget;
  const { mode, payloadBytes, ingress } = o.variant;
  const payload = payloadOf(payloadBytes);
  const acks = target.auth === "jwt";
  const pending: string[][] = o.pairs.map(() => []);
  const fetching: boolean[] = o.pairs.map(() => false);
  const dirty: boolean[] = o.pairs.map(() => false);

  let reopened = 0;
  const openReceiver = async (p: number): Promise<WebSocket> => {
    const ws = await openSocket(target, o.pairs[p].receiver, mode);
    const fetch = () => {
      fetching[p] = true;
      dirty[p] = false;
      ws.send(`{"type":"fetch","ref":"f","limit":${FETCH_LIMIT}}`);
    };
    ws.on("message", (data: Buffer) => {
      const type = typeOf(data);
      if (type === "poke") {
        if (fetching[p]) dirty[p] = true;
        else fetch();
        return;
      }
      if (type === "messages") {
        const ids: string[] = [];
        for (let at = data.indexOf(QUEUED_ID_KEY); at >= 0; at = data.indexOf(QUEUED_ID_KEY, at + 1)) {
          const start = at + QUEUED_ID_KEY.length;
          ids.push(data.toString("latin1", start, data.indexOf(0x22, start)));
        }
        for (const id of ids) o.sink().delivered(p, id);
        if (ids.length > 0) ws.send(JSON.stringify({ type: "ack", messageIds: ids }));
        if (dirty[p] || ids.length === FETCH_LIMIT) fetch();
        else fetching[p] = false;
        return;
      }
      const id = messageIdIn(data);
      if (id === undefined) return;
      o.sink().delivered(p, id);
      if (!acks) return;
      pending[p].push(id);
      if (pending[p].length >= ACK_BATCH) flushAcks(p);
    });
    return ws;
  };
  const receivers = await openAll(o.pairs.length, 32, openReceiver);
  reopened += await stabilize(receivers, openReceiver);

  const flushAcks = (p: number) => {
    if (pending[p].length === 0) return;
    receivers[p].send(JSON.stringify({ type: "ack", messageIds: pending[p] }));
    pending[p] = [];
  };
  const ackTimer = setInterval(() => pending.forEach((_, p) => flushAcks(p)), ACK_FLUSH_MS);

  const heads = o.pairs.map((pair) => `{"recipientId":"${pair.receiver.urn}","messageId":"`);
  const tail = `","encryptedData":"${payload}"}`;
  let send: (pair: number, id: string) => void;
  let closeSenders: () => Promise<void>;

  if (ingress === "http") {
    const pool = new Pool(target.httpUrl, { connections: o.httpConnections, pipelining: 1 });
    const headers = o.pairs.map((pair) => ({
      "content-type": "application/json",
      ...(target.auth === "jwt" ? { authorization: `Bearer ${pair.sender.token}` } : {}),
    }));
    send = (p, id) => {
      pool.request({ path: "/send", method: "POST", headers: headers[p], body: heads[p] + id + tail }).then(
        (res) => {
          void res.body.dump();
          if (res.statusCode !== 202) o.sink().refused(p);
        },
        () => o.sink().refused(p),
      );
    };
    closeSenders = () => pool.close();
  } else {
    const openSender = async (p: number): Promise<WebSocket> => {
      const ws = await openSocket(target, o.pairs[p].sender, "poke");
      ws.on("message", (data: Buffer) => {
        if (typeOf(data) === "error") o.sink().refused(p);
      });
      return ws;
    };
    const senders = await openAll(o.pairs.length, 32, openSender);
    reopened += await stabilize(senders, openSender);
    const frameHead = heads.map((h) => `{"type":"send","ref":"s","envelope":${h}`);
    send = (p, id) => senders[p].send(frameHead[p] + id + tail + "}");
    closeSenders = () => closeAll(senders);
  }

  return {
    reopened,
    send,
    flush: () => pending.forEach((_, p) => flushAcks(p)),
    async close() {
      closing = true;
      clearInterval(ackTimer);
      await closeSenders();
      await closeAll(receivers);
    },
  };
}

function closeAll(sockets: readonly WebSocket[]): Promise<void> {
  return Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once("close", () => resolve());
          ws.close();
          setTimeout(() => {
            ws.terminate();
            resolve();
          }, 2000).unref();
        }),
    ),
  ).then(() => undefined);
}
