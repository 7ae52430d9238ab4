import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";

const Base64Url = (description: string) => Type.String({ pattern: "^[A-Za-z0-9_-]+={0,2}$", minLength: 16, maxLength: 256, description });

/** A browser's PushSubscription as `subscription.toJSON()` gives it (expirationTime ignored). */
export const WebPushSubscriptionSchema = Type.Object(
  {
    endpoint: Type.String({ pattern: "^https://", maxLength: 2048, description: "the push service URL of this subscription" }),
    keys: Type.Object(
      {
        p256dh: Base64Url("the browser's P-256 public key (uncompressed point, base64url)"),
        auth: Base64Url("the 16-byte auth secret (base64url)"),
      },
      { additionalProperties: false },
    ),
  },
  { $id: "WebPushSubscription", additionalProperties: true },
);
export type WebPushSubscription = Static<typeof WebPushSubscriptionSchema>;

const subscriptionCheck = TypeCompiler.Compile(WebPushSubscriptionSchema);

function bytes(b64url: string): number {
  return Buffer.from(b64url, "base64url").length;
}

/** The schema plus what a pattern cannot say: the key is a 65-byte uncompressed point, the secret 16 bytes. */
export function isWebPushSubscription(value: unknown): value is WebPushSubscription {
  if (!subscriptionCheck.Check(value)) return false;
  return bytes(value.keys.p256dh) === 65 && Buffer.from(value.keys.p256dh, "base64url")[0] === 0x04 && bytes(value.keys.auth) === 16;
}

/**
 * The DeviceStore token of a subscription: canonical JSON of endpoint and keys (nothing else, in a
 * fixed order), so the same subscription is the same token whoever registers it.
 */
export function subscriptionToken(sub: WebPushSubscription): string {
  return JSON.stringify({ endpoint: sub.endpoint, keys: { p256dh: sub.keys.p256dh, auth: sub.keys.auth } });
}

/** The subscription a webpush token holds; undefined for anything else. */
export function parseSubscriptionToken(token: string): WebPushSubscription | undefined {
  if (!token.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(token);
    return isWebPushSubscription(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
