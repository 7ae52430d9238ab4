import type { BusRecord } from "../backends/ingress-bus.ts";
import type { Urn } from "../core/urn.ts";

/** What the router tells a recipient's sessions: a stored message (poke, or the message in push mode) or an ephemeral one. */
export interface Signal {
  readonly record: BusRecord;
  /** Epoch ms the message entered the mailbox (acceptance time for ephemeral ones). */
  readonly queuedAt: number;
}

/**
 * Carries a signal from the router to the sessions of a recipient, on whichever instance holds
 * them. Best effort by design: the mailbox, not the signal, is the durable copy, so a lost
 * signal delays a message until the client's next fetch but never loses it (ephemeral messages
 * excepted, which are best effort by contract).
 *
 * Resolves how many sessions it reached (local bridge) or an upper bound of them (remote bridges);
 * 0 means nobody was reached and the router falls back to a push.
 */
export interface SignalBridge {
  signal(recipient: Urn, signal: Signal): Promise<number>;
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
