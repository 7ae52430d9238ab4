import { randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const DEV_SECRET_FILE = "dev-jwt-secret";

/** Same floor as ROUTING_JWT_SECRET's schema. */
const MIN_SECRET_LENGTH = 16;

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function readSecret(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (errno(err) === "ENOENT") return undefined;
    throw err;
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`the dev JWT secret in ${path} is empty or shorter than ${MIN_SECRET_LENGTH} characters; delete the file to have a new one created`);
  }
  return secret;
}

/**
 * The HS256 secret used when neither ROUTING_JWT_SECRET nor ROUTING_JWKS_URL is set:
 * `<dataDir>/dev-jwt-secret`, created on first use (32 random bytes, base64url, mode 0600).
 *
 * Creation is race-free across processes (`npm start` and `npm run token` at the same moment): the
 * secret is written completely to a private temp file (opened with `wx`), then hard-linked to the
 * final name, which fails with EEXIST if another process won; the loser reads the winner's secret.
 * Readers therefore never see a half-written file. On a file system without hard links it falls
 * back to creating the final file directly with `wx`.
 */
export function loadOrCreateDevSecret(dataDir: string): { secret: string; created: boolean; path: string } {
  const path = join(dataDir, DEV_SECRET_FILE);
  const existing = readSecret(path);
  if (existing !== undefined) return { secret: existing, created: false, path };

  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  const created = createFileOnce(path, secret + "\n");
  if (created) return { secret, created: true, path };
  const winner = readSecret(path);
  if (winner === undefined) throw new Error(`the dev JWT secret ${path} vanished while it was being created`);
  return { secret: winner, created: false, path };
}

/**
 * Creates `path` with `content` (mode 0600) unless it exists; true if this call created it.
 * Race-free across processes: written completely to a private temp file, then hard-linked to the
 * final name (EEXIST: another process won), so a reader never sees a half-written file.
 */
export function createFileOnce(path: string, content: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  writeFileSync(tmp, content, { flag: "wx", mode: 0o600 });
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    const code = errno(err);
    if (code === "EEXIST") return false;
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS") return createDirectly(path, content);
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone; nothing to clean up
    }
  }
}

function createDirectly(path: string, content: string): boolean {
  try {
    writeFileSync(path, content, { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if (errno(err) === "EEXIST") return false;
    throw err;
  }
}
