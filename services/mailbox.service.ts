import type { Context, ServiceSchema } from "moleculer";
import type { Mailbox } from "../backends/mailbox.ts";
import type { Urn } from "../core/urn.ts";
import { purgeRecipient, type PurgeDeps } from "../lifecycle/purge.ts";
import { mapped } from "./errors.ts";

const urn = { type: "string", pattern: /^urn:[^:\s]+:[^:\s]+:[^:\s]+$/ };

/** The integrator API to mailboxes. Envelopes come back as stored (opaque payloads). */
export function createMailboxService(deps: { mailbox: Mailbox; purge?: Omit<PurgeDeps, "mailbox"> }): ServiceSchema {
  return {
    name: "mailbox",
    actions: {
      fetch: {
        params: { urn, limit: { type: "number", integer: true, min: 1, max: 500, optional: true, convert: true } },
        handler: (ctx: Context<{ urn: Urn; limit?: number }>) =>
          mapped(async () => {
            const entries = await deps.mailbox.fetch(ctx.params.urn, ctx.params.limit ?? 50);
            return entries.map((e) => ({ id: e.messageId, envelope: JSON.parse(e.envelope) as object, queuedAt: new Date(e.queuedAt).toISOString() }));
          }),
      },
      ack: {
        params: { urn, messageIds: { type: "array", items: "string", min: 1, max: 500 } },
        handler: (ctx: Context<{ urn: Urn; messageIds: string[] }>) =>
          mapped(async () => ({ removed: await deps.mailbox.ack(ctx.params.urn, ctx.params.messageIds) })),
      },
      /** Everything kept of one recipient (account deletion): lifecycle/purge.ts. Answers the counts removed. */
      purge: {
        params: { urn },
        handler: (ctx: Context<{ urn: Urn }>) =>
          mapped(async () => {
            if (!deps.purge) throw new Error("mailbox.purge needs the device store, push queue and bus");
            return purgeRecipient({ mailbox: deps.mailbox, ...deps.purge }, ctx.params.urn);
          }),
      },
      /** The largest mailboxes' message counts, largest first (counts only). */
      largest: {
        params: { limit: { type: "number", integer: true, min: 1, max: 100, optional: true, convert: true } },
        handler: (ctx: Context<{ limit?: number }>) => mapped(async () => ({ counts: await deps.mailbox.largest(ctx.params.limit ?? 10) })),
      },
      depth: {
        params: { urn },
        handler: (ctx: Context<{ urn: Urn }>) =>
          mapped(async () => {
            const depth = await deps.mailbox.depth(ctx.params.urn);
            return { count: depth.count, oldestAgeMs: depth.oldestQueuedAt === undefined ? 0 : Date.now() - depth.oldestQueuedAt };
          }),
      },
    },
  };
}

export { urn as urnParam };
