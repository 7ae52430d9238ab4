import { Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { DeviceStore } from "../backends/device-store.ts";
import { RoutingError } from "../core/errors.ts";
import type { Urn } from "../core/urn.ts";
import { isWebPushSubscription, parseSubscriptionToken, subscriptionToken, WebPushSubscriptionSchema } from "../push/webpush-subscription.ts";

export const RegisterDeviceSchema = Type.Union(
  [
    Type.Object(
      { token: Type.String({ minLength: 1, maxLength: 4096 }), platform: Type.Union([Type.Literal("fcm"), Type.Literal("apns")]) },
      { additionalProperties: false },
    ),
    Type.Object({ platform: Type.Literal("webpush"), subscription: WebPushSubscriptionSchema }, { additionalProperties: false }),
  ],
  { $id: "RegisterDevice" },
);
export const UnregisterDeviceSchema = Type.Object(
  { token: Type.String({ minLength: 1, maxLength: 4096 }) },
  { $id: "UnregisterDevice", additionalProperties: false },
);
const registerDevice = TypeCompiler.Compile(RegisterDeviceSchema);
const unregisterDevice = TypeCompiler.Compile(UnregisterDeviceSchema);

/**
 * POST /register-device: an FCM/APNs token, or a browser's Web Push subscription, stored in the
 * DeviceStore like any token (its canonical JSON is the token), so purge and token hygiene cover it.
 * A subscription registered again with new keys replaces the caller's old one for that endpoint.
 */
export async function registerDeviceBody(devices: DeviceStore, identity: Urn, body: unknown): Promise<void> {
  if (!registerDevice.Check(body)) {
    throw new RoutingError(
      "INVALID_REQUEST",
      'body must be {"token": "...", "platform": "fcm" | "apns"} or {"platform": "webpush", "subscription": {"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}}',
    );
  }
  if (body.platform !== "webpush") return devices.register(identity, body.token, body.platform);
  if (!isWebPushSubscription(body.subscription))
    throw new RoutingError("INVALID_REQUEST", "subscription keys must be a 65-byte P-256 point (p256dh) and a 16-byte secret (auth), base64url");
  const token = subscriptionToken(body.subscription);
  await removeEndpoint(devices, identity, body.subscription.endpoint, token);
  await devices.register(identity, token, "webpush");
}

/** DELETE /register-device: `token` is an FCM/APNs token, or a Web Push subscription's endpoint. */
export async function unregisterDeviceBody(devices: DeviceStore, identity: Urn, body: unknown): Promise<void> {
  if (!unregisterDevice.Check(body)) throw new RoutingError("INVALID_REQUEST", 'body must be {"token": "..."} (for Web Push: the subscription\'s endpoint)');
  await devices.unregister(identity, body.token);
  if (body.token.startsWith("https://")) await removeEndpoint(devices, identity, body.token);
}

/** Removes the caller's Web Push subscriptions for `endpoint` (except `keep`). */
async function removeEndpoint(devices: DeviceStore, identity: Urn, endpoint: string, keep?: string): Promise<void> {
  for (const device of await devices.list(identity)) {
    if (device.platform !== "webpush" || device.token === keep) continue;
    if (parseSubscriptionToken(device.token)?.endpoint === endpoint) await devices.unregister(identity, device.token);
  }
}
