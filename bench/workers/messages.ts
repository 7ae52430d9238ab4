/** The coordinator <-> load worker protocol (structured-clone messages) and what clients need to reach a contender. */

/** How a worker's clients talk to a contender. */
export type TargetSpec =
  | {
      /** The service's and the relays' JSON frames over WebSocket (and POST /send). */
      readonly protocol: "frames";
      readonly wsUrl: string;
      readonly httpUrl: string;
      /** jwt: Authorization header (the service); query: `?id=` (the relays, no auth). */
      readonly auth: "jwt" | "query";
    }
  | { readonly protocol: "socketio"; readonly url: string }
  | {
      readonly protocol: "mqtt";
      readonly url: string;
      /** service: envelopes/send -> clients/<urn>/receive, JWT as password; direct: publish to the receiver's topic (Mosquitto alone). */
      readonly topics: "service" | "direct";
      readonly topicPrefix: string;
    };

export interface Variant {
  readonly ingress: "ws" | "http" | "mqtt";
  readonly mode: "push" | "poke";
  readonly payloadBytes: number;
}

export interface Party {
  readonly urn: string;
  /** A JWT for contenders that authenticate; empty otherwise. */
  readonly token: string;
}

export interface PairSpec {
  readonly sender: Party;
  readonly receiver: Party;
}

export type Load = { readonly kind: "saturate"; readonly window: number } | { readonly kind: "rate"; readonly perSecond: number };

export type Command =
  | {
      readonly op: "open";
      readonly key: string;
      readonly target: TargetSpec;
      readonly variant: Variant;
      readonly pairs: readonly PairSpec[];
      readonly httpConnections: number;
    }
  | { readonly op: "run"; readonly key: string; readonly load: Load; readonly durationMs: number; readonly rampMs: number; readonly drainMs: number }
  | { readonly op: "close"; readonly key: string };

export interface RunResult {
  readonly sent: number;
  /** Unique deliveries, whenever they arrived. */
  readonly received: number;
  /** Deliveries that arrived inside the measured window (after the ramp). */
  readonly receivedInWindow: number;
  readonly windowMs: number;
  readonly errors: number;
  /** Sent, not refused, and not delivered by the end of the drain. */
  readonly lost: number;
  /** Latency in ms of each message scheduled inside the window (scheduled send -> delivery). */
  readonly samples: Float64Array;
}
