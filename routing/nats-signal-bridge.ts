import { connect, ErrorCode, NatsError, RequestStrategy, type NatsConnection, type Subscription } from "nats";
import type { ShardDirectory } from "../shards/directory.ts";
import type { SignalBridge } from "./signals.ts";
import { encodeSignal, signalAsk } from "./signals.ts";
import { followOwnedShards } from "./owned-shards.ts";

export type DeliveryStrategy = "broadcast" | "targeted" | "sharded";

export interface NatsSignalOptions {
  readonly servers: string;
  /** Subject namespace, e.g. "routing": subjects `<prefix>.signals`, `<prefix>.delivery.<instance>`, `<prefix>.signals.shard.<n>`. */
  readonly subjectPrefix: string;
  readonly instanceId: string;
  readonly strategy: DeliveryStrategy;
  /** How long a signal waits for the answers of the instances (or the owner) it went to. */
  readonly requestTimeoutMs?: number;
  /** `sharded`: who owns which shard (the coordinator). */
  readonly shards?: ShardDirectory;
}

/**
 * Signals between instances over core NATS (not JetStream: a signal is a hint, the mailbox is the
 * durable copy). Subscriptions live and die with the connection, so a dead instance stops
 * receiving at once. In every strategy the reach the router acts on is what the instances holding
 * the sessions answered, never presence's word: a session on an instance that died counts 0, so
 * its message falls back to a push instead of counting as delivered.
 * - broadcast: one subject every instance subscribes to; each delivers to its local sessions or
 *   drops. The signal names the instances presence lists; those answer how many sessions they
 *   reached (an instance gone answers nothing: 0 once the wait is over).
 * - targeted: each instance subscribes to its own subject; the router sends a request only to the
 *   instances presence names, and each answers how many sessions it reached. An instance that is
 *   gone (NATS "no responders", or no answer in time) counts 0.
 * - sharded: one subject per shard, `<prefix>.signals.shard.<n>`, subscribed by its owner only
 *   (following the directory's changes); the owner answers what it reached. No owner (no
 *   responders, or no answer in time): 0, push due.
 * `receive` delivers locally and returns the sessions reached.
 */
export async function createNatsSignalBridge(opts: NatsSignalOptions, receive: (text: string) => number): Promise<SignalBridge> {
  const nc: NatsConnection = await connect({ servers: opts.servers, name: `routing-signals-${opts.instanceId}` });
  const broadcastSubject = `${opts.subjectPrefix}.signals`;
  const instanceSubject = (id: string) => `${opts.subjectPrefix}.delivery.${id}`;
  const shardSubject = (shard: number) => `${opts.subjectPrefix}.signals.shard.${shard}`;
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const timeout = opts.requestTimeoutMs ?? 1000;
  const shards = opts.shards;
  if (opts.strategy === "sharded" && shards === undefined) throw new Error("sharded signals need the shard directory");

  /** Delivers; answers when asked (broadcast: only the instances the signal names). */
  const handle = (data: Uint8Array, reply: string | undefined, respond: (answer: Uint8Array) => void): void => {
    let reached = 0;
    const text = decoder.decode(data);
    try {
      reached = receive(text);
    } catch {
      // A malformed signal is dropped; the mailbox still holds the message.
    }
    if (!reply) return;
    // Broadcast: the instances presence names answer, and any other that delivered (presence may lag).
    if (opts.strategy === "broadcast" && reached === 0 && !(signalAsk(text).x ?? []).includes(opts.instanceId)) return;
    respond(encoder.encode(String(reached)));
  };

  const unsubscribers: Array<() => void> = [];
  let stopFollowing: () => void = () => {};
  if (opts.strategy === "sharded" && shards !== undefined) {
    const byShard = new Map<number, Subscription>();
    stopFollowing = followOwnedShards(shards, {
      acquired(shard) {
        byShard.get(shard)?.unsubscribe();
        const sub = nc.subscribe(shardSubject(shard), {
          callback: (err, msg) => {
            // Between losing a shard and the unsubscribe taking effect: stay silent, the owner answers.
            if (err || !shards.ownsShard(shard)) return;
            handle(msg.data, msg.reply, (a) => msg.respond(a));
          },
        });
        byShard.set(shard, sub);
      },
      lost(shard) {
        byShard.get(shard)?.unsubscribe();
        byShard.delete(shard);
      },
    });
    unsubscribers.push(() => byShard.forEach((s) => s.unsubscribe()));
  } else {
    const sub = nc.subscribe(opts.strategy === "broadcast" ? broadcastSubject : instanceSubject(opts.instanceId), {
      callback: (err, msg) => {
        if (!err) handle(msg.data, msg.reply, (a) => msg.respond(a));
      },
    });
    unsubscribers.push(() => sub.unsubscribe());
  }
  await nc.flush();

  async function ask(subject: string, data: Uint8Array): Promise<number> {
    try {
      const answer = await nc.request(subject, data, { timeout });
      return Number(decoder.decode(answer.data)) || 0;
    } catch (err) {
      if (err instanceof NatsError && (err.code === ErrorCode.NoResponders || err.code === ErrorCode.Timeout)) return 0;
      throw err;
    }
  }

  /** Broadcast: publish once, collect the answers of the named instances (at most `timeout` ms). */
  async function askAll(data: Uint8Array, expected: number): Promise<number> {
    let reached = 0;
    try {
      const answers = await nc.requestMany(broadcastSubject, data, { strategy: RequestStrategy.Count, maxMessages: expected, maxWait: timeout });
      for await (const answer of answers) reached += Number(decoder.decode(answer.data)) || 0;
    } catch (err) {
      if (!(err instanceof NatsError && (err.code === ErrorCode.NoResponders || err.code === ErrorCode.Timeout))) throw err;
    }
    return reached;
  }

  return {
    async signal(recipient, signal, sessions) {
      const instances = [...new Set(sessions.map((s) => s.instanceId))];
      if (opts.strategy === "broadcast") return askAll(encoder.encode(encodeSignal(signal, { x: instances })), instances.length);
      if (opts.strategy === "sharded" && shards !== undefined) {
        const shard = shards.shardOf(recipient);
        return ask(shardSubject(shard), encoder.encode(encodeSignal({ ...signal, shard })));
      }
      const data = encoder.encode(encodeSignal(signal));
      const answers = await Promise.all(instances.map((id) => ask(instanceSubject(id), data)));
      return answers.reduce((a, b) => a + b, 0);
    },
    async close() {
      stopFollowing();
      for (const unsubscribe of unsubscribers) unsubscribe();
      await nc.drain();
    },
  };
}
