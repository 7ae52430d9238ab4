/**
 * Local stand-ins for the push providers, for tests and bench/push.ts: a throwaway CA and server
 * certificate (openssl), throwaway credentials, an HTTPS server answering as FCM HTTP v1 and
 * Google's OAuth token endpoint, and an HTTP/2 server answering as APNs. They verify what a real
 * provider would (the OAuth assertion, the APNs provider JWT), record every request byte for byte,
 * and answer per token from a script (default: success).
 */
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { importSPKI, jwtVerify } from "jose";

export interface TlsFixture {
  readonly dir: string;
  /** PEM of the CA that signed `cert`; for NODE_EXTRA_CA_CERTS use `caFile`. */
  readonly ca: string;
  readonly caFile: string;
  readonly cert: string;
  readonly key: string;
}

/** A CA and a server certificate for 127.0.0.1 and localhost, in a new temp dir. */
export function makeTlsFixture(): TlsFixture {
  const dir = mkdtempSync(join(tmpdir(), "routing-push-tls-"));
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=routing test CA");
  run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(
    join(dir, "san.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
  );
  run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  return { dir, ca: read("ca.pem"), caFile: join(dir, "ca.pem"), cert: read("server.pem"), key: read("server.key") };
}

export interface PushCredentials {
  readonly projectId: string;
  readonly clientEmail: string;
  readonly serviceAccountFile: string;
  /** SPKI PEM of the service account's key, to verify the OAuth assertion. */
  readonly serviceAccountPublicKey: string;
  readonly apnsKeyFile: string;
  readonly apnsPublicKey: string;
  readonly apnsKeyId: string;
  readonly apnsTeamId: string;
  readonly apnsTopic: string;
}

/** A throwaway RSA service account (JSON) and an EC P-256 APNs key (.p8), written into `dir`. */
export function makeCredentials(dir: string): PushCredentials {
  const projectId = "routing-test-project";
  const clientEmail = `push@${projectId}.iam.gserviceaccount.com`;
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const serviceAccountFile = join(dir, "service-account.json");
  writeFileSync(
    serviceAccountFile,
    JSON.stringify({
      type: "service_account",
      project_id: projectId,
      private_key_id: "test-key-1",
      private_key: rsa.privateKey.export({ type: "pkcs8", format: "pem" }),
      client_email: clientEmail,
      token_uri: "https://oauth2.googleapis.com/token",
    }),
  );
  const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const apnsKeyFile = join(dir, "AuthKey_TESTKEY123.p8");
  writeFileSync(apnsKeyFile, ec.privateKey.export({ type: "pkcs8", format: "pem" }));
  return {
    projectId,
    clientEmail,
    serviceAccountFile,
    serviceAccountPublicKey: rsa.publicKey.export({ type: "spki", format: "pem" }).toString(),
    apnsKeyFile,
    apnsPublicKey: ec.publicKey.export({ type: "spki", format: "pem" }).toString(),
    apnsKeyId: "TESTKEY123",
    apnsTeamId: "TEAM123456",
    apnsTopic: "com.example.messenger",
  };
}

export interface CapturedRequest {
  /** The host the client meant (Host header or :authority). */
  readonly host: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** The status the fake answered. */
  status: number;
}

/** Every captured byte as one string, for "appears nowhere" assertions. */
export function everything(requests: readonly CapturedRequest[]): string {
  return requests.map((r) => `${r.method} ${r.host}${r.path}\n${JSON.stringify(r.headers)}\n${r.body}`).join("\n");
}

function flatHeaders(headers: http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : String(v);
  return out;
}

/** Scripted answers per token: each request takes the next; an empty script answers success. */
class Script<A> {
  #byToken = new Map<string, A[]>();
  set(token: string, answers: A[]): void {
    this.#byToken.set(token, [...answers]);
  }
  next(token: string): A | undefined {
    return this.#byToken.get(token)?.shift();
  }
  clear(): void {
    this.#byToken.clear();
  }
}

async function listen(server: https.Server | http2.Http2SecureServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

export interface FakeFcm {
  /** The https origin to give ROUTING_FCM_ENDPOINT. */
  readonly url: string;
  readonly requests: CapturedRequest[];
  /** The `messages:send` requests only. */
  sends(): CapturedRequest[];
  /** Next answers (HTTP status) for a token: 200, 400 (INVALID_ARGUMENT), 404 (UNREGISTERED), 500, 503, 403 (SENDER_ID_MISMATCH). */
  script(token: string, statuses: number[]): void;
  /** Answer every `messages:send` this much later (a provider's round trip). */
  latency(ms: number): void;
  reset(): void;
  close(): Promise<void>;
}

const FCM_ERRORS: Record<number, { status: string; errorCode: string }> = {
  400: { status: "INVALID_ARGUMENT", errorCode: "INVALID_ARGUMENT" },
  403: { status: "PERMISSION_DENIED", errorCode: "SENDER_ID_MISMATCH" },
  404: { status: "NOT_FOUND", errorCode: "UNREGISTERED" },
  429: { status: "RESOURCE_EXHAUSTED", errorCode: "QUOTA_EXCEEDED" },
  500: { status: "INTERNAL", errorCode: "INTERNAL" },
  503: { status: "UNAVAILABLE", errorCode: "UNAVAILABLE" },
};

/** fcm.googleapis.com (`/v1/projects/<id>/messages:send`) and oauth2.googleapis.com (`/token`) on one port. */
export async function startFakeFcm(tls: TlsFixture, creds: PushCredentials): Promise<FakeFcm> {
  const requests: CapturedRequest[] = [];
  const script = new Script<number>();
  const saKey = await importSPKI(creds.serviceAccountPublicKey, "RS256");
  const accessToken = `fake-access-${randomUUID()}`;
  let sent = 0;
  let latencyMs = 0;
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const captured: CapturedRequest = {
        host: req.headers.host ?? "",
        method: req.method ?? "",
        path: req.url ?? "",
        headers: flatHeaders(req.headers),
        body: Buffer.concat(chunks).toString("utf8"),
        status: 0,
      };
      requests.push(captured);
      const answer = (status: number, body: object) => {
        captured.status = status;
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
      };
      void (async () => {
        if (req.url === "/token" && req.method === "POST") {
          const assertion = new URLSearchParams(captured.body).get("assertion") ?? "";
          try {
            await jwtVerify(assertion, saKey, { issuer: creds.clientEmail, audience: "https://oauth2.googleapis.com/token" });
          } catch {
            return answer(400, { error: "invalid_grant" });
          }
          return answer(200, { access_token: accessToken, expires_in: 3600, token_type: "Bearer" });
        }
        if (req.url !== `/v1/projects/${creds.projectId}/messages:send` || req.method !== "POST")
          return answer(404, { error: { code: 404, status: "NOT_FOUND" } });
        if (req.headers.authorization !== `Bearer ${accessToken}`) return answer(401, { error: { code: 401, status: "UNAUTHENTICATED" } });
        const token = (JSON.parse(captured.body) as { message?: { token?: string } }).message?.token ?? "";
        const status = script.next(token) ?? 200;
        if (latencyMs > 0) await sleep(latencyMs);
        if (status === 200) return answer(200, { name: `projects/${creds.projectId}/messages/${++sent}` });
        const err = FCM_ERRORS[status] ?? { status: "UNKNOWN", errorCode: "UNSPECIFIED_ERROR" };
        return answer(status, {
          error: {
            code: status,
            message: err.status,
            status: err.status,
            details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: err.errorCode }],
          },
        });
      })();
    });
  });
  const port = await listen(server);
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    sends: () => requests.filter((r) => r.path.endsWith("/messages:send")),
    script: (token, statuses) => script.set(token, statuses),
    latency: (ms) => (latencyMs = ms),
    reset: () => {
      requests.length = 0;
      script.clear();
      latencyMs = 0;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ApnsAnswer {
  readonly status: number;
  readonly reason?: string;
}

export interface FakeApns {
  readonly port: number;
  readonly requests: CapturedRequest[];
  /** Next answers for a token, e.g. `{status: 410, reason: "Unregistered"}`. */
  script(token: string, answers: ApnsAnswer[]): void;
  /** Answer every request this much later (a provider's round trip). */
  latency(ms: number): void;
  reset(): void;
  close(): Promise<void>;
}

/** api.push.apple.com over HTTP/2: `POST /3/device/<token>`, provider JWT (ES256) verified. */
export async function startFakeApns(tls: TlsFixture, creds: PushCredentials): Promise<FakeApns> {
  const requests: CapturedRequest[] = [];
  const script = new Script<ApnsAnswer>();
  const apnsKey = await importSPKI(creds.apnsPublicKey, "ES256");
  const sessions = new Set<http2.ServerHttp2Session>();
  let latencyMs = 0;
  const server = http2.createSecureServer({ key: tls.key, cert: tls.cert });
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const path = String(headers[":path"] ?? "");
      const captured: CapturedRequest = {
        host: String(headers[":authority"] ?? ""),
        method: String(headers[":method"] ?? ""),
        path,
        headers: flatHeaders(headers),
        body: Buffer.concat(chunks).toString("utf8"),
        status: 0,
      };
      requests.push(captured);
      const answer = (status: number, reason?: string) => {
        captured.status = status;
        if (stream.destroyed) return;
        if (reason === undefined) stream.respond({ ":status": status, "apns-id": randomUUID() }, { endStream: true });
        else {
          stream.respond({ ":status": status, "content-type": "application/json" });
          stream.end(JSON.stringify({ reason, ...(status === 410 ? { timestamp: Date.now() } : {}) }));
        }
      };
      void (async () => {
        const bearer = /^bearer (.+)$/i.exec(String(headers.authorization ?? ""))?.[1] ?? "";
        try {
          const { protectedHeader } = await jwtVerify(bearer, apnsKey, { issuer: creds.apnsTeamId });
          if (protectedHeader.kid !== creds.apnsKeyId) throw new Error("kid");
        } catch {
          return answer(403, "InvalidProviderToken");
        }
        const token = /^\/3\/device\/([^/?]+)$/.exec(path)?.[1];
        if (captured.method !== "POST" || token === undefined) return answer(404, "BadPath");
        const scripted = script.next(token);
        if (latencyMs > 0) await sleep(latencyMs);
        return answer(scripted?.status ?? 200, scripted?.status === 200 ? undefined : scripted?.reason);
      })();
    });
  });
  const port = await listen(server);
  return {
    port,
    requests,
    script: (token, answers) => script.set(token, answers),
    latency: (ms) => (latencyMs = ms),
    reset: () => {
      requests.length = 0;
      script.clear();
      latencyMs = 0;
    },
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
