/**
 * `npm run token -- <subject> [--ttl 24h]`: prints one HS256 token for <subject> (a bare id such as
 * `alice`, or a URN) to stdout, signed with ROUTING_JWT_SECRET or, if unset, the dev secret in the
 * data dir (created if absent, so it does not matter whether `npm start` ran first). Honours
 * ROUTING_JWT_ISSUER / ROUTING_JWT_AUDIENCE so the token passes the server's checks.
 * Exit codes: 0 token printed, 1 unexpected failure, 2 usage or configuration problem.
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config/load.ts";
import { loadOrCreateDevSecret } from "../auth/dev-secret.ts";
import { mintDevToken } from "../auth/mint.ts";
import { identityFromSubject } from "../core/urn.ts";

const USAGE = "usage: npm run token -- <subject> [--ttl 24h]   (subject: a bare id like alice, or urn:<ns>:<type>:<id>)";

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      allowPositionals: true,
      options: { ttl: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`);
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const [subject, ...extra] = parsed.positionals;
  if (subject === undefined || extra.length > 0) fail(USAGE);
  if (identityFromSubject(subject) === undefined) fail(`invalid subject: expected a bare id (no colon) or urn:<ns>:<type>:<id>\n${USAGE}`);

  let config;
  try {
    ({ config } = loadConfig());
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }

  let secret = config.jwtSecret;
  if (secret === undefined) {
    if (config.jwksUrl !== undefined) {
      fail(
        "ROUTING_JWKS_URL is set: the server accepts tokens from your identity provider (RS256/ES256), so mint them there. `npm run token` only signs HS256 tokens with ROUTING_JWT_SECRET or the dev secret.",
      );
    }
    secret = loadOrCreateDevSecret(config.dataDir).secret;
  }

  let token: string;
  try {
    token = await mintDevToken(secret, subject, { expiresIn: parsed.values.ttl ?? "24h", issuer: config.jwtIssuer, audience: config.jwtAudience });
  } catch (err) {
    if (err instanceof TypeError) fail(`${err.message}\n${USAGE}`);
    throw err;
  }
  process.stdout.write(`${token}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`token: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
