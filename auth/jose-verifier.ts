import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { LRUCache } from "lru-cache";
import { RoutingError } from "../core/errors.ts";
import { identityFromSubject } from "../core/urn.ts";
import type { Principal, TokenVerifier } from "./verifier.ts";

/**
 * Default leeway for `exp` and `nbf`: clock skew between the token issuer and this node up to this
 * much neither refuses a fresh token nor keeps an expired one alive longer. docs/protocol.md states it
 * (a test keeps the two equal).
 */
export const JWT_CLOCK_TOLERANCE_SECONDS = 5;

export interface TokenVerifierOptions {
  /** HS256 shared secret. Enables HS256 (and only HS256) tokens. */
  secret?: string;
  /** JWKS endpoint. Enables RS256 and ES256 tokens, keys chosen by the token's `kid`/`alg`. */
  jwksUrl?: string;
  /** Required `iss`, if set. */
  issuer?: string;
  /** Required `aud` (one of, when the token carries an array), if set. */
  audience?: string;
  /** Leeway for `exp` / `nbf`, in seconds. Default JWT_CLOCK_TOLERANCE_SECONDS (5). */
  clockToleranceSec?: number;
  /** Least time between two JWKS fetches triggered by an unknown `kid`. Default 30 000 ms. */
  jwksCooldownMs?: number;
  /** Age after which the cached JWKS is refetched before use. Default 600 000 ms (10 min). */
  jwksCacheMaxAgeMs?: number;
  /** JWKS HTTP request timeout. Default 5 000 ms. */
  jwksTimeoutMs?: number;
  /** Verified tokens remembered (LRU, keyed by the token string). 0 disables the cache. Default 10 000. */
  cacheSize?: number;
  /**
   * Longest time a verified token is served from the cache before it is verified again (so a key
   * removed from the JWKS stops being trusted within about this long, like jose's own key cache).
   * Its `exp` is enforced on every hit regardless. Default 300 000 ms (5 min).
   */
  cacheTtlMs?: number;
  /** Clock in epoch ms (tests). Default `Date.now`. */
  now?: () => number;
}

/** Tokens longer than this are refused outright (no legitimate bearer token comes close). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

const HMAC_ALGS = ["HS256"] as const;
const JWKS_ALGS = ["RS256", "ES256"] as const;

interface CacheEntry {
  readonly principal: Principal;
  /** `exp` in epoch seconds, as in the token. */
  readonly exp: number | undefined;
  /** Epoch ms after which the entry must be verified again. */
  readonly reverifyAt: number;
}

const expired = () => new RoutingError("TOKEN_EXPIRED", "token expired");

/**
 * A TokenVerifier over jose: HS256 with `secret`, RS256/ES256 with `jwksUrl` (both: either, chosen
 * by the token's `alg`). Errors never carry the token or claim values; only JWKS fetch failures
 * keep their cause (URL / network detail, nothing from the token).
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { secret, jwksUrl, issuer, audience } = options;
  if (!secret && !jwksUrl) throw new TypeError("createTokenVerifier needs a secret or a jwksUrl");
  const clockToleranceSec = options.clockToleranceSec ?? JWT_CLOCK_TOLERANCE_SECONDS;
  const cacheSize = options.cacheSize ?? 10_000;
  const cacheTtlMs = options.cacheTtlMs ?? 300_000;
  const now = options.now ?? Date.now;
  if (!(clockToleranceSec >= 0)) throw new TypeError("clockToleranceSec must be >= 0");
  if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new TypeError("cacheSize must be an integer >= 0");
  if (!(cacheTtlMs >= 0)) throw new TypeError("cacheTtlMs must be >= 0");

  const secretKey = secret ? new TextEncoder().encode(secret) : undefined;
  // Imported once: given the raw bytes, jose imports a CryptoKey on every verify (~6 KB of garbage
  // per WebSocket handshake, measured; issue 16). A rejected import is retried on the next token.
  let hmacKey: Promise<CryptoKey> | undefined;
  const importHmacKey = (raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> =>
    (hmacKey ??= crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]).catch((err: unknown) => {
      hmacKey = undefined;
      throw err;
    }));
  const jwks = jwksUrl
    ? createRemoteJWKSet(new URL(jwksUrl), {
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
        timeoutDuration: options.jwksTimeoutMs ?? 5_000,
      })
    : undefined;
  const algorithms: string[] = [...(secretKey ? HMAC_ALGS : []), ...(jwks ? JWKS_ALGS : [])];

  // jose checks `alg` against `algorithms` before calling this, so only accepted algs arrive here.
  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (header.alg === "HS256" && secretKey) return importHmacKey(secretKey);
    if (!jwks) throw new errors.JOSEAlgNotAllowed("alg not allowed");
    try {
      return await jwks(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys || err instanceof errors.JOSENotSupported) throw err;
      // Fetch / HTTP status / JSON / key-set problems: not the client's token, but still no principal.
      const message = err instanceof errors.JWKSTimeout ? "signing keys unavailable (JWKS fetch timed out)" : "signing keys unavailable (JWKS fetch failed)";
      throw new RoutingError("BACKEND_UNAVAILABLE", message, { cause: err });
    }
  };

  // Expiry is checked against the injected clock on each hit (reverifyAt, exp), not by lru-cache's own timer.
  const cache = cacheSize > 0 ? new LRUCache<string, CacheEntry>({ max: cacheSize }) : undefined;

  async function verifySignatureAndClaims(token: string): Promise<JWTPayload> {
    const verifyOptions: JWTVerifyOptions = {
      algorithms,
      issuer,
      audience,
      clockTolerance: clockToleranceSec,
      currentDate: new Date(now()),
    };
    try {
      return (await jwtVerify(token, getKey, verifyOptions)).payload;
    } catch (err) {
      // A JWKS holding several keys that fit (no kid): try each, as jose documents.
      if (err instanceof errors.JWKSMultipleMatchingKeys) {
        for await (const key of err) {
          try {
            return (await jwtVerify(token, key, verifyOptions)).payload;
          } catch (inner) {
            if (inner instanceof errors.JWSSignatureVerificationFailed) continue;
            throw inner;
          }
        }
        throw new errors.JWSSignatureVerificationFailed();
      }
      throw err;
    }
  }

  return {
    async verify(token: string | undefined): Promise<Principal> {
      if (token === undefined || token === null || token === "") throw new RoutingError("TOKEN_MISSING", "no bearer token");
      if (typeof token !== "string") throw new RoutingError("TOKEN_INVALID", "token is malformed");
      if (token.length > MAX_TOKEN_LENGTH) throw new RoutingError("TOKEN_INVALID", "token is too long");

      const hit = cache?.get(token);
      if (hit) {
        const nowMs = now();
        if (hit.exp !== undefined && hit.exp <= Math.floor(nowMs / 1000) - clockToleranceSec) {
          cache?.delete(token);
          throw expired();
        }
        if (nowMs < hit.reverifyAt) return hit.principal;
        cache?.delete(token);
      }

      let payload: JWTPayload;
      try {
        payload = await verifySignatureAndClaims(token);
      } catch (err) {
        throw toRoutingError(err);
      }

      if (payload.sub === undefined) throw new RoutingError("INVALID_IDENTITY", "token has no sub claim");
      const identity = typeof payload.sub === "string" ? identityFromSubject(payload.sub) : undefined;
      if (!identity) throw new RoutingError("INVALID_IDENTITY", "token sub is not a valid URN or bare id");
      const exp = typeof payload.exp === "number" ? payload.exp : undefined;
      const principal: Principal = Object.freeze({ identity, expiresAt: exp === undefined ? undefined : exp * 1000 });
      cache?.set(token, { principal, exp, reverifyAt: now() + cacheTtlMs });
      return principal;
    },
  };
}

/** jose's errors as RoutingErrors. Token-derived errors drop their cause: jose attaches the payload. */
function toRoutingError(err: unknown): RoutingError {
  if (err instanceof RoutingError) return err;
  if (err instanceof errors.JWTExpired) return expired();
  if (err instanceof errors.JWTClaimValidationFailed) {
    // `claim` and `reason` are jose's fixed names ("iss", "check_failed"), never token values.
    return new RoutingError("TOKEN_INVALID", `token claim "${err.claim}" failed validation (${err.reason})`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported)
    return new RoutingError("TOKEN_INVALID", "token algorithm not accepted");
  if (err instanceof errors.JWSSignatureVerificationFailed) return new RoutingError("TOKEN_INVALID", "token signature verification failed");
  if (err instanceof errors.JWKSNoMatchingKey) return new RoutingError("TOKEN_INVALID", "no signing key matches the token's kid/alg");
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new RoutingError("TOKEN_INVALID", "token is malformed");
  if (err instanceof errors.JOSEError) return new RoutingError("TOKEN_INVALID", `token rejected (${err.code})`);
  return new RoutingError("TOKEN_INVALID", "token rejected", { cause: err });
}
