import { loadOrCreateDevSecret } from "./dev-secret.ts";
import { createTokenVerifier } from "./jose-verifier.ts";
import type { TokenVerifier } from "./verifier.ts";

export type { Principal, TokenVerifier } from "./verifier.ts";
export { createTokenVerifier, type TokenVerifierOptions } from "./jose-verifier.ts";
export { loadOrCreateDevSecret } from "./dev-secret.ts";
export { mintDevToken, type MintOptions } from "./mint.ts";

export interface AuthConfig {
  readonly jwtSecret?: string;
  readonly jwksUrl?: string;
  readonly jwtIssuer?: string;
  readonly jwtAudience?: string;
  readonly dataDir: string;
}

export interface ResolvedAuth {
  readonly verifier: TokenVerifier;
  /** Set when the dev secret from the data dir is in use (neither jwtSecret nor jwksUrl given). */
  readonly devSecret?: { readonly path: string; readonly created: boolean };
  /** The HS256 secret in use (jwtSecret or the dev secret), if any; for minting dev tokens. */
  readonly secret?: string;
}

/**
 * The verifier the configuration asks for: jwtSecret (HS256) and/or jwksUrl (RS256/ES256); with
 * neither, the dev secret in `<dataDir>/dev-jwt-secret` (created if absent). The caller logs
 * `devSecretNotice(devSecret.path)` in that case.
 */
export function resolveAuth(config: AuthConfig): ResolvedAuth {
  const common = { issuer: config.jwtIssuer, audience: config.jwtAudience };
  if (config.jwtSecret || config.jwksUrl) {
    const verifier = createTokenVerifier({ ...common, secret: config.jwtSecret, jwksUrl: config.jwksUrl });
    return config.jwtSecret ? { verifier, secret: config.jwtSecret } : { verifier };
  }
  const dev = loadOrCreateDevSecret(config.dataDir);
  return {
    verifier: createTokenVerifier({ ...common, secret: dev.secret }),
    devSecret: { path: dev.path, created: dev.created },
    secret: dev.secret,
  };
}

/** The one start-up line for the dev-secret mode. */
export function devSecretNotice(path: string): string {
  return `no ROUTING_JWT_SECRET or ROUTING_JWKS_URL: using the dev secret in ${path}; mint a token with \`npm run token -- alice\``;
}
