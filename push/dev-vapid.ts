import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import webpush from "web-push";
import { createFileOnce } from "../auth/dev-secret.ts";

export const DEV_VAPID_FILE = "dev-vapid-keys.json";

export interface VapidKeys {
  /** Uncompressed P-256 public key, base64url (what browsers take as `applicationServerKey`). */
  readonly publicKey: string;
  /** The private scalar, base64url. */
  readonly privateKey: string;
}

function readKeys(path: string): VapidKeys | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const keys = JSON.parse(text) as Partial<VapidKeys>;
  if (typeof keys.publicKey !== "string" || typeof keys.privateKey !== "string") {
    throw new Error(`the dev VAPID key file ${path} is malformed; delete it to have a new pair created`);
  }
  return { publicKey: keys.publicKey, privateKey: keys.privateKey };
}

/**
 * The VAPID key pair used on the embedded default when ROUTING_VAPID_PUBLIC_KEY and
 * ROUTING_VAPID_PRIVATE_KEY are unset: `<dataDir>/dev-vapid-keys.json` (mode 0600), created on
 * first use as the dev JWT secret is (race-free across processes), so browser subscriptions made
 * against it survive restarts.
 */
export function loadOrCreateDevVapidKeys(dataDir: string): VapidKeys & { path: string; created: boolean } {
  const path = join(dataDir, DEV_VAPID_FILE);
  const existing = readKeys(path);
  if (existing) return { ...existing, path, created: false };
  mkdirSync(dataDir, { recursive: true });
  const fresh = webpush.generateVAPIDKeys();
  const created = createFileOnce(path, JSON.stringify({ publicKey: fresh.publicKey, privateKey: fresh.privateKey }) + "\n");
  const keys = created ? fresh : readKeys(path);
  if (!keys) throw new Error(`the dev VAPID key file ${path} vanished while it was being created`);
  return { publicKey: keys.publicKey, privateKey: keys.privateKey, path, created };
}
