import { readFileSync } from "node:fs";
import { Notification, Provider, type ProviderOptions, type ResponseFailure } from "@parse/node-apn";
import { ALERT_LOC_KEY, apnsShape } from "./apns-shape.ts";
import { PUSH_TTL_SECONDS, PUSH_TYPE, type PushNotification, type PushResult, type PushSender } from "./sender.ts";

export interface ApnsSenderOptions {
  /** Token-auth key (.p8, PEM). */
  readonly keyFile: string;
  readonly keyId: string;
  readonly teamId: string;
  /** The app's bundle id. */
  readonly topic: string;
  /** api.push.apple.com rather than api.sandbox.push.apple.com. */
  readonly production: boolean;
  /** For testing against a local stand-in. */
  readonly host?: string;
  readonly port?: number;
  /** Trust for the stand-in's certificate (tests only). */
  readonly ca?: string | Buffer;
  /** Per request; default 5000. */
  readonly requestTimeoutMs?: number;
}

/** The APNs request for one push (see apns-shape.ts for the push type and priority choice). */
export function apnsNotification(n: PushNotification, topic: string, nowMs = Date.now()): Notification {
  const shape = apnsShape(n.priority);
  const note = new Notification();
  note.topic = topic;
  note.pushType = shape.pushType;
  note.priority = shape.apnsPriority;
  note.collapseId = n.collapseKey;
  // Without an expiration APNs tries once and does not store the push for an offline device.
  note.expiry = Math.floor(nowMs / 1000) + PUSH_TTL_SECONDS;
  note.rawPayload = {
    aps: shape.background ? { "content-available": 1 } : { alert: { "loc-key": ALERT_LOC_KEY }, "mutable-content": 1 },
    type: PUSH_TYPE,
    ...(n.unread !== undefined ? { unread: n.unread } : {}),
  };
  return note;
}

/**
 * Maps an APNs failure: 410 (Unregistered, ExpiredToken) and 400 BadDeviceToken mean the token is
 * dead; 429, 5xx, an expired provider token (node-apn has already made a new one) and transport
 * errors (timeout, reset) are worth a retry; anything else (e.g. DeviceTokenNotForTopic, which a
 * wrong ROUTING_APNS_TOPIC would cause for every token) fails without touching the token.
 */
export function apnsResult(failure: ResponseFailure | undefined): PushResult {
  const status = failure?.status;
  const reason = failure?.response?.reason ?? failure?.error?.message ?? "unknown";
  if (status === 410 || (status === 400 && reason === "BadDeviceToken")) return { kind: "invalidToken", reason };
  if (status === undefined || status === 429 || status >= 500 || (status === 403 && reason === "ExpiredProviderToken")) {
    return { kind: "retry", reason: status === undefined ? "transport" : reason };
  }
  return { kind: "failed", reason };
}

/**
 * APNs over HTTP/2 with token auth (@parse/node-apn). One provider, one HTTP/2 connection,
 * requests multiplexed on it.
 *
 * Beyond PushSender's guarantees: node-apn's own retries are off (`connectionRetryLimit: 0`): it
 * would retry at once, ignoring Retry-After, so the dispatcher's backoff decides instead.
 */
export function createApnsSender(options: ApnsSenderOptions): PushSender {
  let key: Buffer;
  try {
    key = readFileSync(options.keyFile);
  } catch (err) {
    throw new Error(`ROUTING_APNS_KEY_FILE: cannot read ${options.keyFile}`, { cause: err });
  }
  const providerOptions: ProviderOptions = {
    token: { key, keyId: options.keyId, teamId: options.teamId },
    production: options.production,
    connectionRetryLimit: 0,
    requestTimeout: options.requestTimeoutMs ?? 5000,
    ...(options.host !== undefined ? { address: options.host } : {}),
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.ca !== undefined ? { ca: [options.ca] } : {}),
  };
  const provider = new Provider(providerOptions);
  let closed: Promise<void> | undefined;

  return {
    platform: "apns",
    async send(n) {
      if (closed) return { kind: "failed", reason: "closed" };
      try {
        const { sent, failed } = await provider.send(apnsNotification(n, options.topic), n.token);
        return sent.length > 0 ? { kind: "sent" } : apnsResult(failed[0]);
      } catch {
        return { kind: "retry", reason: "transport" };
      }
    },
    close() {
      closed ??= provider.shutdown();
      return closed;
    },
  };
}
