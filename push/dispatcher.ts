import pLimit from "p-limit";
import type { DeviceStore, PushPlatform } from "../backends/device-store.ts";
import type { Mailbox, MailboxDepth } from "../backends/mailbox.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { PendingPush, PushQueue } from "../backends/push-queue.ts";
import { jitteredDelayMs } from "../core/backoff.ts";
import { HIGH_PRIORITY } from "../core/envelope.ts";
import type { Urn } from "../core/urn.ts";
import { collapseKeyFor, type PushNotification, type PushResult, type PushSender } from "./sender.ts";

export interface DispatcherDeps {
  readonly queue: PushQueue;
  readonly presence: PresenceStore;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  /** The enabled providers; tokens of a platform without a sender are left alone. */
  readonly senders: readonly PushSender[];
  readonly collapseMs: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  /** Provider requests in flight at most. */
  readonly concurrency: number;
  /** Pushes taken from the queue at once. */
  readonly batchSize: number;
  readonly now?: () => number;
  /** Every provider answer (metrics). */
  readonly onResult?: (platform: PushPlatform, result: PushResult["kind"]) => void;
  readonly log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/** What became of one due push. */
export type PushOutcome = "sent" | "online" | "read" | "collapsed" | "noDevice" | "failed" | "deadLettered" | "retry";

export interface TakenBatch {
  readonly pushes: readonly PendingPush[];
  /** Set when nothing is due now but a retry is, this many ms later. */
  readonly retryInMs?: number;
}

/** For the push actor: `settled` pushes left the queue, `retried` ones stay for a later batch. */
export interface BatchOutcome {
  readonly settled: number;
  readonly retried: number;
}

export interface LastPush {
  /** Epoch ms the push went out (dispatcher clock). */
  readonly at: number;
  /** `dueAt` of the push that went out: the router's queuedAt of the message it announced. */
  readonly dueAt: number;
  readonly high: boolean;
}

interface RetryState {
  readonly attempts: number;
  readonly notBefore: number;
  /** Tokens this push already reached: a retry goes to the others only. */
  readonly reached: ReadonlySet<string>;
}

/**
 * Collapse: a recipient got a push less than `collapseMs` ago and a message it announced is still
 * unread (the oldest unacked message is no newer than it), so this push would tell the device
 * nothing new. A high-priority push is not swallowed by an earlier normal one. Once the window
 * passed, or the recipient acked what was announced, the next message pushes again.
 */
export function collapses(last: LastPush | undefined, depth: MailboxDepth, now: number, collapseMs: number, high: boolean): boolean {
  if (last === undefined || now - last.at >= collapseMs) return false;
  if (high && !last.high) return false;
  return depth.oldestQueuedAt !== undefined && depth.oldestQueuedAt <= last.dueAt;
}

function groupByRecipient(pushes: readonly PendingPush[]): Map<Urn, PendingPush[]> {
  const groups = new Map<Urn, PendingPush[]>();
  for (const push of pushes) {
    const group = groups.get(push.recipientId);
    if (group) group.push(push);
    else groups.set(push.recipientId, [push]);
  }
  return groups;
}

/**
 * The push rules, as the push actor's effects call them: `take` reads the next batch of due
 * pushes, `send` works through one. State kept in memory (per node): the last push per recipient
 * (collapse) and attempts per queued push (retries); a restart forgets both, which costs at most a
 * repeated push or a few more attempts.
 *
 * Per push: no push while the recipient has an online session; none when the mailbox is already
 * empty (read elsewhere); collapse (see `collapses`); then one notification per registered token of
 * an enabled platform, `high` when priority >= 5. An invalid token is removed from the DeviceStore.
 * A retryable answer keeps the push queued with backoff; after `maxAttempts` it is dead-lettered.
 * A backend failure keeps it queued without counting an attempt.
 */
export function createDispatcher(deps: DispatcherDeps) {
  const { queue, presence, mailbox, devices, log } = deps;
  const now = deps.now ?? Date.now;
  const senders = new Map(deps.senders.map((s) => [s.platform, s]));
  // Provider requests in flight at most `concurrency`, started in call order.
  const limit = pLimit(deps.concurrency);
  const lastPush = new Map<Urn, LastPush>();
  const retries = new Map<number, RetryState>();
  const outcomes: Record<PushOutcome, number> = { sent: 0, online: 0, read: 0, collapsed: 0, noDevice: 0, failed: 0, deadLettered: 0, retry: 0 };

  /** `lastPush` is kept in push order (re-inserted on every push), so the old ones are at its front. */
  function forgetOldPushes(t: number): void {
    for (const [urn, last] of lastPush) {
      if (t - last.at < deps.collapseMs) break;
      lastPush.delete(urn);
    }
  }

  async function take(): Promise<TakenBatch> {
    const t = now();
    forgetOldPushes(t);
    let waiting = 0;
    let nextRetryAt = Infinity;
    for (const r of retries.values()) {
      if (r.notBefore <= t) continue;
      waiting++;
      nextRetryAt = Math.min(nextRetryAt, r.notBefore);
    }
    // Read past the pushes still waiting for their retry so they do not hold up newer ones.
    const fetch = deps.batchSize + waiting;
    const rows = await queue.pending(fetch);
    if (rows.length < fetch) {
      // The whole queue is in view: forget retries of pushes that left it some other way.
      const present = new Set(rows.map((p) => p.seq));
      for (const seq of retries.keys()) if (!present.has(seq)) retries.delete(seq);
    }
    const pushes = rows.filter((p) => (retries.get(p.seq)?.notBefore ?? 0) <= t).slice(0, deps.batchSize);
    return pushes.length === 0 && waiting > 0 ? { pushes, retryInMs: Math.max(1, nextRetryAt - t) } : { pushes };
  }

  async function sendToTokens(push: PendingPush, notification: Omit<PushNotification, "token">, tokens: Array<{ token: string; sender: PushSender }>) {
    const answers = await Promise.all(
      tokens.map(({ token, sender }) => limit(() => sender.send({ ...notification, token })).then((result) => ({ token, sender, result }))),
    );
    const reached: string[] = [];
    let retry: { reason: string; retryAfterMs: number } | undefined;
    for (const { token, sender, result } of answers) {
      deps.onResult?.(sender.platform, result.kind);
      if (result.kind === "sent") reached.push(token);
      else if (result.kind === "invalidToken") {
        // A failed removal is not worth a repeated push to the other tokens: the provider will say it again next time.
        await devices.removeToken(token).then(
          () => log.debug({ messageId: push.messageId, platform: sender.platform, reason: result.reason }, "push token invalid; removed"),
          (err: unknown) => log.warn({ err, messageId: push.messageId, platform: sender.platform }, "push token invalid; removing it failed"),
        );
      } else if (result.kind === "retry") {
        retry = { reason: `${sender.platform}: ${result.reason}`, retryAfterMs: Math.max(retry?.retryAfterMs ?? 0, result.retryAfterMs ?? 0) };
      } else log.warn({ messageId: push.messageId, platform: sender.platform, reason: result.reason }, "push failed");
    }
    return { reached, retry };
  }

  /** Decides and sends one push; anything but "retry" takes it out of the queue. */
  async function handle(push: PendingPush): Promise<PushOutcome> {
    const recipient = push.recipientId;
    if ((await presence.get(recipient)).length > 0) return "online";
    const depth = await mailbox.depth(recipient);
    if (depth.count === 0) return "read";
    const high = push.priority >= HIGH_PRIORITY;
    // A push being retried was already decided on: collapsing it now would skip the tokens it still owes.
    const state = retries.get(push.seq);
    if (state === undefined && collapses(lastPush.get(recipient), depth, now(), deps.collapseMs, high)) return "collapsed";
    const tokens = (await devices.list(recipient)).flatMap((d) => {
      const sender = senders.get(d.platform);
      return sender && !state?.reached.has(d.token) ? [{ token: d.token, sender }] : [];
    });
    if (tokens.length === 0) return state !== undefined && state.reached.size > 0 ? "sent" : "noDevice";
    const notification = { recipientId: recipient, priority: high ? "high" : "normal", collapseKey: collapseKeyFor(recipient), unread: depth.count } as const;
    const { reached, retry } = await sendToTokens(push, notification, tokens);
    const reachedAll = new Set([...(state?.reached ?? []), ...reached]);
    if (reachedAll.size > 0) {
      lastPush.delete(recipient);
      lastPush.set(recipient, { at: now(), dueAt: push.dueAt, high });
    }
    if (retry === undefined) return reachedAll.size > 0 ? "sent" : "failed";
    const attempts = (state?.attempts ?? 0) + 1;
    if (attempts >= deps.maxAttempts) {
      await queue.deadLetter(push.seq, retry.reason);
      retries.delete(push.seq);
      log.warn({ messageId: push.messageId, attempts, reason: retry.reason }, "push dead-lettered");
      return "deadLettered";
    }
    const delay = Math.max(jitteredDelayMs(deps.retryBaseMs, attempts), retry.retryAfterMs);
    retries.set(push.seq, { attempts, notBefore: now() + delay, reached: reachedAll });
    return "retry";
  }

  /**
   * Works through one batch: recipients in parallel (provider requests bounded by `concurrency`),
   * each recipient's pushes in order so collapsing sees the push just made. Completes the settled
   * pushes together at the end.
   */
  async function send(batch: readonly PendingPush[]): Promise<BatchOutcome> {
    const done: number[] = [];
    let retried = 0;
    let deadLettered = 0;
    await Promise.all(
      [...groupByRecipient(batch).values()].map(async (pushes) => {
        for (const push of pushes) {
          let outcome: PushOutcome;
          try {
            outcome = await handle(push);
          } catch (err) {
            log.warn({ err, messageId: push.messageId }, "push deferred: a backend failed");
            outcome = "retry";
          }
          outcomes[outcome]++;
          if (outcome === "retry") retried++;
          else if (outcome === "deadLettered") deadLettered++;
          else done.push(push.seq);
        }
      }),
    );
    await queue.complete(done);
    for (const seq of done) retries.delete(seq);
    return { settled: done.length + deadLettered, retried };
  }

  return { take, send, outcomes: (): Readonly<Record<PushOutcome, number>> => ({ ...outcomes }) };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;
