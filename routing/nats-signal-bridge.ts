import { connect, ErrorCode, NatsError, type NatsConnection, type Subscription } from "nats";
import type { SignalBridge } from "./signals.ts";
import { encodeSignal } from "./signals.ts";

export type DeliveryStrategy = "broadcast" | "targeted";

export interface NatsSignalOptions {
  readonly servers: string;
  /** Subject namespace, e.g. "routing": subjects `<prefix>.signals` and `<prefix>.delivery.<instance>`. */
  readonly subjectPrefix: string;
  readonly instanceId: string;
  readonly strategy: DeliveryStrategy;
  /** How long a targeted signal waits for the instance's answer. */
  readonly requestTimeoutMs?: number;
}

/**
 * Signals between instances over core NATS (not JetStream: a signal is a hint, the mailbox is the
 * durable copy). Subscriptions live and die with the connection, so a dead instance stops
 * receiving at once.
 * - broadcast: one subject every instance subscribes to; each delivers to its local sessions or
 *   drops. Fire and forget: reach is presence's count.
 * - targeted: each instance subscribes to its own subject; the router sends a request only to the
 *   instances presence names, and each answers how many sessions it reached. An instance that is
 *   gone (NATS "no responders", or no answer in time) counts 0, so stale presence falls back to a
 *   push instead of a silent drop.
 * `receive` delivers locally and returns the sessions reached.
 */
export async function createNatsSignalBridge(opts: NatsSignalOptions, receive: (text: string) => number): Promise<SignalBridge> {
  const nc: NatsConnection = await connect({ servers: opts.servers, name: `routing-signals-${opts.instanceId}` });
  const broadcastSubject = `${opts.subjectPrefix}.signals`;
  const instanceSubject = (id: string) => `${opts.subjectPrefix}.delivery.${id}`;
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const timeout = opts.requestTimeoutMs ?? 1000;

  const sub: Subscription = nc.subscribe(opts.strategy === "broadcast" ? broadcastSubject : instanceSubject(opts.instanceId), {
    callback: (err, msg) => {
      if (err) return;
      let reached = 0;
      try {
        reached = receive(decoder.decode(msg.data));
      } catch {
        // A malformed signal is dropped; the mailbox still holds the message.
      }
      if (msg.reply) msg.respond(encoder.encode(String(reached)));
    },
  });
  await nc.flush();

  async function ask(instanceId: string, data: Uint8Array): Promise<number> {
    try {
      const answer = await nc.request(instanceSubject(instanceId), data, { timeout });
      return Number(decoder.decode(answer.data)) || 0;
    } catch (err) {
      if (err instanceof NatsError && (err.code === ErrorCode.NoResponders || err.code === ErrorCode.Timeout)) return 0;
      throw err;
    }
  }

  return {
    async signal(_recipient, signal, sessions) {
      const data = encoder.encode(encodeSignal(signal));
      if (opts.strategy === "broadcast") {
        nc.publish(broadcastSubject, data);
        return sessions.length;
      }
      const answers = await Promise.all([...new Set(sessions.map((s) => s.instanceId))].map((id) => ask(id, data)));
      return answers.reduce((a, b) => a + b, 0);
    },
    async close() {
      sub.unsubscribe();
      await nc.drain();
    },
  };
}
