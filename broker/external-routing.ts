import type { PresenceEntry, PresenceStore } from "../backends/presence-store.ts";
import { messageFrame, POKE_FRAME, queuedMessageJson } from "../core/frames.ts";
import type { Urn } from "../core/urn.ts";
import type { Signal, SignalBridge } from "../routing/signals.ts";

/** The instance id of the stand-in presence entry: "whoever listens on the external broker". */
const EXTERNAL_BROKER = "mqtt-external-broker";

const brokerEntry: PresenceEntry = Object.freeze({ sessionId: EXTERNAL_BROKER, instanceId: EXTERNAL_BROKER, protocol: "mqtt", connectedAt: 0 });

export interface RouterReach {
  readonly presence: PresenceStore;
  readonly signals: SignalBridge;
}

/**
 * With an external broker the service cannot see who is subscribed there, so every routed message
 * is also published to its recipient's receive topic on that broker (the broker drops it if nobody
 * listens). Stored messages are poked, ephemeral ones sent whole (no per-client delivery mode is
 * known there). The router only signals recipients presence lists, so its presence gets a stand-in
 * entry for the broker; the real sessions still go to the inner bridge. Reach counts only the real
 * sessions: a publish to the broker is not proof of a listener, so a push stays due as before.
 */
export function withExternalDelivery(inner: RouterReach, publish: (urn: Urn, frame: string) => void): RouterReach {
  const frameOf = ({ record, queuedAt }: Signal): string =>
    record.isEphemeral ? messageFrame(queuedMessageJson(record.messageId, record.envelope, queuedAt)) : POKE_FRAME;
  const presence: PresenceStore = {
    add: (urn, entry) => inner.presence.add(urn, entry),
    remove: (urn, sessionId) => inner.presence.remove(urn, sessionId),
    get: async (urn) => [...(await inner.presence.get(urn)), brokerEntry],
    heartbeat: (instanceId) => inner.presence.heartbeat(instanceId),
    release: (instanceId) => inner.presence.release(instanceId),
    ready: () => inner.presence.ready(),
    close: () => inner.presence.close(),
  };
  const signals: SignalBridge = {
    async signal(recipient, signal, sessions) {
      publish(recipient, frameOf(signal));
      const real = sessions.filter((s) => s.instanceId !== EXTERNAL_BROKER);
      return real.length > 0 ? inner.signals.signal(recipient, signal, real) : 0;
    },
    close: () => inner.signals.close(),
  };
  return { presence, signals };
}
