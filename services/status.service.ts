import type { ServiceSchema } from "moleculer";
import { statusSnapshot } from "../status/snapshot.ts";
import type { Throughput } from "../status/throughput.ts";

/**
 * Hosts this node's throughput sampler (one sample a second) and answers the operator queries of
 * the status page: `status.throughput` (this node) and `status.snapshot` (the cluster as this node sees it).
 */
export function createStatusService(deps: { throughput: Throughput }): ServiceSchema {
  let timer: NodeJS.Timeout | undefined;
  return {
    name: "status",
    actions: {
      throughput: { handler: () => deps.throughput.rates() },
      snapshot: {
        handler(this: { broker: Parameters<typeof statusSnapshot>[0] }) {
          return statusSnapshot(this.broker);
        },
      },
    },
    async started() {
      deps.throughput.sample();
      timer = setInterval(() => deps.throughput.sample(), 1000);
      timer.unref();
    },
    async stopped() {
      clearInterval(timer);
    },
  };
}
