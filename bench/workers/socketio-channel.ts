/** The Socket.IO contender's client: websocket transport only (no long-polling), JWT in the handshake auth. */
import { io, type Socket } from "socket.io-client";
import { openAll, payloadOf, type Channel, type ChannelOptions } from "./channel.ts";
import type { TargetSpec } from "./messages.ts";

interface Delivered {
  readonly envelope?: { readonly messageId?: string };
}

function openSocket(url: string, token: string): Promise<Socket> {
  const socket = io(url, { transports: ["websocket"], auth: { token }, forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

export async function openSocketIoChannel(o: ChannelOptions): Promise<Channel> {
  const { url } = o.target as Extract<TargetSpec, { protocol: "socketio" }>;
  const payload = payloadOf(o.variant.payloadBytes);
  const receivers = await openAll(o.pairs.length, 32, async (p) => {
    const socket = await openSocket(url, o.pairs[p].receiver.token);
    socket.on("message", (message: Delivered) => {
      const id = message.envelope?.messageId;
      if (id !== undefined) o.sink().delivered(p, id);
    });
    return socket;
  });
  const senders = await openAll(o.pairs.length, 32, (p) => openSocket(url, o.pairs[p].sender.token));
  return {
    reopened: 0,
    send(p, messageId) {
      senders[p].emit("send", { recipientId: o.pairs[p].receiver.urn, messageId, encryptedData: payload }, (answer: { error?: string }) => {
        if (answer.error) o.sink().refused(p);
      });
    },
    flush() {},
    async close() {
      for (const s of [...senders, ...receivers]) s.disconnect();
    },
  };
}
