import type { PresenceEntry, PresenceStore, SessionProtocol } from "../backends/presence-store.ts";
import type { Urn } from "../core/urn.ts";
import type { RouteOutcome } from "../metrics/registry.ts";
import { outcomeAfterSignal } from "./router.ts";

/** What an instance's `gateway.sessions` says about one session (the fields an explanation needs). */
export interface SessionView {
  readonly id: string;
  readonly mode: "poke" | "push";
  readonly state: unknown;
}

export interface ExplainedSession {
  readonly sessionId: string;
  readonly instanceId: string;
  readonly protocol: SessionProtocol;
  readonly connectedAt: string;
  /** From the holding instance; "unknown" when it did not answer (then the signal may reach nobody). */
  readonly mode: "poke" | "push" | "unknown";
  readonly state: string;
}

export interface RouteDecision {
  readonly outcome: RouteOutcome;
  readonly why: string;
}

/** What the router would do now with a message to `recipient`, and why. Never reads a mailbox or a payload. */
export interface RouteExplanation {
  readonly recipient: Urn;
  readonly online: readonly ExplainedSession[];
  /** A new stored message (a messageId seen within the de-duplication window is a `duplicate` instead: nothing more happens). */
  readonly stored: RouteDecision;
  readonly ephemeral: RouteDecision;
}

/** An XState state value as a dotted path ("online.live"). */
function stateName(state: unknown): string {
  if (typeof state === "string") return state;
  if (state !== null && typeof state === "object") {
    const [key, inner] = Object.entries(state)[0] ?? [];
    if (key === undefined) return "unknown";
    const rest = stateName(inner);
    return rest === "unknown" ? key : `${key}.${rest}`;
  }
  return "unknown";
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * The router's rules (`createRouter`, through `outcomeAfterSignal`) applied to the recipient's
 * presence as the router reads it now. A prediction: the signal bridge counts only sessions it
 * actually reaches, so a presence entry whose instance died predicts "online" until its TTL.
 *
 * `sessionsOn(instanceId)` asks the instance holding sessions for their delivery modes; it may
 * reject (the instance is gone), which leaves those sessions' mode "unknown".
 */
export async function explainRoute(
  recipient: Urn,
  presence: PresenceStore,
  sessionsOn: (instanceId: string) => Promise<readonly SessionView[]>,
): Promise<RouteExplanation> {
  const entries: PresenceEntry[] = await presence.get(recipient);
  const instances = [...new Set(entries.map((e) => e.instanceId))];
  const views = new Map<string, SessionView>();
  await Promise.all(
    instances.map(async (id) => {
      const list = await sessionsOn(id).catch((): readonly SessionView[] => []);
      for (const view of list) views.set(view.id, view);
    }),
  );
  const online: ExplainedSession[] = entries.map((e) => {
    const view = views.get(e.sessionId);
    return {
      sessionId: e.sessionId,
      instanceId: e.instanceId,
      protocol: e.protocol,
      connectedAt: new Date(e.connectedAt).toISOString(),
      mode: view?.mode ?? "unknown",
      state: view ? stateName(view.state) : "unknown",
    };
  });
  const n = online.length;
  const where = plural(instances.length, "instance");
  const pokes = online.filter((s) => s.mode === "poke").length;
  const frames = online.filter((s) => s.mode === "push").length;
  const storedOutcome = outcomeAfterSignal(false, n);
  const ephemeralOutcome = outcomeAfterSignal(true, n);
  return {
    recipient,
    online,
    stored: {
      outcome: storedOutcome,
      why:
        n > 0
          ? `online: store in the mailbox, then signal ${plural(n, "session")} on ${where} (${pokes} poke, ${frames} message frame${n - pokes - frames > 0 ? `, ${n - pokes - frames} unknown mode` : ""}); no push`
          : "offline: store + push due",
    },
    ephemeral: {
      outcome: ephemeralOutcome,
      why:
        n > 0
          ? `online: message frame to ${plural(n, "session")} on ${where}; never stored or pushed`
          : "offline: dropped; ephemeral messages are never stored or pushed",
    },
  };
}
