/**
 * A child process that opens and holds idle WebSocket connections (its own process: each has its
 * own open-file limit, and its own source address, 127.0.x.y, so ephemeral ports never run out).
 * Driven over IPC: {op:"open", count} opens more, {op:"close"} closes all; each answers once done.
 */
import { io, type Socket } from "socket.io-client";
import WebSocket from "ws";
import { token } from "../../test/helpers/service.ts";

export interface HolderSpec {
  readonly protocol: "frames" | "socketio";
  readonly url: string;
  readonly auth: "jwt" | "query";
  readonly localAddress: string;
  readonly idPrefix: string;
  readonly parallel: number;
}

export type HolderCommand = { readonly op: "open"; readonly count: number } | { readonly op: "close" };

export interface HolderAnswer {
  readonly open: number;
  readonly failed: number;
  /** Closed right after the handshake (the uws engine's upgrade bug) and reopened. */
  readonly reopened: number;
  readonly firstError?: string;
}

const spec = JSON.parse(process.env.BENCH_HOLDER ?? "{}") as HolderSpec;
const SETTLE_MS = 250;
type Conn = { close(): void; isOpen(): boolean };
const NEVER_OPENED: Conn = { close() {}, isOpen: () => false };
const conns: Conn[] = [];
let opened = 0;

async function openOne(i: number): Promise<Conn> {
  const urn = `urn:sm:user:${spec.idPrefix}-${i}`;
  const jwt = spec.auth === "jwt" ? await token(urn) : "";
  if (spec.protocol === "socketio") {
    const socket: Socket = io(spec.url, {
      transports: ["websocket"],
      auth: { token: jwt },
      forceNew: true,
      reconnection: false,
      localAddress: spec.localAddress,
    } as object);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("connect_error", reject);
    });
    return { close: () => socket.disconnect(), isOpen: () => socket.connected };
  }
  const query = spec.auth === "query" ? `&id=${encodeURIComponent(urn)}` : "";
  const ws = new WebSocket(`${spec.url}/connect?delivery=push${query}`, {
    headers: jwt ? { authorization: `Bearer ${jwt}` } : {},
    perMessageDeflate: false,
    localAddress: spec.localAddress,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  ws.on("error", () => {});
  return { close: () => ws.close(), isOpen: () => ws.readyState === WebSocket.OPEN };
}

async function openMore(count: number): Promise<HolderAnswer> {
  const start = conns.length;
  const target = start + count;
  let firstError: string | undefined;
  let next = start;
  const lane = async () => {
    while (next < target) {
      const slot = next++;
      try {
        conns[slot] = await openOne(opened++);
      } catch (err) {
        firstError ??= err instanceof Error ? err.message : String(err);
        conns[slot] = NEVER_OPENED;
      }
    }
  };
  await Promise.all(Array.from({ length: spec.parallel }, lane));
  // Replace the ones that died right after their handshake (see frames-channel.ts, stabilize()).
  let reopened = 0;
  for (let pass = 0; pass < 5; pass++) {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const dead: number[] = [];
    for (let i = start; i < target; i++) if (conns[i] !== NEVER_OPENED && !conns[i].isOpen()) dead.push(i);
    if (dead.length === 0) break;
    for (const i of dead) {
      try {
        conns[i] = await openOne(opened++);
        reopened++;
      } catch (err) {
        firstError ??= err instanceof Error ? err.message : String(err);
        conns[i] = NEVER_OPENED;
      }
    }
  }
  const open = conns.filter((c) => c.isOpen()).length;
  return { open, failed: target - open, reopened, firstError };
}

process.on("message", (cmd: HolderCommand) => {
  if (cmd.op === "open") {
    void openMore(cmd.count).then((answer) => process.send?.(answer));
  } else {
    for (const c of conns) c.close();
    conns.length = 0;
    setTimeout(() => process.send?.({ open: 0, failed: 0, reopened: 0 }), 200);
  }
});
process.send?.({ open: 0, failed: 0, reopened: 0 });
