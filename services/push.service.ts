import type { Context, ServiceSchema } from "moleculer";
import { createActor, type ActorRefFrom } from "xstate";
import { pushMachine, type PushMachine } from "../actors/push/machine.ts";
import type { DeviceStore, PushPlatform } from "../backends/device-store.ts";
import type { Mailbox } from "../backends/mailbox.ts";
import type { PresenceStore } from "../backends/presence-store.ts";
import type { PendingPush, PushQueue } from "../backends/push-queue.ts";
import type { Metrics } from "../metrics/registry.ts";
import { createDispatcher, type Dispatcher } from "../push/dispatcher.ts";
import type { PushResult, PushSender } from "../push/sender.ts";
import { mapped } from "./errors.ts";

export interface PushServiceDeps {
  readonly queue: PushQueue;
  readonly presence: PresenceStore;
  readonly mailbox: Mailbox;
  readonly devices: DeviceStore;
  /** The enabled providers; the service closes them when it stops. */
  readonly senders: readonly PushSender[];
  readonly metrics: Metrics;
  readonly collapseMs: number;
  readonly maxAttempts: number;
  readonly retryBaseMs: number;
  readonly concurrency: number;
  /** How long a stop waits for the batch in progress. */
  readonly drainTimeoutMs: number;
  /** Queue poll interval, for pushes enqueued by other nodes (default 1000 ms). */
  readonly pollMs?: number;
  readonly now?: () => number;
}

/** Pushes taken per batch, per provider request allowed in flight. */
const BATCH_PER_CONCURRENCY = 8;

type PlatformCounts = Record<PushResult["kind"], number>;

/**
 * Hosts the push actor: wakes it on `push.queue.changed` (emitted locally after the router
 * enqueues) and on a poll, and carries out its effects with the dispatcher's rules. Routing never
 * waits for any of this: it only enqueues.
 */
export function createPushService(deps: PushServiceDeps): ServiceSchema {
  const { queue } = deps;
  const counts = new Map<PushPlatform, PlatformCounts>(deps.senders.map((s) => [s.platform, { sent: 0, retry: 0, invalidToken: 0, failed: 0 }]));
  let dispatcher: Dispatcher | undefined;
  let actor: ActorRefFrom<PushMachine> | undefined;
  let poll: NodeJS.Timeout | undefined;
  let stopped: Promise<void> = Promise.resolve();

  const onResult = (platform: PushPlatform, kind: PushResult["kind"]) => {
    const c = counts.get(platform);
    if (c) c[kind]++;
    deps.metrics.pushed(platform, kind);
  };

  return {
    name: "push",
    actions: {
      stats: {
        handler: () =>
          mapped(async () => ({
            state: actor?.getSnapshot().value ?? "stopped",
            queued: await queue.count(),
            deadLetters: await queue.deadLetterCount(),
            platforms: Object.fromEntries([...counts].map(([platform, c]) => [platform, { ...c }])),
            outcomes: dispatcher?.outcomes(),
          })),
      },
      deadLetters: {
        params: { limit: { type: "number", integer: true, min: 1, max: 500, optional: true, convert: true } },
        handler: (ctx: Context<{ limit?: number }>) =>
          mapped(async () =>
            (await queue.deadLetters(ctx.params.limit ?? 50)).map((d) => ({
              recipientId: d.recipientId,
              messageId: d.messageId,
              priority: d.priority,
              dueAt: new Date(d.dueAt).toISOString(),
              reason: d.reason,
              deadAt: new Date(d.deadAt).toISOString(),
            })),
          ),
      },
    },
    events: {
      "push.queue.changed"() {
        actor?.send({ type: "push.queue.changed" });
      },
    },
    async started() {
      const log = this.logger;
      const { presence, mailbox, devices, senders, collapseMs, maxAttempts, retryBaseMs, concurrency, now } = deps;
      const rules = createDispatcher({
        queue,
        presence,
        mailbox,
        devices,
        senders,
        collapseMs,
        maxAttempts,
        retryBaseMs,
        concurrency,
        now,
        batchSize: deps.concurrency * BATCH_PER_CONCURRENCY,
        onResult,
        log: { warn: (obj, msg) => log.warn(obj, msg), debug: (obj, msg) => log.debug(obj, msg) },
      });
      dispatcher = rules;
      let batch: readonly PendingPush[] = [];
      let finish: () => void = () => {};
      stopped = new Promise<void>((resolve) => (finish = resolve));
      const failed = (what: string) => (err: unknown) => {
        log.warn({ err }, `push ${what} failed; backing off`);
        actor?.send({ type: "push.batch.failed" });
      };
      actor = createActor(
        pushMachine.provide({
          actions: {
            takeBatch: () => {
              rules.take().then(({ pushes, retryInMs }) => {
                batch = pushes;
                actor?.send({ type: "push.batch.taken", count: pushes.length, retryInMs });
              }, failed("take"));
            },
            sendBatch: () => {
              const taken = batch;
              batch = [];
              rules.send(taken).then((outcome) => actor?.send({ type: "push.batch.done", ...outcome }), failed("send"));
            },
            stopped: () => finish(),
          },
        }),
        { id: "push", input: { retryBaseMs: deps.retryBaseMs, drainTimeoutMs: deps.drainTimeoutMs } },
      ).start();
      poll = setInterval(() => actor?.send({ type: "push.queue.changed" }), deps.pollMs ?? 1000);
      poll.unref();
      // Whatever was left queued before this start.
      actor.send({ type: "push.queue.changed" });
    },
    async stopped() {
      clearInterval(poll);
      actor?.send({ type: "push.stop" });
      await stopped;
      await Promise.allSettled(deps.senders.map((s) => s.close()));
    },
  };
}
