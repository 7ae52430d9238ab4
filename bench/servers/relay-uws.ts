/**
 * The ceiling on the uWS engine: a bare relay, socket to socket through a map. Same native binary
 * as the service's `uws` engine, same uWS settings (no compression, no idle timeout).
 * `bench server ready: port=N` on stdout when listening; SIGTERM exits.
 */
import type * as Uws from "uWebSockets.js";
import { loadUwsNative } from "../../gateway/uws-engine.ts";
import { idFromQuery, parseBody, parseFrame } from "./relay-frame.ts";

interface Peer {
  readonly id: string;
}

const uws = loadUwsNative();
const app = uws.App();
const peers = new Map<string, Uws.WebSocket<Peer>>();

app.ws<Peer>("/connect", {
  compression: uws.DISABLED,
  maxPayloadLength: 1 << 20,
  idleTimeout: 0,
  maxBackpressure: 64 * 1024 * 1024,
  upgrade: (res, req, context) => {
    res.upgrade<Peer>(
      { id: idFromQuery(req.getQuery() ?? "") },
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      context,
    );
  },
  open: (ws) => {
    peers.set(ws.getUserData().id, ws);
  },
  message: (ws, message) => {
    const text = Buffer.from(message).toString("utf8");
    const send = parseFrame(text);
    if (!send) return;
    peers.get(send.recipientId)?.send(text, false);
    ws.send(send.answer, false);
  },
  close: (ws) => {
    const id = ws.getUserData().id;
    if (peers.get(id) === ws) peers.delete(id);
  },
});

app.post("/send", (res) => {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  const chunks: Buffer[] = [];
  res.onData((chunk, isLast) => {
    chunks.push(Buffer.from(new Uint8Array(chunk)));
    if (!isLast || aborted) return;
    const text = Buffer.concat(chunks).toString("utf8");
    const send = parseBody(text);
    if (send) peers.get(send.recipientId)?.send(text, false);
    res.cork(() => {
      res
        .writeStatus(send ? "202 Accepted" : "400 Bad Request")
        .writeHeader("content-type", "application/json")
        .end(send?.answer ?? "{}");
    });
  });
});

app.listen("127.0.0.1", 0, (listen) => {
  if (!listen) throw new Error("relay-uws could not listen");
  console.log(`bench server ready: port=${uws.us_socket_local_port(listen as unknown as Uws.us_socket)}`);
  process.once("SIGTERM", () => {
    uws.us_listen_socket_close(listen);
    process.exit(0);
  });
});
