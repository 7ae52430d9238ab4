import type { AddressInfo, Server } from "node:net";

/** How many ports past a taken default are tried, as dev servers do. */
const FALLBACK_TRIES = 20;

function isAddressInUse(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: string }).code === "EADDRINUSE";
}

/**
 * Binds with the contract's port rule: an explicitly configured port that is taken is fatal;
 * a taken default moves to the next free one and says so in one log line.
 */
export async function listenWithFallback(
  name: string,
  listen: (port: number) => Promise<number>,
  port: number,
  explicit: boolean,
  log: { info(msg: string): void },
): Promise<number> {
  for (let candidate = port, tries = 0; ; candidate++, tries++) {
    try {
      const bound = await listen(candidate);
      if (candidate !== port) log.info(`${name} port ${port} is taken; using ${bound} instead`);
      return bound;
    } catch (err) {
      if (!isAddressInUse(err) || port === 0) throw err;
      if (explicit)
        throw new Error(`${name} port ${port} is already in use (set explicitly by ${name === "http" ? "ROUTING_HTTP_PORT" : "ROUTING_MQTT_PORT"})`, {
          cause: err,
        });
      if (tries >= FALLBACK_TRIES) throw new Error(`${name} ports ${port}..${candidate} are all in use`, { cause: err });
    }
  }
}

/** Binds a node:net (or http) server; resolves the bound port, rejects with the bind error (EADDRINUSE when taken). */
export function listenServer(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off("listening", onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ host, port, exclusive: true });
  });
}
