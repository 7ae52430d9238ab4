import type { DeviceStore } from "../backends/device-store.ts";
import type { IngressBus } from "../backends/ingress-bus.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import type { PushQueue } from "../backends/push-queue.ts";
import type { Urn } from "../core/urn.ts";

export interface PurgeDeps {
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  readonly pushQueue: PushQueue;
  readonly bus: IngressBus;
}

/** What `mailbox.purge` answers: how many of each were removed. */
export interface PurgeCounts {
  readonly messages: number;
  readonly dedup: number;
  readonly deviceTokens: number;
  readonly pendingPushes: number;
  readonly deadLetters: number;
}

/** Dead letters looked through for the recipient's (a bus lists at most this many). */
const DEAD_LETTER_SCAN = 1_000;

/**
 * Everything kept of one recipient (account deletion): pending pushes first (so none fires for a
 * message about to go), then the mailbox (messages and de-duplication records), device tokens (Web
 * Push subscriptions included) and the bus's dead letters addressed to it. Idempotent: a second
 * purge finds nothing. Messages in flight meanwhile are stored whole after it or removed whole by
 * it (Mailbox.purge); one routed after it is a new message.
 */
export async function purgeRecipient(deps: PurgeDeps, urn: Urn): Promise<PurgeCounts> {
  const pendingPushes = await deps.pushQueue.purge(urn);
  const { messages, dedup } = await deps.mailbox.purge(urn);
  const deviceTokens = await deps.devices.purge(urn);
  const dead = await deps.bus.deadLetters(DEAD_LETTER_SCAN);
  const ids = dead.filter((d) => d.record.recipientId === urn).map((d) => d.id);
  const deadLetters = ids.length > 0 ? await deps.bus.dropDeadLetters(ids) : 0;
  return { messages, dedup, deviceTokens, pendingPushes, deadLetters };
}
