/**
 * The ceiling on the `ws` engine: a bare relay, socket to socket through a map, on Node http + ws
 * (the service's `ws` engine's stack). `bench server ready: port=N` when listening; SIGTERM exits.
 */
import { createServer } from "node:http";
import { WebSocketServer, type WebSocket } from "ws";
import { idFromQuery, parseBody, parseFrame } from "./relay-frame.ts";

const peers = new Map<string, WebSocket>();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });

const server = createServer((req, res) => {
  if (req.method !== "POST" || !req.url?.startsWith("/send")) {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const text = Buffer.concat(chunks).toString("utf8");
    const send = parseBody(text);
    if (send) peers.get(send.recipientId)?.send(text);
    res.writeHead(send ? 202 : 400, { "content-type": "application/json" }).end(send?.answer ?? "{}");
  });
});

server.on("upgrade", (req, socket, head) => {
  const url = req.url ?? "";
  const id = idFromQuery(url.slice(url.indexOf("?") + 1));
  wss.handleUpgrade(req, socket, head, (ws) => {
    peers.set(id, ws);
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      const send = parseFrame(text);
      if (!send) return;
      peers.get(send.recipientId)?.send(text);
      ws.send(send.answer);
    });
    ws.on("close", () => {
      if (peers.get(id) === ws) peers.delete(id);
    });
  });
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`bench server ready: port=${typeof address === "object" && address ? address.port : 0}`);
});
process.once("SIGTERM", () => process.exit(0));
