import type { PartSchema } from "../platform/lifecycle.ts";

/**
 * Hosts the mailbox retention sweep (lifecycle/retention.ts, docs/data-lifecycle.md): started with
 * the node, stopped (a sweep in progress finishes) before the mailbox and the backends close.
 */
export function createRetentionService(deps: { start: () => { stop(): Promise<void> } }): PartSchema {
  let sweep: { stop(): Promise<void> } | undefined;
  return {
    name: "retention",
    async started() {
      sweep = deps.start();
    },
    async stopped() {
      await sweep?.stop();
    },
  };
}
