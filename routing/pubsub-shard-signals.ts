import type { Message, PubSub, Subscription, Topic } from "@google-cloud/pubsub";
import type { ShardDirectory } from "../shards/directory.ts";
import { followOwnedShards } from "./owned-shards.ts";
import type { OwnerReceiver } from "./owner-decision.ts";
import { encodeSignal, OWNER_DECIDES, type SignalBridge } from "./signals.ts";

export interface PubSubShardOptions {
  readonly pubsub: PubSub;
  /** The signal topic every shard's messages go to (attribute `shard`). */
  readonly topic: Topic;
  readonly shards: ShardDirectory;
  readonly log?: { warn(obj: object, msg: string): void };
}

/** The subscription of one shard on a signal topic. */
export const shardSubscriptionName = (topic: string, shard: number): string => `${topic}-shard-${shard}`;
/** Its filter (contract, "Sharded delivery"). */
export const shardFilter = (shard: number): string => `attributes.shard = "${shard}"`;

/**
 * `sharded` signals over Pub/Sub. Every signal is published once to the signal topic with the
 * attribute `shard`; each shard has its own subscription with the filter `attributes.shard = "<n>"`,
 * created by its first owner and kept (not deleted when a node stops): signals published while a
 * shard changes hands wait there for the next owner, and what a dead owner held unacked comes back
 * after the ack deadline. Only the owner consumes it (following the directory's changes).
 *
 * The consumer checks the attribute itself and drops what is not its shard: Pub/Sub applies the
 * filter, but the emulator stores it without applying it. A node that no longer owns the shard
 * gives a message back (nack) for the owner.
 *
 * There is no answer channel: the owner decides each signal's fate (owner-decision.ts), so
 * `signal` resolves `OWNER_DECIDES` once the publish is durable.
 */
export function createPubSubShardSignals(opts: PubSubShardOptions, receive: OwnerReceiver): SignalBridge {
  const { pubsub, topic, shards } = opts;
  const held = new Map<number, Subscription>();
  /** Shards whose subscription is being opened, so a loss in between closes it. */
  const wanted = new Set<number>();

  async function open(shard: number): Promise<void> {
    const name = shardSubscriptionName(topic.name.split("/").pop() ?? topic.name, shard);
    const subscription = pubsub.subscription(name, { flowControl: { maxMessages: 1000 } });
    const [exists] = await subscription.exists();
    if (!exists) {
      try {
        await topic.createSubscription(name, { filter: shardFilter(shard), ackDeadlineSeconds: 10, messageRetentionDuration: { seconds: 600 } });
      } catch (err) {
        // Another node created it in between (ALREADY_EXISTS, gRPC code 6).
        if ((err as { code?: number }).code !== 6) throw err;
      }
    }
    if (!wanted.has(shard) || held.has(shard)) return;
    subscription.on("message", (message: Message) => {
      // The emulator hands every subscription every message: not this shard's, not ours to act on.
      if (message.attributes?.shard !== String(shard)) return message.ack();
      if (!shards.ownsShard(shard)) return message.nack();
      receive(message.data.toString("utf8")).then(
        () => message.ack(),
        (err: unknown) => {
          opts.log?.warn({ err, shard }, "sharded signal not settled; it comes back");
          message.nack();
        },
      );
    });
    subscription.on("error", (err: unknown) => opts.log?.warn({ err, shard }, "shard subscription error; the client library reconnects"));
    held.set(shard, subscription);
  }

  const stopFollowing = followOwnedShards(shards, {
    acquired(shard) {
      wanted.add(shard);
      open(shard).catch((err: unknown) => opts.log?.warn({ err, shard }, "shard subscription could not be opened"));
    },
    lost(shard) {
      wanted.delete(shard);
      const subscription = held.get(shard);
      held.delete(shard);
      // Closing gives back what is unacked: the next owner gets it.
      void subscription?.close().catch(() => {});
    },
  });

  return {
    async signal(recipient, signal) {
      const shard = shards.shardOf(recipient);
      await topic.publishMessage({ data: Buffer.from(encodeSignal({ ...signal, shard })), attributes: { shard: String(shard) } });
      return OWNER_DECIDES;
    },
    async close() {
      stopFollowing();
      wanted.clear();
      await Promise.allSettled([...held.values()].map((s) => s.close()));
      held.clear();
    },
  };
}
