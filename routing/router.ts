import type { BusRecord } from "../backends/ingress-bus.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { PushQueue } from "../backends/push-queue.ts";
import type { RouteOutcome } from "../metrics/registry.ts";
import { OWNER_DECIDES, type SignalBridge, type SignalReach } from "./signals.ts";

export interface RouterDeps {
  readonly mailbox: Mailbox;
  readonly presence: PresenceStore;
  readonly signals: SignalBridge;
  readonly pushQueue: PushQueue;
}

/**
 * The outcome once the durable steps are done (stored, not a duplicate, for non-ephemeral records),
 * given how many sessions the signal reached. One rule for `createRouter` and `explainRoute`.
 */
export function outcomeAfterSignal(isEphemeral: boolean, reached: SignalReach): RouteOutcome {
  if (reached === OWNER_DECIDES) return "owner_decides";
  if (isEphemeral) return reached > 0 ? "ephemeral_delivered" : "ephemeral_dropped";
  return reached > 0 ? "delivered_online" : "push_due";
}

/**
 * The routing rules for one bus record. Resolves once everything durable is done (the caller acks
 * the bus record then); rejects if a durable step failed (the caller nacks: redelivery, and the
 * de-duplication record makes the retry safe).
 *
 * - ephemeral: signal online sessions, never store, never push;
 * - duplicate (recipient, messageId): nothing more (it was stored and signalled the first time);
 * - otherwise store, then signal every online session; nobody reachable: a push is due. A mailbox
 *   that answers a store before it is durable (`storeVisible`) is signalled from then on, and the
 *   route resolves only once the store is durable.
 * Reach is what the instances holding the sessions answered (presence only says whom to ask), so a
 * session on an instance that died counts 0 and its message becomes push due. In `sharded`
 * delivery over Pub/Sub the shard's owner decides (no answer comes back): `owner_decides`.
 */
export function createRouter({ mailbox, presence, signals, pushQueue }: RouterDeps) {
  return async function route(record: BusRecord): Promise<RouteOutcome> {
    const recipient = record.recipientId;
    if (record.isEphemeral) {
      const online = await presence.get(recipient);
      const reached = online.length > 0 ? await signals.signal(recipient, { record, queuedAt: record.acceptedAt }, online) : 0;
      return outcomeAfterSignal(true, reached);
    }
    const queuedAt = Date.now();
    const entry = { recipientId: recipient, messageId: record.messageId, priority: record.priority, envelope: record.envelope, queuedAt };
    // Signalled once the message is visible; resolved (the bus ack) only once it is durable too.
    const { outcome, durable } = mailbox.storeVisible ? await mailbox.storeVisible(entry) : { outcome: await mailbox.store(entry), durable: DURABLE };
    const routed = outcome === "duplicate" ? "duplicate" : await signalOrPush(record, queuedAt);
    await durable;
    return routed;
  };

  async function signalOrPush(record: BusRecord, queuedAt: number): Promise<RouteOutcome> {
    const online = await presence.get(record.recipientId);
    const reached = online.length > 0 ? await signals.signal(record.recipientId, { record, queuedAt }, online) : 0;
    if (reached === OWNER_DECIDES || reached > 0) return outcomeAfterSignal(false, reached);
    await pushQueue.enqueue({ recipientId: record.recipientId, messageId: record.messageId, priority: record.priority, dueAt: queuedAt });
    return "push_due";
  }
}

const DURABLE = Promise.resolve();

export type Route = ReturnType<typeof createRouter>;
