import type { Urn } from "../core/urn.ts";

/**
 * `webpush`: a browser's Push API subscription; its token is the subscription as canonical JSON
 * (push/webpush-subscription.ts), so purge, hygiene and moves work on it as on any token.
 */
export type PushPlatform = "fcm" | "apns" | "webpush";

export interface DeviceToken {
  readonly token: string;
  readonly platform: PushPlatform;
  /** Epoch ms of the latest registration. */
  readonly registeredAt: number;
}

/**
 * Push tokens per identity.
 *
 * Guarantees: writes are durable before they resolve. A token belongs to at most one identity:
 * registering it again for the same identity stores it once (refreshing registeredAt); registering
 * it for another identity moves it there. `unregister` and `removeToken` are idempotent.
 */
export interface DeviceStore {
  register(owner: Urn, token: string, platform: PushPlatform): Promise<void>;
  /** Removes the token if `owner` holds it. */
  unregister(owner: Urn, token: string): Promise<void>;
  /** Removes the token whoever holds it (the provider reported it invalid). */
  removeToken(token: string): Promise<void>;
  list(owner: Urn): Promise<DeviceToken[]>;
  /** Removes every token `owner` holds (account deletion); resolves with how many. Idempotent. */
  purge(owner: Urn): Promise<number>;
  ready(): Promise<boolean>;
  close(): Promise<void>;
}
