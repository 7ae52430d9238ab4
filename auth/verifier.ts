import type { Urn } from "../core/urn.ts";

export interface Principal {
  readonly identity: Urn;
  /** Epoch ms when the token expires, undefined if it has no `exp`. */
  readonly expiresAt: number | undefined;
}

/**
 * Turns a bearer token into a principal. Rejects with a RoutingError: TOKEN_MISSING (empty),
 * TOKEN_INVALID (signature, algorithm, issuer/audience, structure), TOKEN_EXPIRED, INVALID_IDENTITY
 * (`sub` absent or not a URN / bare id); BACKEND_UNAVAILABLE when the JWKS cannot be fetched (retryable:
 * the token may be fine).
 * The token itself never appears in an error message.
 */
export interface TokenVerifier {
  verify(token: string | undefined): Promise<Principal>;
}
