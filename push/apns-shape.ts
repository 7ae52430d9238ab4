import type { PushNotification } from "./sender.ts";

/**
 * How a push looks on Apple devices. Used by the APNs sender and by the FCM sender's `apns` block
 * (FCM tokens of iOS apps are delivered through APNs too), so both paths agree.
 *
 * APNs rules this follows: a `background` push (content-available, no alert/sound/badge) must use
 * apns-priority 5 (10 is an error), and Apple throttles them (a few per hour) and may drop them.
 * apns-priority 10 is only allowed for a push that shows something (push type `alert`). So:
 *
 * - normal: push type `background`, priority 5, `aps: {"content-available": 1}`: the app is woken
 *   when the system sees fit and fetches; the user sees nothing.
 * - high: push type `alert`, priority 10, `aps: {"alert": {"loc-key": "NEW_MESSAGE"}, "mutable-content": 1}`:
 *   a content-free alert whose text the app localises, and `mutable-content` so the app's
 *   Notification Service Extension can fetch and decrypt the message and rewrite the alert on the
 *   device. The service still sends no message content (the same pattern as Signal's server).
 */
export interface ApnsShape {
  readonly pushType: "background" | "alert";
  readonly apnsPriority: 5 | 10;
  /** Background push (content-available) rather than a content-free alert. */
  readonly background: boolean;
}

/** The localisation key of the content-free alert of a high-priority push; the app ships its text. */
export const ALERT_LOC_KEY = "NEW_MESSAGE";

export function apnsShape(priority: PushNotification["priority"]): ApnsShape {
  return priority === "high" ? { pushType: "alert", apnsPriority: 10, background: false } : { pushType: "background", apnsPriority: 5, background: true };
}
