import { isEmbeddedDefault } from "../config/embedded.ts";
import type { Config } from "../config/schema.ts";

/**
 * ROUTING_DEMO when set; unset, the demo is on only where its token route cannot hurt: the
 * embedded default (one node, no external backend) signing with the dev secret from the data dir.
 */
export function demoEnabled(config: Config, auth: { readonly devSecret?: unknown }): boolean {
  return config.demo ?? (isEmbeddedDefault(config) && auth.devSecret !== undefined);
}
