import { createHash } from "node:crypto";
import type { PushPlatform } from "../backends/device-store.ts";
import type { Urn } from "../core/urn.ts";

/**
 * What a push says: "something is waiting, come and fetch it". Deliberately nothing else: no
 * envelope field, no sender, no message id, no recipient URN (the token already names the device).
 * The app wakes, connects and pulls its mailbox; the payload only ever travels end-to-end encrypted.
 */
export interface PushNotification {
  readonly token: string;
  /** For the sender's logs and grouping only; never put into the request. */
  readonly recipientId: Urn;
  readonly priority: "high" | "normal";
  /** Per recipient (see `collapseKeyFor`): the provider keeps only the newest push with this key. */
  readonly collapseKey: string;
  /** Unread messages in the recipient's mailbox when the push was made, if known. */
  readonly unread?: number;
}

/**
 * - `sent`: the provider accepted it (not a delivery receipt).
 * - `retry`: a transient failure (provider 5xx, 429, network, timeout); try again later, not
 *   before `retryAfterMs` when the provider said so.
 * - `invalidToken`: the provider says the token will never work again; forget it.
 * - `failed`: a permanent failure for this push (bad request, credentials, anything unknown);
 *   retrying the same push will not help.
 * `reason` is the provider's error code (e.g. `messaging/server-unavailable`, `BadDeviceToken`):
 * a closed set of words, never a token or payload, so it may go into logs and dead letters.
 */
export type PushResult =
  | { readonly kind: "sent" }
  | { readonly kind: "retry"; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly kind: "invalidToken"; readonly reason: string }
  | { readonly kind: "failed"; readonly reason: string };

/**
 * One push provider (FCM, APNs).
 *
 * Guarantees every implementation keeps:
 * - `send` never rejects: network errors, timeouts and provider errors all come back as a
 *   `PushResult`, so the dispatcher needs one code path.
 * - The request carries only what `PushNotification` holds (a type marker, the unread count, the
 *   collapse key, the priority): zero knowledge holds at the provider too.
 * - `send` may take up to the provider's request timeout (plus any retries the client library
 *   makes on its own, documented per implementation); callers bound how many run at once.
 * - Safe to call concurrently. After `close` resolves, connections are released and `send`
 *   answers `failed` ("closed").
 */
export interface PushSender {
  readonly platform: PushPlatform;
  send(n: PushNotification): Promise<PushResult>;
  close(): Promise<void>;
}

/**
 * The collapse key of a recipient: 22 URL-safe characters of SHA-256 over the URN. Short enough
 * for every provider (APNs collapse id <= 64 bytes, Web Push `Topic` <= 32 characters), stable
 * across nodes, and it does not spell out the URN to the provider.
 */
export function collapseKeyFor(recipientId: Urn): string {
  return createHash("sha256").update(recipientId).digest("base64url").slice(0, 22);
}

/** How long a provider may hold an undelivered push: a poke older than this has no value, the app fetches when opened. */
export const PUSH_TTL_SECONDS = 24 * 3600;

/** The one type marker every push carries, so the app knows to fetch. */
export const PUSH_TYPE = "poke";
