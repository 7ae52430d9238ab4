import type { Backends } from "../backends/factory.ts";
import type { PartSchema } from "../runtime/lifecycle.ts";

/**
 * Owns the storage connections (bus, mailbox, devices, push queue, presence). They are opened by
 * the composition root before the broker starts (every other part is built on them) and closed
 * here, last: every service that uses them depends on this one, so it stops after all of them.
 */
export function createBackendsService(deps: { backends: Backends }): PartSchema {
  return {
    name: "backends",
    async stopped() {
      await deps.backends.close();
    },
  };
}
