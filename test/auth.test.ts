import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { RoutingError, type ErrorCode } from "../core/errors.ts";
import { loadOrCreateDevSecret } from "../auth/dev-secret.ts";
import { devSecretNotice, resolveAuth } from "../auth/index.ts";
import { createTokenVerifier } from "../auth/jose-verifier.ts";
import { mintDevToken } from "../auth/mint.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECRET = "test-secret-0123456789abcdef";
const OTHER_SECRET = "another-secret-0123456789abcdef";
const nowSec = () => Math.floor(Date.now() / 1000);

const tmpDirs: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), "routing-auth-"));
  tmpDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function hs256(claims: JWTPayload, secret = SECRET, expiresIn: string | number | null = "1h"): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt();
  if (expiresIn !== null) jwt.setExpirationTime(expiresIn);
  return jwt.sign(new TextEncoder().encode(secret));
}

async function signWith(key: CryptoKey, alg: "RS256" | "ES256", kid: string, claims: JWTPayload): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, kid, typ: "JWT" }).setIssuedAt().setExpirationTime("1h").sign(key);
}

const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** Awaits a rejection and checks it is a RoutingError with `code` whose message leaks nothing. */
async function rejection(promise: Promise<unknown>, code: ErrorCode, secrets: string[] = []): Promise<RoutingError> {
  const err = await promise.then(
    () => {
      throw new Error(`expected ${code}, got a principal`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RoutingError);
  const routingError = err as RoutingError;
  expect(routingError.code).toBe(code);
  for (const secret of secrets) expect(routingError.message).not.toContain(secret);
  return routingError;
}

interface KeyPair {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  jwk: JWK;
}
async function keyPair(alg: "RS256" | "ES256", kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, jwk };
}

interface JwksServer {
  url: string;
  readonly requests: number;
  serve(keys: JWK[]): void;
  close(): Promise<void>;
}
async function startServer(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  let body = JSON.stringify({ keys });
  let requests = 0;
  const { server, port } = await startServer((_req, res) => {
    requests++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get requests() {
      return requests;
    },
    serve(next) {
      body = JSON.stringify({ keys: next });
    },
    close: () => closeServer(server),
  };
}

/** Counts real signature verifications (jose calls WebCrypto for HS256, RS256 and ES256 alike). */
function countSignatureChecks() {
  return vi.spyOn(globalThis.crypto.subtle, "verify");
}

describe("HS256 verifier", () => {
  const verifier = createTokenVerifier({ secret: SECRET });

  it("accepts a valid token; a bare id becomes urn:sm:user:<id>", async () => {
    const token = await hs256({ sub: "alice" });
    const principal = await verifier.verify(token);
    expect(principal.identity).toBe("urn:sm:user:alice");
    expect(principal.expiresAt).toBe(decodeJwt(token).exp! * 1000);
  });

  it("keeps a full URN sub as is", async () => {
    const principal = await verifier.verify(await hs256({ sub: "urn:sm:service:billing" }));
    expect(principal.identity).toBe("urn:sm:service:billing");
  });

  it("accepts a token without exp (expiresAt undefined)", async () => {
    const principal = await verifier.verify(await hs256({ sub: "bob" }, SECRET, null));
    expect(principal).toEqual({ identity: "urn:sm:user:bob", expiresAt: undefined });
  });

  it("TOKEN_MISSING for undefined or empty", async () => {
    await rejection(verifier.verify(undefined), "TOKEN_MISSING");
    await rejection(verifier.verify(""), "TOKEN_MISSING");
  });

  it("TOKEN_INVALID for a wrong secret", async () => {
    const token = await hs256({ sub: "alice" }, OTHER_SECRET);
    await rejection(verifier.verify(token), "TOKEN_INVALID", [token]);
  });

  it("TOKEN_EXPIRED for an expired token", async () => {
    const token = await hs256({ sub: "alice" }, SECRET, nowSec() - 60);
    const err = await rejection(verifier.verify(token), "TOKEN_EXPIRED", [token, "alice"]);
    expect(err.cause).toBeUndefined(); // jose's JWTExpired carries the claims: not kept
  });

  it("honours clockToleranceSec", async () => {
    const token = await hs256({ sub: "alice" }, SECRET, nowSec() - 3);
    await expect(createTokenVerifier({ secret: SECRET, clockToleranceSec: 30 }).verify(token)).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    await rejection(createTokenVerifier({ secret: SECRET, clockToleranceSec: 0 }).verify(token), "TOKEN_EXPIRED");
  });

  it("TOKEN_INVALID for a token not yet valid (nbf)", async () => {
    const token = await hs256({ sub: "alice", nbf: nowSec() + 3600 });
    await rejection(verifier.verify(token), "TOKEN_INVALID");
  });

  it("TOKEN_INVALID for alg none (unsigned, built by hand)", async () => {
    const payload = { sub: "alice", iat: nowSec(), exp: nowSec() + 3600 };
    for (const alg of ["none", "None", "NONE"]) {
      const token = `${b64json({ alg, typ: "JWT" })}.${b64json(payload)}.`;
      await rejection(verifier.verify(token), "TOKEN_INVALID", [token]);
    }
  });

  it("TOKEN_INVALID for an HS256 header with its signature stripped or swapped", async () => {
    const token = await hs256({ sub: "alice" });
    const [header, , signature] = token.split(".");
    await rejection(verifier.verify(`${header}.${b64json({ sub: "mallory", exp: nowSec() + 3600 })}.${signature}`), "TOKEN_INVALID");
    await rejection(verifier.verify(`${header}.${token.split(".")[1]}.`), "TOKEN_INVALID");
  });

  it.each([["urn:sm:user"], ["urn::a:b"], ["a:b"], [""], ["urn:sm:user:has space"], ["x".repeat(300)]])(
    "INVALID_IDENTITY for malformed sub %j",
    async (sub) => {
      const token = await hs256({ sub });
      await rejection(verifier.verify(token), "INVALID_IDENTITY", sub ? [sub, token] : [token]);
    },
  );

  it("INVALID_IDENTITY for a missing or non-string sub", async () => {
    const missing = await rejection(verifier.verify(await hs256({ name: "alice" })), "INVALID_IDENTITY");
    expect(missing.message).toMatch(/no sub/);
    const forged = `${b64json({ alg: "HS256", typ: "JWT" })}.${b64json({ sub: 42, exp: nowSec() + 60 })}`;
    const signed = new Uint8Array(
      await crypto.subtle.sign(
        "HMAC",
        await crypto.subtle.importKey("raw", new TextEncoder().encode(SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
        new TextEncoder().encode(forged),
      ),
    );
    await rejection(verifier.verify(`${forged}.${Buffer.from(signed).toString("base64url")}`), "INVALID_IDENTITY");
  });

  it.each([["garbage"], ["a.b.c"], ["..."], ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"], ["Bearer x.y.z"], ["\u0000\u0001"]])(
    "TOKEN_INVALID for garbage %j",
    async (token) => {
      await rejection(verifier.verify(token), "TOKEN_INVALID", [token]);
    },
  );

  it("TOKEN_INVALID for an absurdly long token", async () => {
    await rejection(verifier.verify("a".repeat(100_000)), "TOKEN_INVALID");
  });

  it("TOKEN_INVALID for an RS256 token when only a secret is configured", async () => {
    const rsa = await keyPair("RS256", "k1");
    await rejection(verifier.verify(await signWith(rsa.privateKey, "RS256", "k1", { sub: "alice" })), "TOKEN_INVALID");
  });

  it("checks issuer and audience when configured", async () => {
    const strict = createTokenVerifier({ secret: SECRET, issuer: "https://idp.example", audience: "routing" });
    const ok = await hs256({ sub: "alice", iss: "https://idp.example", aud: "routing" });
    await expect(strict.verify(ok)).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    await expect(strict.verify(await hs256({ sub: "alice", iss: "https://idp.example", aud: ["other", "routing"] }))).resolves.toBeDefined();
    const wrongIss = await rejection(strict.verify(await hs256({ sub: "alice", iss: "https://evil.example", aud: "routing" })), "TOKEN_INVALID", [
      "evil.example",
    ]);
    expect(wrongIss.message).toMatch(/"iss"/);
    const wrongAud = await rejection(strict.verify(await hs256({ sub: "alice", iss: "https://idp.example", aud: "elsewhere" })), "TOKEN_INVALID", [
      "elsewhere",
    ]);
    expect(wrongAud.message).toMatch(/"aud"/);
    await rejection(strict.verify(await hs256({ sub: "alice", iss: "https://idp.example" })), "TOKEN_INVALID");
    await rejection(strict.verify(await hs256({ sub: "alice", aud: "routing" })), "TOKEN_INVALID");
  });

  it("refuses to be built without a secret or a JWKS URL", () => {
    expect(() => createTokenVerifier({})).toThrow(TypeError);
  });
});

describe("verified-token cache", () => {
  it("verifies a repeated token's signature once", async () => {
    const verifier = createTokenVerifier({ secret: SECRET });
    const token = await hs256({ sub: "alice" });
    const checks = countSignatureChecks();
    for (let i = 0; i < 100; i++) expect((await verifier.verify(token)).identity).toBe("urn:sm:user:alice");
    expect(checks).toHaveBeenCalledTimes(1);
  });

  it("cacheSize 0 disables it", async () => {
    const verifier = createTokenVerifier({ secret: SECRET, cacheSize: 0 });
    const token = await hs256({ sub: "alice" });
    const checks = countSignatureChecks();
    for (let i = 0; i < 10; i++) await verifier.verify(token);
    expect(checks).toHaveBeenCalledTimes(10);
  });

  it("evicts the least recently used token", async () => {
    const verifier = createTokenVerifier({ secret: SECRET, cacheSize: 2 });
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((sub) => hs256({ sub })));
    const checks = countSignatureChecks();
    await verifier.verify(a);
    await verifier.verify(b);
    await verifier.verify(a); // hit: a is now the most recent
    await verifier.verify(c); // evicts b
    expect(checks).toHaveBeenCalledTimes(3);
    await verifier.verify(a); // still cached
    expect(checks).toHaveBeenCalledTimes(3);
    await verifier.verify(b); // was evicted
    expect(checks).toHaveBeenCalledTimes(4);
  });

  it("still rejects a cached token once it expires (no re-verification needed)", async () => {
    let now = Date.now();
    const verifier = createTokenVerifier({ secret: SECRET, clockToleranceSec: 0, now: () => now });
    const token = await hs256({ sub: "alice" }, SECRET, Math.floor(now / 1000) + 2);
    const checks = countSignatureChecks();
    await expect(verifier.verify(token)).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    now += 1000;
    await expect(verifier.verify(token)).resolves.toBeDefined();
    expect(checks).toHaveBeenCalledTimes(1);
    now += 2000;
    await rejection(verifier.verify(token), "TOKEN_EXPIRED", [token]);
    expect(checks).toHaveBeenCalledTimes(1); // rejected on the cache hit itself
    await rejection(verifier.verify(token), "TOKEN_EXPIRED"); // and by jose after the entry is dropped
  });

  it("enforces the clock tolerance the same way on a hit", async () => {
    let now = Date.now();
    const verifier = createTokenVerifier({ secret: SECRET, clockToleranceSec: 10, now: () => now });
    const token = await hs256({ sub: "alice" }, SECRET, Math.floor(now / 1000) + 2);
    await verifier.verify(token);
    now += 5000; // past exp, within tolerance
    await expect(verifier.verify(token)).resolves.toBeDefined();
    now += 10_000;
    await rejection(verifier.verify(token), "TOKEN_EXPIRED");
  });

  it("re-verifies after cacheTtlMs", async () => {
    let now = Date.now();
    const verifier = createTokenVerifier({ secret: SECRET, cacheTtlMs: 60_000, now: () => now });
    const token = await hs256({ sub: "alice" });
    const checks = countSignatureChecks();
    await verifier.verify(token);
    now += 59_000;
    await verifier.verify(token);
    expect(checks).toHaveBeenCalledTimes(1);
    now += 2_000;
    await verifier.verify(token);
    expect(checks).toHaveBeenCalledTimes(2);
  });

  it("never caches a rejection", async () => {
    const verifier = createTokenVerifier({ secret: SECRET });
    const token = await hs256({ sub: "a:b" });
    const checks = countSignatureChecks();
    await rejection(verifier.verify(token), "INVALID_IDENTITY");
    await rejection(verifier.verify(token), "INVALID_IDENTITY");
    expect(checks).toHaveBeenCalledTimes(2);
  });
});

describe("JWKS verifier", () => {
  let rsa: KeyPair;
  let ec: KeyPair;
  let rotated: KeyPair;
  let server: JwksServer;

  beforeAll(async () => {
    [rsa, ec, rotated] = await Promise.all([keyPair("RS256", "rsa-1"), keyPair("ES256", "ec-1"), keyPair("RS256", "rsa-2")]);
  });
  afterEach(async () => {
    await server?.close();
  });

  it("accepts RS256 and ES256 tokens signed by keys in the JWKS", async () => {
    server = await startJwksServer([rsa.jwk, ec.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url });
    expect((await verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" }))).identity).toBe("urn:sm:user:alice");
    expect((await verifier.verify(await signWith(ec.privateKey, "ES256", ec.kid, { sub: "urn:sm:device:d1" }))).identity).toBe("urn:sm:device:d1");
  });

  it("TOKEN_INVALID for an HS256 token when only JWKS is configured", async () => {
    server = await startJwksServer([rsa.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url });
    await rejection(verifier.verify(await hs256({ sub: "alice" })), "TOKEN_INVALID");
    // Also the classic confusion: HS256 "signed" with the public key material.
    const confused = await hs256({ sub: "alice" }, JSON.stringify(rsa.jwk));
    await rejection(verifier.verify(confused), "TOKEN_INVALID");
  });

  it("TOKEN_INVALID for a token signed by a key that is not the kid's", async () => {
    server = await startJwksServer([rsa.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url });
    await rejection(verifier.verify(await signWith(rotated.privateKey, "RS256", rsa.kid, { sub: "alice" })), "TOKEN_INVALID");
  });

  it("TOKEN_EXPIRED and INVALID_IDENTITY apply to JWKS tokens too", async () => {
    server = await startJwksServer([ec.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url });
    const expired = await new SignJWT({ sub: "alice" })
      .setProtectedHeader({ alg: "ES256", kid: ec.kid })
      .setExpirationTime(nowSec() - 60)
      .sign(ec.privateKey);
    await rejection(verifier.verify(expired), "TOKEN_EXPIRED");
    await rejection(verifier.verify(await signWith(ec.privateKey, "ES256", ec.kid, { sub: "urn::a:b" })), "INVALID_IDENTITY", ["urn::a:b"]);
  });

  it("with a secret and a JWKS accepts either, by alg", async () => {
    server = await startJwksServer([rsa.jwk]);
    const verifier = createTokenVerifier({ secret: SECRET, jwksUrl: server.url });
    await expect(verifier.verify(await hs256({ sub: "alice" }))).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    await expect(verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "bob" }))).resolves.toMatchObject({ identity: "urn:sm:user:bob" });
    await rejection(verifier.verify(await hs256({ sub: "alice" }, OTHER_SECRET)), "TOKEN_INVALID");
  });

  it("fetches the JWKS once for many verifications, even concurrent ones", async () => {
    server = await startJwksServer([rsa.jwk, ec.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url });
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => signWith(rsa.privateKey, "RS256", rsa.kid, { sub: `user${i}` })));
    const principals = await Promise.all(tokens.map((t) => verifier.verify(t)));
    expect(principals.map((p) => p.identity)).toEqual(tokens.map((_, i) => `urn:sm:user:user${i}`));
    for (let i = 0; i < 50; i++) await verifier.verify(await signWith(ec.privateKey, "ES256", ec.kid, { sub: `dev${i}` }));
    expect(server.requests).toBe(1);
  });

  it("key rotation: refetches on an unknown kid and accepts the new key once it is served", async () => {
    server = await startJwksServer([rsa.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url, jwksCooldownMs: 0 });
    await verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" }));
    expect(server.requests).toBe(1);

    const fresh = await signWith(rotated.privateKey, "RS256", rotated.kid, { sub: "alice" });
    await rejection(verifier.verify(fresh), "TOKEN_INVALID"); // refetched, kid still unknown
    expect(server.requests).toBe(2);

    server.serve([rsa.jwk, rotated.jwk]);
    await expect(verifier.verify(fresh)).resolves.toMatchObject({ identity: "urn:sm:user:alice" });
    expect(server.requests).toBe(3);
    await verifier.verify(await signWith(rotated.privateKey, "RS256", rotated.kid, { sub: "bob" }));
    expect(server.requests).toBe(3);
  });

  it("the cooldown stops unknown kids from hammering the JWKS endpoint", async () => {
    server = await startJwksServer([rsa.jwk]);
    const verifier = createTokenVerifier({ jwksUrl: server.url, jwksCooldownMs: 30_000 });
    await verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" }));
    server.serve([rsa.jwk, rotated.jwk]);
    for (let i = 0; i < 5; i++) {
      await rejection(verifier.verify(await signWith(rotated.privateKey, "RS256", rotated.kid, { sub: `u${i}` })), "TOKEN_INVALID");
    }
    expect(server.requests).toBe(1);
  });

  it("a JWKS that cannot be fetched gives BACKEND_UNAVAILABLE with the cause kept", async () => {
    const { server: dead, port } = await startServer(() => {});
    await closeServer(dead);
    const verifier = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks` });
    const token = await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" });
    const err = await rejection(verifier.verify(token), "BACKEND_UNAVAILABLE", [token]);
    expect(err.message).toMatch(/JWKS/);
    expect(err.cause).toBeDefined();
  });

  it("a JWKS fetch timeout gives BACKEND_UNAVAILABLE with the JWKSTimeout cause", async () => {
    const { server: silent, port } = await startServer(() => {}); // never answers
    try {
      const verifier = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks`, jwksTimeoutMs: 200 });
      const err = await rejection(verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" })), "BACKEND_UNAVAILABLE");
      expect(err.message).toMatch(/timed out/);
      expect((err.cause as { code?: string }).code).toBe("ERR_JWKS_TIMEOUT");
    } finally {
      await closeServer(silent);
    }
  });

  it("a non-200 JWKS response gives BACKEND_UNAVAILABLE", async () => {
    const { server: broken, port } = await startServer((_req, res) => {
      res.writeHead(500);
      res.end("nope");
    });
    try {
      const verifier = createTokenVerifier({ jwksUrl: `http://127.0.0.1:${port}/jwks` });
      const err = await rejection(verifier.verify(await signWith(rsa.privateKey, "RS256", rsa.kid, { sub: "alice" })), "BACKEND_UNAVAILABLE");
      expect(err.cause).toBeDefined();
    } finally {
      await closeServer(broken);
    }
  });
});

describe("mintDevToken", () => {
  it("mints an HS256 token with iat, exp (24h default), iss and aud", async () => {
    const token = await mintDevToken(SECRET, "alice", { issuer: "dev", audience: "routing" });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ sub: "alice", iss: "dev", aud: "routing" });
    expect(claims.exp! - claims.iat!).toBe(24 * 3600);
    const principal = await createTokenVerifier({ secret: SECRET, issuer: "dev", audience: "routing" }).verify(token);
    expect(principal.identity).toBe("urn:sm:user:alice");
  });

  it("honours expiresIn and refuses subjects the verifier would reject", async () => {
    const claims = decodeJwt(await mintDevToken(SECRET, "urn:sm:user:bob", { expiresIn: "15m" }));
    expect(claims.exp! - claims.iat!).toBe(900);
    await expect(mintDevToken(SECRET, "a:b")).rejects.toThrow(TypeError);
  });
});

describe("dev secret", () => {
  it("is created once with mode 0600 (mkdir -p), then reused", () => {
    const dataDir = join(tmp(), "nested", "data");
    const first = loadOrCreateDevSecret(dataDir);
    expect(first.created).toBe(true);
    expect(first.path).toBe(join(dataDir, "dev-jwt-secret"));
    expect(first.secret).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    expect(readFileSync(first.path, "utf8").trim()).toBe(first.secret);
    const second = loadOrCreateDevSecret(dataDir);
    expect(second).toEqual({ ...first, created: false });
    expect(readdirSync(dataDir)).toEqual(["dev-jwt-secret"]); // no temp files left behind
  });

  it("refuses an empty secret file instead of using it", () => {
    const dataDir = tmp();
    loadOrCreateDevSecret(dataDir);
    writeFileSync(join(dataDir, "dev-jwt-secret"), ""); // as a crashed writer might leave it
    expect(() => loadOrCreateDevSecret(dataDir)).toThrow(/delete the file/);
  });
});

describe("resolveAuth", () => {
  it("uses the dev secret with neither jwtSecret nor jwksUrl", async () => {
    const dataDir = tmp();
    const first = resolveAuth({ dataDir });
    expect(first.devSecret).toEqual({ path: join(dataDir, "dev-jwt-secret"), created: true });
    expect(first.secret).toBe(readFileSync(join(dataDir, "dev-jwt-secret"), "utf8").trim());
    const token = await mintDevToken(first.secret!, "alice");
    expect((await first.verifier.verify(token)).identity).toBe("urn:sm:user:alice");
    const second = resolveAuth({ dataDir });
    expect(second.devSecret?.created).toBe(false);
    await expect(second.verifier.verify(token)).resolves.toBeDefined();
    expect(devSecretNotice(first.devSecret!.path)).toBe(
      `no ROUTING_JWT_SECRET or ROUTING_JWKS_URL: using the dev secret in ${first.devSecret!.path}; mint a token with \`npm run token -- alice\``,
    );
  });

  it("uses jwtSecret (and issuer/audience) without touching the data dir", async () => {
    const dataDir = tmp();
    const auth = resolveAuth({ dataDir, jwtSecret: SECRET, jwtIssuer: "dev", jwtAudience: "routing" });
    expect(auth.devSecret).toBeUndefined();
    expect(auth.secret).toBe(SECRET);
    expect(existsSync(join(dataDir, "dev-jwt-secret"))).toBe(false);
    await expect(auth.verifier.verify(await mintDevToken(SECRET, "alice", { issuer: "dev", audience: "routing" }))).resolves.toBeDefined();
    await rejection(auth.verifier.verify(await mintDevToken(SECRET, "alice")), "TOKEN_INVALID");
  });

  it("with only jwksUrl, has no secret and refuses HS256", async () => {
    const dataDir = tmp();
    const auth = resolveAuth({ dataDir, jwksUrl: "http://127.0.0.1:9/jwks" });
    expect(auth.secret).toBeUndefined();
    expect(auth.devSecret).toBeUndefined();
    await rejection(auth.verifier.verify(await mintDevToken(SECRET, "alice")), "TOKEN_INVALID");
    expect(existsSync(join(dataDir, "dev-jwt-secret"))).toBe(false);
  });
});

describe("bin/token.ts", () => {
  function runToken(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("ROUTING_")));
    return new Promise((resolve) => {
      execFile(process.execPath, ["--import", "tsx", "bin/token.ts", ...args], { cwd: ROOT, env: { ...clean, ...env } }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  it("prints one token that the verifier with the data dir's secret accepts", async () => {
    const dataDir = tmp();
    const { code, stdout } = await runToken(["alice"], { ROUTING_DATA_DIR: dataDir });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const { verifier, devSecret } = resolveAuth({ dataDir });
    expect(devSecret?.created).toBe(false); // the command created it
    expect(await verifier.verify(stdout.trim())).toMatchObject({ identity: "urn:sm:user:alice" });
    const claims = decodeJwt(stdout.trim());
    expect(claims.exp! - claims.iat!).toBe(24 * 3600);
  });

  it("concurrent runs on a fresh data dir agree on one secret", async () => {
    const dataDir = tmp();
    const runs = await Promise.all(["a", "b", "c", "d", "e"].map((sub) => runToken([sub, "--ttl", "1h"], { ROUTING_DATA_DIR: dataDir })));
    const { verifier } = resolveAuth({ dataDir });
    for (const [i, run] of runs.entries()) {
      expect(run.code).toBe(0);
      const claims = decodeJwt(run.stdout.trim());
      expect(claims.exp! - claims.iat!).toBe(3600);
      expect((await verifier.verify(run.stdout.trim())).identity).toBe(`urn:sm:user:${"abcde"[i]}`);
    }
    expect(readdirSync(dataDir)).toEqual(["dev-jwt-secret"]);
  });

  it("uses ROUTING_JWT_SECRET when set", async () => {
    const dataDir = tmp();
    const { code, stdout } = await runToken(["urn:sm:service:ops"], { ROUTING_DATA_DIR: dataDir, ROUTING_JWT_SECRET: SECRET, ROUTING_JWT_AUDIENCE: "routing" });
    expect(code).toBe(0);
    const principal = await createTokenVerifier({ secret: SECRET, audience: "routing" }).verify(stdout.trim());
    expect(principal.identity).toBe("urn:sm:service:ops");
    expect(existsSync(join(dataDir, "dev-jwt-secret"))).toBe(false);
  });

  it("exits 2 pointing at the identity provider when only ROUTING_JWKS_URL is set", async () => {
    const dataDir = tmp();
    const { code, stdout, stderr } = await runToken(["alice"], { ROUTING_DATA_DIR: dataDir, ROUTING_JWKS_URL: "https://idp.example/jwks" });
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/identity provider/);
    expect(existsSync(join(dataDir, "dev-jwt-secret"))).toBe(false);
  });

  it("exits 2 on usage errors", async () => {
    const dataDir = tmp();
    const results = await Promise.all([
      runToken([], { ROUTING_DATA_DIR: dataDir }),
      runToken(["a:b"], { ROUTING_DATA_DIR: dataDir }),
      runToken(["alice", "--ttl", "soon"], { ROUTING_DATA_DIR: dataDir }),
    ]);
    for (const { code, stdout, stderr } of results) {
      expect(code).toBe(2);
      expect(stdout).toBe("");
      expect(stderr).toMatch(/usage/);
    }
  });
});
