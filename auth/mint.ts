import { SignJWT } from "jose";
import { identityFromSubject } from "../core/urn.ts";

export interface MintOptions {
  /** jose time span ("24h", "15m", "7 days") from now. Default "24h". */
  expiresIn?: string;
  issuer?: string;
  audience?: string;
}

/**
 * An HS256 token for development and tests: `sub` = subject (a bare id or a URN), `iat`, `exp`, and
 * `iss` / `aud` when given. Throws a TypeError for a subject the verifier would refuse
 * (INVALID_IDENTITY) or a malformed `expiresIn`.
 */
export async function mintDevToken(secret: string, subject: string, options: MintOptions = {}): Promise<string> {
  if (!secret) throw new TypeError("mintDevToken needs a secret");
  if (identityFromSubject(subject) === undefined) {
    throw new TypeError("subject must be a bare id (no colon) or a URN urn:<namespace>:<type>:<id>");
  }
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "24h");
  if (options.issuer !== undefined) jwt.setIssuer(options.issuer);
  if (options.audience !== undefined) jwt.setAudience(options.audience);
  return jwt.sign(new TextEncoder().encode(secret));
}
