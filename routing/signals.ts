import type { BusRecord, IngressPath } from "../backends/ingress-bus.ts";
import type { PresenceEntry } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";

/** What the router tells a recipient's sessions: a stored message (poke, or the message in push mode) or an ephemeral one. */
export interface Signal {
  readonly record: BusRecord;
  /** Epoch ms the message entered the mailbox (acceptance time for ephemeral ones). */
  readonly queuedAt: number;
  /** The recipient's shard (`sharded` delivery, contract "Sharded delivery"); stamped by the sharded bridges. */
  readonly shard?: number;
}

/**
 * What a bridge says a signal became:
 * - a number: the sessions it reached, as the instances holding them answered (0: nobody, push due);
 * - `OWNER_DECIDES`: handed to the owner of the recipient's shard over a channel without answers
 *   (Pub/Sub); the owner delivers to its live local sessions or records the push as due itself.
 */
export const OWNER_DECIDES = "owner_decides";
export type SignalReach = number | typeof OWNER_DECIDES;

/**
 * Carries a signal from the router to the sessions of a recipient, on whichever instance holds
 * them. Best effort by design: the mailbox, not the signal, is the durable copy, so a lost
 * signal delays a message until the client's next fetch but never loses it (ephemeral messages
 * excepted, which are best effort by contract).
 *
 * `sessions` is the recipient's presence as the router read it. Resolves how many sessions it
 * reached (local bridge) or an upper bound of them (remote bridges: the sessions on instances it
 * published to); 0 means nobody can be reached and the router falls back to a push.
 */
export interface SignalBridge {
  signal(recipient: Urn, signal: Signal, sessions: readonly PresenceEntry[]): Promise<SignalReach>;
  close(): Promise<void>;
}

/** Delivery into this instance's own sessions. */
export interface LocalDelivery {
  deliver(recipient: Urn, signal: Signal): number;
}

/** The single-node bridge: the router and the sessions share a process. */
export function createLocalSignalBridge(local: LocalDelivery): SignalBridge {
  return {
    signal: async (recipient, signal) => local.deliver(recipient, signal),
    close: async () => {},
  };
}

/**
 * Wire form of a signal between instances: a one-line JSON header, a newline, then the stored
 * envelope JSON byte-for-byte (never parsed or re-encoded on the way).
 */
/**
 * Who must answer a signal, when the channel has no replies of its own: `x` the instances expected
 * to answer (the ones presence names), `o` the instance waiting, `c` its correlation id.
 */
export interface SignalAsk {
  readonly x?: readonly string[];
  readonly o?: string;
  readonly c?: string;
}

export function encodeSignal({ record, queuedAt, shard }: Signal, ask: SignalAsk = {}): string {
  const header = {
    r: record.recipientId,
    m: record.messageId,
    e: record.isEphemeral,
    p: record.priority,
    a: record.acceptedAt,
    q: queuedAt,
    w: record.path,
    s: shard,
    ...ask,
  };
  return `${JSON.stringify(header)}\n${record.envelope}`;
}

/** The answer request in a signal's header; empty when it has none or the header is not JSON. */
export function signalAsk(text: string): SignalAsk {
  const cut = text.indexOf("\n");
  if (cut < 0) return {};
  try {
    const { x, o, c } = JSON.parse(text.slice(0, cut)) as SignalAsk;
    return { x, o, c };
  } catch {
    return {};
  }
}

export function decodeSignal(text: string): Signal {
  const cut = text.indexOf("\n");
  if (cut < 0) throw new Error("signal without a header line");
  const h = JSON.parse(text.slice(0, cut)) as { r: Urn; m: string; e: boolean; p: number; a: number; q: number; w: IngressPath; s?: number };
  const record: BusRecord = { recipientId: h.r, messageId: h.m, isEphemeral: h.e, priority: h.p, acceptedAt: h.a, path: h.w, envelope: text.slice(cut + 1) };
  return h.s === undefined ? { record, queuedAt: h.q } : { record, queuedAt: h.q, shard: h.s };
}

/** The counters' shape is the metrics registry's (the ground layer defines it). */
export type { SignalCounters } from "../metrics/registry.ts";

import type { SignalCounters } from "../metrics/registry.ts";

/** What a remote bridge does with an incoming signal: deliver locally and count signal versus noise. */
export function createSignalReceiver(local: LocalDelivery, counters: SignalCounters) {
  return (text: string): number => {
    counters.received();
    const signal = decodeSignal(text);
    const reached = local.deliver(signal.record.recipientId, signal);
    if (reached > 0) counters.delivered();
    return reached;
  };
}
