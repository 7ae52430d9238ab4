/** Prints the configuration table (Markdown) from the one schema: `npm run config:doc`. */
import { envName, settingEntries } from "../config/schema.ts";

export function configTable(): string {
  const rows = settingEntries().map(([key, schema]) => {
    const def = schema.default === undefined ? "—" : `\`${String(schema.default)}\``;
    const kind = schema.anyOf ? schema.anyOf.map((s: { const: string }) => `\`${s.const}\``).join(" \\| ") : schema.type;
    return `| \`${envName(key)}\` | ${def} | ${kind} | ${schema.description ?? ""} |`;
  });
  return ["| variable | default | type | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(configTable());
