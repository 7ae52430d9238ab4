/** The `exp` claim of a JWT in epoch ms, read without verifying (the service verifies); undefined if absent or unreadable. */
export function tokenExpiry(jwt: string): number | undefined {
  const part = jwt.split(".")[1];
  if (!part) return undefined;
  try {
    const b64 = part
      .replace(/-/g, "+")
      .replace(/_/g, "/")
      .padEnd(Math.ceil(part.length / 4) * 4, "=");
    const claims = JSON.parse(decodeBase64Text(b64)) as { exp?: unknown };
    return typeof claims.exp === "number" ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function decodeBase64Text(b64: string): string {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * When to refresh a token that expires at `expiresAt`: 30 s before it expires, or at 80 % of its
 * remaining life if that is earlier, but never before half of it (a short-lived token is not
 * refreshed in a tight loop).
 */
export function refreshDelayMs(expiresAt: number, now: number): number {
  const left = Math.max(0, expiresAt - now);
  return Math.max(left * 0.5, Math.min(left * 0.8, left - 30_000));
}

/** A message id for a send without one: a UUID (crypto.randomUUID where the runtime has it). */
export function newMessageId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  // Non-secure browser contexts have getRandomValues but not randomUUID.
  const b = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
