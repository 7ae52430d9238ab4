import type { Backends } from "../backends/factory.ts";
import type { DataDirLock } from "../platform/data-dir-lock.ts";
import type { PartSchema } from "../platform/lifecycle.ts";

/**
 * Owns the storage connections (bus, mailbox, devices, push queue, presence). They are opened by
 * the composition root before the broker starts (every other part is built on them) and closed
 * here, last (then the data-dir lock goes): every service that uses them depends on this one, so it stops after all of them.
 */
export function createBackendsService(deps: { backends: Backends; lock?: DataDirLock }): PartSchema {
  return {
    name: "backends",
    async stopped() {
      await deps.backends.close();
      // The data dir is free for the next process only once its files are closed.
      deps.lock?.release();
    },
  };
}
