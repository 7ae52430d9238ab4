/**
 * What a Node team would build instead: Socket.IO 4 with the Redis adapter (so a second node
 * could join), JWT-authenticated connections (HS256, jose, the service's test secret), each
 * socket in its user's room, and `send` emitting the message to the recipient's room. No storage,
 * no durability: the adapter publishes every room broadcast to Redis, which is its scale-out cost.
 * Env: BENCH_JWT_SECRET, BENCH_REDIS_URL, BENCH_REDIS_KEY (unique per run: Redis is shared).
 * `bench server ready: port=N` when listening; SIGTERM exits.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { jwtVerify } from "jose";
import { Server } from "socket.io";

const secret = new TextEncoder().encode(process.env.BENCH_JWT_SECRET ?? "");
const redisUrl = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const pub = new Redis(redisUrl);
const sub = pub.duplicate();

interface Envelope {
  recipientId?: unknown;
  messageId?: unknown;
  [field: string]: unknown;
}

const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(pub, sub, { key: process.env.BENCH_REDIS_KEY ?? "bench-socket.io" }),
  serveClient: false,
  perMessageDeflate: false,
});

/** A bare id becomes a user URN, as the service's verifier does. */
function urnOf(sub: string): string {
  return sub.includes(":") ? sub : `urn:sm:user:${sub}`;
}

io.use((socket, next) => {
  const token = (socket.handshake.auth as { token?: unknown }).token;
  if (typeof token !== "string") return next(new Error("TOKEN_MISSING"));
  jwtVerify(token, secret, { algorithms: ["HS256"] }).then(
    ({ payload }) => {
      socket.data.identity = urnOf(String(payload.sub));
      next();
    },
    () => next(new Error("TOKEN_INVALID")),
  );
});

io.on("connection", (socket) => {
  const identity = socket.data.identity as string;
  void socket.join(identity);
  socket.on("send", (envelope: Envelope, ack?: (answer: object) => void) => {
    if (typeof envelope?.recipientId !== "string") {
      ack?.({ error: "INVALID_ENVELOPE" });
      return;
    }
    const messageId = typeof envelope.messageId === "string" ? envelope.messageId : randomUUID();
    io.to(envelope.recipientId).emit("message", {
      id: messageId,
      envelope: { ...envelope, messageId, senderId: identity },
      queuedAt: new Date().toISOString(),
    });
    ack?.({ messageId });
  });
});

http.listen(0, "127.0.0.1", () => {
  const address = http.address();
  console.log(`bench server ready: port=${typeof address === "object" && address ? address.port : 0}`);
});
process.once("SIGTERM", () => {
  void io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
});
