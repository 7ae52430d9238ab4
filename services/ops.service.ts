import http from "node:http";
import type { Metrics } from "../metrics/registry.ts";
import type { PartSchema } from "../platform/lifecycle.ts";
import { listenServer, listenWithFallback } from "../platform/ports.ts";

export interface OpsServiceDeps {
  readonly metrics: Metrics;
  /** Every backend reachable and the broker link up. */
  readonly ready: () => Promise<boolean>;
  readonly host: string;
  readonly port: number;
  readonly portExplicit: boolean;
  readonly onListening: (port: number) => void;
}

/**
 * /healthz, /readyz and /metrics for a process with no gateway (the `mqtt-bridge` role): what an
 * orchestrator and Prometheus need. Started before the link and stopped after it (the bridge
 * depends on it), so liveness answers through the whole drain; readiness is 503 from its start.
 */
export function createOpsService(deps: OpsServiceDeps): PartSchema {
  let draining = false;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const answer = (status: number, body: string, type = "application/json"): void => {
      res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (path === "/healthz") return answer(200, '{"status":"ok"}');
    if (path === "/readyz") {
      const notReady = (): void => answer(503, '{"status":"not ready"}');
      if (draining) return notReady();
      void deps.ready().then((ok) => (ok && !draining ? answer(200, '{"status":"ready"}') : notReady()), notReady);
      return;
    }
    if (path === "/metrics") {
      void deps.metrics.scrape().then((text) => answer(200, text, deps.metrics.registry.contentType));
      return;
    }
    answer(404, '{"error":{"code":"NOT_FOUND","message":"no such route"}}');
  });
  return {
    name: "ops",
    draining: () => {
      draining = true;
    },
    async started() {
      const port = await listenWithFallback("http", (p) => listenServer(server, deps.host, p), deps.port, deps.portExplicit, this.logger);
      deps.onListening(port);
    },
    async stopped() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
