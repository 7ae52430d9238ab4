import type { PushQueue } from "../backends/push-queue.ts";
import { decodeSignal, type LocalDelivery, type Signal, type SignalCounters } from "./signals.ts";

/** What the owner of a shard made of one signal. */
export type OwnerFate = "delivered" | "push_due" | "ephemeral_dropped";

/**
 * The owner's side of `sharded` delivery over a channel without answers (Pub/Sub): the owner of
 * the recipient's shard holds every session of that recipient (others were sent away with MOVED),
 * so it alone decides each signal's fate: delivered to a live local session, or (a stored message
 * nobody here can take) a push is due, recorded here durably before the signal is acked. A push
 * enqueue that fails rejects: the caller does not ack, and the signal comes back.
 */
export function createOwnerReceiver(local: LocalDelivery, counters: SignalCounters, pushQueue: PushQueue) {
  return async (text: string): Promise<{ signal: Signal; fate: OwnerFate }> => {
    counters.received();
    const signal = decodeSignal(text);
    const { record } = signal;
    const reached = local.deliver(record.recipientId, signal);
    if (reached > 0) {
      counters.delivered();
      return { signal, fate: "delivered" };
    }
    if (record.isEphemeral) return { signal, fate: "ephemeral_dropped" };
    await pushQueue.enqueue({ recipientId: record.recipientId, messageId: record.messageId, priority: record.priority, dueAt: Date.now() });
    return { signal, fate: "push_due" };
  };
}

export type OwnerReceiver = ReturnType<typeof createOwnerReceiver>;
