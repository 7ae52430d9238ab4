/**
 * A local HTTPS stand-in for a browser push service (RFC 8030) that checks what a real one checks
 * and what the browser would: the VAPID JWT (RFC 8292: ES256 over the `k` key, `aud` = the
 * endpoint's origin, `exp` within 24 h), and the aes128gcm payload (RFC 8291), decrypted with the
 * subscription's private key and auth secret using node:crypto (ECDH, HKDF, AES-128-GCM). It
 * answers per endpoint from a script (default 201 Created).
 */
import { createDecipheriv, createECDH, hkdfSync, randomBytes, type ECDH } from "node:crypto";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import type { TlsFixture } from "./push-fakes.ts";

/** A browser's side of a subscription: its ECDH key pair and auth secret. */
export interface BrowserSubscription {
  readonly endpoint: string;
  readonly keys: { readonly p256dh: string; readonly auth: string };
  readonly ecdh: ECDH;
  readonly authSecret: Buffer;
}

export interface ReceivedPush {
  readonly path: string;
  readonly headers: Record<string, string | string[] | undefined>;
  /** What the browser would hand its service worker; undefined if it failed to decrypt. */
  readonly plaintext: string | undefined;
  /** Why the VAPID check or the decryption failed, if it did. */
  readonly problem: string | undefined;
  /** The VAPID JWT's claims, once verified. */
  readonly claims: Record<string, unknown> | undefined;
  readonly vapidKey: string | undefined;
  readonly raw: Buffer;
}

function p256PublicJwk(raw: Buffer) {
  return { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33, 65).toString("base64url") };
}

/** RFC 8291 §3.4 + RFC 8188: decrypts a single-record aes128gcm body with the browser's keys. */
export function decryptAes128gcm(body: Buffer, sub: BrowserSubscription): string {
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  if (idlen !== 65 || rs < 18 || ciphertext.length > rs) throw new Error(`bad aes128gcm header (idlen ${idlen}, rs ${rs}, record ${ciphertext.length})`);
  const uaPublic = sub.ecdh.getPublicKey();
  const ecdhSecret = sub.ecdh.computeSecret(asPublic);
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic]);
  const ikm = Buffer.from(hkdfSync("sha256", ecdhSecret, sub.authSecret, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 0x02) throw new Error("missing last-record delimiter");
  return padded.subarray(0, end).toString("utf8");
}

async function checkVapid(authorization: string | undefined, origin: string): Promise<{ claims: Record<string, unknown>; key: string }> {
  const match = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(authorization ?? "");
  if (!match) throw new Error(`no VAPID authorization: ${authorization}`);
  const [, jwt, k] = match;
  if (decodeProtectedHeader(jwt).alg !== "ES256") throw new Error("VAPID JWT is not ES256");
  const key = await importJWK(p256PublicJwk(Buffer.from(k, "base64url")), "ES256");
  const { payload } = await jwtVerify(jwt, key, { audience: origin, algorithms: ["ES256"] });
  if (typeof payload.exp !== "number" || payload.exp > Date.now() / 1000 + 24 * 3600) throw new Error("VAPID exp missing or more than 24 h ahead");
  if (typeof payload.sub !== "string" || !/^(mailto:|https:)/.test(payload.sub)) throw new Error("VAPID sub is not mailto: or https:");
  return { claims: payload as Record<string, unknown>, key: k };
}

export async function startWebPushFake(tls: TlsFixture) {
  const received: ReceivedPush[] = [];
  const subscriptions = new Map<string, BrowserSubscription>();
  /** Status answers queued per path; empty: 201. */
  const script = new Map<string, number[]>();
  let origin = "";
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const raw = Buffer.concat(chunks);
      const path = req.url ?? "";
      const sub = subscriptions.get(path);
      let plaintext: string | undefined;
      let problem: string | undefined;
      let claims: Record<string, unknown> | undefined;
      let vapidKey: string | undefined;
      try {
        if (!sub) throw new Error(`unknown subscription ${path}`);
        if (req.headers["content-encoding"] !== "aes128gcm") throw new Error(`content-encoding ${req.headers["content-encoding"]}`);
        ({ claims, key: vapidKey } = await checkVapid(req.headers.authorization, origin));
        plaintext = decryptAes128gcm(raw, sub);
      } catch (err) {
        problem = (err as Error).message;
      }
      received.push({ path, headers: req.headers, plaintext, problem, claims, vapidKey, raw });
      const status = problem ? 400 : (script.get(path)?.shift() ?? 201);
      res.writeHead(status, { "content-type": "text/plain" }).end(problem ?? "");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    received,
    /** A new browser subscription at this push service (its keys made like a browser's). */
    subscribe(name: string): BrowserSubscription {
      const ecdh = createECDH("prime256v1");
      ecdh.generateKeys();
      const authSecret = randomBytes(16);
      const path = `/push/${name}-${randomBytes(4).toString("hex")}`;
      const sub = {
        endpoint: origin + path,
        keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: authSecret.toString("base64url") },
        ecdh,
        authSecret,
      };
      subscriptions.set(path, sub);
      return sub;
    },
    /** The browser subscribes again at the same endpoint with new keys; the old keys no longer decrypt. */
    renew(old: BrowserSubscription): BrowserSubscription {
      const ecdh = createECDH("prime256v1");
      ecdh.generateKeys();
      const authSecret = randomBytes(16);
      const sub = {
        endpoint: old.endpoint,
        keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: authSecret.toString("base64url") },
        ecdh,
        authSecret,
      };
      subscriptions.set(new URL(old.endpoint).pathname, sub);
      return sub;
    },
    /** The next answers for a subscription's endpoint, in order. */
    answer(sub: BrowserSubscription, ...statuses: number[]): void {
      const path = new URL(sub.endpoint).pathname;
      script.set(path, [...(script.get(path) ?? []), ...statuses]);
    },
    to: (sub: BrowserSubscription) => received.filter((r) => r.path === new URL(sub.endpoint).pathname),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
