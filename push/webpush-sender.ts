import https from "node:https";
import webpush, { WebPushError } from "web-push";
import { PUSH_TTL_SECONDS, PUSH_TYPE, type PushNotification, type PushResult, type PushSender } from "./sender.ts";
import { parseSubscriptionToken } from "./webpush-subscription.ts";

export interface WebPushSenderOptions {
  readonly publicKey: string;
  readonly privateKey: string;
  /** VAPID `sub`: mailto: or https: contact. */
  readonly subject: string;
  /** Trust for a stand-in push service's certificate (tests only). */
  readonly ca?: string | Buffer;
  /** Connections kept per push-service host. */
  readonly maxSockets?: number;
  /** Per-request timeout, ms (default 10 000). */
  readonly timeoutMs?: number;
}

/** Seconds from a Retry-After header (delta seconds or HTTP date), as ms. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Maps a push service's answer (RFC 8030): 404/410 the subscription is gone for good; 429 and
 * 5xx are transient (Retry-After honoured); other 4xx (400 bad request, 401/403 VAPID refused,
 * 413 too large) fail this push. The reason is `http <status>`: never the endpoint (a capability
 * URL) or the response body.
 */
export function webPushResult(status: number, headers: Record<string, string | string[] | undefined> = {}): PushResult {
  const reason = `http ${status}`;
  if (status === 404 || status === 410) return { kind: "invalidToken", reason };
  if (status === 429 || status >= 500) {
    const after = retryAfterMs(headers["retry-after"]);
    return after === undefined ? { kind: "retry", reason } : { kind: "retry", reason, retryAfterMs: after };
  }
  return { kind: "failed", reason };
}

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and the aes128gcm payload encryption (RFC 8291),
 * through the `web-push` package. The DeviceStore token is the subscription's canonical JSON.
 *
 * What travels: the same content-free poke as FCM and APNs (`{"type":"poke","unread":n}`),
 * encrypted to the browser's keys so the push service cannot read even that; `Topic` = the
 * recipient's collapse key (the push service keeps only the newest undelivered one), `Urgency`
 * high or normal, `TTL` PUSH_TTL_SECONDS. No retries inside: the dispatcher retries.
 */
export function createWebPushSender(options: WebPushSenderOptions): PushSender {
  const agent = new https.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 8, ...(options.ca !== undefined ? { ca: options.ca } : {}) });
  const vapidDetails = { subject: options.subject, publicKey: options.publicKey, privateKey: options.privateKey };
  // Fails fast (at start-up) on keys web-push would refuse at every send.
  webpush.getVapidHeaders("https://push.example", options.subject, options.publicKey, options.privateKey, "aes128gcm");
  let closed = false;

  return {
    platform: "webpush",
    async send(n: PushNotification): Promise<PushResult> {
      if (closed) return { kind: "failed", reason: "closed" };
      const subscription = parseSubscriptionToken(n.token);
      if (subscription === undefined) return { kind: "invalidToken", reason: "malformed subscription" };
      const payload = JSON.stringify({ type: PUSH_TYPE, ...(n.unread !== undefined ? { unread: n.unread } : {}) });
      try {
        await webpush.sendNotification(subscription, payload, {
          vapidDetails,
          contentEncoding: "aes128gcm",
          TTL: PUSH_TTL_SECONDS,
          urgency: n.priority === "high" ? "high" : "normal",
          topic: n.collapseKey,
          agent,
          timeout: options.timeoutMs ?? 10_000,
        });
        return { kind: "sent" };
      } catch (err) {
        if (err instanceof WebPushError) return webPushResult(err.statusCode, err.headers);
        // Network failure, timeout, TLS: transient.
        const code = (err as NodeJS.ErrnoException | null)?.code;
        return { kind: "retry", reason: typeof code === "string" ? code : "network error" };
      }
    },
    async close() {
      closed = true;
      agent.destroy();
    },
  };
}
