import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Agent } from "node:http";
import { cert, deleteApp, initializeApp } from "firebase-admin/app";
import { getMessaging, type TokenMessage } from "firebase-admin/messaging";
import { ALERT_LOC_KEY, apnsShape } from "./apns-shape.ts";
import { createRedirectAgent } from "./redirect-agent.ts";
import { PUSH_TTL_SECONDS, PUSH_TYPE, type PushNotification, type PushResult, type PushSender } from "./sender.ts";

export interface FcmSenderOptions {
  /** Service-account JSON file: `project_id`, `client_email`, `private_key`. */
  readonly serviceAccountFile: string;
  /** For testing against a local stand-in: every request (OAuth token exchange included) goes to this https origin. */
  readonly endpoint?: string;
  /** Trust for the stand-in's certificate (tests only). */
  readonly ca?: string | Buffer;
  /** Connections kept per host when `endpoint` is set. */
  readonly maxSockets?: number;
}

interface ServiceAccountFile {
  readonly project_id: string;
  readonly client_email: string;
  readonly private_key: string;
}

function readServiceAccount(file: string): ServiceAccountFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`ROUTING_FCM_SERVICE_ACCOUNT_FILE: cannot read ${file} as JSON`, { cause: err });
  }
  const sa = parsed as Partial<ServiceAccountFile> | null;
  for (const field of ["project_id", "client_email", "private_key"] as const) {
    if (typeof sa?.[field] !== "string" || sa[field] === "") throw new Error(`ROUTING_FCM_SERVICE_ACCOUNT_FILE: ${file} has no ${field}`);
  }
  return sa as ServiceAccountFile;
}

/**
 * The FCM HTTP v1 request for one push: a data-only message (the app's messaging service wakes
 * and fetches; nothing is displayed by FCM itself), with per-platform delivery hints for Android,
 * iOS-through-FCM (see apns-shape.ts) and Web Push. Built fresh per send: firebase-admin renames
 * fields of the object it is given.
 */
export function fcmMessage(n: PushNotification, nowMs = Date.now()): TokenMessage {
  const apns = apnsShape(n.priority);
  return {
    token: n.token,
    data: { type: PUSH_TYPE, ...(n.unread !== undefined ? { unread: String(n.unread) } : {}) },
    android: { priority: n.priority, collapseKey: n.collapseKey, ttl: PUSH_TTL_SECONDS * 1000 },
    apns: {
      headers: {
        "apns-priority": String(apns.apnsPriority),
        "apns-push-type": apns.pushType,
        "apns-collapse-id": n.collapseKey,
        "apns-expiration": String(Math.floor(nowMs / 1000) + PUSH_TTL_SECONDS),
      },
      payload: { aps: apns.background ? { contentAvailable: true } : { alert: { locKey: ALERT_LOC_KEY }, mutableContent: true } },
    },
    webpush: { headers: { Urgency: n.priority, TTL: String(PUSH_TTL_SECONDS), Topic: n.collapseKey } },
  };
}

const INVALID_TOKEN = new Set(["messaging/registration-token-not-registered", "messaging/invalid-registration-token", "messaging/invalid-argument"]);
const RETRYABLE = new Set([
  "messaging/server-unavailable",
  "messaging/internal-error",
  "messaging/message-rate-exceeded",
  "messaging/device-message-rate-exceeded",
  "messaging/quota-exceeded",
  "app/network-error",
  "app/network-timeout",
  // The OAuth token exchange failed: usually Google's token endpoint being unavailable. A broken
  // credential ends in dead letters after ROUTING_PUSH_MAX_ATTEMPTS.
  "app/invalid-credential",
]);

/** Maps a firebase-admin error to a result by its code (`messaging/...`, `app/...`); the code is the reason. */
export function fcmResult(err: unknown): PushResult {
  const code = typeof (err as { code?: unknown } | null)?.code === "string" ? (err as { code: string }).code : "unknown";
  if (INVALID_TOKEN.has(code)) return { kind: "invalidToken", reason: code };
  if (RETRYABLE.has(code)) return { kind: "retry", reason: code };
  // firebase-admin reports a non-JSON 5xx other than 500/503 (a 502/504 from a front end) only in its message.
  if (code === "messaging/unknown-error" && /Status code: 5\d\d\./.test(String((err as Error).message))) return { kind: "retry", reason: code };
  return { kind: "failed", reason: code };
}

/**
 * FCM through firebase-admin (HTTP v1 `messages:send`), on a named app of its own so several
 * nodes in one process do not share or clash over the default app.
 *
 * Beyond PushSender's guarantees: firebase-admin itself retries a 503 up to 4 times (after 0, 1,
 * 2, 4 s, or the Retry-After it is given, up to 60 s) before `send` answers; its public API has
 * no switch for that. Its request timeout is 10 s.
 */
export function createFcmSender(options: FcmSenderOptions): PushSender {
  const sa = readServiceAccount(options.serviceAccountFile);
  const agent: Agent | undefined =
    options.endpoint === undefined ? undefined : createRedirectAgent(new URL(options.endpoint), { ca: options.ca, maxSockets: options.maxSockets });
  const app = initializeApp(
    {
      // The path, not the parsed object: firebase-admin 13 drops the agent for the OAuth token
      // exchange when cert() is given an object.
      credential: cert(options.serviceAccountFile, agent),
      projectId: sa.project_id,
      ...(agent !== undefined ? { httpAgent: agent } : {}),
    },
    `routing-push-fcm-${randomBytes(6).toString("hex")}`,
  );
  const messaging = getMessaging(app);
  let closed: Promise<void> | undefined;

  return {
    platform: "fcm",
    async send(n) {
      if (closed) return { kind: "failed", reason: "closed" };
      try {
        await messaging.send(fcmMessage(n));
        return { kind: "sent" };
      } catch (err) {
        return fcmResult(err);
      }
    },
    close() {
      closed ??= deleteApp(app).finally(() => agent?.destroy());
      return closed;
    },
  };
}
