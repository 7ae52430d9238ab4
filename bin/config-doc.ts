/** Prints the configuration table (Markdown) from the one schema: `npm run config:doc`. */
import { envName, settingEntries } from "../config/schema.ts";

/**
 * The settings that change what a client observes on the wire: docs/protocol.md prints them (a test
 * keeps that table equal to this list's rows of the full table).
 */
export const CLIENT_SETTINGS = [
  "httpPort",
  "mqttPort",
  "jwtIssuer",
  "jwtAudience",
  "maxEnvelopeBytes",
  "dedupTtlSeconds",
  "mailboxRetentionSeconds",
  "mailboxMaxMessages",
  "mailboxMaxBytes",
  "wsMaxBufferBytes",
  "heartbeatSeconds",
  "authTimeoutMs",
  "mqttIngestTopic",
  "mqttReceiveTopic",
  "mqttAckTopic",
  "mqttWsPath",
] as const;

/** The whole table, or only the rows of `keys` (in the schema's order). */
export function configTable(keys?: readonly string[]): string {
  const rows = settingEntries()
    .filter(([key]) => keys === undefined || keys.includes(key))
    .map(([key, schema]) => {
      const def = schema.default === undefined ? "—" : `\`${String(schema.default)}\``;
      const kind = schema.anyOf ? schema.anyOf.map((s: { const: string }) => `\`${s.const}\``).join(" \\| ") : schema.type;
      return `| \`${envName(key)}\` | ${def} | ${kind} | ${schema.description ?? ""} |`;
    });
  return ["| variable | default | type | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(process.argv[2] === "--client" ? configTable(CLIENT_SETTINGS) : configTable());
