/** Prints the error-code table (Markdown) from the registry in core/errors.ts. */
import { ERRORS } from "../core/errors.ts";

export function errorTable(): string {
  return Object.entries(ERRORS)
    .map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.retryable ? "yes" : "no"} | ${e.doc} |`)
    .join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(errorTable());
