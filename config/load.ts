import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ConfigSchema, envName, settingEntries, type Config } from "./schema.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Names of the settings that were set explicitly (ports use it: a taken explicit port is fatal). */
export type ExplicitSettings = ReadonlySet<keyof Config>;

/**
 * Reads every `ROUTING_*` variable, rejects unknown ones and invalid values with one clear message
 * listing all problems, fills defaults and freezes the result.
 */
/** typebox says "Expected union value" for a bad choice: name the choices instead. */
function describeProblem(schema: TSchema, message: string): string {
  const choices = (schema.anyOf as TSchema[] | undefined)?.map((s) => s.const);
  if (choices && choices.length > 0 && choices.every((c) => typeof c === "string"))
    return `must be one of ${choices.map((c) => `\`${String(c)}\``).join(", ")}`;
  return message;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): { config: Config; explicit: ExplicitSettings } {
  const byEnv = new Map(settingEntries().map(([key, schema]) => [envName(key), { key, schema }]));
  const problems: string[] = [];
  const raw: Record<string, unknown> = {};
  const explicit = new Set<keyof Config>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("ROUTING_") || value === undefined) continue;
    const setting = byEnv.get(name);
    if (!setting) {
      problems.push(`${name} is not a known setting (see \`npm run config:doc\`)`);
      continue;
    }
    raw[setting.key] = Value.Convert(setting.schema, value);
    explicit.add(setting.key as keyof Config);
  }
  const withDefaults = Value.Default(ConfigSchema, Value.Clone(raw)) as Record<string, unknown>;
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    const key = error.path.replace(/^\//, "");
    problems.push(`${envName(key)}=${JSON.stringify(raw[key])}: ${describeProblem(error.schema, error.message)}`);
  }
  problems.push(...crossChecks(withDefaults));
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  const instanceId =
    (withDefaults.instanceId as string | undefined) ?? `${hostname().replace(/[^A-Za-z0-9_-]/g, "")}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const config = Object.freeze({ ...withDefaults, instanceId }) as Config;
  return { config, explicit };
}

/** Rules between settings, once each is valid on its own. */
function crossChecks(values: Record<string, unknown>): string[] {
  const dedup = values.dedupTtlSeconds;
  const retention = values.mailboxRetentionSeconds;
  if (typeof dedup === "number" && typeof retention === "number" && dedup < retention) {
    // A message redelivered after its de-duplication record lapsed, but still in the mailbox, would be stored twice.
    return [
      `ROUTING_DEDUP_TTL_SECONDS=${dedup} is shorter than ROUTING_MAILBOX_RETENTION_SECONDS=${retention}: de-duplication must remember a message id at least as long as the message is kept (raise ROUTING_DEDUP_TTL_SECONDS or lower the retention)`,
    ];
  }
  return [];
}
